#!/usr/bin/python3
"""crash_test.py: kill zcqrsd at random moments under pipelined load and
check, after every restart, that nothing acknowledged was lost, nothing was
applied twice and the log, the streams and the views agree.

Only the wire protocol (ZCQ/1) is used: the daemon is an opaque process that
prints its bound endpoints on stdout; everything else goes over ZeroMQ and
MessagePack (Debian's python3-zmq and python3-msgpack).

Modes
  --mode crash     (default) each round: start the node on the same data dir
                   (fresh ephemeral ports), verify, resolve the commands whose
                   fate is unknown, run pipelined load (--rate, then a burst
                   at full speed), SIGKILL it at a random moment. Some rounds
                   also kill the node while it starts (before it is ready) or
                   during a graceful stop (SIGTERM then SIGKILL).
  --mode shutdown  each round ends with SIGTERM while the load keeps going:
                   the node must exit 0, every acknowledged command must be
                   durable, no command may be committed without its reply
                   reaching the client, and a client that has seen
                   `unavailable` must never get an `ok` for a command it sent
                   after that.
  --power-loss     (crash mode) after each SIGKILL, also cut the WAL and
                   MANIFEST files back to what was fsynced, as a power cut
                   would (needs the fault shim, fault_shim.c); with
                   --expect-loss the run must lose acknowledged commands (a
                   control for wal mode).

What is verified after every restart (see verify()):
  1. log positions are exactly 1..head (no hole, no duplicate), and the part
     of the log seen by the previous verification is unchanged;
  2. every event belongs to a command this test sent, with the right
     stream, type and payload; no command id appears twice;
  3. every acknowledged (ok) command is in the log exactly once, at the
     position and stream version its acknowledgement gave;
  4. no command that got a failure reply (rejected, ...) is in the log; a
     command with no reply ("unknown") may or may not be;
  5. every stream's versions are 1..n in log order, and the `stream` query
     returns exactly the log's events of that stream;
  6. the views (rebuilt from the log on start) equal views recomputed here
     from the log: `accounts` row by row, `totals`;
  7. money: sum of balances == deposits - withdrawals in the log, and
     within the bounds the acknowledgements allow (acked ones surely
     applied, unknown ones maybe);
  8. every id acknowledged in the round just killed, and a sample of the
     older ones, sent again, answer duplicate: true with the same stream,
     version and position;
  9. every unknown command is retried with its id: it answers duplicate
     (if it was in the log, same position) or is applied now, exactly once
     (or rejected, when the domain allows it) -- never twice;
 10. every aggregate loads at the log's version: a deposit to each account
     with an `expect` one past it answers `conflict` with that version.
Checks 5, 8 and 10 read the stream index and the command ids, which the
store keeps in memory for the part of the log it has not indexed yet and
rebuilds from the log after a crash (engine/store.c DESIGN 11, 12). Each
start picks how the store's indexer runs (--index-modes): `default`;
`lagging`, which keeps it from writing while the node runs
(ZCQ_STORE_INDEX_DELAY_MS), so that a kill finds every command since the
last clean stop unindexed; `eager`, which makes it seal and write every 64
entries (ZCQ_STORE_INDEX_ENTRIES), so that kills land between the log write
and the index write, and in the middle of index writes.
At the end every transfer (a withdraw + deposit pair) is complete, so the
sum of balances equals external deposits - external withdrawals, all
acknowledged.

Exit status: 0 when every check passed, 1 on a failed check (with a diff),
2 on a usage or environment problem.
"""

import argparse
import collections
import ctypes
import itertools
import os
import queue
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import msgpack
import zmq

START_TIMEOUT = 120.0       # the machine may be loaded: generous deadlines
REPLY_TIMEOUT = 60.0
STOP_TIMEOUT = 90.0
DRAIN_QUIET = 0.2           # after a kill: stop reading replies after this much silence

# How the store's indexer runs in a start (see the top): environment for zcqrsd
INDEX_MODES = {
    "default": {},
    "lagging": {"ZCQ_STORE_INDEX_DELAY_MS": "3600000"},
    "eager": {"ZCQ_STORE_INDEX_ENTRIES": "64"},
}

CREDIT = ["c%02d" % i for i in range(24)]     # overdraft 10**12: never rejected
STRICT = ["s%02d" % i for i in range(8)]      # overdraft 0: withdrawals may be rejected
BIG_OVERDRAFT = 10 ** 12
EVENT_TYPE = {"open": "opened", "deposit": "deposited", "withdraw": "withdrawn"}

# Isolation from other tests on the same machine. A client whose node died
# keeps reconnecting to its port, and the kernel may hand that port to
# another test's node: its queued commands would land there. So each run
# binds its nodes to a loopback address of its own (all of 127/8 is local),
# and its command ids carry a run tag. (Turning reconnection off instead,
# ZMQ_RECONNECT_IVL -1, is no good: libzmq then drops the replies that had
# arrived but were not read yet when the node closes the connection.)
_system_random = random.SystemRandom()
HOST = "127.%d.%d.%d" % (_system_random.randint(1, 254), _system_random.randint(0, 255),
                         _system_random.randint(1, 254))
RUN_TAG = "%06x" % _system_random.getrandbits(24)


class Failure(Exception):
    """A broken invariant: the test fails with this text."""


class AckedLost(Failure):
    """Acknowledged commands are missing from the log (with whatever follows
    from that, e.g. the money bounds): what --expect-loss expects."""


def dealer(ctx, endpoint):
    """A DEALER that queues without limit (see HOST about reconnection)."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(endpoint)
    return sock


def pack(obj):
    return msgpack.packb(obj, use_bin_type=True)


def unpack(raw):
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


def log(msg):
    sys.stderr.write("crash_test: %s\n" % msg)
    sys.stderr.flush()


def _die_with_parent():
    """In the child: SIGKILL when this test dies (ctest timeout, ^C)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)       # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# --------------------------------------------------------------------------
# The daemon

