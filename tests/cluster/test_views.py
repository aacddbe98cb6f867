"""Cluster-wide views (cluster.md section 5): three groups, each led by one
zcqrsd on loopback, and a views node (`--role views`). Commands go to the
node of their stream's group (slots computed here: CRC16-XMODEM with hash
tags, the even map of `cluster create`); every node's views then hold every
group's accounts, with `positions`/`heads` per group and read-your-writes
through `min_positions`.

No test sleeps for a fixed time: waits are queries with `min_positions` and
`timeout_ms`, or polls of a condition with a deadline.
"""

import itertools
import os
import time

import msgpack
import pytest
import zmq

from conftest import cli, group_of, wait_for

GROUPS = 3
TIMEOUT = 20.0


def keys_of(group, count, prefix):
    found = []
    for index in itertools.count():
        key = "%s-%d" % (prefix, index)
        if group_of("account/" + key) == group:
            found.append(key)
            if len(found) == count:
                return found


class Endpoint:
    """One DEALER, one request at a time, correlated by id or rid."""

    _seq = itertools.count(1)

    def __init__(self, context, endpoint):
        self.sock = context.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def call(self, body, key, timeout=TIMEOUT):
        body = dict(body)
        body.setdefault(key, "r-%d" % next(self._seq))
        self.sock.send(msgpack.packb(body, use_bin_type=True))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sock.poll(int(left * 1000)):
                raise AssertionError("no reply to %r" % (body,))
            reply = msgpack.unpackb(self.sock.recv(), raw=False)
            if reply.get(key) == body[key]:
                return reply


class Client:
    def __init__(self, context, node):
        self.node = node
        self.commands = Endpoint(context, node.endpoints["command"])
        self.queries = Endpoint(context, node.endpoints["query"])

    def command(self, key, type, data):
        return self.commands.call({"aggregate": "account", "key": key, "type": type,
                                   "data": data}, "id")

    def query(self, **body):
        return self.queries.call(body, "rid")


@pytest.fixture
def context():
    ctx = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def start_cluster(connect, nodes, extra=(), views_node=True):
    done = cli("cluster", "create", "--zk", connect, "--groups", str(GROUPS))
    assert done.returncode == 0, done.stderr
    started = [nodes.make(connect, "n%d" % group, group, extra).start() for group in range(GROUPS)]
    if views_node:
        started.append(nodes.make(connect, "v0", None, extra).start())
    for node in started:
        node.wait_ready()
    return started


def command_ok(client, key, type, data):
    """Send until the node leads its group (it starts as a follower)."""
    def sent():
        reply = client.command(key, type, data)
        if reply.get("error") == "unavailable":
            return None
        return reply
    reply = wait_for(sent, TIMEOUT, "%s to take commands" % client.node.node)
    assert reply["ok"], reply
    return reply


def write_accounts(clients, session, prefix, per_group=3, amount=10):
    """Open and fund per_group accounts in each group through its own node;
    returns {key: balance} and raises session to the replies' positions."""
    balances = {}
    for group in range(GROUPS):
        client = clients[group]
        for index, key in enumerate(keys_of(group, per_group, prefix)):
            command_ok(client, key, "open", {"owner": "o%d" % group})
            reply = command_ok(client, key, "deposit", {"amount": amount + index})
            balances[key] = amount + index
            name = str(group)
            session[name] = max(session.get(name, 0), reply["position"])
    return balances


def check_reply_positions(reply, groups=GROUPS):
    assert sorted(reply["positions"]) == [str(g) for g in range(groups)]
    assert sorted(reply["heads"]) == [str(g) for g in range(groups)]
    assert reply["position"] == sum(reply["positions"].values())
    assert reply["head"] == sum(reply["heads"].values())
    for group, position in reply["positions"].items():
        assert reply["heads"][group] >= position


def converged(client, session, balances):
    """The node's views hold every group's accounts once they reach session."""
    totals = client.query(op="get", view="totals", key="bank", min_positions=session,
                          timeout_ms=int(TIMEOUT * 1000))
    assert totals["ok"], totals
    check_reply_positions(totals)
    for group, position in session.items():
        assert totals["positions"][group] >= position, (client.node.node, totals)
    row = totals["row"]
    assert row["accounts"] == len(balances), (client.node.node, row)
    assert row["balance"] == sum(balances.values()), (client.node.node, row)
    rows = []
    after = None
    while True:
        page = client.query(op="list", view="accounts", after=after, limit=1000,
                            min_positions=session, timeout_ms=int(TIMEOUT * 1000))
        assert page["ok"], page
        check_reply_positions(page)
        rows += page["rows"]
        after = page["next"]
        if after is None:
            break
    assert {r["key"]: r["balance"] for r in rows} == balances
    return totals


