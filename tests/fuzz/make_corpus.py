#!/usr/bin/env python3
"""make_corpus.py: write the seed corpora of the fuzz targets.

    python3 tests/fuzz/make_corpus.py          # (re)writes tests/fuzz/corpus/

Seeds are small, named files: valid commands and queries of ZCQ/1 (bank
domain), event bodies as the node writes them, heartbeats, snapshot states,
catch-up scripts, config files, and edge cases of MessagePack (every type
tag, 16/32-bit headers, counts larger than the bytes, deep nesting) and of
ZCQ/1's content rules (strings that are not UTF-8, maps that repeat a key,
in every field). The files are committed; rerun this only to change them.
"""

import os
import shutil
import struct

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def str8(text):
    data = text.encode()
    return b"\xd9" + bytes([len(data)]) + data


def raw_str(data):
    """A str holding bytes as they are (UTF-8 or not)."""
    if len(data) < 32:
        return bytes([0xa0 | len(data)]) + data
    return b"\xd9" + bytes([len(data)]) + data


def raw_map(entries):
    """A fixmap of (encoded key, encoded value) pairs, repeats included."""
    return bytes([0x80 | len(entries)]) + b"".join(k + v for k, v in entries)


def write(target, name, data):
    directory = os.path.join(OUT, target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, name), "wb") as f:
        f.write(data)


# --------------------------------------------------------------------------
# MessagePack edge cases (fuzz_codec, and as bodies for fuzz_request)

def codec_edges():
    edges = {
        "nil": b"\xc0", "true": b"\xc3", "false": b"\xc2",
        "fixint": b"\x7f", "negfixint": b"\xe0",
        "u8": b"\xcc\xff", "u16": b"\xcd\xff\xff", "u32": b"\xce\xff\xff\xff\xff",
        "u64max": b"\xcf" + b"\xff" * 8, "i8": b"\xd0\x80", "i16": b"\xd1\x80\x00",
        "i32": b"\xd2\x80\x00\x00\x00", "i64min": b"\xd3\x80" + b"\x00" * 7,
        "i64pos": b"\xd3\x00\x00\x00\x00\x00\x00\x00\x05",
        "f32": b"\xca\x3f\x80\x00\x00", "f64": pack(1.5),
        "f64nan": b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",
        "f32nan": b"\xca\x7f\xc0\x00\x00",
        "fixstr": pack("abc"), "emptystr": b"\xa0", "str8": str8("hello"),
        "str16": b"\xda\x00\x03abc", "str32": b"\xdb\x00\x00\x00\x03abc",
        "bin8": b"\xc4\x03abc", "bin16": b"\xc5\x00\x00", "bin32": b"\xc6\x00\x00\x00\x01x",
        "fixext1": b"\xd4\x01\x00", "fixext2": b"\xd5\x01\x00\x00",
        "fixext4": b"\xd6\xff" + b"\x00" * 4, "fixext8": b"\xd7\xff" + b"\x00" * 8,
        "fixext16": b"\xd8\x01" + b"\x00" * 16, "ext8": b"\xc7\x02\x05ab",
        "ext16": b"\xc8\x00\x01\x05a", "ext32": b"\xc9\x00\x00\x00\x00\x05",
        "fixarray": pack([1, 2, 3]), "emptyarray": b"\x90", "array16": b"\xdc\x00\x02\x01\x02",
        "array32": b"\xdd\x00\x00\x00\x01\xc0", "fixmap": pack({"a": 1, "b": [1, 2]}),
        "emptymap": b"\x80", "map16": b"\xde\x00\x01\xa1a\x01",
        "map32": b"\xdf\x00\x00\x00\x01\xa1a\x01",
        "intkeys": pack({1: "x", 2: "y"}), "nestedmapkey": b"\x81\x81\xa1a\x01\x02",
        "dupkeys": b"\x82\xa2id\xa1a\xa2id\xa1b",
        # repeated keys in other encodings, nested, and past the pairwise size
        "dupkeys-str8": b"\x82\xa1a\x01\xd9\x01a\x02",
        "dupkeys-int": b"\x82\x01\xc0\xcc\x01\xc0",
        "dupkeys-float": b"\x82\xca\x3f\x80\x00\x00\xc0\xcb\x3f\xf0" + b"\x00" * 6 + b"\xc0",
        "dupkeys-nested": pack({"a": [1]})[:-1] + b"\x82\xa1k\x01\xa1k\x02",
        "dupkeys-big": b"\xde\x00\x12" + b"".join(
            pack("k%d" % (i % 17)) + pack(i) for i in range(18)),
        "nodup-big": pack({("k%d" % i): i for i in range(18)}),
        # strings that are not UTF-8 (RFC 3629), and the boundaries that are
        "utf8-overlong": raw_str(b"\xc0\x80"),
        "utf8-overlong3": raw_str(b"\xe0\x80\xaf"),
        "utf8-surrogate": raw_str(b"\xed\xa0\x80"),
        "utf8-above-max": raw_str(b"\xf4\x90\x80\x80"),
        "utf8-cut": raw_str(b"abcdefgh\xe2\x82"),
        "utf8-lone-cont": raw_str(b"\x80"),
        "utf8-key": raw_map([(raw_str(b"k\xff"), b"\x01")]),
        "utf8-bounds": raw_str("\x7f\x80\u07ff\u0800\uffff\U00010000\U0010ffff".encode()),
        # malformed
        "reserved": b"\xc1", "truncstr": b"\xa5ab", "truncu32": b"\xce\x00",
        "hugearray32": b"\xdd\xff\xff\xff\xff", "hugemap32": b"\xdf\xff\xff\xff\xff\xc0",
        "hugestr32": b"\xdb\xff\xff\xff\xff", "hugebin32": b"\xc6\x7f\xff\xff\xff",
        "hugeext32": b"\xc9\xff\xff\xff\xff\x01", "array16over": b"\xdc\xff\xff\x01\x02",
        "trailing": b"\xc0\xc0", "empty": b"",
        "deep32": b"\x91" * 31 + b"\x90", "deep33": b"\x91" * 32 + b"\x90",
        "deepmaps": b"\x81\xa1k" * 31 + b"\x80",
        "many": pack(list(range(300))),
        "bigmap": pack({("k%d" % i): i for i in range(40)}),
    }
    return edges


