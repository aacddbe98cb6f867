"""ZCQ/1 section 3: commands on the command endpoint."""

import pytest

from conftest import (Client, assert_error, assert_ok, check_type, is_int,
                      recv_multipart, uniq, unpack)

SUCCESS_KEYS = {"id": str, "stream": str, "version": int, "position": int,
                "events": int, "duplicate": bool}


def check_success(rep, cid=None):
    assert_ok(rep)
    for k, t in SUCCESS_KEYS.items():
        assert k in rep, "success reply lacks %r: %r" % (k, rep)
        assert check_type(rep[k], t), "%r should be %s: %r" % (k, t, rep)
    if cid is not None:
        assert rep["id"] == cid
    return rep


def check_failure(rep, code, cid):
    assert_error(rep, code)
    assert rep.get("id") == cid, "failure reply must carry the id: %r" % rep
    return rep


# ------------------------------------------------------------ success reply

def test_success_reply_keys_and_types(client):
    k = uniq()
    cid = uniq("id")
    head = client.head()
    rep = check_success(client.open(k, id=cid), cid)
    assert rep["stream"] == "account/" + k
    assert rep["version"] == 1
    assert rep["events"] == 1
    assert rep["duplicate"] is False
    assert rep["position"] == head + 1
    rep = check_success(client.deposit(k, 5))
    assert rep["version"] == 2 and rep["position"] == head + 2


def test_failure_reply_keys(client):
    k = uniq()
    cid = uniq("id")
    check_failure(client.deposit(k, 5, id=cid), "rejected", cid)
    assert client.stream("account/" + k)["version"] == 0


def test_positions_increase_by_events_count(client):
    k = uniq()
    last = client.head()
    reps = [client.open(k, overdraft=10)]
    for i in range(1, 20):
        reps.append(client.deposit(k, i) if i % 3 else client.withdraw(k, 1))
    for i, rep in enumerate(reps, 1):
        check_success(rep)
        assert rep["events"] == 1
        assert rep["position"] == last + rep["events"], (last, rep)
        assert rep["version"] == i
        last = rep["position"]
    assert client.head() == last
    # the events of the log are exactly these commands'
    evs = client.read_all(reps[0]["position"])
    assert [e["command"] for e in evs] == [r["id"] for r in reps]


def test_version_is_number_of_events_in_stream(client):
    k = uniq()
    for i in range(1, 6):
        rep = client.open(k) if i == 1 else client.deposit(k, 1)
        assert rep["version"] == i
    s = client.stream("account/" + k)
    assert s["version"] == 5 and len(s["events"]) == 5


def test_zero_event_command():
    pytest.skip("ZCQ/1 allows commands that append 0 events, but the bank "
                "domain has no such command")


# ------------------------------------------------------------ duplicates

def test_duplicate_returns_first_result(client):
    k = uniq()
    assert_ok(client.open(k))
    cid = uniq("dep")
    first = check_success(client.deposit(k, 100, id=cid), cid)
    assert first["duplicate"] is False
    head = client.head()
    again = check_success(client.deposit(k, 100, id=cid), cid)
    assert again["duplicate"] is True
    for key in ("stream", "version", "position", "events"):
        assert again[key] == first[key], (key, first, again)
    assert client.head() == head, "a duplicate must append nothing"
    assert client.synced_row("accounts", k)["balance"] == 100


def test_duplicate_after_stream_moved_on(client):
    """The retry gets the stored first result, not the stream's now."""
    k = uniq()
    cid = uniq("open")
    first = check_success(client.open(k, id=cid), cid)
    assert_ok(client.deposit(k, 7))
    assert_ok(client.deposit(k, 8))
    again = check_success(client.open(k, id=cid), cid)
    assert again["duplicate"] is True
    assert again["version"] == 1 == first["version"]
    assert again["position"] == first["position"]
    assert client.stream("account/" + k)["version"] == 3


