"""Truncating a stream: `$truncate`, the `$truncated` event, and what
`read`, `stream`, views and subscribers see of the removed events."""

import time

from conftest import assert_error, assert_ok, uniq


def truncate(c, key, before, **kw):
    return c.send("account", key, "$truncate", {"before": before}, **kw)


def fill(c, k, deposits):
    """Open k and deposit 1..deposits; returns the positions of the events."""
    positions = [assert_ok(c.open(k))["position"]]
    for amount in range(1, deposits + 1):
        positions.append(assert_ok(c.deposit(k, amount))["position"])
    return positions


def test_truncate_removes_earlier_events(daemon):
    c = daemon.client()
    try:
        k = uniq("tr")
        other = uniq("other")
        positions = []
        # interleave another stream, so the removed positions are not one range
        for amount in range(0, 5):
            if amount == 0:
                positions.append(assert_ok(c.open(k))["position"])
                assert_ok(c.open(other))
            else:
                positions.append(assert_ok(c.deposit(k, amount))["position"])
                assert_ok(c.deposit(other, amount))
        rep = assert_ok(truncate(c, k, 4))
        assert rep["events"] == 1 and rep["version"] == 6
        # the state survives: the balance is still 1+2+3+4
        assert assert_ok(c.deposit(k, 10))["balance"] == 20
        s = assert_ok(c.query("stream", stream="account/" + k))
        assert s["first"] == 4 and s["version"] == 7
        assert [e["version"] for e in s["events"]] == [4, 5, 6, 7]
        assert [e["type"] for e in s["events"]] == [
            "deposited", "deposited", "$truncated", "deposited"]
        assert s["events"][2]["data"] == {"before": 4}
        # a stream read from below `first` starts at first
        s = assert_ok(c.query("stream", stream="account/" + k, **{"from": 2}))
        assert s["events"][0]["version"] == 4
        # read skips the removed positions and names them
        log = assert_ok(c.query("read", **{"from": 1}))
        got = [e["position"] for e in log["events"]]
        for p in positions[:3]:
            assert p not in got
        removed = log["removed"]
        covered = set()
        for lo, hi in removed:
            assert lo <= hi
            covered.update(range(lo, hi + 1))
        assert covered == set(positions[:3])
        assert sorted(got + sorted(covered)) == list(range(1, log["head"] + 1))
        # no `removed` when nothing is skipped
        assert "removed" not in assert_ok(
            c.query("read", **{"from": positions[3]}))
        # idempotent: truncating again below first does nothing
        again = assert_ok(truncate(c, k, 3))
        assert again["events"] == 0
        assert_error(truncate(c, k, 99), "invalid")
        assert_error(truncate(c, uniq("none"), 1), "rejected")
        # views saw every event, `$truncated` is harmless to them
        row = assert_ok(c.get("accounts", k, min_position=c.head()))["row"]
        assert row["balance"] == 20
    finally:
        c.close()


def test_truncated_log_survives_restart_and_rebuild(daemon):
    d = daemon
    c = d.client()
    k = uniq("trr")
    fill(c, k, 6)
    assert_ok(truncate(c, k, 5))
    head = c.head()
    before = assert_ok(c.query("read", **{"from": 1}))
    c.close()
    d.restart()
    c = d.client()
    try:
        after = assert_ok(c.query("read", **{"from": 1}))
        assert after["events"] == before["events"]
        assert after["removed"] == before["removed"]
        # the aggregate loads from the truncation's snapshot
        assert assert_ok(c.deposit(k, 100))["balance"] == 121
        row = assert_ok(c.get("accounts", k, min_position=head + 1))["row"]
        assert row["balance"] == 121
        # a rebuild from the log crosses the hole (the opened event is gone,
        # so the accounts view has no row to patch: the row goes)
        assert_ok(c.query("rebuild", view="totals"))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            views = {v["name"]: v for v in
                     assert_ok(c.query("views"))["views"]}
            if views["totals"]["status"] == "live":
                break
        assert views["totals"]["status"] == "live"
        totals = c.row("totals", "bank", min_position=head + 1)
        # the totals rebuilt from what the log keeps: versions 5-7 (deposits
        # of 4, 5 and 6) and the new 100
        assert totals["balance"] == 4 + 5 + 6 + 100
    finally:
        c.close()


def test_truncation_survives_kill9(daemon):
    # the removed events' index entries are still in memory when the node
    # dies: the restart rebuilds the index from a log that no longer has them
    d = daemon
    c = d.client()
    k = uniq("trk")
    fill(c, k, 4)
    rep = assert_ok(truncate(c, k, 4))
    c.close()
    d.kill9()
    d.start()
    c = d.client()
    try:
        s = assert_ok(c.query("stream", stream="account/" + k))
        assert s["version"] == 6 and s["first"] == 4
        assert [e["version"] for e in s["events"]] == [4, 5, 6]
        assert assert_ok(c.deposit(k, 10))["balance"] == 1 + 2 + 3 + 4 + 10
        again = assert_ok(truncate(c, k, 4, id=rep["id"]))
        assert again["duplicate"] is True
        c.close()
        # a clean stop moves the whole index to RocksDB, where a stream's
        # version is found by probing versions 1, 2, 4, ...
        d.restart()
        c = d.client()
        s = assert_ok(c.query("stream", stream="account/" + k))
        assert s["version"] == 7 and s["first"] == 4
        assert assert_ok(c.deposit(k, 1))["version"] == 8
    finally:
        c.close()