# --------------------------------------------------------------------------
# ZCQ/1 requests (fuzz_request, fuzz_codec)

def commands():
    seeds = {
        "open": {"id": "c1", "aggregate": "account", "key": "1", "type": "open",
                 "data": {"owner": "ann", "overdraft": 100}},
        "open-expect0": {"id": "c2", "aggregate": "account", "key": "2", "type": "open",
                         "expect": 0, "data": {"owner": "bob"}, "meta": {"user": "u"}},
        "deposit": {"id": "c3", "aggregate": "account", "key": "1", "type": "deposit",
                    "data": {"amount": 500}},
        "withdraw": {"id": "c4", "aggregate": "account", "key": "1", "type": "withdraw",
                     "data": {"amount": 50}, "expect": 2},
        "close": {"id": "c5", "aggregate": "account", "key": "2", "type": "close", "data": {}},
        "close-nodata": {"id": "c6", "aggregate": "account", "key": "3", "type": "close"},
        "nil-expect-meta": {"id": "c7", "aggregate": "account", "key": "1", "type": "deposit",
                            "expect": None, "meta": None, "data": {"amount": 1}},
        "unknown-aggregate": {"id": "c8", "aggregate": "cart", "key": "1", "type": "open"},
        "unknown-type": {"id": "c9", "aggregate": "account", "key": "1", "type": "fly"},
        "bad-aggregate": {"id": "c10", "aggregate": "Account!", "key": "1", "type": "open"},
        "slash-key": {"id": "c11", "aggregate": "account", "key": "a/b", "type": "open"},
        "nul-id": {"id": "a\x00b", "aggregate": "account", "key": "1", "type": "open"},
        "int-id": {"id": 7, "aggregate": "account", "key": "1", "type": "open"},
        "long-id": {"id": "x" * 65, "aggregate": "account", "key": "1", "type": "open"},
        "long-key": {"id": "c12", "aggregate": "account", "key": "k" * 257, "type": "open"},
        "neg-expect": {"id": "c13", "aggregate": "account", "key": "1", "type": "open",
                       "expect": -1},
        "amount-max": {"id": "c14", "aggregate": "account", "key": "1", "type": "deposit",
                       "data": {"amount": 2 ** 63 - 1}},
        "amount-u64": {"id": "c15", "aggregate": "account", "key": "1", "type": "withdraw",
                       "data": {"amount": 2 ** 64 - 1}},
        "amount-float": {"id": "c16", "aggregate": "account", "key": "1", "type": "deposit",
                         "data": {"amount": 1.5}},
        "owner-long": {"id": "c17", "aggregate": "account", "key": "9", "type": "open",
                       "data": {"owner": "o" * 129}},
        "meta-array": {"id": "c18", "aggregate": "account", "key": "1", "type": "open",
                       "meta": [1, 2]},
        "data-array": {"id": "c19", "aggregate": "account", "key": "1", "type": "open",
                       "data": [1, 2]},
        "empty-strings": {"id": "", "aggregate": "", "key": "", "type": ""},
        "missing-all": {},
    }
    out = {"cmd-" + name: pack(body) for name, body in seeds.items()}
    # the same open with str8 keys, and as map16 / map32
    out["cmd-str8-keys"] = b"\x84" + str8("id") + str8("c20") + str8("aggregate") + \
        str8("account") + str8("key") + str8("7") + str8("type") + str8("open")
    body = pack(seeds["deposit"])
    out["cmd-map16"] = b"\xde\x00" + bytes([body[0] & 0x0f]) + body[1:]
    out["cmd-map32"] = b"\xdf\x00\x00\x00" + bytes([body[0] & 0x0f]) + body[1:]
    out["cmd-trailing"] = body + b"\xc0"
    out["cmd-truncated"] = body[:-3]
    # ZCQ/1 section 2: strings that are not UTF-8, and repeated keys, in
    # each field of a command
    fields = [(pack("id"), pack("c21")), (pack("aggregate"), pack("account")),
              (pack("key"), pack("1")), (pack("type"), pack("deposit")),
              (pack("data"), pack({"amount": 5})), (pack("meta"), pack({"user": "u"}))]
    bad = {"id": raw_str(b"c\xc0\x80"), "aggregate": raw_str(b"acc\xed\xa0\x80"),
           "key": raw_str(b"1\xf4\x90\x80\x80"), "type": raw_str(b"deposit\xe2\x82"),
           "data": raw_map([(pack("amount"), pack(5)), (pack("note"), raw_str(b"\x80"))]),
           "meta": raw_map([(raw_str(b"us\xffr"), pack("u"))])}
    for name, value in bad.items():
        out["cmd-utf8-" + name] = raw_map([(k, value if k == pack(name) else v)
                                           for k, v in fields])
    out["cmd-dup-id"] = raw_map(fields + [(pack("id"), pack("c22"))])
    out["cmd-dup-key"] = raw_map(fields + [(pack("key"), pack("2"))])
    out["cmd-dup-data"] = raw_map([(k, raw_map([(pack("amount"), pack(5)),
                                                (pack("amount"), pack(6))])
                                    if k == pack("data") else v) for k, v in fields])
    out["cmd-dup-meta-str8"] = raw_map([(k, raw_map([(pack("user"), pack("u")),
                                                     (str8("user"), pack("v"))])
                                         if k == pack("meta") else v) for k, v in fields])
    out["cmd-utf8-valid"] = pack({"id": "c23", "aggregate": "account", "key": "k\u00e9\u4e2d",
                                  "type": "open", "data": {"owner": "Zo\u00eb \U0001F600"},
                                  "meta": {"\u00fc": "\U0010ffff"}})
    return out


