"""ZCQ/1 section 7: durability modes, restart, crash."""

import pytest

from conftest import Client, assert_error, assert_ok, unpack, recv_multipart


def scenario(c, n_accounts=20, deposits=10):
    """Drive a mix of commands; returns the acknowledged successes."""
    acks = {}
    for i in range(n_accounts):
        k = "acct%03d" % i
        acks[("open", k)] = assert_ok(c.open(k, owner="own%d" % (i % 3),
                                             overdraft=i))
    ids = []
    for j in range(deposits):
        for i in range(n_accounts):
            body = {"id": "dep-%d-%d" % (i, j), "aggregate": "account",
                    "key": "acct%03d" % i, "type": "deposit",
                    "data": {"amount": 10 + j}}
            ids.append(body["id"])
            c.send_command(body)
    for cid in ids:
        acks[cid] = assert_ok(c.wait_command(cid, 30))
    paid = sum(10 + j for j in range(deposits))
    # acct001 has overdraft 1: down to exactly -1
    acks["wd"] = assert_ok(c.withdraw("acct001", paid + 1))
    acks["wd0"] = assert_ok(c.withdraw("acct000", paid))
    acks["close"] = assert_ok(c.close_account("acct000", id="close-0"))
    assert_error(c.withdraw("acct002", 10 ** 9), "rejected")
    return acks


def snapshot(c):
    head = c.head()
    log = c.read_all(1)
    assert [e["position"] for e in log] == list(range(1, head + 1))
    streams = {}
    for e in log:
        streams[e["stream"]] = max(streams.get(e["stream"], 0), e["version"])
    versions = {s: c.stream(s)["version"] for s in streams}
    assert versions == streams
    rows = c.rows("accounts", head, limit=7)
    totals = c.row("totals", "bank", min_position=head)
    return {"head": head, "log": log, "versions": versions, "rows": rows,
            "totals": totals}


def test_fsync_mode_behaves_the_same(daemon_factory):
    d = daemon_factory(durability="fsync")
    c = d.client()
    sub = d.sub("").ready()
    try:
        assert assert_ok(c.query("health"))["durability"] == "fsync"
        acks = scenario(c, n_accounts=10, deposits=5)
        snap = snapshot(c)
        assert snap["head"] == 10 + 50 + 3
        assert snap["totals"] == {"key": "bank", "accounts": 9,
                                  "balance": sum(r["balance"]
                                                 for r in snap["rows"]),
                                  "events": 63}
        assert snap["totals"]["balance"] == 8 * 60 - 1
        assert acks["wd"]["version"] == 7
        rows = {r["key"]: r for r in snap["rows"]}
        assert rows["acct001"]["balance"] == -1
        assert rows["acct000"]["status"] == "closed"
        # duplicate semantics
        again = assert_ok(c.close_account("acct000", id="close-0"))
        assert again["duplicate"] is True
        assert again["position"] == acks["close"]["position"]
        # conflict
        rep = assert_error(c.deposit("acct003", 1, expect=1), "conflict")
        assert rep["version"] == 6
        # every event was published, in order
        got = sub.events_until(lambda t, b: b["position"] == snap["head"])
        assert [b for _, b in got] == snap["log"]
    finally:
        sub.close()
        c.close()


@pytest.mark.parametrize("mode", ["wal", "fsync"])
def test_restart_keeps_everything(daemon_factory, mode):
    d = daemon_factory(durability=mode)
    c = d.client()
    acks = scenario(c)
    before = snapshot(c)
    c.close()
    d.restart()      # SIGTERM must exit 0; then the same dir again
    c = d.client()
    try:
        after = snapshot(c)
        assert after == before
        # every acknowledged command is in the log where its reply said
        by_pos = {e["position"]: e for e in after["log"]}
        for ack in acks.values():
            ev = by_pos[ack["position"]]
            assert ev["command"] == ack["id"]
            assert ev["version"] == ack["version"]
        # deduplication survives the restart
        again = assert_ok(c.close_account("acct000", id="close-0"))
        assert again["duplicate"] is True
        assert again["position"] == acks["close"]["position"]
        # the log continues where it stopped
        rep = assert_ok(c.deposit("acct005", 1))
        assert rep["position"] == before["head"] + 1
        assert rep["version"] == before["versions"]["account/acct005"] + 1
        assert c.query("health")["durability"] == mode
    finally:
        c.close()


