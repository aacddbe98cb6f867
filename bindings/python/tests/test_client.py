"""Every Client method against a real node: embedded (zcqrs.Node) and zcqrsd."""

import pytest

import zcqrs
from conftest import uniq, wait_for


def test_walkthrough(client):
    """The create-use-destroy walk-through: a command, a read of its effect."""
    key = uniq()
    opened = client.send("account", key, "open", {"owner": "ada"})
    assert isinstance(opened, zcqrs.CommandResult)
    assert opened.stream == "account/" + key
    assert (opened.version, opened.events, opened.duplicate) == (1, 1, False)
    assert opened.position >= 1
    deposited = client.send("account", key, "deposit", {"amount": 250})
    assert deposited.version == 2 and deposited.position > opened.position
    row = client.get("accounts", key, min_position=deposited.position)
    assert row == {"key": key, "owner": "ada", "balance": 250, "status": "open", "version": 2}


def test_send_with_id_meta_and_expect(client):
    key = uniq()
    command_id = uniq("cmd-")
    first = client.send("account", key, "open", {"owner": "bob"}, id=command_id,
                        meta={"user": "tester"}, expect=0)
    assert first.id == command_id and not first.duplicate
    again = client.send("account", key, "open", {"owner": "bob"}, id=command_id)
    assert again.duplicate and again.version == 1 and again.position == first.position
    assert client.send("account", key, "deposit", {"amount": 5}, expect=1).version == 2
    events = client.stream("account/" + key)
    assert [e["type"] for e in events] == ["opened", "deposited"]
    assert events[0]["command"] == command_id
    assert events[0]["meta"] == {"user": "tester"}
    assert events[1]["meta"] == {}


def test_send_retries_reuse_the_id(client):
    """retries=n is safe: a generated id is kept, so at most one application;
    the id sent for another command type or stream is refused."""
    key = uniq()
    result = client.send("account", key, "open", {"owner": "r"}, retries=3)
    assert not result.duplicate and len(result.id) == 32
    assert client.send("account", key, "open", {"owner": "r"}, id=result.id).duplicate
    with pytest.raises(zcqrs.Invalid):
        client.send("account", key, "deposit", {"amount": 1}, id=result.id)
    with pytest.raises(zcqrs.Invalid):
        client.send("account", uniq(), "open", {"owner": "r"}, id=result.id)


def test_get_absent_and_read_your_writes_forms(client):
    assert client.get("accounts", uniq("absent")) is None
    key = uniq()
    results = [client.send("account", key, "open", {"owner": "c"}),
               client.send("account", key, "deposit", {"amount": 7})]
    assert client.consistent_with(*results) == {"min_position": results[1].position}
    row = client.get("accounts", key, **client.consistent_with(*results))
    assert row["balance"] == 7
    assert client.count("accounts", min_position=results[1].position) >= 1


def test_list_pages_and_index(client):
    owner = uniq("owner-")
    keys = sorted(uniq("l") for _ in range(7))
    outcomes = list(client.send_many(("account", k, "open", {"owner": owner}) for k in keys))
    assert all(isinstance(o, zcqrs.CommandResult) for o in outcomes)
    position = max(o.position for o in outcomes)
    rows = list(client.list("accounts", "owner", owner, min_position=position, page_size=2))
    assert [r["key"] for r in rows] == keys
    assert all(r["owner"] == owner for r in rows)
    assert client.count("accounts", "owner", owner) == 7
    page = client.list_page("accounts", "owner", owner, limit=3)
    assert [r["key"] for r in page.rows] == keys[:3] and page.next == keys[2]
    assert page.head >= page.position >= position
    rest = client.list_page("accounts", "owner", owner, after=page.next, limit=10)
    assert [r["key"] for r in rest.rows] == keys[3:] and rest.next is None
    # the whole view, in key order, across pages
    everything = list(client.list("accounts", page_size=3))
    assert [r["key"] for r in everything] == sorted(r["key"] for r in everything)
    assert len(everything) == client.count("accounts")


