"""zcqrs.node: a zcqrs node running inside this Python process.

The node is libzcqrs itself, driven through ctypes: zcq_config_new/set,
zcq_node_start, zcq_node_endpoint, zcq_node_destroy. Its actors are C
threads; Python only starts and stops them, and talks to the node over its
sockets like any other client (a :class:`zcqrs.Client`).

The library is found, in this order, at $ZCQRS_LIBRARY, at the path the
CMake build wrote into ``zcqrs/_build.py``, or by the system's search
(``ctypes.util.find_library("zcqrs")``), with RTLD_GLOBAL so that a plugin
need not link it. A domain named ``"bank"`` is
``bank.so`` in $ZCQRS_PLUGIN_DIR, the build's plugin directory, or the
installed one; a domain with a ``/`` or ending in ``.so`` is a path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import weakref
from typing import Any, Dict, List, Mapping, Optional, Union

from .client import Client
from .errors import ERRORS, Error, InternalError

try:
    from . import _build  # written by the CMake build
except ImportError:       # pragma: no cover - a source checkout
    _build = None         # type: ignore[assignment]

__all__ = ["Node", "library_path", "plugin_path"]

_ENDPOINTS = ("command", "events", "query")
_ENDPOINT_INDEX = {"command": 0, "events": 1, "query": 2}
# zcq_err_t, in enum order (zcq_error.h); engine-side causes travel as internal
_ERR_CODES = ["ok", "invalid", "unknown", "rejected", "conflict", "timeout",
              "unavailable", "denied", "internal"]

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None


def library_path() -> str:
    """Where libzcqrs is loaded from (see the module's docstring)."""
    path = os.environ.get("ZCQRS_LIBRARY")
    if path:
        return path
    if _build is not None and os.path.exists(_build.LIBRARY):
        return _build.LIBRARY
    found = ctypes.util.find_library("zcqrs")
    if found:
        return found
    raise OSError("libzcqrs not found: build it (cmake), install it, or set ZCQRS_LIBRARY")


def plugin_path(domain: str) -> str:
    """The shared object of a domain plugin, from a name (``"bank"``) or a path."""
    if "/" in domain or domain.endswith(".so"):
        return domain
    directories: List[str] = []
    if os.environ.get("ZCQRS_PLUGIN_DIR"):
        directories.append(os.environ["ZCQRS_PLUGIN_DIR"])
    if _build is not None:
        directories.extend(_build.PLUGIN_DIRS)
    candidates = [os.path.join(directory, domain + ".so") for directory in directories]
    for candidate in candidates:
        if os.path.exists(candidate):
            return candidate
    raise OSError("no domain plugin named %r (looked in: %s); pass a path to a .so or set "
                  "ZCQRS_PLUGIN_DIR" % (domain, ", ".join(candidates) or "no plugin dir"))


def _library() -> ctypes.CDLL:
    global _lib
    with _lock:
        if _lib is not None:
            return _lib
        # RTLD_GLOBAL: a plugin built without -lzcqrs (only the headers) finds
        # zcq_emit, zcq_view_upsert, ... in this copy, as it does in zcqrsd
        lib = ctypes.CDLL(library_path(), mode=os.RTLD_NOW | os.RTLD_GLOBAL)
        c_void_p, c_char_p, c_int, c_size_t = (ctypes.c_void_p, ctypes.c_char_p,
                                               ctypes.c_int, ctypes.c_size_t)
        lib.zcq_config_new.restype = c_void_p
        lib.zcq_config_new.argtypes = []
        lib.zcq_config_destroy.restype = None
        lib.zcq_config_destroy.argtypes = [ctypes.POINTER(c_void_p)]
        lib.zcq_config_set.restype = c_int
        lib.zcq_config_set.argtypes = [c_void_p, c_char_p, c_char_p, c_char_p, c_size_t]
        lib.zcq_config_get.restype = c_char_p
        lib.zcq_config_get.argtypes = [c_void_p, c_char_p]
        lib.zcq_node_start.restype = c_int
        lib.zcq_node_start.argtypes = [ctypes.POINTER(c_void_p), c_void_p, c_void_p,
                                       c_char_p, c_size_t]
        lib.zcq_domain_open.restype = c_void_p
        lib.zcq_domain_open.argtypes = [c_char_p, ctypes.POINTER(c_void_p), c_char_p, c_size_t]
        lib.zcq_node_destroy.restype = None
        lib.zcq_node_destroy.argtypes = [ctypes.POINTER(c_void_p)]
        lib.zcq_node_endpoint.restype = c_char_p
        lib.zcq_node_endpoint.argtypes = [c_void_p, c_int]
        lib.zcq_node_id.restype = c_char_p
        lib.zcq_node_id.argtypes = [c_void_p]
        lib.zcq_node_head.restype = ctypes.c_uint64
        lib.zcq_node_head.argtypes = [c_void_p]
        # czmq would take SIGINT and SIGTERM from Python when the node
        # starts (zsys_init); keep Python's handlers, as zcqrsd does.
        try:
            lib.zsys_handler_set.restype = None
            lib.zsys_handler_set.argtypes = [c_void_p]
            lib.zsys_handler_set(None)
        except AttributeError:      # pragma: no cover - czmq not reachable
            pass
        _lib = lib
        return lib


def _error(code: int, message: str) -> Error:
    name = _ERR_CODES[code] if 0 < code < len(_ERR_CODES) else "internal"
    return ERRORS.get(name, InternalError)(message, code=name)


def _destroy(lib: ctypes.CDLL, handle: ctypes.c_void_p) -> None:
    # weakref.finalize callback: must not refer to the Node
    if handle.value:
        lib.zcq_node_destroy(ctypes.byref(handle))


class Node:
    """A zcqrs node in this process: libzcqrs' actors, a domain plugin, a data dir.

    >>> with zcqrs.Node("/tmp/bank-data") as node, node.client() as client:
    ...     client.send("account", "1", "open", {"owner": "ada"})

    Args:
        data_dir:   the data directory (created if missing).
        domain:     ``"bank"`` (the shipped plugin) or a path to a plugin
                    .so exporting ``zcq_domain_plugin``.
        durability: ``"wal"`` (default) or ``"fsync"``.
        endpoints:  ``{"command": ..., "events": ..., "query": ...}``; any
                    missing one is ``tcp://127.0.0.1:*`` (a free port).
                    tcp and ipc work; inproc does not reach Python (pyzmq
                    has its own ZeroMQ context).
        **settings: any other node setting (zcq_config.h), underscores for
                    dashes: ``shards=2, heartbeat_ms=100, max_inflight=1000``.

    Raises:
        zcqrs.Invalid / zcqrs.Unknown for a bad or unknown setting, another
        :class:`zcqrs.Error` when the node cannot start (the message says
        why), OSError when libzcqrs or the plugin cannot be loaded.

    The node runs until :meth:`close` (or the end of the ``with`` block, or
    the interpreter's exit), which stops it gracefully: it stops taking
    commands, finishes the commits in flight and closes the store.
    """

    def __init__(self, data_dir: Union[str, os.PathLike], domain: str = "bank",
                 durability: str = "wal", endpoints: Optional[Mapping[str, str]] = None,
                 **settings: Any) -> None:
        lib = _library()
        self.data_dir = os.fspath(data_dir)
        self.domain = domain
        endpoints = dict(endpoints or {})
        for name in endpoints:
            if name not in _ENDPOINTS:
                raise ValueError("unknown endpoint %r (command, events, query)" % name)
        values: Dict[str, str] = {"data": self.data_dir, "durability": durability}
        for name in _ENDPOINTS:
            endpoint = endpoints.get(name) or settings.pop(name, None) or "tcp://127.0.0.1:*"
            if endpoint.startswith("inproc://"):
                raise ValueError("%s: inproc endpoints are not reachable from Python; "
                                 "use tcp:// or ipc://" % endpoint)
            values[name] = endpoint
        for name, value in settings.items():
            if isinstance(value, bool):
                value = "true" if value else "false"
            values[name.replace("_", "-")] = str(value)

        path = plugin_path(domain)
        # the library loads it, and refuses one built for another domain ABI;
        # the plugin stays loaded for the life of the process, as ctypes does
        self._plugin = ctypes.c_void_p()
        reason = ctypes.create_string_buffer(1024)
        domain_pointer = lib.zcq_domain_open(path.encode(), ctypes.byref(self._plugin), reason,
                                             len(reason))
        if not domain_pointer:
            raise OSError("cannot load the domain plugin: %s"
                          % reason.value.decode(errors="replace"))

        config = ctypes.c_void_p(lib.zcq_config_new())
        if not config.value:
            raise MemoryError("zcq_config_new")
        error = ctypes.create_string_buffer(512)
        handle = ctypes.c_void_p()
        try:
            for name, value in values.items():
                rc = lib.zcq_config_set(config, name.encode(), value.encode(), error, len(error))
                if rc != 0:
                    raise _error(rc, error.value.decode(errors="replace"))
            rc = lib.zcq_node_start(ctypes.byref(handle), config, domain_pointer,
                                    error, len(error))
            if rc != 0:
                raise _error(rc, "cannot start: " + error.value.decode(errors="replace"))
            self.durability = (lib.zcq_config_get(config, b"durability") or b"").decode()
        finally:
            lib.zcq_config_destroy(ctypes.byref(config))
        self._lib = lib
        self._handle = handle
        self._finalizer = weakref.finalize(self, _destroy, lib, handle)
        self.command: str = lib.zcq_node_endpoint(handle, 0).decode()
        self.events: str = lib.zcq_node_endpoint(handle, 1).decode()
        self.query: str = lib.zcq_node_endpoint(handle, 2).decode()
        self.id: str = lib.zcq_node_id(handle).decode()

    @property
    def endpoints(self) -> Dict[str, str]:
        """The three bound endpoints: ``{"command": ..., "events": ..., "query": ...}``."""
        return {"command": self.command, "events": self.events, "query": self.query}

    @property
    def head(self) -> int:
        """The log head: position of the last durable event."""
        if not self._handle.value:
            raise ValueError("the node is closed")
        return int(self._lib.zcq_node_head(self._handle))

    @property
    def running(self) -> bool:
        return bool(self._handle.value)

    def client(self, **kwargs: Any) -> Client:
        """A :class:`zcqrs.Client` connected to this node's three endpoints."""
        return Client(command=self.command, query=self.query, events=self.events, **kwargs)

    def close(self) -> None:
        """Stop the node gracefully (commits in flight finish). Idempotent."""
        self._finalizer()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<zcqrs.Node %s data=%r command=%s%s>" % (
            self.id, self.data_dir, self.command, "" if self.running else " closed")