class Daemon:
    def __init__(self, binary, data, durability, workdir, env=None):
        self.env = env
        self.binary = binary
        self.data = data
        self.durability = durability
        self.workdir = workdir
        self.proc = None
        self.lines = None
        self.endpoints = None
        self.starts = 0
        self.stderr_path = None

    def spawn(self, extra_env=None):
        self.starts += 1
        self.stderr_path = os.path.join(self.workdir, "zcqrsd-%03d.stderr" % self.starts)
        err = open(self.stderr_path, "wb")
        endpoint = "tcp://%s:*" % HOST      # fresh ephemeral ports every start
        argv = [self.binary, "--data", self.data, "--http", "none", "--durability", self.durability,
                "--command", endpoint, "--events", endpoint, "--query", endpoint]
        env = None
        if self.env or extra_env:
            env = dict(os.environ, **(self.env or {}))
            env.update(extra_env or {})
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=err, env=env,
                                     stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        err.close()
        self.lines = queue.Queue()
        self.endpoints = None
        proc, lines = self.proc, self.lines

        def reader():
            for raw in proc.stdout:
                lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
            lines.put(None)
        threading.Thread(target=reader, daemon=True).start()
        return self.proc

    def stderr_tail(self, count=15):
        try:
            with open(self.stderr_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-count:])

    def wait_ready(self, timeout=START_TIMEOUT):
        """Read the daemon's stdout until it has printed its three
        endpoints; no fixed sleep."""
        deadline = time.monotonic() + timeout
        endpoints = {}
        while len(endpoints) < 3:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Failure("zcqrsd did not print its endpoints within %.0f s\n%s"
                              % (timeout, self.stderr_tail()))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                rc = self.proc.wait()
                raise Failure("zcqrsd exited with %s before it was ready:\n%s"
                              % (rc, self.stderr_tail()))
            words = line.split()
            if len(words) == 2 and words[0] in ("command", "events", "query"):
                endpoints[words[0]] = words[1]
        self.endpoints = endpoints
        return endpoints

    def signal(self, signo):
        try:
            os.kill(self.proc.pid, signo)
        except ProcessLookupError:
            pass

    def kill(self):
        self.signal(signal.SIGKILL)
        rc = self.wait(STOP_TIMEOUT)
        if self.power_loss:
            self.power_loss(self)
        return rc

    power_loss = None       # called after each SIGKILL: see drop_unsynced

    def wait(self, timeout):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.proc.wait()
            raise Failure("zcqrsd did not exit within %.0f s\n%s"
                          % (timeout, self.stderr_tail()))

    def alive(self):
        return self.proc is not None and self.proc.poll() is None


# --------------------------------------------------------------------------
# Clients

class Query:
    """A DEALER on the query endpoint; replies are matched by rid."""

    def __init__(self, ctx, endpoint):
        self.sock = dealer(ctx, endpoint)
        self.rids = itertools.count(1)

    def call(self, body, timeout=REPLY_TIMEOUT):
        rid = next(self.rids)
        body = dict(body, rid=rid)
        self.sock.send(pack(body))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000) + 1):
                raise Failure("query %r got no reply within %.0f s" % (body, timeout))
            reply = unpack(self.sock.recv_multipart()[-1])
            if isinstance(reply, dict) and reply.get("rid") == rid:
                return reply

    def ok(self, body, timeout=REPLY_TIMEOUT):
        reply = self.call(body, timeout)
        if reply.get("ok") is not True:
            raise Failure("query %r failed: %r" % (body, reply))
        return reply

    def close(self):
        self.sock.close(0)


def call_commands(ctx, endpoint, bodies, timeout=REPLY_TIMEOUT):
    """Send commands pipelined on one DEALER (in order) and return
    {id: reply}. Every one must be answered exactly once."""
    sock = dealer(ctx, endpoint)
    try:
        for body in bodies:
            sock.send(pack(body))
        replies = {}
        deadline = time.monotonic() + timeout + len(bodies) / 500.0
        while len(replies) < len(bodies):
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(int(left * 1000) + 1):
                missing = [b["id"] for b in bodies if b["id"] not in replies]
                raise Failure("%d of %d commands got no reply within the deadline: %s"
                              % (len(missing), len(bodies), missing[:10]))
            reply = unpack(sock.recv_multipart()[-1])
            cid = reply.get("id")
            if cid in replies:
                raise Failure("two replies for command %s: %r and %r" % (cid, replies[cid], reply))
            replies[cid] = reply
        return replies
    finally:
        sock.close(0)


class Cmd:
    __slots__ = ("seq", "id", "type", "key", "amount", "transfer", "body", "sent_after_unavailable")

    def __init__(self, seq, cid, ctype, key, amount, transfer, data):
        self.seq = seq
        self.id = cid
        self.type = ctype
        self.key = key
        self.amount = amount
        self.transfer = transfer
        self.body = {"id": cid, "aggregate": "account", "key": key, "type": ctype, "data": data}
        self.sent_after_unavailable = False


SEQ = itertools.count(1)        # global send order (thread-safe under the GIL)


