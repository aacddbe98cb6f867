"""zcqrs.cluster: a client that knows the cluster's slot map (cluster.md).

Any node of a cluster takes any command and forwards it to its group's
leader (cluster.md section 3), so a plain :class:`zcqrs.Client` works
against one. A :class:`ClusterClient` saves that hop: it fetches the map
with the ``cluster`` query op, computes each command's slot exactly as the
nodes do (CRC16 XMODEM of the stream name, Redis hash tags, ``mod S``) and
sends the command straight to the command endpoint of its group's leader.

The map goes stale when a leader moves or a node comes back on other
ports. The client then refreshes the whole map, and sends the command
again with the same id (ids are idempotent, so a retry is never applied
twice), at most ``redirects`` times per command:

- on an ``unavailable`` reply (``no_leader``, ``forwarding_failed``,
  ``overloaded``, ..., with or without ``owner``) or a ``timeout`` reply
  with reason ``outcome_unknown``;
- on a connection error: the leader's endpoint accepts no connection
  within ``connect_timeout`` (its sockets are ZMQ_IMMEDIATE, so a command
  is never queued for a peer that is not there);
- when no reply came within the attempt's ``timeout``;
- and, between commands, every ``refresh_interval`` seconds.

A reply from a node other than the leader the map named also marks the map
stale (the command was forwarded: it is still correct, one hop slower).

Read-your-writes across groups: every command reply carries ``group`` and
``position`` (in that group's log); the client keeps the pointwise maximum
as its ``session`` (``{group: position}``). A view read with
``after=result`` (or ``session=True``) passes ``min_positions`` (and, for a
single group, ``min_position`` with ``group``), so the node answers only
once its views have applied those writes (cluster.md section 5).

A node whose views are fed by its own group only (it answers no
``positions`` map) waits on ``min_position`` against its own log; a read
that waits on one group is therefore sent to a node of that group, which is
correct on both kinds of node. A wait on several groups needs cluster-wide
views: on nodes without them it raises ``ValueError`` unless ``group=``
says which group's node to ask.

Not thread-safe, like :class:`zcqrs.Client`: use one per thread.
"""

from __future__ import annotations

import binascii
import bisect
import collections
import itertools
import time
import uuid
from typing import (Any, Callable, Deque, Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Tuple, Union)

import msgpack
import zmq

from .client import Client, CommandResult, Outcome, Page, _result
from .errors import Error, Invalid, NoAnswer, Timeout, Unavailable, error_from_reply

__all__ = ["ClusterClient", "ClusterMap", "crc16", "slot_of"]

SLOTS = 16384


def crc16(data: bytes) -> int:
    """CRC16 as Redis Cluster's: XMODEM (poly 0x1021, init 0, no reflection).

    ``crc16(b"123456789") == 0x31C3``.
    """
    return binascii.crc_hqx(data, 0)


def hash_part(stream: bytes) -> bytes:
    """The bytes of a stream name that are hashed: Redis's hash tags.

    When the name holds ``{`` and a later ``}`` with at least one byte
    between, only those bytes; else the whole name.
    """
    start = stream.find(b"{")
    if start >= 0:
        end = stream.find(b"}", start + 1)
        if end > start + 1:
            return stream[start + 1:end]
    return stream


def slot_of(stream: Union[str, bytes], slots: int = SLOTS) -> int:
    """The slot of a stream name ``aggregate/key``: ``CRC16(hash part) mod slots``."""
    raw = stream.encode() if isinstance(stream, str) else stream
    return crc16(hash_part(raw)) % slots


