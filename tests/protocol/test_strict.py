"""ZCQ/1 section 2: what a body may hold, and what a request may weigh.

- Every MessagePack str a client sends is valid UTF-8; a body with one
  that is not gets `invalid`, and nothing is written.
- No map repeats a key, at any depth; a body that does gets `invalid`.
- The envelope counts toward the request limit: frames together over the
  limit are refused, on both endpoints, and the client that sends them
  does not disturb another.
- So every string a node serves back is valid UTF-8, and the CLI that
  prints them to a terminal escapes their control characters.

MessagePack encoders refuse to write a str that is not UTF-8 or a map with
a repeated key, so those bodies are put together here byte by byte.
"""

import struct
import subprocess

import pytest
import zmq

from conftest import (ZCQRS_CLI, Client, assert_error, assert_ok, pack,
                      raw_roundtrip, recv_multipart, socket, uniq, unpack)

LIMIT = 1024 * 1024

# Strings that are not UTF-8, one of each kind (RFC 3629)
BAD_UTF8 = {
    "overlong": b"a\xc0\x80",           # U+0000 in two bytes
    "overlong3": b"\xe0\x80\xaf",       # '/' in three bytes
    "surrogate": b"x\xed\xa0\x80",      # U+D800
    "above-10ffff": b"\xf4\x90\x80\x80",  # U+110000
    "cut-short": b"euro \xe2\x82",      # a sequence cut at the end
    "continuation": b"\x80abc",         # no lead byte
    "latin1": b"caf\xe9",               # another encoding
}


# ------------------------------------------------------------ raw bodies

def raw_str(data):
    """A MessagePack str holding data as is."""
    n = len(data)
    if n < 32:
        return bytes([0xa0 | n]) + data
    if n < 256:
        return b"\xd9" + bytes([n]) + data
    return b"\xda" + struct.pack(">H", n) + data


def raw_map(entries):
    """A MessagePack map from (encoded key, encoded value) pairs, in order,
    repeats included."""
    n = len(entries)
    head = bytes([0x80 | n]) if n < 16 else b"\xde" + struct.pack(">H", n)
    return head + b"".join(k + v for k, v in entries)


def enc(value):
    """value encoded; bytes pass through as already encoded."""
    return value if isinstance(value, bytes) else pack(value)


def command_entries(cid, key, **extra):
    entries = [(pack("id"), enc(cid)), (pack("aggregate"), pack("account")),
               (pack("key"), enc(key)), (pack("type"), pack("open")),
               (pack("data"), pack({"owner": "ann"}))]
    entries += [(pack(k), enc(v)) for k, v in extra.items()]
    return entries


def replace(entries, name, value):
    return [(k, enc(value) if k == pack(name) else v) for k, v in entries]


def command_reply(node, body, envelope=(b"",)):
    frames = raw_roundtrip(node.command, list(envelope) + [body])
    assert frames[:-1] == list(envelope), frames[:-1]
    return unpack(frames[-1])


def query_reply(node, body, envelope=(b"",)):
    frames = raw_roundtrip(node.query, list(envelope) + [body])
    assert frames[:-1] == list(envelope), frames[:-1]
    return unpack(frames[-1])


def assert_nothing_written(client, head, key=None):
    """The log head has not moved (and the stream does not exist)."""
    assert client.head() == head
    if key is not None:
        assert client.stream("account/" + key)["version"] == 0


# ---------------------------------------------------------------- UTF-8

def bad_command(field, bad, cid, key):
    """A command whose `field` holds the string bad somewhere."""
    entries = command_entries(cid, key)
    if field in ("id", "key", "type", "aggregate"):
        return raw_map(replace(entries, field, raw_str(bad)))
    if field == "data":
        value = raw_map([(pack("owner"), raw_str(bad))])
    elif field == "data-key":
        field, value = "data", raw_map([(pack("owner"), pack("ann")),
                                        (raw_str(bad), pack(1))])
    elif field == "data-nested":
        field, value = "data", raw_map([
            (pack("owner"), pack("ann")),
            (pack("tags"), b"\x92" + pack("ok") + raw_map(
                [(pack("deep"), raw_str(bad))]))])
    elif field == "meta":
        value = raw_map([(pack("user"), raw_str(bad))])
    elif field == "meta-key":
        field, value = "meta", raw_map([(raw_str(bad), pack("u"))])
    elif field == "top-key":
        return raw_map(entries + [(raw_str(bad), pack(1))])
    else:
        raise ValueError(field)
    if field == "data":
        return raw_map(replace(entries, "data", value))
    return raw_map(entries + [(pack(field), value)])


