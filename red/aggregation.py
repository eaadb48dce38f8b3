"""Aggregation maths: pure functions over models given as ``{name: numpy array}``.

No Ray, no torch: these are the parts worth proving exactly, and they are shared by every algorithm.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.floating]
Params = dict[str, Array]


def _check(updates: Sequence[Mapping[str, Array]]) -> list[str]:
    if not updates:
        raise ValueError("cannot aggregate zero updates")
    keys = list(updates[0])
    for u in updates[1:]:
        if list(u) != keys:
            raise ValueError(f"updates disagree on parameter names: {sorted(u)} vs {sorted(keys)}")
    return keys


def weighted_mean(updates: Sequence[Mapping[str, Array]], weights: Sequence[float]) -> Params:
    """Σ wᵢ·xᵢ / Σ wᵢ per parameter (FedAvg when wᵢ is the client's sample count)."""
    keys = _check(updates)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(updates),):
        raise ValueError(f"got {len(w)} weights for {len(updates)} updates")
    if np.any(w < 0) or w.sum() <= 0:
        raise ValueError("weights must be non-negative with a positive sum")
    w = w / w.sum()
    out: Params = {}
    for k in keys:
        stacked = np.stack([np.asarray(u[k], dtype=np.float64) for u in updates])
        out[k] = np.tensordot(w, stacked, axes=1).astype(np.asarray(updates[0][k]).dtype)
    return out


class RunningWeightedMean:
    """`weighted_mean` folded one update at a time: memory is one model, whatever the number of updates.

    Sums are kept in float64 with Neumaier compensation, so the result does not depend on the order the
    updates arrived in (beyond float64 rounding far below the model's float32), and a round's aggregate
    is the same whichever client answered first.
    """

    def __init__(self) -> None:
        self._sum: dict[str, npt.NDArray[np.float64]] = {}
        self._comp: dict[str, npt.NDArray[np.float64]] = {}
        self._dtypes: dict[str, np.dtype[np.generic]] = {}
        self.total_weight = 0.0
        self.count = 0

    def add(self, update: Mapping[str, Array], weight: float) -> None:
        if weight < 0:
            raise ValueError(f"weights must be non-negative, got {weight}")
        if self.count and list(update) != list(self._sum):
            raise ValueError(f"updates disagree on parameter names: {sorted(update)} vs {sorted(self._sum)}")
        for k, v in update.items():
            self._fold(k, np.asarray(v, dtype=np.float64) * weight, None, np.asarray(v).dtype)
        self.total_weight += weight
        self.count += 1

    def _fold(self, k: str, x: npt.NDArray[np.float64], comp: npt.NDArray[np.float64] | None,
              dtype: np.dtype[np.generic]) -> None:
        """Add the float64 sum ``x`` (and its compensation ``comp``, for another running mean's) to
        parameter ``k``, with Neumaier's step."""
        if k not in self._sum:
            self._sum[k] = x.copy()
            self._comp[k] = np.zeros_like(x) if comp is None else comp.copy()
            self._dtypes[k] = dtype
            return
        s = self._sum[k]
        t = s + x
        self._comp[k] += np.where(np.abs(s) >= np.abs(x), (s - t) + x, (x - t) + s)
        if comp is not None:
            self._comp[k] += comp
        self._sum[k] = t

    def merge(self, other: RunningWeightedMean) -> None:
        """Fold in another running mean's updates (a forked trainer's share of a batch): the same sums
        as if its updates had been added here, in float64, compensation included."""
        if not other.count:
            return
        if self.count and list(other._sum) != list(self._sum):
            raise ValueError(f"updates disagree on parameter names: {sorted(other._sum)} vs {sorted(self._sum)}")
        for k, x in other._sum.items():
            self._fold(k, x, other._comp[k], other._dtypes[k])
        self.total_weight += other.total_weight
        self.count += other.count

    def result(self) -> Params:
        if not self.count:
            raise ValueError("cannot aggregate zero updates")
        if self.total_weight <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        return {k: ((s + self._comp[k]) / self.total_weight).astype(self._dtypes[k]) for k, s in self._sum.items()}


def coordinate_median(updates: Sequence[Mapping[str, Array]]) -> Params:
    """Coordinate-wise median: robust while fewer than half of the updates are arbitrary."""
    keys = _check(updates)
    return {
        k: np.median(np.stack([u[k] for u in updates]), axis=0).astype(np.asarray(updates[0][k]).dtype)
        for k in keys
    }


def trimmed_mean(updates: Sequence[Mapping[str, Array]], trim_ratio: float) -> Params:
    """Per coordinate, drop the ⌊β·n⌋ largest and smallest values and average the rest."""
    if not 0 <= trim_ratio < 0.5:
        raise ValueError(f"trim ratio must be in [0, 0.5), got {trim_ratio}")
    keys = _check(updates)
    n = len(updates)
    cut = int(trim_ratio * n)
    out: Params = {}
    for k in keys:
        s = np.sort(np.stack([u[k] for u in updates]), axis=0)
        out[k] = s[cut : n - cut].mean(axis=0).astype(np.asarray(updates[0][k]).dtype)
    return out


def staleness_weight(staleness: int, exponent: float = 0.5) -> float:
    """FedBuff's polynomial discount 1/(1+τ)^a for an update computed τ versions ago."""
    if staleness < 0:
        raise ValueError(f"staleness cannot be negative, got {staleness}")
    return float((1.0 + staleness) ** -exponent)


def apply_delta(base: Mapping[str, Array], delta: Mapping[str, Array], scale: float = 1.0) -> Params:
    """base + scale·delta, per parameter."""
    return {k: (base[k] + scale * delta[k]).astype(np.asarray(base[k]).dtype) for k in base}


def subtract(a: Mapping[str, Array], b: Mapping[str, Array]) -> Params:
    return {k: a[k] - b[k] for k in a}


def flatten(params: Mapping[str, Array]) -> npt.NDArray[np.float64]:
    return np.concatenate([np.asarray(params[k], dtype=np.float64).ravel() for k in sorted(params)])


def consensus_distance(models: Sequence[Mapping[str, Array]]) -> float:
    """Mean L2 distance of each model from the models' average (0 when all agree)."""
    if not models:
        return 0.0
    flat = np.stack([flatten(m) for m in models])
    return float(np.linalg.norm(flat - flat.mean(axis=0), axis=1).mean())
