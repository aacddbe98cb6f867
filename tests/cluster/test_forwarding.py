"""Commands in a cluster (cluster.md section 3), checked from outside.

Three groups, one node each. Every node takes every command: a command
whose slot belongs to another group is forwarded to that group's leader
and the leader's reply comes back, naming its group and node; the `id` is
unchanged, so a retry through another node is a duplicate. A group with
no live leader answers `unavailable` with `group` and `reason`, while the
others keep committing; after its node is back, every acknowledged
command is in its group's log exactly once. The `cluster` op describes
the map, groups and nodes on every node.
"""

import msgpack
import zmq

from conftest import SLOTS, cli, crc16, group_of, slot_of, wait_for

GROUPS = 3


class Client:
    def __init__(self):
        self.ctx = zmq.Context()
        self.sockets = {}

    def socket(self, endpoint):
        if endpoint not in self.sockets:
            s = self.ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.LINGER, 0)
            s.connect(endpoint)
            self.sockets[endpoint] = s
        return self.sockets[endpoint]

    def call(self, endpoint, body, timeout=15.0):
        s = self.socket(endpoint)
        s.send_multipart([b"", msgpack.packb(body)])
        assert s.poll(int(timeout * 1000)), "no reply from %s to %r" % (endpoint, body)
        return msgpack.unpackb(s.recv_multipart()[-1])

    def close(self):
        for s in self.sockets.values():
            s.close()
        self.ctx.term()


def command(cid, key, type_, data):
    return {"id": cid, "aggregate": "account", "key": key, "type": type_, "data": data}


def keys_per_group(count, groups=GROUPS):
    """count account keys for each group."""
    found = {group: [] for group in range(groups)}
    index = 0
    while any(len(keys) < count for keys in found.values()):
        key = "k%d" % index
        group = group_of("account/" + key, groups)
        if len(found[group]) < count:
            found[group].append(key)
        index += 1
    return found


def start_cluster(cluster_path, nodes):
    path, connect = cluster_path
    done = cli("cluster", "create", "--zk", connect, "--groups", str(GROUPS))
    assert done.returncode == 0, done.stderr
    started = [nodes.make(connect, "n%d" % group, group).start() for group in range(GROUPS)]
    for node in started:
        node.wait_ready()
    client = Client()

    def all_lead():
        for node in started:
            health = client.call(node.endpoints["query"], {"op": "health"})
            if health.get("role") != "leader":
                return False
        return True
    wait_for(all_lead, 30, "every group led")
    return started, client


def test_hash_tags_and_even_map():
    assert crc16(b"123456789") == 0x31C3
    assert slot_of("account/{ann}-savings") == slot_of("account/{ann}-checking")


def test_any_node_takes_any_command(cluster_path, nodes):
    started, client = start_cluster(cluster_path, nodes)
    try:
        keys = keys_per_group(3)
        # the cluster op: the map covers every slot once, and names the
        # leaders' endpoints, on every node
        for node in started:
            doc = client.call(node.endpoints["query"], {"op": "cluster", "rid": 1})
            assert doc["ok"] and doc["slots"] == SLOTS and doc["rid"] == 1
            covered = sorted((first, last) for first, last, _ in doc["map"])
            assert covered[0][0] == 0 and covered[-1][1] == SLOTS - 1
            for (a, b), (c, d) in zip(covered, covered[1:]):
                assert c == b + 1
            for group in doc["groups"]:
                leader = started[group["group"]]
                assert group["leader"] == leader.node
                assert any(r["command"] == leader.endpoints["command"]
                           for r in group["replicas"])
        # every command through every node: decided by its group's leader
        for via in started:
            for group, group_keys in keys.items():
                for key in group_keys:
                    cid = "open-%s-via-%s" % (key, via.node)
                    reply = client.call(via.endpoints["command"],
                                        command(cid, "%s-%s" % (key, via.node), "open",
                                                {"owner": "o"}))
                    stream_group = group_of("account/%s-%s" % (key, via.node))
                    assert reply["ok"], reply
                    assert reply["id"] == cid
                    assert reply["group"] == stream_group
                    assert reply["node"] == started[stream_group].node
        # a retry through another node is a duplicate, same position
        key = keys[2][0]
        first = client.call(started[0].endpoints["command"],
                            command("dep-1", key + "-n0", "deposit", {"amount": 5}))
        again = client.call(started[1].endpoints["command"],
                            command("dep-1", key + "-n0", "deposit", {"amount": 5}))
        assert first["ok"] and again["ok"] and again["duplicate"]
        assert again["position"] == first["position"] and again["group"] == first["group"]
        # a refusal decided by the leader names its group and node too
        refused = client.call(started[0].endpoints["command"],
                              command("wd-1", key + "-n0", "withdraw", {"amount": 10 ** 9}))
        assert refused["error"] == "rejected", refused
        assert refused["group"] == first["group"] and refused["node"] == first["node"], refused
        # each group's log holds only its own streams, each once
        for group, node in enumerate(started):
            events = client.call(node.endpoints["query"],
                                 {"op": "read", "from": 1, "limit": 10000})["events"]
            streams = [e["stream"] for e in events]
            assert all(group_of(s) == group for s in streams), streams
            assert all(e["group"] == group for e in events)
            ids = [e["command"] for e in events]
            assert len(ids) == len(set(ids))
            health = client.call(node.endpoints["query"], {"op": "health"})
            assert health["group"] == group and health["role"] == "leader"
            assert health["epoch"] >= 1 and health["isr"] == [node.node]
        stats = client.call(started[0].endpoints["query"], {"op": "stats"})["stats"]
        assert stats["commands_forwarded"] > 0
    finally:
        client.close()


