"""zcqrs: Python bindings for the zcqrs CQRS / event-sourcing engine.

- :class:`Client` speaks ZCQ/1 (ZeroMQ + MessagePack) to any node, local or
  remote: commands (``send``, ``send_many``), view queries (``get``,
  ``list``, ``count``), log reads (``read``, ``stream``) and status
  (``views``, ``health``, ``stats``, ``rebuild``). Pure Python.
- :class:`ClusterClient` (``Client.connect_cluster(seeds)``) talks to a
  whole cluster: it keeps the slot map, sends each command straight to its
  group's leader, follows the map as leaders move, and reads your writes
  across groups (``get(view, key, after=result)``).
- :class:`Subscription` follows the event log from a position: catches up
  from the log, then goes live, filling any gap; never a duplicate.
- :class:`Projection` (with :func:`on`) builds a read model in Python from a
  subscription, checkpointed to a file.
- :class:`Node` runs a node in this process through libzcqrs (ctypes).

Errors are :class:`Error` subclasses named after the ZCQ/1 codes:
:class:`Invalid`, :class:`Unknown`, :class:`Rejected`, :class:`Conflict`,
:class:`Timeout`, :class:`Unavailable`, :class:`Denied`,
:class:`InternalError`; :class:`NoAnswer` (a Timeout: no reply, the node is
down or elsewhere) and :class:`ViewNotReady` (:class:`UnknownView`,
:class:`ViewBehind`, :class:`ViewsUnavailable`) tell the common cases apart.

``Client()`` with no endpoint connects where the CLI does: ``ZCQRS_URL``
(``tcp://HOST:PORT``: command PORT, events PORT+1, query PORT+2) or
``ZCQRS_COMMAND``/``ZCQRS_EVENTS``/``ZCQRS_QUERY``, else 127.0.0.1:7400-7402.

Quick start::

    import tempfile, zcqrs
    with zcqrs.Node(tempfile.mkdtemp()) as node, node.client() as client:
        result = client.send("account", "42", "open", {"owner": "ada"})
        client.send("account", "42", "deposit", {"amount": 500})
        print(client.get("accounts", "42", min_position=result.position))
"""

from .errors import (Conflict, Denied, Error, InternalError, Invalid, NoAnswer, Rejected,
                     Timeout, Unavailable, Unknown, UnknownView, ViewBehind, ViewNotReady,
                     ViewsUnavailable)
from .client import Client, CommandResult, Outcome, Page, default_endpoints, endpoints_from_url
from .cluster import ClusterClient, ClusterMap, crc16, slot_of
from .subscription import Subscription
from .projection import Projection, on
from .node import Node

__version__ = "0.1.0"

__all__ = [
    "Client", "CommandResult", "Outcome", "Page", "ClusterClient", "ClusterMap", "crc16",
    "slot_of", "Subscription", "Projection", "on", "Node",
    "Error", "Invalid", "Unknown", "Rejected", "Conflict", "Timeout", "Unavailable", "Denied",
    "InternalError", "NoAnswer", "ViewNotReady", "UnknownView", "ViewBehind",
    "ViewsUnavailable", "default_endpoints", "endpoints_from_url",
]
