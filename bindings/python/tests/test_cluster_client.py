"""zcqrs.ClusterClient against scripted nodes: the routing rules exactly.

A scripted node is a ROUTER pair on loopback run by a thread: its query
endpoint answers the `cluster` op with a map the test chose (and view
reads with a canned row), its command endpoint answers as the test's
function says. They record every request, so a test can count attempts
and look at the keys the client sent. The same client against real
clustered nodes is tested in tests/cluster/test_client.py.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List, Optional

import msgpack
import pytest
import zmq

import zcqrs
from zcqrs.cluster import ClusterMap, hash_part


class Scripted:
    """A fake cluster node: answers from functions, records what it got."""

    def __init__(self, name: str, cluster: Callable[[], Dict[str, Any]],
                 command: Callable[[Dict[str, Any]], Dict[str, Any]],
                 view: Optional[Callable[[Dict[str, Any]], Dict[str, Any]]] = None) -> None:
        self.name = name
        self.cluster, self.command, self.view = cluster, command, view
        self.context = zmq.Context.instance()
        self.query_sock = self.context.socket(zmq.ROUTER)
        self.command_sock = self.context.socket(zmq.ROUTER)
        for sock in (self.query_sock, self.command_sock):
            sock.setsockopt(zmq.LINGER, 0)
        self.query_sock.bind("tcp://127.0.0.1:*")
        self.command_sock.bind("tcp://127.0.0.1:*")
        self.query = self.query_sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.command_endpoint = self.command_sock.getsockopt_string(zmq.LAST_ENDPOINT)
        self.commands: List[Dict[str, Any]] = []
        self.queries: List[Dict[str, Any]] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def registration(self, group: int) -> Dict[str, Any]:
        return {"node": self.name, "group": group, "role": "replica",
                "command": self.command_endpoint, "events": "tcp://127.0.0.1:1",
                "query": self.query, "replication": None}

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self.query_sock, zmq.POLLIN)
        poller.register(self.command_sock, zmq.POLLIN)
        while not self.stopping.is_set():
            for sock, _ in poller.poll(50):
                frames = sock.recv_multipart()
                request = msgpack.unpackb(frames[-1], raw=False)
                if sock is self.command_sock:
                    self.commands.append(request)
                    reply = self.command(request)
                else:
                    self.queries.append(request)
                    if request.get("op") == "cluster":
                        reply = dict(self.cluster(), ok=True)
                    else:
                        reply = dict(self.view(request) if self.view else {}, ok=True)
                    reply["rid"] = request.get("rid")
                sock.send_multipart(frames[:-1] + [msgpack.packb(reply, use_bin_type=True)])

    def __enter__(self) -> "Scripted":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        self.thread.join()
        self.query_sock.close()
        self.command_sock.close()


def document(version: int, leader: Optional[str], nodes: List[Dict[str, Any]],
             groups: int = 1) -> Dict[str, Any]:
    per = 16384 // groups
    ranges = [[g * per, (g + 1) * per - 1 if g < groups - 1 else 16383, g]
              for g in range(groups)]
    return {"id": "c0ffee", "slots": 16384, "map_version": version, "map": ranges,
            "groups": [{"group": g, "epoch": 1, "leader": leader if g == 0 else None,
                        "isr": [], "hw": 0, "replicas": []} for g in range(groups)],
            "nodes": nodes}


def accepted(node: str, group: int = 0) -> Callable[[Dict[str, Any]], Dict[str, Any]]:
    counter = iter(range(1, 1 << 30))

    def answer(request: Dict[str, Any]) -> Dict[str, Any]:
        return {"id": request["id"], "ok": True,
                "stream": request["aggregate"] + "/" + request["key"], "version": 1,
                "position": next(counter), "events": 1, "group": group, "node": node}
    return answer


def test_slots_as_redis_cluster():
    assert zcqrs.crc16(b"123456789") == 0x31C3
    assert hash_part(b"account/{ann}-savings") == b"ann"
    assert hash_part(b"account/{}x") == b"account/{}x"        # empty tag: whole name
    assert hash_part(b"account/x}{y") == b"account/x}{y"      # no } after the {
    assert zcqrs.slot_of("account/{ann}-savings") == zcqrs.slot_of("account/{ann}-checking")
    assert all(0 <= zcqrs.slot_of("account/%d" % i) < 16384 for i in range(100))
    cmap = ClusterMap(document(1, None, [], groups=3))
    assert cmap.group_of_slot(0) == 0 and cmap.group_of_slot(16383) == 2
    assert cmap.group_of_slot(16384 // 3) == 1


def test_unavailable_with_owner_refreshes_and_retries_with_the_same_id():
    """Node A answers `unavailable` naming B; the refreshed map says B leads."""
    state = {"leader": "a"}
    nodes: List[Scripted] = []

    def cluster() -> Dict[str, Any]:
        version = 1 if state["leader"] == "a" else 2
        return document(version, state["leader"], [n.registration(0) for n in nodes])

    def a_refuses(request: Dict[str, Any]) -> Dict[str, Any]:
        state["leader"] = "b"       # leadership moved while the client held the map
        return {"id": request["id"], "ok": False, "error": "unavailable",
                "message": "not the leader", "group": 0, "reason": "forwarding_failed",
                "owner": nodes[1].command_endpoint}

    with Scripted("a", cluster, a_refuses) as a, Scripted("b", cluster, accepted("b")) as b:
        nodes += [a, b]
        with zcqrs.Client.connect_cluster([a.query], timeout=5) as client:
            assert client.map.version == 1
            result = client.send("account", "1", "open", {"owner": "o"}, id="cmd-1")
            assert result.node == "b" and result.group == 0
            assert client.map.version == 2
            assert [c["id"] for c in a.commands] == ["cmd-1"]
            assert [c["id"] for c in b.commands] == ["cmd-1"]
            assert client.counters["redirects"] == 1
            assert client.session == {0: result.position}


def test_redirects_are_bounded():
    """A node that always says `unavailable` gets 1 + redirects attempts, no more."""
    nodes: List[Scripted] = []

    def cluster() -> Dict[str, Any]:
        return document(1, "a", [n.registration(0) for n in nodes])

    def refuse(request: Dict[str, Any]) -> Dict[str, Any]:
        return {"id": request["id"], "ok": False, "error": "unavailable", "message": "busy",
                "group": 0, "reason": "overloaded", "owner": nodes[0].command_endpoint}

    with Scripted("a", cluster, refuse) as a:
        nodes.append(a)
        with zcqrs.ClusterClient(a.query, redirects=3) as client:
            with pytest.raises(zcqrs.Unavailable) as raised:
                client.send("account", "1", "open", {"owner": "o"}, id="cmd-x")
            assert raised.value.reply["reason"] == "overloaded"
            assert raised.value.id == "cmd-x"
            assert [c["id"] for c in a.commands] == ["cmd-x"] * 4
            # and a batch: every command fails on its own, each tried 1 + 1 times
            outcomes = list(client.send_many([("account", str(i), "open", {"owner": "o"})
                                              for i in range(5)], redirects=1))
            assert all(isinstance(o, zcqrs.Unavailable) for o in outcomes)
            assert len(a.commands) == 4 + 5 * 2


def test_an_unreachable_leader_ends_in_a_bounded_error():
    """The map names a command endpoint nobody listens on."""
    nodes: List[Scripted] = []
    context = zmq.Context.instance()
    hole = context.socket(zmq.ROUTER)
    port = hole.bind_to_random_port("tcp://127.0.0.1")
    hole.close(linger=0)        # now nobody listens there

    def cluster() -> Dict[str, Any]:
        registration = nodes[0].registration(0)
        registration["command"] = "tcp://127.0.0.1:%d" % port
        return document(1, "a", [registration])

    with Scripted("a", cluster, accepted("a")) as a:
        nodes.append(a)
        with zcqrs.ClusterClient(a.query, redirects=2, connect_timeout=0.2) as client:
            with pytest.raises(zcqrs.Unavailable) as raised:
                client.send("account", "1", "open", {"owner": "o"})
            assert raised.value.reply["reason"] == "unreachable"
            assert client.counters["sent"] == 3 and client.counters["unreachable"] == 3
            assert client.counters["refreshes"] >= 2


def test_reads_wait_for_the_session():
    """after= and session= become min_positions (and min_position + group for one group)."""
    nodes: List[Scripted] = []
    positions = {"0": 7, "1": 9, "2": 3}

    def cluster() -> Dict[str, Any]:
        return document(1, "a", [n.registration(0) for n in nodes], groups=3)

    def view(request: Dict[str, Any]) -> Dict[str, Any]:
        return {"row": {"key": request.get("key")}, "count": 1, "position": 19, "head": 19,
                "positions": positions, "heads": positions}

    with Scripted("a", cluster, accepted("a"), view) as a:
        nodes.append(a)
        with zcqrs.ClusterClient(a.query) as client:
            one = zcqrs.CommandResult("i1", "account/1", 1, 7, 1, False, 0, "a")
            other = zcqrs.CommandResult("i2", "account/2", 1, 9, 1, False, 1, "b")
            assert client.get("accounts", "1", after=one) == {"key": "1"}
            request = a.queries[-1]
            assert request["min_positions"] == {"0": 7}
            assert request["min_position"] == 7 and request["group"] == 0
            client.get("accounts", "2", after=[one, other])
            request = a.queries[-1]
            assert request["min_positions"] == {"0": 7, "1": 9}
            assert "min_position" not in request
            assert client.cluster_wide is True
            client.session.update({0: 5, 2: 3})
            client.count("accounts", session=True, after=other)
            assert a.queries[-1]["min_positions"] == {"0": 5, "1": 9, "2": 3}


def test_a_result_carries_the_decision_s_reply_fields():
    """Fields beyond the protocol's (the bank's `balance`) reach result.reply,
    from send and from send_many; the cluster's own group and node do not."""
    nodes: List[Scripted] = []

    def cluster() -> Dict[str, Any]:
        return document(1, "a", [n.registration(0) for n in nodes])

    def deposited(request: Dict[str, Any]) -> Dict[str, Any]:
        return dict(accepted("a")(request), balance=request["data"]["amount"] * 2)

    with Scripted("a", cluster, deposited) as a:
        nodes.append(a)
        with zcqrs.ClusterClient(a.query) as client:
            result = client.send("account", "1", "deposit", {"amount": 21})
            assert result.reply == {"balance": 42}
            assert (result.group, result.node) == (0, "a")
            outcomes = list(client.send_many([("account", "2", "deposit", {"amount": 1}),
                                              ("account", "3", "deposit", {"amount": 2})]))
            assert [o.reply["balance"] for o in outcomes] == [2, 4]