class LoadClient(threading.Thread):
    """One pipelined DEALER: keeps up to `window` commands in flight and
    records every command sent and every reply."""

    def __init__(self, ctx, endpoint, index, round_no, rnd, window, rate):
        super().__init__(daemon=True)
        self.rate = rate            # commands per second, 0 = as fast as the window allows
        self.burst = threading.Event()  # set: ignore the rate (full pipeline before a kill)
        self.ctx = ctx
        self.endpoint = endpoint
        self.index = index
        self.round_no = round_no
        self.rnd = rnd
        self.window = window
        self.sent = {}              # id -> Cmd
        self.replies = {}           # id -> reply
        self.problems = []          # protocol violations seen by this client
        self.sending = threading.Event()
        self.sending.set()
        self.stop = threading.Event()
        self.terminating = threading.Event()     # set just before SIGTERM
        self.saw_unavailable = False
        self.counter = 0
        self.new_account = "n%03dx%d" % (round_no, index)
        self.new_opened = False
        self.error = None

    def _next_commands(self):
        """The next command, or a transfer's two halves."""
        rnd = self.rnd
        self.counter += 1
        prefix = "%s-r%d-c%d-%d" % (RUN_TAG, self.round_no, self.index, self.counter)
        if not self.new_opened:
            self.new_opened = True
            return [("open", self.new_account, None, None,
                     {"owner": "load%d" % self.index, "overdraft": 0}, prefix + "-open")]
        roll = rnd.random()
        amount = rnd.randint(1, 1000)
        if roll < 0.10:
            return [("deposit", self.new_account, amount, None, {"amount": amount}, prefix + "-dep")]
        if roll < 0.45:
            key = rnd.choice(CREDIT + STRICT)
            return [("deposit", key, amount, None, {"amount": amount}, prefix + "-dep")]
        if roll < 0.65:
            key = rnd.choice(CREDIT + STRICT)
            if key in STRICT:
                amount = rnd.randint(1, 1500)
            return [("withdraw", key, amount, None, {"amount": amount}, prefix + "-wd")]
        source, target = rnd.sample(CREDIT, 2)
        return [("withdraw", source, amount, prefix, {"amount": amount}, prefix + "-tw"),
                ("deposit", target, amount, prefix, {"amount": amount}, prefix + "-td")]

    def run(self):
        try:
            self._run()
        except Exception as exc:        # reported by the main thread
            self.error = exc

    def _run(self):
        sock = dealer(self.ctx, self.endpoint)
        outstanding = 0
        pending = []
        tokens = 0.0
        last = time.monotonic()
        try:
            while not self.stop.is_set():
                if self.rate and not self.burst.is_set():
                    # token bucket: bursts of up to a window, `rate` on average
                    now = time.monotonic()
                    tokens = min(float(self.window), tokens + (now - last) * self.rate)
                    last = now
                while (self.sending.is_set() and outstanding < self.window
                       and (not self.rate or tokens >= 1 or pending or self.burst.is_set())):
                    if not pending:
                        pending = self._next_commands()
                    ctype, key, amount, transfer, data, cid = pending[0]
                    cmd = Cmd(next(SEQ), cid, ctype, key, amount, transfer, data)
                    cmd.sent_after_unavailable = self.saw_unavailable
                    self.sent[cid] = cmd        # recorded before: it may arrive
                    try:
                        sock.send(pack(cmd.body), zmq.NOBLOCK)
                    except zmq.Again:
                        del self.sent[cid]      # certainly not sent
                        break
                    pending.pop(0)
                    outstanding += 1
                    tokens -= 1
                if sock.poll(20):
                    outstanding -= self._receive(sock)
            # the node is gone or stopped: read every reply already on its
            # way (they count as acknowledgements) until the socket is quiet
            while sock.poll(int(DRAIN_QUIET * 1000)):
                self._receive(sock)
        finally:
            sock.close(0)
            # the second half of a transfer that was never sent: the test
            # treats it like a lost message, so the retries complete it
            for ctype, key, amount, transfer, data, cid in pending:
                if transfer:
                    self.sent[cid] = Cmd(next(SEQ), cid, ctype, key, amount, transfer, data)

    def _receive(self, sock):
        """Take every reply waiting on the socket; returns how many."""
        count = 0
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return count
            reply = unpack(frames[-1])
            cid = reply.get("id") if isinstance(reply, dict) else None
            if cid not in self.sent:
                self.problems.append("reply for a command never sent: %r" % (reply,))
                continue
            if cid in self.replies:
                self.problems.append("second reply for %s: %r then %r"
                                     % (cid, self.replies[cid], reply))
                continue
            self.replies[cid] = reply
            count += 1
            if reply.get("error") == "unavailable":
                self.saw_unavailable = True
                if not self.terminating.is_set():
                    self.problems.append("`unavailable` before the node was stopped: %r"
                                         % (reply,))

    def stop_sending(self):
        self.sending.clear()


def run_load(ctx, endpoint, round_no, seed, clients, window, rate):
    loaders = [LoadClient(ctx, endpoint, i, round_no,
                          random.Random("%s/%d/%d" % (seed, round_no, i)), window,
                          rate / clients)
               for i in range(clients)]
    for loader in loaders:
        loader.start()
    return loaders


def drain_and_stop(loaders):
    """After the node died (or stopped): stop sending, read the replies
    that were already on their way, and close."""
    for loader in loaders:
        loader.stop_sending()
    last = -1
    quiet_since = time.monotonic()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        count = sum(len(loader.replies) for loader in loaders)
        if count != last:
            last = count
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= DRAIN_QUIET:
            break
        time.sleep(0.02)
    for loader in loaders:
        loader.stop.set()
    for loader in loaders:
        loader.join(30)
        if loader.is_alive():
            raise Failure("load client %d did not stop" % loader.index)
        if loader.error:
            raise Failure("load client %d failed: %r" % (loader.index, loader.error))


# --------------------------------------------------------------------------
# The test's knowledge: what was sent, what was acknowledged

class Model:
    def __init__(self):
        self.cmds = {}          # id -> Cmd (every command ever sent)
        self.acks = {}          # id -> ok reply (the first success; retries keep it)
        self.failed = {}        # id -> failure reply (never applied)
        self.unknown = {}       # id -> Cmd, no reply yet
        self.retry_later = {}   # id -> Cmd that got `unavailable` (not applied; a client retries)
        self.verified_log = []  # the log as the last verification saw it
        self.mode = "crash"
        self.stop_head = None   # the head zcqrsd printed when it stopped cleanly
        self.derived = None     # what verify() derived from verified_log
        self.confirmed = set()  # acked ids found where their ack said, in verified_log
        self.round_acks = []    # ids acknowledged in the latest round
        self.stats = collections.Counter()

    def add_round(self, loaders, allow_unavailable=False):
        problems = []
        self.round_acks = []
        for loader in loaders:
            problems += loader.problems
            for cid, cmd in loader.sent.items():
                if cid in self.cmds:
                    problems.append("command id %s sent twice by the load" % cid)
                self.cmds[cid] = cmd
                reply = loader.replies.get(cid)
                if reply is None:
                    self.unknown[cid] = cmd
                    self.stats["unknown"] += 1
                    continue
                problems += self.check_reply(cmd, reply, fresh=True,
                                             allow_unavailable=allow_unavailable)
                if reply.get("ok") is True:
                    self.round_acks.append(cid)
        if problems:
            raise Failure("bad replies during the load:\n  " + "\n  ".join(problems[:30]))

    def check_reply(self, cmd, reply, fresh, allow_unavailable=False):
        """Record a reply to a first send; return the problems it shows."""
        cid = cmd.id
        if reply.get("ok") is True:
            problems = []
            expect = {"stream": "account/" + cmd.key, "events": 1, "duplicate": not fresh}
            for key, value in expect.items():
                if reply.get(key) != value:
                    problems.append("ack of %s: %s is %r, expected %r (%r)"
                                    % (cid, key, reply.get(key), value, reply))
            if not isinstance(reply.get("position"), int) or not isinstance(reply.get("version"), int):
                problems.append("ack of %s lacks position/version: %r" % (cid, reply))
            if cmd.sent_after_unavailable:
                problems.append("%s was sent after this client got `unavailable` (node "
                                "shutting down) and was still accepted: %r" % (cid, reply))
            self.acks[cid] = reply
            self.stats["acked"] += 1
            return problems
        code = reply.get("error")
        self.failed[cid] = reply
        self.stats["failed_" + str(code)] += 1
        if code == "rejected" and cmd.type == "withdraw" and cmd.key in STRICT:
            return []
        if code == "unavailable" and allow_unavailable:
            self.retry_later[cid] = cmd
            return []
        return ["unexpected failure for %s (%s %s): %r" % (cid, cmd.type, cmd.key, reply)]


