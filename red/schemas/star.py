"""The star schema: a server (aggregates, evaluates) and clients (train), synchronous or FedBuff-async."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from red.aggregation import Params, RunningWeightedMean, subtract
from red.algorithms.base import Accumulator, Algorithm, Update, pre_aggregates
from red.errors import FederationFailed
from red.runtime.messages import Message, RoundRecord, VersionEntry
from red.runtime.node import VirtualNode
from red.runtime.pool import HostCalls, HostedNode, HostedProgram
from red.runtime.task_node import TaskNode, sample_clients
from red.schemas.base import Schema, client_ids
from red.spec.health import Health
from red.star_graph import StarGraph
from red.tasks.base import Task

if TYPE_CHECKING:  # pydantic (the spec model): the actors this module defines never need it
    from red.spec.model import Federation

SERVER = "server"


@dataclass(frozen=True)
class ServerConfig:
    """How the server runs its rounds: made once from the spec (`StarFederatedLearning.__init__`);
    ``start_round`` is set at each (re)start, from the newest round the driver knows of."""

    rounds: int
    algorithm_cls: type[Algorithm]
    algorithm_params: Mapping[str, Any]  # spec.algorithm.params, checked by the driver already
    start_round: int = 0
    sample_fraction: float = 1.0
    deadline_seconds: float | None = None
    seed: int = 0
    host_batching: bool = True  # pool hosts may answer a round in one message (see StarServer.train)


@dataclass(frozen=True)
class ClientConfig:
    """How a star client (or the pool program standing in for it) answers the server."""

    asynchronous: bool = False  # FedBuff: send the delta from the received model, not the new model


def collect_updates(
    node: TaskNode, r: int, pending: set[str], alive: set[str], deadline: float | None, versions: dict[str, int],
    into: Accumulator,
) -> Accumulator:
    """Receive round ``r``'s updates from ``pending`` until all answered, were lost, or the deadline.

    Shared by the star server and cluster heads. Each update goes ``into`` the round's accumulator as it
    arrives (FedAvg-like algorithms fold it at once, so a round holds one model, not one per client).
    Records each sender's version in ``versions`` (and a cluster head's members' versions); a
    ``node_lost`` control message drops a node from the round, and from ``alive`` when it is dead for good.
    """
    t_end = None if deadline is None else time.monotonic() + deadline
    while pending:
        wait = 0.5 if t_end is None else max(0.0, min(0.5, t_end - time.monotonic()))
        msg = node.receive(timeout=wait)
        if msg is None:
            if t_end is not None and time.monotonic() >= t_end:
                break  # stragglers are left out of this round
            continue
        if msg.header == "update" and msg.body["round"] == r:
            b = msg.body
            # A pool host sends one message for all the clients it trained: "parts" holds their
            # updates, or one weighted partial mean that stands for all of them ("members"); either
            # goes into the accumulator like a single client's update (a StreamingMean folds a partial
            # mean with its members' summed sample weight).
            parts = b.get("parts") or [{**b, "node": msg.sender}]
            took = False
            for p in parts:
                members = list(p.get("members") or [p["node"]])
                if not pending.intersection(members):
                    continue  # a late or repeated answer
                into.add(Update(str(p["node"]), p["params"], p["numSamples"], p["baseVersion"],
                                p.get("metrics", {}), list(p.get("members") or [])))
                pending.difference_update(members)
                took = True
            if took:
                versions[str(msg.sender)] = int(b["version"])
                versions.update(b.get("memberVersions", {}))
        elif msg.header == "node_lost":
            pending.discard(msg.body["node"])
            if msg.body.get("dead"):
                alive.discard(msg.body["node"])
    return into


class StarServer(TaskNode):
    """Broadcasts the global model, collects updates, aggregates, evaluates, records a version."""

    client_versions: dict[str, int]
    participation: dict[str, int]
    algorithm: Algorithm | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # FedBuff can make several versions between two polls of the driver: keep enough of them that
        # no round's report (or checkpoint) is skipped.
        kwargs.setdefault("version_buffer", 64)
        super().__init__(*args, **kwargs)

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        if state.get("params") is not None:
            self.load(state["params"])
        self.client_versions = dict(state.get("clientVersions", {}))
        self.participation = dict(state.get("participation", {}))
        self._restored_algorithm_state = state.get("algorithmState")

    def train(self, cfg: ServerConfig) -> dict[str, Any]:
        self.algorithm = cfg.algorithm_cls(**cfg.algorithm_params)
        saved = getattr(self, "_restored_algorithm_state", None)
        if saved:
            self.algorithm.load_state_dict(saved)
        self.client_versions = getattr(self, "client_versions", {})
        self.participation = getattr(self, "participation", {})
        self.version = cfg.start_round
        self.alive = set(self.neighbors)
        if self.algorithm.asynchronous:
            self._train_async(cfg.rounds, cfg.start_round, cfg.sample_fraction, cfg.seed)
        else:
            # Pool hosts answer a round with one message (no deadline: a straggler would hold back
            # the updates of its host's other clients), pre-aggregated when the algorithm allows.
            combine = None
            if cfg.host_batching and cfg.deadline_seconds is None:
                combine = "mean" if pre_aggregates(type(self.algorithm)) else "each"
            self._train_sync(cfg.rounds, cfg.start_round, cfg.sample_fraction, cfg.deadline_seconds, cfg.seed,
                             combine)
        return {"round": self.version}

    def _broadcast(self, to: list[str], round: int, combine: str | None = None) -> None:
        assert self.algorithm is not None
        body = {"round": round, "params": self.params, "version": self.version,
                "config": self.algorithm.client_config()}
        if combine is not None:
            body["combine"] = combine
        self.send("model", body, to=to)

    def _train_sync(
        self, rounds: int, start: int, fraction: float, deadline: float | None, seed: int,
        combine: str | None = None,
    ) -> None:
        assert self.algorithm is not None
        for r in range(start + 1, rounds + 1):
            sampled = sample_clients(sorted(self.alive), fraction, seed, r)
            self._broadcast(sampled, r, combine)
            acc = self.algorithm.accumulator(self.params, version=self.version)
            self._finish_round(r, collect_updates(self, r, set(sampled), self.alive, deadline,
                                                  self.client_versions, acc))

    def _train_async(self, rounds: int, start: int, fraction: float, seed: int) -> None:
        # FedBuff: clients never wait for each other. Each update is answered at once with the current
        # model; every `buffer_size` updates the server aggregates and the version advances.
        assert self.algorithm is not None
        k = int(getattr(self.algorithm, "buffer_size", 1))
        self._broadcast(sample_clients(sorted(self.alive), fraction, seed, start + 1), start + 1)
        buffer = Accumulator(self.algorithm, self.params, self.version)  # at most `k` updates
        while self.version < rounds:
            msg = self.receive(timeout=0.5)
            if msg is None:
                continue
            if msg.header == "update" and msg.sender is not None:
                b = msg.body
                self.client_versions[msg.sender] = b["version"]
                buffer.add(Update(msg.sender, b["delta"], b["numSamples"], b["baseVersion"],
                                  b.get("metrics", {})))
                if len(buffer) >= k:
                    self._finish_round(self.version + 1, buffer)
                    buffer = Accumulator(self.algorithm, self.params, self.version)
                if self.version < rounds and msg.sender in self.alive:
                    self._broadcast([msg.sender], self.version + 1)
            elif msg.header == "node_lost":
                node = msg.body["node"]
                if msg.body.get("dead"):
                    self.alive.discard(node)
                elif node in self.alive:
                    self._broadcast([node], self.version + 1)  # restarted: hand it work again

    def _finish_round(self, r: int, updates: Accumulator) -> None:
        assert self.algorithm is not None
        if len(updates):
            self.load(updates.result())
            for nid in updates.node_ids:
                self.participation[nid] = self.participation.get(nid, 0) + 1
        metrics = self.evaluate()
        metrics["participants"] = float(len(updates.node_ids))
        self.update_version(
            params=self.params,
            record=RoundRecord(
                round=r,
                metrics=metrics,
                participants=tuple(updates.node_ids),
                client_versions=dict(self.client_versions),
                participation=dict(self.participation),
                algorithm_state=self.algorithm.state_dict(),
            ),
        )

    def evaluate(self) -> dict[str, float]:
        return self.task.evaluate(self.model, self.test)


@dataclass(frozen=True)
class HostEvaluation:
    """What a `HostEvalStarServer` is built from: the pool hosts that may evaluate for it, in order.
    No task class on purpose: unpickling one imports the task's module, and torch with it."""

    hosts: tuple[str, ...]


