"""Python projections: handlers, checkpoints, restart mid-stream == the server's view."""

import json
import os
import random

import pytest

import zcqrs
from conftest import uniq


class Balances(zcqrs.Projection):
    """The `accounts` view's balances, rebuilt in Python."""

    def initial_state(self):
        return {}

    @zcqrs.on("opened", aggregate="account")
    def opened(self, event):
        self.state[event["key"]] = 0

    @zcqrs.on("deposited")
    def deposited(self, event):
        self.state[event["key"]] += event["data"]["amount"]

    @zcqrs.on("withdrawn")
    def withdrawn(self, event):
        self.state[event["key"]] -= event["data"]["amount"]


def workload(keys, count, rng):
    for _ in range(count):
        key = rng.choice(keys)
        kind = rng.choice(("deposit", "deposit", "withdraw"))
        yield ("account", key, kind, {"amount": rng.randint(1, 500)})


def server_balances(client, position):
    rows = client.list("accounts", min_position=position, page_size=1000)
    return {row["key"]: row["balance"] for row in rows}


@pytest.fixture
def node(tmp_path):
    with zcqrs.Node(str(tmp_path / "data"), heartbeat_ms=100) as running:
        yield running


def test_restarted_mid_stream_ends_equal_to_the_view(node, tmp_path):
    rng = random.Random(7)
    checkpoint = str(tmp_path / "balances.json")
    keys = ["a%03d" % index for index in range(50)]
    with node.client() as client:
        list(client.send_many(("account", key, "open", {"owner": "p"}) for key in keys))
        list(client.send_many(workload(keys, 1500, rng)))
        middle = client.head() // 2

        # first run: stops half way, checkpointed
        first = Balances(checkpoint)
        applied = first.run(client, until=middle, checkpoint_every=100)
        assert first.position == middle and applied == middle
        saved = json.load(open(checkpoint))
        assert saved["position"] == middle and saved["state"] == first.state
        assert [name for name in os.listdir(tmp_path) if name.endswith(".tmp")] == []

        # a "crash": events applied after the checkpoint but never saved
        crashed = Balances(checkpoint)
        for event in client.read(middle + 1, limit=100):
            crashed.apply(event)
        del crashed

        # more commands meanwhile, then a restart from the checkpoint
        last = list(client.send_many(workload(keys, 1500, rng)))[-1]
        head = client.head()
        resumed = Balances(checkpoint)
        assert resumed.position == middle
        applied = resumed.run(client, until="head")
        assert applied == head - middle             # nothing applied twice, nothing skipped
        assert resumed.position == head >= last.position
        assert resumed.state == server_balances(client, head)
        assert json.load(open(checkpoint))["position"] == head

        # an event at or below the position is never applied again
        event = client.read(head)[0]
        assert resumed.apply(event) is False


def test_run_from_a_subscription_and_instance_handlers(node, tmp_path):
    with node.client() as client:
        key = uniq()
        client.send("account", key, "open", {"owner": "q"})
        for amount in (10, 20, 30):
            last = client.send("account", key, "deposit", {"amount": amount})

        counts = zcqrs.Projection()         # no checkpoint: memory only

        @counts.on("deposited")
        def count(state, event):
            state["deposits"] = state.get("deposits", 0) + 1
            state["sum"] = state.get("sum", 0) + event["data"]["amount"]

        @counts.on("opened")
        def replace(state, event):
            return {"opened": event["key"]}            # a returned state replaces it

        with zcqrs.Subscription(client) as sub:
            counts.run(sub, until=last.position)
        assert counts.state == {"opened": key, "deposits": 3, "sum": 60}
        with pytest.raises(ValueError):
            counts.save()

        # idle_timeout stops a run with nothing to do
        assert counts.run(client, idle_timeout=0.2) == 0


def test_a_new_version_starts_over(node, tmp_path):
    checkpoint = str(tmp_path / "v.json")
    with node.client() as client:
        result = client.send("account", uniq(), "open", {"owner": "v"})
        old = Balances(checkpoint)
        old.run(client, until=result.position)

        class BalancesV2(Balances):
            version = 2

        assert BalancesV2(checkpoint).position == 0
        assert Balances(checkpoint).position == result.position


def test_subclass_overrides_a_handler(node):
    class Doubled(Balances):
        def deposited(self, event):            # overrides, still the handler
            self.state[event["key"]] += 2 * event["data"]["amount"]

    with node.client() as client:
        key = uniq()
        client.send("account", key, "open", {"owner": "d"})
        last = client.send("account", key, "deposit", {"amount": 21})
        doubled = Doubled()
        doubled.run(client, until=last.position)
        assert doubled.state[key] == 42


class _Listed(zcqrs.Subscription):
    """A subscription that hands out a fixed list of events."""

    def __init__(self, events):
        self.events = list(events)
        self.client = None

    def next(self, timeout=None):
        return self.events.pop(0) if self.events else None

    def close(self):
        pass


class Sums(zcqrs.Projection):
    def initial_state(self):
        return {"deposits": 0, "sum": 0}

    @zcqrs.on("deposited")
    def deposited(self, event):
        self.state["deposits"] += 1
        if event["data"] is None:
            raise KeyboardInterrupt      # interrupted half way through the event
        self.state["sum"] += event["data"]


def test_a_half_applied_event_is_never_saved(tmp_path):
    """A handler that raises (Ctrl-C included) leaves the state half applied:
    run keeps the last checkpoint instead of saving it, save refuses, and a
    restart applies the event again from the checkpoint, exactly once."""
    path = str(tmp_path / "sums.json")
    sums = Sums(checkpoint=path)
    sums.run(_Listed([{"position": 1, "type": "deposited", "data": 10}]), max_events=1)
    assert json.load(open(path))["position"] == 1
    with pytest.raises(KeyboardInterrupt):
        sums.run(_Listed([{"position": 2, "type": "deposited", "data": 5},
                          {"position": 3, "type": "deposited", "data": None}]),
                 checkpoint_every=1000, checkpoint_seconds=1000)
    saved = json.load(open(path))
    assert saved["position"] == 1 and saved["state"] == {"deposits": 1, "sum": 10}
    with pytest.raises(RuntimeError):
        sums.save()
    again = Sums(checkpoint=path)
    again.run(_Listed([{"position": 2, "type": "deposited", "data": 5},
                       {"position": 3, "type": "deposited", "data": 7}]), max_events=2)
    assert again.position == 3 and again.state == {"deposits": 3, "sum": 22}
