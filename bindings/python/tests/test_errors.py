"""Every exception type, provoked for real where a node can produce it."""

import pickle
import threading

import msgpack
import pytest
import zmq

import zcqrs
from conftest import uniq, wait_for

ALL = [zcqrs.Invalid, zcqrs.Unknown, zcqrs.Rejected, zcqrs.Conflict, zcqrs.Timeout,
       zcqrs.Unavailable, zcqrs.Denied, zcqrs.InternalError]


def check(error, cls, code):
    assert type(error) is cls and isinstance(error, zcqrs.Error)
    assert error.code == code
    assert isinstance(error.message, str) and error.message.strip()
    assert error.reply.get("ok", False) is False
    assert code in str(error)


def test_rejected(client):
    key = uniq()
    opened = client.send("account", key, "open", {"owner": "a"})
    with pytest.raises(zcqrs.Rejected) as caught:
        client.send("account", key, "open", {"owner": "a"})
    check(caught.value, zcqrs.Rejected, "rejected")
    assert caught.value.id and caught.value.id != opened.id
    with pytest.raises(zcqrs.Rejected):
        client.send("account", key, "withdraw", {"amount": 1})       # no overdraft
    with pytest.raises(zcqrs.Rejected):
        client.send("account", uniq(), "deposit", {"amount": 1})     # never opened


def test_conflict_carries_the_version(client):
    key = uniq()
    client.send("account", key, "open", {"owner": "a"})
    client.send("account", key, "deposit", {"amount": 3})
    with pytest.raises(zcqrs.Conflict) as caught:
        client.send("account", key, "deposit", {"amount": 3}, expect=1)
    check(caught.value, zcqrs.Conflict, "conflict")
    assert caught.value.version == 2


def test_invalid(client):
    key = uniq()
    client.send("account", key, "open", {"owner": "a"})
    for data in ({"amount": 0}, {"amount": "ten"}, {}, None):
        with pytest.raises(zcqrs.Invalid) as caught:
            client.send("account", key, "deposit", data)
        check(caught.value, zcqrs.Invalid, "invalid")
    with pytest.raises(zcqrs.Invalid):
        client.send("Account!", key, "open", {"owner": "a"})         # bad aggregate name
    with pytest.raises(zcqrs.Invalid):
        client.send("account", "a/b", "open", {"owner": "a"})        # '/' in a key
    with pytest.raises(zcqrs.Invalid):
        client.read(0)                                              # positions start at 1
    with pytest.raises(zcqrs.Invalid):
        client.list_page("accounts", limit=0)


def test_unknown(client):
    with pytest.raises(zcqrs.Unknown) as caught:
        client.send("spaceship", uniq(), "launch", {})
    check(caught.value, zcqrs.Unknown, "unknown")
    with pytest.raises(zcqrs.Unknown):
        client.send("account", uniq(), "teleport", {})
    with pytest.raises(zcqrs.Unknown):
        client.get("nosuchview", "x")
    with pytest.raises(zcqrs.Unknown):
        client.list("accounts", "nosuchindex", "x")     # raised at once, not on iteration
    with pytest.raises(zcqrs.Unknown):
        client.call({"op": "nosuchop"})
    with pytest.raises(zcqrs.Unknown):
        client.rebuild("nosuchview")


def test_timeout_from_the_node_has_position_and_head(client):
    head = client.head()
    with pytest.raises(zcqrs.Timeout) as caught:
        client.get("accounts", "x", min_position=head + 1_000_000, timeout=0.2)
    check(caught.value, zcqrs.ViewBehind, "timeout")      # a Timeout, of a view read
    assert isinstance(caught.value.position, int) and isinstance(caught.value.head, int)
    assert caught.value.head >= head
    with pytest.raises(zcqrs.Timeout):
        client.count("accounts", min_position=head + 1_000_000, timeout=0.1)