class HostEvalStarServer(StarServer):
    """A star server without torch, for pooled runs on CPUs: it keeps the global model as arrays and a
    pool host evaluates it (`PoolHost.evaluate`, on the host's model between two batches).

    A torch process costs about 300 MB of private memory right after ``import torch`` (measured here,
    its CUDA build): the server was one, idle while the hosts train, and they are idle while it
    evaluates. The rounds are identical: the same arrays, cast to the model's dtypes as loading them
    into a model did, and the same evaluation code on the same kind of model."""

    def build(self, config: Any) -> None:
        assert isinstance(config, HostEvaluation), config  # `StarFederatedLearning._evaluate_on_hosts`
        self._hosts = HostCalls(self.federation, self.namespace, config.hosts)
        self._global: Params | None = None

    def _held(self) -> Params:
        if self._global is None:  # a fresh start: the model as the task creates it, from a host
            self._global = self._hosts.call("initial_params")
        return self._global

    @property
    def params(self) -> Params:
        return {k: v.copy() for k, v in self._held().items()}  # a copy, as reading a model's gave

    def load(self, params: Params) -> None:
        dtypes = {k: v.dtype for k, v in self._held().items()}
        missing = sorted(set(dtypes) - set(params))
        if missing:  # what load_state_dict would say: the update is not this model's
            raise ValueError(f"the new global model lacks {missing[:5]}; its keys: {sorted(params)[:5]}")
        self._global = {k: np.array(params[k], dtype=dtypes[k]) for k in dtypes}

    def evaluate(self) -> dict[str, float]:
        metrics: dict[str, float] = self._hosts.call("evaluate", self._held())
        return metrics