def test_read_and_stream(client):
    key = uniq()
    first = client.send("account", key, "open", {"owner": "d"})
    for amount in (1, 2, 3):
        last = client.send("account", key, "deposit", {"amount": amount})
    events = client.read(first.position, limit=10000)
    mine = [e for e in events if e["stream"] == "account/" + key]
    assert [e["type"] for e in mine] == ["opened", "deposited", "deposited", "deposited"]
    assert [e["position"] for e in events] == list(range(first.position, last.position + 1))
    event = mine[1]
    assert set(event) >= {"position", "node", "stream", "aggregate", "key", "version", "type",
                          "time", "command", "meta", "data"}
    assert (event["aggregate"], event["key"], event["version"]) == ("account", key, 2)
    assert client.read(last.position + 10**9) == []
    assert len(client.read(1, limit=2)) == 2
    assert [e["version"] for e in client.stream("account/" + key, from_version=2)] == [2, 3, 4]
    assert [e["version"] for e in client.stream("account/" + key, 2, limit=2)] == [2, 3]
    assert client.stream("account/" + uniq("none")) == []


def test_stream_pages_past_a_thousand_events(client):
    key = uniq()
    client.send("account", key, "open", {"owner": "big"})
    outcomes = list(client.send_many(("account", key, "deposit", {"amount": 1})
                                     for _ in range(1100)))
    assert all(isinstance(o, zcqrs.CommandResult) for o in outcomes)
    events = client.stream("account/" + key)
    assert [e["version"] for e in events] == list(range(1, 1102))


def test_views_health_stats(client):
    client.send("account", uniq(), "open", {"owner": "e"})
    views = {v["name"]: v for v in client.views()}
    assert set(views) >= {"accounts", "totals"}
    assert views["accounts"]["status"] in ("live", "catching_up", "rebuilding")
    health = client.health()
    assert health["head"] >= 1 and health["durability"] == "wal"
    assert isinstance(health["node"], str) and health["uptime_ms"] >= 0
    assert client.head() >= health["head"]
    stats = client.stats()
    assert stats["commands_accepted"] >= 1 and stats["events_written"] >= 1
    assert "view.accounts.lag" in stats


def test_rebuild(client):
    key = uniq()
    result = client.send("account", key, "open", {"owner": "f"})
    reply = client.rebuild("accounts")
    assert reply["status"] == "rebuilding" and reply["view"] == "accounts"
    wait_for(lambda: {v["name"]: v["status"] for v in client.views()}["accounts"] == "live",
             what="the rebuild to end")
    assert client.get("accounts", key, min_position=result.position)["owner"] == "f"


def test_backup(client, tmp_path):
    result = client.send("account", uniq(), "open", {"owner": "b"})
    reply = client.backup(str(tmp_path / "backup"))
    assert reply["dir"] == str(tmp_path / "backup")
    assert reply["position"] >= result.position and reply["bytes"] > 0
    assert (tmp_path / "backup" / "manifest").exists()
    with pytest.raises(zcqrs.Invalid):
        client.backup(str(tmp_path / "backup"))


def test_totals(client):
    result = client.send("account", uniq(), "open", {"owner": "g"})
    totals = client.get("totals", "bank", min_position=result.position)
    assert totals["key"] == "bank" and totals["accounts"] >= 1 and totals["events"] >= 1


def test_context_manager_and_close(target):
    with target.client() as c:
        assert c.health()["head"] >= 0
    assert c.closed
    try:
        c.health()
    except ValueError:
        pass
    else:
        raise AssertionError("a closed client must refuse calls")
    c.close()   # idempotent


def test_raw_call(client):
    reply = client.call({"op": "health"})
    assert reply["ok"] is True and "head" in reply


def test_send_many_outcomes_in_input_order(client):
    key = uniq()
    commands = [("account", key, "open", {"owner": "h"}),
                ("account", key, "open", {"owner": "h"}),             # rejected
                ("account", key, "deposit", {"amount": 10}),
                ("account", key, "withdraw", {"amount": 1000}),       # rejected
                ("account", key, "deposit", {"amount": 0}),           # invalid
                ("account", key, "nosuch", {}),                       # unknown
                ("account", key, "withdraw", {"amount": 4})]
    outcomes = list(client.send_many(commands, window=3))
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["CommandResult", "Rejected", "CommandResult", "Rejected", "Invalid",
                     "Unknown", "CommandResult"]
    assert outcomes[6].version == 3
    assert all(o.message for o in outcomes if isinstance(o, zcqrs.Error))
    assert client.get("accounts", key, min_position=outcomes[6].position)["balance"] == 6


