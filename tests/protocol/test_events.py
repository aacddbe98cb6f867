"""ZCQ/1 section 4: the events endpoint."""

import time

from conftest import (EVENT_KEYS, Client, assert_ok, check_type, is_int,
                      uniq)


def check_event(topic, body):
    assert isinstance(body, dict), body
    for k, t in EVENT_KEYS.items():
        assert k in body, "event body lacks %r: %r" % (k, body)
        assert check_type(body[k], t), "%r should be %s: %r" % (k, t, body)
    assert "data" in body, body
    assert body["stream"] == "%s/%s" % (body["aggregate"], body["key"])
    assert topic == body["stream"] + "/", (topic, body)
    assert body["position"] >= 1 and body["version"] >= 1


def test_sub_all_gets_topic_and_body(node):
    sub = node.sub("").ready()
    c = Client(node)
    try:
        k = uniq()
        meta = {"user": "ann", "trace": uniq("t")}
        r1 = assert_ok(c.open(k, owner="ann", overdraft=50, meta=meta))
        r2 = assert_ok(c.deposit(k, 120))
        r3 = assert_ok(c.withdraw(k, 20))
        r4 = assert_ok(c.withdraw(k, 100))
        r5 = assert_ok(c.deposit(k, 0 + 1))
        reps = [r1, r2, r3, r4, r5]
        got = sub.events_until(lambda t, b: b.get("command") == r5["id"])
        got = [(t, b) for t, b in got if b["stream"] == "account/" + k]
        assert [b["command"] for _, b in got] == [r["id"] for r in reps]
        t0 = int(time.time() * 1e6)
        for (topic, body), rep in zip(got, reps):
            check_event(topic, body)
            assert topic == "account/%s/" % k
            assert body["aggregate"] == "account" and body["key"] == k
            assert body["position"] == rep["position"]
            assert body["version"] == rep["version"]
            assert body["node"] == "node1"      # zcqrsd's default node id
            assert abs(body["time"] - t0) < 120 * 1e6, \
                "time must be microseconds since the epoch: %r" % body
        assert got[0][1]["meta"] == meta
        assert all(b["meta"] == {} for _, b in got[1:])
        assert [b["type"] for _, b in got] == [
            "opened", "deposited", "withdrawn", "withdrawn", "deposited"]
        assert got[0][1]["data"] == {"owner": "ann", "overdraft": 50}
        assert got[1][1]["data"] == {"amount": 120}
        assert got[2][1]["data"] == {"amount": 20}
        times = [b["time"] for _, b in got]
        assert times == sorted(times)
    finally:
        sub.close()
        c.close()


def test_positions_consecutive(node):
    sub = node.sub("").ready()
    c = Client(node)
    try:
        keys = [uniq() for _ in range(10)]
        ids = []
        for k in keys:
            body = {"id": uniq("o"), "aggregate": "account", "key": k,
                    "type": "open", "data": {"owner": "bob"}}
            ids.append(body["id"])
            c.send_command(body)
        for i in range(490):
            body = {"id": uniq("d"), "aggregate": "account",
                    "key": keys[i % 10], "type": "deposit",
                    "data": {"amount": i + 1}}
            ids.append(body["id"])
            c.send_command(body)
        reps = [c.wait_command(cid, 30) for cid in ids]
        assert all(r["ok"] for r in reps)
        last = max(r["position"] for r in reps)
        got = sub.events_until(lambda t, b: b.get("position") == last, 30)
        positions = [b["position"] for _, b in got]
        assert positions == list(range(positions[0], last + 1)), \
            "positions must be consecutive"
        mine = [b for _, b in got if b["command"] in set(ids)]
        assert len(mine) == 500
        # the positions the replies announced are the events' positions
        assert sorted(b["position"] for b in mine) == \
            sorted(r["position"] for r in reps)
        # per stream, versions are consecutive from 1
        for k in keys:
            vs = [b["version"] for b in mine if b["key"] == k]
            assert vs == list(range(1, 51))
    finally:
        sub.close()
        c.close()


def test_sub_one_stream(node):
    k = uniq("s")
    sub = node.sub("account/%s/" % k).ready()
    c = Client(node)
    try:
        # k + "0" shares the prefix `account/<k>` but not `account/<k>/`
        others = [k + "0", k + "x", uniq()]
        for o in others:
            assert_ok(c.open(o))
        assert_ok(c.open(k))
        for o in others:
            assert_ok(c.deposit(o, 1))
        last = assert_ok(c.deposit(k, 9))
        got = sub.events_until(lambda t, b: b["command"] == last["id"])
        assert [t for t, _ in got] == ["account/%s/" % k] * 2
        assert [b["version"] for _, b in got] == [1, 2]
        for t, b in got:
            check_event(t, b)
    finally:
        sub.close()
        c.close()


def test_sub_one_aggregate_type(node):
    sub = node.sub("account/").ready()
    c = Client(node)
    try:
        k = uniq()
        rep = assert_ok(c.open(k))
        got = sub.events_until(lambda t, b: b["command"] == rep["id"])
        assert all(t.startswith("account/") for t, _ in got)
    finally:
        sub.close()
        c.close()