def queries():
    seeds = {
        "get": {"op": "get", "view": "accounts", "key": "1", "rid": 1},
        "get-min": {"op": "get", "view": "accounts", "key": "1", "min_position": 1,
                    "timeout_ms": 50, "rid": "r"},
        "list": {"op": "list", "view": "accounts", "limit": 10, "rid": [1, "x"]},
        "list-index": {"op": "list", "view": "accounts", "index": "owner", "value": "ann",
                       "after": "0"},
        "list-badindex": {"op": "list", "view": "accounts", "index": "nope", "value": 1},
        "count": {"op": "count", "view": "totals"},
        "count-index": {"op": "count", "view": "accounts", "index": "owner", "value": "bob"},
        "read": {"op": "read", "from": 1, "limit": 5, "rid": 2},
        "read-zero": {"op": "read", "from": 0},
        "read-big": {"op": "read", "from": 2 ** 63 - 1, "limit": 10000},
        "stream": {"op": "stream", "stream": "account/1", "from": 1, "limit": 3},
        "stream-noslash": {"op": "stream", "stream": "account"},
        "views": {"op": "views", "rid": None},
        "health": {"op": "health"},
        "stats": {"op": "stats"},
        "rebuild": {"op": "rebuild", "view": "totals"},
        "unknown-op": {"op": "explode"},
        "unknown-view": {"op": "get", "view": "nope", "key": "1"},
        "empty-view": {"op": "get", "view": "", "key": ""},
        "op-int": {"op": 5},
        "limit-zero": {"op": "list", "view": "accounts", "limit": 0},
        "timeout-neg": {"op": "get", "view": "accounts", "key": "1", "timeout_ms": -1},
    }
    out = {"query-" + name: pack(body) for name, body in seeds.items()}
    get = [(pack("op"), pack("get")), (pack("view"), pack("accounts")),
           (pack("key"), pack("1")), (pack("rid"), pack(3))]
    out["query-utf8-op"] = raw_map([(pack("op"), raw_str(b"get\xc0\xaf"))] + get[1:])
    out["query-utf8-key"] = raw_map(get[:2] + [(pack("key"), raw_str(b"\xed\xbf\xbf"))] + get[3:])
    out["query-utf8-rid"] = raw_map(get[:3] + [(pack("rid"), raw_str(b"r\xfe"))])
    out["query-dup-op"] = raw_map(get + [(pack("op"), pack("stats"))])
    out["query-dup-rid"] = raw_map(get + [(pack("rid"), pack(4))])
    return out


