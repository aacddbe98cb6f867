"""NoAnswer and ViewNotReady: "is the node there?" and "is the view there yet?"."""

import os
import pickle
import shutil
import subprocess

import pytest

import zcqrs
from conftest import uniq
from test_errors import SilentRouter

SOURCE = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def test_unknown_view(client):
    with pytest.raises(zcqrs.UnknownView) as caught:
        client.get("nosuchview", "x")
    error = caught.value
    assert isinstance(error, zcqrs.ViewNotReady) and isinstance(error, zcqrs.Unknown)
    assert error.code == "unknown" and error.view == "nosuchview"
    assert "nosuchview" in error.message
    for read in (lambda: client.count("nosuchview"), lambda: client.list("nosuchview")):
        with pytest.raises(zcqrs.UnknownView):
            read()
    # other `unknown` replies are not about a view
    with pytest.raises(zcqrs.Unknown) as caught:
        client.list("accounts", "nosuchindex", "x")
    assert not isinstance(caught.value, zcqrs.ViewNotReady)
    with pytest.raises(zcqrs.Unknown) as caught:
        client.send("spaceship", uniq(), "launch", {})
    assert not isinstance(caught.value, zcqrs.ViewNotReady)


def test_view_behind(client):
    head = client.head()
    with pytest.raises(zcqrs.ViewBehind) as caught:
        client.get("accounts", "x", min_position=head + 1_000_000, timeout=0.2)
    error = caught.value
    assert isinstance(error, zcqrs.Timeout) and isinstance(error, zcqrs.ViewNotReady)
    assert not isinstance(error, zcqrs.NoAnswer)
    assert error.code == "timeout" and error.view == "accounts"
    assert isinstance(error.position, int) and error.head >= head
    assert type(pickle.loads(pickle.dumps(error))) is zcqrs.ViewBehind


def test_views_unavailable_from_its_reply():
    """A single node sends it only past 4,096 waiting reads of one client:
    the class is checked on the reply it would send."""
    reply = {"ok": False, "error": "unavailable", "message": "too many queries waiting"}
    error = zcqrs.errors.error_from_reply(reply, "accounts")
    assert type(error) is zcqrs.ViewsUnavailable and error.view == "accounts"
    assert isinstance(error, zcqrs.Unavailable) and isinstance(error, zcqrs.ViewNotReady)
    # the same reply to another request keeps its plain class
    assert type(zcqrs.errors.error_from_reply(reply)) is zcqrs.Unavailable
    invalid = {"ok": False, "error": "invalid", "message": "limit: out of range"}
    assert type(zcqrs.errors.error_from_reply(invalid, "accounts")) is zcqrs.Invalid


def test_no_answer_from_a_silent_or_absent_node():
    router = SilentRouter()
    try:
        with zcqrs.Client(command=router.endpoint, query=router.endpoint) as client:
            with pytest.raises(zcqrs.NoAnswer) as caught:
                client.send("account", "x", "open", {"owner": "a"}, timeout=0.1)
            assert isinstance(caught.value, zcqrs.Timeout) and caught.value.id
            assert router.endpoint in caught.value.message
            with pytest.raises(zcqrs.NoAnswer):
                client.get("accounts", "x", timeout=0.1)
            with pytest.raises(zcqrs.NoAnswer):
                list(client.send_many([("account", "y", "open", {"owner": "a"})], timeout=0.1))
    finally:
        router.close()
    # nobody at all on the port (bound, then closed)
    import zmq
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    sock.close(linger=0)
    with zcqrs.Client(url="tcp://127.0.0.1:%d" % port) as client:
        with pytest.raises(zcqrs.NoAnswer):
            client.health(timeout=0.2)


def test_node_loads_a_plugin_not_linked_with_libzcqrs(tmp_path):
    """Built from the headers alone: its zcq_* symbols come from the libzcqrs
    that Node loaded first (RTLD_GLOBAL)."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    source = os.path.join(SOURCE, "examples", "counter", "counter.c")
    if not compiler or not os.path.exists(source):
        pytest.skip("no C compiler or no examples/counter source")
    plugin = str(tmp_path / "counter.so")
    subprocess.run([compiler, "-I", os.path.join(SOURCE, "engine", "include"), "-shared",
                    "-fPIC", source, "-o", plugin], check=True)
    needed = subprocess.run(["readelf", "-d", plugin], capture_output=True, text=True).stdout
    assert "libzcqrs" not in needed
    with zcqrs.Node(str(tmp_path / "data"), domain=plugin) as node, node.client() as client:
        client.send("counter", "c", "add", {"n": 2})
        result = client.send("counter", "c", "add", {"n": 40})
        assert client.get("counters", "c", min_position=result.position)["total"] == 42
        with pytest.raises(zcqrs.UnknownView):
            client.get("accounts", "x")          # the bank's view: not in this domain


def test_node_names_every_plugin_path_it_tried(tmp_path):
    with pytest.raises(OSError) as caught:
        zcqrs.Node(str(tmp_path / "d"), domain="nosuchdomain")
    assert "nosuchdomain.so" in str(caught.value)
    broken = tmp_path / "broken.so"
    broken.write_text("not an ELF file")
    with pytest.raises(OSError) as caught:
        zcqrs.Node(str(tmp_path / "d"), domain=str(broken))
    assert str(broken) in str(caught.value)
