"""zcqrs.projection: read models written in Python, fed by a Subscription.

A projection is a state (any JSON value, a dict by default) and handlers by
event type. It remembers the position of the last event it applied, and
applies an event only when its position is beyond that one, so an event is
never applied twice. A checkpoint file holds position and state together,
written atomically (a temporary file, fsync, rename), so after a restart
the projection resumes exactly where its last checkpoint stopped:

    class Balances(zcqrs.Projection):
        def initial_state(self):
            return {}

        @zcqrs.on("opened")
        def opened(self, event):
            self.state[event["key"]] = 0

        @zcqrs.on("deposited")
        def deposited(self, event):
            self.state[event["key"]] += event["data"]["amount"]

    balances = Balances(checkpoint="balances.json")
    balances.run(client, until="head")

Handlers can also be registered on an instance, as plain functions of
``(state, event)`` that may return a new state:

    counts = zcqrs.Projection()
    @counts.on("deposited")
    def count(state, event):
        state["deposits"] = state.get("deposits", 0) + 1
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import (Any, Callable, Dict, List, Optional, Tuple, TypeVar, Union)

from .client import Client
from .subscription import Subscription

__all__ = ["Projection", "on"]

F = TypeVar("F", bound=Callable[..., Any])
Event = Dict[str, Any]


def on(type: str, *, aggregate: Optional[str] = None) -> Callable[[F], F]:
    """Mark a method of a :class:`Projection` subclass as the handler of event ``type``.

    ``aggregate`` restricts it to events of one aggregate type. A method may
    carry several ``@on`` decorators. The method is called as
    ``handler(self, event)`` and changes ``self.state``.
    """
    def mark(function: F) -> F:
        marks = list(getattr(function, "_zcqrs_on", ()))
        marks.append((type, aggregate))
        function._zcqrs_on = marks  # type: ignore[attr-defined]
        return function
    return mark


class Projection:
    """A Python read model: a JSON state, event handlers, and a checkpoint file.

    Args:
        checkpoint: path of the checkpoint file (JSON ``{"position",
                    "state", "version"}``); loaded now when it exists. None
                    keeps everything in memory.

    Attributes:
        state:    the read model (a JSON value: dict keys are strings).
        position: the position of the last event applied (0 = none).
        version:  class attribute; change it when the handlers change: a
                  checkpoint of another version is ignored and the
                  projection starts over from position 1.
    """

    version: int = 1
    _class_handlers: Dict[Tuple[str, Optional[str]], List[str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # handlers by event (type, aggregate) -> method names, base classes
        # first; called through getattr, so an override in a subclass wins
        handlers: Dict[Tuple[str, Optional[str]], List[str]] = {}
        for klass in reversed(cls.__mro__):
            for name, attribute in vars(klass).items():
                for type, aggregate in getattr(attribute, "_zcqrs_on", ()):
                    names = handlers.setdefault((type, aggregate), [])
                    if name not in names:
                        names.append(name)
        cls._class_handlers = handlers

    def __init__(self, checkpoint: Optional[Union[str, os.PathLike]] = None) -> None:
        self.checkpoint = os.fspath(checkpoint) if checkpoint is not None else None
        self.position = 0
        self.state: Any = self.initial_state()
        self._instance_handlers: Dict[Tuple[str, Optional[str]], List[Callable[..., Any]]] = {}
        self.applied = 0           # events applied by this object
        # True while an event's handlers run: a handler that raised left the
        # state half-applied, which must never be saved
        self._applying = False
        self.load()

    def initial_state(self) -> Any:
        """The state before any event (override it; default an empty dict)."""
        return {}

    def on(self, type: str, *, aggregate: Optional[str] = None) -> Callable[[F], F]:
        """Register a function ``f(state, event)`` as handler of ``type`` on this instance.

        The function changes ``state`` in place or returns a new state (a
        return value other than None replaces ``self.state``).
        """
        def register(function: F) -> F:
            self._instance_handlers.setdefault((type, aggregate), []).append(function)
            return function
        return register

    # ------------------------------------------------------------------

    def apply(self, event: Event) -> bool:
        """Apply one event if it is beyond :attr:`position`; True when applied.

        Events at or below the position are skipped (never applied twice).
        The position advances past events no handler wants. A handler that
        raises leaves the state half-applied: :meth:`save` then refuses, and
        the object should be reloaded from its checkpoint (:meth:`load`).
        """
        position = event["position"]
        if position <= self.position:
            return False
        self._applying = True
        type = event.get("type")
        aggregate = event.get("aggregate")
        keys = ((type, None), (type, aggregate)) if aggregate is not None else ((type, None),)
        for key in keys:
            for name in self._class_handlers.get(key, ()):
                getattr(self, name)(event)
            for function in self._instance_handlers.get(key, ()):
                state = function(self.state, event)
                if state is not None:
                    self.state = state
        self.position = position
        self.applied += 1
        self._applying = False
        return True

    def run(self, source: Union[Client, Subscription], *, until: Union[int, str, None] = None,
            idle_timeout: Optional[float] = None, checkpoint_every: int = 1000,
            checkpoint_seconds: float = 1.0, max_events: Optional[int] = None) -> int:
        """Apply events from ``source`` until a stop condition; return how many were applied.

        Args:
            source:       a :class:`Client` (a Subscription from
                          ``position + 1`` is opened and closed here) or a
                          :class:`Subscription` (positioned by the caller).
            until:        stop once :attr:`position` reaches this position;
                          ``"head"`` = the node's log head when run starts.
            idle_timeout: stop after this many seconds without an event.
            checkpoint_every / checkpoint_seconds: save after that many
                          events or seconds (and always on return, when a
                          checkpoint file is set).
            max_events:   stop after applying this many events.

        With no stop condition it runs until interrupted (KeyboardInterrupt
        saves a checkpoint, then propagates).
        """
        if isinstance(source, Subscription):
            subscription, owned = source, False
            client = source.client
        else:
            client = source
            subscription, owned = Subscription(client, from_position=self.position + 1), True
        if until == "head":
            until = client.head()
        elif until is not None and not isinstance(until, int):
            raise ValueError("until must be a position, 'head' or None")
        applied = unsaved = 0
        last_save = time.monotonic()
        try:
            while until is None or self.position < until:
                if max_events is not None and applied >= max_events:
                    break
                event = subscription.next(timeout=idle_timeout if idle_timeout is not None
                                          else checkpoint_seconds)
                if event is None:
                    if idle_timeout is not None:
                        break
                else:
                    if self.apply(event):
                        applied += 1
                        unsaved += 1
                if self.checkpoint and unsaved and (
                        unsaved >= checkpoint_every
                        or time.monotonic() - last_save >= checkpoint_seconds):
                    self.save()
                    unsaved = 0
                    last_save = time.monotonic()
        finally:
            # a handler that raised (Ctrl-C included) left the state half
            # applied: keep the last checkpoint, from which the event is
            # applied again after a restart
            if self.checkpoint and unsaved and not self._applying:
                self.save()
            if owned:
                subscription.close()
        return applied

    # ------------------------------------------------------------------
    # checkpoints

    def save(self) -> None:
        """Write position and state to the checkpoint file, atomically.

        The file is replaced in one rename after its bytes are fsynced, so a
        crash leaves either the old checkpoint or the new one, never half.
        """
        if not self.checkpoint:
            raise ValueError("this projection has no checkpoint file")
        if self._applying:
            raise RuntimeError("an event was applied half way (a handler raised): the state "
                               "must not be saved; load() the last checkpoint instead")
        directory = os.path.dirname(os.path.abspath(self.checkpoint))
        document = {"projection": type(self).__name__, "version": self.version,
                    "position": self.position, "state": self.state}
        fd, temporary = tempfile.mkstemp(prefix=".%s." % os.path.basename(self.checkpoint),
                                         suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as file:
                json.dump(document, file, separators=(",", ":"))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.checkpoint)
        except BaseException:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            raise
        try:
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass

    def load(self) -> bool:
        """Load the checkpoint file if it exists (and has this class's version).

        Returns True when a checkpoint was loaded. Called by ``__init__``.
        """
        if not self.checkpoint or not os.path.exists(self.checkpoint):
            return False
        with open(self.checkpoint, encoding="utf-8") as file:
            document = json.load(file)
        if document.get("version") != self.version:
            return False
        self.position = int(document["position"])
        self.state = document["state"]
        self._applying = False
        return True

    def reset(self) -> None:
        """Forget everything: position 0, initial state (the file is untouched until save)."""
        self.position = 0
        self.state = self.initial_state()
        self._applying = False

    def __repr__(self) -> str:
        return "<%s position=%d>" % (type(self).__name__, self.position)