class ClusterMap:
    """One snapshot of the ``cluster`` document, indexed for routing.

    Attributes:
        id:       the cluster id.
        slots:    S.
        version:  the map's version (``map_version``).
        ranges:   ``[(first, last, group), ...]`` sorted by first slot.
        groups:   ``{group: {"leader", "epoch", "isr", "hw", "replicas"}}``.
        nodes:    ``{node id: {"node", "group", "role", "command", "events", "query"}}``.
        document: the reply as it came.
        fetched:  ``time.monotonic()`` when it was fetched.
    """

    def __init__(self, document: Mapping[str, Any]) -> None:
        self.document = dict(document)
        self.id = document.get("id")
        self.slots = int(document["slots"])
        self.version = document.get("map_version")
        self.ranges: List[Tuple[int, int, int]] = sorted(
            (int(first), int(last), int(group)) for first, last, group in document["map"])
        self._firsts = [first for first, _, _ in self.ranges]
        self.groups: Dict[int, Dict[str, Any]] = {
            int(group["group"]): dict(group) for group in document.get("groups") or []}
        self.nodes: Dict[str, Dict[str, Any]] = {
            node["node"]: dict(node) for node in document.get("nodes") or []
            if isinstance(node, dict) and isinstance(node.get("node"), str)}
        self.fetched = time.monotonic()
        if not self.ranges or self.ranges[0][0] != 0 or self.ranges[-1][1] != self.slots - 1:
            raise Invalid("the cluster's map does not cover slots 0..%d" % (self.slots - 1))

    def group_of_slot(self, slot: int) -> int:
        index = bisect.bisect_right(self._firsts, slot) - 1
        first, last, group = self.ranges[index]
        if not first <= slot <= last:
            raise Invalid("slot %d is in no range of the cluster's map" % slot)
        return group

    def group_of(self, stream: str) -> int:
        """The group whose log holds ``stream`` (``aggregate/key``)."""
        return self.group_of_slot(slot_of(stream, self.slots))

    def leader(self, group: int) -> Optional[Dict[str, Any]]:
        """The live node that leads ``group`` (its registration), or None."""
        state = self.groups.get(group)
        leader = state.get("leader") if state else None
        return self.nodes.get(leader) if isinstance(leader, str) else None

    def query_endpoints(self, group: Optional[int] = None) -> List[str]:
        """Query endpoints of ``group``'s live replicas, its leader first;
        with no group, of every live node."""
        if group is None:
            return [node["query"] for node in self.nodes.values() if node.get("query")]
        found = []
        leader = self.leader(group)
        if leader and leader.get("query"):
            found.append(leader["query"])
        for node in self.nodes.values():
            if node.get("group") == group and node.get("query") and node["query"] not in found:
                found.append(node["query"])
        return found

    def command_endpoints(self) -> List[str]:
        return [node["command"] for node in self.nodes.values() if node.get("command")]


#: what ``after=`` of a view read takes
After = Union[CommandResult, Mapping[Any, int], Iterable[CommandResult]]


class _Command:
    """A command of a batch on its way: its request and where it went."""

    __slots__ = ("index", "id", "request", "body", "stream", "group", "leader",
                 "endpoint", "owner", "attempts", "deadline", "not_before", "uncertain")

    def __init__(self, index: int, request: Dict[str, Any], body: bytes) -> None:
        self.index = index
        self.id: str = request["id"]
        self.request = request
        self.body = body
        self.stream = request["aggregate"] + "/" + request["key"]
        self.group: Optional[int] = None
        self.leader: Optional[str] = None     # the node id the map named
        self.endpoint: Optional[str] = None   # where the last attempt went
        self.owner: Optional[str] = None      # where a node said the leader is
        self.attempts = 0
        self.deadline = 0.0
        self.not_before = 0.0
        self.uncertain = False      # an attempt went unanswered: it may have been applied


