"""zcqrs.client: a pure-Python ZCQ/1 client (pyzmq + msgpack, nothing else).

Two DEALER sockets, one per request endpoint:

- command: requests are correlated with their replies by the command `id`.
  The id is chosen here (uuid4) and kept across retries, so the node
  applies a command at most once however many times it is sent.
- query: requests carry a `rid` (an int counter) echoed in the reply.

Replies that match no request still waiting (the late answer to a call that
timed out) are dropped. The events endpoint is only remembered: each
:class:`zcqrs.Subscription` opens its own SUB socket on it.

A Client is not thread-safe (ZeroMQ sockets are not): use one per thread.
"""

from __future__ import annotations

import collections
import itertools
import os
import time
import types
import uuid
from typing import (TYPE_CHECKING, Any, Deque, Dict, Iterable, Iterator, List, Mapping, NamedTuple,
                    Optional, Sequence, Union)

import msgpack
import zmq

from .errors import Error, Invalid, NoAnswer, Unavailable, error_from_reply

if TYPE_CHECKING:
    from .cluster import ClusterClient

__all__ = ["Client", "CommandResult", "Outcome", "Page", "default_endpoints", "endpoints_from_url"]

#: Where a Client with no endpoint connects when the environment says nothing.
DEFAULT_URL = "tcp://127.0.0.1:7400"
_VIEW_OPS = ("get", "list", "count")


def endpoints_from_url(url: str) -> Dict[str, str]:
    """The three endpoints of a node from its URL, ``tcp://HOST:PORT``.

    A node's endpoints are three consecutive ports: command ``PORT``,
    events ``PORT+1``, query ``PORT+2`` (zcqrsd's defaults 7400-7402).
    ``HOST:PORT`` alone means tcp. Raises ValueError for anything else.
    """
    if not isinstance(url, str):
        raise ValueError("a node URL is a string tcp://HOST:PORT, not %r" % (url,))
    rest = url[len("tcp://"):] if url.startswith("tcp://") else url
    if "://" in rest:
        raise ValueError("node URL %r: only tcp://HOST:PORT names three endpoints" % url)
    host, colon, port_text = rest.rpartition(":")
    if not colon or not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65533:
        raise ValueError("node URL %r is not tcp://HOST:PORT (PORT 1-65533: the command "
                         "port; events and query are the next two)" % url)
    port = int(port_text)
    return {"command": "tcp://%s:%d" % (host, port), "events": "tcp://%s:%d" % (host, port + 1),
            "query": "tcp://%s:%d" % (host, port + 2)}


