"""Clients of a cluster, against real nodes (cluster.md sections 3 and 5).

- zcqrs.ClusterClient (bindings/python): commands go straight to their
  group's leader, so no node has to forward one; a map made stale by a
  node that came back on other ports is refreshed after the connection
  error; redirects are bounded while a group has no leader; a session
  reads its own writes.
- The `zcqrs` CLI: `--query EP cluster` prints the cluster document as
  JSON, and `send` to any node is forwarded to the leader.

Needs the Python package of the build on PYTHONPATH (ctest sets it).
"""

import json
import subprocess
import time

import pytest

from conftest import ZCQRS_CLI, cli, free_port, wait_for
from test_forwarding import GROUPS, Client as RawClient, group_of, keys_per_group, start_cluster

zcqrs = pytest.importorskip("zcqrs")


def forwarded(raw, started):
    return {node.node: raw.call(node.endpoints["query"], {"op": "stats"})["stats"]
            ["commands_forwarded"] for node in started}


def test_commands_go_straight_to_leaders(cluster_path, nodes):
    started, raw = start_cluster(cluster_path, nodes)
    try:
        keys = keys_per_group(4)
        with zcqrs.Client.connect_cluster([started[0].endpoints["query"]]) as client:
            # the map as the nodes compute it, from one seed
            assert client.map.slots == 16384 and set(client.map.groups) == set(range(GROUPS))
            for group, node in enumerate(started):
                assert client.map.leader(group)["command"] == node.endpoints["command"]
            # one by one
            for group, group_keys in keys.items():
                for key in group_keys[:2]:
                    assert client.group_of("account/" + key) == group_of("account/" + key)
                    result = client.send("account", key, "open", {"owner": "o"})
                    assert result.group == group and result.node == started[group].node
            # a batch over every group
            batch = [("account", key, "deposit", {"amount": 10})
                     for group_keys in keys.values() for key in group_keys[:2]]
            outcomes = list(client.send_many(batch, window=4))
            assert all(isinstance(o, zcqrs.CommandResult) for o in outcomes), outcomes
            assert [o.stream for o in outcomes] == ["account/" + c[1] for c in batch]
            assert all(o.node == started[o.group].node for o in outcomes)
            # hash tags: two streams of one tag share a group
            tagged = [client.send("account", "{%s}-%s" % (keys[1][3], kind), "open",
                                  {"owner": "o"}) for kind in ("savings", "checking")]
            assert tagged[0].group == tagged[1].group == group_of("{%s}" % keys[1][3])
            assert client.counters["forwarded"] == 0 and client.counters["redirects"] == 0
            assert set(client.session) == set(range(GROUPS))
        # no node had to forward a single command
        assert forwarded(raw, started) == {node.node: 0 for node in started}
    finally:
        raw.close()


def test_a_stale_map_is_refreshed(cluster_path, nodes):
    """Group 1's node comes back on new ports: the client's map names the
    old ones; the connection error makes it fetch the map and go on."""
    started, raw = start_cluster(cluster_path, nodes)
    try:
        keys = keys_per_group(3)
        with zcqrs.ClusterClient([n.endpoints["query"] for n in started],
                                 connect_timeout=0.5) as client:
            before = client.send("account", keys[1][0], "open", {"owner": "o"})
            assert before.node == "n1"
            old = dict(started[1].endpoints)
            started[1].kill()
            started[1].endpoints = {name: "tcp://127.0.0.1:%d" % free_port()
                                    for name in ("command", "events", "query")}
            started[1].start()
            started[1].wait_ready()
            wait_for(lambda: raw.call(started[1].endpoints["query"], {"op": "health"})
                     .get("role") == "leader", 30, "n1 leading again")
            assert client.map.leader(1)["command"] == old["command"]     # still stale
            refreshes = client.counters["refreshes"]
            # the map of a node in ZooKeeper may lag a moment behind: the
            # client's own redirects cover it
            result = client.send("account", keys[1][1], "open", {"owner": "o"}, redirects=10)
            assert result.group == 1 and result.node == "n1"
            assert client.counters["refreshes"] > refreshes
            assert client.counters["unreachable"] + client.counters["redirects"] >= 1
            assert client.map.leader(1)["command"] == started[1].endpoints["command"]
            # and the acknowledged commands of group 1 are both in its log, once
            events = client.read(1, 1000, group=1)
            ids = [e["command"] for e in events]
            assert ids.count(before.id) == 1 and ids.count(result.id) == 1
    finally:
        raw.close()


