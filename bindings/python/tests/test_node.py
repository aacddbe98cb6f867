"""zcqrs.Node: libzcqrs in-process through ctypes."""

import os
import signal
import subprocess
import sys
import time

import pytest

import zcqrs
from zcqrs import node as node_module


def test_walkthrough(tmp_path):
    with zcqrs.Node(str(tmp_path / "d")) as node:
        assert node.running and node.id == "node1" and node.durability == "wal"
        for name, endpoint in node.endpoints.items():
            assert endpoint.startswith("tcp://127.0.0.1:") and not endpoint.endswith(":*")
        assert (node.command, node.events, node.query) == tuple(
            node.endpoints[name] for name in ("command", "events", "query"))
        assert node.head == 0
        with node.client() as client:
            result = client.send("account", "1", "open", {"owner": "n"})
            assert node.head == result.position == 1
        assert "node1" in repr(node)
    assert not node.running
    node.close()                            # idempotent
    with pytest.raises(ValueError):
        node.head


def test_restart_keeps_the_log_and_rebuilds_views(tmp_path):
    data = str(tmp_path / "d")
    with zcqrs.Node(data) as node, node.client() as client:
        client.send("account", "7", "open", {"owner": "r"})
        last = client.send("account", "7", "deposit", {"amount": 70})
    with zcqrs.Node(data, durability="fsync", node="n2", shards=1) as node, \
            node.client() as client:
        assert node.durability == "fsync" and node.id == "n2"
        assert node.head == last.position
        assert client.get("accounts", "7", min_position=last.position)["balance"] == 70
        assert client.send("account", "7", "deposit", {"amount": 1}).version == 3


def test_endpoints_and_domain_by_path(tmp_path):
    socket_path = tmp_path / "q.ipc"
    with zcqrs.Node(str(tmp_path / "d"), domain=node_module.plugin_path("bank"),
                    endpoints={"query": "ipc://%s" % socket_path}) as node:
        assert node.query == "ipc://%s" % socket_path
        with node.client() as client:
            assert client.health()["head"] == 0
    with pytest.raises(ValueError):
        zcqrs.Node(str(tmp_path / "e"), endpoints={"command": "inproc://x"})
    with pytest.raises(ValueError):
        zcqrs.Node(str(tmp_path / "e"), endpoints={"commands": "tcp://127.0.0.1:*"})
    with pytest.raises(OSError):
        zcqrs.Node(str(tmp_path / "e"), domain="no-such-domain")


def test_a_port_in_use_is_reported(tmp_path):
    with zcqrs.Node(str(tmp_path / "a")) as first:
        with pytest.raises(zcqrs.Error) as caught:
            zcqrs.Node(str(tmp_path / "b"), endpoints={"command": first.command})
        assert first.command in caught.value.message


def test_python_keeps_its_signal_handlers(tmp_path):
    """czmq must not take SIGINT from Python: Ctrl-C still raises KeyboardInterrupt."""
    with zcqrs.Node(str(tmp_path / "d")):
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:      # the handler runs between bytecodes
                time.sleep(0.01)


def child_env():
    """The environment for a child interpreter that imports this same zcqrs."""
    env = dict(os.environ)
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(zcqrs.__file__)))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, env.get("PYTHONPATH")]))
    return env


def test_node_stops_at_interpreter_exit(tmp_path):
    """A node left open is stopped gracefully when the interpreter exits."""
    data = str(tmp_path / "d")
    script = ("import zcqrs, sys\n"
              "node = zcqrs.Node(sys.argv[1])\n"
              "client = node.client()\n"
              "print(client.send('account', 'x', 'open', {'owner': 'e'}).position)\n")
    done = subprocess.run([sys.executable, "-c", script, data], capture_output=True,
                          text=True, timeout=60, env=child_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    with zcqrs.Node(data) as node:      # the store was closed (lock released), data kept
        assert node.head == 1


def test_help_and_typing():
    import inspect
    package = os.path.dirname(zcqrs.__file__)
    assert os.path.exists(os.path.join(package, "py.typed"))
    for thing in (zcqrs.Client, zcqrs.Client.send, zcqrs.Client.send_many, zcqrs.Client.get,
                  zcqrs.Client.list, zcqrs.Subscription, zcqrs.Projection, zcqrs.Node,
                  zcqrs.on, zcqrs.CommandResult, zcqrs.Conflict, zcqrs.Timeout):
        assert inspect.getdoc(thing) and len(inspect.getdoc(thing)) > 40, thing
    hints = inspect.signature(zcqrs.Client.send).parameters
    assert hints["retries"].annotation in (int, "int")


def test_quickstart_runs(tmp_path):
    here = os.path.dirname(os.path.abspath(__file__))
    script = os.path.join(here, "..", "examples", "quickstart.py")
    done = subprocess.run([sys.executable, script], capture_output=True, text=True,
                          timeout=120, cwd=str(tmp_path), env=child_env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "balance" in done.stdout


def test_data_dir_keeps_its_domain(tmp_path):
    """A data dir records its domain: another one is refused unless allowed."""
    counter = os.path.join(os.path.dirname(zcqrs.node.plugin_path("bank")), "counter.so")
    if not os.path.exists(counter):
        pytest.skip("the build's counter plugin is not there")
    data = str(tmp_path / "d")
    with zcqrs.Node(data) as node, node.client() as client:
        client.send("account", "1", "open", {"owner": "d"})
    with pytest.raises(zcqrs.Invalid) as caught:
        zcqrs.Node(data, domain=counter)
    assert "'bank'" in caught.value.message and "'counter'" in caught.value.message
    assert "allow-domain-change" in caught.value.message
    with zcqrs.Node(data, domain=counter, allow_domain_change=True,
                    log_level="error") as node, node.client() as client:
        assert client.send("counter", "c", "add", {"n": 1}).position == 2
    with zcqrs.Node(data, domain=counter):
        pass                                # recorded as the counter's now
    with pytest.raises(zcqrs.Invalid):
        zcqrs.Node(data, log_level="loud")