class SilentRouter:
    """A ROUTER that answers the n-th copy of each command only (or never)."""

    def __init__(self, answer_attempt=None):
        self.context = zmq.Context.instance()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = "tcp://127.0.0.1:%d" % port
        self.answer_attempt = answer_attempt
        self.seen = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            if not self.socket.poll(20):
                continue
            identity, body = self.socket.recv_multipart()
            request = msgpack.unpackb(body)
            if "id" not in request:
                continue                        # a query: never answered
            self.seen.append(request["id"])
            if self.answer_attempt and self.seen.count(request["id"]) == self.answer_attempt:
                reply = {"id": request["id"], "ok": True, "stream": "account/x", "version": 1,
                         "position": 1, "events": 1, "duplicate": False}
                self.socket.send_multipart([identity, msgpack.packb(reply)])

    def close(self):
        self.stop.set()
        self.thread.join()
        self.socket.close()


def test_timeout_on_the_client_side():
    router = SilentRouter()
    try:
        with zcqrs.Client(command=router.endpoint, query=router.endpoint) as client:
            with pytest.raises(zcqrs.Timeout) as caught:
                client.send("account", "x", "open", {"owner": "a"}, timeout=0.1, retries=2)
            assert caught.value.position is None and caught.value.head is None
            command_id = caught.value.id
            wait_for(lambda: router.seen.count(command_id) == 3, timeout=5,
                     what="three copies of one command id")
            assert set(router.seen) == {command_id}
            with pytest.raises(zcqrs.Timeout):
                client.health(timeout=0.1)
    finally:
        router.close()


def test_retries_resend_the_same_id():
    router = SilentRouter(answer_attempt=3)
    try:
        with zcqrs.Client(command=router.endpoint) as client:
            result = client.send("account", "x", "open", {"owner": "a"}, timeout=0.2, retries=5)
            assert router.seen == [result.id] * 3
    finally:
        router.close()


def test_unavailable_when_overloaded(tmp_path):
    """max-inflight (16 at least) below send_many's window: the node sheds load."""
    with zcqrs.Node(str(tmp_path / "small"), max_inflight=16, shards=1) as node, \
            node.client() as client:
        keys = [uniq() for _ in range(400)]
        opened = list(client.send_many((("account", k, "open", {"owner": "u"}) for k in keys),
                                       window=400))
        unavailable = [o for o in opened if isinstance(o, zcqrs.Unavailable)]
        if not unavailable:
            pytest.skip("the node kept up with 400 commands in flight: no unavailable")
        check(unavailable[0], zcqrs.Unavailable, "unavailable")
        assert all(isinstance(o, (zcqrs.CommandResult, zcqrs.Unavailable)) for o in opened)
        # with retries, send_many backs off (smaller window) and gets every one in
        again = list(client.send_many((("account", k, "open", {"owner": "u"}) for k in keys),
                                      window=400, retries=50))
        for before, after in zip(opened, again):
            if isinstance(before, zcqrs.CommandResult):
                assert isinstance(after, zcqrs.Rejected)       # opened already
            else:
                assert isinstance(after, zcqrs.CommandResult), after
        assert client.count("accounts", min_position=node.head) == 400


def test_node_errors_from_the_library(tmp_path):
    with pytest.raises(zcqrs.Unknown):
        zcqrs.Node(str(tmp_path / "a"), no_such_setting=1)
    with pytest.raises(zcqrs.Invalid):
        zcqrs.Node(str(tmp_path / "b"), durability="sometimes")
    afile = tmp_path / "file"
    afile.write_text("not a directory")
    with pytest.raises(zcqrs.InternalError) as caught:
        zcqrs.Node(str(afile))
    assert "not a directory" in caught.value.message


def test_denied_and_internal_class_mapping():
    """Nodes do not send `denied` yet (no authentication); `internal` needs a storage failure."""
    for cls in ALL:
        reply = {"ok": False, "error": cls.code, "message": "because", "id": "c1"}
        error = zcqrs.errors.error_from_reply(reply)
        assert type(error) is cls and error.message == "because" and error.id == "c1"
        assert type(pickle.loads(pickle.dumps(error))) is cls
    future = zcqrs.errors.error_from_reply({"ok": False, "error": "quota", "message": "m"})
    assert type(future) is zcqrs.Error and future.code == "quota"
    assert issubclass(zcqrs.Denied, zcqrs.Error) and zcqrs.Denied.code == "denied"
    assert zcqrs.InternalError.code == "internal"