def test_duplicate_with_different_payload_not_applied(client):
    k = uniq()
    assert_ok(client.open(k))
    cid = uniq("dep")
    first = check_success(client.deposit(k, 10, id=cid))
    again = check_success(client.deposit(k, 99999, id=cid))
    assert again["duplicate"] is True and again["version"] == first["version"]
    assert client.synced_row("accounts", k)["balance"] == 10


def test_duplicate_ignores_expect(client):
    k = uniq()
    cid = uniq("open")
    first = check_success(client.open(k, id=cid, expect=0))
    assert_ok(client.deposit(k, 1))
    again = check_success(client.open(k, id=cid, expect=0))
    assert again["duplicate"] is True
    assert again["position"] == first["position"]


def test_many_retries_pipelined(node):
    """50 copies of one command in flight at once: applied exactly once,
    every reply is that one result.  Repeated: a race shows up in some
    rounds only."""
    c = Client(node)
    try:
        for round_ in range(5):
            k = uniq()
            assert_ok(c.open(k))
            cid = uniq("dep")
            body = {"id": cid, "aggregate": "account", "key": k,
                    "type": "deposit", "data": {"amount": 3}}
            for _ in range(50):
                c.send_command(body)
            reps = [c.wait_command(cid) for _ in range(50)]
            assert all(r["ok"] for r in reps), reps
            fresh = [r for r in reps if r["duplicate"] is False]
            assert len(fresh) == 1, \
                "round %d: %d of 50 copies answered duplicate:false; " \
                "stream version now %d" % (
                    round_, len(fresh), c.stream("account/" + k)["version"])
            assert {(r["stream"], r["version"], r["position"])
                    for r in reps} == {("account/" + k, 2,
                                        fresh[0]["position"])}, reps
            assert c.stream("account/" + k)["version"] == 2
            assert c.synced_row("accounts", k)["balance"] == 3
    finally:
        c.close()


def test_id_reused_for_another_stream_or_type_is_invalid(node):
    """An id names one command. The same id sent to another stream or with
    another command type is not a retry: it gets `invalid`, never the first
    command's result, and is never applied. Pipelined to many streams at
    once, the id is applied to exactly one of them."""
    c = Client(node)
    try:
        a, b = uniq(), uniq()
        cid = uniq("g")
        first = check_success(c.open(a, id=cid), cid)
        again = assert_error(c.open(b, id=cid), "invalid")
        assert again["id"] == cid
        assert c.stream("account/" + b)["version"] == 0
        other_type = assert_error(c.deposit(a, 5, id=cid), "invalid")
        assert other_type["id"] == cid
        retry = check_success(c.open(a, id=cid), cid)
        assert retry["duplicate"] is True
        assert retry["position"] == first["position"]
        for round_ in range(5):
            keys = [uniq() for _ in range(16)]
            cid = uniq("g")
            for k in keys:
                c.send_command({"id": cid, "aggregate": "account", "key": k,
                                "type": "open", "data": {"owner": "o"}})
            reps = [c.wait_command(cid) for _ in keys]
            applied = ["account/" + k for k in keys
                       if c.stream("account/" + k)["version"] == 1]
            assert len(applied) == 1, \
                "round %d: one id applied to %d streams %r" % (
                    round_, len(applied), applied)
            oks = [r for r in reps if r["ok"]]
            assert len(oks) == 1 and oks[0]["duplicate"] is False, reps
            assert oks[0]["stream"] == applied[0], reps
            refused = [r for r in reps if not r["ok"]]
            assert all(r["error"] == "invalid" for r in refused), refused
    finally:
        c.close()


def test_rejected_command_is_decided_again(client):
    k = uniq()
    assert_ok(client.open(k))
    cid = uniq("wd")
    check_failure(client.withdraw(k, 50, id=cid), "rejected", cid)
    assert_ok(client.deposit(k, 80))
    rep = check_success(client.withdraw(k, 50, id=cid), cid)
    assert rep["duplicate"] is False and rep["version"] == 3
    again = check_success(client.withdraw(k, 50, id=cid), cid)
    assert again["duplicate"] is True
    assert client.synced_row("accounts", k)["balance"] == 30