class StarClient(TaskNode):
    """Waits for the global model, trains locally, sends the update back to the sender."""

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        if state.get("params") is not None:
            self.load(state["params"])

    def train(self, config: ClientConfig) -> None:
        while True:
            msg = self.receive(timeout=1.0)  # raises StopNode when the federation stops
            if msg is None or msg.header != "model":
                continue
            update, params = local_update(self.task, self.model, self.data, self.id, msg.body,
                                          asynchronous=config.asynchronous)
            update["version"] = self.update_version(params=params, record=RoundRecord(round=msg.body["round"]))
            self.send("update", update, to=msg.sender)


def local_update(
    task: Task, model: Any, data: Any, node_id: str, body: dict[str, Any], *, asynchronous: bool
) -> tuple[dict[str, Any], Params]:
    """A client's answer to a "model" message: train from the received model; the update carries the
    new parameters (synchronous) or the delta from what was received (FedBuff)."""
    received: Params = body["params"]
    task.set_params(model, received)
    # Keyword arguments on purpose: this is the Task plugin interface (`red.tasks.Task.train`), and
    # ``body["config"]`` is the algorithm's `client_config()` (FedProx's ``prox_mu``). Tasks written
    # for one algorithm accept, and ignore, what another adds; a typed object here would break them.
    result = task.train(model, data, node_id=node_id, round=body["round"], **body["config"])
    params = task.get_params(model)
    update: dict[str, Any] = {
        "round": body["round"],
        "numSamples": result.num_samples,
        "baseVersion": body["version"],
        "metrics": result.metrics,
    }
    if asynchronous:
        update["delta"] = subtract(params, received)
    else:
        update["params"] = params
    return update, params


