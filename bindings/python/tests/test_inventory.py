"""The inventory example (examples/inventory) in a zcqrs.Node, end to end:
commands, the reply field of reserve, and both views read after a write."""

import os

import pytest

import zcqrs


@pytest.fixture
def inventory(tmp_path):
    plugin = os.path.join(os.path.dirname(zcqrs.node.plugin_path("bank")), "inventory.so")
    if not os.path.exists(plugin):
        pytest.skip("the build's inventory plugin is not there")
    with zcqrs.Node(str(tmp_path / "data"), domain=plugin) as node, node.client() as client:
        yield client


def test_receive_reserve_ship(inventory):
    client = inventory
    assert client.send("item", "apple", "receive", {"qty": 10}).reply == {}
    reserved = client.send("item", "apple", "reserve", {"order": "o-1", "qty": 4})
    assert reserved.reply == {"available": 6}
    again = client.send("item", "apple", "reserve", {"order": "o-1", "qty": 4}, id=reserved.id)
    assert again.duplicate and again.reply["available"] == 6
    client.send("item", "pear", "receive", {"qty": 3})
    last = client.send("item", "pear", "reserve", {"order": "o-1", "qty": 3})
    assert last.reply["available"] == 0

    # stock is synchronous; orders is read at the command's position
    assert client.get("stock", "apple") == {"key": "apple", "on_hand": 10, "reserved": 4,
                                            "available": 6, "low": False}
    lines = list(client.list("orders", "order", "o-1", min_position=last.position))
    assert [(line["key"], line["sku"], line["qty"], line["status"]) for line in lines] == [
        ("o-1/apple", "apple", 4, "reserved"), ("o-1/pear", "pear", 3, "reserved")]
    assert [row["key"] for row in client.list("stock", "low", True)] == ["pear"]

    with pytest.raises(zcqrs.Rejected) as caught:
        client.send("item", "apple", "reserve", {"order": "o-2", "qty": 7})
    assert "only 6 of apple available" in caught.value.message
    with pytest.raises(zcqrs.Invalid):
        client.send("item", "apple", "reserve", {"order": "o/2", "qty": 1})

    shipped = client.send("item", "apple", "ship", {"order": "o-1"})
    released = client.send("item", "pear", "release", {"order": "o-1"})
    row = client.get("orders", "o-1/apple", **client.consistent_with(shipped, released))
    assert (row["status"], row["qty"]) == ("shipped", 4)
    assert client.get("orders", "o-1/pear", min_position=released.position)["status"] == "released"
    assert client.get("stock", "apple")["on_hand"] == 6
    assert client.get("stock", "pear")["available"] == 3
