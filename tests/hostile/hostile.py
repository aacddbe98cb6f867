#!/usr/bin/env python3
"""hostile.py: a misbehaving world against the real zcqrsd.

The node is started with --max-inflight 1000 on ephemeral loopback ports.
While a well-behaved client (the probe) keeps sending commands and
read-your-writes queries and checks every answer, the test throws at the
node, one phase after another:

  garbage       random bodies, empty frames, multi-frame junk, REQ garbage,
                raw TCP bytes that are no ZMTP at all, a ZMTP greeting then junk
  big           a 2 MiB body on both endpoints (`invalid`, id echoed), then
                100 MiB frames (over ZMQ_MAXMSGSIZE: the node drops that peer)
                from DEALERs and from raw ZMTP peers on all three endpoints
                (a SUB's frames are subscriptions), and a 1 MiB subscription
  churn         2,000 connect/disconnect cycles, half of them leaving a
                command behind, plus raw TCP connects
  deaf-dealer   a DEALER that sends 50,000 commands and never reads
  deaf-sub      a SUB that subscribes and never reads while 100,000 events
                are produced
  overload      a client pipelining 20,000 commands at once against
                --max-inflight 1000: the excess is `unavailable`, every
                request is answered
  deaf-query    a client that sends 1,000 `read` queries (10,000 events
                each) and never reads the replies
  big-events    1,000 events of ~900 KiB (a command's meta is stored with
                each of its events) while a SUB never reads, then one `read`
                of all of them (big-read)
  parked        1,500 queries of ~1 MiB that wait on a min_position far
                ahead (timeout 10 min), from a client that then goes away
  deaf-echo     150 commands of 8 MiB whose id is the 8 MiB (over the
                request limit: `invalid`, id echoed) from a client that
                never reads
  hot-key       one client pipelining 30,000 deposits on one account at
                once: past --max-inflight-per-client it alone gets
                `unavailable`; the probe never does
  deaf-invalid  one client sending 5,000 invalid commands (each with a
                60 KiB envelope echoed in its reply) and never reading: its
                replies are bounded and dropped, nobody else's
  park-flood    one client parking 6,000 read-your-writes waits for a
                position that never comes: past its own share it gets
                `unavailable`; the probe's waits are answered
  sub-flood     one SUB subscribing to 100,000 distinct topics, then
                leaving: subscriptions cost the publisher's thread, not the
                commands' (the probe's p99 holds)
  conn-flood    (a node with --max-connections 64) 200 idle TCP
                connections: those past the maximum are shut at once, the
                probe keeps working, and after they leave a new client
                connects and is served

Throughout, the node's VmRSS is sampled; at the end the probe's latency
per phase (p50/p99/max), the peak RSS and the node's stats are printed.

Asserts: the node stays up and exits cleanly on SIGTERM; every probe
request is answered correctly within 10 s and its p99 stays under
P99_BOUND_MS (default 250 ms) in every phase; in the fairness phases
(hot-key, deaf-invalid, park-flood, sub-flood, conn-flood) the probe is
never answered `unavailable`; every hostile request that should be
answered is answered with the right code; peak RSS stays under
RSS_BOUND_MB (default 1024).
The phases deaf-query, big-events, big-read, parked and deaf-echo measure
what the node's bounds in bytes hold (replies, a subscriber's queue,
parked queries) against RSS_BOUND_MB. Each session of phases runs on a
fresh node, so that each measurement stands alone.

Environment: ZCQRSD (path to zcqrsd, required), RSS_BOUND_MB, P99_BOUND_MS
(raise it for a build that is slow by design, a sanitizer's), HOSTILE_SCALE
(a factor on the phase sizes, default 1; the documented sizes are at 1),
HOSTILE_PHASES (comma-separated subset to run).
"""

import os
import random
import signal
import socket as pysocket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import shutil

import msgpack
import multiprocessing
import zmq

ZCQRSD = os.environ.get("ZCQRSD")
RSS_BOUND_MB = int(os.environ.get("RSS_BOUND_MB", "1024"))
SCALE = float(os.environ.get("HOSTILE_SCALE", "1"))
P99_BOUND_S = int(os.environ.get("P99_BOUND_MS", "250")) / 1000
REPLY_TIMEOUT_S = 10.0
MAX_INFLIGHT = 4000
MAX_INFLIGHT_PER_CLIENT = 500
FAIRNESS_PHASES = ("hot-key", "deaf-invalid", "park-flood", "sub-flood", "conn-flood")
LIMIT = 1024 * 1024

CTX = zmq.Context.instance()
CTX.set(zmq.MAX_SOCKETS, 16384)     # churn closes sockets faster than zmq reaps them
FAILURES = []


def n(count):
    return max(1, int(count * SCALE))


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def unpack(raw):
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


def fail(message):
    FAILURES.append(message)
    print("FAIL: " + message, flush=True)


