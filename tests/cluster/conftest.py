"""Fixtures of the cluster suite: a private ZooKeeper per session (through
scripts/zk.sh), a fresh cluster path per test, and zcqrsd nodes that
join it.

Environment:
  ZCQRSD     path to the zcqrsd binary (required)
  ZCQRS_CLI  path to the zcqrs command-line client (required)

The suite is skipped, with the reason, only when Java or Debian's
zookeeper package is missing (scripts/deps.sh installs both). No test
sleeps for a fixed time: every wait polls a condition with a deadline.
"""

import os
import shutil
import signal
import random
import socket
import subprocess
import tempfile
import time
import uuid

import pytest

ZCQRSD = os.environ.get("ZCQRSD")
ZCQRS_CLI = os.environ.get("ZCQRS_CLI")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZK_SH = os.path.join(ROOT, "scripts", "zk.sh")
SESSION_MS = 2000           # the nodes' ZooKeeper session timeout in tests
START_TIMEOUT = 30.0        # seconds for a node to print its endpoints
STOP_TIMEOUT = 30.0


def wait_for(condition, timeout, what):
    """Poll condition() until it returns something true; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail("timed out after %.0f s waiting for %s" % (timeout, what))
        time.sleep(0.05)



#  Slots as a client computes them (CRC16-XMODEM and Redis hash tags over
#  `aggregate/key`), and the groups of `cluster create`'s even map.
SLOTS = 16384


def crc16(data):
    """CRC16-XMODEM, as Redis Cluster's (poly 0x1021, init 0)."""
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def slot_of(stream):
    raw = stream.encode()
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1:end]
    return crc16(raw) % SLOTS


def group_of(stream, groups=3):
    """The even map of `cluster create`: group g has slots g*S/G ..."""
    per = SLOTS // groups
    return min(slot_of(stream) // per, groups - 1)


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port():
    """A loopback port nobody listens on now, below the ephemeral range:
    the nodes' own outgoing connections (forwards, feeds, ZooKeeper) take
    ephemeral ports, and one could take a port picked here before the node
    that is to listen on it binds it."""
    high = min(_ephemeral_low(), 65536) - 1
    low = max(1024, high - 12000)
    for _ in range(2000):
        port = random.randint(low, high - 300)       # room for zk.sh's numbering
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    pytest.fail("no free loopback port below the ephemeral range")


def free_port_block(count):
    """A port p such that p .. p + count - 1 (and p + 100.., p + 200..) are
    free now, for zk.sh's numbering."""
    for _ in range(200):
        base = free_port()
        if base > 60000:
            continue
        ports = [base + i for i in range(count)]
        ports += [base + 100 + i + 1 for i in range(count)]
        ports += [base + 200 + i + 1 for i in range(count)]
        try:
            held = []
            for port in ports:
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                held.append(s)
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
        return base
    pytest.fail("no free block of loopback ports")


@pytest.fixture(scope="session")
def zookeeper():
    """The connect string's host part of a private ZooKeeper on loopback."""
    if not ZCQRSD or not ZCQRS_CLI:
        pytest.fail("set ZCQRSD and ZCQRS_CLI (ctest does)")
    if shutil.which("java") is None or not os.path.exists("/usr/share/java/zookeeper.jar"):
        pytest.skip("no java or no /usr/share/java/zookeeper.jar: "
                    "install zookeeper (scripts/deps.sh)")
    directory = tempfile.mkdtemp(prefix="zcq-zk-")
    port = free_port_block(1)
    started = subprocess.run(["bash", ZK_SH, "start", directory, str(port)],
                             capture_output=True, text=True, timeout=120)
    if started.returncode != 0:
        pytest.fail("zk.sh start failed: %s" % started.stderr)
    hosts = started.stdout.strip().splitlines()[-1]
    yield hosts
    subprocess.run(["bash", ZK_SH, "stop", directory], timeout=60)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def kazoo(zookeeper):
    kazoo_client = pytest.importorskip("kazoo.client")
    client = kazoo_client.KazooClient(hosts=zookeeper, timeout=10)
    client.start(timeout=15)
    yield client
    client.stop()
    client.close()


@pytest.fixture
def cluster_path(zookeeper):
    """A cluster path no other test uses, and its connect string."""
    path = "/zcqrs-test/%s" % uuid.uuid4().hex[:10]
    return path, "%s%s" % (zookeeper, path)


def cli(*args, timeout=60):
    return subprocess.run([ZCQRS_CLI] + list(args), capture_output=True, text=True,
                          timeout=timeout)


class Node:
    """A zcqrsd process of a cluster, on fixed loopback ports so that its
    registration can be checked and it can restart on the same ones."""

    def __init__(self, connect, node, group, data, extra=()):
        self.connect, self.node, self.group, self.data = connect, node, group, data
        self.extra = list(extra)
        ports = [free_port() for _ in range(3)]
        self.endpoints = {name: "tcp://127.0.0.1:%d" % port
                          for name, port in zip(("command", "events", "query"), ports)}
        self.process = None
        self.stderr_path = None

    def argv(self):
        argv = [ZCQRSD, "--http", "none", "--cluster", self.connect, "--node", self.node,
                "--data", self.data, "--zk-session-ms", str(SESSION_MS)]
        if self.group is None:
            argv += ["--role", "views"]
        else:
            argv += ["--group", str(self.group)]
        for name, endpoint in self.endpoints.items():
            argv += ["--" + name, endpoint]
        return argv + self.extra

    def start(self):
        """Start; the caller waits for ready() (or for it to exit)."""
        if self.stderr_path:
            self.stderr.close()
            os.unlink(self.stderr_path)
        handle, self.stderr_path = tempfile.mkstemp(prefix="zcqrsd-%s-" % self.node,
                                                    suffix=".err")
        self.stderr = os.fdopen(handle, "w+")
        self.process = subprocess.Popen(self.argv(), stdout=subprocess.PIPE,
                                        stderr=self.stderr, text=True)
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        """Wait for the endpoints on stdout (the node started)."""
        deadline = time.monotonic() + timeout
        lines = []
        while len(lines) < 4:
            line = self.process.stdout.readline()
            if not line:
                pytest.fail("%s exited before ready: %s" % (self.node, self.log()))
            lines.append(line)
            if time.monotonic() > deadline:
                pytest.fail("%s not ready in time" % self.node)
        return self

    def log(self):
        if not self.stderr_path:
            return ""
        with open(self.stderr_path) as f:
            return f.read()

    def kill(self):
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=STOP_TIMEOUT)

    def stop(self):
        """SIGTERM and wait; the exit status of a node that was running (0
        is a clean stop; a sanitizer's report makes it non-zero), or None."""
        status = None
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                status = self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                status = "still running %d s after SIGTERM" % STOP_TIMEOUT
        if self.process and self.process.stdout:
            self.process.stdout.close()
        return status


@pytest.fixture
def nodes(tmp_path):
    """Make nodes with nodes.make(...); every one is stopped at the end."""
    made = []

    class Maker:
        def make(self, connect, node, group, extra=()):
            data = str(tmp_path / node)
            made.append(Node(connect, node, group, data, extra))
            return made[-1]

    yield Maker()
    unclean = []
    for node in made:
        status = node.stop()
        if status not in (None, 0):
            unclean.append("%s: exit %s after SIGTERM: %s" % (node.node, status,
                                                              node.log()[-3000:]))
        if node.stderr_path:
            node.stderr.close()
            os.unlink(node.stderr_path)
    assert not unclean, "\n".join(unclean)
