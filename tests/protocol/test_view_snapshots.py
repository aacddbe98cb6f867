"""View snapshots as the protocol shows them: the `snapshot` field of each
`views` / `health` entry (the log position of the view's last snapshot
saved or loaded, 0 = none), and a clean restart that loads the views from
their snapshots instead of replaying the log.

No fixed sleeps: every wait polls a reply with a deadline."""

import os
import time

from conftest import REPLY_TIMEOUT, assert_ok, is_int


def views_by_name(rep):
    views = rep["views"]
    assert isinstance(views, list) and views, rep
    by_name = {}
    for v in views:
        assert is_int(v.get("snapshot")), v
        assert 0 <= v["snapshot"] <= rep["head"], (v, rep["head"])
        by_name[v["name"]] = v
    assert {"accounts", "totals"} <= set(by_name), views
    return by_name


def wait_live(c, head):
    """Poll `views` until every view is live at head; returns them."""
    deadline = time.monotonic() + REPLY_TIMEOUT
    while True:
        rep = assert_ok(c.query("views"))
        views = views_by_name(rep)
        if all(v["status"] == "live" and v["position"] == head
               for v in views.values()):
            return views
        assert time.monotonic() < deadline, \
            "views not live at %d within %.0fs: %r" % (head, REPLY_TIMEOUT,
                                                       views)


def view_contents(c, head):
    """Every accounts row (paged) and the totals row, at head."""
    return {"accounts": c.rows("accounts", head),
            "totals": c.row("totals", "bank", min_position=head)}


def drive(c, accounts=15, rounds=6):
    for i in range(accounts):
        assert_ok(c.open("snap%03d" % i, owner="own%d" % (i % 4)))
    for j in range(rounds):
        for i in range(accounts):
            assert_ok(c.deposit("snap%03d" % i, 5 + i + j))
    assert_ok(c.withdraw("snap000", 5 * rounds + sum(range(rounds))))
    assert_ok(c.close_account("snap000"))


def test_views_and_health_carry_snapshot(node, client):
    """Each entry of `views` and of `health`'s `views` has an integer
    `snapshot`, between 0 and the head."""
    assert_ok(client.open("snapfield-%d" % os.getpid()))
    views_by_name(assert_ok(client.query("views")))
    views_by_name(assert_ok(client.query("health")))


def test_clean_restart_loads_snapshots(daemon):
    c = daemon.client()
    try:
        drive(c)
        head = c.head()
        views = wait_live(c, head)
        # the default interval is far away: no snapshot yet
        assert all(v["snapshot"] == 0 for v in views.values()), views
        before = view_contents(c, head)
    finally:
        c.close()

    daemon.restart()    # SIGTERM, exit 0, then the same data dir
    for name in ("accounts", "totals"):
        path = os.path.join(daemon.data, "views", name + ".snap")
        assert os.path.isfile(path), path

    c = daemon.client()
    try:
        assert c.head() == head
        after_views = wait_live(c, head)
        for name, v in after_views.items():
            assert v["snapshot"] == head, (name, v)
            assert v["rows"] == views[name]["rows"], (name, v)
        # the router answers the same views, field by field
        assert {n: dict(v, snapshot=0) for n, v in after_views.items()} == views
        assert view_contents(c, head) == before
        # the views move on from there
        pos = assert_ok(c.deposit("snap001", 1))["position"]
        assert pos == head + 1
        row = c.row("accounts", "snap001", min_position=pos)
        old = [r for r in before["accounts"] if r["key"] == "snap001"][0]
        assert row["balance"] == old["balance"] + 1
        health = views_by_name(assert_ok(c.query("health")))
        assert all(v["snapshot"] == head for v in health.values()), health
    finally:
        c.close()


def test_snapshots_off(daemon_factory):
    """view-snapshot-every 0: nothing saved at a clean stop, and the
    views are rebuilt from the log (snapshot stays 0)."""
    d = daemon_factory(extra=["--view-snapshot-every", "0"])
    c = d.client()
    try:
        drive(c, accounts=5, rounds=2)
        head = c.head()
        before = view_contents(c, head)
    finally:
        c.close()
    d.restart()
    views_dir = os.path.join(d.data, "views")
    assert not os.path.isdir(views_dir) or not os.listdir(views_dir)
    c = d.client()
    try:
        views = wait_live(c, head)
        assert all(v["snapshot"] == 0 for v in views.values()), views
        assert view_contents(c, head) == before
    finally:
        c.close()