def test_send_and_send_many_interleaved(client):
    """A send() while a send_many generator is suspended loses nobody's reply."""
    key = uniq()
    client.send("account", key, "open", {"owner": "i"})
    batch = client.send_many((("account", key, "deposit", {"amount": 1}) for _ in range(50)),
                             window=50)
    first = next(batch)
    assert isinstance(first, zcqrs.CommandResult)
    # the batch's other 49 replies arrive while send() waits for its own
    single = client.send("account", key, "deposit", {"amount": 100})
    rest = list(batch)
    assert len(rest) == 49 and all(isinstance(o, zcqrs.CommandResult) for o in rest)
    position = max([single.position] + [o.position for o in rest])
    assert client.get("accounts", key, min_position=position)["balance"] == 150


def test_a_retry_answers_for_the_command_not_an_earlier_attempt():
    """After a timeout the client resends with the same id; the node holds the
    retry behind the first attempt and decides it afresh when the first one
    fails. The failure of the first attempt is not the command's outcome: the
    retry's `ok` is. A node stand-in on loopback plays that order."""
    import threading
    import msgpack
    import zmq
    context = zmq.Context.instance()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    port = router.bind_to_random_port("tcp://127.0.0.1")

    def node():
        first, body = router.recv_multipart()
        second, _ = router.recv_multipart()          # the retry, held
        id = msgpack.unpackb(body)["id"]
        router.send_multipart([first, msgpack.packb(
            {"id": id, "ok": False, "error": "internal", "message": "not written"})])
        router.send_multipart([second, msgpack.packb(
            {"id": id, "ok": True, "stream": "account/1", "version": 1, "position": 7,
             "events": 1, "duplicate": False})])

    thread = threading.Thread(target=node, daemon=True)
    thread.start()
    with zcqrs.Client(command="tcp://127.0.0.1:%d" % port) as client:
        result = client.send("account", "1", "open", {"owner": "x"}, timeout=0.5, retries=1)
    thread.join(5)
    router.close()
    assert result.position == 7 and not result.duplicate


def test_reply_fields_of_the_decision(client):
    """The bank's deposit and withdraw add `balance` to the reply: it is in
    result.reply, the same for a duplicate, and send_many's results have it."""
    key = uniq()
    opened = client.send("account", key, "open", {"owner": "rae", "overdraft": 100})
    assert opened.reply == {}                       # open adds nothing
    command_id = uniq("dep-")
    deposited = client.send("account", key, "deposit", {"amount": 250}, id=command_id)
    assert deposited.reply == {"balance": 250}
    assert deposited.reply["balance"] == 250
    with pytest.raises(TypeError):
        deposited.reply["balance"] = 0              # read-only
    again = client.send("account", key, "deposit", {"amount": 250}, id=command_id)
    assert again.duplicate and again.reply == {"balance": 250}
    assert again.version == deposited.version
    outcomes = list(client.send_many([("account", key, "withdraw", {"amount": 300}),
                                      ("account", key, "withdraw", {"amount": 100}),
                                      ("account", key, "deposit", {"amount": 5})]))
    assert isinstance(outcomes[1], zcqrs.Rejected)  # -50 - 100 < -100
    assert [o.reply["balance"] for o in (outcomes[0], outcomes[2])] == [-50, -45]


def test_command_result_stays_a_tuple_of_its_fields():
    """Built positionally without reply, a result has an empty one, compares
    as before, and hashes whatever its reply holds."""
    plain = zcqrs.CommandResult("i", "account/1", 1, 7, 1, False)
    assert plain.reply == {} and plain.group is None and plain.node is None
    assert plain == zcqrs.CommandResult("i", "account/1", 1, 7, 1, False, None, None, {})
    assert plain != plain._replace(reply={"balance": 1})
    assert hash(plain._replace(reply={"items": [1, 2]})) == hash(plain)
    assert zcqrs.CommandResult._fields[-1] == "reply"