def test_invalid_command_is_not_remembered(client):
    k = uniq()
    cid = uniq("open")
    rep = client.command({"id": cid, "aggregate": "account", "key": k,
                          "type": "open", "data": {"owner": ""}})
    check_failure(rep, "invalid", cid)
    rep = check_success(client.open(k, id=cid), cid)
    assert rep["duplicate"] is False


def test_conflict_is_not_remembered(client):
    k = uniq()
    assert_ok(client.open(k))
    cid = uniq("dep")
    rep = check_failure(client.deposit(k, 1, id=cid, expect=5), "conflict",
                        cid)
    assert rep["version"] == 1
    rep = check_success(client.deposit(k, 1, id=cid, expect=1), cid)
    assert rep["duplicate"] is False and rep["version"] == 2


# ------------------------------------------------------------ expect

def test_expect_zero_new_stream(client):
    assert check_success(client.open(uniq(), expect=0))["version"] == 1


def test_expect_zero_existing_stream_conflicts(client):
    k = uniq()
    assert_ok(client.open(k))
    assert_ok(client.deposit(k, 1))
    cid = uniq("id")
    rep = check_failure(client.deposit(k, 1, expect=0, id=cid), "conflict",
                        cid)
    assert is_int(rep["version"]) and rep["version"] == 2


def test_expect_match_and_mismatch(client):
    k = uniq()
    assert_ok(client.open(k, expect=0))
    assert check_success(client.deposit(k, 1, expect=1))["version"] == 2
    for wrong in (1, 3, 100):
        cid = uniq("id")
        rep = check_failure(client.deposit(k, 1, expect=wrong, id=cid),
                            "conflict", cid)
        assert rep["version"] == 2
    assert client.stream("account/" + k)["version"] == 2


def test_expect_absent_means_any_version(client):
    k = uniq()
    assert_ok(client.open(k))
    for i in range(3):
        assert_ok(client.deposit(k, 1))


def test_conflict_before_domain_rejection(client):
    """expect is about the stream version; a conflicting command on a
    nonexistent stream is a conflict, whatever the domain would say."""
    k = uniq()
    cid = uniq("id")
    rep = check_failure(client.deposit(k, 1, expect=3, id=cid), "conflict",
                        cid)
    assert rep["version"] == 0


# ------------------------------------------------------------ ordering

def test_commands_to_one_stream_applied_in_order(node):
    c = Client(node)
    try:
        k = uniq()
        assert_ok(c.open(k))
        ids = []
        for amount in range(1, 201):
            cid = uniq("o")
            ids.append(cid)
            c.send_command({"id": cid, "aggregate": "account", "key": k,
                            "type": "deposit", "data": {"amount": amount},
                            "expect": amount})
        reps = [c.wait_command(cid) for cid in ids]
        for amount, rep in enumerate(reps, 1):
            check_success(rep)
            assert rep["version"] == amount + 1
        evs = c.stream("account/" + k, **{"from": 2, "limit": 1000})["events"]
        assert [e["data"]["amount"] for e in evs] == list(range(1, 201))
    finally:
        c.close()


# ------------------------------------------------------------ meta

def test_meta_stored_with_every_event(client):
    k = uniq()
    meta = {"user": "ann", "correlation": uniq("corr"), "n": 3,
            "nested": {"a": [1, 2]}}
    r1 = assert_ok(client.open(k, meta=meta))
    r2 = assert_ok(client.deposit(k, 4))
    evs = client.read_all(r1["position"])
    by_pos = {e["position"]: e for e in evs}
    assert by_pos[r1["position"]]["meta"] == meta
    assert by_pos[r2["position"]]["meta"] == {}


# ------------------------------------------------------------ validation

def base(**over):
    body = {"id": uniq("id"), "aggregate": "account", "key": uniq(),
            "type": "open", "data": {"owner": "ann"}}
    body.update(over)
    return {k: v for k, v in body.items() if v is not Ellipsis}