# --------------------------------------------------------------------------
# Events as the node writes them (fuzz_event, fuzz_catchup)

def event(position, stream="account/1", version=1, type_="opened", data=None,
          time=1700000000000000, command="c1", node="node1", meta=None):
    aggregate, key = stream.split("/", 1)
    out = b"\x8b" + pack("position") + b"\xcf" + struct.pack(">Q", position)
    out += pack("time") + b"\xd3" + struct.pack(">q", time)
    for name, value in (("node", node), ("stream", stream), ("aggregate", aggregate),
                        ("key", key), ("version", version), ("type", type_),
                        ("command", command), ("meta", meta or {}),
                        ("data", data if data is not None else {})):
        out += pack(name) + pack(value)
    return out


def events():
    out = {
        "ev-opened": event(1, data={"owner": "ann", "overdraft": 0}),
        "ev-deposited": event(2, version=2, type_="deposited", data={"amount": 100}),
        "ev-withdrawn": event(3, version=3, type_="withdrawn", data={"amount": 2 ** 63 - 1}),
        "ev-closed": event(4, version=4, type_="closed", meta={"user": "x"}),
        "ev-long-stream": event(5, stream="a" * 64 + "/" + "k" * 256),
        "ev-too-long-key": event(6, stream="account/" + "k" * 300),
        "ev-neg-time": event(7, time=-1),
        "ev-nul-type": event(8, type_="open\x00ed"),
        "ev-data-nested": event(9, data={"owner": {"a": [1, 2, {"b": None}]}, "amount": -5}),
        "heartbeat": pack({"node": "node1", "head": 42, "time": 1700000000000000}),
        "heartbeat-neg": pack({"node": "node1", "head": -1, "time": 0}),
        "ev-as-dict": pack({"position": 1, "time": 1, "node": "n", "stream": "account/1",
                            "aggregate": "account", "key": "1", "version": 1, "type": "opened",
                            "command": "c", "meta": {}, "data": {"owner": "o"}}),
        # snapshot states: the bank's account_t bytes, and a map a domain
        # with snapshot_decode would write
        "snap-struct": struct.pack("<??6xqq", True, False, 1000, 50),
        "snap-map": pack({"opened": True, "balance": 5, "overdraft": 0, "owner": "ann"}),
        "snap-short": b"\x01\x02\x03",
    }
    return out


