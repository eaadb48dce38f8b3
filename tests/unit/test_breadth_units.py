"""Gossip mixing, the pool-size policy, FedBuff's staleness weighting, schema layouts and pictures.
No Ray: schemas are constructed (which builds nothing) to check their graphs and pools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import networkx as nx
import numpy as np
import pytest

from red import cli
from red.aggregation import staleness_weight
from red.algorithms.base import Update
from red.algorithms.builtin import FedBuff
from red.plots import draw_topology, plot_progress
from red.registry import schemas
from red.runtime.pool import ACTOR_MEMORY_BYTES, decide_pool_size
from red.schemas.decentralized import metropolis_weights, mix
from red.spec import load_federation
from tests.helpers import EXAMPLES, make_fed

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > 5_000  # a drawn picture, not an empty canvas


def test_metropolis_mixing_is_doubly_stochastic_and_reaches_the_mean() -> None:
    g = nx.cycle_graph(5)
    w = np.zeros((5, 5))
    for i in g:
        nb = metropolis_weights(g.degree(i), {j: g.degree(j) for j in g.neighbors(i)})
        for j, wij in nb.items():
            w[i, j] = wij
        w[i, i] = 1 - sum(nb.values())
    np.testing.assert_allclose(w, w.T)
    np.testing.assert_allclose(w.sum(axis=0), 1)
    x = np.arange(5, dtype=float)
    for _ in range(200):
        x = w @ x
    np.testing.assert_allclose(x, 2.0, atol=1e-6)  # consensus on the mean of 0..4


def test_mix_on_a_mesh_is_the_exact_average_and_missing_neighbours_keep_their_weight_home() -> None:
    own = {"w": np.array([0.0, 3.0], dtype=np.float32)}
    others = {"b": {"w": np.array([3.0, 0.0], dtype=np.float32)}, "c": {"w": np.array([6.0, 6.0], dtype=np.float32)}}
    weights = metropolis_weights(2, {"b": 2, "c": 2})
    np.testing.assert_allclose(mix(own, others, weights)["w"], [3.0, 3.0])
    only_b = mix(own, {"b": others["b"]}, weights)["w"]
    np.testing.assert_allclose(only_b, [1.0, 2.0])  # 2/3 own + 1/3 b
    assert only_b.dtype == np.float32


@pytest.mark.parametrize(
    ("poolable", "fixed", "max_actors", "cpus", "memory", "expect"),
    [
        (10, 1, None, 4.0, 16e9, None),  # fits: one actor per node
        (1_000, 1, None, 2.0, 16e9, 2),  # engine: as many hosts as CPUs
        (1_000, 1, None, 8.0, 16e9, 8),
        (1_000, 1, None, 8.0, 3 * ACTOR_MEMORY_BYTES, 2),  # memory bounds the pool
        (10, 1, 11, 4.0, 16e9, None),  # the spec allows 11 actors: no pool
        (10, 1, 3, 4.0, 16e9, 2),  # the spec caps actors at 3: server + 2 hosts
        (10_000, 4, 2, 64.0, 1e12, 1),  # never fewer than one host
    ],
)
def test_pool_size_policy(
    poolable: int, fixed: int, max_actors: int | None, cpus: float, memory: float, expect: int | None
) -> None:
    got = decide_pool_size(poolable, fixed, max_actors=max_actors, per_node_cpu=0.1, cluster_cpus=cpus,
                           cluster_memory=memory)
    assert got == expect


def test_fedbuff_discounts_stale_deltas() -> None:
    alg = FedBuff(bufferSize=2, serverLr=1.0, stalenessExponent=0.5)
    base = {"w": np.zeros(1, dtype=np.float64)}
    fresh = Update("a", {"w": np.array([1.0])}, 10, base_version=5)
    stale = Update("b", {"w": np.array([-1.0])}, 10, base_version=2)  # 3 versions old: weight 1/2
    out = alg.aggregate(base, [fresh, stale], version=5)
    w_fresh, w_stale = staleness_weight(0), staleness_weight(3)
    assert w_stale == pytest.approx(0.5)
    # Samples are equal: Δ = (10·1·1 + 10·½·(−1)) / 20.
    assert out["w"][0] == pytest.approx((w_fresh - w_stale) / 2)


@pytest.mark.parametrize("name", ["ring", "mesh", "kregular", "custom", "cluster"])
def test_nodes_built_match_the_roles_drawn(name: str) -> None:
    fed = load_federation(EXAMPLES / f"digits-{name}.yaml")
    sch = schemas.get(fed.spec.schema_)(fed)  # constructing builds nothing: no Ray needed
    drawn, roles = schemas.get(fed.spec.schema_).graph_of(fed)
    assert set(map(frozenset, sch.graph.edges)) == set(map(frozenset, drawn.edges))
    assert {n: sch.nodes[n].role for n in sch.nodes} == roles


def test_cluster_members_are_pooled_when_the_spec_caps_actors() -> None:
    fed = load_federation(EXAMPLES / "digits-cluster.yaml")  # 12 clients, maxActors 8
    sch = schemas.get("cluster")(fed)
    assert sorted(sch.hosts) == [f"pool-{k}" for k in range(4)]  # 8 - server - 3 heads
    assert sorted(n for ids in sch.hosted.values() for n in ids) == sorted(sch.client_ids())
    assert all(sch.nodes[h].host is None for h in ("server", "head_0", "head_1", "head_2"))
    assert len(sch.actors) == 8


def test_cluster_refuses_asynchronous_algorithms() -> None:
    from red.errors import SpecError

    with pytest.raises(SpecError, match="synchronous"):
        schemas.get("cluster")(make_fed("c", schema="cluster", clients=4, algorithm={"name": "fedbuff"}))


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("digits-*.yaml")))
def test_red_topology_writes_a_png_for_every_example(example: str, tmp_path: Path) -> None:
    out = tmp_path / "topo.png"
    assert cli.main(["topology", str(EXAMPLES / example), "--output", str(out)]) == 0
    _assert_png(out)


def test_draw_topology_of_a_large_federation(tmp_path: Path) -> None:
    out = tmp_path / "big.png"
    draw_topology(make_fed("big", clients=300), str(out))
    _assert_png(out)


def test_plot_progress_from_reports(tmp_path: Path) -> None:
    history = [{"event": "start", "round": 0, "federation": "f", "metrics": {}}] + [
        {"event": "round", "round": r, "federation": "f", "metrics": {"accuracy": 0.5 + r / 40}}
        for r in range(1, 16)
    ]
    out = tmp_path / "acc.png"
    plot_progress(history, str(out))
    _assert_png(out)


def test_a_custom_topology_registered_from_user_code_is_named_in_yaml() -> None:
    from red.schemas.decentralized import DecentralizedFederatedLearning
    from red.spec import federation_from_dict
    from tests.helpers import fed_dict

    @schemas.register("star-of-rings-test")
    class Lollipop(DecentralizedFederatedLearning):
        @classmethod
        def build_graph(cls, fed: Any, ids: list[str]) -> nx.Graph:
            g = nx.lollipop_graph(3, len(ids) - 3)
            return nx.relabel_nodes(g, dict(enumerate(ids)))

    fed = federation_from_dict(fed_dict("lolli", schema="star-of-rings-test", clients=6))
    sch = schemas.get(fed.spec.schema_)(fed)
    assert isinstance(sch, Lollipop)
    assert sch.graph.number_of_edges() == 3 + 3
    assert all(vn.role == "train+eval" for vn in sch.nodes.values())