# --------------------------------------------------------------------------
# Verification

def read_log(q, start=1):
    events = []
    frm = start
    head = None
    while True:
        reply = q.ok({"op": "read", "from": frm, "limit": 10000})
        page = reply["events"]
        if head is None:
            head = reply["head"]
        elif reply["head"] != head:
            raise Failure("log head moved from %d to %d while the node was idle"
                          % (head, reply["head"]))
        events += page
        if not page:
            break
        frm = page[-1]["position"] + 1
        if frm > head:
            break
    return events, head


def describe_positions(positions, head):
    """A short account of how a position list differs from 1..head."""
    seen = collections.Counter(positions)
    dups = sorted(p for p, n in seen.items() if n > 1)
    holes = sorted(set(range(1, head + 1)) - set(seen))
    extra = sorted(p for p in seen if p < 1 or p > head)
    out = []
    if holes:
        out.append("holes: %s%s" % (holes[:20], " ..." if len(holes) > 20 else ""))
    if dups:
        out.append("duplicated positions: %s" % dups[:20])
    if extra:
        out.append("positions outside 1..%d: %s" % (head, extra[:20]))
    if not out and positions != sorted(positions):
        out.append("positions out of order")
    return "; ".join(out) or "?"


def list_view(q, view, head):
    rows = []
    after = None
    while True:
        body = {"op": "list", "view": view, "limit": 1000, "min_position": head,
                "timeout_ms": int(REPLY_TIMEOUT * 1000)}
        if after is not None:
            body["after"] = after
        reply = q.ok(body, timeout=REPLY_TIMEOUT + 10)
        if reply["position"] < head:
            raise Failure("view %s answered at position %d < min_position %d"
                          % (view, reply["position"], head))
        rows += reply["rows"]
        after = reply["next"]
        if after is None:
            return rows


def diff_rows(name, want, got, limit=20):
    out = []
    for key in sorted(set(want) | set(got)):
        if want.get(key) != got.get(key):
            out.append("  %s[%s]: expected %r, view has %r" % (name, key, want.get(key), got.get(key)))
    if len(out) > limit:
        out = out[:limit] + ["  ... %d more" % (len(out) - limit)]
    return out


def verify(ctx, endpoints, model, label, rnd, retry_sample=100, full=False):
    """Check every invariant against the running node; returns the log."""
    q = Query(ctx, endpoints["query"])
    try:
        return _verify(ctx, q, endpoints, model, label, rnd, retry_sample, full)
    finally:
        q.close()