FIELDS = ["id", "aggregate", "key", "type", "data", "data-key",
          "data-nested", "meta", "meta-key", "top-key"]


@pytest.mark.parametrize("kind", sorted(BAD_UTF8))
@pytest.mark.parametrize("field", FIELDS)
def test_command_with_invalid_utf8_is_invalid(node, client, field, kind):
    head = client.head()
    cid, key = uniq("u8"), uniq()
    rep = assert_error(command_reply(
        node, bad_command(field, BAD_UTF8[kind], cid, key)), "invalid")
    assert "UTF-8" in rep["message"], rep
    if field != "id":
        # the id is sound, so the reply carries it for the client to match
        assert rep.get("id") == cid, rep
    else:
        assert "id" not in rep, rep
    assert_nothing_written(client, head, key if field != "key" else None)


def test_invalid_utf8_message_says_where(node):
    cid, key = uniq("u8"), uniq()
    rep = command_reply(node, bad_command("meta", b"\xff", cid, key))
    assert "'meta'" in assert_error(rep, "invalid")["message"], rep
    rep = command_reply(node, bad_command("id", b"\xff", cid, key))
    assert "'id'" in assert_error(rep, "invalid")["message"], rep


def test_the_same_command_in_utf8_is_accepted(node, client):
    """The control: the node takes any valid UTF-8 (2, 3 and 4 bytes,
    U+10FFFF, U+0080) and serves it back unchanged."""
    key = uniq("k\u00e9\u4e2d")
    owner = "Zo\u00eb \u20ac \U0001F600 \U0010FFFF \x80"
    meta = {"user": "\u00e5sa", "\u00fc": "\u2603"}
    rep = assert_ok(client.send("account", key, "open", {"owner": owner},
                                meta=meta))
    event = client.stream("account/" + key)["events"][0]
    assert event["data"]["owner"] == owner
    assert event["key"] == key and event["meta"] == meta
    assert client.row("accounts", key, rep["position"])["owner"] == owner


@pytest.mark.parametrize("kind", sorted(BAD_UTF8))
@pytest.mark.parametrize("field", ["op", "view", "key", "rid", "extra",
                                   "extra-key"])
def test_query_with_invalid_utf8_is_invalid(node, field, kind):
    bad = raw_str(BAD_UTF8[kind])
    entries = [(pack("op"), pack("get")), (pack("view"), pack("accounts")),
               (pack("key"), pack("x")), (pack("rid"), pack(1))]
    if field == "extra":
        entries.append((pack("extra"), raw_map([(pack("a"), bad)])))
    elif field == "extra-key":
        entries.append((bad, pack(1)))
    else:
        entries = replace(entries, field, bad)
    rep = assert_error(query_reply(node, raw_map(entries)), "invalid")
    assert "UTF-8" in rep["message"], rep


# ---------------------------------------------------------- repeated keys

REPEATS = {
    # two ids: which one would the node answer, and which one store?
    "id": lambda cid, key: raw_map(
        command_entries(cid, key) + [(pack("id"), pack(cid + "-other"))]),
    # two keys: the stream written must not depend on the reader
    "key": lambda cid, key: raw_map(
        command_entries(cid, key) + [(pack("key"), pack(key + "-other"))]),
    # the same key in two encodings (fixstr and str8) is the same key
    "type-str8": lambda cid, key: raw_map(
        command_entries(cid, key) + [(b"\xd9\x04type", pack("open"))]),
    "data": lambda cid, key: raw_map(replace(
        command_entries(cid, key), "data",
        raw_map([(pack("owner"), pack("ann")), (pack("owner"), pack("bob"))]))),
    "data-nested": lambda cid, key: raw_map(replace(
        command_entries(cid, key), "data",
        raw_map([(pack("owner"), pack("ann")),
                 (pack("x"), b"\x91" + raw_map([(pack(1), pack(1)),
                                                (b"\xcc\x01", pack(2))]))]))),
    "meta": lambda cid, key: raw_map(
        command_entries(cid, key) + [(pack("meta"), raw_map(
            [(pack("user"), pack("a")), (pack("user"), pack("a"))]))]),
}


@pytest.mark.parametrize("where", sorted(REPEATS))
def test_command_with_repeated_key_is_invalid(node, client, where):
    head = client.head()
    cid, key = uniq("rk"), uniq()
    rep = assert_error(command_reply(node, REPEATS[where](cid, key)),
                       "invalid")
    assert "repeats" in rep["message"], rep
    assert_nothing_written(client, head, key)
    assert client.stream("account/" + key + "-other")["version"] == 0