class StarClientProgram(HostedProgram):
    """A star client served by a pool host (red.runtime.pool): the same answer as `StarClient`.

    When the server's "model" message asks for it (``combine``), the host answers for all the clients
    of the batch in one message: every update ("each"), or their sample-weighted mean ("mean", for
    algorithms whose aggregate is that mean: the server's result is the same within float rounding).
    """

    config: ClientConfig

    def on_message(self, node: HostedNode, msg: Message) -> None:
        if msg.header != "model":
            return
        host = self.host
        update, _ = local_update(host.task, host.model, node.data, node.id, msg.body,
                                 asynchronous=self.config.asynchronous)
        update["version"] = node.update_version()
        node.send("update", update, to=str(msg.sender))

    def on_batch(self, nodes: list[HostedNode], msg: Message) -> None:
        combine = msg.body.get("combine") if msg.header == "model" else None
        if combine not in ("each", "mean") or self.config.asynchronous:
            super().on_batch(nodes, msg)
            return
        host = self.host
        done: list[BatchShare] = host.in_shares(train_share, [(n.id, n.index) for n in nodes], msg.body, combine)
        versions = {node.id: node.update_version() for node in nodes}
        if combine == "mean":
            mean = RunningWeightedMean()
            for r in done:
                if r.mean is not None:
                    mean.merge(r.mean)
            parts = [{"node": nodes[0].id, "members": [n.id for n in nodes], "params": mean.result(),
                      "numSamples": int(mean.total_weight), "baseVersion": msg.body["version"], "metrics": {}}]
        else:
            parts = [p for r in done for p in r.parts]
        body = {"round": msg.body["round"], "parts": parts, "version": versions[nodes[0].id],
                "memberVersions": versions}
        host.send_for([n.id for n in nodes], "update", body, to=str(msg.sender))


@dataclass
class BatchShare:
    """What training a share of a batch gives: the share's running mean ("mean"), or its updates ("each")."""

    mean: RunningWeightedMean | None
    parts: list[dict[str, Any]]


def train_share(host: Any, members: list[tuple[str, int]], body: dict[str, Any], combine: str) -> BatchShare:
    """Train the clients ``members`` (id, data index) from the "model" message ``body`` on ``host``'s
    task and model: in the pool host itself, or in a trainer forked from it (`red.runtime.forked`),
    which has a copy of both. "mean" folds each update in as it is made: one model's worth of memory for
    the share, where keeping every update until the end held 30 MB more per host at 500 clients a batch
    (10,000 clients, 10% a round), and glibc kept the high-water mark."""
    mean = RunningWeightedMean() if combine == "mean" else None
    parts: list[dict[str, Any]] = []
    task = host.task
    for node_id, index in members:
        update, _ = local_update(task, host.model, task.client_data(index), node_id, body, asynchronous=False)
        if mean is not None:
            mean.add(update["params"], max(int(update["numSamples"]), 1))
        else:
            parts.append({"node": node_id, **update})
    return BatchShare(mean, parts)


def latest_of(record: RoundRecord, params: Params) -> dict[str, Any]:
    """A server's round as the driver keeps it: what restarted nodes are restored with, and exactly
    what a checkpoint holds (these keys are the checkpoint format: keep them)."""
    return {
        "round": record.round,
        "params": params,
        "clientVersions": dict(record.client_versions),
        "participation": dict(record.participation),
        "algorithmState": None if record.algorithm_state is None else dict(record.algorithm_state),
    }


