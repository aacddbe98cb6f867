"""ZCQ/1 section 2: framing, envelopes, pipelining, malformed bodies."""

import struct

import msgpack
import pytest
import zmq

from conftest import (Client, assert_error, assert_ok, pack, raw_roundtrip,
                      recv_multipart, req_roundtrip, socket, uniq, unpack)

LIMIT = 1024 * 1024


def open_body(key=None, cid=None, **extra):
    body = {"id": cid or uniq("id"), "aggregate": "account",
            "key": key or uniq(), "type": "open", "data": {"owner": "ann"}}
    body.update(extra)
    return body


# ---------------------------------------------------------------- envelopes

def test_req_client_command(node):
    body = open_body()
    rep = req_roundtrip(node.command, body)
    assert_ok(rep)
    assert rep["id"] == body["id"]


def test_req_client_query(node):
    rep = req_roundtrip(node.query, {"op": "health", "rid": 7})
    assert_ok(rep)
    assert rep["rid"] == 7


@pytest.mark.parametrize("endpoint", ["command", "query"])
@pytest.mark.parametrize("envelope", [
    [],                              # bare DEALER
    [b""],                           # DEALER speaking like REQ
    [b"hop-a", b""],                 # one ROUTER hop in front of us
    [b"hop-a", b"\x00\x01hop-b", b""],   # two hops, binary identity
])
def test_dealer_envelope_preserved(node, endpoint, envelope):
    if endpoint == "command":
        body = open_body()
        ep = node.command
    else:
        body = {"op": "health", "rid": "env"}
        ep = node.query
    frames = raw_roundtrip(ep, envelope + [pack(body)])
    assert frames[:-1] == envelope, \
        "reply envelope %r != request envelope %r" % (frames[:-1], envelope)
    rep = assert_ok(unpack(frames[-1]))
    if endpoint == "command":
        assert rep["id"] == body["id"]
    else:
        assert rep["rid"] == "env"


def test_router_chained_client(node):
    """REQ -> (our ROUTER/DEALER proxy) -> node: the reply finds its way back
    through the identities the proxy pushed."""
    front = socket(zmq.ROUTER)
    port = front.bind_to_random_port("tcp://127.0.0.1")
    back = socket(zmq.DEALER)
    back.connect(node.command)
    req = socket(zmq.REQ)
    req.connect("tcp://127.0.0.1:%d" % port)
    try:
        body = open_body()
        req.send(pack(body))
        back.send_multipart(recv_multipart(front, what="proxied request"))
        front.send_multipart(recv_multipart(back, what="node reply"))
        rep = unpack(recv_multipart(req)[0])
        assert_ok(rep)
        assert rep["id"] == body["id"]
    finally:
        for s in (front, back, req):
            s.close(0)


# --------------------------------------------------------------- pipelining

def test_dealer_pipelines_1000_commands(node):
    c = Client(node)
    try:
        ids = {}
        keys = [uniq("p") for _ in range(100)]
        for k in keys:
            body = open_body(key=k)
            ids[body["id"]] = ("open", k)
            c.send_command(body)
        for i in range(900):
            k = keys[i % len(keys)]
            cid = uniq("dep")
            ids[cid] = ("deposit", k)
            c.send_command({"id": cid, "aggregate": "account", "key": k,
                            "type": "deposit", "data": {"amount": 1}})
        seen = {}
        while len(seen) < len(ids):
            frames = recv_multipart(c.cmd_sock, 30, "pipelined reply")
            rep = unpack(frames[-1])
            assert rep["id"] in ids, rep
            assert rep["id"] not in seen, "two replies for %r" % rep["id"]
            seen[rep["id"]] = rep
        assert len(seen) == 1000
        for cid, rep in seen.items():
            assert_ok(rep)
            assert rep["stream"] == "account/" + ids[cid][1]
            assert rep["events"] == 1 and rep["duplicate"] is False
        # 1,000 one-event commands took 1,000 consecutive positions
        positions = sorted(r["position"] for r in seen.values())
        assert positions == list(range(positions[0], positions[0] + 1000))
        # each account got its open then 9 deposits, in order
        for k in keys:
            row = c.synced_row("accounts", k)
            assert row["balance"] == 9 and row["version"] == 10
        # no stray reply
        assert not c.cmd_sock.poll(100)
    finally:
        c.close()


def test_dealer_pipelines_queries_by_rid(node):
    c = Client(node)
    try:
        for i in range(200):
            c.send_query({"op": "health" if i % 2 else "views", "rid": i})
        got = {}
        while len(got) < 200:
            rep = unpack(recv_multipart(c.q_sock)[-1])
            assert_ok(rep)
            got[rep["rid"]] = rep
        assert set(got) == set(range(200))
        for rid, rep in got.items():
            assert ("node" in rep) if rid % 2 else ("views" in rep)
    finally:
        c.close()


