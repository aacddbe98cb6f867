"""zcqrs.subscription: a catch-up subscription to a node's event log.

A Subscription yields every event from a starting position, exactly once
and in log order, whatever PUB/SUB loses:

    reading --(a page shorter than `batch`)--> live
    live    --(event beyond position+1,
               or heartbeat head beyond position)--> reading

- reading: pages of ``read`` from position+1 on the query endpoint.
- live: events from the SUB socket. One at position+1 is taken; one at or
  below the position is a duplicate and skipped; one beyond position+1
  means messages were lost (slow subscriber, reconnect, slow joiner), so
  the subscription goes back to reading: the log has every event the SUB
  could have shown, since events are published only once durable.

The SUB socket is connected before the first read, so nothing published
while catching up is missed for good: it is either read or received live,
and duplicates are dropped by position. Topics filter on the client side
(the SUB takes everything) so that positions stay contiguous and gap
detection exact.
"""

from __future__ import annotations

import collections
import time
from typing import Any, Deque, Dict, Iterable, Iterator, Optional, Tuple

import msgpack
import zmq

from .client import Client

__all__ = ["Subscription"]

_HEARTBEAT = b"$heartbeat"


class Subscription:
    """An iterator over a node's events from ``from_position`` on, live after catching up.

    >>> with zcqrs.Subscription(client, from_position=1) as events:
    ...     for event in events:                       # blocks for the next one
    ...         print(event["position"], event["type"], event["data"])

    or, with a deadline: ``event = events.next(timeout=1.0)`` (None when
    nothing came).

    Each event is a dict with the keys of ZCQ/1 section 4: ``position``,
    ``node``, ``stream``, ``aggregate``, ``key``, ``version``, ``type``,
    ``time``, ``command``, ``meta``, ``data``.

    Args:
        client:        a :class:`zcqrs.Client` with ``query`` and ``events``
                       endpoints (used from this thread only).
        from_position: the first position wanted (1 = the whole log).
        topics:        stream prefixes to keep, as ZCQ/1 topics
                       (``"account/"``, ``"account/42/"``); None = all.
        batch:         events per ``read`` while catching up (1-10,000).

    Attributes:
        position: the last log position handed out (or filtered out).
        head:     the highest log head seen (heartbeats, reads, events).
        lag:      ``head - position``.
        gaps:     how many times a live gap sent it back to the log.
    """

    def __init__(self, client: Client, from_position: int = 1,
                 topics: Optional[Iterable[str]] = None, *, batch: int = 1000) -> None:
        if not client.events:
            raise ValueError("the client has no events endpoint")
        if from_position < 1:
            raise ValueError("from_position starts at 1")
        if not 1 <= batch <= 10000:
            raise ValueError("batch must be 1-10000")
        self.client = client
        self._fetched = from_position - 1        # last position taken from the log or SUB
        self.head = 0
        self.gaps = 0
        self.batch = batch
        self.topics: Optional[Tuple[str, ...]] = tuple(topics) if topics is not None else None
        if self.topics is not None and "" in self.topics:
            self.topics = None
        self._ready: Deque[Dict[str, Any]] = collections.deque()
        self._reading = True
        self._closed = False
        self._sock = client.context.socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self._sock.connect(client.events)

    # ------------------------------------------------------------------

    @property
    def position(self) -> int:
        """The last log position handed out (or skipped by the topic filter)."""
        if self._ready:
            return self._ready[0]["position"] - 1
        return self._fetched

    @property
    def lag(self) -> int:
        """Events the subscription is behind the node's head (as far as it knows)."""
        return max(0, self.head - self.position)

    @property
    def caught_up(self) -> bool:
        """True once following live events (not reading the log)."""
        return not self._reading

    def next(self, timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """The next event, waiting up to ``timeout`` seconds (None = forever).

        Returns None when no event came in time. Log reads on the way may
        raise :class:`zcqrs.Error` (e.g. :class:`zcqrs.Timeout` when the
        query endpoint does not answer).
        """
        if self._closed:
            raise ValueError("the subscription is closed")
        deadline = None if timeout is None else time.monotonic() + timeout
        ready = self._ready
        while True:
            if ready:
                return ready.popleft()
            if self._reading:
                self._read_page()
                continue
            # live: take what the SUB has, or wait for it
            if deadline is None:
                wait = -1
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    wait = 0
                else:
                    wait = max(1, int(remaining * 1000))
            if not self._sock.poll(wait):
                return None
            self._on_message(self._sock.recv_multipart())

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return self

    def __next__(self) -> Dict[str, Any]:
        if self._closed:
            raise StopIteration
        event = self.next()
        assert event is not None
        return event

    def close(self) -> None:
        """Close the SUB socket (the client stays open). Idempotent."""
        if not self._closed:
            self._closed = True
            self._sock.close(linger=0)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<zcqrs.Subscription position=%d head=%d %s>" % (
            self.position, self.head, "live" if not self._reading else "reading")

    # ------------------------------------------------------------------

    def _read_page(self) -> None:
        reply = self.client.call({"op": "read", "from": self._fetched + 1, "limit": self.batch})
        events = reply.get("events") or []
        head = reply.get("head")
        if isinstance(head, int) and head > self.head:
            self.head = head
        # positions the node removed (truncation, retention): the reply
        # lists the ones it skipped, and only those are crossed
        removed = set()
        for entry in reply.get("removed") or []:
            if isinstance(entry, list) and len(entry) == 2 and all(isinstance(x, int) for x in entry):
                removed.add((entry[0], entry[1]))
        for event in events:
            position = event.get("position")
            if (isinstance(position, int) and position > self._fetched + 1
                    and (self._fetched + 1, position - 1) in removed):
                self._fetched = position - 1
            self._accept(event)
        # a page may be cut short by the node's reply size cap: reading from
        # the log ends on an empty page or at the head, not on a short page
        if not events or self._fetched >= self.head:
            self._reading = False

    def _on_message(self, frames: list) -> None:
        if len(frames) != 2:
            return
        topic, body = frames
        try:
            message = msgpack.unpackb(body, raw=False, strict_map_key=False)
        except Exception:
            return                              # not ZCQ/1: ignore
        if not isinstance(message, dict):
            return
        if topic == _HEARTBEAT:
            head = message.get("head")
            if isinstance(head, int):
                if head > self.head:
                    self.head = head
                if head > self._fetched:
                    self._gap()
            return
        position = message.get("position")
        if not isinstance(position, int):
            return
        if position > self.head:
            self.head = position
        if position <= self._fetched:
            return                              # already had it
        if position == self._fetched + 1:
            self._accept(message)
        else:
            self._gap()                         # the log has it, and the ones before

    def _gap(self) -> None:
        self.gaps += 1
        self._reading = True

    def _accept(self, event: Dict[str, Any]) -> None:
        position = event.get("position")
        if not isinstance(position, int) or position != self._fetched + 1:
            # read replies are contiguous from position+1; anything else is
            # a node bug: do not skip over a hole
            if isinstance(position, int) and position <= self._fetched:
                return
            raise RuntimeError("event log out of order: expected position %d, got %r"
                               % (self._fetched + 1, position))
        self._fetched = position
        if self.topics is not None:
            stream = event.get("stream", "")
            topic = stream + "/"
            if not any(topic.startswith(prefix) for prefix in self.topics):
                return
        self._ready.append(event)