def _verify(ctx, q, endpoints, model, label, rnd, retry_sample, full):
    errors = []

    def check(cond, text):
        if not cond:
            errors.append(text)
        return cond

    events, head = read_log(q)
    positions = [e["position"] for e in events]
    # 1. positions 1..head, nothing of the verified prefix changed or lost
    if positions != list(range(1, head + 1)):
        raise Failure("%s: log positions are not 1..%d: %s"
                      % (label, head, describe_positions(positions, head)))
    if model.stop_head is not None:
        # zcqrsd prints its head when it stops cleanly, after the drain:
        # the restarted node must have exactly that log
        if head != model.stop_head:
            raise Failure("%s: zcqrsd said it stopped at log head %d, the restarted node has %d"
                          % (label, model.stop_head, head))
        model.stop_head = None
    prev = model.verified_log
    if len(events) < len(prev):
        lost = prev[len(events):]
        raise AckedLost("%s: the log shrank from %d to %d events; lost events (first 5): %r"
                      % (label, len(prev), len(events), lost[:5]))
    if events[:len(prev)] != prev:
        index = next(i for i, (a, b) in enumerate(zip(prev, events)) if a != b)
        raise AckedLost("%s: event at position %d changed since the last verification:\n"
                      "  before: %r\n  now:    %r" % (label, index + 1, prev[index], events[index]))

    # 2. every event belongs to a command we sent, once, with its payload.
    # The prefix is unchanged (checked above), so what was derived from it
    # last time still holds: only the new events are walked, except in a
    # full verification, which derives everything again.
    if full or model.derived is None:
        model.derived = {"by_cmd": {}, "streams": collections.defaultdict(list), "accounts": {},
                         "deposits": 0, "withdrawals": 0, "node": events[0]["node"] if events else None}
        model.confirmed = set()
        start = 0
    else:
        start = len(prev)
    derived = model.derived
    by_cmd, streams, accounts = derived["by_cmd"], derived["streams"], derived["accounts"]
    node = derived["node"]
    touched = set()
    for e in events[start:]:
        cid = e.get("command")
        cmd = model.cmds.get(cid)
        pos = e["position"]
        if cmd is None:
            errors.append("event %d has command id %r, which this test never sent: %r" % (pos, cid, e))
            continue
        if cid in by_cmd:
            errors.append("command %s applied twice: positions %d and %d"
                          % (cid, by_cmd[cid]["position"], pos))
            continue
        by_cmd[cid] = e
        want = {"stream": "account/" + cmd.key, "aggregate": "account", "key": cmd.key,
                "type": EVENT_TYPE[cmd.type], "node": node}
        for key, value in want.items():
            check(e.get(key) == value, "event %d (%s): %s is %r, expected %r"
                  % (pos, cid, key, e.get(key), value))
        data = e.get("data") or {}
        if cmd.type == "open":
            check(data == cmd.body["data"], "event %d (%s): data %r, sent %r"
                  % (pos, cid, data, cmd.body["data"]))
        else:
            check(data == {"amount": cmd.amount}, "event %d (%s): data %r, sent amount %d"
                  % (pos, cid, data, cmd.amount))
        # 5a. stream versions run 1..n in log order
        stream_events = streams[e["stream"]]
        check(e["version"] == len(stream_events) + 1, "event %d (%s): version %r of %s, expected %d"
              % (pos, cid, e["version"], e["stream"], len(stream_events) + 1))
        stream_events.append(e)
        touched.add(e["stream"])
        # recompute the views
        row = accounts.get(cmd.key)
        if cmd.type == "open":
            check(row is None, "event %d: account %s opened twice" % (pos, cmd.key))
            accounts[cmd.key] = {"key": cmd.key, "owner": data.get("owner"), "balance": 0,
                                 "status": "open", "version": e["version"]}
            continue
        if not check(row is not None, "event %d: %s on account %s before it was opened"
                     % (pos, cmd.type, cmd.key)):
            continue
        sign = 1 if cmd.type == "deposit" else -1
        row["balance"] += sign * cmd.amount
        row["version"] = e["version"]
        if cmd.type == "deposit":
            derived["deposits"] += cmd.amount
        else:
            derived["withdrawals"] += cmd.amount
            if cmd.key in STRICT:
                check(row["balance"] >= 0, "event %d: %s took strict account %s to %d"
                      % (pos, cid, cmd.key, row["balance"]))
    total_dep, total_wd = derived["deposits"], derived["withdrawals"]

    # 3./4. acknowledged commands are there where their ack said (once
    # confirmed in the unchanged prefix, an ack stays confirmed); failed
    # ones are not there
    missing = []
    for cid, ack in model.acks.items():
        if cid in model.confirmed:
            continue
        e = by_cmd.get(cid)
        if e is None:
            missing.append("%s (acked at position %s, version %s of %s)"
                           % (cid, ack.get("position"), ack.get("version"), ack.get("stream")))
            continue
        if e["position"] != ack["position"] or e["version"] != ack["version"]:
            errors.append("command %s acked at position %d / version %d, in the log at %d / %d"
                          % (cid, ack["position"], ack["version"], e["position"], e["version"]))
            continue
        model.confirmed.add(cid)
    if missing:
        errors.append("%d acknowledged commands are not in the log (acked data lost): %s%s"
                      % (len(missing), missing[:10], " ..." if len(missing) > 10 else ""))
    applied_failed = [cid for cid in model.failed if cid in by_cmd]
    if applied_failed:
        errors.append("commands that got a failure reply are in the log: %s"
                      % ["%s (%r)" % (c, model.failed[c]) for c in applied_failed[:10]])

    # 5b. the `stream` query agrees with the log: in full for every stream
    # with new events (and every stream in a full verification), its last
    # event and version for the others
    for stream, evs in sorted(streams.items()):
        if full or stream in touched:
            got = []
            frm = 1
            while True:
                reply = q.ok({"op": "stream", "stream": stream, "from": frm, "limit": 10000})
                got += reply["events"]
                if not reply["events"] or reply["version"] <= got[-1]["version"]:
                    break
                frm = got[-1]["version"] + 1
            want_events = evs
        else:
            reply = q.ok({"op": "stream", "stream": stream, "from": len(evs), "limit": 10})
            got, want_events = reply["events"], evs[-1:]
        check(reply["version"] == len(evs), "stream %s: `stream` says version %d, log has %d events"
              % (stream, reply["version"], len(evs)))
        if got != want_events:
            errors.append("stream %s: `stream` events differ from the log's (%d vs %d events)"
                          % (stream, len(got), len(want_events)))

    # 6. views rebuilt on start == views recomputed from the log
    rows = {r["key"]: r for r in list_view(q, "accounts", head)}
    errors += diff_rows("accounts", accounts, rows)
    reply = q.ok({"op": "get", "view": "totals", "key": "bank", "min_position": head,
                  "timeout_ms": int(REPLY_TIMEOUT * 1000)}, timeout=REPLY_TIMEOUT + 10)
    balance = sum(r["balance"] for r in accounts.values())
    want_totals = {"key": "bank", "accounts": len(accounts), "balance": balance, "events": head}
    if head == 0:
        want_totals = None
    check(reply["row"] == want_totals, "totals: expected %r, view has %r" % (want_totals, reply["row"]))

    # 7. money is conserved, within what the acknowledgements allow
    check(balance == total_dep - total_wd, "sum of balances %d != deposits %d - withdrawals %d"
          % (balance, total_dep, total_wd))
    acked_dep = sum(model.cmds[c].amount for c in model.acks if model.cmds[c].type == "deposit")
    acked_wd = sum(model.cmds[c].amount for c in model.acks if model.cmds[c].type == "withdraw")
    unk_dep = sum(c.amount for c in model.unknown.values() if c.type == "deposit")
    unk_wd = sum(c.amount for c in model.unknown.values() if c.type == "withdraw")
    low, high = acked_dep - acked_wd - unk_wd, acked_dep + unk_dep - acked_wd
    check(low <= balance <= high, "sum of balances %d outside [%d, %d] = acked deposits %d "
          "- acked withdrawals %d, give or take unknown deposits %d / withdrawals %d"
          % (balance, low, high, acked_dep, acked_wd, unk_dep, unk_wd))
    unknown_applied = [cid for cid in model.unknown if cid in by_cmd]
    check(set(by_cmd) <= set(model.acks) | set(model.unknown),
          "log holds commands neither acked nor unknown: %s"
          % sorted(set(by_cmd) - set(model.acks) - set(model.unknown))[:10])

    health = q.ok({"op": "health"})
    check(health.get("head") == head, "health head %r != log head %d" % (health.get("head"), head))
    check(health.get("durability") == model.durability, "health durability %r, expected %r"
          % (health.get("durability"), model.durability))
    if errors:
        kind = AckedLost if missing else Failure
        raise kind("%s: %d broken invariants:\n  %s" % (label, len(errors), "\n  ".join(errors[:60])))

    # 10. every aggregate loads at the log's version (the shards' caches are
    # empty after a start, so each loads from the snapshot and the stream
    # index): `expect` one past it is a conflict that names the version,
    # and writes nothing
    probes = []
    for number, (stream, evs) in enumerate(sorted(streams.items())):
        key = stream.split("/", 1)[1]
        probes.append({"id": "%s-probe-%d-%d" % (RUN_TAG, model.stats["verifications"], number),
                       "aggregate": "account", "key": key, "type": "deposit",
                       "data": {"amount": 1}, "expect": len(evs) + 1})
    replies = call_commands(ctx, endpoints["command"], probes)
    for probe, (stream, evs) in zip(probes, sorted(streams.items())):
        reply = replies[probe["id"]]
        if reply.get("error") != "conflict" or reply.get("version") != len(evs):
            errors.append("aggregate %s loaded wrong: a deposit expecting version %d answered "
                          "%r; the log has %d events" % (stream, len(evs) + 1, reply, len(evs)))
    if errors:
        raise Failure("%s: aggregates after the start:\n  %s" % (label, "\n  ".join(errors[:30])))
    model.stats["aggregates_probed"] += len(probes)

    # 8. retried acknowledged ids answer duplicate with the stored result:
    # every one of the round just killed (the part of the log a kill most
    # likely left unindexed), and a sample of the older ones
    acked = list(model.acks)
    sample = rnd.sample(acked, min(retry_sample, len(acked))) + acked[-20:] + model.round_acks
    sample = list(dict.fromkeys(sample))
    replies = call_commands(ctx, endpoints["command"], [model.cmds[c].body for c in sample])
    for cid in sample:
        reply, ack = replies[cid], model.acks[cid]
        want = dict((k, ack[k]) for k in ("stream", "version", "position", "events"))
        got = dict((k, reply.get(k)) for k in want)
        if reply.get("ok") is not True or reply.get("duplicate") is not True or got != want:
            errors.append("retry of acked %s: expected ok duplicate %r, got %r" % (cid, want, reply))
    if errors:
        raise Failure("%s: retries of acknowledged ids:\n  %s" % (label, "\n  ".join(errors[:30])))
    new_events, new_head = read_log(q, head + 1)
    if new_events:
        raise Failure("%s: retrying acknowledged ids, or probing aggregates, wrote %d events: %r"
                      % (label, len(new_events), new_events[:3]))

    model.verified_log = events
    model.stats["verifications"] += 1
    model.stats["retries_checked"] += len(sample)
    return {"head": head, "by_cmd": by_cmd, "unknown_applied": len(unknown_applied),
            "accounts": accounts}


