"""ZooKeeper away, then back (issue: nodes keep serving what they can and
recover without a restart of theirs).

A private ZooKeeper of its own (the session's shared one must stay up for
the other tests). Two groups, one node each:

- ZooKeeper stopped: queries keep being answered by every node; once a
  leader's lease is older than two thirds of the session timeout it stops
  deciding commands (cluster.md 6.5), so a command gets `unavailable`
  rather than being decided by a node that may have lost its group.
- ZooKeeper started again (same data, same port): without any node being
  restarted, each group is led again, at a new epoch, and every command
  acknowledged before the outage is still in its group's log.
"""

import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import SESSION_MS, ZK_SH, cli, free_port_block, wait_for
from test_forwarding import Client, command, keys_per_group

GROUPS = 2


@pytest.fixture
def own_zookeeper():
    if shutil.which("java") is None or not os.path.exists("/usr/share/java/zookeeper.jar"):
        pytest.skip("no java or no /usr/share/java/zookeeper.jar")
    directory = tempfile.mkdtemp(prefix="zcq-zk-outage-")
    port = free_port_block(1)

    def start():
        done = subprocess.run(["bash", ZK_SH, "start", directory, str(port)],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def stop():
        subprocess.run(["bash", ZK_SH, "stop", directory], timeout=60, check=True)

    hosts = start()
    yield hosts, start, stop
    subprocess.run(["bash", ZK_SH, "stop", directory], timeout=60)
    shutil.rmtree(directory, ignore_errors=True)


def test_zookeeper_away_and_back(own_zookeeper, nodes):
    hosts, start, stop = own_zookeeper
    connect = hosts + "/zcqrs-outage"
    done = cli("cluster", "create", "--zk", connect, "--groups", str(GROUPS))
    assert done.returncode == 0, done.stderr
    started = [nodes.make(connect, "o%d" % group, group).start() for group in range(GROUPS)]
    for node in started:
        node.wait_ready()
    client = Client()
    try:
        def led(node):
            health = client.call(node.endpoints["query"], {"op": "health"})
            return health if health.get("role") == "leader" else None
        epochs = [wait_for(lambda n=n: led(n), 30, "%s leads" % n.node)["epoch"]
                  for n in started]
        keys = keys_per_group(3, GROUPS)
        acknowledged = {}
        for group in range(GROUPS):
            key = keys[group][0]
            reply = client.call(started[group].endpoints["command"],
                                command("before-" + key, key, "open", {"owner": "o"}))
            assert reply["ok"], reply
            acknowledged["before-" + key] = reply

        stop()
        # queries are answered throughout; commands stop being decided
        # once the lease is too old to trust
        for node in started:
            health = client.call(node.endpoints["query"], {"op": "health"})
            assert health["ok"], health

        def fenced():
            key = keys[0][1]
            reply = client.call(started[0].endpoints["command"],
                                command("during-" + key, key, "open", {"owner": "o"}))
            if reply.get("ok"):
                acknowledged["during-" + key] = reply
                return None
            return reply
        reply = wait_for(fenced, SESSION_MS / 1000 * 3, "the leader fenced")
        assert reply["error"] == "unavailable" and reply["reason"] == "no_leader", reply
        for node in started:
            assert client.call(node.endpoints["query"],
                               {"op": "get", "view": "totals", "key": "bank"})["ok"]

        start()
        # no node restarted: each group is led again, at a new epoch
        for group, node in enumerate(started):
            health = wait_for(lambda n=node: led(n), 60, "%s leads again" % node.node)
            assert health["epoch"] > epochs[group], (health, epochs)
            assert node.process.poll() is None
        for group in range(GROUPS):
            key = keys[group][2]
            reply = client.call(started[(group + 1) % GROUPS].endpoints["command"],
                                command("after-" + key, key, "open", {"owner": "o"}))
            assert reply["ok"] and reply["group"] == group, reply
            acknowledged["after-" + key] = reply
        for group, node in enumerate(started):
            events = client.call(node.endpoints["query"],
                                 {"op": "read", "from": 1, "limit": 10000})["events"]
            positions = {}
            for event in events:
                positions.setdefault(event["command"], []).append(event["position"])
            for cid, ack in acknowledged.items():
                if ack["group"] == group:
                    assert positions.get(cid) == [ack["position"]], (cid, ack)
    finally:
        client.close()
