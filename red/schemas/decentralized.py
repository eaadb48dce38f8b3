"""Decentralized (serverless) federated learning: gossip on a ring, a mesh, a k-regular or a custom graph.

Every node trains and evaluates (role ``train+eval``). A round is: train locally, send the model to every
neighbour, wait for every live neighbour's model of the same round, and replace the own model by the
Metropolis-Hastings weighted mean of the own and the neighbours' models. Metropolis weights
(``w_ij = 1 / (1 + max(deg_i, deg_j))``) make the mixing matrix symmetric and doubly stochastic on any
connected graph, so repeated averaging converges to the plain mean of all models (consensus). On a mesh
they are ``1/n`` for everyone: all-to-all averaging reaches consensus in one step.

The driver reports, per round, the mean node accuracy and the *consensus distance* (mean L2 distance of
the node models from their average, `red.aggregation.consensus_distance`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import networkx as nx

from red import topology
from red.aggregation import Params, consensus_distance
from red.runtime.messages import RoundRecord, VersionEntry
from red.runtime.node import VirtualNode
from red.runtime.task_node import TaskNode
from red.schemas.base import Schema, client_ids
from red.spec.health import Health

if TYPE_CHECKING:  # the spec model is pydantic: the actors these modules define never need it
    from red.spec.model import Federation

FEDERATION_ENTRY = "__federation__"


def metropolis_weights(own_degree: int, neighbour_degrees: dict[str, int]) -> dict[str, float]:
    """Neighbour id → weight; the own weight is 1 minus their sum (always >= 1/(1+deg))."""
    return {n: 1.0 / (1 + max(own_degree, d)) for n, d in neighbour_degrees.items()}


def mix(own: Params, received: dict[str, Params], weights: dict[str, float]) -> Params:
    """Own·(1 - Σ w_j) + Σ w_j·x_j over the neighbours that answered (a missing one's weight stays home)."""
    present = {n: w for n, w in weights.items() if n in received}
    self_w = 1.0 - sum(present.values())
    out: Params = {}
    for k, v in own.items():
        acc = self_w * v.astype("float64")
        for n, w in present.items():
            acc = acc + w * received[n][k].astype("float64")
        out[k] = acc.astype(v.dtype)
    return out


@dataclass(frozen=True)
class GossipConfig:
    """A peer's run: rounds ``start_round + 1`` to ``rounds`` (``start_round``: the newest round the
    driver knows the peer finished, set at each (re)start)."""

    rounds: int
    start_round: int = 0


class GossipNode(TaskNode):
    """A peer: trains, exchanges with its neighbours, averages, evaluates, records a version per round."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Neighbours may run a few rounds apart; keep enough history that the driver never misses one.
        kwargs.setdefault("version_buffer", 32)
        super().__init__(*args, **kwargs)
        self._sent: dict[int, Params] = {}

    def restore(self, state: dict[str, Any]) -> None:
        super().restore(state)
        if state.get("params") is not None:
            self.load(state["params"])

    def train(self, cfg: GossipConfig) -> dict[str, Any]:
        rounds, start_round = cfg.rounds, cfg.start_round
        self.version = start_round
        degrees = {n: len(v) for n, v in self.lookup_neighbors(sorted(self.neighbors)).items()}
        weights = metropolis_weights(len(self.neighbors), degrees)
        alive = set(self.neighbors)
        inbox: dict[int, dict[str, Params]] = {}
        for r in range(start_round + 1, rounds + 1):
            result = self.task.train(self.model, self.data, node_id=self.id, round=r)
            mine = self.params
            self._sent = {k: v for k, v in self._sent.items() if k > r - 4}  # resend window
            self._sent[r] = mine
            if alive:
                self.send("gossip", {"round": r, "params": mine}, to=sorted(alive))
            got = inbox.setdefault(r, {})
            while not alive <= set(got):
                msg = self.receive(timeout=1.0)
                if msg is None:
                    continue
                if msg.header == "gossip":
                    inbox.setdefault(int(msg.body["round"]), {})[str(msg.sender)] = msg.body["params"]
                elif msg.header == "node_lost" and msg.body.get("dead"):
                    alive.discard(msg.body["node"])
                elif msg.header == "resend":
                    # A neighbour restarted and lost what we had sent it: send again what it still needs.
                    node, since = msg.body["node"], int(msg.body["round"])
                    for rr in sorted(k for k in self._sent if k > since):
                        if node in alive:
                            self.send("gossip", {"round": rr, "params": self._sent[rr]}, to=node)
            mixed = mix(mine, {n: p for n, p in inbox.pop(r).items() if n in alive}, weights)
            self.load(mixed)
            metrics = self.task.evaluate(self.model, self.test)
            metrics.update(result.metrics)
            self.update_version(params=mixed, record=RoundRecord(round=r, metrics=metrics))
        return {"round": rounds}


class DecentralizedFederatedLearning(Schema):
    """Gossip learning among peers on a graph; every peer trains and evaluates. The built-in graphs are
    the subclasses below (one registered name each). To register another topology, subclass and
    override the classmethod ``build_graph(fed, ids)``."""

    @classmethod
    def build_graph(cls, fed: Federation, ids: list[str]) -> nx.Graph:
        raise NotImplementedError(f"{cls.__name__} must define build_graph(fed, ids)")

    @classmethod
    def graph_of(cls, fed: Federation) -> tuple[nx.Graph, dict[str, str]]:
        ids = client_ids(fed.spec.clients)
        return cls.build_graph(fed, ids), {i: "train+eval" for i in ids}

    def layout(self) -> tuple[list[VirtualNode], nx.Graph]:
        ids = self.client_ids()
        nodes = [self.node(cid, "train+eval", index=i, template=GossipNode) for i, cid in enumerate(ids)]
        self._rounds_of: dict[int, dict[str, VersionEntry]] = {}
        self._node_round: dict[str, int] = {}
        self._node_params: dict[str, Params] = {}
        self._params_by_round: dict[int, dict[str, Params]] = {}
        self._complete = 0
        return nodes, self.graph_of(self.fed)[0]

    def train_config(self, node_id: str) -> GossipConfig:
        return GossipConfig(rounds=self.rounds, start_round=self._node_round.get(node_id, self.start_round))

    def start(self) -> None:
        self.build()
        if self.resume_state is not None:
            self.restore_nodes(self.nodes)
        super().start()

    def apply_resume(self, state: dict[str, Any]) -> None:
        super().apply_resume(state)
        self._complete = self.start_round
        for nid, params in state.get("params", {}).items():
            if nid in self.nodes:
                self._node_params[nid] = params
                self._node_round[nid] = self.start_round

    def poll_progress(self, after: int, timeout: float) -> list[VersionEntry]:
        """One synthetic entry per round that every live node has finished, oldest first."""
        live = [n for n in self.nodes if self.state[n].health != Health.DEAD]
        # Bounded: a node being restarted answers only once it is back (or never; supervise() decides).
        got = self.versions_after({n: self._node_round.get(n, self.start_round) for n in live}, timeout)
        for node_entries in got.values():
            for e in node_entries:
                r = e.round
                self._rounds_of.setdefault(r, {})[e.id] = e
                if r > self._node_round.get(e.id, 0):
                    self._node_round[e.id] = r
                    self._node_params[e.id] = e.params
                st = self.state[e.id]
                st.version, st.last_heartbeat = max(st.version, e.version), e.timestamp
        out: list[VersionEntry] = []
        live_set = set(live)
        while self._complete + 1 in self._rounds_of and live_set <= set(self._rounds_of[self._complete + 1]):
            r = self._complete + 1
            entries = self._rounds_of.pop(r)
            models = [e.params for e in entries.values()]
            accs = [float(e.metrics["accuracy"]) for e in entries.values()]
            losses = [float(e.metrics.get("loss", 0.0)) for e in entries.values()]
            metrics = {
                "accuracy": sum(accs) / len(accs),
                "minAccuracy": min(accs),
                "loss": sum(losses) / len(losses),
                "consensusDistance": consensus_distance(models),
                "participants": float(len(entries)),
            }
            out.append(VersionEntry(FEDERATION_ENTRY, r, None, max(e.timestamp for e in entries.values()),
                                    RoundRecord(round=r, metrics=metrics)))
            self._complete = r
            self._params_by_round[r] = {e.id: e.params for e in entries.values()}
            self._params_by_round.pop(r - 8, None)  # only the rounds a checkpoint may still ask for
        return out

    def is_done(self, finished: list[str]) -> bool:
        live = [n for n in self.nodes if self.state[n].health != Health.DEAD]
        return all(self.state[n].health == Health.FINISHED for n in live) and self._complete >= self.rounds

    def checkpoint_state(self, entry: VersionEntry) -> dict[str, Any]:
        # Every node's model as of the checkpointed round (nodes may already be a round or two ahead;
        # the buffered entries of that round are exact).
        return {"params": dict(self._params_by_round.get(entry.version, self._node_params))}

    def restore_state(self, node_id: str) -> dict[str, Any]:
        return {"version": self._node_round.get(node_id, self.start_round),
                "params": self._node_params.get(node_id)}

    def on_node_lost(self, node_id: str, *, dead: bool) -> None:
        peers = sorted(n for n in self.graph.neighbors(node_id) if self.state[n].health != Health.DEAD)
        if not peers:
            return
        if dead:
            self.send("node_lost", {"node": node_id, "dead": True}, to=peers)
        else:
            self.send("resend", {"node": node_id, "round": self._node_round.get(node_id, 0)}, to=peers)


__all__ = ["DecentralizedFederatedLearning", "GossipConfig", "GossipNode", "metropolis_weights", "mix"]


class RingFederatedLearning(DecentralizedFederatedLearning):
    """``schema: ring``: each peer talks to the two next to it."""

    @classmethod
    def build_graph(cls, fed: Federation, ids: list[str]) -> nx.Graph:
        return topology.ring(ids)


class MeshFederatedLearning(DecentralizedFederatedLearning):
    """``schema: mesh``: every peer talks to every other."""

    @classmethod
    def build_graph(cls, fed: Federation, ids: list[str]) -> nx.Graph:
        return topology.mesh(ids)


class KRegularFederatedLearning(DecentralizedFederatedLearning):
    """``schema: k-regular``: a random connected graph where every peer has ``spec.topology.degree``
    neighbours (seeded by ``spec.seed``)."""

    @classmethod
    def build_graph(cls, fed: Federation, ids: list[str]) -> nx.Graph:
        return topology.k_regular(ids, fed.spec.topology.degree or 2, seed=fed.spec.seed)


class CustomFederatedLearning(DecentralizedFederatedLearning):
    """``schema: custom``: exactly the edges listed in ``spec.topology.edges``."""

    @classmethod
    def build_graph(cls, fed: Federation, ids: list[str]) -> nx.Graph:
        return topology.custom(ids, fed.spec.topology.edges or [])