def resolve_unknown(ctx, endpoints, model, state, label):
    """Retry every command whose reply never came, in send order: one that
    is in the log must answer duplicate with its position; one that is not
    is applied now (exactly once) or rejected when the rules allow."""
    if not model.unknown and not model.retry_later:
        return
    q = Query(ctx, endpoints["query"])
    try:
        cmds = sorted(list(model.unknown.values()) + list(model.retry_later.values()),
                      key=lambda c: c.seq)
        replies = call_commands(ctx, endpoints["command"], [c.body for c in cmds])
        by_cmd = state["by_cmd"]
        errors = []
        fresh = []
        for cmd in cmds:
            reply = replies[cmd.id]
            e = by_cmd.get(cmd.id)
            if cmd.id in model.retry_later:
                # it got `unavailable`, so it is not in the log (verify
                # checked): the retry is a fresh decision
                del model.retry_later[cmd.id]
                del model.failed[cmd.id]
                model.stats["unavailable_retried"] += 1
                if reply.get("ok") is True and reply.get("duplicate") is False:
                    model.acks[cmd.id] = reply
                    fresh.append(cmd.id)
                elif reply.get("ok") is True:
                    errors.append("retry of %s (answered `unavailable` before) answered "
                                  "duplicate: %r" % (cmd.id, reply))
                else:
                    errors += model.check_reply(cmd, reply, fresh=True)
                continue
            if e is not None:
                model.stats["unknown_were_applied"] += 1
                if model.mode == "shutdown":
                    errors.append("%s was committed (position %d) but its reply never came: a "
                                  "graceful stop must answer every command it commits"
                                  % (cmd.id, e["position"]))
                if (reply.get("ok") is not True or reply.get("duplicate") is not True
                        or reply.get("position") != e["position"] or reply.get("version") != e["version"]):
                    errors.append("retry of %s (in the log at %d/%d): expected duplicate, got %r"
                                  % (cmd.id, e["position"], e["version"], reply))
                    continue
                model.acks[cmd.id] = reply
            else:
                model.stats["unknown_were_lost"] += 1
                if reply.get("ok") is True:
                    if reply.get("duplicate") is not False:
                        errors.append("retry of %s (not in the log) answered duplicate: %r -- "
                                      "the node remembers a command whose events are missing"
                                      % (cmd.id, reply))
                        continue
                    model.acks[cmd.id] = reply
                    fresh.append(cmd.id)
                else:
                    problems = model.check_reply(cmd, reply, fresh=True)
                    errors += problems
            del model.unknown[cmd.id]
        if errors:
            raise Failure("%s: retries of unknown commands:\n  %s" % (label, "\n  ".join(errors[:30])))
        # the fresh ones are in the log exactly once, right after the old head
        events, head = read_log(q, state["head"] + 1)
        got = collections.Counter(e["command"] for e in events)
        if sorted(got) != sorted(fresh) or any(n != 1 for n in got.values()):
            raise Failure("%s: retried unknown commands applied %r, expected each of %r once"
                          % (label, dict(got), fresh))
        for cid in fresh:
            ack = model.acks[cid]
            e = next(ev for ev in events if ev["command"] == cid)
            if (e["position"], e["version"]) != (ack["position"], ack["version"]):
                raise Failure("%s: %s acked at %r, in the log %r" % (label, cid, ack, e))
        model.stats["unknown_applied_on_retry"] += len(fresh)
    finally:
        q.close()


# --------------------------------------------------------------------------
# Power loss

def drop_unsynced(data, journal, stats):
    """What a power cut does to a RocksDB dir, as RocksDB's own crash tests
    simulate it (FaultInjectionTestFS drops unsynced data): cut every WAL
    and MANIFEST back to the size it had at its last successful sync, as
    recorded by the fault shim's journal. A WAL never synced loses all.
    Not simulated: directory entries (files created or deleted since the
    last directory sync), torn sectors, a disk cache that ignores flushes."""
    synced = {}
    if os.path.exists(journal):
        with open(journal) as f:
            for line in f:
                size, path = line.rstrip("\n").split(" ", 1)
                synced[path] = max(synced.get(path, 0), int(size))
    dropped = 0
    # a node killed while it started may not have made its data dir yet:
    # then nothing was written, and nothing is to be cut
    names = sorted(os.listdir(data)) if os.path.isdir(data) else []
    for name in names:
        wal = re.fullmatch(r"[0-9]+\.log", name) is not None
        if not wal and not name.startswith("MANIFEST-"):
            continue
        path = os.path.realpath(os.path.join(data, name))
        if not wal and path not in synced:
            stats["power_loss_manifest_never_synced"] += 1
            continue
        size = os.path.getsize(path)
        keep = synced.get(path, 0)
        if size > keep:
            os.truncate(path, keep)
            dropped += size - keep
            stats["power_loss_files_cut"] += 1
    stats["power_loss_bytes_dropped"] += dropped
    stats["power_losses"] += 1
    return dropped


# --------------------------------------------------------------------------
# The rounds

def setup_accounts(ctx, endpoints, model):
    cmds = []
    for key in CREDIT + STRICT:
        data = {"owner": "setup", "overdraft": BIG_OVERDRAFT if key in CREDIT else 0}
        cmd = Cmd(next(SEQ), "%s-setup-open-%s" % (RUN_TAG, key), "open", key, None, None, data)
        model.cmds[cmd.id] = cmd
        cmds.append(cmd)
    replies = call_commands(ctx, endpoints["command"], [c.body for c in cmds])
    problems = []
    for cmd in cmds:
        problems += model.check_reply(cmd, replies[cmd.id], fresh=True)
    if problems:
        raise Failure("opening the accounts:\n  " + "\n  ".join(problems))


