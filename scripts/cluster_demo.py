"""cluster_demo.py: the Python side of scripts/cluster-demo.sh.

Bank load through zcqrs.ClusterClient, one phase per run; what was
acknowledged is appended to STATE (one JSON line per command), so the
closing check knows every acknowledged command whatever phase sent it.

    cluster_demo.py STATE SEEDS load      open accounts, deposit, withdraw
    cluster_demo.py STATE SEEDS outage    GROUP is down: a round of deposits
                                          over every account, counted per group
    cluster_demo.py STATE SEEDS recover   wait for every group, one more round
    cluster_demo.py STATE SEEDS check     every acknowledged command in its
                                          group's log exactly once; totals

SEEDS: query endpoints, comma-separated. Exits 1 when a check fails.
"""

import collections
import json
import signal
import sys
import time

import zcqrs

ACCOUNTS_PER_GROUP = 100


def say(text=""):
    print(text, flush=True)


def accounts(client):
    """ACCOUNTS_PER_GROUP account keys in each group, by the map."""
    found = collections.defaultdict(list)
    index = 0
    while len(found) < len(client.map.groups) or min(
            len(keys) for keys in found.values()) < ACCOUNTS_PER_GROUP:
        key = "acct-%d" % index
        group = client.group_of("account/" + key)
        if len(found[group]) < ACCOUNTS_PER_GROUP:
            found[group].append(key)
        index += 1
    return {group: found[group] for group in sorted(found)}


def record(client, state, outcomes, batch):
    """Append the acknowledged outcomes to STATE; count per group (by the map)."""
    counts = collections.defaultdict(collections.Counter)
    with open(state, "a") as out:
        for command, outcome in zip(batch, outcomes):
            if isinstance(outcome, zcqrs.CommandResult):
                counts[outcome.group]["ok"] += 1
                out.write(json.dumps({"id": outcome.id, "stream": outcome.stream,
                                      "group": outcome.group, "position": outcome.position,
                                      "events": outcome.events, "type": command[2]}) + "\n")
            elif isinstance(outcome, zcqrs.Rejected):
                counts[client.group_of("account/" + command[1])]["rejected"] += 1
            else:
                group = client.group_of("account/" + command[1])
                reason = outcome.reply.get("reason") or outcome.code
                counts[group]["%s (%s)" % (outcome.code, reason)] += 1
    return counts


def show(counts):
    for group in sorted(counts, key=lambda g: (g is None, g)):
        parts = ", ".join("%s %d" % (what, n) for what, n in sorted(counts[group].items()))
        say("   group %s: %s" % (group, parts))


def phase_load(client, state, raw_nodes):
    keys = accounts(client)
    every = [key for group in keys for key in keys[group]]
    say("   %d accounts, %d per group, routed by slot (CRC16 mod %d) to each group's leader"
        % (len(every), ACCOUNTS_PER_GROUP, client.map.slots))
    total = collections.defaultdict(collections.Counter)
    for label, batch in (
            ("open", [("account", key, "open", {"owner": "owner-%d" % (i % 7)})
                      for i, key in enumerate(every)]),
            ("deposit", [("account", key, "deposit", {"amount": 1000 + i})
                         for i, key in enumerate(every)]),
            ("withdraw", [("account", key, "withdraw", {"amount": 300 + i % 50})
                          for i, key in enumerate(every) if i % 2 == 0])):
        began = time.monotonic()
        outcomes = list(client.send_many(batch, window=64))
        counts = record(client, state, outcomes, batch)
        ok = sum(c["ok"] for c in counts.values())
        say("   %-8s %4d commands, %4d acknowledged in %.2fs" % (
            label, len(batch), ok, time.monotonic() - began))
        for group, count in counts.items():
            total[group].update(count)
        if ok != len(batch):
            show(counts)
            return False
    show(total)
    forwarded = {}
    for node_id in sorted(client.map.nodes):
        with client.node(node_id) as node:
            forwarded[node_id] = node.stats()["commands_forwarded"]
    say("   commands the nodes had to forward: %s (the client went straight to leaders;"
        " client counters: %s)" % (forwarded, dict(client.counters)))
    return all(count == 0 for count in forwarded.values())


def deposit_round(client, state, keys, amount):
    batch = [("account", key, "deposit", {"amount": amount}) for group in keys
             for key in keys[group]]
    began = time.monotonic()
    outcomes = list(client.send_many(batch, window=64, timeout=2.0, redirects=3))
    counts = record(client, state, outcomes, batch)
    say("   %d deposits over every group in %.2fs:" % (len(batch), time.monotonic() - began))
    show(counts)
    return counts


def phase_outage(client, state, down):
    keys = accounts(client)
    others = [g for g in client.map.groups if g != down]

    def refused(counts, why):
        good = (counts[down]["ok"] == 0
                and all(counts[g]["ok"] == ACCOUNTS_PER_GROUP for g in others))
        if not good:
            say("cluster-demo: UNEXPECTED: group %d should refuse every command (%s), the "
                "others take every one" % (down, why))
        return good

    say("   at once: ZooKeeper still lists n%d, whose endpoint takes no connection" % down)
    good = refused(deposit_round(client, state, keys, 10), "unreachable")
    # once ZooKeeper has expired the node's session, no node names a leader
    began = time.monotonic()
    while client.refresh().leader(down) is not None:
        if time.monotonic() - began > 30:
            say("cluster-demo: UNEXPECTED: ZooKeeper still lists group %d's leader" % down)
            return False
        time.sleep(0.1)
    say("   %.1fs later ZooKeeper has dropped n%d's session: group %d has no leader; the client "
        "sends its commands to any node, which answers why" % (
            time.monotonic() - began, down, down))
    good = refused(deposit_round(client, state, keys, 20), "no_leader") and good
    other = next(n for n in client.map.nodes.values() if n.get("group") != down)
    with zcqrs.Client(command=other["command"]) as plain:
        try:
            plain.send("account", keys[down][0], "deposit", {"amount": 10}, timeout=15)
            say("cluster-demo: UNEXPECTED: %s acknowledged a command of group %d"
                % (other["node"], down))
            return False
        except zcqrs.Error as error:
            answer = error.reply
            say("   a plain zcqrs.Client through %s, for group %d: %s, reason %s, group %s"
                % (other["node"], down, error.code, answer.get("reason"), answer.get("group")))
    return good and answer.get("group") == down and answer.get("reason") == "no_leader"


