"""The plugins of run.sh in the installed zcqrsd and in zcqrs.Node.

Every check goes through the installed Python package's Client: a command
`add` to a counter, then the `counters` view read back. The daemons listen
on 127.0.0.1, on ports drawn from 17400-18999 (another draw when taken).
"""

from __future__ import annotations

import argparse
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from typing import Dict, List, Optional

import zcqrs

START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


class Daemon:
    """The installed zcqrsd on one data dir, stopped with SIGTERM."""

    def __init__(self, exe: str, data: str, *extra: str) -> None:
        self.proc: Optional[subprocess.Popen] = None
        for _ in range(20):
            self.url = "tcp://127.0.0.1:%d" % random.randrange(17400, 18997)
            self.endpoints = zcqrs.endpoints_from_url(self.url)
            argv = [exe, "--data", data, "--http", "none", *extra]
            for name, endpoint in self.endpoints.items():
                argv += ["--" + name, endpoint]
            if self._start(argv):
                return
        raise AssertionError("zcqrsd found no free ports in 17400-18999")

    def _start(self, argv: List[str]) -> bool:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        lines: "queue.Queue[Optional[str]]" = queue.Queue()
        self.stderr: List[str] = []

        def pump_stdout() -> None:
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(None)

        def pump_stderr() -> None:
            for line in self.proc.stderr:
                self.stderr.append(line)

        threading.Thread(target=pump_stdout, daemon=True).start()
        self.stderr_thread = threading.Thread(target=pump_stderr, daemon=True)
        self.stderr_thread.start()
        bound: Dict[str, str] = {}
        deadline = time.monotonic() + START_TIMEOUT
        while len(bound) < 3:
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("zcqrsd did not print its endpoints in time")
            if line is None:
                status = self.proc.wait()
                self.stderr_thread.join()
                text = "".join(self.stderr)
                if "in use" in text:
                    return False            # a port was taken: draw again
                raise AssertionError("zcqrsd exited with %d:\n%s" % (status, text))
            words = line.split()
            if len(words) == 2 and words[0] in self.endpoints:
                bound[words[0]] = words[1]
        assert bound == self.endpoints, bound
        return True

    def client(self) -> zcqrs.Client:
        """Client(url=): the three endpoints are consecutive ports."""
        return zcqrs.Client(url=self.url)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        status = self.proc.wait(STOP_TIMEOUT)
        self.stderr_thread.join()
        if status != 0:
            raise AssertionError("zcqrsd exited with %d:\n%s" % (status, "".join(self.stderr)))


def check_counter(client: zcqrs.Client, where: str) -> None:
    """add 3, add 4 (and a refused add): the view says 7, at version 2."""
    key = "c" + uuid.uuid4().hex[:8]
    first = client.send("counter", key, "add", {"n": 3}, timeout=30)
    second = client.send("counter", key, "add", {"n": 4}, timeout=30)
    assert (first.version, second.version) == (1, 2), (first, second)
    try:
        client.send("counter", key, "add", {"n": "four"}, timeout=30)
    except zcqrs.Invalid:
        pass
    else:
        raise AssertionError("%s: add with a string n was accepted" % where)
    row = client.get("counters", key, min_position=second.position, timeout=30)
    assert row == {"key": key, "total": 7, "version": 2}, "%s: %r" % (where, row)
    assert client.count("counters", min_position=second.position, timeout=30) >= 1
    print("ok: %s" % where)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("plugins", nargs="+")
    args = parser.parse_args()

    prefix = os.path.realpath(args.prefix)
    assert os.path.realpath(zcqrs.__file__).startswith(prefix + os.sep), \
        "zcqrs imported from %s, not from the prefix" % zcqrs.__file__
    zcqrsd = os.path.join(prefix, "bin", "zcqrsd")

    runs = 0
    # each plugin by path, then by name from the installed plugin dir
    domains = [os.path.realpath(plugin) for plugin in args.plugins] + ["counter"]
    for domain in domains:
        data = os.path.join(args.work, "daemon-%d" % runs)
        daemon = Daemon(zcqrsd, data, "--domain", domain)
        try:
            with daemon.client() as client:
                check_counter(client, "zcqrsd --domain %s" % domain)
        finally:
            daemon.stop()
        data = os.path.join(args.work, "node-%d" % runs)
        with zcqrs.Node(data, domain=domain) as node, node.client() as client:
            check_counter(client, "zcqrs.Node(domain=%r)" % domain)
        runs += 1

    # the bank plugin as installed, by name
    daemon = Daemon(zcqrsd, os.path.join(args.work, "bank"), "--domain", "bank")
    try:
        with daemon.client() as client:
            key = "a" + uuid.uuid4().hex[:8]
            client.send("account", key, "open", {"owner": "ada"}, timeout=30)
            result = client.send("account", key, "deposit", {"amount": 250}, timeout=30)
            row = client.get("accounts", key, min_position=result.position, timeout=30)
            assert row["balance"] == 250, row
            print("ok: zcqrsd --domain bank")
    finally:
        daemon.stop()
    print("packaging: all %d runs checked" % (2 * runs + 1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