def final_checks(state, model):
    """Everything resolved: every transfer is whole and the money adds up
    from acknowledgements alone."""
    problems = []
    halves = collections.defaultdict(list)
    for cid, cmd in model.cmds.items():
        if cmd.transfer:
            halves[cmd.transfer].append(cid)
    for transfer, ids in halves.items():
        done = [cid in model.acks for cid in ids]
        if len(ids) == 2 and done[0] != done[1]:
            problems.append("transfer %s is half done: %s" % (transfer, dict(zip(ids, done))))
    ext_dep = sum(model.cmds[c].amount for c in model.acks
                  if model.cmds[c].type == "deposit" and not model.cmds[c].transfer)
    ext_wd = sum(model.cmds[c].amount for c in model.acks
                 if model.cmds[c].type == "withdraw" and not model.cmds[c].transfer)
    balance = sum(r["balance"] for r in state["accounts"].values())
    if balance != ext_dep - ext_wd:
        problems.append("sum of balances %d != acknowledged external deposits %d - withdrawals %d"
                        % (balance, ext_dep, ext_wd))
    if model.unknown:
        problems.append("%d commands still unresolved" % len(model.unknown))
    if problems:
        raise Failure("final checks:\n  " + "\n  ".join(problems[:30]))
    return balance


def start_node(daemon, model, rnd, args, stats):
    """Start the node, its indexer in a mode picked at random; sometimes
    kill it once while it starts first."""
    mode = rnd.choice(args.index_modes)
    stats["starts_index_" + mode] += 1
    env = INDEX_MODES[mode]
    if args.mode == "crash" and rnd.random() < args.startup_kill_rate:
        daemon.spawn(env)
        delay = rnd.uniform(0, 0.15)
        deadline = time.monotonic() + delay
        ready = False
        while time.monotonic() < deadline:      # the kill moment, not a readiness wait
            try:
                line = daemon.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if line.startswith("query "):
                ready = True
        daemon.kill()
        stats["startup_kills" if not ready else "idle_kills"] += 1
    daemon.spawn(env)
    return daemon.wait_ready()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("zcqrsd", nargs="?", default=os.environ.get("ZCQRSD"),
                        help="path to zcqrsd (default: $ZCQRSD)")
    parser.add_argument("--mode", choices=("crash", "shutdown"), default="crash")
    parser.add_argument("--kills", type=int, default=20,
                        help="SIGKILLs under load (crash) or SIGTERMs under load (shutdown)")
    parser.add_argument("--durability", choices=("wal", "fsync"), default="wal")
    parser.add_argument("--seed", default=None, help="random seed (default: time)")
    parser.add_argument("--seconds-per-round", type=float, default=1.0,
                        help="most load time before a kill (uniform in 0.05..this)")
    parser.add_argument("--clients", type=int, default=4, help="pipelined DEALER clients")
    parser.add_argument("--window", type=int, default=64, help="commands in flight per client")
    parser.add_argument("--rate", type=float, default=2000,
                        help="commands per second over all clients, in bursts of up to a "
                        "window (0 = unlimited; the log, verified whole after every restart, "
                        "grows with it)")
    parser.add_argument("--startup-kill-rate", type=float, default=0.15,
                        help="chance per round of a kill while the node starts")
    parser.add_argument("--term-kill-rate", type=float, default=0.15,
                        help="chance per round that the kill comes during a graceful stop")
    parser.add_argument("--power-loss", action="store_true",
                        help="after every SIGKILL, also drop what was not fsynced (needs the "
                        "fault shim: --shim or $ZCQ_FAULT_SHIM)")
    parser.add_argument("--expect-loss", action="store_true",
                        help="succeed only if acknowledged commands are lost (a control run: "
                        "--durability wal --power-loss must lose some)")
    parser.add_argument("--index-modes", default=",".join(INDEX_MODES),
                        help="how the store's indexer may run in a start, picked at random per "
                        "start: default, lagging, eager (comma-separated)")
    parser.add_argument("--shim", default=os.environ.get("ZCQ_FAULT_SHIM"),
                        help="fault_shim.so (default $ZCQ_FAULT_SHIM)")
    parser.add_argument("--workdir", default=None, help="where the data dir goes (kept on failure)")
    parser.add_argument("--keep", action="store_true", help="keep the data dir on success")
    args = parser.parse_args(argv)
    args.index_modes = [m for m in args.index_modes.split(",") if m]
    if not args.index_modes or any(m not in INDEX_MODES for m in args.index_modes):
        parser.error("--index-modes: pick among %s" % ", ".join(INDEX_MODES))
    if not args.zcqrsd or not os.access(args.zcqrsd, os.X_OK):
        parser.error("zcqrsd not given or not executable (argv or $ZCQRSD): %r" % args.zcqrsd)
    seed = args.seed if args.seed is not None else str(int(time.time() * 1000) % 10 ** 9)
    args.seed = seed
    rnd = random.Random(seed)
    base = args.workdir or os.environ.get("ZCQ_TEST_TMP") or None
    if base:
        os.makedirs(base, exist_ok=True)
    workdir = tempfile.mkdtemp(prefix="crash-%s-%s-" % (args.mode, args.durability), dir=base)
    data = os.path.join(workdir, "data")
    log("mode %s, durability %s, %d rounds, seed %s, data %s, nodes on %s, id tag %s"
        % (args.mode, args.durability, args.kills, seed, data, HOST, RUN_TAG))
    started = time.monotonic()
    env = None
    if args.power_loss:
        if not args.shim or not os.path.exists(args.shim):
            parser.error("--power-loss needs the fault shim (--shim or $ZCQ_FAULT_SHIM)")
        if args.mode != "crash":
            parser.error("--power-loss goes with --mode crash")
        journal = os.path.join(workdir, "sync-journal")
        env = {"LD_PRELOAD": os.path.realpath(args.shim), "ZCQ_SYNC_JOURNAL": journal}
    daemon = Daemon(args.zcqrsd, data, args.durability, workdir, env)
    model = Model()
    model.durability = args.durability
    model.mode = args.mode
    model.phases = Phases()
    ctx = zmq.Context()
    stats = model.stats
    if args.power_loss:
        daemon.power_loss = lambda d: drop_unsynced(d.data, journal, stats)
    try:
        run_rounds(ctx, daemon, model, rnd, args, stats)
        if args.expect_loss:
            raise Failure("--expect-loss: no acknowledged command was lost")
    except AckedLost as failure:
        if not args.expect_loss:
            failure = Failure(str(failure))
            return report_failure(failure, seed, workdir, daemon, ctx)
        if daemon.alive():
            daemon.kill()
        ctx.destroy(0)
        shutil.rmtree(workdir, ignore_errors=True)
        first = str(failure).splitlines()[1].strip() if "\n" in str(failure) else str(failure)
        print("crash_test: OK: acknowledged commands were lost, as expected (%s, power loss, "
              "seed %s): %s" % (args.durability, seed, first[:300]))
        print("  %s" % ", ".join("%s %d" % kv for kv in sorted(stats.items())))
        return 0
    except Failure as failure:
        return report_failure(failure, seed, workdir, daemon, ctx)
    except BaseException:
        if daemon.alive():
            daemon.kill()
        ctx.destroy(0)
        raise
    ctx.destroy(0)
    elapsed = time.monotonic() - started
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print("crash_test: OK: mode %s, durability %s%s, seed %s, %.1f s"
          % (args.mode, args.durability, ", power loss" if args.power_loss else "", seed, elapsed))
    print("  %s" % ", ".join("%s %d" % kv for kv in sorted(stats.items())))
    print("  seconds: %s" % ", ".join("%s %.1f" % kv for kv in sorted(model.phases.seconds.items())))
    sys.stdout.flush()
    return 0


