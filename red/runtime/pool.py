"""Multiplexing many virtual nodes onto a bounded pool of host actors.

One actor per virtual node stops fitting long before 1,000 clients: a torch actor is about 270 MB and
takes seconds to start. Instead, virtual nodes whose behaviour is *message-driven* (a star client: "model
in, update out") are hosted by a few `PoolHost` actors. The TopologyManager routes a message for virtual
node ``client_17`` to its host (``deliver_to(msg, ids)``, one call per host for a broadcast); the host
runs the node's `HostedProgram` for it and sends the answer *as* ``client_17``, so the topology is still
enforced per virtual node.

A virtual node's state (version, participation count, data index, and model parameters for programs
that keep them) lives *outside* the host, in the federation's TopologyManager (`NodeStates`), and is
checked out on first use and written back after each use. A host therefore holds one model and one
task regardless of how many nodes it serves, so its memory is flat in the number of clients, and a
restarted host loses nothing but the message it was working on.

Who decides (see `decide_pool_size`): ``spec.resources.maxActors`` when set (the most node actors the
federation may start); otherwise the engine, from the Ray cluster's CPUs and memory at start-up. When
the engine decides, hosts on CPUs whose program trains a batch in shares (a synchronous star round) are
also grouped (`group_slots`): one host per Ray node's worth of cores, each with trainers forked from it
(`red.runtime.forked`) that share its torch, instead of one torch process per core.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import ray
from ray.exceptions import RayActorError

from red.aggregation import Params
from red.errors import FederationFailed, TopologyError
from red.runtime.forked import ForkedTrainers, TrainerLost
from red.runtime.messages import INLINE_LIMIT_BYTES, Message, payload_bytes
from red.runtime.node import actor_name, deliver_direct, shared_set
from red.runtime.task_node import TaskNode, assigned_gpu

log = logging.getLogger(__name__)

# What one torch node actor costs (measured: about 270 MB RSS); used only for the engine's default.
ACTOR_MEMORY_BYTES = 300 * 1024**2


def decide_pool_size(
    poolable: int,
    fixed: int,
    *,
    max_actors: int | None,
    per_node_cpu: float,
    cluster_cpus: float,
    cluster_memory: float,
) -> int | None:
    """How many host actors to multiplex ``poolable`` virtual nodes onto; None for one actor each.

    ``fixed`` nodes (servers, cluster heads) always get their own actor.

    * ``max_actors`` set (the spec decides): pool when ``poolable + fixed > max_actors``, with
      ``max_actors - fixed`` hosts (at least one).
    * unset (the engine decides): one actor per node while every node fits the cluster's CPUs (at
      ``perNode.cpu`` each) and memory (at about 300 MB per torch actor); beyond that, a pool of
      as many hosts as CPUs (each trains on a core of its own; more would only contend for cores and
      cost a torch process each, about 500 MB), never more than fits.
    """
    total = poolable + fixed
    if poolable == 0:
        return None
    if max_actors is not None:
        return None if total <= max_actors else max(1, max_actors - fixed)
    fit_cpu = math.floor(cluster_cpus / per_node_cpu) if per_node_cpu > 0 else total
    fit_mem = math.floor(cluster_memory / ACTOR_MEMORY_BYTES) if cluster_memory > 0 else total
    fit = max(1, min(fit_cpu, fit_mem))
    if total <= fit:
        return None
    return max(1, min(fit - fixed, math.ceil(cluster_cpus), poolable))


def group_slots(slots: int, node_cpus: list[float]) -> tuple[int, int]:
    """(hosts, processes per host) for ``slots`` training processes on a Ray cluster whose nodes have
    ``node_cpus`` CPUs: as few hosts as fit one per node's cores, the slots shared evenly among them.
    Each host is one actor (one torch) plus ``processes - 1`` trainers forked from it. Nodes without a
    whole CPU (a KubeRay head started with ``num-cpus: 0``) host none."""
    if slots <= 1:
        return max(slots, 1), 1
    usable = [math.floor(c) for c in node_cpus if c >= 1]
    per_node = max(1, min(usable)) if usable else 1
    hosts = math.ceil(slots / min(per_node, slots))
    return hosts, math.ceil(slots / hosts)


def split_evenly(items: list[Any], k: int) -> list[list[Any]]:
    """``items`` in ``k`` contiguous shares whose sizes differ by at most one."""
    q, r = divmod(len(items), k)
    out, start = [], 0
    for i in range(k):
        end = start + q + (1 if i < r else 0)
        out.append(items[start:end])
        start = end
    return out


class HostedNode:
    """A virtual node while its host runs it: id, data index, version, and what it may keep."""

    def __init__(self, host: PoolHost, node_id: str, state: dict[str, Any]) -> None:
        self.host = host
        self.id = node_id
        self.state = state
        self.index = int(state.get("index", -1))

    @property
    def version(self) -> int:
        return int(self.state.get("version", 0))

    def update_version(self) -> int:
        self.state["version"] = self.version + 1
        return self.version

    @property
    def data(self) -> Any:
        # Loaded per use, never cached: the host's memory must not grow with the nodes it serves.
        return self.host.task.client_data(self.index)

    def send(self, header: str, body: Any, to: str | list[str]) -> list[str]:
        return self.host.send_as(self.id, header, body, to)


class HostedProgram:
    """What a hosted virtual node does with one message. Subclass and implement ``on_message``.
    ``config`` is the run configuration of the node kind it stands in for (`PoolConfig.program_config`)."""

    def __init__(self, host: PoolHost, config: Any = None) -> None:
        self.host = host
        self.config = config

    def on_message(self, node: HostedNode, msg: Message) -> None:
        raise NotImplementedError

    def on_batch(self, nodes: list[HostedNode], msg: Message) -> None:
        """``msg`` for every node of ``nodes`` (one delivery to this host). By default each node
        handles it in turn; override to answer for the whole batch at once (and to share it out
        among the host's forked trainers with ``host.in_shares``)."""
        for node in nodes:
            self.on_message(node, msg)


@dataclass(frozen=True)
class PoolConfig:
    """A pool host's run configuration: it serves its virtual nodes with ``program``, which gets
    ``program_config`` (what one of those nodes would have been given on an actor of its own).
    ``trainers``: processes the host forks to train beside it (`red.runtime.forked`); only programs
    whose ``on_batch`` shares batches out use them."""

    program: type[HostedProgram]
    program_config: Any = None
    trainers: int = 0


class PoolHost(TaskNode):
    """A node actor that hosts many virtual nodes, one at a time, with their state kept elsewhere."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hosted_neighbors: dict[str, frozenset[str]] = {}
        self._neighborhoods: dict[frozenset[str], frozenset[str]] = {}  # for shared_set: one per distinct set
        # Recipient → the actor serving it, and that actor's handle (from TopologyManager.routes):
        # sends go straight there; only neighbours are ever looked up, so the topology still holds.
        self._via: dict[str, str] = {}
        self._handles: dict[str, Any] = {}
        # This host's virtual nodes' state, written through to the TopologyManager: each node is served
        # by one host, so the copy here is current while the host lives; after a restart it starts
        # empty and is read back from there.
        self._states: dict[str, dict[str, Any]] = {}
        self.served = 0  # virtual-node activations, for benchmarks and tests

    def build(self, config: Any) -> None:
        super().build(config)
        # The model as `Task.create_model` made it, kept before warm-up training changes it: a server
        # without torch starts from it (`HostEvalStarServer`). One copy of the parameters per host.
        self._initial = self.task.get_params(self.model)
        # The host's one model serves its nodes' training and, lent between batches, a server's
        # evaluation (`evaluate`): never both at once.
        self._model_lock = threading.Lock()
        self._test: Any = None
        self.trainers: ForkedTrainers | None = None

    def initial_params(self) -> Params:
        return self._initial

    def evaluate(self, params: Params) -> dict[str, float]:
        """The task's evaluation of ``params`` on its test data, for a star server that holds no model
        (`HostEvalStarServer`): the same model class and code, so the same figures as evaluating in the
        server. The host's model is overwritten at every use anyway; its train/eval mode is put back."""
        with self._model_lock:
            if self._test is None:
                self._test = self.task.test_data()
            was_training = bool(getattr(self.model, "training", True))
            self.task.set_params(self.model, params)
            try:
                return self.task.evaluate(self.model, self._test)
            finally:
                self.model.train(was_training)

    def deliver_to(self, msg: Message, ids: list[str]) -> None:
        """Called by the TopologyManager: ``msg`` is for the hosted virtual nodes ``ids``."""
        self.deliver(Message("__hosted__", {"msg": msg, "ids": list(ids)}, sender=msg.sender))

    def in_shares(self, fn: Callable[..., Any], items: list[Any], *args: Any) -> list[Any]:
        """``fn(host, share, *args)`` for each of ``items``' contiguous shares, one share per process (this
        host and its forked trainers, `red.runtime.forked`), all at once; the results in share order.
        ``fn`` must be a module-level function. A share whose trainer is gone is run here, so every item
        is served; what ``fn`` raises anywhere is raised here, once every share is back."""
        trainers = self.trainers
        shares = [s for s in split_evenly(items, 1 + (len(trainers) if trainers else 0)) if s]
        sent: dict[int, int] = {}  # share → trainer
        if trainers is not None:
            for k, trainer in zip(range(1, len(shares)), trainers.live, strict=False):
                try:
                    trainers.submit(trainer, fn, shares[k], *args)
                    sent[k] = trainer
                except TrainerLost:
                    pass  # run here below
        results: dict[int, Any] = {}
        error: BaseException | None = None
        for k in [0, *sent]:
            try:
                if k == 0:
                    results[k] = fn(self, shares[k], *args)
                else:
                    results[k] = trainers.collect(sent[k])  # type: ignore[union-attr]
            except TrainerLost:
                pass
            except Exception as err:  # every trainer's answer is read first, so none is left in its pipe
                error = error or err
        if error is not None:
            raise error
        return [results[k] if k in results else fn(self, shares[k], *args) for k in range(len(shares))]

    def _prefetch_neighbors(self, ids: list[str]) -> None:
        """One TopologyManager call for a whole batch instead of one per newly seen virtual node."""
        missing = [i for i in ids if i not in self._hosted_neighbors]
        if missing:
            got = ray.get(self._topology_manager().neighbors_of.remote(missing))
            self._hosted_neighbors.update({i: shared_set(self._neighborhoods, nb) for i, nb in got.items()})

    def neighbors_of(self, node_id: str) -> frozenset[str]:
        nb = self._hosted_neighbors.get(node_id)
        if nb is None:
            got = ray.get(self._topology_manager().neighbors_of.remote([node_id]))
            nb = self._hosted_neighbors[node_id] = shared_set(self._neighborhoods, got[node_id])
        return nb

    def send_as(self, node_id: str, header: str, body: Any, to: str | list[str]) -> list[str]:
        """Send as hosted virtual node ``node_id``; a non-neighbour raises TopologyError."""
        return self.send_for([node_id], header, body, to)

    def send_for(self, node_ids: list[str], header: str, body: Any, to: str | list[str]) -> list[str]:
        """One message from ``node_ids[0]`` that answers for all of ``node_ids`` (a batch's update):
        every one of them must be allowed to reach every recipient, or TopologyError."""
        recipients = [to] if isinstance(to, str) else list(to)
        for node_id in node_ids:
            allowed = self.neighbors_of(node_id)
            bad = [r for r in recipients if r not in allowed]
            if bad:
                raise TopologyError(
                    f"node {node_id!r} cannot send to {bad}: not its neighbours in this topology "
                    f"(neighbours: {sorted(allowed)[:10]})"
                )
        msg = Message(header=header, body=body, sender=node_ids[0])
        if len(recipients) > 1 and payload_bytes(body) >= INLINE_LIMIT_BYTES:
            msg.body, msg.by_ref = ray.put(body), True
        if any(r not in self._via for r in recipients):
            via, handles = ray.get(self._topology_manager().routes.remote(node_ids[0]))
            self._via.update(via)
            self._handles.update(handles)
        deliver_direct(msg, recipients, self._via, self._handles, relay=self._topology_manager())
        return recipients

    def train(self, config: PoolConfig) -> dict[str, Any]:
        prog = config.program(self, config.program_config)
        tm = self._topology_manager()  # it keeps the hosted nodes' state (red.runtime.node_states)
        self._warm_up()
        # Forked after the warm-up, so that the trainers share the partitioned data and torch's first
        # kernels too. Never with a GPU (CUDA does not survive a fork), nor after the task gave torch
        # more than one thread (GNU OpenMP's thread pool does not survive one either: a trainer would hang).
        if config.trainers > 0:
            if assigned_gpu() or _torch_threads() != 1:
                log.warning("pool host %s forks no trainers (a GPU, or torch with %d threads) and trains its "
                            "batches alone; set spec.resources.forkTrainers: false for one host per core",
                            self.id, _torch_threads())
            else:
                self.trainers = ForkedTrainers(config.trainers, context=self)
        try:
            self._serve(prog, tm)
        finally:
            if self.trainers is not None:
                self.trainers.close()
                self.trainers = None

    def _serve(self, prog: HostedProgram, tm: Any) -> NoReturn:
        while True:
            msg = self.receive(timeout=1.0)  # raises StopNode when the federation stops
            if msg is None or msg.header != "__hosted__":
                continue
            inner: Message = msg.body["msg"]
            if inner.by_ref:
                inner.body, inner.by_ref = ray.get(inner.body), False
            ids: list[str] = msg.body["ids"]
            missing = [i for i in ids if i not in self._states]
            if missing:  # first use, or this host restarted: one round trip for the batch
                self._states.update(ray.get(tm.checkout.remote(missing)))
            self._prefetch_neighbors(ids)
            nodes = [HostedNode(self, nid, self._states[nid]) for nid in ids]
            self.served += len(nodes)  # counted before the answer goes out, so a finished round counts whole
            with self._model_lock:
                prog.on_batch(nodes, inner)
            # Written through without waiting: Ray runs one caller's calls to an actor in order (and
            # the TopologyManager is started with max_task_retries=-1, so a check-in in flight when it
            # restarts is run again by the new incarnation).
            tm.checkin.remote({nid: self._states[nid] for nid in ids})
            self.last_heartbeat = time.time()

    def _warm_up(self) -> None:
        """Pay the first-use costs (data partitioning, torch's first kernels) before the first round,
        so that they never count against a round deadline. The model is overwritten at every use."""
        try:
            with self._model_lock:
                self.task.train(self.model, self.task.client_data(0), node_id="", round=0)
        except Exception:  # a task without client 0, say: warming up is only an optimisation
            pass

    def stats(self) -> dict[str, Any]:
        import resource

        trainers = self.trainers
        return {"id": self.id, "served": self.served,
                "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                "trainers": [trainers.pids[i] for i in trainers.live] if trainers is not None else [],
                "trainerCalls": trainers.answered if trainers is not None else 0}


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


class HostCalls:
    """A node's calls to the federation's pool hosts (not messages: no virtual node is involved), each
    answered by the first host that can: one that died for good is skipped. A star server without
    torch has a host evaluate for it this way (`red.schemas.star.HostEvalStarServer`)."""

    def __init__(self, federation: str, namespace: str | None, hosts: tuple[str, ...] | list[str]) -> None:
        self.federation = federation
        self.namespace = namespace
        self.hosts = list(hosts)
        self._handles: dict[str, Any] = {}

    def call(self, method: str, *args: Any) -> Any:
        """What ``method(*args)`` returns on the first live host. What it raises there (a bug in the task's
        code, say) is raised here: another host would raise the same."""
        failures: list[str] = []
        for host in self.hosts:
            handle = self._handles.get(host)
            if handle is None:
                try:
                    handle = self._handles[host] = ray.get_actor(actor_name(self.federation, host),
                                                                 namespace=self.namespace)
                except ValueError:  # no such actor: never started, or gone for good
                    failures.append(f"{host}: not found")
                    continue
            try:
                return ray.get(getattr(handle, method).remote(*args))
            except RayActorError as err:  # died for good (or while answering): the next host
                self._handles.pop(host, None)
                failures.append(f"{host}: {type(err).__name__}")
        raise FederationFailed(
            f"no pool host could answer {method} ({', '.join(failures) or 'no hosts'}); "
            "raise spec.faultTolerance.maxRestarts so that hosts come back after a failure",
            reason="NoPoolHost",
        )


__all__ = [
    "HostCalls",
    "HostedNode",
    "HostedProgram",
    "PoolConfig",
    "PoolHost",
    "decide_pool_size",
    "group_slots",
    "split_evenly",
]
