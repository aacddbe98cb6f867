"""ZCQ/1 section 5: queries and reads on the query endpoint."""

import time

import pytest
import zmq

from conftest import (EVENT_KEYS, Client, assert_error, assert_ok,
                      check_type, is_int, pack, recv_multipart,
                      req_roundtrip, socket, uniq, unpack)


def view_reply(rep):
    """Every successful view reply: ok, position, head (ints)."""
    assert_ok(rep)
    assert is_int(rep.get("position")), "view reply lacks position: %r" % rep
    assert is_int(rep.get("head")), "view reply lacks head: %r" % rep
    assert 0 <= rep["position"] <= rep["head"], rep
    return rep


def check_row(row, key):
    assert isinstance(row, dict), row
    assert row["key"] == key, row


@pytest.fixture(scope="module")
def people(node):
    """Three owners with a few accounts each, in a shared node."""
    c = Client(node)
    tag = uniq("")
    owners = {"ann" + tag: [], "bob" + tag: [], "cy" + tag: []}
    for i, owner in enumerate(sorted(owners) * 5):
        k = "%s-%02d-%s" % (tag, i, owner[:2])
        assert_ok(c.open(k, owner=owner))
        owners[owner].append(k)
    pos = assert_ok(c.deposit(owners["ann" + tag][0], 10))["position"]
    c.close()
    return {"tag": tag, "owners": owners, "position": pos}


# ------------------------------------------------------------ rid

@pytest.mark.parametrize("rid", [1, "r-1", 0, -5, 2 ** 40, [1, "a"],
                                 {"n": 1}, True, 1.5, b"\x00\x01", None,
                                 ""],
                         ids=lambda r: type(r).__name__ + repr(r)[:10])
def test_rid_echoed_any_value(node, rid):
    rep = req_roundtrip(node.query, {"op": "health", "rid": rid})
    assert_ok(rep)
    assert "rid" in rep and rep["rid"] == rid, rep
    assert type(rep["rid"]) is type(rid), rep


def test_rid_echoed_on_errors(client):
    for body in ({"op": "nope", "rid": "e1"}, {"rid": "e2"},
                 {"op": "get", "view": "nope", "key": "x", "rid": "e3"},
                 {"op": "get", "view": "accounts", "rid": "e4"}):
        client.send_query(body)
        rep = client.wait_query(body["rid"])
        assert rep["ok"] is False and rep["rid"] == body["rid"], rep


def test_no_rid_works(node):
    rep = req_roundtrip(node.query, {"op": "health"})
    assert_ok(rep)


def test_pipelined_mixed_queries(node, people):
    s = socket(zmq.DEALER)
    s.connect(node.query)
    try:
        owners = people["owners"]
        expect = {}
        for i, (owner, keys) in enumerate(sorted(owners.items()) * 30):
            rid = [i, owner]
            s.send(pack({"op": "count", "view": "accounts", "index": "owner",
                         "value": owner, "rid": rid,
                         "min_position": people["position"]}))
            expect[(i, owner)] = len(keys)
        for _ in range(len(expect)):
            rep = unpack(recv_multipart(s)[-1])
            view_reply(rep)
            assert rep["count"] == expect.pop(tuple(rep["rid"]))
        assert not expect
    finally:
        s.close(0)


# ------------------------------------------------------------ get

def test_get(client, people):
    k = people["owners"]["ann" + people["tag"]][0]
    rep = view_reply(client.get("accounts", k,
                                min_position=people["position"]))
    check_row(rep["row"], k)
    assert rep["row"]["balance"] == 10
    rep = view_reply(client.get("accounts", uniq("absent")))
    assert "row" in rep and rep["row"] is None
    rep = view_reply(client.get("totals", "bank"))
    check_row(rep["row"], "bank")


def test_get_errors(client):
    assert_error(client.query("get", view="nope", key="x"), "unknown")
    assert_error(client.query("get", key="x"), "invalid")
    assert_error(client.query("get", view="accounts"), "invalid")
    assert_error(client.query("get", view="accounts", key=5), "invalid")
    assert_error(client.query("get", view=5, key="x"), "invalid")


# ------------------------------------------------------------ list

def list_all(client, limit, **kw):
    rows, after, pages = [], None, 0
    while True:
        q = dict(kw, view="accounts", limit=limit)
        if after is not None:
            q["after"] = after
        rep = view_reply(client.query("list", **q))
        assert isinstance(rep["rows"], list) and "next" in rep, rep
        assert len(rep["rows"]) <= limit
        rows += rep["rows"]
        pages += 1
        assert pages < 10000
        if rep["next"] is None:
            return rows, pages
        assert rep["rows"], "a page with a cursor must not be empty"
        after = rep["next"]


