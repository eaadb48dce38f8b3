"""Graph builders and data partitions: pure functions, no Ray."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from red import topology
from red.errors import RegistryError, TopologyError
from red.registry import Registry, schemas
from red.star_graph import StarGraph
from red.tasks.digits import DigitsTask, _dataset, dirichlet_partition, iid_partition

IDS = [f"c{i}" for i in range(6)]


@pytest.mark.parametrize(
    ("graph", "edges", "degrees"),
    [
        (topology.star("s", IDS), 6, {"s": 6, "c0": 1}),
        (topology.ring(IDS), 6, {"c0": 2, "c5": 2}),
        (topology.mesh(IDS), 15, {"c3": 5}),
        (topology.k_regular(IDS, 3), 9, {n: 3 for n in IDS}),
        (topology.custom(IDS, [["c0", "c1"], ["c1", "c2"], ["c2", "c3"], ["c3", "c4"], ["c4", "c5"]]), 5, {"c0": 1}),
        (topology.hierarchy("s", {"h0": IDS[:3], "h1": IDS[3:]}), 8, {"s": 2, "h0": 4, "c0": 1}),
    ],
)
def test_graphs(graph: nx.Graph | StarGraph, edges: int, degrees: dict[str, int]) -> None:
    assert graph.number_of_edges() == edges
    for n, d in degrees.items():
        assert graph.degree(n) == d
    g = nx.Graph(list(graph.edges))
    assert nx.is_connected(g) and set(g.nodes) == set(graph.nodes)
    assert dict(graph.degree) == dict(g.degree)
    for n in graph.nodes:
        assert sorted(graph.neighbors(n)) == sorted(g.neighbors(n))
    for a, b in [("s", "c0"), ("c0", "s"), ("c0", "c1"), ("c0", "c3"), ("h0", "c0")]:
        if a in graph and b in graph:
            assert graph.has_edge(a, b) == g.has_edge(a, b), (a, b)


def test_a_star_without_networkx() -> None:
    star = topology.star("s", ["c0", "c1", "c0"])
    assert isinstance(star, StarGraph)
    assert star.nodes == ["s", "c0", "c1"] and star.edges == [("s", "c0"), ("s", "c1")] and len(star) == 3
    assert "c1" in star and "c9" not in star and list(star) == star.nodes
    with pytest.raises(TopologyError, match="not a node"):
        star.degree("c9")
    with pytest.raises(TopologyError, match="not a node"):
        star.neighbors("c9")
    with pytest.raises(TopologyError, match="also one of its leaves"):
        topology.star("s", ["c0", "s"])


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: topology.k_regular(IDS, 6), "no 6-regular graph"),
        (lambda: topology.k_regular(IDS[:5], 3), "no 3-regular graph on 5"),
        (lambda: topology.custom(IDS, [["c0", "zz"]]), "not a node"),
        (lambda: topology.custom(IDS, [["c0", "c0"]]), "self-loop"),
        (lambda: topology.custom(IDS, [["c0", "c1"]]), "have no edges"),
        (lambda: topology.ring(["a"]), "at least 2"),
    ],
)
def test_impossible_graphs(build: object, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        build()  # type: ignore[operator]


def test_group_evenly() -> None:
    groups = topology.group_evenly([str(i) for i in range(10)], 3)
    assert sorted(len(g) for g in groups) == [3, 3, 4]
    assert sorted(x for g in groups for x in g) == sorted(str(i) for i in range(10))


def test_partitions_cover_train_set_once() -> None:
    _, y, _, yt = _dataset(0, 0.2)
    assert len(y) + len(yt) == 1797
    for parts in (dirichlet_partition(y, 10, 0.5, seed=0), iid_partition(len(y), 10, seed=0)):
        allidx = np.concatenate(parts)
        assert len(allidx) == len(y) and len(set(allidx.tolist())) == len(y)
        assert min(len(p) for p in parts) >= 2


def test_dirichlet_is_skewed_and_deterministic() -> None:
    _, y, _, _ = _dataset(0, 0.2)
    a = dirichlet_partition(y, 10, 0.1, seed=1)
    b = dirichlet_partition(y, 10, 0.1, seed=1)
    assert all(np.array_equal(p, q) for p, q in zip(a, b, strict=True))
    # With alpha 0.1 most clients see few classes; IID clients see all ten.
    classes = [len(np.unique(y[p])) for p in a]
    assert np.mean(classes) < 8
    iid = iid_partition(len(y), 10, seed=1)
    assert min(len(np.unique(y[p])) for p in iid) == 10


def test_digits_task_trains_in_process() -> None:
    task = DigitsTask({"partition": "iid", "lr": 0.2, "epochs": 3}, num_clients=2, seed=0)
    model = task.create_model()
    before = task.evaluate(model, task.test_data())["accuracy"]
    res = task.train(model, task.client_data(0), round=1)
    after = task.evaluate(model, task.test_data())["accuracy"]
    assert res.num_samples > 600
    assert after > 0.8 > before


def test_registry_errors_name_the_fix() -> None:
    with pytest.raises(RegistryError, match="unknown schema 'nope'.*register"):
        schemas.get("nope")
    reg: Registry[object] = Registry("widget", "red.widgets", {})

    @reg.register("w1")
    class W1:
        pass

    assert reg.get("w1") is W1 and "w1" in reg


def test_bootstrap_partition_gives_every_client_real_data() -> None:
    # 10,000 clients over 1,437 training samples: iid would leave most clients empty; bootstrap gives
    # each one samplesPerClient rows, the same ones for the same (seed, index), without building all.
    task = DigitsTask({"partition": "bootstrap", "samplesPerClient": 50}, num_clients=10_000, seed=3)
    x, y = task.client_data(9_999)
    assert len(y) == 50 and x.shape == (50, 64)
    again = DigitsTask({"partition": "bootstrap", "samplesPerClient": 50}, num_clients=10_000, seed=3)
    assert np.array_equal(task.client_indices(17), again.client_indices(17))
    assert not np.array_equal(task.client_indices(17), task.client_indices(18))
    assert len(np.unique(y.numpy())) >= 5  # drawn from all classes, not a slice of one
    with pytest.raises(IndexError):
        task.client_data(10_000)


def test_bootstrap_partition_rejects_bad_sizes() -> None:
    from red.errors import SpecError

    with pytest.raises(SpecError, match="samplesPerClient"):
        DigitsTask({"partition": "bootstrap", "samplesPerClient": 0}, num_clients=2)
    with pytest.raises(SpecError, match="'bootstrap'"):
        DigitsTask({"partition": "random"}, num_clients=2)


def test_digits_read_without_sklearn_match_sklearn() -> None:
    from sklearn.datasets import load_digits

    from red.tasks.digits import load_digits_arrays

    x, y = load_digits_arrays()
    xs, ys = load_digits(return_X_y=True)
    assert np.array_equal(x, xs) and np.array_equal(y, ys)


def test_digits_hand_written_sgd_is_torch_sgd() -> None:
    # DigitsTask.train steps by hand (no torch._dynamo import); it must be torch.optim.SGD exactly.
    import torch

    task = DigitsTask({"partition": "iid", "lr": 0.1, "epochs": 2, "batchSize": 16}, num_clients=4, seed=0)
    x, y = task.client_data(1)
    ours = task.create_model()
    task.train(ours, (x, y), round=3)
    ref = task.create_model()
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(3)
    for _ in range(2):
        perm = torch.randperm(len(y), generator=gen)
        for s in range(0, len(y), 16):
            b = perm[s:s + 16]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(ref(x[b]), y[b]).backward()
            opt.step()
    for (k, a), b in zip(ours.state_dict().items(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