def catchup_scripts(evs):
    def chunk(data):
        return struct.pack("<H", len(data)) + data

    def page(events_list, head_selector=7):
        body = b"\x90" if not events_list else None
        if events_list:
            n = len(events_list)
            body = (bytes([0x90 | n]) if n < 16 else b"\xdc" + struct.pack(">H", n)) + \
                b"".join(events_list)
        return bytes([0, head_selector]) + chunk(body)

    def live(stream, body):
        return bytes([2]) + chunk((stream + "/").encode()) + chunk(body)

    def heartbeat(head):
        return bytes([3]) + chunk(pack({"node": "node1", "head": head, "time": 1}))

    e = [event(p, version=p, type_="deposited" if p > 1 else "opened",
               data={"amount": p} if p > 1 else {"owner": "ann"}) for p in range(1, 6)]
    other = event(3, stream="account/2", version=1)
    return {
        "cu-page": bytes([1]) + page(e[:3], head_selector=3),
        "cu-live": bytes([1]) + live("account/1", e[0]) + live("account/1", e[1]),
        "cu-gap": bytes([1]) + page(e[:2], 2) + live("account/1", e[3]) + page(e[2:4], 7),
        "cu-heartbeat": bytes([1]) + heartbeat(3) + page(e[:3], 3),
        "cu-topic": bytes([1 | 8 | 16]) + page([e[0], e[1], other], 2),
        "cu-from3": bytes([3]) + page(e[2:5], 4),
        "cu-noise": bytes([1]) + bytes([1]) + chunk(b"\xc1garbage") + bytes([5]) +
        chunk(pack([e[0]])) + page(e[:1], 1),
        "cu-bad-page": bytes([1]) + page([pack({"position": 1})], 1),
        "cu-dup": bytes([1]) + page([e[0], e[0], e[1]], 2),
        "cu-max": bytes([6]) + page([event(2 ** 64 - 1)], 6),
    }


def configs():
    return {
        "cfg-basic": b"shards = 4\ndurability = fsync\ncache = 1000\n",
        "cfg-section": b"zcqrs\n    command = \"tcp://127.0.0.1:7400\"\n"
                       b"    request-limit = 65536\n    max-inflight = 10\n",
        "cfg-nested": b"zcqrs\n    zcqrs\n        node = n2\n",
        "cfg-unknown": b"colour = red\n",
        "cfg-empty-value": b"shards =\n",
        "cfg-bad-endpoint": b"query = udp://x\n",
        "cfg-comments": b"#   comment\n\nheartbeat-ms = 100   # trailing\n",
        "cfg-set": b"dedup-window\x0060",
        "cfg-set-bad": b"shards\x00-1",
        "cfg-set-data": b"data\x00/tmp/x",
    }


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    edges = codec_edges()
    cmds = commands()
    qs = queries()
    evs = events()
    for name, data in edges.items():
        write("fuzz_codec", name, data)
    for name, data in list(cmds.items())[:8] + list(qs.items())[:8]:
        write("fuzz_codec", name, data)
    for name, data in evs.items():
        write("fuzz_codec", name, data)
    for name, data in list(cmds.items()) + list(qs.items()):
        write("fuzz_request", name, data)
    for name in ("nil", "fixstr", "emptymap", "hugemap32", "deep33", "trailing", "empty",
                 "reserved", "dupkeys", "dupkeys-nested", "dupkeys-big", "utf8-key"):
        write("fuzz_request", "edge-" + name, edges[name])
    for name in [n for n in list(cmds) + list(qs) if "-utf8-" in n or "-dup-" in n]:
        write("fuzz_codec", name, (cmds if name in cmds else qs)[name])
    for name, data in evs.items():
        write("fuzz_event", name, data)
    for name in ("hugearray32", "deep33", "f64nan", "emptystr", "truncstr", "dupkeys",
                 "utf8-surrogate"):
        write("fuzz_event", "edge-" + name, edges[name])
    for name, data in catchup_scripts(evs).items():
        write("fuzz_catchup", name, data)
    for name, data in configs().items():
        write("fuzz_config", name, data)
    for target in sorted(os.listdir(OUT)):
        print("%-14s %d seeds" % (target, len(os.listdir(os.path.join(OUT, target)))))


if __name__ == "__main__":
    main()