def test_query_with_repeated_key_is_invalid(node):
    for entries in ([(pack("op"), pack("health")), (pack("op"), pack("stats"))],
                    [(pack("op"), pack("health")),
                     (pack("rid"), raw_map([(pack("a"), pack(1)),
                                            (pack("a"), pack(1))]))]):
        rep = assert_error(query_reply(node, raw_map(entries)), "invalid")
        assert "repeats" in rep["message"], rep


def test_large_map_without_repeats_is_accepted(client):
    """10,000 distinct keys in data: an unknown key's value is ignored,
    however large a map it is."""
    big = {"f%05d" % i: i for i in range(10000)}
    rep = assert_ok(client.query("health", extra=big))
    assert rep["head"] >= 0


def test_large_map_with_one_repeat_is_invalid(node):
    entries = [(pack("f%05d" % i), pack(i)) for i in range(10000)]
    entries.append((pack("f05000"), pack(0)))
    big = b"\xde" + struct.pack(">H", len(entries)) + b"".join(
        k + v for k, v in entries)
    body = raw_map([(pack("op"), pack("health")), (pack("extra"), big)])
    rep = assert_error(query_reply(node, body), "invalid")
    assert "f05000" in rep["message"], rep


# ------------------------------------------------ the envelope and the limit

def padded(body, size):
    """body plus a `pad` key so that the packed size is exactly size."""
    body = dict(body, pad="")
    n = size - len(pack(body))
    for _ in range(5):
        body["pad"] = "x" * n
        raw = pack(body)
        if len(raw) == size:
            return raw
        n += size - len(raw)
    raise AssertionError((len(raw), size))


def stats(client):
    return assert_ok(client.query("stats"))["stats"]


def open_body(key=None):
    return {"id": uniq("env"), "aggregate": "account", "key": key or uniq(),
            "type": "open", "data": {"owner": "ann"}}


@pytest.mark.parametrize("endpoint", ["command", "query"])
def test_envelope_counts_toward_the_limit(node, client, endpoint):
    """A body of exactly the limit is accepted with REQ's empty delimiter,
    and refused once one more byte of envelope comes with it; the refusal
    carries the envelope back, and nothing is written."""
    ep = node.command if endpoint == "command" else node.query
    body = open_body() if endpoint == "command" else {"op": "health",
                                                      "rid": "e"}
    raw = padded(body, LIMIT - 10)
    head = client.head()
    for envelope in ([b"0123456789", b""], [b"01234", b"56789", b""]):
        frames = raw_roundtrip(ep, envelope + [raw])
        assert_ok(unpack(frames[-1]))
        assert frames[:-1] == envelope
        if endpoint == "command":
            body = open_body()
            raw = padded(body, LIMIT - 10)
            head = client.head()
    for envelope in ([b"0123456789A", b""], [b"0123456", b"789A", b""]):
        frames = raw_roundtrip(ep, envelope + [raw])
        assert frames[:-1] == envelope
        rep = assert_error(unpack(frames[-1]), "invalid")
        assert "limit" in rep["message"], rep
        # another client is served in between
        if endpoint == "command":
            assert rep.get("id") == body["id"], rep
            assert_ok(client.open(uniq()))
        else:
            assert_ok(client.query("health"))
    if endpoint == "command":
        # the log moved by the other client's two opens only
        assert client.head() == head + 2
        assert client.stream("account/" + body["key"])["version"] == 0