def test_a_group_without_its_node(cluster_path, nodes):
    started, client = start_cluster(cluster_path, nodes)
    try:
        keys = keys_per_group(4)
        acknowledged = {}
        for group, group_keys in keys.items():
            for key in group_keys[:2]:
                reply = client.call(started[0].endpoints["command"],
                                    command("a-" + key, key, "open", {"owner": "o"}))
                assert reply["ok"], reply
                acknowledged["a-" + key] = reply
        down = started[1]
        down.kill()

        # its slots are unavailable with a reason; the others commit
        def refused():
            reply = client.call(started[0].endpoints["command"],
                                command("b-" + keys[1][2], keys[1][2], "open", {"owner": "o"}))
            if reply.get("ok"):
                acknowledged["b-" + keys[1][2]] = reply
                return False
            return reply
        reply = wait_for(refused, 30, "group 1's slots refused")
        assert reply["error"] in ("unavailable", "timeout"), reply
        assert reply["group"] == 1
        assert reply["reason"] in ("no_leader", "forwarding_failed", "outcome_unknown"), reply
        for group in (0, 2):
            key = keys[group][2]
            ok = client.call(started[2].endpoints["command"],
                             command("c-" + key, key, "open", {"owner": "o"}))
            assert ok["ok"] and ok["group"] == group, ok
            acknowledged["c-" + key] = ok

        # back: it leads again, at a new epoch, with everything acknowledged
        down.start()
        down.wait_ready()

        def served():
            reply = client.call(started[0].endpoints["command"],
                                command("d-" + keys[1][3], keys[1][3], "open", {"owner": "o"}))
            return reply if reply.get("ok") else None
        reply = wait_for(served, 30, "group 1 served again")
        acknowledged["d-" + keys[1][3]] = reply
        for group, node in enumerate(started):
            events = client.call(node.endpoints["query"],
                                 {"op": "read", "from": 1, "limit": 10000})["events"]
            by_id = {}
            for event in events:
                by_id.setdefault(event["command"], []).append(event["position"])
            for cid, ack in acknowledged.items():
                if ack["group"] == group:
                    assert by_id.get(cid) == [ack["position"]], (cid, ack, by_id.get(cid))
        health = client.call(down.endpoints["query"], {"op": "health"})
        assert health["role"] == "leader" and health["epoch"] >= 2
        # its log's epoch history: an entry per epoch it wrote under, each
        # starting after the last position of the one before
        epochs = health["epochs"]
        assert [e for e, _ in epochs] == sorted(e for e, _ in epochs) and len(epochs) == 2, epochs
        assert epochs[-1][0] == health["epoch"], (epochs, health)
        assert epochs[0][1] == 1 and epochs[1][1] > epochs[0][1], epochs
    finally:
        client.close()


def test_reads_of_every_group_through_any_node(cluster_path, nodes):
    started, client = start_cluster(cluster_path, nodes)
    try:
        keys = keys_per_group(2)
        for group, group_keys in keys.items():
            for key in group_keys:
                reply = client.call(started[0].endpoints["command"],
                                    command("r-" + key, key, "open", {"owner": "o"}))
                assert reply["ok"] and reply["group"] == group, reply
        for via in started:
            for group, group_keys in keys.items():
                # `read` with `group`: that group's log, through any node
                reply = client.call(via.endpoints["query"],
                                    {"op": "read", "from": 1, "group": group, "rid": group})
                assert reply["ok"] and reply["rid"] == group, reply
                streams = [e["stream"] for e in reply["events"]]
                assert streams == ["account/%s" % key for key in group_keys], reply
                # `stream` without `group`: routed by the stream's slot
                key = group_keys[0]
                reply = client.call(via.endpoints["query"],
                                    {"op": "stream", "stream": "account/" + key})
                assert reply["ok"] and reply["version"] == 1, reply
                assert reply["events"][0]["command"] == "r-" + key
        bad = client.call(started[0].endpoints["query"], {"op": "read", "from": 1, "group": 7})
        assert bad["error"] == "invalid", bad
    finally:
        client.close()


def test_fewer_in_sync_replicas_than_min_insync(cluster_path, nodes):
    """A group whose in-sync replicas are fewer than min_insync takes no
    command: `unavailable`, `not_enough_replicas` (nothing is acknowledged
    on fewer durable copies than min_insync)."""
    path, connect = cluster_path
    done = cli("cluster", "create", "--zk", connect, "--groups", "1", "--replicas", "2",
               "--min-insync", "2")
    assert done.returncode == 0, done.stderr
    node = nodes.make(connect, "m0", 0).start()
    node.wait_ready()
    client = Client()
    try:
        def refused():
            reply = client.call(node.endpoints["command"],
                                command("isr-1", "k1", "open", {"owner": "o"}))
            return reply if reply.get("reason") == "not_enough_replicas" else None
        reply = wait_for(refused, 30, "not_enough_replicas")
        assert reply["error"] == "unavailable" and reply["group"] == 0, reply
        events = client.call(node.endpoints["query"], {"op": "read", "from": 1})["events"]
        assert events == [], events
    finally:
        client.close()
