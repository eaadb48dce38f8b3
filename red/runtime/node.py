"""Virtual nodes and the base class of node actors.

A `VirtualNode` is a lazy description: creating 10,000 of them costs no Ray resources. `build()` turns
one into the named actor ``{federation}/{node_id}`` inside the federation's placement group.

`FederatedNode` is the base class of those actors. Subclasses implement ``build(config)`` (set up model
and data from the node's build configuration, e.g. `red.runtime.task_node.BuildConfig`) and
``train(config)`` (the node's loop: ``receive`` messages, ``send`` to neighbours, ``update_version``;
``config`` is the frozen run configuration its schema made for it, e.g. `red.schemas.star.ServerConfig`).
Both take one typed object rather than keyword arguments, so a misspelt field fails where the
configuration is made instead of being silently dropped.

The runtime keeps a version buffer so the driver can ``pull_version()`` at any time, and answers
``ping()`` from the supervisor while ``train()`` runs (node actors are threaded).
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from typing import Any

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from red.errors import TopologyError
from red.runtime.inbox import MIN_LIMIT as MIN_INBOX_LIMIT
from red.runtime.inbox import Inbox
from red.runtime.messages import INLINE_LIMIT_BYTES, Message, RoundRecord, VersionEntry, payload_bytes

log = logging.getLogger(__name__)

ROLES = frozenset({"train", "eval", "test", "aggregate"})
TOPOLOGY_MANAGER = "__topology_manager__"
# Above this many recipients one call to the TopologyManager beats a call per recipient from the node.
DIRECT_FANOUT = 64


def parse_role(role: str) -> frozenset[str]:
    """'train', 'eval', 'train+eval' ... → the set of roles; unknown ones are an error."""
    parts = frozenset(p.strip() for p in role.replace(",", "+").split("+") if p.strip())
    unknown = parts - ROLES
    if not parts or unknown:
        raise ValueError(f"unknown role(s) {sorted(unknown)} in {role!r}; use {sorted(ROLES)} joined by '+'")
    return parts


def actor_name(federation: str, node_id: str) -> str:
    return f"{federation}/{node_id}"


def shared_set(table: dict[frozenset[str], frozenset[str]], members: Iterable[str]) -> frozenset[str]:
    """``members`` as a frozenset, the same object for every equal set already in ``table``: a star's
    10,000 clients all have the neighbourhood {server}, and one set each cost 2.2 MB of a process.
    Frozen, so that sharing one cannot leak a change from one node to another."""
    frozen = frozenset(members)
    return table.setdefault(frozen, frozen)


class StopNode(Exception):
    """Raised inside ``receive`` when the driver stops the federation; ends ``train`` cleanly."""


class FederatedNode:
    """Base class of node actors. Runs inside Ray; never import kubernetes or kopf here."""

    def __init__(
        self,
        node_id: str,
        role: str,
        federation: str,
        *,
        namespace: str | None = None,
        config: Any = None,
        gpu_fraction: float = 0.0,
        version_buffer: int = 4,
        inbox_limit: int = MIN_INBOX_LIMIT,
    ) -> None:
        self.id = node_id
        self.role = role
        self.roles = parse_role(role)
        self.federation = federation
        self.namespace = namespace
        self.config: Any = config  # what build() was given; kept so a subclass can read it later
        self.version = 0
        self.incarnation = uuid.uuid4().hex  # changes when Ray restarts the actor: how restarts are seen
        self.started_at = time.time()
        self.last_heartbeat = self.started_at
        self.status = "Idle"
        self._queue: Inbox[Message] = Inbox(inbox_limit)  # bounded: the oldest message is dropped
        self._versions: deque[VersionEntry] = deque(maxlen=max(version_buffer, 1))
        self._version_cv = threading.Condition()
        self._stopped = threading.Event()
        self._neighbors: frozenset[str] | None = None
        self._routes: tuple[dict[str, str], dict[str, Any]] | None = None
        self._tm: Any = None
        _cap_gpu_memory(gpu_fraction)
        self.build(config)

    # --- hooks for subclasses ---------------------------------------------------------------
    def build(self, config: Any) -> None:
        """Set up the model and the data from ``config`` (the `VirtualNode`'s; None when it has none).
        Runs again after a restart (state is lost then)."""

    def train(self, config: Any) -> Any:
        """The node's loop, run with the configuration the driver made for this (re)start. Return when
        done (or let ``receive`` raise StopNode)."""
        raise NotImplementedError(f"{type(self).__name__} must implement train()")

    def restore(self, state: dict[str, Any]) -> None:
        """Called after a restart with what the driver knows (latest global model, version ...)."""
        if "version" in state:
            self.version = int(state["version"])

    # --- messaging --------------------------------------------------------------------------
    @property
    def neighbors(self) -> frozenset[str]:
        if self._neighbors is None:
            self._neighbors = frozenset(ray.get(self._topology_manager().get_neighbors.remote(self.id)))
        return self._neighbors

    def lookup_neighbors(self, node_ids: list[str]) -> dict[str, list[str]]:
        """The neighbours of each of ``node_ids`` (any nodes of the federation), from the topology."""
        got: dict[str, list[str]] = ray.get(self._topology_manager().neighbors_of.remote(list(node_ids)))
        return got

    def send(self, header: str, body: Any, to: str | list[str] | None = None) -> list[str]:
        """Send to ``to`` (default: all neighbours). A non-neighbour raises TopologyError.

        Large bodies are stored once (``ray.put``) and travel by reference. Recipients are grouped
        by the actor that serves them (their own, or their pool host) and each actor gets one call
        directly, without the TopologyManager's relay hop; the routes come from the TopologyManager
        once, and only neighbours have routes, so the topology is still enforced. Above DIRECT_FANOUT
        actors, one call to the TopologyManager beats a call per actor from here.
        """
        recipients = sorted(self.neighbors) if to is None else ([to] if isinstance(to, str) else list(to))
        bad = [r for r in recipients if r not in self.neighbors]
        if bad:
            raise TopologyError(
                f"node {self.id!r} cannot send to {bad}: not its neighbours in this topology "
                f"(neighbours: {sorted(self.neighbors)[:10]}{' ...' if len(self.neighbors) > 10 else ''})"
            )
        if not recipients:
            return []
        msg = Message(header=header, body=body, sender=self.id)
        if len(recipients) > 1 and payload_bytes(body) >= INLINE_LIMIT_BYTES:
            msg.body, msg.by_ref = ray.put(body), True  # serialise once, fan the reference out
        deliver_direct(msg, recipients, *self._routes_table(), relay=self._topology_manager())
        return recipients

    def _routes_table(self) -> tuple[dict[str, str], dict[str, Any]]:
        if self._routes is None:
            self._routes = ray.get(self._topology_manager().routes.remote(self.id))
        return self._routes

    def receive(self, block: bool = True, timeout: float | None = None) -> Message | None:
        """The next message, or None on timeout. Raises StopNode once the federation stops."""
        if self._stopped.is_set():
            raise StopNode()
        try:
            msg = self._queue.get(block=block, timeout=timeout)
        except queue.Empty:
            return None
        if msg.header == "__stop__":
            self._stopped.set()
            raise StopNode()
        if msg.by_ref:
            msg.body, msg.by_ref = ray.get(msg.body), False
        return msg

    def deliver(self, msg: Message) -> None:
        """Called by the TopologyManager (another thread of this actor)."""
        if not self._queue.put(msg):
            _warn_dropped(self.id, self._queue)

    # --- versions ---------------------------------------------------------------------------
    def update_version(self, *, params: Any = None, record: RoundRecord | None = None) -> int:
        """Record a new model version (its ``params``, and the ``record`` of the round it finished) in
        the buffer and return the version number."""
        with self._version_cv:
            self.version += 1
            self._versions.append(VersionEntry(self.id, self.version, params, time.time(), record))
            self._version_cv.notify_all()
        self.last_heartbeat = time.time()
        return self.version

    def get_version(self, after: int = -1, timeout: float | None = None) -> VersionEntry | None:
        """The newest entry whose version is above ``after``; waits up to ``timeout`` for one."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._version_cv:
            while not self._versions or self._versions[-1].version <= after:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._version_cv.wait(remaining)
            return self._versions[-1]

    def get_versions(self, after: int = -1, timeout: float | None = None) -> list[VersionEntry]:
        """Every buffered entry above ``after`` (oldest first); waits up to ``timeout`` for one."""
        newest = self.get_version(after, timeout)
        if newest is None:
            return []
        with self._version_cv:
            return [e for e in self._versions if e.version > after]

    # --- control (driver and supervisor) ----------------------------------------------------
    def run(self, config: Any) -> dict[str, Any]:
        """Entry point the driver calls: runs ``train(config)`` and reports how it ended."""
        self._stopped.clear()
        self.status = "Running"
        try:
            result = self.train(config)
        except StopNode:
            result = None
        self.status = "Finished"
        return {"id": self.id, "version": self.version, "result": result}

    def ping(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "incarnation": self.incarnation,
            "version": self.version,
            "status": self.status,
            "pid": os.getpid(),
            "time": time.time(),
            "lastHeartbeat": self.last_heartbeat,
            "dropped": self._queue.dropped,  # messages the bounded inbox dropped (oldest first)
            "queued": self._queue.qsize(),  # messages waiting in the inbox
        }

    def restore_state(self, state: dict[str, Any]) -> None:
        self.restore(state)

    def imported(self, module: str) -> bool:
        """Whether this actor's process has imported ``module``: a server without torch must stay so."""
        return module in sys.modules

    def stop(self) -> None:
        self._stopped.set()  # a full inbox may drop the message below; the flag still ends the loop
        self._queue.put(Message("__stop__", None))

    def _topology_manager(self) -> Any:
        if self._tm is None:
            self._tm = ray.get_actor(actor_name(self.federation, TOPOLOGY_MANAGER), namespace=self.namespace)
        return self._tm


def deliver_direct(msg: Message, recipients: list[str], via: dict[str, str], handles: dict[str, Any],
                   relay: Any = None) -> None:
    """Deliver ``msg`` to ``recipients`` with one call per serving actor (``via``: recipient → actor id,
    ``handles``: actor id → handle). Recipients without a route, or more than DIRECT_FANOUT actors,
    go through the TopologyManager ``relay`` (looked up by the caller when None)."""
    by_actor: dict[str, list[str]] = {}
    for r in recipients:
        key = via.get(r)
        if key is None:
            by_actor = {}
            break
        by_actor.setdefault(key, []).append(r)
    if not by_actor or len(by_actor) > DIRECT_FANOUT:
        if relay is None:
            raise TopologyError(f"no direct route to {recipients[:5]}")
        relay.publish.remote(msg, recipients)
        return
    for key, ids in by_actor.items():
        if ids == [key]:
            handles[key].deliver.remote(msg)
        else:
            handles[key].deliver_to.remote(msg, ids)


def _warn_dropped(node_id: str, inbox: Inbox[Message]) -> None:
    if inbox.dropped & (inbox.dropped - 1) == 0:  # the 1st, 2nd, 4th, 8th ... drop: loud, never a flood
        log.warning("node %s: inbox full (%d messages); dropped the oldest (%d dropped so far)",
                    node_id, inbox.limit, inbox.dropped)


def _cap_gpu_memory(fraction: float) -> bool:
    """Make a fractional GPU a hard memory cap: Ray's fractions only limit scheduling.

    Returns whether the cap was set. A node may be given a GPU share that torch cannot see (a node
    that advertises `nvidia.com/gpu` without a device, or a CPU-only torch): then the node trains on
    the CPU, and says once why there is no cap rather than failing.
    """
    if not 0 < fraction < 1:
        return False
    try:
        import torch
    except ImportError:
        return False
    if not torch.cuda.is_available():
        log.warning("GPU share %.3g given but torch finds no CUDA device: no GPU memory cap, training on CPU", fraction)
        return False
    torch.cuda.set_per_process_memory_fraction(fraction)
    return True


class VirtualNode:
    """A lazy node: holds what is needed to build the actor, and the handle once built."""

    def __init__(
        self,
        template: type[FederatedNode],
        node_id: str,
        role: str,
        federation: str,
        *,
        config: Any = None,
        num_cpus: float = 0.1,
        num_gpus: float = 0.0,
    ) -> None:
        parse_role(role)
        self.template = template
        self.id = node_id
        self.role = role
        self.federation = federation
        self.config = config  # handed to the actor's build(); a frozen dataclass, so safe to share
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.handle: Any = None
        self.host: str | None = None  # id of the pool host serving this node (red.runtime.pool), if any

    @property
    def built(self) -> bool:
        return self.handle is not None

    def build(
        self,
        bundle_index: int,
        placement_group: Any,
        *,
        namespace: str | None = None,
        max_restarts: int = 0,
        inbox_limit: int = MIN_INBOX_LIMIT,
    ) -> Any:
        if self.handle is not None:
            return self.handle
        cls = ray.remote(self.template)
        self.handle = cls.options(  # type: ignore[attr-defined]
            name=actor_name(self.federation, self.id),
            namespace=namespace,
            num_cpus=self.num_cpus,
            num_gpus=self.num_gpus,
            max_restarts=max_restarts,
            max_concurrency=16,
            scheduling_strategy=PlacementGroupSchedulingStrategy(
                placement_group=placement_group, placement_group_bundle_index=bundle_index
            ),
        ).remote(
            self.id,
            self.role,
            self.federation,
            namespace=namespace,
            config=self.config,
            gpu_fraction=self.num_gpus if self.num_gpus < 1 else 0.0,
            inbox_limit=inbox_limit,
        )
        return self.handle

    def __repr__(self) -> str:
        return f"VirtualNode({self.id!r}, role={self.role!r}, built={self.built})"