@pytest.mark.parametrize("endpoint", ["command", "query"])
def test_envelope_over_the_limit_is_dropped(daemon_factory, endpoint):
    """An envelope alone over the limit (or of more than 64 frames) is not
    answered, since the answer would carry it back; it is counted, the
    same client's next request is answered, and so is another client,
    throughout."""
    d = daemon_factory(extra=["--request-limit", "4096"])
    other = Client(d)
    bad = socket(zmq.DEALER, d.command if endpoint == "command" else d.query)
    try:
        before = stats(other)["requests_dropped"]
        head = other.head()
        hostile = [[b"h" * 4097, b""], [b"h" * 2048, b"h" * 2049, b""],
                   [b""] * 65]
        for envelope in hostile:
            if endpoint == "command":
                body = open_body()
            else:
                body = {"op": "health", "rid": "bad"}
            bad.send_multipart(envelope + [pack(body)])
            # another client is served meanwhile
            if endpoint == "command":
                assert_ok(other.open(uniq()))
            else:
                assert_ok(other.query("health"))
        # the first reply the hostile client gets answers its next, sound,
        # request: none of the dropped ones was answered
        good = open_body() if endpoint == "command" else {"op": "health",
                                                         "rid": "good"}
        bad.send_multipart([b"", pack(good)])
        frames = recv_multipart(bad)
        assert frames[0] == b"", frames[:-1]
        rep = assert_ok(unpack(frames[-1]))
        if endpoint == "command":
            assert rep["id"] == good["id"]
        else:
            assert rep["rid"] == "good"
        assert not bad.poll(200), "a dropped request was answered"
        assert stats(other)["requests_dropped"] == before + len(hostile)
        # and the dropped commands wrote nothing: only the other client's
        # opens and the good one
        if endpoint == "command":
            assert other.head() == head + len(hostile) + 1
        # 64 frames of envelope are still a request
        if endpoint == "command":
            body = open_body()
        else:
            body = {"op": "health", "rid": "64"}
        bad.send_multipart([b""] * 64 + [pack(body)])
        frames = recv_multipart(bad)
        assert frames[:-1] == [b""] * 64
        assert_ok(unpack(frames[-1]))
        assert d.running
    finally:
        bad.close(0)
        other.close()


def test_configured_limit_counts_the_envelope(daemon_factory):
    d = daemon_factory(extra=["--request-limit", "4096"])
    c = Client(d)
    try:
        body = open_body()
        raw = padded(body, 4000)
        frames = raw_roundtrip(d.command, [b"e" * 97, b""] + [raw])
        rep = assert_error(unpack(frames[-1]), "invalid")
        assert rep["id"] == body["id"]
        assert c.stream("account/" + body["key"])["version"] == 0
        frames = raw_roundtrip(d.command, [b"e" * 96, b""] + [raw])
        assert_ok(unpack(frames[-1]))
        raw = padded({"op": "health", "rid": 1}, 4000)
        assert_error(unpack(raw_roundtrip(d.query, [b"e" * 97, raw])[-1]),
                     "invalid")
        assert_ok(unpack(raw_roundtrip(d.query, [b"e" * 96, raw])[-1]))
    finally:
        c.close()


# ------------------------------------------------ what the CLI prints of it

@pytest.mark.skipif(not ZCQRS_CLI, reason="ZCQRS_CLI not set")
def test_cli_escapes_control_characters(node):
    """Strings from the node reach a terminal through the CLI: an id, a key
    or an owner holding ESC, CSI (U+009B), BEL or a newline is printed
    escaped, in the text output and in JSON."""
    def cli(*args):
        return subprocess.run(
            [ZCQRS_CLI, "--command", node.command, "--query", node.query,
             "--events", node.events] + list(args),
            capture_output=True, timeout=20, stdin=subprocess.DEVNULL)

    def clean(result):
        out = result.stdout + result.stderr
        for raw in (b"\x1b", b"\xc2\x9b", b"\x07"):
            assert raw not in out, out
        return out.decode()

    key = uniq("k\x1b[2J\n")
    cid = "id\x1b]0;owned\x07" + uniq()
    owner = uniq("ann\x1b[31m\u009b1m")
    # text output of a success: the stream holds the key
    r = cli("--text", "send", "account", key, "open", "owner=" + owner, "--id", cid)
    assert r.returncode == 0, r
    out = clean(r)
    assert "\\x1b[2J\\n" in out, out
    r = cli("--text", "send", "account", uniq("k\x1b[2J\n"), "open", "owner=" + owner)
    assert r.returncode == 0, r
    # "ok <stream> version V position P events E": the views wait for P
    position = clean(r).split()[-3]
    # text output of an error: the message holds the stored id
    r = cli("send", "account", uniq(), "open", "owner=x", "--id", cid)
    assert r.returncode == 1, r
    out = clean(r)
    assert "\\x1b]0;owned\\x07" in out, out
    # JSON output (indented with --text, JSON Lines otherwise): the row's owner
    for json_flag in (("--text",), (), ("--json",)):
        r = cli("get", "accounts", key, "--min-position", position, *json_flag)
        assert r.returncode == 0, r
        out = clean(r)
        assert "\\u001b[31m" in out.replace("\\u001B", "\\u001b"), out
        assert "\\u009b" in out, out
    # the cursor printed after a page
    r = cli("list", "accounts", "--limit", "1", "--index", "owner", "--value",
            owner, "--min-position", position)
    assert r.returncode == 0, r
    out = clean(r)
    assert "next: " in out and "\\x1b[2J\\n" in out, out
