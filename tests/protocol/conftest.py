"""Fixtures and a tiny ZCQ/1 client for the protocol conformance suite.

Everything here is written from the wire contract (ZCQ/1,
/work/shared/spec/protocol.md) alone: the daemon is an opaque process that
prints its three bound endpoints on stdout, and everything else goes over
ZeroMQ + MessagePack.

Environment:
  ZCQRSD     path to the zcqrsd binary (required)
  ZCQRS_CLI  path to the zcqrs command-line client (CLI tests only)

No test sleeps for a fixed time: every wait is a poll with a deadline, so a
test fails instead of hanging when the node does not answer.
"""

import itertools
import os
import selectors
import signal
import subprocess
import threading
import time
import uuid

import msgpack
import pytest
import zmq

ZCQRSD = os.environ.get("ZCQRSD")
ZCQRS_CLI = os.environ.get("ZCQRS_CLI")

REPLY_TIMEOUT = 10.0        # seconds to wait for one reply
START_TIMEOUT = 20.0        # seconds for the daemon to print its endpoints
STOP_TIMEOUT = 30.0         # seconds for the daemon to exit after SIGTERM

EVENT_KEYS = {
    "position": int, "node": str, "stream": str, "aggregate": str,
    "key": str, "version": int, "type": str, "time": int, "command": str,
    "meta": dict,
}   # plus "data": any

_ctx = zmq.Context.instance()


def socket(kind, endpoint=None):
    """A client socket that never blocks a test forever: sends time out,
    and our queues are unbounded so pipelined replies are never dropped on
    our side."""
    s = _ctx.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    s.setsockopt(zmq.SNDTIMEO, int(REPLY_TIMEOUT * 1000))
    s.setsockopt(zmq.SNDHWM, 0)
    s.setsockopt(zmq.RCVHWM, 0)
    if endpoint is not None:
        s.connect(endpoint)
    return s


# --------------------------------------------------------------------------
# MessagePack helpers

def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def unpack(raw):
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


def uniq(prefix="k"):
    """A key no other test uses (the module daemons are shared)."""
    return "%s%s" % (prefix, uuid.uuid4().hex[:12])


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def check_type(value, typ):
    if typ is int:
        return is_int(value)
    return isinstance(value, typ)


def assert_error(reply, code):
    """A failure reply per section 2/6: ok false, error code, message."""
    assert isinstance(reply, dict), reply
    assert reply.get("ok") is False, reply
    assert reply.get("error") == code, reply
    msg = reply.get("message")
    assert isinstance(msg, str) and msg.strip(), \
        "message must be a non-empty string: %r" % (reply,)
    return reply


def assert_ok(reply):
    assert isinstance(reply, dict), reply
    assert reply.get("ok") is True, reply
    return reply


def recv_multipart(sock, timeout=REPLY_TIMEOUT, what="reply"):
    if not sock.poll(int(timeout * 1000), zmq.POLLIN):
        raise AssertionError("no %s within %.1fs" % (what, timeout))
    return sock.recv_multipart()


# --------------------------------------------------------------------------
# The daemon

