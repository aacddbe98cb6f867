"""Catch-up subscriptions: late start, live follow, gaps filled, no duplicates."""

import time

import zcqrs
from conftest import uniq


def drain_until(subscription, position, timeout=20.0):
    """Events from the subscription until `position` is reached (fails on a deadline)."""
    events = []
    deadline = time.monotonic() + timeout
    while subscription.position < position:
        remaining = deadline - time.monotonic()
        assert remaining > 0, "subscription stuck at %d, wanted %d (%r)" % (
            subscription.position, position, subscription)
        event = subscription.next(timeout=remaining)
        if event is not None:
            events.append(event)
    return events


def assert_contiguous(events, first, last):
    positions = [e["position"] for e in events]
    assert positions == list(range(first, last + 1)), (positions[:5], positions[-5:])


def burst(client, key, count, amount=1):
    outcomes = list(client.send_many(("account", key, "deposit", {"amount": amount})
                                     for _ in range(count)))
    assert all(isinstance(o, zcqrs.CommandResult) for o in outcomes)
    return outcomes


def test_late_start_catches_up_then_follows_live(client):
    key = uniq()
    first = client.send("account", key, "open", {"owner": "s"})
    last = burst(client, key, 240)[-1]
    # starts late: everything is in the log already; small pages to cross several
    with zcqrs.Subscription(client, from_position=first.position, batch=50) as sub:
        events = drain_until(sub, last.position)
        assert_contiguous(events, first.position, last.position)
        assert [e["version"] for e in events if e["stream"] == "account/" + key] \
            == list(range(1, 242))
        event = events[1]
        assert set(event) >= {"position", "node", "stream", "aggregate", "key", "version",
                              "type", "time", "command", "meta", "data"}
        # then live
        live = burst(client, key, 30)
        more = drain_until(sub, live[-1].position)
        assert_contiguous(more, last.position + 1, live[-1].position)
        assert sub.caught_up
        # heartbeats keep `head` current while idle: lag goes to 0
        deadline = time.monotonic() + 10
        while sub.head < live[-1].position or sub.lag:
            assert time.monotonic() < deadline, repr(sub)
            sub.next(timeout=0.1)
        assert sub.lag == 0


def test_gap_after_a_lost_connection_is_filled_from_the_log(client):
    key = uniq()
    opened = client.send("account", key, "open", {"owner": "g"})
    sub = zcqrs.Subscription(client, from_position=opened.position)
    try:
        drain_until(sub, opened.position)
        assert sub.caught_up and sub.gaps == 0
        # the SUB loses its connection: a burst is published while it is away
        sub._sock.disconnect(client.events)
        lost = burst(client, key, 200)
        sub._sock.connect(client.events)
        # the first live message after the reconnect (a heartbeat with a head
        # beyond the position, or an event beyond position+1) shows the gap
        after = client.send("account", key, "deposit", {"amount": 5})
        events = drain_until(sub, after.position)
        assert sub.gaps >= 1
        assert_contiguous(events, opened.position + 1, after.position)
        assert [e["command"] for e in events[:-1]] == [o.id for o in lost]
        assert events[-1]["command"] == after.id
        # and live again, no duplicates
        tail = burst(client, key, 20)
        more = drain_until(sub, tail[-1].position)
        assert_contiguous(more, after.position + 1, tail[-1].position)
    finally:
        sub.close()


def test_gap_when_not_iterating_during_a_burst(client):
    """Positions stay exact whatever arrives live and from the log meanwhile."""
    key = uniq()
    opened = client.send("account", key, "open", {"owner": "h"})
    with zcqrs.Subscription(client, from_position=opened.position) as sub:
        drain_until(sub, opened.position)
        # not iterating: events pile up in the SUB queue while a heartbeat
        # (every 100 ms here) may announce a head far ahead
        results = burst(client, key, 500)
        events = drain_until(sub, results[-1].position)
        assert_contiguous(events, opened.position + 1, results[-1].position)


def test_topics_filter_streams_but_positions_stay_exact(client):
    mine, other = uniq(), uniq()
    start = client.send("account", mine, "open", {"owner": "t"})
    client.send("account", other, "open", {"owner": "t"})
    commands = []
    for index in range(20):
        commands.append(("account", mine if index % 2 else other, "deposit", {"amount": 1}))
    outcomes = list(client.send_many(commands))
    with zcqrs.Subscription(client, from_position=start.position,
                            topics=["account/%s/" % mine]) as sub:
        events = drain_until(sub, outcomes[-1].position)
        assert {e["stream"] for e in events} == {"account/" + mine}
        assert [e["version"] for e in events] == list(range(1, 12))
        # live, filtered too
        live_other = client.send("account", other, "deposit", {"amount": 1})
        live_mine = client.send("account", mine, "deposit", {"amount": 1})
        more = drain_until(sub, live_mine.position)
        assert [e["position"] for e in more] == [live_mine.position]
        assert live_other.position < live_mine.position


def test_iterator_protocol(client):
    key = uniq()
    results = [client.send("account", key, "open", {"owner": "i"})] + burst(client, key, 4)
    sub = zcqrs.Subscription(client, from_position=results[0].position)
    seen = []
    for event in sub:
        seen.append(event["position"])
        if event["position"] == results[-1].position:
            break
    assert seen == [r.position for r in results]
    sub.close()
    assert list(sub) == []          # a closed subscription is an exhausted iterator
    sub.close()


def test_from_beyond_the_head_waits_for_new_events(client):
    head = client.head()
    with zcqrs.Subscription(client, from_position=head + 1) as sub:
        assert sub.next(timeout=0.05) is None
        result = client.send("account", uniq(), "open", {"owner": "j"})
        event = drain_until(sub, result.position)[-1]
        assert event["command"] == result.id


def test_subscription_crosses_removed_events(client):
    # a truncation removes events from the log: a subscription reading the
    # range crosses the positions the `read` reply lists as removed
    key = uniq()
    opened = client.send("account", key, "open", {"owner": "t"})
    deposits = burst(client, key, 5)
    truncated = client.send("account", key, "$truncate", {"before": 5})
    with zcqrs.Subscription(client, from_position=opened.position,
                            topics=["account/%s/" % key]) as sub:
        events = drain_until(sub, truncated.position)
    assert [e["version"] for e in events] == [5, 6, 7]
    assert events[-1]["type"] == "$truncated"
    assert events[-1]["data"] == {"before": 5}
    assert events[0]["position"] == deposits[3].position