def test_kill9_after_acks_loses_nothing(daemon_factory):
    """wal mode: acknowledged events survive kill -9 of the node."""
    d = daemon_factory(durability="wal")
    c = d.client()
    acks = scenario(c, n_accounts=10, deposits=5)
    before = snapshot(c)
    c.close()
    d.kill9()
    d.start()
    c = d.client()
    try:
        after = snapshot(c)
        assert after == before
        by_pos = {e["position"]: e for e in after["log"]}
        for ack in acks.values():
            assert by_pos[ack["position"]]["command"] == ack["id"]
    finally:
        c.close()


def test_kill9_mid_stream_keeps_every_ack(daemon_factory):
    """kill -9 while commands are in flight: every command that was
    acknowledged is in the log, the log has no gap, and the views agree with
    the log after the restart."""
    d = daemon_factory(durability="wal")
    c = d.client()
    sent = {}
    for i in range(50):
        assert_ok(c.open("m%d" % i))
    for i in range(3000):
        body = {"id": "m-%d" % i, "aggregate": "account",
                "key": "m%d" % (i % 50), "type": "deposit",
                "data": {"amount": 1}}
        sent[body["id"]] = body
        c.send_command(body)
    acks = {}
    while len(acks) < 300:
        rep = unpack(recv_multipart(c.cmd_sock, 30)[-1])
        assert_ok(rep)
        acks[rep["id"]] = rep
    d.kill9()
    c.close()
    d.start()
    c = d.client()
    try:
        snap = snapshot(c)
        log = snap["log"]
        assert len(log) >= 50 + len(acks)
        by_pos = {e["position"]: e for e in log}
        for cid, ack in acks.items():
            ev = by_pos.get(ack["position"])
            assert ev is not None and ev["command"] == cid, (ack, ev)
        # nothing but what we sent, nothing twice
        cmds = [e["command"] for e in log[50:]]
        assert len(cmds) == len(set(cmds))
        assert set(cmds) <= set(sent)
        # views rebuilt/caught up from the log
        bal = {}
        for e in log:
            if e["type"] == "deposited":
                bal[e["key"]] = bal.get(e["key"], 0) + e["data"]["amount"]
        for r in snap["rows"]:
            assert r["balance"] == bal.get(r["key"], 0), r
        assert snap["totals"]["events"] == len(log)
        # retrying every command is safe: acknowledged ones are duplicates
        pending = list(sent)
        for cid in pending:
            c.send_command(sent[cid])
        for cid in pending:
            rep = assert_ok(c.wait_command(cid, 30))
            if cid in acks:
                assert rep["duplicate"] is True
                assert rep["position"] == acks[cid]["position"]
        final = snapshot(c)
        assert final["totals"]["balance"] == 3000
    finally:
        c.close()


def test_data_dir_reused_by_same_node_id(daemon_factory, tmp_path):
    d = daemon_factory(data=tmp_path / "n", node="alpha")
    c = Client(d)
    assert_ok(c.open("a"))
    c.close()
    d.restart()
    c = Client(d)
    try:
        ev = c.read_all(1)[0]
        assert ev["node"] == "alpha"
        assert c.query("health")["node"] == "alpha"
    finally:
        c.close()


def test_published_events_survive_kill9(daemon_factory):
    """Events are published only once durable: whatever a subscriber saw
    before a kill -9 is in the log after the restart, unchanged."""
    d = daemon_factory(durability="wal")
    sub = d.sub("").ready()
    c = d.client()
    for i in range(20):
        c.send_command({"id": "o%d" % i, "aggregate": "account",
                        "key": "p%d" % i, "type": "open",
                        "data": {"owner": "o"}})
    for i in range(3000):
        c.send_command({"id": "d%d" % i, "aggregate": "account",
                        "key": "p%d" % (i % 20), "type": "deposit",
                        "data": {"amount": 1}})
    seen = []
    while len(seen) < 500:
        topic, body, _ = sub.recv()
        if topic != "$heartbeat":
            seen.append(body)
    d.kill9()
    sub.close()
    c.close()
    d.start()
    c = d.client()
    try:
        log = {e["position"]: e for e in c.read_all(1)}
        for ev in seen:
            assert log.get(ev["position"]) == ev
    finally:
        c.close()