def default_endpoints(environ: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The endpoints a Client with none given connects to, as the CLI picks them.

    ``ZCQRS_COMMAND``, ``ZCQRS_EVENTS`` and ``ZCQRS_QUERY`` from the
    environment, each one missing from ``ZCQRS_URL`` (see
    :func:`endpoints_from_url`), else ``tcp://127.0.0.1:7400`` (command),
    ``:7401`` (events) and ``:7402`` (query). Empty variables count as unset.
    """
    env = os.environ if environ is None else environ
    url = env.get("ZCQRS_URL") or DEFAULT_URL
    try:
        endpoints = endpoints_from_url(url)
    except ValueError as error:
        raise ValueError("ZCQRS_URL: %s" % error) from None
    for name in ("command", "events", "query"):
        value = env.get("ZCQRS_" + name.upper())
        if value:
            endpoints[name] = value
    return endpoints


def _unpack(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


class CommandResult(NamedTuple):
    """The outcome of an accepted command (the `ok` reply of ZCQ/1 section 3).

    Attributes:
        id:        the command id.
        stream:    ``"<aggregate>/<key>"``.
        version:   the stream's version after the command.
        position:  log position of the command's last event (or the log head
                   when it wrote none): pass it as ``min_position=`` to read
                   your own write.
        events:    how many events the command appended.
        duplicate: True when this id had already succeeded and nothing new
                   was applied (a retry).
        group:     in a cluster, the group whose log holds the stream
                   (``position`` is in that group's log); else None.
        node:      in a cluster, the leader that decided it; else None.
        reply:     the fields the domain's decision added to the reply (the
                   bank's ``balance``: ``result.reply["balance"]``), a
                   read-only mapping, empty when it added none. A duplicate
                   gets the first reply's.
    """
    id: str
    stream: str
    version: int
    position: int
    events: int
    duplicate: bool
    group: Optional[int] = None
    node: Optional[str] = None
    reply: Mapping[str, Any] = types.MappingProxyType({})

    def __hash__(self) -> int:
        # the reply's values may be lists or maps: hash what identifies the
        # command (equal results have equal fields, so equal hashes)
        return hash(tuple(self[:-1]))


#: What :meth:`Client.send_many` yields per command.
Outcome = Union[CommandResult, Error]


class Page(NamedTuple):
    """One page of a ``list`` query.

    ``next`` is the cursor to pass as ``after=`` for the following page, or
    None on the last page; ``position``/``head`` are the view's staleness.
    """
    rows: List[Dict[str, Any]]
    next: Optional[str]
    position: int
    head: int


#: The names ZCQ/1 gives a command's reply; any other field was added by
#: the domain's decision (protocol section 3, "Extension").
_STANDARD_REPLY_FIELDS = frozenset(("id", "ok", "stream", "version", "position", "events",
                                    "duplicate", "group", "node", "error", "message", "reason",
                                    "owner", "rid"))


def _result(reply: Mapping[str, Any]) -> CommandResult:
    """The CommandResult of an `ok` reply (a node's, or a cluster node's)."""
    group = reply.get("group")
    node = reply.get("node")
    extra = {name: value for name, value in reply.items()
             if isinstance(name, str) and name not in _STANDARD_REPLY_FIELDS}
    return CommandResult(reply["id"], reply["stream"], reply["version"],
                         reply["position"], reply["events"], reply.get("duplicate", False),
                         group if isinstance(group, int) else None,
                         node if isinstance(node, str) else None,
                         types.MappingProxyType(extra))


class Client:
    """A connection to one zcqrs node, speaking ZCQ/1.

    >>> client = zcqrs.Client(command="tcp://127.0.0.1:7400",
    ...                       query="tcp://127.0.0.1:7402",
    ...                       events="tcp://127.0.0.1:7401")
    >>> result = client.send("account", "42", "open", {"owner": "ada"})
    >>> client.get("accounts", "42", min_position=result.position)
    {'key': '42', 'owner': 'ada', 'balance': 0, 'status': 'open', 'version': 1}

    ``zcqrs.Client()`` with no endpoint connects where the CLI does:
    ``ZCQRS_COMMAND``, ``ZCQRS_EVENTS``, ``ZCQRS_QUERY``, else ``ZCQRS_URL``,
    else ``tcp://127.0.0.1:7400`` (events 7401, query 7402); see
    :func:`default_endpoints`. ``url="tcp://HOST:PORT"`` names a node's
    three endpoints at once (PORT, PORT+1, PORT+2).

    Once any endpoint or ``url`` is given, nothing comes from the
    environment, and an endpoint given wins over the one of ``url``; one
    left out is not used (a write-only client needs only ``command``).
    Connecting never blocks: ZeroMQ connects in the background and a call
    to a node that is not there ends in :class:`zcqrs.NoAnswer` (a
    :class:`zcqrs.Timeout`) after its ``timeout``.

    Every failure reply raises a subclass of :class:`zcqrs.Error` carrying
    the node's ``code`` and ``message``. Use it as a context manager, or
    call :meth:`close`.
    """

    def __init__(self, command: Optional[str] = None, query: Optional[str] = None,
                 events: Optional[str] = None, *, url: Optional[str] = None,
                 timeout: float = 5.0, context: Optional[zmq.Context] = None) -> None:
        """Connect to the node's endpoints.

        Args:
            command: the command endpoint (``tcp://host:7400``).
            query:   the query endpoint (``tcp://host:7402``).
            events:  the events endpoint (``tcp://host:7401``), for
                     :class:`zcqrs.Subscription`.
            url:     ``tcp://HOST:PORT``: the three endpoints at PORT,
                     PORT+1 (events), PORT+2 (query).
            timeout: default seconds to wait for a query reply.
            context: a pyzmq context (default: the process-wide instance).

        With none of command, query, events and url, the endpoints come from
        the environment or the defaults (:func:`default_endpoints`).

        Raises:
            ValueError: a ``url`` (or ``ZCQRS_URL``) that is not tcp://HOST:PORT.
        """
        if url is not None:
            derived = endpoints_from_url(url)
        elif command is None and query is None and events is None:
            derived = default_endpoints()
        else:
            derived = {}
        command = command if command is not None else derived.get("command")
        query = query if query is not None else derived.get("query")
        events = events if events is not None else derived.get("events")
        self.command = command
        self.query = query
        self.events = events
        self.timeout = timeout
        self.context = context or zmq.Context.instance()
        self._command_sock: Optional[zmq.Socket] = None
        self._query_sock: Optional[zmq.Socket] = None
        self._rids = itertools.count(1)
        self._packb = msgpack.Packer(use_bin_type=True).pack
        self._closed = False
        self._batches = 0                            # send_many generators running
        self._orphans: Dict[str, Dict[str, Any]] = {}  # their replies, read by someone else
        if command:
            self._command_sock = self._dealer(command)
        if query:
            self._query_sock = self._dealer(query)

    @staticmethod
    def connect_cluster(seeds: Union[str, Sequence[str]], **options: Any) -> "ClusterClient":
        """A :class:`zcqrs.ClusterClient`: the client of a whole cluster.

        ``seeds`` are query endpoints of some of its nodes; it fetches the
        slot map from them and sends each command straight to the leader of
        its stream's group. ``options`` as :class:`zcqrs.ClusterClient`.
        """
        from .cluster import ClusterClient
        return ClusterClient(seeds, **options)

    def _dealer(self, endpoint: str) -> zmq.Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        # The client bounds what it has in flight itself (send_many's window)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        try:
            sock.connect(endpoint)
        except zmq.ZMQError:
            sock.close()
            raise
        return sock

    # ------------------------------------------------------------------
    # lifecycle

    def close(self) -> None:
        """Close the sockets. Requests still in flight are abandoned. Idempotent."""
        self._closed = True
        for sock in (self._command_sock, self._query_sock):
            if sock is not None:
                sock.close(linger=0)
        self._command_sock = self._query_sock = None

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<zcqrs.Client command=%r query=%r events=%r%s>" % (
            self.command, self.query, self.events, " closed" if self._closed else "")

    def _socket(self, which: str) -> zmq.Socket:
        sock = self._command_sock if which == "command" else self._query_sock
        if sock is None:
            if self._closed:
                raise ValueError("the client is closed")
            raise ValueError("this client has no %s endpoint" % which)
        return sock

    # ------------------------------------------------------------------
    # commands

    def send(self, aggregate: str, key: str, type: str, data: Any = None, *,
             expect: Optional[int] = None, meta: Optional[Mapping[str, Any]] = None,
             id: Optional[str] = None, timeout: float = 5.0,
             retries: int = 0) -> CommandResult:
        """Send one command and wait for its outcome.

        Args:
            aggregate: aggregate type, e.g. ``"account"``.
            key:       aggregate id, e.g. ``"42"``.
            type:      command name, e.g. ``"deposit"``.
            data:      the payload (any msgpack-able value; omitted when None).
            expect:    the stream version expected before the command
                       (0 = must not exist yet); None = any version.
            meta:      caller metadata, stored with every resulting event.
            id:        the command id; default a fresh uuid4, kept across
                       retries so the command is applied at most once.
            timeout:   seconds to wait for a reply, per attempt.
            retries:   extra attempts after a client-side timeout or an
                       ``unavailable`` reply (same id each time).

        Returns:
            a :class:`CommandResult` (``position`` gives read-your-writes).

        Raises:
            Rejected, Conflict (``.version``), Invalid, Unknown, Unavailable,
            Denied, InternalError: the node's answer.
            NoAnswer (a Timeout): no reply after the last attempt (the
            command may or may not have been applied: retry with ``id=error.id``).
        """
        sock = self._socket("command")
        if id is None:
            id = uuid.uuid4().hex
        request: Dict[str, Any] = {"id": id, "aggregate": aggregate, "key": key, "type": type}
        if data is not None:
            request["data"] = data
        if expect is not None:
            request["expect"] = expect
        if meta is not None:
            request["meta"] = meta
        body = self._packb(request)
        attempt = 0
        outstanding = 0     # attempts sent and not yet answered
        while True:
            sock.send(body)
            outstanding += 1
            reply = self._await_command(sock, id, timeout)
            while reply is not None:
                outstanding -= 1
                if reply.get("ok") is True or outstanding == 0:
                    break
                # an earlier attempt failed while a later one is on its way:
                # the node holds the later one behind it and decides it
                # afresh, so only its answer says what happened
                reply = self._await_command(sock, id, timeout)
            if reply is None:
                if attempt < retries:
                    attempt += 1
                    continue
                raise NoAnswer("no reply to command %s from %s within %.3gs (%d attempt%s)"
                               % (id, self.command, timeout, attempt + 1,
                                  "" if attempt == 0 else "s"), id=id)
            if reply.get("ok") is True:
                if reply.get("stream") != aggregate + "/" + key:
                    # an id answers for one stream only: a node that names
                    # another one answered someone else's command
                    raise Invalid("command id %s answered for stream %r, not %s/%s"
                                  % (id, reply.get("stream"), aggregate, key), id=id)
                return _result(reply)
            error = error_from_reply(reply)
            if isinstance(error, Unavailable) and attempt < retries:
                attempt += 1
                time.sleep(min(0.025 * (2 ** attempt), 1.0))   # back off
                continue
            if error.id is None:
                error.id = id
            raise error

    def _await_command(self, sock: zmq.Socket, id: str, timeout: float) -> Optional[Dict[str, Any]]:
        stashed = self._orphans.pop(id, None)
        if stashed is not None:
            return stashed
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sock.poll(max(1, int(remaining * 1000))):
                return None
            reply = _unpack(sock.recv())
            if not isinstance(reply, dict):
                continue
            other = reply.get("id")
            if other == id:
                return reply
            if self._batches and isinstance(other, str):
                self._orphans[other] = reply    # a send_many in progress wants it
            # else: a late reply to an abandoned request: drop it

    def send_many(self, commands: Iterable[Sequence[Any]], window: int = 256, *,
                  timeout: float = 30.0, retries: int = 0,
                  meta: Optional[Mapping[str, Any]] = None) -> Iterator[Outcome]:
        """Pipeline many commands over one socket; yield outcomes in input order.

        ``commands`` is any iterable (consumed lazily) of
        ``(aggregate, key, type)`` or ``(aggregate, key, type, data)``
        tuples. Up to ``window`` commands are in flight at once. For every
        command, in the order given, the generator yields either a
        :class:`CommandResult` or the exception instance of its failure
        (``isinstance(outcome, zcqrs.Error)``): one rejected command does
        not stop the others.

        Each command gets a fresh unique id; with ``retries`` > 0 a command
        answered ``unavailable`` (node overloaded) is sent again with the
        same id, and the window shrinks (halved on each ``unavailable``,
        grown back by one per success). ``meta``, when given, goes with
        every command.

        If no reply at all arrives for ``timeout`` seconds while commands
        are in flight, the generator raises :class:`zcqrs.NoAnswer` (the
        node is gone or stuck); the outcomes already yielded stand, and the
        commands in flight may or may not have been applied.

        >>> ops = (("account", str(i), "open", {"owner": "o"}) for i in range(1000))
        >>> failed = [o for o in client.send_many(ops) if isinstance(o, zcqrs.Error)]
        """
        if window < 1:
            raise ValueError("window must be >= 1")
        sock = self._socket("command")
        return self._send_many(sock, iter(commands), window, timeout, retries, meta)

    def _send_many(self, sock: zmq.Socket, commands: Iterator[Sequence[Any]], window: int,
                   timeout: float, retries: int,
                   meta: Optional[Mapping[str, Any]]) -> Iterator[Outcome]:
        # The hot loop: locals only, one reused Packer, a blocking recv (with
        # RCVTIMEO) for the first reply then non-blocking drains, and one
        # dict lookup per reply for correlation.
        pack = msgpack.Packer(use_bin_type=True).pack
        unpackb = msgpack.unpackb
        send = sock.send
        recv = sock.recv
        NOBLOCK = zmq.NOBLOCK
        Again = zmq.Again
        orphans = self._orphans
        prefix = uuid.uuid4().hex + "-"
        pending: Dict[str, List[Any]] = {}      # id -> [index, body, attempts, id]
        done: Dict[int, Outcome] = {}           # index -> outcome, until yielded
        again: Deque[List[Any]] = collections.deque()   # answered unavailable: resend
        limit = window          # the window in use: halved on `unavailable`, +1 per success
        sent = 0
        yielded = 0
        exhausted = False

        def take(reply: Any) -> None:
            nonlocal limit
            id = reply.get("id") if type(reply) is dict else None
            entry = pending.pop(id, None)
            if entry is None:
                if self._batches > 1 and id is not None:
                    orphans[id] = reply         # another batch's: leave it there
                return
            if reply.get("ok") is True:
                done[entry[0]] = _result(reply)
                if limit < window:
                    limit += 1
                return
            error = error_from_reply(reply)
            if entry[2] < retries and isinstance(error, Unavailable):
                # the node is overloaded: send it again later, with fewer in flight
                if limit == 1:
                    time.sleep(min(0.001 * (entry[2] + 1), 0.1))
                entry[2] += 1
                limit = max(1, limit // 2)
                again.append(entry)
            else:
                done[entry[0]] = error

        old_rcvtimeo = sock.getsockopt(zmq.RCVTIMEO)
        sock.setsockopt(zmq.RCVTIMEO, max(1, int(timeout * 1000)))
        self._batches += 1
        try:
            while True:
                # 1. fill the window: commands to send again first, then new ones
                while again and len(pending) < limit:
                    entry = again.popleft()
                    send(entry[1])
                    pending[entry[3]] = entry
                while not exhausted and len(pending) < limit:
                    try:
                        command = next(commands)
                    except StopIteration:
                        exhausted = True
                        break
                    id = prefix + str(sent)
                    if len(command) > 3 and command[3] is not None:
                        request = {"id": id, "aggregate": command[0], "key": command[1],
                                   "type": command[2], "data": command[3]}
                    else:
                        request = {"id": id, "aggregate": command[0], "key": command[1],
                                   "type": command[2]}
                    if meta is not None:
                        request["meta"] = meta
                    body = pack(request)
                    send(body)
                    pending[id] = [sent, body, 0, id]
                    sent += 1
                if not pending:
                    break
                # 2. replies taken by another call on this client, if any
                raw: Optional[bytes] = None
                mine = [id for id in orphans if id in pending] if orphans else None
                if mine:
                    for id in mine:
                        take(orphans.pop(id))
                else:
                    # 3. wait for one reply
                    try:
                        raw = recv()
                    except Again:
                        raise NoAnswer("send_many: no reply from %s within %.3gs with %d "
                                       "commands in flight"
                                       % (self.command, timeout, len(pending))) from None
                # 4. then take every reply already there
                while raw is not None:
                    take(unpackb(raw, raw=False, strict_map_key=False))
                    try:
                        raw = recv(NOBLOCK)
                    except Again:
                        raw = None
                # 5. yield what is ready, in input order
                while yielded in done:
                    outcome = done.pop(yielded)
                    yielded += 1
                    yield outcome
        finally:
            self._batches -= 1
            if self._batches == 0:
                orphans.clear()
            if self._command_sock is sock:
                sock.setsockopt(zmq.RCVTIMEO, old_rcvtimeo)

    # ------------------------------------------------------------------
    # queries

    def call(self, request: Mapping[str, Any], timeout: Optional[float] = None) -> Dict[str, Any]:
        """Send one raw query-endpoint request (a map with ``op``) and return the reply map.

        A failure reply raises the matching :class:`zcqrs.Error` (for a view
        read, a :class:`zcqrs.ViewNotReady` when the reply says the view
        cannot answer); no reply within ``timeout`` seconds raises
        :class:`zcqrs.NoAnswer`. The typed methods below are built on this;
        use it for ops they do not cover.
        """
        sock = self._socket("query")
        if timeout is None:
            timeout = self.timeout
        rid = next(self._rids)
        body = dict(request)
        body["rid"] = rid
        sock.send(self._packb(body))
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sock.poll(max(1, int(remaining * 1000))):
                raise NoAnswer("no reply to %s from %s within %.3gs"
                               % (request.get("op"), self.query, timeout))
            reply = _unpack(sock.recv())
            if not isinstance(reply, dict) or reply.get("rid") != rid:
                continue     # a late reply to an abandoned request
            if reply.get("ok") is not True:
                view = request.get("view") if request.get("op") in _VIEW_OPS else None
                raise error_from_reply(reply, view if isinstance(view, str) else None)
            return reply

    def _view_call(self, request: Dict[str, Any], min_position: Optional[int],
                   timeout: Optional[float]) -> Dict[str, Any]:
        if timeout is None:
            timeout = self.timeout
        wait = timeout
        if min_position is not None:
            request["min_position"] = min_position
            request["timeout_ms"] = max(0, int(timeout * 1000))
            wait = timeout + 2.0        # the node answers `timeout` first
        return self.call(request, wait)

    def get(self, view: str, key: str, *, min_position: Optional[int] = None,
            timeout: Optional[float] = None) -> Optional[Dict[str, Any]]:
        """The row of ``view`` at ``key`` (a dict with ``key``), or None when absent.

        ``min_position``: wait until the view has applied that log position
        (read-your-writes: pass ``result.position`` of a command); the node
        answers :class:`zcqrs.ViewBehind` (a :class:`zcqrs.Timeout`, with
        ``.position``, ``.head``) when
        the view does not get there within ``timeout`` seconds.
        """
        reply = self._view_call({"op": "get", "view": view, "key": key}, min_position, timeout)
        return reply.get("row")

    def list_page(self, view: str, index: Optional[str] = None, value: Any = None, *,
                  after: Optional[str] = None, limit: int = 100,
                  min_position: Optional[int] = None,
                  timeout: Optional[float] = None) -> Page:
        """One page of rows of ``view`` (see :meth:`list`); ``after`` is the previous page's ``next``."""
        request: Dict[str, Any] = {"op": "list", "view": view, "limit": limit}
        if index is not None:
            request["index"] = index
            request["value"] = value
        if after is not None:
            request["after"] = after
        reply = self._view_call(request, min_position, timeout)
        return Page(reply.get("rows") or [], reply.get("next"),
                    reply.get("position", 0), reply.get("head", 0))

    def list(self, view: str, index: Optional[str] = None, value: Any = None, *,
             min_position: Optional[int] = None, page_size: int = 100,
             timeout: Optional[float] = None) -> Iterator[Dict[str, Any]]:
        """Iterate over the rows of ``view``, in key order, page by page.

        With ``index`` and ``value``, only the rows whose indexed field
        equals ``value``. The first page is fetched now (so errors such as
        :class:`zcqrs.Unknown` raise here); later pages are fetched as the
        iteration reaches them, following the ``next`` cursors.
        ``min_position`` applies to the first page (views only move forward).
        """
        first = self.list_page(view, index, value, limit=page_size,
                               min_position=min_position, timeout=timeout)
        return self._pages(first, view, index, value, page_size, timeout)

    def _pages(self, page: Page, view: str, index: Optional[str], value: Any,
               page_size: int, timeout: Optional[float]) -> Iterator[Dict[str, Any]]:
        while True:
            yield from page.rows
            if page.next is None:
                return
            page = self.list_page(view, index, value, after=page.next, limit=page_size,
                                  timeout=timeout)

    def count(self, view: str, index: Optional[str] = None, value: Any = None, *,
              min_position: Optional[int] = None, timeout: Optional[float] = None) -> int:
        """How many rows ``view`` has (with ``index``/``value``: how many match)."""
        request: Dict[str, Any] = {"op": "count", "view": view}
        if index is not None:
            request["index"] = index
            request["value"] = value
        return self._view_call(request, min_position, timeout)["count"]

    def read(self, from_position: int = 1, limit: int = 1000, *,
             timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        """Up to ``limit`` (1-10,000) events of the log from ``from_position``, in order.

        Each event is a dict with the keys of ZCQ/1 section 4 (``position``,
        ``stream``, ``type``, ``data``, ...). An empty list means
        ``from_position`` is beyond the head.
        """
        return self.call({"op": "read", "from": from_position, "limit": limit},
                         timeout)["events"]

    def stream(self, name: str, from_version: int = 1, limit: Optional[int] = None, *,
               timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        """The events of one stream (``"account/42"``) from ``from_version``.

        ``limit`` None reads to the end of the stream, page by page.
        """
        events: List[Dict[str, Any]] = []
        version = from_version
        while True:
            page = 1000 if limit is None else min(1000, limit - len(events))
            if page <= 0:
                return events
            reply = self.call({"op": "stream", "stream": name, "from": version,
                               "limit": page}, timeout)
            got = reply.get("events") or []
            events.extend(got)
            # a page may be cut short by the node's reply size cap: only an
            # empty page or the stream's version ends the read
            if not got or got[-1]["version"] >= reply.get("version", 0):
                return events
            version = got[-1]["version"] + 1

    def views(self, *, timeout: Optional[float] = None) -> List[Dict[str, Any]]:
        """The node's views: ``[{name, position, rows, status}]`` (status ``live``,
        ``catching_up`` or ``rebuilding``)."""
        return self.call({"op": "views"}, timeout)["views"]

    def health(self, *, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The node's health: ``node``, ``head``, ``uptime_ms``, ``durability``, ``views``."""
        reply = self.call({"op": "health"}, timeout)
        reply.pop("rid", None)
        reply.pop("ok", None)
        return reply

    def head(self, *, timeout: Optional[float] = None) -> int:
        """The node's log head (position of its last durable event)."""
        return self.health(timeout=timeout)["head"]

    def stats(self, *, timeout: Optional[float] = None) -> Dict[str, Any]:
        """The node's counters and gauges (``commands_accepted``, ``view.accounts.lag``, ...)."""
        return self.call({"op": "stats"}, timeout)["stats"]

    def rebuild(self, view: str, *, timeout: Optional[float] = None) -> Dict[str, Any]:
        """Start rebuilding ``view`` from position 1 (admin); returns at once.

        The old copy keeps answering until the new one has caught up; poll
        :meth:`views` (status ``rebuilding`` -> ``live``) to see the end.
        """
        reply = self.call({"op": "rebuild", "view": view}, timeout)
        reply.pop("rid", None)
        reply.pop("ok", None)
        return reply

    def backup(self, directory: str, *, timeout: Optional[float] = 600.0) -> Dict[str, Any]:
        """Back the node up, while it serves, into ``directory`` (admin).

        ``directory`` must not exist yet; a relative one is made absolute
        here (the node writes it: it names a place on the node's machine).
        Waits for the backup (up to ``timeout`` seconds, 600 by default) and
        returns ``{dir, position, views, bytes}``: the log position the backup
        holds and its view snapshots. Restore it with ``zcqrsd --restore
        DIR --data NEW_DIR``. A backup while one runs raises
        :class:`zcqrs.Unavailable`; a bad directory :class:`zcqrs.Invalid`.
        """
        reply = self.call({"op": "backup", "dir": os.path.abspath(directory)}, timeout)
        reply.pop("rid", None)
        reply.pop("ok", None)
        return reply

    # ------------------------------------------------------------------
    # read-your-writes

    @staticmethod
    def consistent_with(*results: Union[CommandResult, int]) -> Dict[str, int]:
        """The ``min_position`` keyword that makes a view read see these writes.

        ``client.get("accounts", "42", **client.consistent_with(r1, r2))``
        is the same as ``min_position=max(r1.position, r2.position)``.
        """
        if not results:
            raise ValueError("consistent_with needs at least one result")
        return {"min_position": max(r if isinstance(r, int) else r.position for r in results)}