def check(condition, message):
    if not condition:
        fail(message)
    return condition


def log(message):
    print("[%7.2fs] %s" % (time.monotonic() - T0, message), flush=True)


T0 = time.monotonic()


def sock(kind, endpoint=None, **options):
    s = CTX.socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        s.setsockopt(getattr(zmq, name), value)
    if endpoint:
        s.connect(endpoint)
    return s


# --------------------------------------------------------------------------
# The node and its memory

class Node:
    def __init__(self, extra=()):
        self.dir = tempfile.mkdtemp(prefix="zcq-hostile-")
        args = [ZCQRSD, "--data", self.dir, "--http", "none", "--command", "tcp://127.0.0.1:*",
                "--events", "tcp://127.0.0.1:*", "--query", "tcp://127.0.0.1:*",
                "--max-inflight", str(MAX_INFLIGHT),
                "--max-inflight-per-client", str(MAX_INFLIGHT_PER_CLIENT),
                "--heartbeat-ms", "200"] + list(extra)
        env = dict(os.environ)
        # a sanitizer build must fail an absurd allocation as malloc does
        env.setdefault("ASAN_OPTIONS", "allocator_may_return_null=1")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env)
        self.endpoints = {}
        deadline = time.monotonic() + 20
        while len(self.endpoints) < 3:
            if time.monotonic() > deadline:
                raise RuntimeError("zcqrsd printed no endpoints")
            line = self.proc.stdout.readline().decode()
            if not line:
                raise RuntimeError("zcqrsd exited: %s" % self.proc.stderr.read().decode())
            parts = line.split()
            if len(parts) == 2 and parts[0] in ("command", "events", "query"):
                self.endpoints[parts[0]] = parts[1]
        self.command = self.endpoints["command"]
        self.events = self.endpoints["events"]
        self.query = self.endpoints["query"]
        self.port = {k: int(v.rsplit(":", 1)[1]) for k, v in self.endpoints.items()}
        # stderr is drained so that a chatty node never blocks on its pipe
        self.stderr_lines = []
        threading.Thread(target=self._drain, daemon=True).start()
        self.rss_peak_kb = 0
        self.rss_by_phase = {}
        self.shared_phase = MP.Array("c", 64)
        self.phase = "start"
        self._stop = threading.Event()
        threading.Thread(target=self._sample, daemon=True).start()

    def _drain(self):
        for line in self.proc.stderr:
            if len(self.stderr_lines) < 2000:
                self.stderr_lines.append(line.decode(errors="replace").rstrip())

    @property
    def phase(self):
        return self.shared_phase.value.decode()

    @phase.setter
    def phase(self, name):
        self.shared_phase.value = name.encode()[:63]

    def rss_kb(self):
        try:
            with open("/proc/%d/status" % self.proc.pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return 0
        return 0

    def _sample(self):
        while not self._stop.is_set():
            rss = self.rss_kb()
            self.rss_peak_kb = max(self.rss_peak_kb, rss)
            phase = self.phase
            self.rss_by_phase[phase] = max(self.rss_by_phase.get(phase, 0), rss)
            time.sleep(0.05)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        self._stop.set()
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = "killed after 60 s"
        else:
            code = self.proc.returncode
        shutil.rmtree(self.dir, ignore_errors=True)
        return code


def call(s, body, timeout=REPLY_TIMEOUT_S, envelope=(b"",)):
    """Send one request on a DEALER and wait for its reply body."""
    s.send_multipart(list(envelope) + [body if isinstance(body, bytes) else pack(body)])
    if not s.poll(int(timeout * 1000)):
        return None
    frames = s.recv_multipart()
    return unpack(frames[-1])


def wait_reply(s, timeout=REPLY_TIMEOUT_S):
    if not s.poll(int(timeout * 1000)):
        return None
    return s.recv_multipart()


def command(cid, key, type_, data=None, **extra):
    body = {"id": cid, "aggregate": "account", "key": key, "type": type_}
    if data is not None:
        body["data"] = data
    body.update(extra)
    return body


# --------------------------------------------------------------------------
# The well-behaved client

MP = multiprocessing.get_context("spawn")


def probe_main(command_endpoint, query_endpoint, phase, stopping, results):
    """The probe's process: every ~20 ms, deposit 1 on its own account
    (DEALER, command endpoint) and read it back with min_position (DEALER,
    query endpoint). Every reply is checked; latencies are kept per phase
    (the phase's name is in shared memory, set by the test). It runs in its
    own process so that the hostile traffic of the test does not slow it."""
    global CTX
    CTX = zmq.Context()
    out = {"latency": {}, "count": 0, "unavailable": 0, "unavailable_in": {}, "errors": []}

    def current():
        return phase.value.decode()

    def record(seconds):
        out["latency"].setdefault(current(), []).append(seconds)
        out["count"] += 1

    try:
        commands = sock(zmq.DEALER, command_endpoint)
        queries = sock(zmq.DEALER, query_endpoint)
        key = "probe-%d" % os.getpid()
        reply = None
        for attempt in range(50):
            reply = call(commands, command("probe-open-%d-%d" % (os.getpid(), attempt), key,
                                           "open", {"owner": "probe"}))
            if reply and reply.get("ok"):
                break
            time.sleep(0.1)
        if not (reply and reply.get("ok")):
            out["errors"].append("probe could not open its account: %r" % (reply,))
            stopping.wait()
        else:
            version, balance, seq = reply["version"], 0, 0
            while not stopping.is_set():
                seq += 1
                cid = "probe-%d-%d" % (os.getpid(), seq)
                start = time.monotonic()
                reply = call(commands, command(cid, key, "deposit", {"amount": 1}))
                record(time.monotonic() - start)
                if reply is None:
                    out["errors"].append("[%s] no reply to probe command %s in %.0f s"
                                         % (current(), cid, REPLY_TIMEOUT_S))
                    commands.close()
                    commands = sock(zmq.DEALER, command_endpoint)
                    continue
                if reply.get("id") != cid:
                    out["errors"].append("probe command reply for %r, not %s"
                                         % (reply.get("id"), cid))
                    continue
                if not reply.get("ok"):
                    if reply.get("error") == "unavailable":
                        out["unavailable"] += 1
                        out["unavailable_in"][current()] = \
                            out["unavailable_in"].get(current(), 0) + 1
                    else:
                        out["errors"].append("probe command failed: %r" % (reply,))
                    continue
                if reply["version"] != version + 1:
                    out["errors"].append("probe version %d after %d" % (reply["version"], version))
                version, balance = reply["version"], balance + 1
                start = time.monotonic()
                answer = call(queries, {"op": "get", "view": "accounts", "key": key, "rid": seq,
                                        "min_position": reply["position"], "timeout_ms": 5000})
                record(time.monotonic() - start)
                if answer is None:
                    out["errors"].append("[%s] no reply to probe query %d" % (current(), seq))
                    queries.close()
                    queries = sock(zmq.DEALER, query_endpoint)
                elif answer.get("error") == "unavailable":
                    out["unavailable"] += 1
                    out["unavailable_in"][current()] = out["unavailable_in"].get(current(), 0) + 1
                elif not answer.get("ok") or answer.get("rid") != seq \
                        or (answer.get("row") or {}).get("balance") != balance:
                    out["errors"].append("probe query wrong: %r (balance %d)" % (answer, balance))
                stopping.wait(0.02)
        commands.close()
        queries.close()
    except Exception as error:            # noqa: BLE001 - reported by the parent
        out["errors"].append("probe crashed: %r" % (error,))
    results.put(out)


class Probe:
    """The well-behaved client, in its own process (probe_main)."""

    def __init__(self, node):
        self.stopping = MP.Event()
        self.results = MP.Queue()
        self.process = MP.Process(target=probe_main, daemon=True, args=(
            node.command, node.query, node.shared_phase, self.stopping, self.results))

    def start(self):
        self.process.start()

    def stop(self):
        """Stop the probe; returns its results."""
        self.stopping.set()
        try:
            out = self.results.get(timeout=60)
        except Exception:                 # noqa: BLE001
            out = {"latency": {}, "count": 0, "unavailable": 0, "unavailable_in": {},
                   "errors": ["the probe process gave no results"]}
        self.process.join(10)
        return out


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --------------------------------------------------------------------------
# Phases

def phase_garbage(node):
    rng = random.Random(1)
    for endpoint in (node.command, node.query):
        s = sock(zmq.DEALER, endpoint, RCVHWM=0)
        count = n(1000)
        sent = 0
        for index in range(count):
            body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 200)))
            shape = index % 4
            if shape == 0:
                s.send_multipart([body])                           # bare DEALER
            elif shape == 1:
                s.send_multipart([b"", body])                      # REQ-style
            elif shape == 2:                                       # multi-frame junk
                junk = [bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
                        for _ in range(rng.randrange(1, 6))]
                s.send_multipart(junk + [body])
            else:                                                  # empty frames only
                s.send_multipart([b""] * rng.randrange(1, 5))
            sent += 1
        answered, codes = 0, {}
        deadline = time.monotonic() + 30
        while answered < sent and time.monotonic() < deadline:
            frames = wait_reply(s, 5)
            if frames is None:
                break
            answered += 1
            try:
                reply = unpack(frames[-1])
                code = "ok" if reply.get("ok") else reply.get("error")
            except Exception:          # noqa: BLE001
                code = "undecodable"
            codes[code] = codes.get(code, 0) + 1
        log("garbage on %s: %d sent, %d answered %r" % (endpoint, sent, answered, codes))
        check(answered == sent, "garbage: %d of %d requests answered" % (answered, sent))
        bad = {c: k for c, k in codes.items() if c not in ("invalid",)}
        check(not bad, "garbage: replies other than invalid: %r" % (bad,))
        s.close()
    # REQ with a garbage body
    req = sock(zmq.REQ, node.command)
    req.send(b"\xc1\xc1\xc1")
    check(req.poll(int(REPLY_TIMEOUT_S * 1000)) and unpack(req.recv()).get("error") == "invalid",
          "REQ garbage not answered invalid")
    req.close()
    # raw TCP: bytes that are no ZMTP at all, and a greeting followed by junk
    for port in node.port.values():
        for payload in (os.urandom(4096), b"\xff" + b"\x00" * 8 + b"\x7f\x03\x00" + b"NULL" +
                        b"\x00" * 16 + b"\x00" * 32 + os.urandom(2048),
                        b"\x00" * 100000):
            try:
                raw = pysocket.create_connection(("127.0.0.1", port), timeout=2)
                raw.sendall(payload)
                time.sleep(0.01)
                raw.close()
            except OSError:
                pass
    log("raw TCP junk sent to all three ports")


