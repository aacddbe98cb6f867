"""The zcqrs command-line client and the zcqrsd process contract."""

import json
import subprocess

import pytest

from conftest import ZCQRS_CLI, ZCQRSD, Daemon, assert_ok, uniq

needs_cli = pytest.mark.skipif(not ZCQRS_CLI, reason="ZCQRS_CLI not set")


def cli(daemon, *args, timeout=20, input=None, env=None):
    """Run zcqrs with stdout and stderr on pipes: the JSON Lines output."""
    argv = [ZCQRS_CLI]
    if daemon is not None:
        argv += ["--command", daemon.command, "--query", daemon.query,
                 "--events", daemon.events]
    return subprocess.run(argv + list(args), capture_output=True, text=True,
                          timeout=timeout, env=env,
                          input=input, stdin=None if input is not None else subprocess.DEVNULL)


def json_lines(result):
    """Every line of stdout, each one JSON object (the pipe contract)."""
    lines = result.stdout.splitlines()
    assert result.stdout == "" or result.stdout.endswith("\n"), result
    objects = [json.loads(line) for line in lines]
    assert all(isinstance(o, dict) for o in objects), result
    return objects


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
    return subprocess.run([ZCQRSD, "--http", "none"] + list(args), capture_output=True,
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


# ------------------------------------------------------- the output contract

SUBCOMMANDS = ["send", "get", "list", "count", "read", "stream", "tail", "views", "health",
               "stats", "rebuild", "cluster", "help"]


@needs_cli
@pytest.mark.parametrize("args, code, message", [
    (["frobnicate"], 2, "unknown command 'frobnicate'"),
    (["views", "--bogus"], 2, "unknown option --bogus"),
    (["get", "accounts"], 2, "missing arguments"),
    (["get", "accounts", "k", "extra"], 2, "unexpected argument 'extra'"),
    (["get", "accounts", "k", "--limit", "3"], 2, "--limit does not apply"),
    (["views", "--from", "3"], 2, "--from does not apply"),
    (["get", "accounts", "k", "--wait-ms", "10"], 2, "--wait-ms needs --min-position"),
    (["get", "accounts", "k", "--min-position", "1", "--wait-ms", "-1"], 2, "--wait-ms"),
    (["send", "account", "k", "open", "--window", "3"], 2, "--window"),
    (["send", "-", "--window", "0"], 2, "--window"),
    (["send", "-", "--id", "x"], 2, "--id"),
    (["send", "account", "k"], 2, "needs AGG KEY TYPE"),
    (["send", "account", "k", "open", "owner=a", "owner=b"], 2, "'owner' is given twice"),
    (["send", "account", "k", "open", "owner:=ann"], 2, "owner:= takes JSON"),
    (["send", "account", "k", "open", "{not json"], 2, "not JSON"),
    (["--json", "--text", "views"], 2, "--json and --text"),
    (["--url", "tcp://127.0.0.1", "views"], 2, "--url"),
    (["--url", "http://127.0.0.1:7400", "views"], 2, "--url"),
    (["--url", "tcp://127.0.0.1:65534", "views"], 2, "--url"),
    (["read"], 2, "needs --from"),
    (["--json=1", "views"], 2, "--json takes no value"),
    (["help", "frobnicate"], 2, "no command 'frobnicate'"),
    ([], 2, "usage: zcqrs"),
])
def test_cli_mistakes_exit_codes_and_messages(node, args, code, message):
    """Each mistake: its exit code, a message on stderr that says what is
    wrong, nothing on stdout, and nothing sent."""
    r = cli(node, *args)
    assert r.returncode == code, r
    assert message in r.stderr, r
    assert r.stdout == "", r


@needs_cli
def test_cli_pipe_contract_every_subcommand(node):
    """stdout on a pipe is JSON Lines: every line is one JSON object, for
    every subcommand; rows, events and views one a line, cursors and
    errors on stderr."""
    k, k2 = uniq(), uniq()
    sent = json_lines(cli(node, "send", "account", k, "open", "owner=pipe"))
    assert len(sent) == 1 and sent[0]["ok"] and sent[0]["stream"] == "account/" + k
    position = sent[0]["position"]
    assert json_lines(cli(node, "send", "account", k2, "open", "owner=pipe"))[0]["ok"]
    r = cli(node, "send", "account", k, "open", "owner=pipe")
    assert r.returncode == 1 and json_lines(r)[0]["error"] == "rejected", r
    r = cli(node, "get", "accounts", k, "--min-position", str(position))
    assert r.returncode == 0 and json_lines(r) == [
        {"key": k, "owner": "pipe", "balance": 0, "status": "open", "version": 1}], r
    # list: one row a line, the cursor on stderr only
    r = cli(node, "list", "accounts", "--index", "owner", "--value", "pipe", "--limit", "1",
            "--min-position", str(position + 1))
    assert r.returncode == 0, r
    rows = json_lines(r)
    assert [row["key"] for row in rows] == [min(k, k2)], r
    assert r.stderr == "next: %s\n" % min(k, k2), r
    r = cli(node, "list", "accounts", "--index", "owner", "--value", "pipe", "--limit", "1",
            "--all")
    assert [row["key"] for row in json_lines(r)] == sorted([k, k2]) and r.stderr == "", r
    r = cli(node, "count", "accounts", "--index", "owner", "--value", "pipe")
    assert json_lines(r)[0]["count"] == 2, r
    r = cli(node, "read", "--from", str(position), "--limit", "1")
    events = json_lines(r)
    assert [e["position"] for e in events] == [position], r
    assert r.stderr == "next: %d\n" % (position + 1), r
    r = cli(node, "stream", "account/" + k)
    assert [(e["stream"], e["version"], e["type"]) for e in json_lines(r)] == [
        ("account/" + k, 1, "opened")], r
    r = cli(node, "tail", "account/" + k, "--count", "1")
    assert [e["stream"] for e in json_lines(r)] == ["account/" + k], r
    r = cli(node, "views")
    assert {v["name"] for v in json_lines(r)} >= {"accounts", "totals"}, r
    for op in ("health", "stats"):
        r = cli(node, op)
        assert r.returncode == 0 and len(json_lines(r)) == 1 and json_lines(r)[0]["ok"], r
    r = cli(node, "rebuild", "totals")
    assert r.returncode == 0 and json_lines(r)[0]["status"] == "rebuilding", r
    # a query the node refuses: nothing on stdout, the error on stderr
    r = cli(node, "cluster")
    assert r.returncode == 1 and r.stdout == "" and "error invalid" in r.stderr, r
    r = cli(node, "get", "nosuchview", k)
    assert r.returncode == 1 and r.stdout == "" and "error unknown" in r.stderr, r
    # --json on a pipe is the same; `jq -c .key` over a page works
    assert cli(node, "--json", "get", "accounts", k).stdout == \
        cli(node, "get", "accounts", k).stdout
    jq = subprocess.run("%s --query %s list accounts --index owner --value pipe | jq -c .key"
                        % (ZCQRS_CLI, node.query), shell=True, capture_output=True, text=True,
                        timeout=20)
    if jq.returncode != 127:        # jq installed
        assert jq.stdout.split() == ['"%s"' % key for key in sorted([k, k2])], jq


@needs_cli
def test_cli_text_on_a_terminal(node):
    """On a terminal (a pty) the output is text; --json forces JSON there."""
    import os
    import pty
    import select

    def on_tty(*args):
        master, slave = pty.openpty()
        try:
            proc = subprocess.Popen([ZCQRS_CLI, "--command", node.command, "--query",
                                     node.query] + list(args), stdout=slave,
                                    stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
            os.close(slave)
            out = b""
            while True:
                ready, _, _ = select.select([master], [], [], 20)
                assert ready, "no output from zcqrs on the terminal within 20 s"
                try:
                    chunk = os.read(master, 4096)
                except OSError:         # EIO: the other side closed
                    break
                if not chunk:
                    break
                out += chunk
            assert proc.wait(20) == 0, proc.stderr.read()
            proc.stderr.close()
            return out.decode().replace("\r\n", "\n")
        finally:
            os.close(master)

    k = uniq()
    out = on_tty("send", "account", k, "open", "owner=tty")
    assert out.startswith("ok account/%s version 1 position " % k), out
    out = on_tty("--json", "count", "accounts")
    assert json.loads(out)["ok"] is True, out
    out = on_tty("views")
    assert out.split()[:5] == ["VIEW", "STATUS", "POSITION", "ROWS", "SNAPSHOT"], out


@needs_cli
def test_cli_get_missing_row_exits_4(node):
    k = uniq()
    r = cli(node, "get", "accounts", k)
    assert r.returncode == 4, r
    assert r.stdout == "" and ("no row %s in accounts" % k) in r.stderr, r


@needs_cli
@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_cli_help_per_subcommand(name):
    for args in ([name, "--help"], ["help", name], ["--help", name]):
        r = cli(None, *args)
        assert r.returncode == 0, r
        assert r.stdout.startswith("usage: zcqrs [GLOBAL OPTIONS] " + name), r
        assert r.stderr == "", r
    r = cli(None, "--help")
    for name in SUBCOMMANDS:
        assert "\n  %s" % name in r.stdout, name
    for text in ("Exit codes", "ZCQRS_URL", "JSON Lines", "name:=JSON"):
        assert text in r.stdout, text


@needs_cli
def test_cli_typing_of_name_value(node):
    """name=value types whole numbers, true/false/null; name:=JSON takes any
    JSON, so the string "42" is owner:='"42"'."""
    k = uniq()
    r = cli(node, "send", "account", k, "open", 'owner:="42"', "overdraft=100")
    assert r.returncode == 0, r
    position = json_lines(r)[0]["position"]
    row = json_lines(cli(node, "get", "accounts", k, "--min-position", str(position)))[0]
    assert row["owner"] == "42", row
    events = json_lines(cli(node, "stream", "account/" + k))
    assert events[0]["data"] == {"owner": "42", "overdraft": 100}, events
    # owner=42 is a number, which the domain refuses
    r = cli(node, "send", "account", uniq(), "open", "owner=42")
    assert r.returncode == 1 and json_lines(r)[0]["error"] == "invalid", r


@needs_cli
def test_cli_double_dash_ends_the_options(node):
    k = "--" + uniq()
    r = cli(node, "send", "account", "--", k, "open", "owner=dash")
    assert r.returncode == 0 and json_lines(r)[0]["stream"] == "account/" + k, r
    r = cli(node, "get", "accounts", "--min-position", str(json_lines(r)[0]["position"]),
            "--", k)
    assert r.returncode == 0 and json_lines(r)[0]["key"] == k, r
    r = cli(node, "get", "accounts", k)
    assert r.returncode == 2 and "unknown option " + k in r.stderr, r


# ------------------------------------------------------------------ send -

def command_line(**fields):
    return json.dumps(fields)


@needs_cli
def test_cli_send_lines(node):
    """`send -`: one result per input line, in input order with its line
    number; blank lines skipped; a refusal is exit 1; a retried id is a
    duplicate."""
    k = uniq()
    rid = uniq("id")
    lines = [
        command_line(aggregate="account", key=k, type="open", data={"owner": "bulk"}),
        "",
        command_line(stream="account/" + k, type="deposit", data={"amount": 700}, id=rid),
        command_line(stream="account/" + k, type="deposit", data={"amount": 700}, id=rid),
        command_line(stream="account/" + k, type="withdraw", data={"amount": 10 ** 6}),
        command_line(aggregate="account", key=k, type="close", expect=1,
                     meta={"by": "cli"}),
    ]
    r = cli(node, "send", "-", "--window", "4", input="\n".join(lines) + "\n")
    assert r.returncode == 1, r
    results = json_lines(r)
    assert [o["line"] for o in results] == [1, 3, 4, 5, 6], r
    assert [o["ok"] for o in results] == [True, True, True, False, False], r
    assert results[1]["id"] == rid and results[2]["duplicate"] is True, r
    assert results[3]["error"] == "rejected" and results[4]["error"] == "conflict", r
    assert "line 5: error rejected" in r.stderr and "line 6: error conflict" in r.stderr, r
    c = node.client()
    try:
        assert c.synced_row("accounts", k)["balance"] == 700
    finally:
        c.close()


@needs_cli
def test_cli_send_lines_pipelined_in_order(node):
    """Many lines through a small window: every one answered, in order."""
    keys = [uniq() for _ in range(200)]
    text = "".join(command_line(aggregate="account", key=k, type="open",
                                data={"owner": "many"}) + "\n" for k in keys)
    r = cli(node, "send", "-", "--window", "16", input=text, timeout=60)
    assert r.returncode == 0, r
    results = json_lines(r)
    assert [o["line"] for o in results] == list(range(1, 201)), r
    assert [o["stream"] for o in results] == ["account/" + k for k in keys]


@needs_cli
@pytest.mark.parametrize("bad, message", [
    ("{not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"aggregate": "account", "key": "x", "tpye": "open"}', 'unknown field "tpye"'),
    ('{"aggregate": "account", "key": "x"}', 'needs "type"'),
    ('{"stream": "account", "type": "open"}', "AGGREGATE/KEY"),
    ('{"stream": "account/x", "key": "x", "type": "open"}', "not both"),
    ('{"aggregate": "account", "key": "x", "type": "open", "expect": -1}', '"expect"'),
    ('{"aggregate": "account", "key": "x", "type": "open", "meta": [1]}', '"meta"'),
    ('{"aggregate": "account", "key": "x", "type": "open", "id": 7}', '"id"'),
])
def test_cli_send_lines_malformed(node, bad, message):
    """A malformed line stops the reading with exit 2, naming the line: the
    lines before it are sent and answered, none after it."""
    before, after = uniq(), uniq()
    text = "\n".join([command_line(aggregate="account", key=before, type="open",
                                   data={"owner": "m"}), bad,
                      command_line(aggregate="account", key=after, type="open",
                                   data={"owner": "m"})]) + "\n"
    r = cli(node, "send", "-", input=text)
    assert r.returncode == 2, r
    assert "line 2: " in r.stderr and message in r.stderr, r
    assert [(o["line"], o["ok"]) for o in json_lines(r)] == [(1, True)], r
    c = node.client()
    try:
        assert c.synced_row("accounts", before)["owner"] == "m"
        assert c.query("get", view="accounts", key=after)["row"] is None
    finally:
        c.close()


@needs_cli
def test_cli_send_lines_no_answer_exits_3():
    r = subprocess.run([ZCQRS_CLI, "--command", "tcp://127.0.0.1:1", "--timeout", "300",
                        "send", "-"], capture_output=True, text=True, timeout=20,
                       input=command_line(aggregate="account", key="x", type="open",
                                          id="lost-1") + "\n")
    assert r.returncode == 3, r
    assert r.stdout == "" and "line 1: no reply" in r.stderr and "lost-1" in r.stderr, r


# ---------------------------------------------------------------- --wait-ms

@needs_cli
def test_cli_wait_ms_is_the_nodes_timeout(node):
    """--wait-ms sets the query's timeout_ms, apart from the client's
    --timeout: a short wait is the node's `timeout` error (exit 1), a wait
    longer than --timeout is no answer (exit 3)."""
    c = node.client()
    try:
        head = c.head()
    finally:
        c.close()
    far = str(head + 10 ** 9)
    r = cli(node, "--timeout", "4000", "count", "accounts", "--min-position", far,
            "--wait-ms", "100")
    assert r.returncode == 1 and "error timeout" in r.stderr and r.stdout == "", r
    r = cli(node, "--timeout", "1500", "get", "accounts", "x", "--min-position", far,
            "--wait-ms", "8000")
    assert r.returncode == 3 and "no reply" in r.stderr, r
    r = cli(node, "count", "accounts", "--min-position", str(head), "--wait-ms", "100")
    assert r.returncode == 0 and json_lines(r)[0]["position"] >= head, r
    r = cli(node, "list", "accounts", "--limit", "1", "--min-position", far, "--wait-ms", "0")
    assert r.returncode == 1 and "error timeout" in r.stderr, r


# ------------------------------------------------------------ exact topics

@needs_cli
def test_cli_tail_topic_is_exact(node):
    """`tail account/K` follows account/K, not account/K0 (whose name it
    prefixes); --prefix follows both."""
    k = uniq()
    c = node.client()
    try:
        start = c.head() + 1
        follow = subprocess.Popen([ZCQRS_CLI, "--query", node.query, "--events", node.events,
                                   "tail", "account/" + k, "--from", str(start), "--count",
                                   "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, stdin=subprocess.DEVNULL)
        prefix = subprocess.Popen([ZCQRS_CLI, "--query", node.query, "--events", node.events,
                                   "tail", "account/" + k, "--prefix", "--from", str(start),
                                   "--count", "4"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        assert_ok(c.open(k + "0"))
        assert_ok(c.open(k))
        assert_ok(c.deposit(k + "0", 5))
        assert_ok(c.deposit(k, 7))
    finally:
        c.close()
    try:
        out, err = follow.communicate(timeout=30)
        pout, perr = prefix.communicate(timeout=30)
    finally:
        for proc in (follow, prefix):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert follow.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [(e["stream"], e["type"]) for e in events] == [
        ("account/" + k, "opened"), ("account/" + k, "deposited")], out
    assert prefix.returncode == 0, perr
    streams = [json.loads(line)["stream"] for line in pout.splitlines()]
    assert streams == ["account/" + k + "0", "account/" + k] * 2, pout


# ------------------------------------------------------------ --url

class PortDaemon(Daemon):
    """A node on three consecutive ports, as --url expects."""

    def __init__(self, data, port):
        super().__init__(data)
        self.port = port

    def argv(self):
        argv = super().argv()
        for offset, name in enumerate(("--command", "--events", "--query")):
            argv[argv.index(name) + 1] = "tcp://127.0.0.1:%d" % (self.port + offset)
        return argv


def free_base_port():
    import random
    import socket as pysocket
    for _ in range(100):
        port = random.randrange(17400, 18997)
        sockets = []
        try:
            for offset in range(3):
                s = pysocket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port + offset))
            return port
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no three free consecutive ports")


@needs_cli
def test_cli_url_gives_three_endpoints(tmp_path):
    import os
    d = None
    for attempt in range(3):
        try:
            d = PortDaemon(tmp_path / ("d%d" % attempt), free_base_port()).start()
            break
        except AssertionError:
            continue
    assert d is not None
    try:
        url = "tcp://127.0.0.1:%d" % d.port
        env = {key: value for key, value in os.environ.items() if not key.startswith("ZCQRS_")}
        k = uniq()
        r = cli(None, "--url", url, "send", "account", k, "open", "owner=url", env=env)
        assert r.returncode == 0, r
        position = json_lines(r)[0]["position"]
        r = cli(None, "--url=" + url, "get", "accounts", k, "--min-position", str(position),
                env=env)
        assert r.returncode == 0 and json_lines(r)[0]["owner"] == "url", r
        # events on PORT+1: tail through the URL alone
        r = cli(None, "tail", "account/" + k, "--count", "1", env=dict(env, ZCQRS_URL=url))
        assert r.returncode == 0 and json_lines(r)[0]["stream"] == "account/" + k, r
        r = cli(None, "count", "accounts", env=dict(env, ZCQRS_URL=url))
        assert r.returncode == 0 and json_lines(r)[0]["count"] == 1, r
        # --url beats ZCQRS_URL
        r = cli(None, "--url", url, "count", "accounts",
                env=dict(env, ZCQRS_URL="tcp://127.0.0.1:1"))
        assert r.returncode == 0, r
        # one endpoint, by flag or by variable, beats the URL
        r = cli(None, "--url", url, "--query", "tcp://127.0.0.1:1", "--timeout", "300",
                "count", "accounts", env=env)
        assert r.returncode == 3 and "tcp://127.0.0.1:1" in r.stderr, r
        r = cli(None, "--timeout", "300", "count", "accounts",
                env=dict(env, ZCQRS_URL=url, ZCQRS_QUERY="tcp://127.0.0.1:1"))
        assert r.returncode == 3, r
        r = cli(None, "views", env=dict(env, ZCQRS_URL="127.0.0.1:7400"))
        assert r.returncode == 2 and "ZCQRS_URL" in r.stderr, r
    finally:
        assert d.stop() == 0
