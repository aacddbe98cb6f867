"""Where a Client connects: no arguments, url=, explicit endpoints, the environment."""

import random

import pytest

import zcqrs
from conftest import uniq

DEFAULTS = {"command": "tcp://127.0.0.1:7400", "events": "tcp://127.0.0.1:7401",
            "query": "tcp://127.0.0.1:7402"}
ENV = ("ZCQRS_URL", "ZCQRS_COMMAND", "ZCQRS_QUERY", "ZCQRS_EVENTS")


@pytest.fixture
def env(monkeypatch):
    """A clean environment: none of the ZCQRS_ variables set."""
    for name in ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def endpoints_of(client):
    return {"command": client.command, "events": client.events, "query": client.query}


def node_on_consecutive_ports(tmp_path):
    """An embedded node on PORT, PORT+1, PORT+2 (drawn from 17400-18999) and its url."""
    last = None
    for attempt in range(20):
        base = random.randrange(17400, 18997)
        url = "tcp://127.0.0.1:%d" % base
        try:
            node = zcqrs.Node(str(tmp_path / ("n%d" % attempt)),
                              endpoints=zcqrs.endpoints_from_url(url))
        except zcqrs.Error as error:       # a port was taken: draw again
            last = error
            continue
        return node, url
    raise AssertionError("no three free consecutive ports: %s" % last)


def test_no_arguments_means_the_cli_defaults(env):
    with zcqrs.Client() as client:         # connects in the background, sends nothing
        assert endpoints_of(client) == DEFAULTS


def test_url_names_three_consecutive_ports():
    assert zcqrs.endpoints_from_url("tcp://10.0.0.5:9000") == {
        "command": "tcp://10.0.0.5:9000", "events": "tcp://10.0.0.5:9001",
        "query": "tcp://10.0.0.5:9002"}
    assert zcqrs.endpoints_from_url("db.example:7400") == {
        "command": "tcp://db.example:7400", "events": "tcp://db.example:7401",
        "query": "tcp://db.example:7402"}
    assert zcqrs.endpoints_from_url("tcp://[::1]:7400")["query"] == "tcp://[::1]:7402"
    for bad in ("tcp://host", "tcp://:7400", "tcp://host:port", "tcp://host:65534",
                "tcp://host:0", "ipc:///tmp/x", "", "tcp://h:74a0"):
        with pytest.raises(ValueError) as caught:
            zcqrs.endpoints_from_url(bad)
        assert "HOST:PORT" in str(caught.value)


def test_environment_precedence():
    assert zcqrs.default_endpoints({}) == DEFAULTS
    from_url = zcqrs.default_endpoints({"ZCQRS_URL": "tcp://h:8000"})
    assert from_url == {"command": "tcp://h:8000", "events": "tcp://h:8001",
                        "query": "tcp://h:8002"}
    mixed = zcqrs.default_endpoints({"ZCQRS_URL": "tcp://h:8000", "ZCQRS_QUERY": "tcp://q:1",
                                     "ZCQRS_EVENTS": ""})
    assert mixed == dict(from_url, query="tcp://q:1")      # an empty variable is unset
    assert zcqrs.default_endpoints({"ZCQRS_COMMAND": "ipc:///tmp/c"}) == dict(
        DEFAULTS, command="ipc:///tmp/c")
    with pytest.raises(ValueError) as caught:
        zcqrs.default_endpoints({"ZCQRS_URL": "nonsense"})
    assert "ZCQRS_URL" in str(caught.value)


def test_explicit_arguments_win(env):
    env.setenv("ZCQRS_URL", "tcp://from-env:9000")
    with zcqrs.Client(url="tcp://h:8000", query="tcp://q:1") as client:
        assert endpoints_of(client) == {"command": "tcp://h:8000", "events": "tcp://h:8001",
                                        "query": "tcp://q:1"}
    # one endpoint given: nothing from the environment, the others unused
    with zcqrs.Client(query="tcp://q:1") as client:
        assert endpoints_of(client) == {"command": None, "events": None, "query": "tcp://q:1"}
        with pytest.raises(ValueError):
            client.send("account", "x", "open", {"owner": "a"})
    with pytest.raises(ValueError):
        zcqrs.Client(url="tcp://nowhere")


def test_client_from_zcqrs_url_reaches_the_node(env, tmp_path):
    node, url = node_on_consecutive_ports(tmp_path)
    with node:
        env.setenv("ZCQRS_URL", url)
        with zcqrs.Client() as client:
            assert endpoints_of(client) == node.endpoints
            key = uniq()
            result = client.send("account", key, "open", {"owner": "env"})
            assert client.get("accounts", key, min_position=result.position)["owner"] == "env"
        with zcqrs.Client(url=url) as client:
            assert client.head() == result.position


def test_client_from_endpoint_variables(env, embedded):
    for name, endpoint in embedded.endpoints.items():
        env.setenv("ZCQRS_" + name.upper(), endpoint)
    env.setenv("ZCQRS_URL", "tcp://127.0.0.1:1")          # each variable wins over it
    with zcqrs.Client() as client:
        assert endpoints_of(client) == embedded.endpoints
        assert client.send("account", uniq(), "open", {"owner": "v"}).version == 1


def test_node_client_and_cluster_client_ignore_the_environment(env, embedded):
    env.setenv("ZCQRS_URL", "tcp://127.0.0.1:1")
    env.setenv("ZCQRS_COMMAND", "tcp://127.0.0.1:2")
    with embedded.client() as client:
        assert endpoints_of(client) == embedded.endpoints
        assert client.send("account", uniq(), "open", {"owner": "n"}).version == 1
    # a ClusterClient asks its seed (a plain node here: not in a cluster), not
    # the node the environment names
    with pytest.raises(zcqrs.Unavailable) as caught:
        zcqrs.ClusterClient([embedded.query], timeout=5)
    assert embedded.query in caught.value.message
    assert "not in a cluster" in caught.value.message
    assert "127.0.0.1:1" not in caught.value.message.replace(embedded.query, "")