def test_redirects_are_bounded_while_a_group_has_no_leader(cluster_path, nodes):
    started, raw = start_cluster(cluster_path, nodes)
    try:
        keys = keys_per_group(6)
        with zcqrs.ClusterClient(started[0].endpoints["query"], connect_timeout=0.3) as client:
            client.send("account", keys[2][0], "open", {"owner": "o"})
            started[2].kill()
            sent = client.counters["sent"]
            began = time.monotonic()
            with pytest.raises((zcqrs.Unavailable, zcqrs.Timeout)) as raised:
                client.send("account", keys[2][1], "open", {"owner": "o"}, redirects=2)
            assert client.counters["sent"] - sent == 3          # 1 + 2 redirects, no more
            assert time.monotonic() - began < 15
            assert raised.value.reply.get("group") == 2, raised.value.reply
            # a batch: group 2 fails alone, the others commit
            batch = [("account", key, "open", {"owner": "o"})
                     for group in range(GROUPS) for key in keys[group][2:5]]
            outcomes = list(client.send_many(batch, redirects=1, timeout=3))
            for command, outcome in zip(batch, outcomes):
                if group_of("account/" + command[1]) == 2:
                    assert isinstance(outcome, (zcqrs.Unavailable, zcqrs.Timeout)), outcome
                else:
                    assert isinstance(outcome, zcqrs.CommandResult), outcome
            # once ZooKeeper has dropped the node, the map names no leader and
            # any node answers for the group: `no_leader`, from a node
            def no_leader():
                client.refresh()
                return client.map.leader(2) is None
            wait_for(no_leader, 30, "group 2 without a leader in the map")
            with pytest.raises(zcqrs.Unavailable) as raised:
                client.send("account", keys[2][5], "open", {"owner": "o"}, redirects=1)
            assert raised.value.reply.get("reason") == "no_leader", raised.value.reply
    finally:
        raw.close()


def test_a_session_reads_its_writes(cluster_path, nodes):
    started, raw = start_cluster(cluster_path, nodes)
    try:
        keys = keys_per_group(2)
        with zcqrs.ClusterClient([n.endpoints["query"] for n in started]) as client:
            results = {}
            for group, group_keys in keys.items():
                for key in group_keys:
                    client.send("account", key, "open", {"owner": "ann"})
                    results[key] = client.send("account", key, "deposit", {"amount": 70})
            # each write, read back at once through the view of a node
            for key, result in results.items():
                row = client.get("accounts", key, after=result)
                assert row is not None and row["balance"] == 70, (key, row)
            assert client.session == {
                group: max(r.position for k, r in results.items() if k in keys[group])
                for group in keys}
            if client.cluster_wide:
                # cluster-wide views: one read waits for every group
                rows = list(client.list("accounts", "owner", "ann", session=True))
                assert {r["key"] for r in rows} >= set(results)
                assert client.count("accounts", session=True) >= len(results)
            else:
                # views fed by one group: a wait on several groups needs group=
                with pytest.raises(ValueError):
                    client.count("accounts", session=True)
                for group in keys:
                    rows = list(client.list("accounts", "owner", "ann", session=True,
                                            group=group))
                    assert {r["key"] for r in rows} == set(keys[group])
    finally:
        raw.close()


def test_the_cli_against_a_cluster(cluster_path, nodes):
    started, raw = start_cluster(cluster_path, nodes)
    try:
        keys = keys_per_group(1)
        # the cluster document, as JSON, from any node
        shown = cli("--query", started[2].endpoints["query"], "cluster")
        assert shown.returncode == 0, shown.stderr
        document = json.loads(shown.stdout)
        assert document["slots"] == 16384 and len(document["groups"]) == GROUPS
        assert sorted(n["node"] for n in document["nodes"]) == ["n0", "n1", "n2"]
        # send to a node that does not lead the stream's group: forwarded
        key = keys[1][0]
        sent = cli("--command", started[0].endpoints["command"], "--json",
                   "send", "account", key, "open", "owner=cli", "--id", "cli-1")
        assert sent.returncode == 0, sent.stderr
        reply = json.loads(sent.stdout)
        assert reply["ok"] and reply["group"] == 1 and reply["node"] == "n1"
        again = cli("--command", started[2].endpoints["command"], "--json",
                    "send", "account", key, "open", "owner=cli", "--id", "cli-1")
        assert json.loads(again.stdout)["duplicate"] is True
        assert forwarded(raw, started)["n0"] == 1
        # --route: the C client reads the map and sends each command
        # straight to its group's leader; nobody forwards
        before = forwarded(raw, started)
        for group in range(GROUPS):
            key = keys[group][0] + "-routed"
            routed = cli("--query", started[0].endpoints["query"], "--route", "--json",
                         "send", "account", key, "open", "owner=cli")
            assert routed.returncode == 0, routed.stderr
            reply = json.loads(routed.stdout)
            assert reply["ok"] and reply["node"] == started[reply["group"]].node, reply
        # `send -` with --route: one command at a time, each to its leader
        lines = "".join(json.dumps({"aggregate": "account", "key": keys[group][0] + "-bulk",
                                    "type": "open", "data": {"owner": "cli"}}) + "\n"
                        for group in range(GROUPS))
        bulk = subprocess.run([ZCQRS_CLI, "--query", started[0].endpoints["query"], "--route",
                               "send", "-"], input=lines, capture_output=True, text=True,
                              timeout=60)
        assert bulk.returncode == 0, bulk.stderr
        replies = [json.loads(line) for line in bulk.stdout.splitlines()]
        assert [r["line"] for r in replies] == list(range(1, GROUPS + 1)), replies
        assert all(r["node"] == started[r["group"]].node for r in replies), replies
        assert forwarded(raw, started) == before
    finally:
        raw.close()