def report_failure(failure, seed, workdir, daemon, ctx):
    sys.stdout.write("crash_test: FAILED (seed %s, data kept in %s)\n%s\n" % (seed, workdir, failure))
    if daemon.alive():
        sys.stdout.write("last zcqrsd stderr:\n%s\n" % daemon.stderr_tail())
        daemon.signal(signal.SIGKILL)
        daemon.proc.wait()
    sys.stdout.flush()
    ctx.destroy(0)
    return 1


class Phases:
    """Wall time per phase, for the summary."""

    def __init__(self):
        self.seconds = collections.Counter()

    def __call__(self, name, fn, *args):
        started = time.monotonic()
        try:
            return fn(*args)
        finally:
            self.seconds[name] += time.monotonic() - started


def run_rounds(ctx, daemon, model, rnd, args, stats):
    phase = model.phases
    endpoints = phase("start", start_node, daemon, model, rnd, args, stats)
    setup_accounts(ctx, endpoints, model)
    for round_no in range(1, args.kills + 1):
        state = phase("verify", verify, ctx, endpoints, model, "round %d" % round_no, rnd)
        phase("resolve", resolve_unknown, ctx, endpoints, model, state, "round %d" % round_no)
        load_started = time.monotonic()
        loaders = run_load(ctx, endpoints["command"], round_no, args.seed, args.clients,
                           args.window, args.rate)
        moment = rnd.uniform(0.05, args.seconds_per_round)
        burst = rnd.uniform(0, min(0.1, moment))
        # the random kill moment (not a readiness wait); the load runs at
        # --rate, then at full speed for the last `burst` seconds so that the
        # kill meets a full pipeline and group commits in progress
        time.sleep(moment - burst)
        for loader in loaders:
            loader.burst.set()
        time.sleep(burst)
        how = "SIGKILL"
        allow_unavailable = False
        if args.mode == "shutdown":
            how = "SIGTERM"
            term_at = sum(len(l.sent) for l in loaders)
            for loader in loaders:
                loader.terminating.set()
            daemon.signal(signal.SIGTERM)
            rc = daemon.wait(STOP_TIMEOUT)  # load keeps going meanwhile
            allow_unavailable = True
            if rc != 0:
                drain_and_stop(loaders)
                raise Failure("round %d: zcqrsd exited %s after SIGTERM under load, expected 0:\n%s"
                              % (round_no, rc, daemon.stderr_tail()))
            tail = daemon.stderr_tail()
            match = re.search(r"stopped cleanly at log head (\d+)", tail)
            if not match:
                raise Failure("round %d: no 'stopped cleanly' after SIGTERM:\n%s" % (round_no, tail))
            model.stop_head = int(match.group(1))
            stats["sent_before_term"] += term_at
        elif rnd.random() < args.term_kill_rate:
            how = "SIGTERM+SIGKILL"
            for loader in loaders:
                loader.terminating.set()
            daemon.signal(signal.SIGTERM)
            time.sleep(rnd.uniform(0, 0.05))    # kill during the graceful stop
            daemon.kill()
            allow_unavailable = True
            stats["kills_during_stop"] += 1
        else:
            daemon.kill()
        phase.seconds["load"] += time.monotonic() - load_started
        phase("drain", drain_and_stop, loaders)
        sent = sum(len(l.sent) for l in loaders)
        got = sum(len(l.replies) for l in loaders)
        if args.mode == "shutdown":
            stats["unavailable_after_term"] += sum(
                1 for l in loaders for r in l.replies.values() if r.get("error") == "unavailable")
        model.add_round(loaders, allow_unavailable=allow_unavailable)
        stats["kills_under_load" if args.mode == "crash" else "terms_under_load"] += 1
        stats["sent"] += sent
        log("round %d: %s after %.2f s: %d commands sent, %d answered, %d unknown; head was %d"
            % (round_no, how, moment, sent, got, sent - got, state["head"]))
        endpoints = phase("start", start_node, daemon, model, rnd, args, stats)
    state = verify(ctx, endpoints, model, "after the last restart", rnd)
    resolve_unknown(ctx, endpoints, model, state, "after the last restart")
    state = verify(ctx, endpoints, model, "after resolving every unknown command", rnd, full=True)
    # a clean stop and start changes nothing
    daemon.signal(signal.SIGTERM)
    rc = daemon.wait(STOP_TIMEOUT)
    if rc != 0:
        raise Failure("zcqrsd exited %s after SIGTERM at rest:\n%s" % (rc, daemon.stderr_tail()))
    daemon.spawn()
    endpoints = daemon.wait_ready()
    state = verify(ctx, endpoints, model, "after a clean restart", rnd, full=True)
    balance = final_checks(state, model)
    stats["final_head"] = state["head"]
    stats["final_balance"] = balance
    daemon.signal(signal.SIGTERM)
    rc = daemon.wait(STOP_TIMEOUT)
    if rc != 0:
        raise Failure("zcqrsd exited %s after the final SIGTERM:\n%s" % (rc, daemon.stderr_tail()))


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