INVALID = {
    "id-missing": dict(id=...),
    "id-int": dict(id=42),
    "id-nil": dict(id=None),
    "id-bin": dict(id=b"bytes-id"),
    "id-empty": dict(id=""),
    "id-65": dict(id="i" * 65),
    "id-65-bytes-utf8": dict(id="\u00e9" * 32 + "x"),   # 32 chars, 65 bytes
    "aggregate-missing": dict(aggregate=...),
    "aggregate-int": dict(aggregate=1),
    "aggregate-empty": dict(aggregate=""),
    "aggregate-upper": dict(aggregate="Account"),
    "aggregate-slash": dict(aggregate="acc/ount"),
    "aggregate-space": dict(aggregate="acc ount"),
    "aggregate-65": dict(aggregate="a" * 65),
    "key-missing": dict(key=...),
    "key-int": dict(key=42),
    "key-empty": dict(key=""),
    "key-slash": dict(key="a/b"),
    "key-nul": dict(key="a\x00b"),
    "key-257": dict(key="k" * 257),
    "type-missing": dict(type=...),
    "type-int": dict(type=3),
    "type-empty": dict(type=""),
    "type-65": dict(type="t" * 65),
    "expect-negative": dict(expect=-1),
    "expect-string": dict(expect="0"),
    "expect-float": dict(expect=0.0),
    "expect-bool": dict(expect=False),
    "meta-list": dict(meta=[1, 2]),
    "meta-string": dict(meta="user=ann"),
    "meta-int": dict(meta=1),
}


def _usable_id(body):
    cid = body.get("id")
    return isinstance(cid, str) and 1 <= len(cid.encode()) <= 64


@pytest.mark.parametrize("case", sorted(INVALID))
def test_validation_invalid(client, case):
    body = base(**INVALID[case])
    client.send_command(body)
    if _usable_id(body):
        rep = client.wait_command(body["id"])
        assert rep["id"] == body["id"]
    else:
        # no id to correlate by: it is the only command outstanding
        rep = unpack(recv_multipart(client.cmd_sock)[-1])
    assert_error(rep, "invalid")
    # nothing was written
    key = body.get("key")
    if isinstance(key, str) and key and "/" not in key and \
            "\x00" not in key and len(key) <= 256:
        assert client.stream("account/" + key)["version"] == 0
    # and the client is still served
    assert_ok(client.command(base()))


def test_validation_boundaries_valid(client):
    # id: 64 bytes (also as 32 two-byte characters)
    for cid in ("i" + uniq("")[:63].ljust(63, "0"), "\u00e9" * 32):
        assert len(cid.encode()) == 64
        check_success(client.command(base(id=cid)), cid)
    # key: 256 bytes, non-ASCII and spaces
    key256 = (uniq("") + "z" * 256)[:256]
    rep = check_success(client.command(base(key=key256)))
    assert rep["stream"] == "account/" + key256
    key = uniq("ann smith \u00e9 ")
    rep = check_success(client.command(base(key=key)))
    assert rep["stream"] == "account/" + key
    # expect: 0 on a new stream; a big expect is a conflict, not invalid
    assert_ok(client.command(base(expect=0)))
    rep = client.command(base(expect=2 ** 40))
    assert_error(rep, "conflict")
    assert rep["version"] == 0
    # meta: an empty map
    assert_ok(client.command(base(meta={})))


def test_one_byte_id_and_key(daemon):
    c = daemon.client()
    try:
        rep = check_success(c.command(base(id="1", key="7")), "1")
        assert rep["stream"] == "account/7"
    finally:
        c.close()


@pytest.mark.parametrize("over", [
    dict(aggregate="loan"),
    dict(aggregate="a" * 64),
    dict(aggregate="acc_ount.v-2"),
    dict(type="frobnicate"),
    dict(type="t" * 64),
], ids=["aggregate", "aggregate-64", "aggregate-charset", "type", "type-64"])
def test_validation_unknown(client, over):
    body = base(**over)
    rep = client.command(body)
    check_failure(rep, "unknown", body["id"])