def test_views_follow_every_group(cluster_path, nodes, context):
    path, connect = cluster_path
    started = start_cluster(connect, nodes)
    clients = [Client(context, node) for node in started]
    session = {}
    balances = write_accounts(clients, session, "acct")
    assert sorted(session) == ["0", "1", "2"]
    # every node, the views node too, answers for every group
    for client in clients:
        converged(client, session, balances)
    # views lists positions per group
    for client in clients:
        views = client.query(op="views")
        assert views["ok"]
        for view in views["views"]:
            assert sorted(view["positions"]) == ["0", "1", "2"]
            assert view["position"] == sum(view["positions"].values())
    # min_position with group waits for that group's position
    reply = clients[0].query(op="count", view="accounts", min_position=session["2"], group=2,
                             timeout_ms=int(TIMEOUT * 1000))
    assert reply["ok"] and reply["positions"]["2"] >= session["2"]
    # min_position alone is on the sum of the positions
    total = sum(session.values())
    reply = clients[1].query(op="count", view="accounts", min_position=total,
                             timeout_ms=int(TIMEOUT * 1000))
    assert reply["ok"] and reply["position"] >= total
    # a position that does not come: timeout, with the positions
    reply = clients[0].query(op="get", view="totals", key="bank",
                             min_positions={"1": 10 ** 9}, timeout_ms=100)
    assert reply["error"] == "timeout"
    check_reply_positions(reply)
    # bad waits are invalid
    for bad in ({"min_positions": {"3": 1}}, {"min_positions": {"x": 1}},
                {"min_positions": {"01": 1}}, {"min_positions": {"0": -1}},
                {"min_positions": {"0": "1"}}, {"min_positions": [1, 2]},
                {"min_positions": {1: 1}}, {"group": 3, "min_position": 1},
                {"group": "0", "min_position": 1}):
        reply = clients[0].query(op="get", view="totals", key="bank", **bad)
        assert reply.get("error") == "invalid", (bad, reply)
    # the views node takes no command into a log of its own: it forwards
    # to the group's leader, whose reply names that group and node
    key = keys_of(1, 1, "through-views")[0]
    reply = clients[3].command(key, "open", {"owner": "x"})
    assert reply["ok"] is True and reply["group"] == 1, reply
    assert reply["node"] == started[1].node
    health = clients[3].query(op="health")
    assert health["head"] == 0 and health["role"] == "views"


def snapshot_files(node):
    directory = os.path.join(node.data, "views")
    if not os.path.isdir(directory):
        return {}
    found = {}
    for name in os.listdir(directory):
        if name.endswith(".snap"):
            with open(os.path.join(directory, name), "rb") as f:
                found[name] = f.read(8)
    return found


def test_snapshot_restart_and_a_dead_group(cluster_path, nodes, context):
    path, connect = cluster_path
    started = start_cluster(connect, nodes, extra=["--view-snapshot-every", "4"],
                            views_node=False)
    clients = [Client(context, node) for node in started]
    session = {}
    balances = write_accounts(clients, session, "snap")
    for client in clients:
        converged(client, session, balances)
    # a clean stop snapshots the views with every group's position
    started[0].stop()
    snaps = snapshot_files(started[0])
    assert sorted(snaps) == ["accounts.snap", "totals.snap"]
    assert set(snaps.values()) == {b"ZCQVIEW2"}
    # the other groups move on while n0 is down
    for group in (1, 2):
        for key in keys_of(group, 2, "while-down"):
            command_ok(clients[group], key, "open", {"owner": "w"})
            reply = command_ok(clients[group], key, "deposit", {"amount": 5})
            balances[key] = 5
            session[str(group)] = max(session[str(group)], reply["position"])
    started[0].start().wait_ready()
    clients[0] = Client(context, started[0])
    converged(clients[0], session, balances)
    log = started[0].log()
    assert "from its snapshot" in log, log
    assert "rebuilding from the log" not in log, log
    # kill group 2's node: the others keep advancing and answering
    started[2].kill()
    before = clients[0].query(op="get", view="totals", key="bank")["positions"]["2"]
    for group in (0, 1):
        for key in keys_of(group, 2, "after-kill"):
            command_ok(clients[group], key, "open", {"owner": "k"})
            reply = command_ok(clients[group], key, "deposit", {"amount": 7})
            balances[key] = 7
            session[str(group)] = max(session[str(group)], reply["position"])
    wanted = {"0": session["0"], "1": session["1"]}
    for client in clients[:2]:
        reply = client.query(op="get", view="totals", key="bank", min_positions=wanted,
                             timeout_ms=int(TIMEOUT * 1000) - 2000)
        assert reply["ok"], reply
        check_reply_positions(reply)
        assert reply["positions"]["2"] == before
        assert reply["row"]["balance"] == sum(balances.values())
        # a wait on the dead group times out; the others were answered
        reply = client.query(op="get", view="totals", key="bank", group=2,
                             min_position=before + 1, timeout_ms=200)
        assert reply["error"] == "timeout"
