"""FederatedBase: the driver side of a federation, and the one seam between schemas and Ray.

It holds the virtual nodes, the topology, the placement group and the TopologyManager; builds actors
lazily; starts every node's loop; supervises them (pings, restarts, ``minClients``); turns progress
into reports; and releases everything in ``stop()``. Schemas subclass it and say what a round is.

Every Ray call a schema needs on the driver is a method here (``build``, ``restore_nodes``,
``versions_after``, ``send``, ``final_sync``, ``stop``), and a node that failed or does not answer in
time surfaces as `NodeUnavailable`, never as a Ray exception: schemas never import Ray. Methods on the
base class rather than a separate module, because each of them needs the federation's own tables
(handles, pool hosts, node health) that this class already keeps.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import ray
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from red.errors import FederationFailed, TopologyError
from red.report import NodeState, Report
from red.runtime import placement
from red.runtime.inbox import limit_for_degree
from red.runtime.messages import Message, VersionEntry
from red.runtime.node import TOPOLOGY_MANAGER, VirtualNode, actor_name
from red.runtime.pool import PoolConfig
from red.runtime.recovery import Recoveries
from red.runtime.topology_manager import TopologyManager
from red.spec.health import Health

if TYPE_CHECKING:  # annotations only: the actors' processes never import networkx
    import networkx as nx

    from red.star_graph import StarGraph

log = logging.getLogger(__name__)

Emit = Callable[[Report], None]
# How much longer than the nodes' own wait a call for versions may take before the node counts as
# unavailable (a node being restarted answers only once it is back, or never).
VERSIONS_GRACE_SECONDS = 5.0


class NodeUnavailable(Exception):
    """A node actor failed, or did not answer within its bound. Not a federation failure: supervise()
    restarts the node (or writes it off) and progress resumes from the restored node."""


class FederatedBase:
    """Driver of one federation. Use as a context manager so that ``stop()`` always runs."""

    def __init__(
        self,
        name: str,
        nodes: list[VirtualNode],
        graph: nx.Graph | StarGraph,
        *,
        broker: dict[str, float] | None = None,
        placement_strategy: str = "PACK",
        placement_timeout_seconds: float = 60.0,
        max_restarts: int = 3,
        heartbeat_seconds: float = 5.0,
        round_timeout_seconds: float = 300.0,
        restart_timeout_seconds: float = 60.0,
        min_clients: int = 1,
        namespace: str | None = None,
    ) -> None:
        ids = [n.id for n in nodes]
        if len(set(ids)) != len(ids):
            raise TopologyError("node ids must be unique")
        extra = set(graph.nodes) - set(ids)
        if extra:
            raise TopologyError(f"the topology names unknown nodes {sorted(extra)[:5]}")
        self.name = name
        self.nodes: dict[str, VirtualNode] = {n.id: n for n in nodes}
        self.graph = graph
        self.broker = broker or {"cpu": 0.1}
        self.placement_strategy = placement_strategy
        self.placement_timeout_seconds = placement_timeout_seconds
        self.max_restarts = max_restarts
        self.heartbeat_seconds = heartbeat_seconds
        self.round_timeout_seconds = round_timeout_seconds
        self.restart_timeout_seconds = restart_timeout_seconds
        self.min_clients = min_clients
        self.namespace = namespace
        self.state: dict[str, NodeState] = {n.id: NodeState(n.id, n.role) for n in nodes}
        self.pg: Any = None
        self.tm: Any = None
        self._runs: dict[str, Any] = {}  # actor id → ObjectRef of its run()
        self._recovering = Recoveries(restart_timeout_seconds)  # failed actors Ray is restarting
        self._last_ping = 0.0
        self._stopped = False
        # The multiplexed pool (see red.runtime.pool): host actors, and what they run for their nodes.
        self.hosts: dict[str, VirtualNode] = {}
        self.hosted: dict[str, list[str]] = {}  # host id → the virtual node ids it serves
        self.host_config: PoolConfig | None = None
        self.initial_hosted_state: dict[str, dict[str, Any]] = {}

    # --- the multiplexed pool ----------------------------------------------------------------
    def pool(
        self,
        node_ids: list[str],
        hosts: list[VirtualNode],
        config: PoolConfig,
        initial_state: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Serve ``node_ids`` from ``hosts`` (round-robin) instead of one actor each. Call before build."""
        for h in hosts:
            self.hosts[h.id] = h
            self.hosted[h.id] = []
            self.state[h.id] = NodeState(h.id, "host")
        order = list(self.hosts)
        for i, nid in enumerate(node_ids):
            host = order[i % len(order)]
            self.nodes[nid].host = host
            self.hosted[host].append(nid)
        self.host_config = config
        self.initial_hosted_state = dict(initial_state or {})

    @property
    def actors(self) -> dict[str, VirtualNode]:
        """Every node that is (or becomes) an actor of its own: unpooled nodes and pool hosts."""
        own = {nid: vn for nid, vn in self.nodes.items() if vn.host is None}
        own.update(self.hosts)
        return own

    def _set_hosted_health(self, host: str, health: Any) -> None:
        for nid in self.hosted.get(host, []):
            self.state[nid].health = health

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> FederatedBase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def build(self, node_ids: Iterable[str] | None = None) -> None:
        """Place the group, start the TopologyManager, link the graph, and build the named nodes
        (all by default). Building is lazy: nodes not named stay virtual and cost nothing."""
        actors = self.actors
        if self.pg is None:
            bundles = placement.bundles_for(
                self.broker, [{"cpu": n.num_cpus, "gpu": n.num_gpus} for n in actors.values()]
            )
            self.pg = placement.create_placement_group(
                f"red-{self.name}",
                bundles,
                strategy=self.placement_strategy,
                timeout_seconds=self.placement_timeout_seconds,
            )
        index = {nid: i + 1 for i, nid in enumerate(actors)}
        wanted = list(actors) if node_ids is None else list(node_ids)
        wanted = [self.nodes[n].host or n if n in self.nodes else n for n in wanted]
        # Pool hosts first: Ray gives the first actors the worker processes it started ahead (as many as
        # CPUs), and the hosts are the slow starters (torch), on the way to round 1.
        wanted = sorted(dict.fromkeys(wanted), key=lambda n: n not in self.hosts)
        new = {}
        for nid in wanted:
            vn = actors[nid]
            if not vn.built:
                new[nid] = vn.build(
                    index[nid], self.pg, namespace=self.namespace, max_restarts=self.max_restarts,
                    inbox_limit=limit_for_degree(self.graph.degree(nid) if nid in self.graph else 0),
                )
        pending: list[Any] = []
        if self.tm is None:
            self.tm = (
                ray.remote(TopologyManager)
                .options(  # type: ignore[attr-defined]
                    name=actor_name(self.name, TOPOLOGY_MANAGER),
                    namespace=self.namespace,
                    num_cpus=min(self.broker.get("cpu", 0.1), 0.1) or 0.001,
                    max_restarts=-1,
                    max_task_retries=-1,  # messages in flight when it died are routed by the next one
                    scheduling_strategy=PlacementGroupSchedulingStrategy(
                        placement_group=self.pg, placement_group_bundle_index=0
                    ),
                )
                # The graph and the pooled nodes' initial state travel in the constructor's arguments:
                # a restarted manager has them again.
                .remote(self.name, namespace=self.namespace, ids=list(self.nodes) + list(self.hosts),
                        edges=list(self.graph.edges), hosted=self.hosted, states=self.initial_hosted_state)
            )
            # Not waited for here: the manager and every node actor start at once (each is a process
            # to launch; one after another, start-up took their sum). Nodes look it up only when they
            # first send, so it can come last.
            pending.append(self.tm.ping.remote())
        ray.get(pending)
        if new:
            ray.get(self.tm.register.remote({n: h for n, h in new.items() if n not in self.hosts}))
            for host in (n for n in new if n in self.hosts):
                ray.get(self.tm.register_hosted.remote(host, new[host], self.hosted[host]))
            pings = ray.get([h.ping.remote() for h in new.values()])
            for p in pings:
                st = self.state[p["id"]]
                st.health, st.incarnation, st.last_heartbeat = Health.ALIVE, p["incarnation"], p["time"]
                self._set_hosted_health(p["id"], Health.ALIVE)

    def stop(self) -> None:
        """Stop every node loop, kill every actor, remove the placement group. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        if not ray.is_initialized():
            return
        actors = self.actors
        for vn in actors.values():
            if vn.built:
                try:
                    vn.handle.stop.remote()
                except Exception:  # dead actors cannot be told; they are killed below anyway
                    pass
        if self._runs:
            ray.wait(list(self._runs.values()), num_returns=len(self._runs), timeout=2.0)
        for vn in actors.values():
            if vn.built:
                _kill(vn.handle)
                vn.handle = None
        _kill(self.tm)
        self.tm = None
        placement.remove(self.pg)
        self.pg = None

    # --- driver verbs ------------------------------------------------------------------------
    def handle(self, node_id: str) -> Any:
        """The actor of ``node_id`` (for a pooled node: its host's)."""
        vn = self.nodes[node_id] if node_id in self.nodes else self.hosts[node_id]
        if vn.host is not None:
            vn = self.hosts[vn.host]
        if not vn.built:
            self.build([node_id])
        return vn.handle

    def send(self, header: str, body: Any, to: str | list[str] | None = None) -> None:
        """Send from the driver (the broker, which may reach every node). ``to`` defaults to all."""
        recipients = list(self.nodes) if to is None else ([to] if isinstance(to, str) else list(to))
        ray.get(self.tm.publish.remote(Message(header, body, sender=None), recipients))

    def pull_version(
        self, node_ids: Iterable[str] | None = None, timeout: float | None = None, after: int = -1
    ) -> dict[str, VersionEntry | None]:
        """Each node's newest version entry (values, never ObjectRefs); None if none in ``timeout``."""
        ids = list(self.nodes) if node_ids is None else list(node_ids)
        refs = [self.handle(i).get_version.remote(after, timeout) for i in ids]
        return dict(zip(ids, ray.get(refs), strict=True))

    def restore_nodes(self, node_ids: Iterable[str]) -> None:
        """Give each of ``node_ids`` its `restore_state` (resuming from a checkpoint). Pooled nodes are
        skipped: their state lives in the TopologyManager (`initial_hosted_state`)."""
        ids = [n for n in node_ids if self.nodes[n].host is None]
        ray.get([self.handle(n).restore_state.remote(self.restore_state(n)) for n in ids])

    def versions_after(self, after: Mapping[str, int], timeout_seconds: float) -> dict[str, list[VersionEntry]]:
        """Node id → its buffered version entries above ``after[node id]``, oldest first; each node
        waits up to ``timeout_seconds`` for one. Raises NodeUnavailable when a node failed or does not
        answer within ``timeout_seconds + VERSIONS_GRACE_SECONDS``."""
        ids = list(after)
        refs = [self.handle(n).get_versions.remote(after[n], timeout_seconds) for n in ids]
        try:
            got = ray.get(refs, timeout=timeout_seconds + VERSIONS_GRACE_SECONDS)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as err:
            raise NodeUnavailable(str(err)) from None
        return dict(zip(ids, got, strict=True))

    def final_sync(self) -> None:
        """Exact final versions: ask every live node (they are idle by now)."""
        actors = self.actors  # pooled virtual nodes have no actor of their own to ask
        ids = [n for n, vn in actors.items() if self.state[n].health != Health.DEAD and vn.built]
        refs = [actors[n].handle.ping.remote() for n in ids]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=10)
        for ref in ready:
            try:
                p = ray.get(ref)
            except ray.exceptions.RayError:
                continue
            st = self.state[p["id"]]
            st.version, st.last_heartbeat = p["version"], p["time"]

    def start(self) -> None:
        """Build what is not built and start each node's ``train`` loop (with `train_config`)."""
        self.build()
        for nid, vn in self.actors.items():
            self._runs[nid] = vn.handle.run.remote(self._config_of(nid))

    def _config_of(self, actor_id: str) -> Any:
        """What ``actor_id``'s ``train`` runs with now: a pool host's `PoolConfig`, else the schema's."""
        if actor_id in self.hosts and self.host_config is not None:
            return self.host_config
        return self.train_config(actor_id)

    # --- supervision -------------------------------------------------------------------------
    def clients(self) -> list[str]:
        return [n for n, vn in self.nodes.items() if "train" in vn.role.split("+")]

    def live_clients(self) -> list[str]:
        return [n for n in self.clients() if self.state[n].health != Health.DEAD]

    def supervise(self) -> list[str]:
        """Collect finished runs, handle failed nodes, ping on the heartbeat. Returns finished ids."""
        finished: list[str] = []
        if self._runs:
            ready, _ = ray.wait(list(self._runs.values()), num_returns=len(self._runs), timeout=0)
            by_ref = {ref: nid for nid, ref in self._runs.items()}
            for ref in ready:
                nid = by_ref[ref]
                try:
                    ray.get(ref)
                except ray.exceptions.RayActorError:
                    del self._runs[nid]
                    self.state[nid].health = Health.RESTARTING
                    self._recovering.begin(nid, self.actors[nid].handle)
                    continue
                except ray.exceptions.RayTaskError as err:
                    raise FederationFailed(
                        f"node {nid!r} raised in train(): {err.cause!r}; fix the node's code or task",
                        reason="NodeError",
                    ) from None
                del self._runs[nid]
                self.state[nid].health = Health.FINISHED
                self._set_hosted_health(nid, Health.FINISHED)
                finished.append(nid)
        if len(self._recovering):
            self._advance_recovery()
        if time.monotonic() - self._last_ping >= self.heartbeat_seconds:
            self._last_ping = time.monotonic()
            self.ping_all(timeout=min(self.heartbeat_seconds, 5.0))
        live = self.live_clients()
        if len(live) < self.min_clients:
            raise FederationFailed(
                f"only {len(live)} live clients, below minClients {self.min_clients}: "
                f"{len(self.clients()) - len(live)} clients died after exhausting maxRestarts "
                f"({self.max_restarts}). Raise spec.faultTolerance.maxRestarts or lower spec.minClients.",
                reason="TooFewClients",
            )
        return finished

    def ping_all(self, timeout: float) -> None:
        ids = [n for n in self._runs if self.state[n].health in (Health.ALIVE, Health.RESTARTING)]
        actors = self.actors
        refs = {actors[n].handle.ping.remote(): n for n in ids}
        if not refs:
            return
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        for ref in ready:
            try:
                p = ray.get(ref)
            except ray.exceptions.RayError:
                continue  # its run() ref fails too; supervise() handles it there
            st = self.state[p["id"]]
            st.version = max(st.version, p["version"])
            st.last_heartbeat = p["time"]

    def _advance_recovery(self) -> None:
        """Nodes that came back are restored and restarted; those that did not, in time, are dead."""
        restarted, dead = self._recovering.poll()
        for nid in dead:
            st = self.state[nid]
            st.health = Health.DEAD
            why = self._recovering.why.pop(nid, "")
            log.warning("node %s is dead after %d restarts: %s", nid, st.restarts, why)
            self._set_hosted_health(nid, Health.DEAD)
            for lost in self.hosted.get(nid, [nid]):
                self.on_node_lost(lost, dead=True)
        for nid, p in restarted.items():
            st = self.state[nid]
            handle = self.actors[nid].handle
            st.restarts += 1
            st.incarnation = p["incarnation"]
            st.health = Health.ALIVE
            st.last_heartbeat = p["time"]
            log.warning("node %s restarted (%d)", nid, st.restarts)
            # A host keeps nothing worth restoring (node state lives in the TopologyManager); only the
            # messages it was working on are lost, which on_node_lost reports per virtual node.
            if nid not in self.hosts:
                try:
                    ray.get(handle.restore_state.remote(self.restore_state(nid)))
                except ray.exceptions.RayActorError:
                    pass  # it failed again: so does the run below, and supervise() starts over
            self._runs[nid] = handle.run.remote(self._config_of(nid))
            for lost in self.hosted.get(nid, [nid]):
                self.on_node_lost(lost, dead=False)

    # --- hooks for schemas -------------------------------------------------------------------
    def train_config(self, node_id: str) -> Any:
        """The frozen run configuration ``node_id``'s ``train`` gets, asked at every (re)start so that
        what changes between starts (a restored server's ``start_round``) is current."""
        return None

    def restore_state(self, node_id: str) -> dict[str, Any]:
        """What a restarted node gets back (the latest global model and its version)."""
        return {"version": self.state[node_id].version}

    def on_node_lost(self, node_id: str, *, dead: bool) -> None:
        """A node lost its in-flight work (restart) or is gone for good (dead)."""

    def report(self, event: str, round: int, rounds: int, metrics: dict[str, float], t0: float) -> Report:
        return Report(
            event=event,  # type: ignore[arg-type]
            federation=self.name,
            round=round,
            rounds=rounds,
            metrics=dict(metrics),
            nodes=[NodeState(**vars(s)) for s in self.state.values()],
            elapsed_seconds=time.monotonic() - t0,
        )


def _kill(handle: Any) -> None:
    """Kill an actor for good; one already gone (or never made) is fine."""
    if handle is None:
        return
    try:
        ray.kill(handle, no_restart=True)
    except Exception:
        pass
