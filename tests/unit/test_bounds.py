"""What keeps the engine's memory and output bounded: node inboxes, the server's per-round aggregation
and the per-round reports written as JSON lines. Pure parts, no Ray (the Ray side is in
tests/engine/test_bounds_on_ray.py)."""

from __future__ import annotations

import io
import json
import queue
import threading

import numpy as np
import pytest

from red.aggregation import RunningWeightedMean, weighted_mean
from red.algorithms.base import Update
from red.algorithms.builtin import FedAvg, FedProx, Median, TrimmedMean
from red.report import NodeState, Report, compact
from red.runtime.inbox import MIN_LIMIT, Inbox, limit_for_degree
from red.sinks import MAX_NODES_PER_LINE, JsonLinesSink


@pytest.mark.parametrize(
    ("limit", "puts", "kept", "dropped"),
    [
        (3, 2, [0, 1], 0),
        (3, 3, [0, 1, 2], 0),
        (3, 5, [2, 3, 4], 2),  # beyond the bound the oldest go first
        (1, 4, [3], 3),
    ],
)
def test_inbox_drops_the_oldest_beyond_its_limit_and_counts(limit: int, puts: int, kept: list[int],
                                                            dropped: int) -> None:
    box: Inbox[int] = Inbox(limit)
    accepted = [box.put(i) for i in range(puts)]
    assert accepted.count(False) == dropped and box.dropped == dropped
    assert [box.get(block=False) for _ in range(box.qsize())] == kept
    with pytest.raises(queue.Empty):
        box.get(block=False)


def test_inbox_blocks_until_a_put_or_the_timeout() -> None:
    box: Inbox[str] = Inbox(2)
    with pytest.raises(queue.Empty):
        box.get(timeout=0.05)
    threading.Timer(0.05, box.put, args=("late",)).start()
    assert box.get(timeout=5) == "late"
    with pytest.raises(ValueError, match="at least one message"):
        Inbox(0)


@pytest.mark.parametrize(
    ("degree", "limit"), [(0, MIN_LIMIT), (2, MIN_LIMIT), (1_000, 4_000), (100_000, 400_000)]
)
def test_inbox_limit_grows_with_degree(degree: int, limit: int) -> None:
    # A star server hears from every client each round: its inbox holds several rounds of them.
    assert limit_for_degree(degree) == limit


def _params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"w": rng.normal(size=(8, 4)).astype(np.float32), "b": rng.normal(size=4).astype(np.float32)}


def test_running_weighted_mean_matches_the_batch_mean_in_any_order() -> None:
    rng = np.random.default_rng(0)
    ups = [_params(rng) for _ in range(50)]
    weights = [float(rng.integers(1, 200)) for _ in ups]
    expect = weighted_mean(ups, weights)
    results = []
    for order in (range(50), reversed(range(50)), rng.permutation(50)):
        m = RunningWeightedMean()
        for i in order:
            m.add(ups[i], weights[i])
        results.append(m.result())
    for got in results:
        assert got["w"].dtype == np.float32
        for k in expect:
            np.testing.assert_allclose(got[k], expect[k], rtol=0, atol=1e-6)
            np.testing.assert_array_equal(got[k], results[0][k])  # the arrival order does not matter
    with pytest.raises(ValueError, match="zero updates"):
        RunningWeightedMean().result()
    m = RunningWeightedMean()
    m.add({"w": np.zeros(2)}, 1.0)
    with pytest.raises(ValueError, match="disagree on parameter names"):
        m.add({"v": np.zeros(2)}, 1.0)


@pytest.mark.parametrize(("algorithm", "streams"), [(FedAvg(), True), (FedProx(mu=0.1), True),
                                                    (Median(), False), (TrimmedMean(trimRatio=0.2), False)])
def test_round_accumulator_holds_one_model_for_mean_algorithms(algorithm: object, streams: bool) -> None:
    rng = np.random.default_rng(1)
    g = _params(rng)
    ups = [Update(f"c{i}", _params(rng), int(rng.integers(1, 50))) for i in range(20)]
    acc = algorithm.accumulator(g, version=3)  # type: ignore[attr-defined]
    for up in reversed(ups):
        acc.add(up)
    assert len(acc) == 20 and acc.node_ids == sorted(u.node_id for u in ups)
    assert acc.num_samples == sum(u.num_samples for u in ups)
    kept_models = sum(1 for u in acc.updates if u.params)
    assert kept_models == (0 if streams else 20)
    expect = algorithm.aggregate(g, ups, version=3)  # type: ignore[attr-defined]
    for k, v in acc.result().items():
        np.testing.assert_allclose(v, expect[k], rtol=0, atol=1e-6)


def _big_report(event: str, n: int) -> dict[str, object]:
    nodes = [NodeState("server", "eval", "Alive", 7)]
    nodes += [NodeState(f"client_{i}", "train", "Dead" if i in (17, 503) else "Alive", 7) for i in range(n)]
    return Report(event, "big", 7, 10, metrics={"accuracy": 0.9}, nodes=nodes).to_dict()  # type: ignore[arg-type]


def test_round_report_of_a_large_federation_is_a_summary_and_a_bounded_node_list() -> None:
    out = io.StringIO()
    sink = JsonLinesSink(out)
    full = _big_report("round", 1_000)
    sink.emit(full)
    sink.emit(_big_report("done", 1_000))
    line, done_line = out.getvalue().splitlines()
    d = json.loads(line)
    assert len(d["nodes"]) == MAX_NODES_PER_LINE and d["nodesOmitted"] == 1_001 - MAX_NODES_PER_LINE
    assert d["nodesTotal"] == 1_001 and d["nodeHealth"] == {"Alive": 999, "Dead": 2}
    assert [n["id"] for n in d["nodes"][:2]] == ["client_17", "client_503"]  # the unhealthy ones first
    assert len(line) < 10_000 < len(json.dumps(full))
    assert len(full["nodes"]) == 1_001  # the report given to other sinks is not changed
    done = json.loads(done_line)
    assert len(done["nodes"]) == MAX_NODES_PER_LINE and len(done["versions"]) == 1_001  # results stay whole


def test_small_reports_keep_every_node() -> None:
    d = compact(_big_report("round", 3), max_nodes=50)
    assert len(d["nodes"]) == 4 and "nodesOmitted" not in d and d["nodesTotal"] == 4