def phase_recover(client, state):
    keys = accounts(client)
    deadline = time.monotonic() + 60
    for group in keys:
        while True:
            try:
                client.health(group=group, timeout=2)
                result = client.send("account", keys[group][0], "deposit", {"amount": 1},
                                     timeout=2)
                record(client, state, [result], [("account", keys[group][0], "deposit")])
                break
            except zcqrs.Error as error:
                if time.monotonic() > deadline:
                    say("   group %d does not serve: %s" % (group, error))
                    return False
                time.sleep(0.1)
    batch = [("account", key, "deposit", {"amount": 5}) for group in keys
             for key in keys[group]]
    outcomes = list(client.send_many(batch, window=64))
    counts = record(client, state, outcomes, batch)
    say("   every group serves again; %d more deposits:" % len(batch))
    show(counts)
    return all(c["ok"] == ACCOUNTS_PER_GROUP for c in counts.values())


def phase_check(client, state):
    acknowledged = [json.loads(line) for line in open(state)]
    logs = {}
    for group in sorted(client.map.groups):
        logs[group] = list(client.read_all(group))
    failures = []
    by_id = collections.defaultdict(list)
    for group, events in logs.items():
        positions = [e["position"] for e in events]
        if positions != list(range(1, len(positions) + 1)):
            failures.append("group %d's log has holes or is out of order" % group)
        for event in events:
            by_id[event["command"]].append((group, event["position"]))
    for ack in acknowledged:
        found = by_id.get(ack["id"], [])
        if found != [(ack["group"], ack["position"])] * ack["events"] or not found:
            failures.append("command %s (%s, group %d, position %d): in the logs at %s"
                            % (ack["id"], ack["stream"], ack["group"], ack["position"], found))
    twice = [cid for cid, where in by_id.items() if len(where) > 1]
    say("   %d commands acknowledged; the logs hold %s events; %d acknowledged commands "
        "not exactly once; %d command ids twice in the logs" % (
            len(acknowledged), {g: len(e) for g, e in logs.items()},
            len([f for f in failures if f.startswith("command")]), len(twice)))
    failures += ["command %s in the logs %d times" % (cid, len(by_id[cid])) for cid in twice]

    # the bank: balances folded from the logs, the accounts view, totals
    folded = collections.Counter()
    for events in logs.values():
        for event in events:
            amount = (event.get("data") or {}).get("amount", 0)
            if event["type"] == "deposited":
                folded[event["key"]] += amount
            elif event["type"] == "withdrawn":
                folded[event["key"]] -= amount
    session = dict(client.session)
    for group in logs:          # views up to the end of each log as read above
        if logs[group]:
            session[group] = max(session.get(group, 0), logs[group][-1]["position"])
    if client.cluster_wide is None:
        client.get("totals", "bank")    # a first view query: its reply tells
    if client.cluster_wide:
        say("   the nodes' views are cluster-wide (replies carry `positions`): "
            "one node's totals against the whole bank")
        totals = client.get("totals", "bank", after=session)
        rows = list(client.list("accounts", after=session, page_size=1000))
        balance, count = totals["balance"], totals["accounts"]
    else:
        say("   the nodes' views are per group (no `positions` in replies): "
            "each group's totals and accounts, summed")
        balance = count = 0
        rows = []
        for group in logs:
            wait = {group: session[group]} if group in session else None
            totals = client.get("totals", "bank", group=group, after=wait) or {}
            balance += totals.get("balance", 0)
            count += totals.get("accounts", 0)
            rows += list(client.list("accounts", group=group, after=wait, page_size=1000))
    view_sum = sum(row["balance"] for row in rows)
    view = {row["key"]: row["balance"] for row in rows}
    say("   totals: balance %d over %d accounts; the accounts view sums to %d over %d rows; "
        "the logs fold to %d" % (balance, count, view_sum, len(rows), sum(folded.values())))
    if not (balance == view_sum == sum(folded.values()) and count == len(rows)):
        failures.append("totals, the accounts view and the logs disagree")
    mismatched = [key for key in set(view) | set(folded) if view.get(key) != folded.get(key, 0)
                  and (key in view)]
    if mismatched:
        failures.append("%d accounts differ from their logs, e.g. %s"
                        % (len(mismatched), mismatched[:3]))
    for failure in failures[:20]:
        say("cluster-demo: UNEXPECTED: " + failure)
    return not failures


def main():
    # die of Ctrl-C as a signal, so that cluster-demo.sh's trap runs at once
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    state, seeds, phase = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
    with zcqrs.Client.connect_cluster(seeds, timeout=5, redirects=3,
                                      connect_timeout=0.5) as client:
        if phase == "load":
            good = phase_load(client, state, None)
        elif phase == "outage":
            good = phase_outage(client, state, int(sys.argv[4]))
        elif phase == "recover":
            good = phase_recover(client, state)
        elif phase == "check":
            good = phase_check(client, state)
        else:
            raise SystemExit("unknown phase %s" % phase)
    sys.exit(0 if good else 1)


if __name__ == "__main__":
    main()
