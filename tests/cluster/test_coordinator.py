"""zcqrsd --cluster: registration, the view in ZooKeeper, and the election
of cluster.md 6.3 for one replica per group, checked from outside with
kazoo.

A second process with the node id of a live one waits for the id's
registration to go (it may be a dead process's, which ZooKeeper removes
within a session timeout), at most twice the session timeout, then fails
to start (exit 2): two live processes never share a node id.
"""

import json
import subprocess

import pytest

from conftest import SESSION_MS, START_TIMEOUT, cli, wait_for

GROUPS = 3


def group_state(kazoo, path, group):
    return json.loads(kazoo.get("%s/groups/%d" % (path, group))[0])


def registration(kazoo, path, node):
    found = kazoo.exists("%s/nodes/%s" % (path, node))
    return json.loads(kazoo.get("%s/nodes/%s" % (path, node))[0]) if found else None


def create(connect, groups=GROUPS):
    done = cli("cluster", "create", "--zk", connect, "--groups", str(groups))
    assert done.returncode == 0, done.stderr


def wait_leader(kazoo, path, group, node, epoch):
    def led():
        state = group_state(kazoo, path, group)
        return state["leader"] == node and state["epoch"] == epoch and state
    return wait_for(led, 20, "group %d led by %s at epoch %d" % (group, node, epoch))


def test_nodes_register_and_lead(cluster_path, kazoo, nodes):
    path, connect = cluster_path
    create(connect)
    started = [nodes.make(connect, "n%d" % group, group).start() for group in range(GROUPS)]
    for node in started:
        node.wait_ready()
    for group, node in enumerate(started):
        doc = registration(kazoo, path, node.node)
        assert doc == {"node": node.node, "group": group, "role": "replica",
                       "command": node.endpoints["command"],
                       "events": node.endpoints["events"],
                       "query": node.endpoints["query"], "replication": None}
        # ephemeral: owned by the node's session
        assert kazoo.exists("%s/nodes/%s" % (path, node.node)).ephemeralOwner != 0
        state = wait_leader(kazoo, path, group, node.node, 1)
        assert state["isr"] == [node.node]
    # the status shows every node, as leader, with its endpoints
    done = cli("cluster", "status", "--zk", connect)
    doc = json.loads(done.stdout)
    assert [n["node"] for n in doc["nodes"]] == ["n0", "n1", "n2"]
    for group in doc["groups"]:
        assert group["leader"] == "n%d" % group["group"]
        assert [r["node"] for r in group["replicas"]] == [group["leader"]]
        assert group["replicas"][0]["role"] == "leader"
        assert group["replicas"][0]["command"] == started[group["group"]].endpoints["command"]
    # a clean stop removes the registration at once
    started[2].stop()
    assert registration(kazoo, path, "n2") is None


def test_killed_node_comes_back_at_a_new_epoch(cluster_path, kazoo, nodes):
    path, connect = cluster_path
    create(connect)
    started = [nodes.make(connect, "n%d" % group, group).start() for group in range(GROUPS)]
    for node in started:
        node.wait_ready()
    for group, node in enumerate(started):
        wait_leader(kazoo, path, group, node.node, 1)
    old_owner = kazoo.exists(path + "/nodes/n1").ephemeralOwner
    started[1].kill()
    # same id, ports and data: it waits out the dead session's znode, then
    # never resumes epoch 1 but wins epoch 2
    started[1].start().wait_ready(timeout=START_TIMEOUT + 2 * SESSION_MS / 1000)
    state = wait_leader(kazoo, path, 1, "n1", 2)
    assert state["isr"] == ["n1"]
    assert kazoo.exists(path + "/nodes/n1").ephemeralOwner != old_owner
    # the other groups did not move
    for group in (0, 2):
        assert group_state(kazoo, path, group)["epoch"] == 1


def test_same_node_id_twice_is_refused(cluster_path, kazoo, nodes):
    path, connect = cluster_path
    create(connect)
    first = nodes.make(connect, "n0", 0).start().wait_ready()
    wait_leader(kazoo, path, 0, "n0", 1)
    owner = kazoo.exists(path + "/nodes/n0").ephemeralOwner
    second = nodes.make(connect, "n0", 0).start()
    code = second.process.wait(timeout=START_TIMEOUT + 4 * SESSION_MS / 1000)
    assert code == 2
    assert "registered by another ZooKeeper session" in second.log()
    assert kazoo.exists(path + "/nodes/n0").ephemeralOwner == owner
    assert group_state(kazoo, path, 0)["epoch"] == 1
    assert first.process.poll() is None


def test_node_outside_the_isr_does_not_lead(cluster_path, kazoo, nodes):
    path, connect = cluster_path
    create(connect, groups=1)
    kazoo.set(path + "/groups/0", json.dumps({"leader": None, "epoch": 3,
                                              "isr": ["ghost"]}).encode())
    version = kazoo.exists(path + "/groups/0").version
    node = nodes.make(connect, "n9", 0).start().wait_ready()
    wait_for(lambda: "not in the ISR [ghost]" in node.log(), 20,
             "the node to see it may not lead")
    assert group_state(kazoo, path, 0) == {"leader": None, "epoch": 3, "isr": ["ghost"]}
    assert kazoo.exists(path + "/groups/0").version == version
    # once the ISR names it, it leads at the next epoch (the watch fires)
    kazoo.set(path + "/groups/0", json.dumps({"leader": None, "epoch": 3,
                                              "isr": ["n9"]}).encode())
    wait_leader(kazoo, path, 0, "n9", 4)


def test_views_node_registers_without_group(cluster_path, kazoo, nodes):
    path, connect = cluster_path
    create(connect, groups=1)
    node = nodes.make(connect, "v1", None).start().wait_ready()
    doc = registration(kazoo, path, "v1")
    assert doc["group"] is None and doc["role"] == "views"
    assert group_state(kazoo, path, 0)["leader"] is None
    done = cli("cluster", "status", "--zk", connect)
    assert json.loads(done.stdout)["nodes"][0]["role"] == "views"
    node.stop()


@pytest.mark.parametrize("change, message", [
    (["--node", None], "needs its id"),
    (["--group", None], "needs --group"),
    (["--role", "views"], "no group"),
    (["--command", "tcp://127.0.0.1:*"], "cannot be published"),
    (["--query", "tcp://*:7402"], "cannot be published"),
    (["--events", "tcp://127.0.0.1:0"], "cannot be published"),
    (["--group", "7"], "has groups 0 to 0"),
    (["--cluster", "127.0.0.1:1"], "path is missing"),
])
def test_bad_cluster_flags_refused(cluster_path, nodes, change, message):
    path, connect = cluster_path
    create(connect, groups=1)
    node = nodes.make(connect, "b1", 0)
    argv = node.argv()
    flag, value = change
    if value is None:
        at = argv.index(flag)
        del argv[at:at + 2]
    elif flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr, done.stderr


def test_no_cluster_at_path(cluster_path, nodes):
    path, connect = cluster_path
    node = nodes.make(connect, "c1", 0)
    done = subprocess.run(node.argv(), capture_output=True, text=True, timeout=START_TIMEOUT)
    assert done.returncode == 2
    assert "no cluster at %s: run `zcqrs cluster create`" % path in done.stderr
