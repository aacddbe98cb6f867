"""The bank invariant under send_many, and send_many's throughput (printed)."""

import random
import time

import zcqrs
from conftest import uniq


def test_invariant_after_ten_thousand_commands(target):
    rng = random.Random(20240611)
    owner = uniq("bank-")
    keys = [uniq("b") for _ in range(200)]
    commands = [("account", key, "open", {"owner": owner,
                                          "overdraft": rng.choice((0, 0, 100))})
                for key in keys]
    while len(commands) < 10_000:
        key = rng.choice(keys)
        roll = rng.random()
        if roll < 0.55:
            commands.append(("account", key, "deposit", {"amount": rng.randint(1, 1000)}))
        elif roll < 0.98:
            commands.append(("account", key, "withdraw", {"amount": rng.randint(1, 1500)}))
        else:
            commands.append(("account", key, "close", {}))

    with target.client() as client:
        before = client.get("totals", "bank", min_position=client.head())
        outcomes = list(client.send_many(commands))
        assert len(outcomes) == len(commands)

        expected = {key: 0 for key in keys}
        closed = set()
        kinds = {}
        position = 0
        for command, outcome in zip(commands, outcomes):
            kind = command[2]
            kinds.setdefault((kind, type(outcome).__name__), 0)
            kinds[(kind, type(outcome).__name__)] += 1
            if isinstance(outcome, zcqrs.Error):
                assert isinstance(outcome, zcqrs.Rejected), (command, outcome)
                continue
            position = max(position, outcome.position)
            if kind == "deposit":
                expected[command[1]] += command[3]["amount"]
            elif kind == "withdraw":
                expected[command[1]] -= command[3]["amount"]
            elif kind == "close":
                closed.add(command[1])
        assert kinds[("open", "CommandResult")] == 200
        assert kinds.get(("withdraw", "Rejected"), 0) > 0         # the rule was exercised

        rows = {row["key"]: row for row in
                client.list("accounts", "owner", owner, min_position=position, page_size=1000)}
        assert {key: row["balance"] for key, row in rows.items()} == expected
        assert {key for key, row in rows.items() if row["status"] == "closed"} == closed
        accepted = sum(expected.values())
        assert sum(row["balance"] for row in rows.values()) == accepted

        after = client.get("totals", "bank", min_position=position)
        before_balance = before["balance"] if before else 0
        before_events = before["events"] if before else 0
        assert after["balance"] - before_balance == accepted
        # every event is counted by totals; this node's whole log since `before`
        # is this test's events (tests run one at a time)
        written = sum(o.events for o in outcomes if isinstance(o, zcqrs.CommandResult))
        assert after["events"] - before_events == written
        # and totals agrees with the accounts view as a whole
        everything = client.list("accounts", min_position=position, page_size=1000)
        assert after["balance"] == sum(row["balance"] for row in everything)


def test_send_many_throughput(target, capsys):
    """20,000 open/deposit commands through send_many; the rate is printed, not asserted."""
    prefix = uniq("t")
    count = 20_000

    def commands():
        for index in range(count):
            key = "%s-%d" % (prefix, index // 2)
            if index % 2 == 0:
                yield ("account", key, "open", {"owner": "bench"})
            else:
                yield ("account", key, "deposit", {"amount": 100})

    with target.client() as client:
        started = time.perf_counter()
        cpu = time.process_time()
        failed = sum(isinstance(o, zcqrs.Error) for o in client.send_many(commands()))
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    assert failed == 0
    kind = "embedded node" if isinstance(target, zcqrs.Node) else "zcqrsd"
    with capsys.disabled():
        print("\nsend_many, %s: %d commands in %.2fs = %.0f commands/s "
              "(Python process CPU %.2fs, window 256)" % (kind, count, elapsed,
                                                        count / elapsed, cpu))
