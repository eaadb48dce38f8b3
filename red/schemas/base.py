"""Schema: a FederatedBase that knows how to build itself from a spec and drive rounds to the end."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from red.errors import FederationFailed
from red.registry import algorithms, tasks
from red.report import Report
from red.runtime import placement
from red.runtime.federation import Emit, FederatedBase, NodeUnavailable
from red.runtime.messages import VersionEntry
from red.runtime.node import VirtualNode
from red.runtime.pool import PoolConfig, PoolHost, decide_pool_size, group_slots
from red.runtime.task_node import BuildConfig, TaskNode

if TYPE_CHECKING:  # pydantic (the spec model) and networkx: the actors these modules define never need them
    import networkx as nx

    from red.spec.model import Federation
    from red.star_graph import StarGraph


def client_ids(clients: int) -> list[str]:
    return [f"client_{i}" for i in range(clients)]


class Schema(FederatedBase):
    """Base of the built-in schemas. Subclasses define the nodes and graph (``layout``) and what
    progress looks like (``poll_progress``); the loop, supervision and reports are shared."""

    name_in_spec: ClassVar[str] = ""

    def __init__(self, fed: Federation, *, rounds: int | None = None, namespace: str | None = None,
                 checkpointer: Any = None) -> None:
        spec = fed.spec
        self.fed = fed
        self.spec = spec
        self.rounds = rounds if rounds is not None else spec.rounds
        self.algorithm_cls = algorithms.get(spec.algorithm.name)
        self.task_cls = tasks.get(spec.task.name)
        # Made once from the spec; every node gets it with its own data index (`node`).
        self.build_config = BuildConfig(task_cls=self.task_cls, task_params=spec.task.params,
                                        num_clients=spec.clients, seed=spec.seed)
        # Check the free-form params here, in the driver, so a typo fails in a second with the field
        # named instead of inside every node actor's constructor.
        self.algorithm_cls(**spec.algorithm.params)
        self.build_config.make_task()
        self.checkpointer = checkpointer
        self.start_round = 0
        self.resume_state: dict[str, Any] | None = None
        nodes, graph = self.layout()
        ft = spec.fault_tolerance
        super().__init__(
            fed.name,
            nodes,
            graph,
            broker={"cpu": spec.resources.broker.cpu, "gpu": spec.resources.broker.gpu},
            placement_strategy=spec.resources.placement_strategy,
            placement_timeout_seconds=spec.resources.placement_timeout_seconds,
            max_restarts=ft.max_restarts,
            heartbeat_seconds=ft.heartbeat_seconds,
            round_timeout_seconds=ft.round_timeout_seconds,
            restart_timeout_seconds=ft.restart_timeout_seconds,
            min_clients=spec.effective_min_clients,
            namespace=namespace,
        )

    # --- to implement ------------------------------------------------------------------------
    @classmethod
    def graph_of(cls, fed: Federation) -> tuple[nx.Graph | StarGraph, dict[str, str]]:
        """(graph, node id → role) this schema builds for ``fed``. Pure: no Ray, no actors. The run and
        `red topology` both use it, so what is drawn is what runs."""
        raise NotImplementedError

    def layout(self) -> tuple[list[VirtualNode], nx.Graph | StarGraph]:
        raise NotImplementedError

    def train_config(self, node_id: str) -> Any:
        """The frozen configuration ``node_id``'s ``train`` runs with (asked at every (re)start)."""
        raise NotImplementedError

    def poll_progress(self, after: int, timeout: float) -> list[VersionEntry]:
        """Entries (with the `RoundRecord` of each) for rounds finished after ``after``."""
        raise NotImplementedError

    def is_done(self, finished: list[str]) -> bool:
        raise NotImplementedError

    def checkpoint_state(self, entry: VersionEntry) -> dict[str, Any]:
        """What a checkpoint after ``entry``'s round must hold to resume exactly."""
        return {}

    def apply_resume(self, state: dict[str, Any]) -> None:
        """Take a loaded checkpoint: set ``start_round`` and what nodes are restored with."""
        self.start_round = int(state["round"])
        self.resume_state = state

    # --- shared helpers ----------------------------------------------------------------------
    def client_ids(self) -> list[str]:
        return client_ids(self.spec.clients)

    def node(self, node_id: str, role: str, index: int = -1, template: type | None = None) -> VirtualNode:
        res = self.spec.resources
        return VirtualNode(
            template or TaskNode,
            node_id,
            role,
            self.fed.name,
            config=replace(self.build_config, index=index),
            num_cpus=res.per_node.cpu,
            num_gpus=res.per_node.gpu,
        )

    def maybe_pool(
        self,
        ids: list[str],
        program: type,
        program_config: Any = None,
        initial_state: dict[str, dict[str, Any]] | None = None,
        *,
        forks: bool = False,
    ) -> int:
        """Multiplex the nodes ``ids`` onto a pool of host actors running ``program`` (given
        ``program_config``, the run configuration of the nodes it stands in for) when one actor
        per node does not fit. ``spec.resources.maxActors`` decides when set; otherwise the engine,
        from the Ray cluster's CPUs and memory (`red.runtime.pool.decide_pool_size`), and with
        ``forks`` (the program shares its batches out) on CPUs, groups those processes into one host
        per Ray node's cores with trainers forked from it (`red.runtime.pool.group_slots`). Returns
        the number of hosts (0: no pool)."""
        res = self.spec.resources
        cpus = mem = 0.0
        if res.max_actors is None:
            capacity = placement.cluster_capacity()
            if capacity is None:
                return 0  # drawing or validating a spec: no cluster to size a pool for
            cpus, mem = capacity[0] - res.broker.cpu, capacity[1]
        n = decide_pool_size(
            len(ids),
            len(self.nodes) - len(ids),
            max_actors=res.max_actors,
            per_node_cpu=res.per_node.cpu,
            cluster_cpus=cpus,
            cluster_memory=mem,
        )
        if n is None:
            return 0
        count, processes = n, 1
        if forks and res.max_actors is None and not res.per_node.gpu:
            count, processes = group_slots(n, placement.node_cpus())
        hosts = [self.node(f"pool-{k}", "train", template=PoolHost) for k in range(count)]
        for h in hosts:  # a host asks Ray for the cores its trainers use too
            h.num_cpus = res.per_node.cpu * processes
        self.pool(ids, hosts, PoolConfig(program, program_config, trainers=processes - 1), initial_state)
        return count

    # --- the loop ----------------------------------------------------------------------------
    def run(self, emit: Emit) -> Report:
        """Build, start, supervise until the last round; emit a report per round. Always stops."""
        t0 = time.monotonic()
        try:
            self.start()
            last = self.start_round
            metrics: dict[str, float] = {}
            emit(self.report("start", last, self.rounds, metrics, t0))
            last_progress = time.monotonic()
            finishing = False
            while True:
                # Once the nodes say they are done, poll one last time: the final round may have
                # been recorded between the previous poll and that check.
                for entry in self._poll(last, timeout=0.0 if finishing else 0.25):
                    r = entry.round
                    if r <= last:
                        continue
                    last = r
                    metrics = entry.metrics
                    self.absorb(entry)
                    last_progress = time.monotonic()
                    # Saved before the round's report, so the report names the checkpoint it made.
                    if self.checkpointer is not None and self.checkpointer.due(last, self.rounds):
                        self.checkpointer.save(last, self.checkpoint_state(entry))
                    emit(self.report("round", last, self.rounds, metrics, t0))
                if finishing:
                    break
                finished = self.supervise()
                if self.is_done(finished):
                    finishing = True
                    continue
                if time.monotonic() - last_progress > self.round_timeout_seconds:
                    raise FederationFailed(
                        f"no round finished in {self.round_timeout_seconds:g}s (last round {last}); "
                        "a node may be stuck. Raise spec.faultTolerance.roundTimeoutSeconds if rounds "
                        "are legitimately this slow.",
                        reason="Stalled",
                    )
            self.final_sync()
            return self.report("done", last, self.rounds, metrics, t0)
        finally:
            self.stop()

    def _poll(self, after: int, timeout: float) -> list[VersionEntry]:
        """``poll_progress``, where a node that failed meanwhile means "nothing yet": supervise()
        restores it (or fails the run) and progress resumes from the restored node."""
        try:
            return self.poll_progress(after, timeout)
        except NodeUnavailable:
            time.sleep(0.1)  # the failure is handled by supervise(); do not spin meanwhile
            return []

    def absorb(self, entry: VersionEntry) -> None:
        """Fold a progress entry's per-node facts into the node table."""
        src = self.state.get(entry.id)
        if src is not None:
            src.version = max(src.version, entry.version)
            src.last_heartbeat = entry.timestamp
        if entry.record is None:
            return
        for nid, v in entry.record.client_versions.items():
            st = self.state.get(nid)
            if st is not None:
                st.version = max(st.version, int(v))
        for nid, n in entry.record.participation.items():
            if nid in self.state:
                self.state[nid].rounds = int(n)
