"""Fixtures for the zcqrs Python bindings' tests.

Run from the build (ctest `python`), or by hand:

    PYTHONPATH=build/python ZCQRSD=build/zcqrsd \\
        /usr/bin/python3 -m pytest -q -p no:cacheprovider bindings/python/tests

Two kinds of node, both real: an embedded one (zcqrs.Node, libzcqrs via
ctypes) and the daemon (zcqrsd, a child process that prints its endpoints).
Tests that take the `client` fixture run against both. No test sleeps for a
fixed time: every wait polls with a deadline (see `wait_for`).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
import uuid
from typing import Callable, Dict, Iterator, Optional, TypeVar

import pytest

import zcqrs

T = TypeVar("T")

START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0


def zcqrsd_path() -> Optional[str]:
    path = os.environ.get("ZCQRSD")
    if path:
        return path
    try:
        from zcqrs import _build
        return _build.ZCQRSD if os.path.exists(_build.ZCQRSD) else None
    except ImportError:
        return None


def uniq(prefix: str = "k") -> str:
    """A key no other test uses (the nodes are shared by a module)."""
    return "%s%s" % (prefix, uuid.uuid4().hex[:12])


def wait_for(predicate: Callable[[], T], timeout: float = 20.0, interval: float = 0.02,
             what: str = "condition") -> T:
    """Poll predicate until it returns a true value, or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.1fs waiting for %s" % (timeout, what))
        time.sleep(interval)


class Daemon:
    """One zcqrsd process on one data directory, on ephemeral tcp ports."""

    def __init__(self, data: str, *extra: str) -> None:
        exe = zcqrsd_path()
        if not exe:
            pytest.skip("zcqrsd not found (set ZCQRSD)")
        argv = [exe, "--data", data, "--http", "none", "--command", "tcp://127.0.0.1:*",
                "--events", "tcp://127.0.0.1:*", "--query", "tcp://127.0.0.1:*",
                "--domain", "bank", *extra]
        self.stderr = open(os.path.join(data + ".stderr"), "w+")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        self.endpoints: Dict[str, str] = {}
        # the daemon prints "command EP", "events EP", "query EP" once ready;
        # a thread reads stdout (to its end, so the pipe never fills)
        lines: "queue.Queue[Optional[str]]" = queue.Queue()
        def pump() -> None:
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(None)
        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + START_TIMEOUT
        while len(self.endpoints) < 3:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                raise AssertionError("zcqrsd did not print its endpoints in time")
            if line is None:
                raise AssertionError("zcqrsd exited early (%s)" % self.proc.wait())
            words = line.split()
            if len(words) == 2 and words[0] in ("command", "events", "query"):
                self.endpoints[words[0]] = words[1]

    @property
    def command(self) -> str:
        return self.endpoints["command"]

    @property
    def events(self) -> str:
        return self.endpoints["events"]

    @property
    def query(self) -> str:
        return self.endpoints["query"]

    def client(self, **kwargs) -> zcqrs.Client:
        return zcqrs.Client(**self.endpoints, **kwargs)

    def stop(self) -> int:
        """SIGTERM, then the exit status (0 for a clean stop)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.stderr.close()
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Iterator[zcqrs.Node]:
    """An in-process node (libzcqrs through ctypes), shared by a module."""
    with zcqrs.Node(str(tmp_path_factory.mktemp("node")), heartbeat_ms=100) as node:
        yield node


@pytest.fixture(scope="module")
def daemon(tmp_path_factory) -> Iterator[Daemon]:
    """A zcqrsd child process, shared by a module; must stop cleanly (exit 0)."""
    process = Daemon(str(tmp_path_factory.mktemp("daemon")), "--heartbeat-ms", "100")
    yield process
    assert process.stop() == 0


@pytest.fixture(params=["embedded", "daemon"])
def target(request):
    """The embedded node and the daemon, in turn: anything with endpoints and client()."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def client(target) -> Iterator[zcqrs.Client]:
    with target.client() as connected:
        yield connected