class ClusterClient:
    """A client of a whole cluster: commands straight to their group's leader.

    >>> client = zcqrs.ClusterClient(["tcp://198.18.0.1:7402", "tcp://198.18.0.2:7402"])
    >>> result = client.send("account", "42", "open", {"owner": "ada"})
    >>> result.group, result.node, result.position
    (2, 'n2', 17)
    >>> client.get("accounts", "42", after=result)
    {'key': '42', 'owner': 'ada', 'balance': 0, 'status': 'open', 'version': 1}

    ``seeds`` are query endpoints of some nodes (any of them answers the
    ``cluster`` op); once the map is known, every live node's query
    endpoint is a seed as well. The constructor fetches the map and raises
    :class:`zcqrs.Unavailable` when no seed answers within ``timeout``.
    """

    #: the shortest time between two fetches of the map (seconds)
    MIN_REFRESH = 0.02

    def __init__(self, seeds: Union[str, Sequence[str]], *, timeout: float = 5.0,
                 redirects: int = 3, connect_timeout: float = 1.0,
                 refresh_interval: float = 30.0,
                 context: Optional[zmq.Context] = None) -> None:
        """Args:
            seeds:            query endpoint(s) of cluster nodes.
            timeout:          default seconds to wait for a reply, per attempt.
            redirects:        how many times a command is sent again (same id)
                              after the map proved stale, before its last
                              error is raised; also bounds a query's tries.
            connect_timeout:  seconds a leader's endpoint has to accept a
                              connection before it counts as unreachable.
            refresh_interval: seconds after which the map is fetched again
                              before the next call.
        """
        if isinstance(seeds, str):
            seeds = [seeds]
        if not seeds:
            raise ValueError("ClusterClient needs at least one seed (a node's query endpoint)")
        if redirects < 0:
            raise ValueError("redirects must be >= 0")
        self.seeds = list(seeds)
        self.timeout = timeout
        self.redirects = redirects
        self.connect_timeout = connect_timeout
        self.refresh_interval = refresh_interval
        self.context = context or zmq.Context.instance()
        #: ``{group: position}``: the pointwise maximum of this client's own
        #: command replies; ``session=True`` reads wait for all of it.
        self.session: Dict[int, int] = {}
        #: what the client did: commands sent (``sent``, one per attempt),
        #: ``redirects`` (attempts after the first), ``refreshes`` (maps
        #: fetched), ``forwarded`` (replies from another node than the map's
        #: leader), ``unreachable`` (connection errors).
        self.counters: Dict[str, int] = collections.Counter()
        self.map: Optional[ClusterMap] = None
        self.cluster_wide: Optional[bool] = None   # do views answer `positions`? None: not seen
        self._commands: Dict[str, zmq.Socket] = {}  # command endpoint -> DEALER
        self._down: Dict[str, float] = {}           # command endpoint -> when found unreachable
        self._suspect: Dict[str, float] = {}        # query endpoint -> when it did not answer
        self._queries: Dict[str, Client] = {}       # query endpoint -> Client
        self._stale_since: Optional[float] = None   # when the map was last found stale
        self._closed = False
        self._packb = msgpack.Packer(use_bin_type=True).pack
        self.refresh()

    # ------------------------------------------------------------------
    # lifecycle

    def close(self) -> None:
        """Close every socket. Idempotent."""
        self._closed = True
        for sock in self._commands.values():
            sock.close(linger=0)
        for client in self._queries.values():
            client.close()
        self._commands.clear()
        self._queries.clear()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "ClusterClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        version = self.map.version if self.map else None
        return "<zcqrs.ClusterClient seeds=%r map_version=%r%s>" % (
            self.seeds, version, " closed" if self._closed else "")

    # ------------------------------------------------------------------
    # the map

    def refresh(self, timeout: Optional[float] = None) -> ClusterMap:
        """Fetch the whole map now, from the first node that answers.

        Known live nodes are asked first, then the seeds. Raises
        :class:`zcqrs.Unavailable` when none answers.
        """
        if self._closed:
            raise ValueError("the client is closed")
        if timeout is None:
            timeout = self.timeout
        candidates: List[str] = []
        if self.map is not None:
            candidates += self.map.query_endpoints()
        candidates += [seed for seed in self.seeds if seed not in candidates]
        # nodes that did not answer lately go last
        candidates.sort(key=lambda endpoint: self._suspect.get(endpoint, 0.0))
        # a node that has just died answers nothing: give each one a share
        # of the time, the first ones a little more
        per_node = max(0.2, min(timeout, timeout / max(1, len(candidates)) * 2))
        failures = []
        for endpoint in candidates:
            try:
                document = self._query(endpoint).call({"op": "cluster"}, per_node)
                fresh = ClusterMap(document)
            except (Error, zmq.ZMQError) as error:
                failures.append("%s: %s" % (endpoint, error))
                if isinstance(error, Timeout):
                    self._drop_query(endpoint)   # forget its queued requests
                    self._suspect[endpoint] = time.monotonic()
                continue
            self._suspect.pop(endpoint, None)
            if self.map is not None and fresh.id != self.map.id:
                failures.append("%s: another cluster (id %s)" % (endpoint, fresh.id))
                continue
            self.map = fresh
            self.counters["refreshes"] += 1
            return fresh
        raise Unavailable("no node answered the cluster op: %s" % "; ".join(failures),
                          reply={"error": "unavailable", "reason": "no_map"})

    def _fresh_map(self) -> ClusterMap:
        assert self.map is not None
        age = time.monotonic() - self.map.fetched
        # a map found stale is fetched again once for every error seen
        # before the fetch, and not more often than every MIN_REFRESH
        # seconds: a batch to a dead group would ask at every try
        stale = self._stale_since is not None and self._stale_since >= self.map.fetched
        if (stale and age >= self.MIN_REFRESH) or age > self.refresh_interval:
            try:
                self.refresh()
            except Unavailable:
                if self.map is None:
                    raise
                # keep the last map: the commands' own errors will tell
        return self.map

    def cluster(self) -> Dict[str, Any]:
        """The ``cluster`` document, fetched now (see cluster.md section 5)."""
        return dict(self.refresh().document)

    def group_of(self, stream: str) -> int:
        """The group whose log holds ``stream`` (``"account/42"``), by the current map."""
        return self._fresh_map().group_of(stream)

    # ------------------------------------------------------------------
    # sockets

    def _command_socket(self, endpoint: str) -> zmq.Socket:
        sock = self._commands.get(endpoint)
        if sock is None:
            sock = self.context.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 0)
            sock.setsockopt(zmq.RCVHWM, 0)
            # queue nothing for a peer that is not connected: a send to a
            # dead leader fails at once instead of waiting for a timeout
            sock.setsockopt(zmq.IMMEDIATE, 1)
            sock.connect(endpoint)
            self._commands[endpoint] = sock
        return sock

    def _query(self, endpoint: str) -> Client:
        client = self._queries.get(endpoint)
        if client is None:
            client = Client(query=endpoint, timeout=self.timeout, context=self.context)
            self._queries[endpoint] = client
        return client

    def _drop_query(self, endpoint: str) -> None:
        client = self._queries.pop(endpoint, None)
        if client is not None:
            client.close()

    def _push(self, endpoint: str, body: bytes) -> bool:
        """Send without queueing for an absent peer. A fresh socket gets
        connect_timeout to connect; an endpoint found unreachable less than
        that long ago gets none (so a batch does not stall on a dead leader
        at every command). False: the endpoint is unreachable."""
        sock = self._command_socket(endpoint)
        try:
            sock.send(body, zmq.NOBLOCK)
            self._down.pop(endpoint, None)
            return True
        except zmq.Again:
            pass
        down = self._down.get(endpoint)
        if down is None or time.monotonic() - down > self.connect_timeout:
            if sock.poll(max(1, int(self.connect_timeout * 1000)), zmq.POLLOUT):
                try:
                    sock.send(body, zmq.NOBLOCK)
                    self._down.pop(endpoint, None)
                    return True
                except zmq.Again:
                    pass
        self._down[endpoint] = time.monotonic()
        return False

    # ------------------------------------------------------------------
    # commands

    def send(self, aggregate: str, key: str, type: str, data: Any = None, *,
             expect: Optional[int] = None, meta: Optional[Mapping[str, Any]] = None,
             id: Optional[str] = None, timeout: Optional[float] = None,
             redirects: Optional[int] = None) -> CommandResult:
        """Send one command to its group's leader and wait for its outcome.

        Arguments as :meth:`zcqrs.Client.send`, except ``redirects`` (default:
        the client's) which bounds the attempts after the first; every
        attempt carries the same id. The result adds ``group`` and ``node``.

        Raises the node's error (``Rejected``, ``Conflict``, ...), or after
        the last attempt: ``Unavailable`` (the node's, or ``reason``
        ``unreachable`` when the leader's endpoint took no connection: then
        the command was not sent), ``NoAnswer``, a ``Timeout`` (no reply: the outcome is
        unknown, retry with ``id=error.id``).
        """
        request: Dict[str, Any] = {"id": id or uuid.uuid4().hex, "aggregate": aggregate,
                                   "key": key, "type": type}
        if data is not None:
            request["data"] = data
        if expect is not None:
            request["expect"] = expect
        if meta is not None:
            request["meta"] = meta
        outcome = next(self._run(iter([request]), 1, timeout, redirects))
        if isinstance(outcome, Error):
            raise outcome
        return outcome

    def send_many(self, commands: Iterable[Sequence[Any]], window: int = 256, *,
                  timeout: Optional[float] = None, redirects: Optional[int] = None,
                  meta: Optional[Mapping[str, Any]] = None) -> Iterator[Outcome]:
        """Pipeline many commands, each to its group's leader; yield outcomes in input order.

        ``commands`` as :meth:`zcqrs.Client.send_many` (``(aggregate, key,
        type[, data])`` tuples, consumed lazily). Up to ``window`` commands
        are in flight across all groups. Each outcome is a
        :class:`CommandResult` or the exception instance of that command's
        failure: a group without a leader fails its own commands (after
        ``redirects`` attempts) and never stops the others.
        """
        if window < 1:
            raise ValueError("window must be >= 1")
        prefix = uuid.uuid4().hex + "-"
        counter = itertools.count()

        def requests() -> Iterator[Dict[str, Any]]:
            for command in commands:
                request = {"id": prefix + str(next(counter)), "aggregate": command[0],
                           "key": command[1], "type": command[2]}
                if len(command) > 3 and command[3] is not None:
                    request["data"] = command[3]
                if meta is not None:
                    request["meta"] = meta
                yield request
        return self._run(requests(), window, timeout, redirects)

    def _run(self, requests: Iterator[Dict[str, Any]], window: int,
             timeout: Optional[float], redirects: Optional[int]) -> Iterator[Outcome]:
        """The engine of send and send_many: route, send, take replies, retry."""
        if self._closed:
            raise ValueError("the client is closed")
        if timeout is None:
            timeout = self.timeout
        if redirects is None:
            redirects = self.redirects
        pending: Dict[str, _Command] = {}               # sent, waiting for a reply
        again: Deque[_Command] = collections.deque()    # to send (again) at not_before
        done: Dict[int, Outcome] = {}
        yielded = 0
        taken = 0
        exhausted = False
        poller = zmq.Poller()
        polled: Dict[zmq.Socket, str] = {}

        def finish(command: _Command, outcome: Outcome) -> None:
            if isinstance(outcome, Error) and outcome.id is None:
                outcome.id = command.id
            done[command.index] = outcome

        def retry(command: _Command, error: Error, stale: bool = True) -> None:
            """Send it again after a fresh map, or give up with error."""
            if stale:
                self._stale_since = time.monotonic()
            if command.attempts > redirects:
                if command.uncertain and not isinstance(error, Timeout):
                    # the last attempt was refused, but an earlier one went
                    # unanswered: whether the command was applied is unknown
                    error = NoAnswer("command %s: an attempt went unanswered, so the "
                                     "outcome is unknown (retry with the same id); the last "
                                     "attempt got: %s" % (command.id, error), id=command.id,
                                     reply={"error": "timeout", "reason": "outcome_unknown",
                                            "group": command.group})
                finish(command, error)
                return
            self.counters["redirects"] += 1
            command.not_before = time.monotonic() + min(0.05 * (2 ** (command.attempts - 1)), 1.0)
            again.append(command)

        def dispatch(command: _Command) -> None:
            """Route by the current map and send one attempt."""
            cmap = self._fresh_map()
            command.group = cmap.group_of(command.stream)
            leader = cmap.leader(command.group)
            command.attempts += 1
            owner, command.owner = command.owner, None
            if owner and owner != command.endpoint and (
                    leader is None or leader.get("command") == command.endpoint):
                # a node named the leader, and the map has not caught up:
                # go there (the reply says which node decided)
                command.leader = None
                endpoint = owner
            elif leader is None or not leader.get("command"):
                # no live leader in the map: any node forwards it or says why
                command.leader = None
                nodes = cmap.command_endpoints()
                if not nodes:
                    retry(command, Unavailable(
                        "no node of the cluster is alive in the map", id=command.id,
                        reply={"error": "unavailable", "group": command.group,
                               "reason": "no_leader"}))
                    return
                endpoint = nodes[command.attempts % len(nodes)]
            else:
                command.leader = leader["node"]
                endpoint = leader["command"]
            self.counters["sent"] += 1
            if not self._push(endpoint, command.body):
                self.counters["unreachable"] += 1
                retry(command, Unavailable(
                    "the command endpoint %s took no connection within %.3gs"
                    % (endpoint, self.connect_timeout), id=command.id,
                    reply={"error": "unavailable", "group": command.group,
                           "reason": "unreachable", "owner": endpoint}))
                return
            sock = self._commands[endpoint]
            if sock not in polled:
                poller.register(sock, zmq.POLLIN)
                polled[sock] = endpoint
            command.endpoint = endpoint
            command.deadline = time.monotonic() + timeout
            pending[command.id] = command

        def take(reply: Any, endpoint: str) -> None:
            if type(reply) is not dict:
                return
            command = pending.get(reply.get("id"))
            if command is None:
                return      # a late reply to an attempt already decided
            ok = reply.get("ok") is True
            if not ok and endpoint != command.endpoint:
                return      # an earlier attempt's failure: the last one decides
            del pending[command.id]
            if ok:
                if reply.get("stream") != command.stream:
                    finish(command, Invalid("command id %s answered for stream %r, not %s"
                                            % (command.id, reply.get("stream"), command.stream)))
                    return
                result = _result(reply)
                if result.group is not None:
                    if result.position > self.session.get(result.group, 0):
                        self.session[result.group] = result.position
                    if result.group != command.group:
                        self._stale_since = time.monotonic()      # the map put it elsewhere
                if command.leader is not None and result.node not in (None, command.leader):
                    self.counters["forwarded"] += 1
                    self._stale_since = time.monotonic()          # another node leads now
                finish(command, result)
                return
            error = error_from_reply(reply)
            code = reply.get("error")
            if code == "unavailable":
                owner = reply.get("owner")
                command.owner = owner if isinstance(owner, str) else None
                retry(command, error)
            elif code == "timeout" and reply.get("reason") == "outcome_unknown":
                command.uncertain = True
                retry(command, error)
            else:
                finish(command, error)

        try:
            while True:
                now = time.monotonic()
                # 1. send: first the commands to send again whose time has
                # come, then new ones, while the window has room
                for _ in range(len(again)):
                    if len(pending) >= window:
                        break
                    command = again.popleft()
                    if command.not_before > now:
                        again.append(command)
                    else:
                        dispatch(command)
                while not exhausted and len(pending) + len(again) < window:
                    try:
                        request = next(requests)
                    except StopIteration:
                        exhausted = True
                        break
                    command = _Command(taken, request, self._packb(request))
                    taken += 1
                    dispatch(command)
                # 2. yield what is ready, in input order
                while yielded in done:
                    outcome = done.pop(yielded)
                    yielded += 1
                    yield outcome
                if exhausted and not pending and not again and yielded == taken:
                    return
                # 3. wait for replies, until the next deadline or retry
                now = time.monotonic()
                wake = [command.deadline for command in pending.values()]
                wake += [command.not_before for command in again]
                wait = max(0.0, min(wake) - now) if wake else 0.0
                events = dict(poller.poll(max(1, int(wait * 1000)))) if polled else {}
                if not polled and wait > 0:
                    time.sleep(wait)
                for sock in events:
                    endpoint = polled.get(sock)
                    if endpoint is None:
                        continue
                    while True:
                        try:
                            raw = sock.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        take(msgpack.unpackb(raw, raw=False, strict_map_key=False), endpoint)
                # 4. attempts without a reply in time: the leader may be
                # gone; the same id goes again after a fresh map
                now = time.monotonic()
                for command in [c for c in pending.values() if c.deadline <= now]:
                    del pending[command.id]
                    command.uncertain = True
                    retry(command, NoAnswer("no reply to command %s from %s within %.3gs "
                                           "(%d attempt%s)"
                                           % (command.id, command.endpoint, timeout,
                                              command.attempts,
                                              "" if command.attempts == 1 else "s"),
                                           id=command.id))
        finally:
            for sock in polled:
                try:
                    poller.unregister(sock)
                except KeyError:
                    pass

    # ------------------------------------------------------------------
    # read-your-writes

    @staticmethod
    def positions_of(after: After) -> Dict[int, int]:
        """``{group: position}`` that ``after`` stands for (the pointwise max)."""
        if isinstance(after, CommandResult):
            results: Iterable[Any] = [after]
        elif isinstance(after, Mapping):
            return {int(group): int(position) for group, position in after.items()}
        else:
            results = after
        positions: Dict[int, int] = {}
        for result in results:
            if not isinstance(result, CommandResult) or result.group is None:
                raise ValueError("after= takes results of a cluster's commands "
                                 "(with a group), or a {group: position} map")
            if result.position > positions.get(result.group, 0):
                positions[result.group] = result.position
        return positions

    def _wait_for(self, after: Optional[After], session: bool) -> Dict[int, int]:
        positions = self.positions_of(after) if after is not None else {}
        if session:
            for group, position in self.session.items():
                if position > positions.get(group, 0):
                    positions[group] = position
        return positions

    def _view_call(self, request: Dict[str, Any], after: Optional[After], session: bool,
                   group: Optional[int], timeout: Optional[float]) -> Dict[str, Any]:
        """A view read, with the wait for ``after``/``session`` and its routing."""
        if timeout is None:
            timeout = self.timeout
        positions = self._wait_for(after, session)
        wait = timeout
        if positions:
            request["min_positions"] = {str(g): p for g, p in positions.items()}
            request["timeout_ms"] = max(0, int(timeout * 1000))
            wait = timeout + 2.0
            if group is None and len(positions) == 1:
                group = next(iter(positions))
            if group is not None and group in positions:
                # understood by every node of that group, with or without
                # cluster-wide views
                request["min_position"] = positions[group]
                request["group"] = group
            elif group is None and self.cluster_wide is False:
                raise ValueError(self._PER_GROUP % sorted(positions))
        reply = self._call(request, group, wait)
        if "positions" in reply:
            self.cluster_wide = True
        elif "position" in reply:
            self.cluster_wide = False
            if group is None and len(positions) > 1:
                # the node ignored min_positions: its views hold one group
                raise ValueError(self._PER_GROUP % sorted(positions))
        return reply

    _PER_GROUP = ("these nodes' views are fed by their own group only: a read that waits "
                  "on groups %s needs cluster-wide views, or group= to say which group's "
                  "node to ask")

    def _call(self, request: Mapping[str, Any], group: Optional[int],
              timeout: Optional[float]) -> Dict[str, Any]:
        """One query-endpoint request to a node of ``group`` (any node when
        None), trying the others on a timeout or ``unavailable``."""
        if self._closed:
            raise ValueError("the client is closed")
        last: Optional[Error] = None
        for attempt in range(self.redirects + 1):
            cmap = self._fresh_map()
            endpoints = cmap.query_endpoints(group)
            if not endpoints:
                last = Unavailable("no live node of group %s in the map" % group,
                                   reply={"error": "unavailable", "group": group,
                                          "reason": "no_leader"})
                self._stale_since = time.monotonic()
                time.sleep(min(0.05 * (2 ** attempt), 1.0))
                continue
            endpoint = endpoints[attempt % len(endpoints)]
            try:
                return self._query(endpoint).call(request, timeout)
            except Timeout as error:
                if error.reply:         # the node's own answer (min_position)
                    raise
                last = error
                self._drop_query(endpoint)
                self._stale_since = time.monotonic()
            except Unavailable as error:
                last = error
                self._stale_since = time.monotonic()
        assert last is not None
        raise last

    def call(self, request: Mapping[str, Any], *, group: Optional[int] = None,
             timeout: Optional[float] = None) -> Dict[str, Any]:
        """Any raw query-endpoint request, to a node of ``group`` (default: any)."""
        return self._call(request, group, timeout)

    def get(self, view: str, key: str, *, after: Optional[After] = None,
            session: bool = False, group: Optional[int] = None,
            timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """The row of ``view`` at ``key``, or None.

        ``after``: a :class:`CommandResult`, a list of them, or a ``{group:
        position}`` map: the node answers once its views have applied those
        writes. ``session=True``: once they have applied every write of this
        client. ``group``: ask a node of that group (for views that are fed by
        one group only); default: the group of ``after`` when it has one,
        else any node.
        """
        reply = self._view_call({"op": "get", "view": view, "key": key}, after, session,
                                group, timeout)
        return reply.get("row")

    def list_page(self, view: str, index: Optional[str] = None, value: Any = None, *,
                  after_key: Optional[str] = None, limit: int = 100,
                  after: Optional[After] = None, session: bool = False,
                  group: Optional[int] = None, timeout: Optional[float] = None) -> Page:
        """One page of ``view``; ``after_key`` is the previous page's ``next``.

        (``after`` here is the read-your-writes wait, as in :meth:`get`.)
        """
        request: Dict[str, Any] = {"op": "list", "view": view, "limit": limit}
        if index is not None:
            request["index"] = index
            request["value"] = value
        if after_key is not None:
            request["after"] = after_key
        reply = self._view_call(request, after, session, group, timeout)
        return Page(reply.get("rows") or [], reply.get("next"),
                    reply.get("position", 0), reply.get("head", 0))

    def list(self, view: str, index: Optional[str] = None, value: Any = None, *,
             after: Optional[After] = None, session: bool = False,
             group: Optional[int] = None, page_size: int = 100,
             timeout: Optional[float] = None) -> Iterator[Dict[str, Any]]:
        """Every row of ``view`` (or those whose ``index`` equals ``value``), page by page."""
        page = self.list_page(view, index, value, limit=page_size, after=after,
                              session=session, group=group, timeout=timeout)

        def pages(page: Page) -> Iterator[Dict[str, Any]]:
            while True:
                yield from page.rows
                if page.next is None:
                    return
                page = self.list_page(view, index, value, after_key=page.next,
                                      limit=page_size, group=group, timeout=timeout)
        return pages(page)

    def count(self, view: str, index: Optional[str] = None, value: Any = None, *,
              after: Optional[After] = None, session: bool = False,
              group: Optional[int] = None, timeout: Optional[float] = None) -> int:
        request: Dict[str, Any] = {"op": "count", "view": view}
        if index is not None:
            request["index"] = index
            request["value"] = value
        return self._view_call(request, after, session, group, timeout)["count"]

    def read(self, from_position: int = 1, limit: int = 1000, *, group: int,
             timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        """Up to ``limit`` committed events of ``group``'s log from ``from_position``,
        read through a node of that group."""
        return self._call({"op": "read", "from": from_position, "limit": limit,
                           "group": group}, group, timeout)["events"]

    def read_all(self, group: int, *, batch: int = 10000,
                 timeout: Optional[float] = None) -> Iterator[Dict[str, Any]]:
        """Every committed event of ``group``'s log, in position order."""
        position = 1
        while True:
            events = self.read(position, batch, group=group, timeout=timeout)
            if not events:
                return
            yield from events
            position = events[-1]["position"] + 1

    def health(self, *, group: Optional[int] = None,
               timeout: Optional[float] = None) -> Dict[str, Any]:
        reply = self._call({"op": "health"}, group, timeout)
        reply.pop("rid", None)
        reply.pop("ok", None)
        return reply

    def stats(self, *, group: Optional[int] = None,
              timeout: Optional[float] = None) -> Dict[str, Any]:
        return self._call({"op": "stats"}, group, timeout)["stats"]

    def node(self, node: str) -> Client:
        """A plain :class:`zcqrs.Client` for one node (by id) of the current map."""
        registration = self._fresh_map().nodes.get(node)
        if registration is None:
            raise Unavailable("node %s is not live in the cluster's map" % node,
                              reply={"error": "unavailable"})
        return Client(command=registration.get("command"), query=registration.get("query"),
                      events=registration.get("events"), timeout=self.timeout,
                      context=self.context)
