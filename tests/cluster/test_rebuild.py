"""Rebuild of cluster-wide views (projection.c DESIGN 7): a node rebuilds a
view from position 1 of every group's log (its own from its store, the
others through `read` on their replicas) while the old table keeps
answering and following every group's live events, then swaps them.

No test sleeps for a fixed time: waits are queries with `min_positions` and
`timeout_ms`, or polls of a condition with a deadline.
"""

from conftest import wait_for
from test_views import (GROUPS, TIMEOUT, Client, check_reply_positions, command_ok,
                        context, converged, group_of, keys_of, start_cluster, write_accounts)

VIEWS = ("accounts", "totals")

__all__ = ["context"]  # the fixture, for pytest


def statuses(client):
    reply = client.query(op="views")
    assert reply["ok"], reply
    return {view["name"]: view for view in reply["views"]}


def all_live(client):
    found = statuses(client)
    return all(found[name]["status"] == "live" for name in VIEWS) and found


def rebuild(client, view):
    reply = client.query(op="rebuild", view=view)
    assert reply["ok"], reply
    assert reply["view"] == view and reply["status"] == "rebuilding", reply
    check_reply_positions(reply)
    return reply


def deposit_round(clients, session, balances, amount):
    """One deposit into every account, each through its own group's node."""
    for key in sorted(balances):
        group = group_of("account/" + key)
        reply = command_ok(clients[group], key, "deposit", {"amount": amount})
        balances[key] += amount
        session[str(group)] = max(session[str(group)], reply["position"])


def same_views(first, second, session):
    """Two nodes' views hold the same rows once both reach session."""
    for view in VIEWS:
        rows = []
        for client in (first, second):
            page = client.query(op="list", view=view, limit=1000, min_positions=session,
                                timeout_ms=int(TIMEOUT * 1000))
            assert page["ok"] and page["next"] is None, page
            rows.append(sorted(page["rows"], key=lambda row: row["key"]))
        assert rows[0] == rows[1], (view, rows)


def test_rebuild_while_commands_flow(cluster_path, nodes, context):
    path, connect = cluster_path
    started = start_cluster(connect, nodes, views_node=False)
    clients = [Client(context, node) for node in started]
    session = {}
    balances = write_accounts(clients, session, "rb", per_group=20)
    converged(clients[0], session, balances)
    # rebuild both views on n0, and keep writing to every group meanwhile
    for view in VIEWS:
        rebuild(clients[0], view)
    for amount in (1, 2):
        deposit_round(clients, session, balances, amount)
        # the old tables keep answering, with every group's positions
        reply = clients[0].query(op="get", view="totals", key="bank")
        assert reply["ok"], reply
        check_reply_positions(reply)
        # a second rebuild while one may run answers as the first does
        for view in VIEWS:
            rebuild(clients[0], view)
    more = write_accounts(clients, session, "rb-late", per_group=3)
    balances.update(more)
    wait_for(lambda: all_live(clients[0]), TIMEOUT, "n0's views to be live again")
    totals = converged(clients[0], session, balances)
    assert totals["row"]["balance"] == sum(balances.values())
    same_views(clients[0], clients[1], session)
    # the rebuilt views go on following every group
    deposit_round(clients, session, balances, 3)
    converged(clients[0], session, balances)
    same_views(clients[0], clients[2], session)
    log = started[0].log()
    assert "rebuilt to position" in log, log
    for group in (1, 2):  # the other groups' logs came through readers
        assert "rebuild reads group %d through n%d" % (group, group) in log, log


def test_rebuild_waits_for_a_dead_group(cluster_path, nodes, context):
    path, connect = cluster_path
    started = start_cluster(connect, nodes, extra=["--view-snapshot-every", "4"],
                            views_node=False)
    clients = [Client(context, node) for node in started]
    session = {}
    balances = write_accounts(clients, session, "rb", per_group=5)
    for client in clients:
        converged(client, session, balances)
    # group 2 without a live replica: the rebuild cannot read its log
    started[2].kill()
    for view in VIEWS:
        assert rebuild(clients[0], view)["running"] is False
    for group in (0, 1):
        for key in keys_of(group, 2, "rb-dead"):
            command_ok(clients[group], key, "open", {"owner": "d"})
            reply = command_ok(clients[group], key, "deposit", {"amount": 4})
            balances[key] = 4
            session[str(group)] = max(session[str(group)], reply["position"])
    # the old tables serve meanwhile, with the live groups' new events
    wanted = {"0": session["0"], "1": session["1"]}
    reply = clients[0].query(op="get", view="totals", key="bank", min_positions=wanted,
                             timeout_ms=int(TIMEOUT * 1000))
    assert reply["ok"], reply
    assert reply["row"]["balance"] == sum(balances.values()), reply
    found = statuses(clients[0])
    assert [found[name]["status"] for name in VIEWS] == ["rebuilding"] * 2, found
    for view in VIEWS:  # a second request joins the same rebuild
        assert rebuild(clients[0], view)["running"] is True
    # group 2 back: the rebuild reads it and ends
    started[2].start().wait_ready()
    clients[2] = Client(context, started[2])
    wait_for(lambda: all_live(clients[0]), TIMEOUT * 2, "n0's views to be live again")
    converged(clients[0], session, balances)
    same_views(clients[0], clients[1], session)
    # a snapshot after the swap holds the new tables' positions: a restart
    # loads it and still matches
    assert started[0].stop() == 0
    started[0].start().wait_ready()
    clients[0] = Client(context, started[0])
    converged(clients[0], session, balances)
    assert "from its snapshot" in started[0].log()
    same_views(clients[0], clients[1], session)