def test_list_by_index_paged(client, people):
    for owner, keys in people["owners"].items():
        rep = view_reply(client.query("list", view="accounts", index="owner",
                                      value=owner,
                                      min_position=people["position"]))
        assert [r["key"] for r in rep["rows"]] == sorted(keys)
        assert rep["next"] is None
        for r in rep["rows"]:
            assert r["owner"] == owner
        for limit in (1, 2, 4, 5, 6):
            rows, pages = list_all(client, limit, index="owner", value=owner)
            assert [r["key"] for r in rows] == sorted(keys), limit
            assert pages in (-(-5 // limit), -(-5 // limit) + 1)
    rep = view_reply(client.query("list", view="accounts", index="owner",
                                  value=uniq("nobody")))
    assert rep["rows"] == [] and rep["next"] is None


def test_list_whole_view_key_order(client, people):
    rows, _ = list_all(client, 7)
    keys = [r["key"] for r in rows]
    assert keys == sorted(set(keys), key=lambda k: k.encode()), \
        "rows must come in key order, each once"
    mine = [k for k in keys if k.startswith(people["tag"] + "-")]
    assert len(mine) == 15
    for r in rows:
        assert "key" in r
    # default limit is 100
    rep = view_reply(client.query("list", view="accounts"))
    assert len(rep["rows"]) == min(100, len(keys))
    if len(keys) > 100:
        assert rep["next"] is not None


def test_list_cursor_continues_after_new_rows(client, people):
    """A cursor is a position in key order: rows added before it are not
    returned again, rows after it are."""
    tag = uniq("")
    owner = "dee" + tag
    for i in (1, 3, 5):
        assert_ok(client.open("%s-%d" % (tag, i), owner=owner))
    rep = view_reply(client.query("list", view="accounts", index="owner",
                                  value=owner, limit=2,
                                  min_position=client.head()))
    assert [r["key"] for r in rep["rows"]] == [tag + "-1", tag + "-3"]
    assert rep["next"] is not None
    assert_ok(client.open("%s-4" % tag, owner=owner))
    pos = assert_ok(client.open("%s-0" % tag, owner=owner))["position"]
    rep = view_reply(client.query("list", view="accounts", index="owner",
                                  value=owner, limit=10,
                                  after=rep["next"], min_position=pos))
    assert [r["key"] for r in rep["rows"]] == [tag + "-4", tag + "-5"]
    assert rep["next"] is None


@pytest.mark.parametrize("limit", [0, -1, 1001, "10", 1.0])
def test_list_bad_limit(client, limit):
    assert_error(client.query("list", view="accounts", limit=limit),
                 "invalid")


def test_list_limit_bounds(client):
    assert len(view_reply(client.query("list", view="accounts",
                                       limit=1))["rows"]) == 1
    view_reply(client.query("list", view="accounts", limit=1000))


def test_list_errors(client):
    assert_error(client.query("list", view="nope"), "unknown")
    assert_error(client.query("list", view="accounts", index="status",
                              value="open"), "unknown")
    assert_error(client.query("list", view="accounts", index="nope",
                              value="x"), "unknown")
    assert_error(client.query("list"), "invalid")
    assert_error(client.query("list", view="accounts", index="owner"),
                 "invalid")


# ------------------------------------------------------------ count

def test_count(client, people):
    pos = people["position"]
    for owner, keys in people["owners"].items():
        rep = view_reply(client.query("count", view="accounts",
                                      index="owner", value=owner,
                                      min_position=pos))
        assert is_int(rep["count"]) and rep["count"] == len(keys)
    total = view_reply(client.query("count", view="accounts"))["count"]
    rows, _ = list_all(client, 1000)
    assert total == len(rows)
    assert view_reply(client.query("count", view="totals"))["count"] == 1
    assert view_reply(client.query("count", view="accounts", index="owner",
                                   value=uniq()))["count"] == 0


def test_count_errors(client):
    assert_error(client.query("count", view="nope"), "unknown")
    assert_error(client.query("count", view="accounts", index="nope",
                              value=1), "unknown")
    assert_error(client.query("count"), "invalid")


# ------------------------------------------------------------ read

def test_read(client):
    k = uniq()
    reps = [assert_ok(client.open(k)), assert_ok(client.deposit(k, 2)),
            assert_ok(client.deposit(k, 3))]
    first = reps[0]["position"]
    rep = assert_ok(client.query("read", **{"from": first}))
    assert "position" not in rep, "read replies carry no position: %r" % rep
    assert is_int(rep["head"]) and rep["head"] >= reps[-1]["position"]
    evs = rep["events"]
    assert [e["position"] for e in evs] == list(range(first, rep["head"] + 1))
    for e in evs:
        for key, t in EVENT_KEYS.items():
            assert check_type(e[key], t), (key, e)
        assert "data" in e
    assert [e["command"] for e in evs[:3]] == [r["id"] for r in reps]
    # limit
    rep = assert_ok(client.query("read", **{"from": first, "limit": 2}))
    assert [e["position"] for e in rep["events"]] == [first, first + 1]
    # from past the head: nothing
    head = rep["head"]
    rep = assert_ok(client.query("read", **{"from": head + 1}))
    assert rep["events"] == [] and rep["head"] == head


def test_read_from_one_is_the_whole_log(daemon):
    c = daemon.client()
    try:
        assert assert_ok(c.query("read", **{"from": 1}))["events"] == []
        for i in range(5):
            assert_ok(c.open("r%d" % i))
        rep = assert_ok(c.query("read", **{"from": 1}))
        assert [e["position"] for e in rep["events"]] == [1, 2, 3, 4, 5]
        assert rep["head"] == 5
    finally:
        c.close()


def test_read_default_limit_1000_and_max_10000(daemon):
    c = daemon.client()
    try:
        ids = []
        for i in range(1200):
            body = {"id": "i%d" % i, "aggregate": "account",
                    "key": "k%d" % i, "type": "open",
                    "data": {"owner": "o"}}
            ids.append(body["id"])
            c.send_command(body)
        for cid in ids:
            assert_ok(c.wait_command(cid, 30))
        rep = assert_ok(c.query("read", **{"from": 1}))
        assert len(rep["events"]) == 1000 and rep["head"] == 1200
        assert rep["next"] == 1001          # an extension: where to go on
        rep = assert_ok(c.query("read", **{"from": rep["next"]}))
        assert len(rep["events"]) == 200 and rep["next"] is None
        rep = assert_ok(c.query("read", **{"from": 1, "limit": 10000}))
        assert len(rep["events"]) == 1200 and rep["next"] is None
        assert [e["position"] for e in rep["events"]] == \
            list(range(1, 1201))
    finally:
        c.close()


@pytest.mark.parametrize("keys", [
    {}, {"from": 0}, {"from": -1}, {"from": "1"},
    {"from": 1, "limit": 0}, {"from": 1, "limit": 10001},
    {"from": 1, "limit": "5"}])
def test_read_invalid(client, keys):
    assert_error(client.query("read", **keys), "invalid")


# ------------------------------------------------------------ stream

def test_stream(client):
    k = uniq()
    reps = [assert_ok(client.open(k))] + [
        assert_ok(client.deposit(k, i)) for i in range(1, 6)]
    rep = assert_ok(client.query("stream", stream="account/" + k))
    assert rep["version"] == 6
    evs = rep["events"]
    assert [e["version"] for e in evs] == [1, 2, 3, 4, 5, 6]
    assert [e["type"] for e in evs] == ["opened"] + ["deposited"] * 5
    assert [e["data"].get("amount") for e in evs[1:]] == [1, 2, 3, 4, 5]
    log = {e["position"]: e for e in
           client.read_all(reps[0]["position"])}
    for e in evs:
        assert e["stream"] == "account/" + k
        assert e == log[e["position"]]
    rep = assert_ok(client.query("stream", stream="account/" + k,
                                 **{"from": 3, "limit": 2}))
    assert [e["version"] for e in rep["events"]] == [3, 4]
    assert rep["version"] == 6
    rep = assert_ok(client.query("stream", stream="account/" + k,
                                 **{"from": 7}))
    assert rep["events"] == [] and rep["version"] == 6


def test_stream_absent(client):
    rep = assert_ok(client.query("stream", stream="account/" + uniq()))
    assert rep["events"] == [] and rep["version"] == 0


@pytest.mark.parametrize("keys", [
    {}, {"stream": 5}, {"stream": "account/x", "from": 0},
    {"stream": "account/x", "from": "1"},
    {"stream": "account/x", "limit": 0}])
def test_stream_invalid(client, keys):
    assert_error(client.query("stream", **keys), "invalid")


# ------------------------------------------------------------ views/health

def check_views_list(views):
    assert isinstance(views, list)
    by_name = {}
    for v in views:
        assert isinstance(v["name"], str)
        assert is_int(v["position"]) and is_int(v["rows"])
        assert v["status"] in ("live", "catching_up", "rebuilding"), v
        by_name[v["name"]] = v
    assert {"accounts", "totals"} <= set(by_name), views
    return by_name


def test_views(client):
    k = uniq()
    pos = assert_ok(client.open(k))["position"]
    client.row("accounts", k, min_position=pos)
    rep = assert_ok(client.query("views"))
    views = check_views_list(rep["views"])
    assert views["totals"]["rows"] == 1
    count = view_reply(client.query("count", view="accounts",
                                    min_position=pos))["count"]
    assert views["accounts"]["rows"] == count
    assert views["accounts"]["position"] >= pos


def test_health(client):
    rep = assert_ok(client.query("health"))
    assert isinstance(rep["node"], str) and rep["node"] == "node1"
    assert is_int(rep["head"]) and rep["head"] >= 0
    assert is_int(rep["uptime_ms"]) and rep["uptime_ms"] >= 0
    assert rep["durability"] == "wal"
    assert rep["store"] == "ok"
    check_views_list(rep["views"])
    pos = assert_ok(client.open(uniq()))["position"]
    rep2 = assert_ok(client.query("health"))
    assert rep2["head"] >= pos
    assert rep2["uptime_ms"] >= rep["uptime_ms"]


def test_stats(client):
    rep = assert_ok(client.query("stats"))
    stats = rep["stats"]
    assert isinstance(stats, dict) and stats
    for k, v in stats.items():
        assert isinstance(k, str)
        assert isinstance(v, (int, float)) and not isinstance(v, bool), \
            (k, v)
    before = stats
    assert_ok(client.open(uniq()))
    assert client.open(uniq("x"), owner="")["error"] == "invalid"
    after = assert_ok(client.query("stats"))["stats"]
    changed = [k for k in after if after[k] != before.get(k)]
    assert changed, "counters must move when commands are served"


# ------------------------------------------------------------ min_position

def test_read_your_writes(node):
    c = Client(node)
    try:
        k = uniq()
        assert_ok(c.open(k))
        total = 0
        for i in range(1, 101):
            rep = assert_ok(c.deposit(k, i))
            total += i
            if i % 10 == 0:
                q = view_reply(c.get("accounts", k,
                                     min_position=rep["position"]))
                assert q["position"] >= rep["position"]
                assert q["row"]["balance"] == total
                assert q["row"]["version"] == i + 1
                n = view_reply(c.query("count", view="accounts",
                                       index="owner", value="ann",
                                       min_position=rep["position"]))
                assert n["position"] >= rep["position"]
                lst = view_reply(c.query("list", view="accounts",
                                         min_position=rep["position"]))
                assert lst["position"] >= rep["position"]
    finally:
        c.close()


def test_min_position_waits_for_a_later_write(node):
    """A query for a position not yet written waits, then answers once a
    command reaches it."""
    c = Client(node)
    try:
        k = uniq()
        assert_ok(c.open(k))
        head = c.head()
        c.send_query({"op": "get", "view": "accounts", "key": k,
                      "min_position": head + 1, "timeout_ms": 8000,
                      "rid": "wait"})
        assert not c.q_sock.poll(200), "answered before min_position"
        pos = assert_ok(c.deposit(k, 5))["position"]
        assert pos == head + 1
        rep = view_reply(c.wait_query("wait", 8))
        assert rep["position"] >= pos and rep["row"]["balance"] == 5
    finally:
        c.close()


def test_timeout(client):
    head = client.head()
    t0 = time.monotonic()
    rep = client.get("accounts", "x", min_position=head + 1000,
                     timeout_ms=200)
    took = time.monotonic() - t0
    assert_error(rep, "timeout")
    assert is_int(rep["position"]) and is_int(rep["head"]), rep
    assert rep["head"] >= head and rep["position"] <= rep["head"]
    assert 0.15 <= took < 5, took
    for op, extra in (("list", {}), ("count", {})):
        rep = client.query(op, view="accounts", min_position=head + 1000,
                           timeout_ms=50, **extra)
        assert_error(rep, "timeout")
        assert "position" in rep and "head" in rep


def test_timeout_default_1000ms(client):
    head = client.head()
    t0 = time.monotonic()
    rep = client.get("totals", "bank", min_position=head + 1000)
    took = time.monotonic() - t0
    assert_error(rep, "timeout")
    assert 0.9 <= took < 5, "default timeout_ms is 1000, took %.2fs" % took


def test_min_position_reached_is_immediate(client):
    head = client.head()
    t0 = time.monotonic()
    view_reply(client.get("totals", "bank", min_position=head,
                          timeout_ms=5000))
    view_reply(client.get("totals", "bank", min_position=0))
    assert time.monotonic() - t0 < 2


@pytest.mark.parametrize("keys", [{"min_position": "1"},
                                  {"min_position": -1},
                                  {"timeout_ms": "5"},
                                  {"timeout_ms": -1}])
def test_min_position_invalid(client, keys):
    assert_error(client.get("totals", "bank", **keys), "invalid")


# ------------------------------------------------------------ op errors

def test_op_errors(client):
    assert_error(client.query("drop_table"), "unknown")
    assert_error(client.query(""), "unknown")
    assert_error(client.query("GET", view="accounts", key="x"), "unknown")
    assert_error(client.raw_query({"view": "accounts"}), "invalid")


def test_op_ill_typed_is_invalid(client):
    """Section 6: a missing or ill-typed field is `invalid`; `unknown` is
    for an op name the node does not know."""
    replies = {repr(op): client.raw_query({"op": op})
               for op in (1, True, None, [], {"a": 1}, b"health")}
    wrong = {op: rep for op, rep in replies.items()
             if rep.get("error") != "invalid"}
    assert not wrong, "ill-typed op must be invalid: %r" % wrong


def test_burst_of_answered_queries_loses_none(daemon):
    """Thousands of queries waiting for one position are answered at once
    when a command reaches it: a burst faster than the node's I/O thread
    sends. Every one of them must come back (a reply that meets a full
    pipe waits for it; it is not dropped)."""
    c = Client(daemon)
    try:
        k = uniq()
        assert_ok(c.open(k))
        head = c.head()
        count = 3000
        for n in range(count):
            c.send_query({"op": "get", "view": "accounts", "key": k,
                          "min_position": head + 1, "timeout_ms": 20000,
                          "rid": n})
        # every query has reached the router (it takes them in order)
        assert_ok(c.query("health"))
        assert_ok(c.deposit(k, 7))
        for n in range(count):
            rep = view_reply(c.wait_query(n, 20))
            assert rep["row"]["balance"] == 7
        stats = assert_ok(c.query("stats"))["stats"]
        assert stats["replies_dropped"] == 0, stats
    finally:
        c.close()


def test_reads_of_a_client_that_does_not_read_wait_their_turn(daemon):
    """A client that asks for many large reads and does not read the
    replies: once some of its replies wait for its pipe, its later reads
    wait unanswered (64 at most; past that `unavailable`), nothing of it
    is read and thrown away, and another client's reads are answered
    meanwhile. When it reads, every request has exactly one reply."""
    c = Client(daemon)
    deaf = socket(zmq.DEALER)
    deaf.setsockopt(zmq.RCVHWM, 1)
    deaf.connect(daemon.query)
    try:
        blob = "m" * (64 * 1024)
        for n in range(70):     # 4.4 MiB of log: each read below is a 4 MiB reply
            assert_ok(c.open(uniq(), meta={"blob": blob}))
        count = 300
        for n in range(count):
            deaf.send_multipart([b"", pack({"op": "read", "from": 1, "limit": 10000,
                                            "rid": n})])
        # wait until the node has taken every read: those it could not
        # queue are refused at once
        deadline = time.monotonic() + 30
        while True:
            stats = assert_ok(c.query("stats"))["stats"]
            if stats["reads_refused"] > 0 and stats["reads_waiting"] > 0:
                break
            assert time.monotonic() < deadline, stats
        assert stats["reads_waiting"] <= 64, stats
        # another client's reads are answered while the deaf client's wait
        for n in range(3):
            rep = assert_ok(c.query("read", **{"from": 1, "limit": 5}))
            assert len(rep["events"]) == 5
        assert assert_ok(c.query("stats"))["stats"]["reads_waiting"] > 0
        # the deaf client reads at last: one reply per request, none lost
        replies = {}
        while len(replies) < count:
            frames = recv_multipart(deaf, 30, "read reply")
            rep = unpack(frames[-1])
            assert rep["rid"] not in replies, rep["rid"]
            replies[rep["rid"]] = rep
        refused = [r for r in replies.values() if not r["ok"]]
        assert refused, "no read was refused"
        for rep in refused:
            assert_error(rep, "unavailable")
            assert "reads waiting" in rep["message"]
        assert all(len(r["events"]) > 0 for r in replies.values() if r["ok"])
        stats = assert_ok(c.query("stats"))["stats"]
        assert stats["replies_dropped"] == 0, stats
        assert stats["reads_refused"] == len(refused), stats
        assert stats["reads_waiting"] == 0, stats
    finally:
        deaf.close()
        c.close()