class StarFederatedLearning(Schema):
    """Server plus ``spec.clients`` clients on a star; FedAvg/FedProx/median/trimmed-mean rounds, or
    FedBuff asynchronously. Beyond what one actor per client fits, clients are multiplexed onto a
    pool of host actors (`Schema.maybe_pool`)."""

    # Pool hosts answer a synchronous round with one message each (pre-aggregated for FedAvg/FedProx).
    # False: one message per client, the unbatched path the tests compare against.
    host_batching: bool = True

    def __init__(self, fed: Federation, **kwargs: Any) -> None:
        super().__init__(fed, **kwargs)
        # The newest round the server recorded (its params, versions, algorithm state): what restarted
        # nodes are restored with and what checkpoints hold. None until the first round.
        self._latest: dict[str, Any] | None = None
        spec = self.spec
        self.server_config = ServerConfig(
            rounds=self.rounds,
            algorithm_cls=self.algorithm_cls,
            algorithm_params=spec.algorithm.params,
            sample_fraction=spec.sample_fraction,
            deadline_seconds=spec.round_deadline_seconds,
            seed=spec.seed,
            host_batching=self.host_batching,
        )
        self.client_config = ClientConfig(asynchronous=bool(self.algorithm_cls.asynchronous))
        ids = self.client_ids()
        # Batches are shared out among forked trainers only where the server asks hosts for one answer
        # per batch (synchronous rounds without a deadline); elsewhere each client answers on its own.
        forks = (spec.resources.fork_trainers and self.host_batching and spec.round_deadline_seconds is None
                 and not self.client_config.asynchronous)
        self.maybe_pool(ids, StarClientProgram, self.client_config, {c: {"index": i} for i, c in enumerate(ids)},
                        forks=forks)
        self._evaluate_on_hosts()

    # Pooled runs on CPUs: the server holds no model and a pool host evaluates (`HostEvalStarServer`).
    # False: the server evaluates itself, the path the tests compare against.
    host_evaluation: bool = True

    def _evaluate_on_hosts(self) -> None:
        server = self.nodes[SERVER]
        # On GPUs the figures could differ in float rounding from a CPU server's: keep the plain path.
        on_cpus = not server.num_gpus and not any(h.num_gpus for h in self.hosts.values())
        if self.host_evaluation and self.hosts and on_cpus:
            server.template = HostEvalStarServer
            server.config = HostEvaluation(tuple(self.hosts))

    @classmethod
    def graph_of(cls, fed: Federation) -> tuple[StarGraph, dict[str, str]]:
        ids = client_ids(fed.spec.clients)
        return StarGraph(SERVER, ids), {SERVER: "eval", **{i: "train" for i in ids}}

    def layout(self) -> tuple[list[VirtualNode], StarGraph]:
        ids = self.client_ids()
        nodes = [self.node(SERVER, "eval", template=StarServer)]
        nodes += [self.node(cid, "train", index=i, template=StarClient) for i, cid in enumerate(ids)]
        return nodes, self.graph_of(self.fed)[0]

    def train_config(self, node_id: str) -> ServerConfig | ClientConfig:
        if node_id == SERVER:
            return replace(self.server_config, start_round=int(self._known().get("round", self.start_round)))
        return self.client_config

    def _known(self) -> dict[str, Any]:
        """The latest recorded round, else the checkpoint resumed from, else nothing."""
        return self._latest or self.resume_state or {}

    def start(self) -> None:
        if self.resume_state is not None and self.hosts:
            for c, v in self.resume_state.get("clientVersions", {}).items():
                if c in self.initial_hosted_state:
                    self.initial_hosted_state[c]["version"] = int(v)
        self.build()
        if self.resume_state is not None:
            self.restore_nodes([SERVER, *self.client_ids()])
        super().start()

    def _server_state(self) -> dict[str, Any]:
        s = self._known()
        return {
            "version": s.get("round", 0),
            "params": s.get("params"),
            "clientVersions": s.get("clientVersions", {}),
            "participation": s.get("participation", {}),
            "algorithmState": s.get("algorithmState"),
        }

    def poll_progress(self, after: int, timeout: float) -> list[VersionEntry]:
        # Bounded: a server that is being restarted answers only once it is back (or never).
        entries = self.versions_after({SERVER: after}, timeout)[SERVER]
        for e in entries:
            if e.record is not None:
                self._latest = latest_of(e.record, e.params)
        return entries

    def is_done(self, finished: list[str]) -> bool:
        return self.state[SERVER].health == Health.FINISHED

    def restore_state(self, node_id: str) -> dict[str, Any]:
        if node_id == SERVER:
            return self._server_state()
        latest = self._known()
        known = max(self.state[node_id].version, int(latest.get("clientVersions", {}).get(node_id, 0)))
        return {"version": known, "params": latest.get("params")}

    def on_node_lost(self, node_id: str, *, dead: bool) -> None:
        if node_id == SERVER:
            if dead:
                st = self.state[SERVER]
                raise FederationFailed(
                    f"the server node died and did not come back (after {st.restarts} of maxRestarts "
                    f"{self.max_restarts} restarts, or not placed again within restartTimeoutSeconds "
                    f"{self.restart_timeout_seconds:g}); raise spec.faultTolerance.maxRestarts or "
                    "restartTimeoutSeconds",
                    reason="ServerLost",
                )
            return
        if self.state[SERVER].health in (Health.ALIVE, Health.RESTARTING):
            self.send("node_lost", {"node": node_id, "dead": dead}, to=SERVER)

    def checkpoint_state(self, entry: VersionEntry) -> dict[str, Any]:
        return dict(self._latest or {})
