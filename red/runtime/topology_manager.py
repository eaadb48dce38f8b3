"""The TopologyManager actor: owns the federation's graph, routes messages, enforces the edges."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable
from typing import Any

import ray

from red.errors import TopologyError
from red.runtime.messages import Message
from red.runtime.node import actor_name, shared_set
from red.runtime.node_states import NodeStates

log = logging.getLogger(__name__)


class TopologyManager:
    """Routes ``publish(msg, recipients)`` to node actors, refusing any recipient that is not a
    neighbour of the sender. The driver (sender ``None``) is the broker and may reach every node.

    Node handles are registered by the driver; several virtual nodes may share one host actor (the
    multiplexed pool), so messages are delivered per host in one call.

    It also keeps the pooled virtual nodes' state between uses (``checkout``/``checkin``, a `NodeStates`):
    an actor of its own for that cost a process, about 60 MB and a second of start-up CPU.

    The graph arrives as its edges and is kept as each node's neighbours: networkx, which the driver
    builds it with, would cost this process 12 MB of imports to answer "who are X's neighbours".

    Restarts lose nothing that matters: Ray re-runs the constructor with the same arguments, which carry
    the graph (``ids``, ``edges``), which pool host serves which virtual node (``hosted``) and the
    pooled nodes' initial state (``states``: their data indices), and a handle not registered since is
    found by its actor name. The hosts write their nodes' current state back after every batch, so
    versions come back with the first check-ins. The driver starts this actor with
    ``max_task_retries=-1``, so calls in flight when it died are run again by the new incarnation
    (a message may then arrive twice; receivers already ignore updates they do not wait for).
    """

    def __init__(
        self,
        federation: str,
        *,
        namespace: str | None = None,
        ids: Iterable[str] | None = None,
        edges: Iterable[tuple[str, str]] | None = None,
        hosted: dict[str, list[str]] | None = None,
        states: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.federation = federation
        self.namespace = namespace
        self.neighbors: dict[str, frozenset[str]] = {}
        self._hosts: dict[str, Any] = {}
        self._host_key: dict[str, str] = {}
        self._hosted_by = {nid: host for host, nids in (hosted or {}).items() for nid in nids}
        self._hosted_by.update({host: host for host in hosted or {}})
        self.delivered = 0
        self.refused = 0
        self.states = NodeStates(states)
        self.incarnation = uuid.uuid4().hex
        if ids is not None and edges is not None:
            self.link_nodes(ids, edges)

    def link_nodes(self, ids: Iterable[str], edges: Iterable[tuple[str, str]]) -> int:
        """Install the undirected graph over ``ids`` with ``edges``; returns the number of edges."""
        edges = list(edges)
        neighbors: dict[str, set[str]] = {n: set() for n in ids}
        missing = sorted({n for edge in edges for n in edge if n not in neighbors})
        if missing:
            raise TopologyError(f"the topology names nodes that are not in the federation: {missing[:5]}")
        for a, b in edges:
            neighbors[a].add(b)
            neighbors[b].add(a)
        shared: dict[frozenset[str], frozenset[str]] = {}
        self.neighbors = {n: shared_set(shared, nb) for n, nb in neighbors.items()}
        return self.edge_count

    @property
    def edge_count(self) -> int:
        # A self-loop is one edge that lists its node once.
        return sum(len(nb) + (n in nb) for n, nb in self.neighbors.items()) // 2

    def register(self, handles: dict[str, Any], host_keys: dict[str, str] | None = None) -> None:
        """Node id → actor handle (``host_keys`` groups ids hosted by the same actor)."""
        self._hosts.update(handles)
        for node_id in handles:
            self._host_key[node_id] = (host_keys or {}).get(node_id, node_id)

    def register_hosted(self, host_id: str, handle: Any, node_ids: list[str]) -> None:
        """Virtual nodes ``node_ids`` are served by the pool host ``host_id`` (one handle, many ids)."""
        self._hosts[host_id] = handle
        self._host_key[host_id] = host_id
        for node_id in node_ids:
            self._hosts[node_id] = handle
            self._host_key[node_id] = host_id

    def get_neighbors(self, node_id: str) -> list[str]:
        nb = self.neighbors.get(node_id)
        if nb is None:
            raise TopologyError(f"unknown node {node_id!r} in federation {self.federation!r}")
        return sorted(nb)

    def direct_routes(self, node_id: str) -> dict[str, Any]:
        """Handles of ``node_id``'s neighbours that are actors of their own, for direct delivery.

        Nodes send to these without the relay hop (half the latency of a round trip through this
        actor); the graph is still the authority, since only neighbours are handed out.
        """
        out = {}
        for n in self.get_neighbors(node_id):
            if n not in self._hosted_by:
                handle = self._lookup(n)
                if handle is not None and self._host_key.get(n) == n:
                    out[n] = handle
        return out

    def _lookup(self, node_id: str) -> Any:
        """``node_id``'s actor: registered, else found by name (after a restart of this actor); None
        when it is not built yet."""
        handle = self._hosts.get(node_id)
        if handle is not None:
            return handle
        key = self._hosted_by.get(node_id, node_id)
        try:
            handle = ray.get_actor(actor_name(self.federation, key), namespace=self.namespace)
        except ValueError:
            return None
        self._hosts[node_id], self._host_key[node_id] = handle, key
        return handle

    def routes(self, node_id: str) -> tuple[dict[str, str], dict[str, Any]]:
        """How ``node_id`` reaches every neighbour without this actor: neighbour → the actor that
        serves it (itself, or its pool host), and that actor id → handle. A sender groups recipients
        by actor and calls each once (``deliver`` or, for a pool host, ``deliver_to``). After a restart
        of this actor the handles are found by name (`_lookup`); neighbours not built yet get no route
        (their messages go through `publish`)."""
        reachable = [n for n in self.get_neighbors(node_id) if n in self._host_key or self._lookup(n) is not None]
        via = {n: self._host_key[n] for n in reachable}
        return via, {self._host_key[n]: self._hosts[n] for n in reachable}

    def neighbors_of(self, node_ids: list[str]) -> dict[str, list[str]]:
        return {n: self.get_neighbors(n) for n in node_ids}

    def publish(self, msg: Message, recipients: list[str]) -> int:
        """Deliver ``msg`` to each recipient; returns how many deliveries were made."""
        if msg.sender is not None:
            allowed = self.neighbors.get(msg.sender, frozenset())
            bad = [r for r in recipients if r not in allowed]
            if bad:
                # Nodes check first and raise in the sender; this is the authoritative backstop.
                self.refused += len(bad)
                log.warning("refused %s -> %s: not neighbours", msg.sender, bad)
                recipients = [r for r in recipients if r in allowed]
        by_host: dict[str, list[str]] = {}
        for r in recipients:
            if self._lookup(r) is None:
                raise TopologyError(f"no node {r!r} in federation {self.federation!r}")
            by_host.setdefault(self._host_key[r], []).append(r)
        for ids in by_host.values():
            handle = self._hosts[ids[0]]
            if len(ids) == 1 and self._host_key[ids[0]] == ids[0]:
                handle.deliver.remote(msg)
            else:
                handle.deliver_to.remote(msg, ids)
        self.delivered += len(recipients)
        return len(recipients)

    # --- pooled nodes' state ------------------------------------------------------------------
    def checkout(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """The states of ``ids`` (copies), for a host about to run them."""
        return self.states.checkout(ids)

    def checkin(self, states: dict[str, dict[str, Any]]) -> None:
        """A host's nodes' states after a batch (sent without waiting; Ray keeps one caller's order)."""
        self.states.checkin(states)

    def ping(self) -> dict[str, Any]:
        """Which incarnation this is (it changes when Ray restarts the actor) and its process."""
        return {"incarnation": self.incarnation, "pid": os.getpid(), "edges": self.edge_count}

    def stats(self) -> dict[str, int]:
        return {"delivered": self.delivered, "refused": self.refused, "edges": self.edge_count}
