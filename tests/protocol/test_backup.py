"""Online backup and restore: the query op `backup`, `zcqrs backup DIR`
and `zcqrsd --restore DIR --data NEW_DIR`.

A backup is taken while a client pipelines commands; the restored node
holds every command acknowledged at or below the backup's position exactly
once and nothing after it, its views are the fold of its log, it takes new
commands, and it answers the commands of the backup as duplicates.

No fixed sleeps: every wait polls a reply or a condition with a deadline."""

import os
import subprocess
import threading
import time

import pytest
import zmq

from conftest import (REPLY_TIMEOUT, ZCQRS_CLI, ZCQRSD, Client, assert_error,
                      assert_ok, recv_multipart, unpack)

BACKUP_TIMEOUT = 120.0   # seconds: a backup on a loaded, shared machine
WINDOW = 64              # commands the loader keeps in flight
ACCOUNTS = 16


def restore(backup, data):
    """Run zcqrsd --restore; returns (exit code, stdout, stderr)."""
    proc = subprocess.run([ZCQRSD, "--restore", str(backup), "--data",
                           str(data)], capture_output=True, timeout=120)
    return (proc.returncode, proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"))


def backup(client, path, **extra):
    return client.query("backup", timeout=BACKUP_TIMEOUT, dir=str(path),
                        **extra)


class Loader(threading.Thread):
    """Deposits pipelined on a connection of its own, WINDOW in flight,
    until stopped; keeps every acknowledged command (id, position, body)."""

    def __init__(self, daemon, keys):
        super().__init__(daemon=True)
        self.node = daemon
        self.keys = keys
        self.stop = threading.Event()
        self.acked = []
        self.errors = []
        self.changed = threading.Condition()

    def run(self):
        client = Client(self.node)
        inflight = {}
        sent = 0
        try:
            while not self.stop.is_set() or inflight:
                while not self.stop.is_set() and len(inflight) < WINDOW:
                    body = {"aggregate": "account",
                            "key": self.keys[sent % len(self.keys)],
                            "type": "deposit",
                            "data": {"amount": 1 + sent % 7},
                            "id": "load-%d" % sent}
                    client.send_command(body)
                    inflight[body["id"]] = body
                    sent += 1
                frames = recv_multipart(client.cmd_sock, REPLY_TIMEOUT,
                                        "command reply")
                reply = unpack(frames[-1])
                body = inflight.pop(reply.get("id"))
                with self.changed:
                    if reply.get("ok"):
                        self.acked.append((body["id"], reply["position"],
                                           body))
                    else:
                        self.errors.append(reply)
                    self.changed.notify_all()
        except Exception as e:   # reported by the test, not lost in a thread
            with self.changed:
                self.errors.append(repr(e))
                self.changed.notify_all()
        finally:
            client.close()

    def wait_acked(self, count):
        deadline = time.monotonic() + 60
        with self.changed:
            while len(self.acked) < count:
                assert not self.errors, self.errors[:3]
                left = deadline - time.monotonic()
                assert left > 0, "only %d commands acknowledged" \
                    % len(self.acked)
                self.changed.wait(left)
            return len(self.acked)


def wait_snapshots(client):
    """Poll `views` until every view has saved a snapshot."""
    deadline = time.monotonic() + 60
    while True:
        views = assert_ok(client.query("views"))["views"]
        if all(v["snapshot"] > 0 for v in views):
            return views
        assert time.monotonic() < deadline, "no view snapshots: %r" % views


def fold(events):
    """The bank's views computed from a log: accounts balances, totals."""
    accounts, totals = {}, {"events": 0, "accounts": 0, "balance": 0}
    for e in events:
        if e["aggregate"] != "account":
            continue
        key, data = e["key"], e.get("data") or {}
        amount = data.get("amount", 0)
        totals["events"] += 1
        if e["type"] == "opened":
            accounts[key] = 0
            totals["accounts"] += 1
        elif e["type"] == "deposited":
            accounts[key] += amount
            totals["balance"] += amount
        elif e["type"] == "withdrawn":
            accounts[key] -= amount
            totals["balance"] -= amount
        elif e["type"] == "closed":
            totals["accounts"] -= 1
    return accounts, totals


def test_backup_under_load_restores_acknowledged_commands(daemon_factory,
                                                          tmp_path):
    source = daemon_factory(extra=["--view-snapshot-every", "100"])
    c = source.client()
    keys = ["acct%02d" % i for i in range(ACCOUNTS)]
    opened = {}
    for k in keys:
        rep = assert_ok(c.open(k, owner="own%d" % (len(opened) % 3)))
        opened[rep["id"]] = rep["position"]
    loader = Loader(source, keys)
    loader.start()
    try:
        loader.wait_acked(400)
        wait_snapshots(c)   # saved (and synced) by the views' own threads
        target = tmp_path / "backups" / "b1"
        target.parent.mkdir()
        rep = assert_ok(backup(c, target))
        loader.wait_acked(loader.wait_acked(0) + 200)   # the load goes on
    finally:
        loader.stop.set()
        loader.join(60)
    assert not loader.errors, loader.errors[:3]
    c.close()

    position = rep["position"]
    assert rep["dir"] == str(target)
    assert isinstance(position, int) and position >= len(keys) + 1
    assert isinstance(rep["bytes"], int) and rep["bytes"] > 0
    assert isinstance(rep["views"], list)
    for view in rep["views"]:
        assert view["name"] in ("accounts", "totals"), view
        assert 0 < view["position"] <= position, (view, position)
    assert rep["views"], "snapshots every 100 events: the backup has some"
    assert oct(os.stat(target).st_mode & 0o777) == "0o700"
    acked_in = [a for a in loader.acked if a[1] <= position]
    acked_after = [a for a in loader.acked if a[1] > position]
    assert acked_in and acked_after, "the backup was not taken under load"

    # the source's log up to the backup, to compare with
    c = source.client()
    source_log = [e for e in c.read_all() if e["position"] <= position]
    c.close()

    restored_dir = tmp_path / "restored"
    code, out, err = restore(target, restored_dir)
    assert code == 0, (out, err)
    assert str(position) in out and str(restored_dir) in out, out
    restored = daemon_factory(data=restored_dir)
    r = restored.client()
    assert r.head() == position
    log = r.read_all()
    assert [e["position"] for e in log] == list(range(1, position + 1))
    assert log == source_log, "the restored log is the source's, to its position"
    commands = {}
    for e in log:
        commands[e["command"]] = commands.get(e["command"], 0) + 1
    for cid, pos, body in acked_in:
        assert commands.get(cid) == 1, (cid, pos, commands.get(cid))
    for cid in opened:
        assert commands.get(cid) == 1, cid
    for cid, pos, body in acked_after:
        assert cid not in commands, (cid, pos, position)

    # the views are the fold of the restored log, from their snapshots on
    accounts, totals = fold(log)
    rows = {row["key"]: row for row in r.rows("accounts", position)}
    assert {k: row["balance"] for k, row in rows.items()} == accounts
    total = r.row("totals", "bank", min_position=position)
    for field, value in totals.items():
        assert total[field] == value, (field, total, totals)
    loaded = {v["name"]: v for v in assert_ok(r.query("views"))["views"]}
    for view in rep["views"]:
        assert loaded[view["name"]]["snapshot"] >= view["position"], loaded

    # duplicates of the backup's commands; the later ones are new here
    cid, pos, body = acked_in[-1]
    again = assert_ok(r.command(body))
    assert again["duplicate"] is True and again["position"] == pos, again
    assert r.head() == position
    cid, pos, body = acked_after[0]
    fresh = assert_ok(r.command(body))
    assert fresh["duplicate"] is False and fresh["position"] == position + 1
    new = assert_ok(r.deposit(keys[0], 5))
    assert new["position"] == position + 2
    expected = accounts[keys[0]] + 5
    if body["key"] == keys[0]:
        expected += body["data"]["amount"]
    assert r.synced_row("accounts", keys[0])["balance"] == expected
    r.close()

    # a backup restores again, into another dir
    code, out, err = restore(target, tmp_path / "restored2")
    assert code == 0, (out, err)


def test_backup_refuses_bad_targets(daemon, tmp_path):
    c = daemon.client()
    assert_ok(c.open("refuse1"))
    assert_error(backup(c, "relative/dir"), "invalid")
    existing = tmp_path / "exists"
    existing.mkdir()
    assert_error(backup(c, existing), "invalid")
    assert_error(backup(c, tmp_path / "no" / "parent"), "invalid")
    assert_error(backup(c, os.path.join(daemon.data, "inside")), "invalid")
    assert not os.path.exists(os.path.join(daemon.data, "inside"))
    assert_error(c.query("backup"), "invalid")
    assert_error(c.query("backup", dir=42), "invalid")
    assert_error(c.query("backup", dir=""), "invalid")
    # the node still backs up after refusals
    rep = assert_ok(backup(c, tmp_path / "good"))
    assert rep["position"] == c.head()
    c.close()


def test_second_backup_while_one_runs_is_unavailable(daemon_factory, tmp_path,
                                                     monkeypatch):
    hold = tmp_path / "hold"
    hold.write_text("")
    monkeypatch.setenv("ZCQ_BACKUP_HOLD_FILE", str(hold))
    d = daemon_factory()
    c = d.client()
    assert_ok(c.open("busy1"))
    c.send_query({"op": "backup", "dir": str(tmp_path / "first"), "rid": "b1"})
    second = c.query("backup", dir=str(tmp_path / "second"))
    assert_error(second, "unavailable")
    # other queries are answered while the backup runs
    assert_ok(c.query("health"))
    hold.unlink()
    first = assert_ok(c.wait_query("b1", BACKUP_TIMEOUT))
    assert first["position"] == 1
    assert not (tmp_path / "second").exists()
    assert_ok(backup(c, tmp_path / "third"))
    c.close()


def test_restore_refusals(daemon, tmp_path):
    c = daemon.client()
    assert_ok(c.open("rst1"))
    assert_ok(c.deposit("rst1", 10))
    good = tmp_path / "good"
    position = assert_ok(backup(c, good))["position"]
    c.close()

    # a data dir that holds something is left alone
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep").write_text("mine")
    code, out, err = restore(good, busy)
    assert code != 0 and "not empty" in err, (code, out, err)
    assert os.listdir(busy) == ["keep"]

    # an empty one is taken
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = restore(good, empty)
    assert code == 0, err

    # no backup there
    code, out, err = restore(tmp_path / "nothing", tmp_path / "n1")
    assert code != 0 and "manifest" in err, err
    assert not (tmp_path / "n1").exists()

    # a missing manifest, a corrupt one, a wrong position
    manifest = good / "manifest"
    text = manifest.read_text()
    manifest.unlink()
    code, out, err = restore(good, tmp_path / "n2")
    assert code != 0 and "manifest" in err, err
    assert not (tmp_path / "n2").exists()
    manifest.write_text("\x00\x01 not a manifest {{{\n")
    code, out, err = restore(good, tmp_path / "n3")
    assert code != 0, err
    assert not (tmp_path / "n3").exists()
    manifest.write_text(text.replace("position = %d" % position,
                                     "position = abc"))
    code, out, err = restore(good, tmp_path / "n4")
    assert code != 0 and "position" in err, err
    manifest.write_text(text.replace("format = 1", "format = 9"))
    code, out, err = restore(good, tmp_path / "n5")
    assert code != 0 and "format" in err, err
    manifest.write_text(text.replace("position = %d" % position,
                                     "position = %d" % (position + 5)))
    code, out, err = restore(good, tmp_path / "n6")
    assert code != 0 and "manifest says" in err, err
    assert not (tmp_path / "n6").exists(), "a failed restore leaves nothing"
    manifest.write_text(text)
    code, out, err = restore(good, tmp_path / "n7")
    assert code == 0, err


@pytest.mark.skipif(not ZCQRS_CLI, reason="set ZCQRS_CLI to the zcqrs binary")
def test_cli_backup(daemon, tmp_path):
    c = daemon.client()
    assert_ok(c.open("cli1"))
    c.close()
    argv = [ZCQRS_CLI, "--query", daemon.query, "backup", "rel"]
    proc = subprocess.run(argv, capture_output=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import json
    reply = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    assert reply["ok"] is True and reply["dir"] == str(tmp_path / "rel")
    assert reply["position"] == 1
    assert (tmp_path / "rel" / "manifest").exists()
    proc = subprocess.run(argv, capture_output=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 1 and b"invalid" in proc.stderr, proc
    proc = subprocess.run([ZCQRS_CLI, "--query", daemon.query, "backup"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 2, proc
