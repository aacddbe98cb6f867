"""The exceptions of zcqrs: one class per ZCQ/1 error code (spec section 6).

Every failure reply of a node becomes an instance of one of these classes,
carrying the server's ``code`` and ``message`` and the whole ``reply`` map.
All of them derive from :class:`Error`, so ``except zcqrs.Error`` catches
anything the node (or the client, for a reply that never came) reports.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Type

__all__ = [
    "Error", "Invalid", "Unknown", "Rejected", "Conflict", "Timeout",
    "Unavailable", "Denied", "InternalError", "error_from_reply",
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


ERRORS: Dict[str, Type[Error]] = {
    cls.code: cls for cls in
    (Invalid, Unknown, Rejected, Conflict, Timeout, Unavailable, Denied, InternalError)
}


def error_from_reply(reply: Mapping[str, Any]) -> Error:
    """The exception instance for a failure reply (``ok`` false).

    A code this client does not know gives a plain :class:`Error` with that
    code, so a newer node's codes still arrive intact.
    """
    code = reply.get("error")
    message = reply.get("message")
    if not isinstance(message, str):
        message = repr(message) if message is not None else ""
    if not isinstance(code, str):
        return InternalError("malformed failure reply: %r" % (dict(reply),), reply=reply)
    cls = ERRORS.get(code, Error)
    id = reply.get("id")
    return cls(message, code=code, reply=reply, id=id if isinstance(id, str) else None)