# ------------------------------------------------------------- unknown keys

def test_unknown_keys_ignored_command(client):
    body = open_body(zzz_future=1, extension={"a": [1, 2]})
    rep = assert_ok(client.command(body))
    assert rep["version"] == 1 and rep["events"] == 1


def test_unknown_keys_ignored_query(client):
    assert_ok(client.query("health", future_flag=True, x={"y": 1}))


def test_keys_are_case_sensitive(client):
    rep = client.command({"ID": "x", "id": uniq("id"), "Aggregate": "loan",
                          "aggregate": "account", "key": uniq(),
                          "type": "open", "data": {"owner": "ann"}})
    assert_ok(rep)
    # `Type` is not `type`: the required field is missing
    cid = uniq("id")
    rep = client.command({"id": cid, "aggregate": "account", "key": uniq(),
                          "Type": "open", "data": {"owner": "ann"}})
    assert_error(rep, "invalid")
    assert rep["id"] == cid
    rep = client.raw_query({"OP": "health"})
    assert_error(rep, "invalid")


# -------------------------------------------------------- malformed bodies

GOOD = pack(open_body(cid="trunc-probe", key="trunc-probe"))

BAD_BODIES = {
    "array": pack([1, 2, 3]),
    "int": pack(42),
    "string": pack("open account 42"),
    "nil": pack(None),
    "binary": pack(b"\x81\xa2id"),
    "non-string-keys": pack({1: "x", 2: "y"}),
    "garbage": b"\xc1\xc1\xc1",
    "text": b"hello",
    "truncated-half": GOOD[:len(GOOD) // 2],
    "truncated-1": GOOD[:-1],
    "truncated-header": b"\x87",
    "trailing-byte": pack(open_body()) + b"\x00",
    "trailing-map": pack(open_body()) + pack({"a": 1}),
}


def _assert_invalid_frames(frames, envelope=()):
    assert list(frames[:-1]) == list(envelope), frames[:-1]
    rep = unpack(frames[-1])
    return assert_error(rep, "invalid")


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
@pytest.mark.parametrize("endpoint", ["command", "query"])
def test_malformed_body_is_invalid(node, endpoint, name):
    ep = node.command if endpoint == "command" else node.query
    _assert_invalid_frames(raw_roundtrip(ep, [BAD_BODIES[name]]))
    # REQ envelope too
    _assert_invalid_frames(raw_roundtrip(ep, [b"", BAD_BODIES[name]]),
                           [b""])


@pytest.mark.parametrize("endpoint", ["command", "query"])
def test_every_truncation_is_invalid(node, endpoint):
    body = GOOD if endpoint == "command" else pack(
        {"op": "get", "view": "accounts", "key": "x", "rid": 1})
    ep = node.command if endpoint == "command" else node.query
    s = socket(zmq.DEALER)
    s.connect(ep)
    try:
        for n in range(1, len(body)):
            s.send_multipart([b"", body[:n]])
            frames = recv_multipart(s, what="reply to %d-byte prefix" % n)
            rep = unpack(frames[-1])
            assert rep.get("error") == "invalid", (n, body[:n], rep)
        # the socket is still served
        s.send_multipart([b"", body])
        frames = recv_multipart(s)
        assert unpack(frames[-1]).get("error") != "invalid"
    finally:
        s.close(0)


@pytest.mark.parametrize("endpoint", ["command", "query"])
def test_empty_body_is_invalid(node, endpoint):
    ep = node.command if endpoint == "command" else node.query
    _assert_invalid_frames(raw_roundtrip(ep, [b"", b""]), [b""])


def _padded(body, size):
    """body plus an unknown `pad` key so that the packed size is `size`."""
    body = dict(body, pad="")
    n = size - len(pack(body))
    for _ in range(5):      # the str header grows with the length
        body["pad"] = "x" * n
        raw = pack(body)
        if len(raw) == size:
            break
        n += size - len(raw)
    assert len(raw) == size, (len(raw), size)
    return raw


@pytest.mark.parametrize("endpoint", ["command", "query"])
def test_oversize_body_is_invalid(node, endpoint):
    if endpoint == "command":
        ep, body = node.command, open_body()
    else:
        ep, body = node.query, {"op": "health", "rid": "big"}
    _assert_invalid_frames(
        raw_roundtrip(ep, [b"", _padded(body, LIMIT + 1)]), [b""])
    if endpoint == "command":
        # nothing was applied
        c = Client(node)
        try:
            assert c.stream("account/" + body["key"])["version"] == 0
        finally:
            c.close()
    big = _padded(body, 3 * LIMIT)
    _assert_invalid_frames(raw_roundtrip(ep, [b"", big]), [b""])


@pytest.mark.parametrize("endpoint", ["command", "query"])
def test_body_at_the_limit_is_accepted(node, endpoint):
    if endpoint == "command":
        ep, body = node.command, open_body()
    else:
        ep, body = node.query, {"op": "health", "rid": "big"}
    frames = raw_roundtrip(ep, [b"", _padded(body, LIMIT)])
    assert_ok(unpack(frames[-1]))


def test_configured_request_limit(daemon_factory):
    d = daemon_factory(extra=["--request-limit", "4096"])
    body = open_body()
    _assert_invalid_frames(raw_roundtrip(d.command, [_padded(body, 4097)]))
    assert_ok(unpack(raw_roundtrip(d.command,
                                   [_padded(body, 4000)])[-1]))
    _assert_invalid_frames(raw_roundtrip(
        d.query, [_padded({"op": "health"}, 4097)]))


@pytest.mark.parametrize("endpoint", ["command", "query"])
def test_bad_client_does_not_disturb_others(node, endpoint):
    """Client A floods malformed and oversize bodies; client B, interleaved,
    keeps getting correct answers; A itself is still served afterwards."""
    ep = node.command if endpoint == "command" else node.query
    a = socket(zmq.DEALER)
    a.connect(ep)
    b = Client(node)
    try:
        bad = list(BAD_BODIES.values()) + [_padded({"op": "x"}, LIMIT + 10)]
        for raw in bad:
            a.send_multipart([b"", raw])
        for i in range(20):
            if endpoint == "command":
                assert_ok(b.open(uniq()))
            else:
                assert_ok(b.query("health"))
        for raw in bad:
            frames = recv_multipart(a, what="reply to a bad body")
            assert unpack(frames[-1]).get("error") == "invalid", frames
        if endpoint == "command":
            a.send_multipart([b"", pack(open_body())])
        else:
            a.send_multipart([b"", pack({"op": "health"})])
        assert_ok(unpack(recv_multipart(a)[-1]))
        assert node.running
    finally:
        a.close(0)
        b.close()


def test_failure_replies_have_ok_error_message(client):
    for rep in (client.command({"id": uniq(), "aggregate": "account"}),
                client.raw_query({"op": 5})):
        assert rep["ok"] is False
        assert isinstance(rep["error"], str)
        assert isinstance(rep["message"], str) and rep["message"]


def test_msgpack_ext_and_float_values_do_not_break_the_node(client):
    """Values of any MessagePack type in unknown keys are skipped safely."""
    body = open_body()
    raw = msgpack.packb(dict(body, x=msgpack.ExtType(5, b"abc"), f=1.5,
                             n=None, b=b"\x00\xff", big=2**63),
                        use_bin_type=True)
    client.cmd_sock.send(raw)
    rep = client.wait_command(body["id"])
    assert_ok(rep)


def _pack_wide(o):
    """MessagePack in its widest forms (map32, str32, array32, signed
    int64): valid MessagePack that other languages' encoders may emit."""
    if isinstance(o, dict):
        return b"\xdf" + struct.pack(">I", len(o)) + b"".join(
            _pack_wide(k) + _pack_wide(v) for k, v in o.items())
    if isinstance(o, list):
        return b"\xdd" + struct.pack(">I", len(o)) + b"".join(
            _pack_wide(v) for v in o)
    if isinstance(o, str):
        b = o.encode()
        return b"\xdb" + struct.pack(">I", len(b)) + b
    if isinstance(o, bool):
        return b"\xc3" if o else b"\xc2"
    if isinstance(o, int):
        return b"\xd3" + struct.pack(">q", o)
    if o is None:
        return b"\xc0"
    raise TypeError(o)


def test_non_minimal_msgpack_encodings(client):
    k = uniq()
    cid = uniq("w")
    client.cmd_sock.send(_pack_wide({
        "id": cid, "aggregate": "account", "key": k, "type": "open",
        "data": {"owner": "ann", "overdraft": 5}, "expect": 0,
        "meta": {"n": 1}}))
    rep = assert_ok(client.wait_command(cid))
    assert rep["version"] == 1
    cid = uniq("w")
    client.cmd_sock.send(_pack_wide({
        "id": cid, "aggregate": "account", "key": k, "type": "deposit",
        "data": {"amount": 7}, "expect": 1}))
    rep = assert_ok(client.wait_command(cid))
    client.q_sock.send(_pack_wide({
        "op": "get", "view": "accounts", "key": k, "rid": "wide",
        "min_position": rep["position"], "timeout_ms": 5000}))
    row = assert_ok(client.wait_query("wide"))["row"]
    assert row["balance"] == 7 and row["owner"] == "ann"
