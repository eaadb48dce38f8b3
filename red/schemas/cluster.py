"""Hierarchical (cluster) federated learning: clients grouped under cluster heads, heads under a server.

A round: the server sends the global model to every head; each head forwards it to its (sampled) members,
aggregates their updates with the spec's algorithm, and sends the cluster model, weighted by the
cluster's sample count, to the server, which aggregates the heads the same way and evaluates. With
FedAvg this is exactly the global sample-weighted mean, but only heads talk to the server: the server's
fan-in is the number of clusters, not of clients (the point of hierarchy across sites or racks).

Groups come from ``spec.topology.clusterSize`` (clients per head; default about sqrt(clients)); heads
are named ``head_<g>`` (see ``graph_of``). Client sampling and the round deadline apply per
cluster, at the heads; the server always waits for every live head (heads answer by their deadline).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import networkx as nx

from red import topology
from red.algorithms.base import Accumulator, Algorithm
from red.errors import FederationFailed, SpecError
from red.runtime.node import VirtualNode
from red.runtime.task_node import TaskNode, sample_clients
from red.schemas.base import client_ids
from red.schemas.star import (
    SERVER,
    ClientConfig,
    StarClient,
    StarFederatedLearning,
    StarServer,
    collect_updates,
)
from red.spec.health import Health

if TYPE_CHECKING:  # the spec model is pydantic: the actors these modules define never need it
    from red.spec.model import Federation


def head_id(group: int) -> str:
    return f"head_{group}"


@dataclass(frozen=True)
class HeadConfig:
    """How a cluster head samples and aggregates its members (the spec's sampling and deadline
    apply per cluster, at the heads)."""

    algorithm_cls: type[Algorithm]
    algorithm_params: Mapping[str, Any]
    sample_fraction: float = 1.0
    deadline_seconds: float | None = None
    seed: int = 0
    group: int = 0  # this head's number: its sampling draws differ from the other heads'


class ClusterHead(TaskNode):
    """Relays the global model to its members and answers the server with the cluster's aggregate."""

    def train(self, cfg: HeadConfig) -> None:
        algorithm = cfg.algorithm_cls(**cfg.algorithm_params)
        alive = set(self.neighbors) - {SERVER}
        while True:
            msg = self.receive(timeout=1.0)  # raises StopNode when the federation stops
            if msg is None:
                continue
            if msg.header == "node_lost":
                if msg.body.get("dead"):
                    alive.discard(msg.body["node"])
                continue
            if msg.header != "model" or msg.sender != SERVER:
                continue
            b = msg.body
            r = int(b["round"])
            # Distinct draws per cluster, still deterministic per (seed, round) for exact resumes.
            sampled = sample_clients(sorted(alive), cfg.sample_fraction, cfg.seed * 7919 + cfg.group, r)
            if cfg.deadline_seconds is not None and "combine" in b:
                # One message per member host would make a straggler hold back its host's others.
                b = {k: v for k, v in b.items() if k != "combine"}
            if sampled:
                self.send("model", b, to=sampled)
            versions: dict[str, int] = {}
            acc = algorithm.accumulator(b["params"], version=int(b["version"]))
            updates = self._collect(r, set(sampled), alive, cfg.deadline_seconds, versions, acc)
            self.version += 1
            if len(updates):
                params, samples = updates.result(), updates.num_samples
            else:  # no member answered: hand the model back unchanged, with negligible weight
                params, samples = b["params"], 0
            members = float(len(updates.node_ids))
            self.send("update", {"round": r, "params": params, "numSamples": samples, "version": self.version,
                                 "baseVersion": b["version"], "metrics": {"members": members},
                                 "memberVersions": versions},
                      to=SERVER)

    def _collect(
        self, r: int, pending: set[str], alive: set[str], deadline: float | None, versions: dict[str, int],
        into: Accumulator,
    ) -> Accumulator:
        return collect_updates(self, r, pending, alive, deadline, versions, into)


class ClusterFederatedLearning(StarFederatedLearning):
    """Server, ``head_<g>`` cluster heads, and ``spec.clients`` clients grouped under them."""

    def __init__(self, fed: Federation, **kwargs: Any) -> None:
        if fed.spec.algorithm.name in ("fedbuff",):
            raise SpecError("schema 'cluster' runs synchronous rounds; use fedavg, fedprox, median or "
                            "trimmed-mean (fedbuff needs schema 'star')")
        super().__init__(fed, **kwargs)
        # The heads sample and keep the deadline; the server waits for every live head.
        self.server_config = replace(self.server_config, sample_fraction=1.0, deadline_seconds=None)
        spec = self.spec
        self.head_config = HeadConfig(
            algorithm_cls=self.algorithm_cls,
            algorithm_params=spec.algorithm.params,
            sample_fraction=spec.sample_fraction,
            deadline_seconds=spec.round_deadline_seconds,
            seed=spec.seed,
        )

    @staticmethod
    def groups_of(fed: Federation) -> dict[str, list[str]]:
        ids = client_ids(fed.spec.clients)
        size = fed.spec.topology.cluster_size or max(1, round(len(ids) ** 0.5))
        return {head_id(g): members for g, members in enumerate(topology.group_evenly(ids, size))}

    def groups(self) -> dict[str, list[str]]:
        return self.groups_of(self.fed)

    @classmethod
    def graph_of(cls, fed: Federation) -> tuple[nx.Graph, dict[str, str]]:
        groups = cls.groups_of(fed)
        clients = {c: "train" for c in client_ids(fed.spec.clients)}
        roles = {SERVER: "eval", **{h: "aggregate" for h in groups}, **clients}
        return topology.hierarchy(SERVER, groups), roles

    def layout(self) -> tuple[list[VirtualNode], nx.Graph]:
        groups = self.groups()
        self.head_of = {m: h for h, members in groups.items() for m in members}
        nodes = [self.node(SERVER, "eval", template=StarServer)]
        nodes += [self.node(h, "aggregate", template=ClusterHead) for h in groups]
        index = {c: i for i, c in enumerate(self.client_ids())}
        nodes += [self.node(c, "train", index=index[c], template=StarClient) for c in self.client_ids()]
        return nodes, self.graph_of(self.fed)[0]

    def train_config(self, node_id: str) -> Any:
        if node_id.startswith("head_") and node_id in self.nodes and self.nodes[node_id].role == "aggregate":
            return replace(self.head_config, group=int(node_id.split("_", 1)[1]))
        if node_id == SERVER:
            return super().train_config(node_id)
        return ClientConfig(asynchronous=False)  # rounds here are synchronous (fedbuff is refused)

    def on_node_lost(self, node_id: str, *, dead: bool) -> None:
        if node_id == SERVER:
            super().on_node_lost(node_id, dead=dead)
            return
        parent = self.head_of.get(node_id, SERVER)
        if self.state[parent].health in (Health.ALIVE, Health.RESTARTING):
            self.send("node_lost", {"node": node_id, "dead": dead}, to=parent)
        elif dead and parent != SERVER:
            raise FederationFailed(f"cluster head {parent!r} is dead, so its members are unreachable; "
                                   "raise spec.faultTolerance.maxRestarts", reason="HeadLost")


__all__ = ["ClusterFederatedLearning", "ClusterHead"]
