"""zcqrsd's HTTP endpoint: GET /metrics in the Prometheus text format
(docs/operations.md), checked against the `stats` query after a known
workload, by promtool, and for what it refuses."""

import os
import random
import socket as socketlib
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import Client, assert_error, assert_ok, uniq

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
OUTCOMES = ("ok", "duplicate", "rejected", "conflict", "invalid", "unknown",
            "unavailable", "timeout", "internal")


def http_address(daemon, timeout=10.0):
    """The `http HOST:PORT` line zcqrsd prints after its endpoints."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(daemon.stdout_lines):
            parts = line.split()
            if len(parts) == 2 and parts[0] == "http":
                return parts[1]
        time.sleep(0.05)
    raise AssertionError("no http line on stdout: %r" % daemon.stdout_lines)


def get(address, path="/metrics", method="GET"):
    """(status, content type, body) of one request."""
    request = urllib.request.Request("http://%s%s" % (address, path), method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type"), \
                response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type"), error.read().decode()


def parse(text):
    """{(name, frozenset of label pairs): value} of an exposition."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels, value = m.groups()
        key = (name, frozenset(LABEL.findall(labels or "")))
        assert key not in samples, "sample repeated: %r" % line
        samples[key] = float(value)
    return samples


def value(samples, name, **labels):
    return samples[(name, frozenset(labels.items()))]


