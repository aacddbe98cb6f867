"""Deleting a stream: the `$delete` command and the `$deleted` event."""

from conftest import assert_error, assert_ok, uniq


def delete(c, key, **kw):
    return c.send("account", key, "$delete", **kw)


def test_delete_then_commands_are_rejected(client):
    c = client
    k = uniq("del")
    assert_ok(c.open(k))
    assert_ok(c.deposit(k, 5))
    rep = assert_ok(delete(c, k, id="del-" + k))
    assert rep["stream"] == "account/" + k
    assert rep["version"] == 3 and rep["events"] == 1
    assert rep["duplicate"] is False
    # a retry of the same id is a duplicate with the first result
    again = assert_ok(delete(c, k, id="del-" + k))
    assert again["duplicate"] is True
    assert again["position"] == rep["position"]
    assert again["version"] == 3
    # every later command is rejected, a second delete too
    for reply in (c.deposit(k, 1), c.close_account(k), c.open(k),
                  delete(c, k)):
        assert_error(reply, "rejected")
        assert reply["message"] == "stream account/%s is deleted" % k
    # expect is still checked first
    assert_error(c.deposit(k, 1, expect=2), "conflict")
    # the stream answers as deleted; its events stay
    s = assert_ok(c.query("stream", stream="account/" + k))
    assert s["deleted"] is True
    assert s["version"] == 3
    assert [e["type"] for e in s["events"]] == ["opened", "deposited",
                                                "$deleted"]
    last = s["events"][-1]
    assert last["data"] == {} and last["version"] == 3
    assert last["position"] == rep["position"]
    # the log holds it like any event
    log = assert_ok(c.query("read", **{"from": rep["position"], "limit": 1}))
    assert log["events"][0]["type"] == "$deleted"
    assert log["events"][0]["stream"] == "account/" + k


def test_delete_of_a_missing_stream_is_rejected(client):
    k = uniq("nodel")
    assert_error(delete(client, k), "rejected")
    # a live stream has no `deleted` key
    assert_ok(client.open(k))
    assert "deleted" not in assert_ok(
        client.query("stream", stream="account/" + k))


def test_delete_checks_expect_and_payload(client):
    k = uniq("delx")
    assert_ok(client.open(k))
    reply = delete(client, k, expect=5)
    assert_error(reply, "conflict")
    assert reply["version"] == 1
    assert_error(delete(client, k, data=[1]), "invalid")
    assert_error(delete(client, k, data={"hard": "yes"}), "invalid")
    assert_ok(delete(client, k, expect=1))


def test_hard_delete_removes_the_events(daemon):
    d = daemon
    c = d.client()
    k = uniq("delh")
    positions = [assert_ok(c.open(k))["position"],
                 assert_ok(c.deposit(k, 5))["position"]]
    rep = assert_ok(delete(c, k, data={"hard": True}))
    assert rep["version"] == 3
    s = assert_ok(c.query("stream", stream="account/" + k))
    assert s["deleted"] is True and s["first"] == 3 and s["version"] == 3
    assert [e["type"] for e in s["events"]] == ["$deleted"]
    log = assert_ok(c.query("read", **{"from": 1}))
    assert [e["position"] for e in log["events"]][-1] == rep["position"]
    assert log["removed"] == [[positions[0], positions[1]]]
    assert assert_ok(c.get("accounts", k,
                           min_position=rep["position"]))["row"] is None
    c.close()
    d.restart()
    c = d.client()
    try:
        reply = c.deposit(k, 1)
        assert_error(reply, "rejected")
        assert "is deleted" in reply["message"]
        assert assert_ok(c.query("stream", stream="account/" + k))["deleted"]
    finally:
        c.close()


def test_other_dollar_types_are_unknown(client):
    k = uniq("dollar")
    assert_ok(client.open(k))
    for t in ("$deleted", "$del", "$truncated", "$"):
        assert_error(client.send("account", k, t), "unknown")


def test_deleted_account_leaves_the_accounts_view(client):
    c = client
    k = uniq("delv")
    pos = assert_ok(c.open(k, owner="zed"))["position"]
    row = assert_ok(c.get("accounts", k, min_position=pos))["row"]
    assert row["owner"] == "zed"
    pos = assert_ok(delete(c, k))["position"]
    rep = assert_ok(c.get("accounts", k, min_position=pos))
    assert rep["row"] is None


def test_subscriber_sees_deleted(daemon):
    c = daemon.client()
    sub = daemon.sub("account/").ready()
    try:
        k = uniq("dels")
        assert_ok(c.open(k))
        pos = assert_ok(delete(c, k))["position"]
        got = sub.events_until(lambda t, b: b.get("position") == pos)
        mine = [(t, b) for t, b in got if b.get("key") == k]
        assert [b["type"] for _, b in mine] == ["opened", "$deleted"]
        assert mine[-1][0] == "account/%s/" % k
    finally:
        sub.close()
        c.close()


def test_restart_keeps_the_stream_deleted(daemon):
    d = daemon
    c = d.client()
    k = uniq("delr")
    assert_ok(c.open(k))
    for _ in range(3):
        assert_ok(c.deposit(k, 1))
    assert_ok(delete(c, k))
    c.close()
    d.restart()
    c = d.client()
    try:
        reply = c.deposit(k, 1)
        assert_error(reply, "rejected")
        assert "is deleted" in reply["message"]
        s = assert_ok(c.query("stream", stream="account/" + k))
        assert s["deleted"] is True and s["version"] == 5
        assert assert_ok(c.get("accounts", k,
                               min_position=c.head()))["row"] is None
    finally:
        c.close()
