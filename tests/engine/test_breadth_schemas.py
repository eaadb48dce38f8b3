"""Ring, mesh, k-regular, custom and cluster federations on a real local Ray with real torch training.

Each test builds its federation first, proves that the topology's edges are enforced (a send to a
non-neighbour raises TopologyError in the sender), then runs it to the end on the same actors.
"""

from __future__ import annotations

from typing import Any

import networkx as nx
import pytest

from red.errors import TopologyError
from red.registry import schemas
from red.sinks import CallbackSink
from tests.helpers import make_fed

pytestmark = pytest.mark.ray

DIGITS = {"name": "digits", "params": {"partition": "dirichlet", "alpha": 0.5, "lr": 0.2, "epochs": 2}}


def _build_check_run(fed: Any, probes: list[tuple[str, str]]) -> tuple[Any, list[dict[str, Any]]]:
    """Build, assert that each (sender, recipient) probe raises TopologyError, then run to the end."""
    import ray

    from red.report import Report

    sch = schemas.get(fed.spec.schema_)(fed)
    reports: list[dict[str, Any]] = []
    sink = CallbackSink(reports.append)
    try:
        sch.build()
        for sender, recipient in probes:
            assert not sch.graph.has_edge(sender, recipient)
            vn = sch.nodes[sender]
            with pytest.raises(TopologyError, match="not its neighbours"):
                if vn.host is None:
                    ray.get(vn.handle.send.remote("probe", {}, to=recipient))
                else:  # a pooled virtual node sends through its host, as itself
                    ray.get(sch.hosts[vn.host].handle.send_as.remote(sender, "probe", {}, recipient))

        def emit(r: Report) -> None:
            sink.emit(r.to_dict())

        done = sch.run(emit)
        reports.append(done.to_dict())
    finally:
        sch.stop()
    return sch, reports


def _rounds(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in reports if r["event"] == "round"]


def test_ring_gossip_reaches_accuracy_and_consensus_distance_falls(ray_clean: Any) -> None:
    fed = make_fed("ring", schema="ring", clients=6, rounds=30, task=DIGITS)
    sch, reports = _build_check_run(fed, [("client_0", "client_3"), ("client_1", "client_4")])
    rounds = _rounds(reports)
    assert [r["round"] for r in rounds] == list(range(1, 31))
    assert reports[-1]["event"] == "done"
    assert rounds[-1]["metrics"]["accuracy"] >= 0.85
    cd = [r["metrics"]["consensusDistance"] for r in rounds]
    # Models start equal, drift apart while gradients are large, then gossip pulls them together.
    assert cd[-1] < 0.6 * max(cd)
    assert sum(cd[-5:]) / 5 < sum(cd[5:10]) / 5
    assert all(sch.state[f"client_{i}"].version == 30 for i in range(6))


def test_mesh_all_to_all_averaging(ray_clean: Any) -> None:
    fed = make_fed("mesh", schema="mesh", clients=4, rounds=20, task=DIGITS)
    # Every pair is an edge on a mesh: the only non-neighbour is a node outside the federation.
    _, reports = _build_check_run(fed, [("client_0", "client_9")])
    rounds = _rounds(reports)
    assert rounds[-1]["metrics"]["accuracy"] >= 0.85
    # Metropolis weights on a complete graph are 1/n: every node holds the exact average after each
    # round, so the consensus distance is (numerically) zero.
    assert max(r["metrics"]["consensusDistance"] for r in rounds) < 1e-4


def test_k_regular_and_custom_graphs_enforce_their_edges(ray_clean: Any) -> None:
    fed = make_fed("kreg", schema="k-regular", clients=6, rounds=4, task=DIGITS, topology={"degree": 3})
    g, _ = schemas.get("k-regular").graph_of(fed)
    non_edge = next((a, b) for a in g for b in g if a != b and not g.has_edge(a, b))
    sch, reports = _build_check_run(fed, [non_edge])
    assert all(d == 3 for _, d in sch.graph.degree)
    assert nx.is_connected(sch.graph)
    assert [r["round"] for r in _rounds(reports)] == [1, 2, 3, 4]

    edges = [["client_0", "client_1"], ["client_1", "client_2"], ["client_2", "client_3"]]  # a path
    fed = make_fed("custom", schema="custom", clients=4, rounds=3, task=DIGITS, topology={"edges": edges})
    sch, reports = _build_check_run(fed, [("client_0", "client_2"), ("client_3", "client_0")])
    assert sorted(map(sorted, sch.graph.edges)) == sorted(map(sorted, edges))
    assert [r["round"] for r in _rounds(reports)] == [1, 2, 3]
    assert reports[-1]["metrics"]["participants"] == 4


def test_cluster_heads_aggregate_and_reach_accuracy(ray_clean: Any) -> None:
    # 9 clients in clusters of 3 under head_0..head_2; members multiplexed onto 2 pool hosts
    # (maxActors 6 = server + 3 heads + 2 hosts), which also proves pooled nodes are fenced in.
    fed = make_fed(
        "cluster", schema="cluster", clients=9, rounds=15, task=DIGITS, topology={"clusterSize": 3},
        resources={"perNode": {"cpu": 0.1}, "broker": {"cpu": 0.1}, "maxActors": 6},
    )
    sch, reports = _build_check_run(
        fed, [("client_0", "server"), ("client_0", "head_1"), ("head_0", "head_1"), ("head_0", "client_1")]
    )
    assert len(sch.hosts) == 2
    assert sorted(sch.graph.neighbors("server")) == ["head_0", "head_1", "head_2"]
    rounds = _rounds(reports)
    assert [r["round"] for r in rounds] == list(range(1, 16))
    assert rounds[-1]["metrics"]["accuracy"] >= 0.90
    assert all(r["metrics"]["participants"] == 3 for r in rounds)  # heads answer the server
    members = {n["id"]: n for n in reports[-1]["nodes"] if n["role"] == "train"}
    assert len(members) == 9 and all(n["version"] == 15 for n in members.values())