def _die_with_parent():
    """In the child: get SIGKILL if pytest dies, so that a killed test run
    (ctest timeout, ^C) leaves no daemon behind."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)       # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Daemon:
    """One zcqrsd process on one data directory."""

    def __init__(self, data, *, durability=None, node=None, extra=()):
        self.data = str(data)
        self.durability = durability
        self.node = node
        self.extra = list(extra)
        self.proc = None
        self.command = self.events = self.query = None
        self.stdout_lines = []
        self.stderr_path = None
        self.returncode = None

    def argv(self):
        assert ZCQRSD, "set ZCQRSD to the zcqrsd binary"
        argv = [ZCQRSD, "--data", self.data,
                "--command", "tcp://127.0.0.1:*",
                "--events", "tcp://127.0.0.1:*",
                "--query", "tcp://127.0.0.1:*",
                "--domain", "bank"]
        if self.durability:
            argv += ["--durability", self.durability]
        if self.node:
            argv += ["--node", self.node]
        # the suite runs once per write plan (tests/CMakeLists.txt)
        if os.environ.get("ZCQ_TEST_WRITE_PLAN"):
            argv += ["--write-plan", os.environ["ZCQ_TEST_WRITE_PLAN"]]
        # zcqrsd serves /metrics on 127.0.0.1:7480 unless told otherwise:
        # the suite's daemons run side by side, so none serves it unless a
        # test asks (test_metrics.py)
        if "--http" not in self.extra:
            argv += ["--http", "none"]
        return argv + self.extra

    def start(self):
        os.makedirs(self.data, exist_ok=True)
        self.stderr_path = self.data.rstrip("/") + ".stderr"
        self.returncode = None
        self.command = self.events = self.query = None
        errf = open(self.stderr_path, "ab")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=errf,
                                     preexec_fn=_die_with_parent)
        errf.close()
        eps = {}
        buf = b""
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + START_TIMEOUT
        fd = self.proc.stdout.fileno()
        try:
            while len(eps) < 3:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.proc.kill()
                    self.proc.wait()
                    raise AssertionError(
                        "zcqrsd did not print its endpoints within %.0fs; "
                        "stdout %r, stderr %r" % (START_TIMEOUT, buf,
                                                  self.stderr()))
                if not sel.select(left):
                    continue
                chunk = os.read(fd, 4096)
                if not chunk:
                    rc = self.proc.wait()
                    raise AssertionError(
                        "zcqrsd exited (%s) before it was ready; stdout %r, "
                        "stderr %r" % (rc, buf, self.stderr()))
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    text = line.decode("utf-8", "replace").strip()
                    self.stdout_lines.append(text)
                    parts = text.split()
                    if len(parts) == 2 and parts[0] in ("command", "events",
                                                        "query"):
                        eps[parts[0]] = parts[1]
        finally:
            sel.close()
        self.command, self.events, self.query = (
            eps["command"], eps["events"], eps["query"])
        # keep draining stdout so the daemon never blocks on a full pipe
        threading.Thread(target=self._drain, args=(self.proc,),
                         daemon=True).start()
        return self

    def _drain(self, proc):
        try:
            for line in proc.stdout:
                self.stdout_lines.append(line.decode("utf-8", "replace"))
        except (OSError, ValueError):
            pass

    def stderr(self):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, TypeError):
            return ""

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        """Signal the daemon and wait for it; returns its exit code."""
        if self.proc is None:
            return self.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.returncode = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("zcqrsd did not exit within %.0fs of %s"
                                 % (STOP_TIMEOUT, sig))
        self.proc = None
        return self.returncode

    def kill9(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        rc = self.stop()
        assert rc == 0, "SIGTERM must stop zcqrsd with exit 0, got %r; %s" \
            % (rc, self.stderr())
        return self.start()

    # clients bound to this daemon
    def client(self):
        return Client(self)

    def sub(self, *topics):
        return Sub(self, *topics)


def _stop_clean(d):
    if d.running:
        rc = d.stop()
        assert rc == 0, "SIGTERM must stop zcqrsd with exit 0, got %r; " \
            "stderr: %s" % (rc, d.stderr()[-2000:])


@pytest.fixture
def daemon_factory(tmp_path):
    """start(**opts) -> a running Daemon on a fresh dir under tmp_path.

    Every daemon still running at the end is stopped with SIGTERM and must
    exit 0."""
    started = []
    counter = itertools.count()

    def start(data=None, **opts):
        if data is None:
            data = tmp_path / ("node%d" % next(counter))
        d = Daemon(data, **opts).start()
        started.append(d)
        return d

    yield start
    errors = []
    for d in started:
        try:
            _stop_clean(d)
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, errors


@pytest.fixture
def daemon(daemon_factory):
    """A fresh node for one test (exact counters, totals, log contents)."""
    return daemon_factory()


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    """One node shared by a whole test module (keeps the suite fast).

    Tests on it use unique keys (uniq()) and never assume an empty log."""
    d = Daemon(tmp_path_factory.mktemp("shared") / "data").start()
    yield d
    _stop_clean(d)


@pytest.fixture
def client(node):
    c = Client(node)
    yield c
    c.close()


# --------------------------------------------------------------------------
# The client

class Client:
    """DEALER sockets on the command and query endpoints.

    Commands are correlated by `id`, queries by `rid`; a reply for another
    outstanding request is kept until asked for."""

    _seq = itertools.count(1)

    def __init__(self, daemon):
        self.daemon = daemon
        self.cmd_sock = socket(zmq.DEALER, daemon.command)
        self.q_sock = socket(zmq.DEALER, daemon.query)
        self.cmd_pending = {}
        self.q_pending = {}

    def close(self):
        self.cmd_sock.close(0)
        self.q_sock.close(0)

    # ---- commands

    def new_id(self):
        return "c-%s-%d" % (uuid.uuid4().hex[:8], next(self._seq))

    def send_command(self, body):
        self.cmd_sock.send(pack(body))

    def wait_command(self, cid, timeout=REPLY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while cid not in self.cmd_pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no reply for command %r within %.1fs"
                                     % (cid, timeout))
            frames = recv_multipart(self.cmd_sock, left, "command reply")
            assert len(frames) == 1, \
                "DEALER without envelope must get one frame: %r" % frames
            rep = unpack(frames[-1])
            assert isinstance(rep, dict), rep
            self.cmd_pending[rep.get("id")] = rep
        return self.cmd_pending.pop(cid)

    def command(self, body, timeout=REPLY_TIMEOUT):
        """Send one command body (an `id` is added when absent)."""
        body = dict(body)
        body.setdefault("id", self.new_id())
        self.send_command(body)
        return self.wait_command(body["id"], timeout)

    def send(self, aggregate, key, type_, data=None, **extra):
        body = {"aggregate": aggregate, "key": key, "type": type_}
        if data is not None:
            body["data"] = data
        body.update(extra)
        return self.command(body)

    # bank shorthands
    def open(self, key, owner="ann", overdraft=None, **kw):
        data = {"owner": owner}
        if overdraft is not None:
            data["overdraft"] = overdraft
        return self.send("account", key, "open", data, **kw)

    def deposit(self, key, amount, **kw):
        return self.send("account", key, "deposit", {"amount": amount}, **kw)

    def withdraw(self, key, amount, **kw):
        return self.send("account", key, "withdraw", {"amount": amount}, **kw)

    def close_account(self, key, **kw):
        return self.send("account", key, "close", {}, **kw)

    # ---- queries

    def send_query(self, body):
        self.q_sock.send(pack(body))

    def wait_query(self, rid, timeout=REPLY_TIMEOUT):
        deadline = time.monotonic() + timeout
        while rid not in self.q_pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no reply for query rid %r within %.1fs"
                                     % (rid, timeout))
            frames = recv_multipart(self.q_sock, left, "query reply")
            assert len(frames) == 1, frames
            rep = unpack(frames[-1])
            assert isinstance(rep, dict), rep
            self.q_pending[_hashable(rep.get("rid"))] = rep
        return self.q_pending.pop(rid)

    def query(self, op, timeout=REPLY_TIMEOUT, **keys):
        body = {"op": op}
        body.update(keys)
        body.setdefault("rid", "q-%d" % next(self._seq))
        self.send_query(body)
        return self.wait_query(_hashable(body["rid"]), timeout)

    def raw_query(self, body, timeout=REPLY_TIMEOUT):
        """Send a body as is; a `rid` is added so the reply can be matched."""
        body = dict(body)
        body.setdefault("rid", "q-%d" % next(self._seq))
        self.send_query(body)
        return self.wait_query(_hashable(body["rid"]), timeout)

    def get(self, view, key, **kw):
        return self.query("get", view=view, key=key, **kw)

    def rows(self, view, min_position, limit=50):
        """Every row of a view, paged in key order, once the view has
        reached min_position."""
        rows, after = [], None
        while True:
            q = {"view": view, "limit": limit, "min_position": min_position,
                 "timeout_ms": 10000}
            if after is not None:
                q["after"] = after
            rep = assert_ok(self.query("list", **q))
            rows += rep["rows"]
            after = rep["next"]
            if after is None:
                return rows

    def head(self):
        rep = assert_ok(self.query("health"))
        return rep["head"]

    def row(self, view, key, min_position=None):
        kw = {}
        if min_position is not None:
            kw["min_position"] = min_position
            kw["timeout_ms"] = 5000
        rep = assert_ok(self.get(view, key, **kw))
        return rep["row"]

    def synced_row(self, view, key):
        """The row once the view caught up with the whole log."""
        return self.row(view, key, min_position=max(self.head(), 0) or None)

    def read_all(self, start=1, limit=10000):
        events = []
        while True:
            rep = assert_ok(self.query("read", **{"from": start,
                                                  "limit": limit}))
            events += rep["events"]
            if not rep["events"] or events[-1]["position"] >= rep["head"]:
                return events
            start = events[-1]["position"] + 1

    def stream(self, name, **kw):
        return assert_ok(self.query("stream", stream=name, **kw))


def _hashable(v):
    if isinstance(v, list):
        return tuple(_hashable(x) for x in v)
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    return v


def raw_roundtrip(endpoint, frames, sock_type=zmq.DEALER,
                  timeout=REPLY_TIMEOUT):
    """One throwaway socket: send frames, return the reply frames."""
    s = socket(sock_type, endpoint)
    try:
        s.send_multipart(frames)
        return recv_multipart(s, timeout)
    finally:
        s.close(0)


def req_roundtrip(endpoint, body, timeout=REPLY_TIMEOUT):
    """A REQ client: one body in, one decoded reply out."""
    s = socket(zmq.REQ, endpoint)
    try:
        s.send(body if isinstance(body, bytes) else pack(body))
        frames = recv_multipart(s, timeout)
        assert len(frames) == 1, frames
        return unpack(frames[0])
    finally:
        s.close(0)


# --------------------------------------------------------------------------
# Subscriber

class Sub:
    """A SUB socket on the events endpoint.

    ready() waits for a heartbeat (subscribing to `$heartbeat` as well when
    needed): subscriptions are applied in order, so once one heartbeat
    arrived every topic subscribed before it is active too."""

    def __init__(self, daemon, *topics):
        self.sock = socket(zmq.SUB)
        self.topics = list(topics)
        for t in topics:
            self.sock.setsockopt(zmq.SUBSCRIBE, t.encode())
        self.hb_subscribed = any("$heartbeat".startswith(t) for t in topics)
        self.sock.connect(daemon.events)

    def close(self):
        self.sock.close(0)

    def recv(self, timeout=REPLY_TIMEOUT):
        """(topic str, body dict, monotonic arrival time)"""
        frames = recv_multipart(self.sock, timeout, "event")
        assert len(frames) == 2, "event must be [topic][body]: %r" % frames
        return (frames[0].decode("utf-8"), unpack(frames[1]),
                time.monotonic())

    def ready(self, timeout=5.0):
        if not self.hb_subscribed:
            self.sock.setsockopt(zmq.SUBSCRIBE, b"$heartbeat")
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no heartbeat within %.1fs" % timeout)
            topic, _, _ = self.recv(left)
            if topic == "$heartbeat":
                return self

    def events_until(self, pred, timeout=REPLY_TIMEOUT, heartbeats=False):
        """Collect (topic, body) until pred(topic, body) is true."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("event not seen within %.1fs; got %r"
                                     % (timeout, got[-5:]))
            topic, body, _ = self.recv(left)
            if topic == "$heartbeat" and not heartbeats:
                continue
            got.append((topic, body))
            if pred(topic, body):
                return got