def test_heartbeat(daemon_factory):
    d = daemon_factory(node="hb-node")
    sub = d.sub("$heartbeat")
    c = Client(d)
    try:
        beats = []
        while len(beats) < 3:
            topic, body, at = sub.recv(3.0)
            assert topic == "$heartbeat"
            beats.append((body, at))
        for body, _ in beats:
            assert set(body) >= {"node", "head", "time"}, body
            assert body["node"] == "hb-node"
            assert is_int(body["head"]) and is_int(body["time"])
            assert abs(body["time"] - time.time() * 1e6) < 120e6
            assert body["head"] == 0
        for (b1, t1), (b2, t2) in zip(beats, beats[1:]):
            assert t2 - t1 <= 1.0, "heartbeats %.3fs apart" % (t2 - t1)
            assert 0 < b2["time"] - b1["time"] <= 1_000_000, (b1, b2)
        # head follows the log
        rep = assert_ok(c.open(uniq()))
        deadline = time.monotonic() + 3
        while True:
            assert time.monotonic() < deadline, "heartbeat head stayed behind"
            topic, body, _ = sub.recv(2.0)
            if body["head"] == rep["position"]:
                break
            assert body["head"] < rep["position"]
    finally:
        sub.close()
        c.close()


def test_heartbeats_reach_sub_all_not_others(node):
    """Subscribers to "" get heartbeats; a subscriber to one stream only
    gets that stream."""
    all_ = node.sub("")
    one = node.sub("account/" + uniq() + "/")
    try:
        topic, body, _ = all_.recv(2.0)
        while topic != "$heartbeat":
            topic, body, _ = all_.recv(2.0)
        # nothing for the one-stream subscriber within two heartbeat periods
        assert not one.sock.poll(1100)
    finally:
        all_.close()
        one.close()


def test_published_bodies_equal_log(node):
    """A subscriber that fills a gap with `read` gets the same bodies."""
    sub = node.sub("").ready()
    c = Client(node)
    try:
        k = uniq()
        reps = [assert_ok(c.open(k, meta={"m": 1})),
                assert_ok(c.deposit(k, 3)), assert_ok(c.withdraw(k, 2))]
        got = sub.events_until(lambda t, b: b["command"] == reps[-1]["id"])
        published = {b["position"]: b for _, b in got}
        first = reps[0]["position"]
        rep = assert_ok(c.query("read", **{"from": first, "limit": 3}))
        assert len(rep["events"]) == 3
        for ev in rep["events"]:
            assert ev == published[ev["position"]]
    finally:
        sub.close()
        c.close()


def test_rejected_and_duplicate_publish_nothing(node):
    k = uniq()
    sub = node.sub("account/%s/" % k).ready()
    c = Client(node)
    try:
        cid = uniq("o")
        assert_ok(c.open(k, id=cid))
        assert c.open(k)["error"] == "rejected"
        assert c.open(k, id=cid)["duplicate"] is True
        assert c.deposit(k, -1)["error"] == "invalid"
        assert c.deposit(k, 1, expect=7)["error"] == "conflict"
        last = assert_ok(c.deposit(k, 1))
        got = sub.events_until(lambda t, b: b["command"] == last["id"])
        assert [b["command"] for _, b in got] == [cid, last["id"]]
    finally:
        sub.close()
        c.close()


def test_an_event_over_the_publish_limit_is_read_not_sent(daemon_factory):
    """An event body over `publish-limit` never travels on the events
    endpoint (a subscriber's queue is bounded in bytes); a heartbeat whose
    head is its position takes its place at once, and `read` serves it."""
    d = daemon_factory(extra=["--publish-limit", "4096", "--heartbeat-ms", "1000"])
    sub = d.sub("").ready()
    c = Client(d)
    try:
        k = uniq()
        small = assert_ok(c.open(k, owner="ann"))
        # a command's meta is stored with each of its events
        big = assert_ok(c.open(uniq(), owner="bea", meta={"blob": "b" * 8000}))
        after = assert_ok(c.deposit(k, 5))
        assert small["position"] < big["position"] < after["position"]
        got = sub.events_until(lambda t, b: b.get("command") == after["id"],
                               heartbeats=True)
        positions = [b["position"] for t, b in got if t != "$heartbeat"]
        assert big["position"] not in positions, "the big event was sent"
        assert small["position"] in positions and after["position"] in positions
        # the heartbeat naming the withheld event's position comes before
        # the next event
        order = [(t, b.get("head", b.get("position"))) for t, b in got]
        hb = order.index(("$heartbeat", big["position"]))
        assert hb < order.index(("account/%s/" % k, after["position"]))
        events = c.query("read", **{"from": big["position"], "limit": 1})
        assert_ok(events)
        assert events["events"][0]["command"] == big["id"]
        assert events["events"][0]["meta"]["blob"] == "b" * 8000
        stats = assert_ok(c.query("stats"))
        assert stats["stats"]["events_withheld"] == 1
    finally:
        sub.close()
        c.close()


def test_publish_limit_zero_sends_every_event(daemon_factory):
    d = daemon_factory(extra=["--publish-limit", "0"])
    sub = d.sub("").ready()
    c = Client(d)
    try:
        big = assert_ok(c.open(uniq(), owner="bea", meta={"blob": "b" * 200000}))
        got = sub.events_until(lambda t, b: b.get("command") == big["id"])
        assert got[-1][1]["meta"]["blob"] == "b" * 200000
    finally:
        sub.close()
        c.close()