def listening_ports(pid):
    """The TCP ports a process listens on, from its socket inodes."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and fields[9] in inodes:       # LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def port_of(endpoint):
    return int(endpoint.rsplit(":", 1)[1])


@pytest.fixture
def metered(daemon_factory):
    return daemon_factory(extra=["--http", "127.0.0.1:0"])


def test_metrics_match_the_stats_query_after_a_known_workload(metered):
    address = http_address(metered)
    c = metered.client()
    keys = [uniq("m") for _ in range(3)]
    deposits = 0
    for k in keys:
        assert_ok(c.open(k))
        for amount in (10, 20):
            assert_ok(c.deposit(k, amount))
            deposits += 1
    assert_error(c.withdraw(keys[0], 10 ** 6), "rejected")
    assert_error(c.command({"id": c.new_id(), "aggregate": "account", "type": "deposit"}),
                 "invalid")
    assert_error(c.send("account", uniq(), "no_such_command", {}), "unknown")
    head = c.head()
    c.rows("accounts", head)           # both views have applied the workload
    c.rows("totals", head)
    stats = assert_ok(c.query("stats"))["stats"]
    status, content_type, text = get(address)
    c.close()
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    samples = parse(text)

    def commands(**labels):
        return sum(v for (name, pairs), v in samples.items()
                   if name == "zcqrs_commands_total"
                   and all(p in pairs for p in labels.items()))

    # exact counts per aggregate, type and outcome
    assert value(samples, "zcqrs_commands_total", aggregate="account", type="deposit",
                 outcome="ok") == deposits
    assert value(samples, "zcqrs_commands_total", aggregate="account", type="open",
                 outcome="ok") == len(keys)
    assert value(samples, "zcqrs_commands_total", aggregate="account", type="withdraw",
                 outcome="rejected") == 1
    # a type the domain does not have is no label: the row of empty names
    assert value(samples, "zcqrs_commands_total", aggregate="", type="",
                 outcome="unknown") == 1
    # the outcomes add up to the stats query's counters
    assert commands(outcome="ok") + commands(outcome="duplicate") \
        == stats["commands_accepted"]
    assert commands(outcome="duplicate") == stats["commands_duplicate"]
    assert commands(outcome="rejected") == stats["commands_rejected"]
    assert commands(outcome="conflict") == stats["commands_conflict"]
    assert commands(outcome="invalid") + commands(outcome="unknown") \
        == stats["commands_invalid"]
    assert commands(outcome="unavailable") == stats["commands_unavailable"]
    assert commands(outcome="internal") + commands(outcome="timeout") \
        == stats["commands_failed"]
    total = commands()
    assert total == stats["commands_received"] == len(keys) * 3 + 3
    # every answered command is in the latency histogram, once
    assert value(samples, "zcqrs_command_ack_seconds_count") == total
    assert value(samples, "zcqrs_command_ack_seconds_bucket", le="+Inf") == total
    assert value(samples, "zcqrs_command_ack_seconds_sum") > 0
    for name, key in (("zcqrs_commands_received_total", "commands_received"),
                      ("zcqrs_events_written_total", "events_written"),
                      ("zcqrs_commits_total", "commits"),
                      ("zcqrs_commit_failures_total", "commit_failures"),
                      ("zcqrs_aggregates_loaded_total", "aggregates_loaded"),
                      ("zcqrs_replies_dropped_total", "replies_dropped"),
                      ("zcqrs_requests_dropped_total", "requests_dropped")):
        assert value(samples, name) == stats[key], name
    assert value(samples, "zcqrs_log_head") == stats["head"] == head
    assert value(samples, "zcqrs_store_failed") == 0
    assert value(samples, "zcqrs_store_disk_bytes") > 0
    for view in ("accounts", "totals"):
        assert value(samples, "zcqrs_view_position", view=view) == head
        assert value(samples, "zcqrs_view_lag_events", view=view) == 0
        assert value(samples, "zcqrs_view_lag_seconds", view=view) == 0
        assert value(samples, "zcqrs_view_rows", view=view) == stats["view.%s.rows" % view]
        assert value(samples, "zcqrs_view_events_applied_total", view=view) \
            == stats["view.%s.applied" % view]
        assert value(samples, "zcqrs_view_status", view=view, status="live") == 1
    assert value(samples, "zcqrs_view_rows", view="accounts") >= len(keys)
    # the standard process metrics, of this very process
    assert value(samples, "process_resident_memory_bytes") > 1 << 20
    assert value(samples, "process_open_fds") > 3
    assert value(samples, "process_cpu_seconds_total") >= 0
    start = value(samples, "process_start_time_seconds")
    assert time.time() - 3600 < start <= time.time() + 1


def test_promtool_accepts_the_exposition(metered):
    promtool = shutil.which("promtool")
    if not promtool:
        pytest.skip("promtool is not installed (Debian's prometheus; scripts/deps.sh)")
    c = metered.client()
    assert_ok(c.open(uniq("p")))
    c.close()
    status, _, text = get(http_address(metered))
    assert status == 200
    checked = subprocess.run([promtool, "check", "metrics"], input=text, text=True,
                             capture_output=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert not (checked.stdout + checked.stderr).strip(), checked.stdout + checked.stderr


def test_only_get_metrics_is_served(metered):
    address = http_address(metered)
    assert get(address, "/")[0] == 404
    assert get(address, "/metrics/x")[0] == 404
    assert get(address, "/metric")[0] == 404
    for method in ("POST", "PUT", "DELETE"):
        assert get(address, "/metrics", method)[0] == 405, method
    assert get(address, "/metrics", "HEAD")[0] == 200


def test_the_http_endpoint_binds_only_when_asked(metered, daemon_factory):
    address = http_address(metered)
    own = {port_of(e) for e in (metered.command, metered.events, metered.query)}
    assert listening_ports(metered.proc.pid) == own | {port_of(address)}
    # the suite's daemons run with --http none (conftest): no fourth socket
    plain = daemon_factory()
    assert not any(line.startswith("http ") for line in plain.stdout_lines)
    assert listening_ports(plain.proc.pid) \
        == {port_of(e) for e in (plain.command, plain.events, plain.query)}


def test_a_taken_http_address_stops_the_start(metered, tmp_path):
    address = http_address(metered)
    r = subprocess.run([os.environ["ZCQRSD"], "--data", str(tmp_path / "second"),
                        "--command", "tcp://127.0.0.1:*", "--events", "tcp://127.0.0.1:*",
                        "--query", "tcp://127.0.0.1:*", "--http", address],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r
    assert "cannot bind the HTTP endpoint %s" % address in r.stderr, r.stderr


@pytest.mark.parametrize("setting", ["7480", "127.0.0.1", "127.0.0.1:65536", "127.0.0.1:x",
                                     ":7480", "a b:80"])
def test_a_bad_http_setting_is_refused(setting, tmp_path):
    r = subprocess.run([os.environ["ZCQRSD"], "--data", str(tmp_path / "d"),
                        "--http", setting], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2, r
    assert "http:" in r.stderr, r.stderr


def test_an_ipv6_loopback_address_is_served(daemon_factory):
    if not os.path.exists("/proc/net/if_inet6"):
        pytest.skip("this machine has no IPv6")
    d = daemon_factory(extra=["--http", "[::1]:0"])
    address = http_address(d)
    assert address.startswith("[::1]:")
    assert get(address)[0] == 200
    assert "not a loopback address" not in d.stderr()


def free_port_block(offsets):
    """A port P (below the ephemeral range) with P + each offset free now."""
    for _ in range(200):
        base = random.randint(20000, 30000)
        held = []
        try:
            for offset in offsets:
                s = socketlib.socket()
                s.bind(("127.0.0.1", base + offset))
                held.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise AssertionError("no free block of ports")


def test_auto_takes_the_command_port_plus_80(daemon_factory):
    """zcqrsd's default: loopback at the command port + 80, so that nodes
    on one host each get their own."""
    base = free_port_block((0, 1, 2, 80))
    d = daemon_factory(extra=["--http", "auto", "--command", "tcp://127.0.0.1:%d" % base,
                              "--events", "tcp://127.0.0.1:%d" % (base + 1),
                              "--query", "tcp://127.0.0.1:%d" % (base + 2)])
    assert http_address(d) == "127.0.0.1:%d" % (base + 80)
    assert get(http_address(d))[0] == 200
    # with system-picked command ports, auto lets the system pick too
    other = daemon_factory(extra=["--http", "auto"])
    assert get(http_address(other))[0] == 200


def test_auto_skips_a_taken_port_with_a_warning(daemon_factory):
    base = free_port_block((0, 1, 2, 80))
    squatter = socketlib.socket()
    squatter.bind(("127.0.0.1", base + 80))
    squatter.listen(1)
    try:
        d = daemon_factory(extra=["--http", "auto", "--command", "tcp://127.0.0.1:%d" % base,
                                  "--events", "tcp://127.0.0.1:%d" % (base + 1),
                                  "--query", "tcp://127.0.0.1:%d" % (base + 2)])
        # it serves its endpoints, without the HTTP one
        client = Client(d)
        try:
            assert assert_ok(client.query("health"))["node"]
        finally:
            client.close()
        assert not any(line.startswith("http ") for line in d.stdout_lines)
        assert "no HTTP endpoint" in d.stderr()
        assert base + 80 not in listening_ports(d.proc.pid)
    finally:
        squatter.close()


def test_the_nodes_own_commands_are_counted_per_aggregate(metered):
    """`$delete` and `$truncate` are no domain's commands: they have rows of
    their own on every aggregate."""
    c = Client(metered)
    try:
        k = uniq()
        assert_ok(c.open(k))
        assert_ok(c.deposit(k, 5))
        assert_ok(c.send("account", k, "$truncate", {"before": 2}))
        assert_ok(c.send("account", k, "$delete"))
        assert_error(c.send("account", k, "$delete"), "rejected")
    finally:
        c.close()
    samples = parse(get(http_address(metered))[2])
    for type_, outcome, count in (("$truncate", "ok", 1), ("$delete", "ok", 1),
                                  ("$delete", "rejected", 1), ("open", "ok", 1)):
        assert value(samples, "zcqrs_commands_total", aggregate="account", type=type_,
                     outcome=outcome) == count, (type_, outcome)
