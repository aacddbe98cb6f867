#!/usr/bin/env python3
"""zcqrs from Python in five minutes: the bank domain, an embedded node.

Run it after building (from the repository's root):

    cmake -S . -B build -DPython3_EXECUTABLE=/usr/bin/python3 && cmake --build build -j
    PYTHONPATH=build/python /usr/bin/python3 bindings/python/examples/quickstart.py

What it shows, step by step:
  1. start a node inside this process (data in a temporary directory),
  2. send commands to the `account` aggregate, and see a business rule say no,
  3. read the `accounts` view with read-your-writes (min_position),
  4. send a batch with send_many,
  5. tail the event log with a Subscription.
To talk to a running zcqrsd instead, replace the Node with
    zcqrs.Client(command="tcp://127.0.0.1:7400", query="tcp://127.0.0.1:7402",
                 events="tcp://127.0.0.1:7401")
"""

import tempfile

import zcqrs


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="zcqrs-quickstart-") as data_dir:
        # 1. a node in this process: the bank domain, endpoints on free ports
        with zcqrs.Node(data_dir, domain="bank") as node, node.client() as client:
            print("node %s: commands on %s, queries on %s, events on %s"
                  % (node.id, node.command, node.query, node.events))

            # 2. commands: aggregate type, key, command type, payload (cents)
            client.send("account", "alice", "open", {"owner": "Alice"})
            client.send("account", "alice", "deposit", {"amount": 10_000})
            result = client.send("account", "alice", "withdraw", {"amount": 2_500})
            print("withdrawal accepted: stream %s is at version %d, log position %d"
                  % (result.stream, result.version, result.position))
            try:
                client.send("account", "alice", "withdraw", {"amount": 1_000_000})
            except zcqrs.Rejected as error:             # a business rule said no
                print("rejected, as it should be:", error.message)

            # 3. read your own write: the view answers once it has applied
            #    the command's position
            row = client.get("accounts", "alice", min_position=result.position)
            print("alice's account: balance %d cents, status %s"
                  % (row["balance"], row["status"]))

            # 4. many commands at once: pipelined, outcomes in input order
            batch = [("account", "bob", "open", {"owner": "Bob"})]
            batch += [("account", "bob", "deposit", {"amount": 100})] * 50
            outcomes = list(client.send_many(batch))
            accepted = [o for o in outcomes if isinstance(o, zcqrs.CommandResult)]
            print("send_many: %d of %d accepted" % (len(accepted), len(outcomes)))
            totals = client.get("totals", "bank", **client.consistent_with(*accepted))
            print("bank totals: %d open accounts, balance %d cents"
                  % (totals["accounts"], totals["balance"]))

            # 5. the event log: catch up from position 1, then follow live
            with zcqrs.Subscription(client, from_position=1) as events:
                for _ in range(4):
                    event = events.next(timeout=5.0)
                    print("event %d: %s %s %s" % (event["position"], event["stream"],
                                                  event["type"], event["data"]))
                print("... subscription at position %d, %d events behind the head"
                      % (events.position, events.lag))


if __name__ == "__main__":
    main()
