"""Aggregation maths, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from red.aggregation import (
    apply_delta,
    consensus_distance,
    coordinate_median,
    staleness_weight,
    trimmed_mean,
    weighted_mean,
)
from red.algorithms.base import Update
from red.algorithms.builtin import FedAvg, FedBuff, Median, TrimmedMean


def u(*vals: float) -> dict[str, np.ndarray]:
    return {"w": np.array(vals, dtype=np.float32), "b": np.array([vals[0]], dtype=np.float32)}


@pytest.mark.parametrize(
    ("updates", "weights", "expect_w"),
    [
        ([u(1, 2), u(3, 4)], [1, 1], [2, 3]),
        ([u(1, 2), u(3, 4)], [3, 1], [1.5, 2.5]),
        ([u(0, 0), u(10, 10), u(20, 20)], [1, 0, 1], [10, 10]),
        ([u(5, -5)], [7], [5, -5]),
    ],
)
def test_weighted_mean(updates: list[dict[str, np.ndarray]], weights: list[float], expect_w: list[float]) -> None:
    out = weighted_mean(updates, weights)
    np.testing.assert_allclose(out["w"], expect_w, rtol=1e-6)
    assert out["w"].dtype == np.float32


def test_weighted_mean_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="zero updates"):
        weighted_mean([], [])
    with pytest.raises(ValueError, match="weights"):
        weighted_mean([u(1, 2)], [0])
    with pytest.raises(ValueError, match="disagree"):
        weighted_mean([u(1, 2), {"x": np.zeros(2)}], [1, 1])


def test_median_and_trimmed_mean_ignore_outliers() -> None:
    ups = [u(1, 1), u(2, 2), u(3, 3), u(1000, -1000)]
    np.testing.assert_allclose(coordinate_median(ups)["w"], [2.5, 1.5])
    np.testing.assert_allclose(trimmed_mean(ups, 0.25)["w"], [2.5, 1.5])
    np.testing.assert_allclose(trimmed_mean(ups, 0.0)["w"], [251.5, -248.5])
    with pytest.raises(ValueError):
        trimmed_mean(ups, 0.5)


def test_staleness_weight() -> None:
    assert staleness_weight(0) == 1.0
    assert staleness_weight(3, 0.5) == pytest.approx(0.5)
    assert staleness_weight(1, 1.0) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        staleness_weight(-1)


def test_consensus_distance() -> None:
    assert consensus_distance([u(1, 2), u(1, 2)]) == 0.0
    d = consensus_distance([{"w": np.array([0.0])}, {"w": np.array([2.0])}])
    assert d == pytest.approx(1.0)


def test_algorithms() -> None:
    g = u(0, 0)
    ups = [Update("a", u(1, 1), 1), Update("b", u(3, 3), 3)]
    np.testing.assert_allclose(FedAvg().aggregate(g, ups, version=0)["w"], [2.5, 2.5])
    np.testing.assert_allclose(Median().aggregate(g, ups, version=0)["w"], [2, 2])
    np.testing.assert_allclose(TrimmedMean(trimRatio=0.0).aggregate(g, ups, version=0)["w"], [2, 2])
    # FedBuff: deltas weighted by samples × staleness; server lr 1.
    fb = FedBuff(bufferSize=2, stalenessExponent=1.0)
    deltas = [Update("a", u(1, 1), 1, base_version=4), Update("b", u(4, 4), 1, base_version=3)]
    # version 4: staleness 0 → s=1, staleness 1 → s=0.5; the discount shrinks the step (the paper's
    # Σ nᵢ·sᵢ·Δᵢ / Σ nᵢ): (1·1 + 0.5·4) / 2 = 1.5, not the plain weighted mean (1 + 0.5·4) / 1.5 = 2.
    np.testing.assert_allclose(fb.aggregate(g, deltas, version=4)["w"], [1.5, 1.5])
    # A buffer that is all stale moves the model less than the same buffer fresh.
    stale = [Update("a", u(2, 2), 1, base_version=0), Update("b", u(2, 2), 1, base_version=0)]
    np.testing.assert_allclose(fb.aggregate(g, stale, version=3)["w"], [0.5, 0.5])
    np.testing.assert_allclose(apply_delta(u(1, 1), u(1, 2), 0.5)["w"], [1.5, 2])