def phase_big(node):
    big = pack(command("big-1", "big", "open", {"owner": "x" * (2 * LIMIT)}))
    s = sock(zmq.DEALER, node.command)
    reply = call(s, big)
    check(reply is not None and reply.get("error") == "invalid" and reply.get("id") == "big-1",
          "2 MiB command: want invalid with id, got %r" % (
              reply if reply is None else {k: reply.get(k) for k in ("id", "ok", "error")}))
    q = sock(zmq.DEALER, node.query)
    reply = call(q, pack({"op": "health", "rid": 9, "pad": "x" * (2 * LIMIT)}))
    check(reply is not None and reply.get("error") == "invalid",
          "2 MiB query: want invalid, got %r" % (reply,))
    log("2 MiB bodies answered invalid")
    s.close()
    q.close()
    # 100 MiB frames: over ZMQ_MAXMSGSIZE (16 MiB here), the node drops the peer
    huge = b"\x00" * (100 * 1024 * 1024)
    for endpoint in (node.command, node.query):
        s = sock(zmq.DEALER, endpoint, SNDTIMEO=30000)
        s.send_multipart([b"", huge])
        got = wait_reply(s, 3)
        check(got is None, "100 MiB frame to %s was answered: %r" % (endpoint, got and got[-1][:80]))
        s.close()
    del huge
    # as a raw ZMTP 3.0 peer: greeting, READY, then a frame header announcing
    # 100 MiB and 16 MiB of it; the node must hang up without waiting for
    # (or buffering) it. On the events endpoint the peer is a SUB, whose
    # frames are subscriptions.
    for name, kind in (("command", "DEALER"), ("query", "DEALER"), ("events", "SUB")):
        before = node.rss_kb()
        raw = zmtp_peer(node.port[name], kind)
        raw.sendall(b"\x02" + struct.pack(">Q", 100 * 1024 * 1024))
        sent = 0
        try:
            while sent < 16 * 1024 * 1024:
                raw.sendall(b"\x00" * 65536)           # 0x00: an unsubscription, cheap
                sent += 65536
        except OSError:
            pass
        hung_up = hung_up_within(raw, 3)
        grown = (node.rss_kb() - before) // 1024
        raw.close()
        log("raw ZMTP %s announcing 100 MiB on the %s endpoint: %s after %d MiB, RSS +%d MB"
            % (kind, name, "disconnected" if hung_up else "NOT disconnected", sent >> 20, grown))
        check(hung_up, "a 100 MiB frame on the %s endpoint was not refused (ZMQ_MAXMSGSIZE)"
              % name)
    # a subscription to a 1 MiB topic: PUB keeps a trie node per topic byte
    before = node.rss_kb()
    raw = zmtp_peer(node.port["events"], "SUB")
    topic = b"\x01" + b"t" * (1024 * 1024)
    try:
        raw.sendall(b"\x02" + struct.pack(">Q", len(topic)) + topic)
    except OSError:
        pass
    hung_up = hung_up_within(raw, 3)
    grown = (node.rss_kb() - before) // 1024
    raw.close()
    log("a 1 MiB subscription: %s, RSS +%d MB"
        % ("refused" if hung_up else "accepted", grown))
    check(grown < 32, "a 1 MiB subscription cost the node %d MB" % grown)
    check(node.alive(), "node died after 100 MiB frames")
    log("100 MiB frames sent; node alive, RSS %d MB" % (node.rss_kb() // 1024))


def zmtp_peer(port, kind):
    """A raw TCP connection that has done the ZMTP 3.0 NULL handshake as a
    socket of type `kind`."""
    greeting = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"NULL".ljust(20, b"\x00") + \
        b"\x00" + b"\x00" * 31
    ready = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", len(kind)) + kind.encode()
    raw = pysocket.create_connection(("127.0.0.1", port), timeout=5)
    raw.sendall(greeting + b"\x04" + bytes([len(ready)]) + ready)
    return raw


def hung_up_within(raw, seconds):
    """True when the node closes the connection within `seconds`."""
    deadline = time.monotonic() + seconds
    raw.settimeout(0.2)
    try:
        while time.monotonic() < deadline:
            try:
                if not raw.recv(65536):
                    return True
            except pysocket.timeout:
                continue
    except OSError:
        return True
    return False


def phase_churn(node):
    cycles = n(2000)
    start = time.monotonic()
    for index in range(cycles):
        if index % 200 == 199:
            time.sleep(0.05)            # let zmq reap the closed sockets
        s = sock(zmq.DEALER, node.command if index % 2 else node.query)
        if index % 4 == 1:
            s.send_multipart([b"", pack(command("churn-%d" % index, "churn%d" % (index % 50),
                                                "open", {"owner": "c"}))])
        elif index % 4 == 3:
            s.send_multipart([b"", pack({"op": "read", "from": 1, "limit": 100})])
        s.close()
    for index in range(n(200)):
        try:
            raw = pysocket.create_connection(("127.0.0.1", node.port["command"]), timeout=2)
            raw.close()
        except OSError:
            pass
    log("churn: %d connect/disconnect cycles in %.1f s" % (cycles, time.monotonic() - start))


def phase_deaf_dealer(node):
    count = n(50000)
    s = sock(zmq.DEALER, node.command, RCVHWM=1, SNDHWM=0)
    start = time.monotonic()
    for index in range(count):
        s.send_multipart([b"", pack(command("deaf-%d" % index, "deaf%d" % (index % 100),
                                            "deposit", {"amount": 1}))])
    log("deaf dealer: %d commands sent in %.1f s, never read" % (count, time.monotonic() - start))
    settle(node, 10)
    log("deaf dealer: RSS %d MB" % (node.rss_kb() // 1024))
    s.close()


def pipeline(endpoint, bodies, window):
    """Send bodies with at most `window` in flight, read every reply;
    returns {code: count}."""
    s = sock(zmq.DEALER, endpoint, RCVHWM=0, SNDHWM=0)
    codes, inflight, sent, total = {}, 0, 0, len(bodies)
    while sent < total or inflight:
        while sent < total and inflight < window:
            s.send_multipart([b"", bodies[sent]])
            sent += 1
            inflight += 1
        frames = wait_reply(s, REPLY_TIMEOUT_S)
        if frames is None:
            fail("pipeline: no reply for %.0f s with %d in flight" % (REPLY_TIMEOUT_S, inflight))
            break
        reply = unpack(frames[-1])
        code = "ok" if reply.get("ok") else reply.get("error")
        codes[code] = codes.get(code, 0) + 1
        inflight -= 1
    s.close()
    return codes


def phase_deaf_sub(node):
    sub = sock(zmq.SUB, None, RCVHWM=1)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(node.events)
    time.sleep(0.3)
    count = n(100000)
    # open the accounts, then one event per deposit
    opens = [pack(command("sub-open-%d" % k, "sub%d" % k, "open", {"owner": "s"}))
             for k in range(100)]
    pipeline(node.command, opens, 100)
    bodies = [pack(command("sub-%d" % i, "sub%d" % (i % 100), "deposit", {"amount": 1}))
              for i in range(count)]
    start = time.monotonic()
    codes = pipeline(node.command, bodies, 500)
    elapsed = time.monotonic() - start
    log("deaf sub: %d events produced in %.1f s (%.0f/s) %r, SUB never read"
        % (codes.get("ok", 0), elapsed, codes.get("ok", 0) / elapsed, codes))
    check(codes.get("ok", 0) + codes.get("unavailable", 0) == count,
          "deaf sub: unexpected replies %r" % (codes,))
    settle(node, 10)
    log("deaf sub: RSS %d MB" % (node.rss_kb() // 1024))
    sub.close()


def phase_overload(node):
    count = n(20000)
    opens = [pack(command("ov-open-%d" % k, "ov%d" % k, "open", {"owner": "o"}))
             for k in range(200)]
    pipeline(node.command, opens, 200)
    bodies = [pack(command("ov-%d" % i, "ov%d" % (i % 200), "deposit", {"amount": 1}))
              for i in range(count)]
    start = time.monotonic()
    codes = pipeline(node.command, bodies, count)        # all at once
    log("overload: %d commands pipelined at once in %.1f s: %r"
        % (count, time.monotonic() - start, codes))
    check(sum(codes.values()) == count, "overload: %d of %d answered" % (sum(codes.values()), count))
    check(codes.get("unavailable", 0) > 0, "overload: no unavailable past --max-inflight")
    check(set(codes) <= {"ok", "unavailable"}, "overload: unexpected codes %r" % (codes,))


def settle(node, seconds=30):
    """Wait until the node's RSS stops growing (stable for 1.5 s)."""
    deadline = time.monotonic() + seconds
    last, stable = node.rss_kb(), 0
    while time.monotonic() < deadline and stable < 3:
        time.sleep(0.5)
        now = node.rss_kb()
        stable = stable + 1 if now <= last + 1024 else 0
        last = max(last, now)
    return node.rss_kb()


def phase_deaf_query(node):
    """Large `read` replies (10,000 events each) to a client that never reads."""
    fill = [pack(command("fill-%d" % i, "fill%d" % i, "open", {"owner": "f" * 64}))
            for i in range(10000)]
    pipeline(node.command, fill, 500)
    count = n(1000)
    s = sock(zmq.DEALER, node.query, RCVHWM=1, SNDHWM=0)
    for index in range(count):
        s.send_multipart([b"", pack({"op": "read", "from": 1, "limit": 10000, "rid": index})])
    settle(node)
    log("deaf query: %d reads of 10,000 events sent, never read; RSS %d MB"
        % (count, node.rss_kb() // 1024))
    s.close()


def phase_big_events(node):
    """Events as large as a request allows (the command's meta is stored with
    every event, ~900 KiB here) while a SUB never reads."""
    count = n(1000)
    meta = {"blob": "m" * (900 * 1024)}
    sub = sock(zmq.SUB, None, RCVHWM=1)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(node.events)
    time.sleep(0.3)
    q = sock(zmq.DEALER, node.query)
    node.big_from = call(q, {"op": "health"}).get("head", 0) + 1
    node.big_count = count
    q.close()
    bodies = [pack(command("bigev-%d" % i, "bigev%d" % (i % 10), "open" if i < 10 else "deposit",
                           {"owner": "b"} if i < 10 else {"amount": 1}, meta=meta))
              for i in range(count)]
    start = time.monotonic()
    codes = pipeline(node.command, bodies, 20)
    settle(node, 10)
    log("big events: %d events of ~900 KiB in %.1f s %r with a deaf SUB; RSS %d MB"
        % (count, time.monotonic() - start, codes, node.rss_kb() // 1024))
    sub.close()


def phase_big_read(node):
    """One `read` over the big events: the reply holds all of them."""
    q = sock(zmq.DEALER, node.query, RCVHWM=0)
    q.send_multipart([b"", pack({"op": "read", "from": node.big_from, "limit": node.big_count,
                                 "rid": "big"})])
    frames = wait_reply(q, 120)
    size = len(frames[-1]) if frames else 0
    log("big read: one reply of %d MB; RSS %d MB" % (size >> 20, node.rss_kb() // 1024))
    del frames
    q.close()


def phase_deaf_echo(node):
    """Oversized (8 MiB) commands whose `id` is the 8 MiB: the node answers
    `invalid` and echoes the id, to a client that never reads."""
    count = n(150)
    s = sock(zmq.DEALER, node.command, RCVHWM=1, SNDHWM=0)
    body = pack({"id": "x" * (8 * 1024 * 1024), "aggregate": "account", "key": "1",
                 "type": "open"})
    for index in range(count):
        s.send_multipart([b"", body])
    settle(node)
    log("deaf echo: %d commands with an 8 MiB id, never read; RSS %d MB"
        % (count, node.rss_kb() // 1024))
    s.close()


def phase_parked(node):
    """Queries that wait for a min_position far ahead (timeout_ms up to an
    hour is allowed): the node keeps each one, body included, until it
    times out, even after the client is gone."""
    count = n(1500)
    pad = "p" * (LIMIT - 1024)
    s = sock(zmq.DEALER, node.query, SNDHWM=0)
    for index in range(count):
        s.send_multipart([b"", pack({"op": "get", "view": "totals", "key": "bank", "rid": index,
                                     "min_position": 10 ** 12, "timeout_ms": 600000,
                                     "pad": pad})])
    s.close()
    settle(node)
    log("parked: %d queries of ~1 MiB waiting on min_position, client gone; RSS %d MB"
        % (count, node.rss_kb() // 1024))


def phase_hot_key(node):
    """One client floods one account: its excess is `unavailable`, and the
    probe (another client) is served as usual."""
    count = n(30000)
    pipeline(node.command, [pack(command("hot-open", "hot", "open", {"owner": "h"}))], 1)
    bodies = [pack(command("hot-%d" % i, "hot", "deposit", {"amount": 1})) for i in range(count)]
    start = time.monotonic()
    codes = pipeline(node.command, bodies, count)
    log("hot key: %d deposits on one account at once in %.1f s: %r"
        % (count, time.monotonic() - start, codes))
    check(sum(codes.values()) == count, "hot-key: %d of %d answered" % (sum(codes.values()), count))
    check(codes.get("unavailable", 0) > 0, "hot-key: nothing was unavailable past the client's share")
    check(set(codes) <= {"ok", "unavailable"}, "hot-key: unexpected codes %r" % (codes,))


def phase_deaf_invalid(node):
    """A client that sends invalid commands with large envelopes and never
    reads: its replies pile up to its own bound, then are dropped."""
    count = n(5000)
    s = sock(zmq.DEALER, node.command, RCVHWM=1, SNDHWM=0)
    envelope = [b"e" * 1000] * 60                   # 60 KB, under the envelope bounds
    body = pack({"id": "deaf", "aggregate": "NOT VALID", "key": "k", "type": "t"})
    before = stats(node).get("replies_dropped", 0)
    for index in range(count):
        s.send_multipart(envelope + [body])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:              # until every request is read
        now = stats(node)
        if now.get("commands_received", 0) >= count:
            break
        time.sleep(0.2)
    settle(node)
    dropped = stats(node).get("replies_dropped", 0) - before
    log("deaf invalid: %d invalid commands with 60 KiB envelopes, never read; %d replies "
        "dropped; RSS %d MB" % (count, dropped, node.rss_kb() // 1024))
    check(dropped > 0, "deaf-invalid: no reply of the deaf client was dropped")
    s.close()


def phase_park_flood(node):
    """One client parks waits for a position that never comes; past its own
    share it gets `unavailable`, and the probe's waits still park."""
    count = n(6000)
    s = sock(zmq.DEALER, node.query, SNDHWM=0, RCVHWM=0)
    for index in range(count):
        s.send_multipart([b"", pack({"op": "get", "view": "totals", "key": "bank", "rid": index,
                                     "min_position": 10 ** 12, "timeout_ms": 600000})])
    refused = 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and s.poll(2000):
        reply = unpack(s.recv_multipart()[-1])
        if reply.get("error") == "unavailable":
            refused += 1
    log("park flood: %d waits parked by one client, %d refused as unavailable"
        % (count, refused))
    check(refused > 0, "park-flood: no wait was refused past the client's share")
    time.sleep(1.0)                                 # the probe parks beside them meanwhile
    s.close()


def phase_sub_flood(node):
    """Many subscriptions from one connection, then a disconnect."""
    count = n(100000)
    sub = sock(zmq.SUB, None, RCVHWM=1, SNDHWM=0)   # no subscription lost on our side
    sub.connect(node.events)
    start = time.monotonic()
    for index in range(count):
        sub.setsockopt(zmq.SUBSCRIBE, b"account/flood-%d/" % index)
    sub.setsockopt(zmq.SUBSCRIBE, b"$heartbeat")
    got = sub.poll(30000)                           # the node took them all, in order
    log("sub flood: %d subscriptions in %.1f s (heartbeat after: %s); RSS %d MB"
        % (count, time.monotonic() - start, bool(got), node.rss_kb() // 1024))
    check(bool(got), "sub-flood: no heartbeat after the subscriptions")
    sub.close()
    settle(node, 10)


def phase_conn_flood(node):
    """More idle connections than --max-connections: the excess is shut."""
    q = sock(zmq.DEALER, node.query)              # connected before the flood
    check(bool(call(q, {"op": "health", "rid": 0})), "conn-flood: no health reply before")
    raws = []
    for index in range(200):
        raw = pysocket.create_connection(("127.0.0.1", node.port["command"]), timeout=5)
        raws.append(raw)
    # ZeroMQ greets each connection first; a shut one then ends (EOF)
    import select
    open_ = {raw.fileno(): raw for raw in raws}
    shut = 0
    deadline = time.monotonic() + 5
    while open_ and time.monotonic() < deadline:
        ready, _, _ = select.select(list(open_), [], [], 0.5)
        if not ready:
            break
        for fd in ready:
            try:
                data = open_[fd].recv(4096)
            except OSError:
                data = b""
            if not data:
                shut += 1
                del open_[fd]
    reply = call(q, {"op": "stats", "rid": 1}) or {}
    q.close()
    refused = reply.get("stats", {}).get("connections_refused", 0)
    log("conn flood: 200 idle connections against --max-connections 64: %d shut by the node, "
        "connections_refused %d" % (shut, refused))
    check(refused >= 100, "conn-flood: only %d connections refused" % refused)
    check(shut >= 100, "conn-flood: only %d connections were shut" % shut)
    for raw in raws:
        raw.close()
    deadline = time.monotonic() + 10
    reply = None
    while time.monotonic() < deadline:
        q = sock(zmq.DEALER, node.query)
        reply = call(q, {"op": "health", "rid": 1}, timeout=1)
        q.close()
        if reply:
            break
    check(bool(reply and reply.get("ok")), "conn-flood: a new client was not served after: %r"
          % (reply,))


#  Sessions: each runs its phases on a fresh node (so that each memory
#  measurement stands alone), with the probe running throughout.
SESSIONS = [
    [("garbage", phase_garbage), ("big", phase_big), ("churn", phase_churn),
     ("deaf-dealer", phase_deaf_dealer), ("deaf-sub", phase_deaf_sub),
     ("overload", phase_overload)],
    [("deaf-query", phase_deaf_query)],
    [("big-events", phase_big_events), ("big-read", phase_big_read)],
    [("parked", phase_parked)],
    [("deaf-echo", phase_deaf_echo)],
    [("hot-key", phase_hot_key), ("deaf-invalid", phase_deaf_invalid),
     ("park-flood", phase_park_flood), ("sub-flood", phase_sub_flood)],
    ([("conn-flood", phase_conn_flood)], ["--max-connections", "64"]),
]


def stats(node):
    q = sock(zmq.DEALER, node.query)
    reply = call(q, {"op": "stats", "rid": 1})
    q.close()
    return (reply or {}).get("stats", {})


def run_session(phases, report, extra=()):
    node = Node(extra)
    log("zcqrsd pid %d: %r, RSS %d MB" % (node.proc.pid, node.endpoints, node.rss_kb() // 1024))
    probe = Probe(node)
    probe.start()
    time.sleep(0.5)
    try:
        for name, fn in phases:
            node.phase = name
            log("== %s" % name)
            start, rss_before = time.monotonic(), node.rss_kb()
            fn(node)
            report["rss"][name] = (rss_before, node.rss_by_phase.get(name, 0))
            check(node.alive(), "node died during %s" % name)
            if not node.alive():
                break
            log("   %s done in %.1f s, RSS %d MB (peak in phase %d MB)" % (
                name, time.monotonic() - start, node.rss_kb() // 1024,
                node.rss_by_phase.get(name, 0) // 1024))
        node.phase = "end"
        time.sleep(0.5)
    finally:
        result = probe.stop()
        final = stats(node) if node.alive() else {}
        code = node.stop()
    for name, values in result["latency"].items():
        if name != "end":
            report["latency"].setdefault(name, []).extend(values)
    report["round_trips"] += result["count"]
    report["unavailable"] += result["unavailable"]
    for name, count in result.get("unavailable_in", {}).items():
        if name in FAIRNESS_PHASES:
            fail("the probe got %d unavailable in %s: another client's flood reached it"
                 % (count, name))
    for error in result["errors"][:20]:
        fail(error)
    report["peak"] = max(report["peak"], node.rss_peak_kb)
    keys = ("commands_received", "commands_accepted", "commands_invalid", "commands_unavailable",
            "commands_failed", "replies_dropped", "queries_served", "events_written")
    log("node stats: " + ", ".join("%s=%s" % (k, final.get(k)) for k in keys))
    check(final.get("commands_failed", 0) == 0, "commands failed (internal): %r" % (final,))
    check(code == 0, "zcqrsd exit code %r after SIGTERM" % (code,))
    if code != 0:
        print("\n".join(node.stderr_lines[-30:]))


def main():
    if not ZCQRSD or not os.access(ZCQRSD, os.X_OK):
        print("hostile.py: set ZCQRSD to the zcqrsd binary", file=sys.stderr)
        return 2
    wanted = os.environ.get("HOSTILE_PHASES")
    report = {"rss": {}, "latency": {}, "round_trips": 0, "unavailable": 0, "peak": 0}
    for session in SESSIONS:
        session, extra = session if isinstance(session, tuple) else (session, [])
        phases = [(name, fn) for name, fn in session
                  if not wanted or name in wanted.split(",")]
        if phases:
            run_session(phases, report, extra)

    print()
    print("== probe latency per phase (command, then read-your-writes query)")
    print("%-12s %7s %9s %9s %9s" % ("phase", "count", "p50 ms", "p99 ms", "max ms"))
    for name, values in report["latency"].items():
        p99 = percentile(values, 0.99)
        print("%-12s %7d %9.2f %9.2f %9.2f" % (name, len(values), percentile(values, 0.5) * 1000,
                                               p99 * 1000, max(values) * 1000))
        check(p99 < P99_BOUND_S, "probe p99 %.3f s in phase %s" % (p99, name))
    print("probe: %d round trips, %d unavailable" % (report["round_trips"], report["unavailable"]))
    print()
    print("== node RSS per phase: MB at the start -> peak during the phase (bound %d MB)"
          % RSS_BOUND_MB)
    for name, (before, peak) in report["rss"].items():
        print("%-12s %6d -> %6d" % (name, before // 1024, peak // 1024))
        check(peak // 1024 < RSS_BOUND_MB, "RSS %d MB in phase %s, over the bound %d MB"
              % (peak // 1024, name, RSS_BOUND_MB))
    print("peak RSS %d MB" % (report["peak"] // 1024))
    print("total %.1f s" % (time.monotonic() - T0))
    if FAILURES:
        print("\n%d FAILURE(S):" % len(FAILURES))
        for failure in FAILURES:
            print("  " + failure)
        return 1
    print("hostile: all good")
    return 0


if __name__ == "__main__":
    sys.exit(main())
