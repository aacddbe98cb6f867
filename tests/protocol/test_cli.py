"""The zcqrs command-line client and the zcqrsd process contract."""

import json
import subprocess

import pytest

from conftest import ZCQRS_CLI, ZCQRSD, Daemon, assert_ok, uniq

needs_cli = pytest.mark.skipif(not ZCQRS_CLI, reason="ZCQRS_CLI not set")


def cli(daemon, *args, timeout=20):
    argv = [ZCQRS_CLI]
    if daemon is not None:
        argv += ["--command", daemon.command, "--query", daemon.query,
                 "--events", daemon.events]
    return subprocess.run(argv + list(args), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@needs_cli
def test_cli_help():
    r = cli(None, "--help")
    assert r.returncode == 0, r
    assert "send" in r.stdout + r.stderr


@needs_cli
def test_cli_send_get(node):
    k = uniq()
    r = cli(node, "send", "account", k, "open", "owner=ann")
    assert r.returncode == 0, r
    assert json.loads(r.stdout)["stream"] == "account/" + k, r
    r = cli(node, "send", "account", k, "open", "owner=ann")
    assert r.returncode == 1, r
    assert json.loads(r.stdout)["error"] == "rejected", r
    assert "error rejected" in r.stderr, r
    r = cli(node, "get", "accounts", k)
    assert r.returncode == 0, r
    assert json.loads(r.stdout) == {"key": k, "owner": "ann", "balance": 0, "status": "open",
                                    "version": 1}, r
    # what the CLI wrote is what a protocol client reads
    c = node.client()
    try:
        row = c.synced_row("accounts", k)
        assert row["owner"] == "ann" and row["status"] == "open"
    finally:
        c.close()


# ------------------------------------------------------------ zcqrsd

def run_daemon(*args, timeout=20):
    return subprocess.run([ZCQRSD] + list(args), capture_output=True,
                          text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("args", [
    ["--bogus-flag", "x"],
    ["--durability", "sometimes"],
    ["--command"],
])
def test_daemon_bad_flags_exit_2(tmp_path, args):
    r = run_daemon("--data", str(tmp_path / "d"),
                   "--command", "tcp://127.0.0.1:*",
                   "--events", "tcp://127.0.0.1:*",
                   "--query", "tcp://127.0.0.1:*", *args)
    assert r.returncode == 2, r
    assert r.stderr.strip(), "a message on stderr is expected"


def test_daemon_unusable_data_dir_exit_2(tmp_path):
    f = tmp_path / "a-file"
    f.write_text("not a directory")
    r = run_daemon("--data", str(f), "--command", "tcp://127.0.0.1:*",
                   "--events", "tcp://127.0.0.1:*",
                   "--query", "tcp://127.0.0.1:*")
    assert r.returncode == 2, r
    assert r.stderr.strip()


def test_daemon_prints_endpoints_and_stops_on_sigterm(tmp_path):
    d = Daemon(tmp_path / "d").start()
    for ep in (d.command, d.events, d.query):
        assert ep.startswith("tcp://127.0.0.1:") and not ep.endswith("*")
    c = d.client()
    assert_ok(c.query("health"))
    c.close()
    assert d.stop() == 0


def test_daemon_second_instance_on_same_dir(tmp_path):
    """A data dir held by a running node is unusable for another one."""
    d = Daemon(tmp_path / "d").start()
    try:
        r = run_daemon("--data", str(tmp_path / "d"),
                       "--command", "tcp://127.0.0.1:*",
                       "--events", "tcp://127.0.0.1:*",
                       "--query", "tcp://127.0.0.1:*")
        assert r.returncode == 2, r
        assert r.stderr.strip()
    finally:
        assert d.stop() == 0


@needs_cli
@pytest.mark.parametrize("args, flag", [
    (["send", "account", "typo", "open", "owner=q", "--expect", "abc"], "--expect"),
    (["send", "account", "typo", "open", "owner=q", "--expect", "-1"], "--expect"),
    (["send", "account", "typo", "open", "owner=q", "--expect", "1x"], "--expect"),
    (["get", "accounts", "typo", "--min-position", "abc"], "--min-position"),
    (["--timeout", "abc", "views"], "--timeout"),
    (["tail", "--count", "abc"], "--count"),
    (["list", "accounts", "--limit", "abc"], "--limit"),
    (["list", "accounts", "--limit", "0"], "--limit"),
    (["read", "--from", " 1"], "--from"),
    (["count", "accounts", "--index", "owner"], "--index"),
])
def test_cli_refuses_typos_before_sending(node, args, flag):
    """A mistyped flag is a usage error naming the flag, and nothing is
    sent: the account `typo` is never opened."""
    r = cli(node, *args)
    assert r.returncode == 2, r
    assert flag in r.stderr, r
    c = node.client()
    try:
        reply = c.query("get", view="accounts", key="typo")
        assert reply["ok"] and reply.get("row") is None, reply
    finally:
        c.close()


@needs_cli
def test_cli_health_is_a_probe(node):
    """`zcqrs health` exits 0 on a node whose store takes commits and whose
    views are live (5 otherwise), and 3 when nobody answers."""
    r = cli(node, "health")
    assert r.returncode == 0, r
    r = subprocess.run([ZCQRS_CLI, "--query", "tcp://127.0.0.1:1", "--timeout", "300", "health"],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 3, r


@needs_cli
def test_cli_environment_flag_equals_and_version(node):
    """Endpoints from ZCQRS_COMMAND / ZCQRS_QUERY / ZCQRS_EVENTS, flags as
    --flag=value, and --version on both programs."""
    import os
    env = dict(os.environ, ZCQRS_COMMAND=node.command, ZCQRS_QUERY=node.query,
               ZCQRS_EVENTS=node.events)
    k = uniq()
    r = subprocess.run([ZCQRS_CLI, "send", "account", k, "open", "owner=env", "--id=env-" + k],
                       capture_output=True, text=True, timeout=20, env=env)
    assert r.returncode == 0, r
    r = subprocess.run([ZCQRS_CLI, "--timeout=5000", "--json", "get", "accounts", k],
                       capture_output=True, text=True, timeout=20, env=env)
    assert r.returncode == 0 and "env" in r.stdout, r
    # a flag beats the environment
    r = subprocess.run([ZCQRS_CLI, "--query=tcp://127.0.0.1:1", "--timeout=300", "health"],
                       capture_output=True, text=True, timeout=20, env=env)
    assert r.returncode == 3, r
    for program, name in ((ZCQRS_CLI, "zcqrs"), (ZCQRSD, "zcqrsd")):
        r = subprocess.run([program, "--version"], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0 and r.stdout.startswith(name + " "), r
