"""The exceptions of zcqrs: one class per ZCQ/1 error code (spec section 6).

Every failure reply of a node becomes an instance of one of these classes,
carrying the server's ``code`` and ``message`` and the whole ``reply`` map.
All of them derive from :class:`Error`, so ``except zcqrs.Error`` catches
anything the node (or the client, for a reply that never came) reports.

Two questions a caller asks often get classes of their own:

- "is the node there at all?": :class:`NoAnswer` (a :class:`Timeout`) is
  raised by the client when no reply came in time: the node is down, not
  listening there, or stuck. The node's own ``timeout`` replies are not
  NoAnswer.
- "is the view there yet?": :class:`ViewNotReady`, raised by view reads
  (``get``, ``list``, ``count``), with one subclass per reply that says so:
  :class:`UnknownView` (the node has no such view: another domain, or a
  typo; also an :class:`Unknown`), :class:`ViewBehind` (the view did not
  reach ``min_position`` in time; also a :class:`Timeout`, with
  ``position`` and ``head``) and :class:`ViewsUnavailable` (the node
  cannot serve views now; also an :class:`Unavailable`).

So ``except zcqrs.Timeout`` still catches both kinds of timeout, and
``except zcqrs.Unknown`` an unknown view, as before.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Type

__all__ = [
    "Error", "Invalid", "Unknown", "Rejected", "Conflict", "Timeout",
    "Unavailable", "Denied", "InternalError", "NoAnswer", "ViewNotReady", "UnknownView",
    "ViewBehind", "ViewsUnavailable", "error_from_reply",
]


class Error(Exception):
    """A ZCQ/1 error.

    Attributes:
        code:    the wire code (``"rejected"``, ``"conflict"``, ...).
        message: the server's human-readable text.
        reply:   the whole reply map (empty for client-side errors).
        id:      the command id, for errors of commands (else ``None``).
    """

    code: str = "error"

    def __init__(self, message: str = "", *, code: Optional[str] = None,
                 reply: Optional[Mapping[str, Any]] = None,
                 id: Optional[str] = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.reply: Dict[str, Any] = dict(reply) if reply else {}
        self.id = id

    def __str__(self) -> str:
        return "%s: %s" % (self.code, self.message)

    def __repr__(self) -> str:
        return "%s(%r)" % (type(self).__name__, self.message)

    def __reduce__(self):   # keep pickling (multiprocessing) working
        return (_rebuild, (type(self), self.message, self.code, self.reply, self.id))


def _rebuild(cls, message, code, reply, id):
    return cls(message, code=code, reply=reply, id=id)


class Invalid(Error):
    """The request or the domain payload is malformed (``invalid``)."""
    code = "invalid"


class Unknown(Error):
    """Unknown op, aggregate type, command type, view or index (``unknown``)."""
    code = "unknown"


class Rejected(Error):
    """The domain refused the command: a business rule would break (``rejected``)."""
    code = "rejected"


class Conflict(Error):
    """``expect`` did not match the stream's version (``conflict``).

    ``version`` is the stream's current version, as the node reported it.
    """
    code = "conflict"

    @property
    def version(self) -> Optional[int]:
        return self.reply.get("version")


class Timeout(Error):
    """A wait ran out of time (``timeout``).

    From the node: a view did not reach ``min_position`` in time; then
    ``position`` (what the view had applied) and ``head`` are set. From the
    client: no reply came within the call's ``timeout``; then both are None
    and, for a command, the outcome is unknown (retry with the same id).
    """
    code = "timeout"

    @property
    def position(self) -> Optional[int]:
        return self.reply.get("position")

    @property
    def head(self) -> Optional[int]:
        return self.reply.get("head")


class Unavailable(Error):
    """The node cannot take it now: overloaded or shutting down (``unavailable``).

    ``owner`` is the owner's command endpoint when a cluster node said so.
    """
    code = "unavailable"

    @property
    def owner(self) -> Optional[str]:
        return self.reply.get("owner")


class Denied(Error):
    """Not authenticated or not allowed (``denied``)."""
    code = "denied"


class InternalError(Error):
    """A bug or a storage failure on the node (``internal``); nothing partial was written."""
    code = "internal"


class NoAnswer(Timeout):
    """No reply came within the call's timeout: the node is down, not at that
    endpoint, or stuck (raised by the client; ``code`` is ``timeout``).

    For a command the outcome is unknown: send it again with ``id=error.id``.
    """


class ViewNotReady(Error):
    """A view read found the view not (yet) able to answer it.

    Base class of :class:`UnknownView`, :class:`ViewBehind` and
    :class:`ViewsUnavailable`; ``view`` is the view's name when known.
    """

    @property
    def view(self) -> Optional[str]:
        return self.reply.get("view") if isinstance(self.reply.get("view"), str) else None


class UnknownView(ViewNotReady, Unknown):
    """The node has no view of that name (``unknown``): it runs another
    domain, or the name is misspelt."""
    code = "unknown"


class ViewBehind(ViewNotReady, Timeout):
    """The view did not reach ``min_position`` in time (the node's ``timeout``):
    ``position`` is what it had applied, ``head`` the node's log head."""
    code = "timeout"


class ViewsUnavailable(ViewNotReady, Unavailable):
    """The node cannot serve the view now (``unavailable``): too many reads
    waiting, or, in a cluster, no view of the cluster yet. Retry later."""
    code = "unavailable"


#: The class of a failure reply to a view read (get, list, count), by code.
VIEW_ERRORS: Dict[str, Type[Error]] = {
    "timeout": ViewBehind, "unavailable": ViewsUnavailable,
}

ERRORS: Dict[str, Type[Error]] = {
    cls.code: cls for cls in
    (Invalid, Unknown, Rejected, Conflict, Timeout, Unavailable, Denied, InternalError)
}


def error_from_reply(reply: Mapping[str, Any], view: Optional[str] = None) -> Error:
    """The exception instance for a failure reply (``ok`` false).

    A code this client does not know gives a plain :class:`Error` with that
    code, so a newer node's codes still arrive intact. ``view``: the reply
    answers a read of that view (get, list, count), so a reply that says
    the view cannot answer is a :class:`ViewNotReady`.
    """
    code = reply.get("error")
    message = reply.get("message")
    if not isinstance(message, str):
        message = repr(message) if message is not None else ""
    if not isinstance(code, str):
        return InternalError("malformed failure reply: %r" % (dict(reply),), reply=reply)
    cls = ERRORS.get(code, Error)
    if view is not None:
        if code == "unknown" and message.startswith("unknown view"):
            cls = UnknownView
        else:
            cls = VIEW_ERRORS.get(code, cls)
        if "view" not in reply:
            reply = dict(reply, view=view)
    id = reply.get("id")
    return cls(message, code=code, reply=reply, id=id if isinstance(id, str) else None)
