"""`zcqrs cluster create` and `zcqrs cluster status` against a private
ZooKeeper (cluster.md section 2, the reply of section 5)."""

import json

import pytest

from conftest import cli


def status(connect):
    done = cli("cluster", "status", "--zk", connect)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_create_then_status(cluster_path, kazoo):
    path, connect = cluster_path
    done = cli("cluster", "create", "--zk", connect, "--groups", "3")
    assert done.returncode == 0, done.stderr
    # on a pipe: one JSON line saying what was created
    assert json.loads(done.stdout) == {"ok": True, "cluster": path, "slots": 16384,
                                       "groups": 3, "replicas": 1, "min_insync": 1}
    assert done.stdout.count("\n") == 1
    doc = status(connect)
    assert doc["ok"] is True
    assert isinstance(doc["id"], str) and len(doc["id"]) == 32
    int(doc["id"], 16)
    assert doc["slots"] == 16384
    assert doc["map_version"] == 0
    # the map covers every slot exactly once, group 0 first, the last the remainder
    seen = [0] * doc["slots"]
    for first, last, group in doc["map"]:
        assert 0 <= group < 3
        for slot in range(first, last + 1):
            seen[slot] += 1
    assert seen == [1] * 16384
    assert doc["map"] == [[0, 5460, 0], [5461, 10921, 1], [10922, 16383, 2]]
    assert [g["group"] for g in doc["groups"]] == [0, 1, 2]
    for group in doc["groups"]:
        assert group == {"group": group["group"], "epoch": 0, "leader": None, "isr": [],
                         "hw": 0, "replicas": []}
    assert doc["nodes"] == []
    # the znodes themselves, as docs/cluster.md lays them out
    config = json.loads(kazoo.get(path + "/config")[0])
    assert config == {"slots": 16384, "groups": 3, "replicas": 1, "min_insync": 1}
    assert json.loads(kazoo.get(path + "/groups/2")[0]) == {"leader": None, "epoch": 0,
                                                            "isr": []}
    assert kazoo.get(path + "/id")[0].decode() == doc["id"]
    # JSON Lines on a pipe, --json or not; indented with --text
    for flags in ((), ("--json",)):
        done = cli("cluster", "status", "--zk", connect, *flags)
        assert done.returncode == 0 and done.stdout.count("\n") == 1
        assert json.loads(done.stdout) == doc
    done = cli("cluster", "status", "--zk", connect, "--text")
    assert done.stdout.count("\n") > 1 and json.loads(done.stdout) == doc
    done = cli("cluster", "create", "--zk", connect, "--groups", "3", "--text")
    assert done.returncode == 1 and done.stdout == "", done


def test_create_options(cluster_path, kazoo):
    path, connect = cluster_path
    done = cli("cluster", "create", "--zk", connect, "--groups", "4", "--replicas", "3",
               "--slots", "10")
    assert done.returncode == 0, done.stderr
    doc = status(connect)
    assert doc["slots"] == 10
    assert doc["map"] == [[0, 1, 0], [2, 3, 1], [4, 5, 2], [6, 9, 3]]
    config = json.loads(kazoo.get(path + "/config")[0])
    assert config["replicas"] == 3 and config["min_insync"] == 2


def test_create_refuses_existing(cluster_path):
    path, connect = cluster_path
    assert cli("cluster", "create", "--zk", connect, "--groups", "2").returncode == 0
    before = status(connect)
    again = cli("cluster", "create", "--zk", connect, "--groups", "5")
    assert again.returncode == 1 and again.stdout == ""
    assert "already exists" in again.stderr and path in again.stderr
    assert status(connect) == before


def test_status_without_cluster(cluster_path):
    path, connect = cluster_path
    done = cli("cluster", "status", "--zk", connect)
    assert done.returncode == 1
    assert "no cluster at %s" % path in done.stderr
    assert "zcqrs cluster create" in done.stderr


@pytest.mark.parametrize("args", [
    ["--groups", "0"],
    ["--groups", "-1"],
    ["--groups", "3x"],
    ["--groups", ""],
    ["--groups", "0x3"],
    ["--groups", "3", "--replicas", "10"],
    ["--groups", "3", "--replicas", "0"],
    ["--groups", "3", "--replicas", "2", "--min-insync", "3"],
    ["--groups", "3", "--min-insync", "0"],
    ["--groups", "3", "--slots", "16385"],
    ["--groups", "3", "--slots", "0"],
    ["--groups", "11", "--slots", "10"],
    ["--groups", "99999999999999999999"],
    ["--groups", " 3"],
    ["--groups", "+3"],
    [],
])
def test_bad_numbers_refused(cluster_path, kazoo, args):
    path, connect = cluster_path
    done = cli("cluster", "create", "--zk", connect, *args)
    assert done.returncode == 2, (args, done.stdout, done.stderr)
    assert done.stderr
    assert not kazoo.exists(path + "/id")


@pytest.mark.parametrize("zk", [
    "127.0.0.1:2181",               # no path
    "127.0.0.1:2181/",              # the root
    "127.0.0.1/zcqrs",              # no port
    "127.0.0.1:2181/a//b",
    "127.0.0.1:2181/a/../b",
    "127.0.0.1:2181/a/",
    "/zcqrs",
])
def test_bad_zk_strings_refused(zk):
    done = cli("cluster", "status", "--zk", zk)
    assert done.returncode == 2, (zk, done.stderr)
    assert done.stderr


def test_damaged_metadata_is_an_error(cluster_path, kazoo):
    path, connect = cluster_path
    assert cli("cluster", "create", "--zk", connect, "--groups", "2").returncode == 0
    for znode, text in [("/map", b"[[0, 100, 0]]"), ("/map", b"not json"),
                        ("/groups/1", b'{"leader": 7, "epoch": 0, "isr": []}'),
                        ("/config", b'{"slots": 16384}')]:
        good = kazoo.get(path + znode)[0]
        kazoo.set(path + znode, text)
        done = cli("cluster", "status", "--zk", connect)
        assert done.returncode == 1, (znode, text)
        assert "damaged" in done.stderr and path + znode in done.stderr, done.stderr
        kazoo.set(path + znode, good)
    status(connect)


def test_unreachable_zookeeper():
    done = cli("--timeout", "1000", "cluster", "status", "--zk", "127.0.0.1:1/zcqrs")
    assert done.returncode == 3, done.stderr
