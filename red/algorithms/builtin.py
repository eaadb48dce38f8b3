"""Built-in algorithms: FedAvg, FedProx, coordinate-wise median, trimmed mean, FedBuff."""

from __future__ import annotations

from typing import Any, ClassVar

from red.aggregation import (
    Params,
    apply_delta,
    coordinate_median,
    staleness_weight,
    subtract,
    trimmed_mean,
    weighted_mean,
)
from red.algorithms.base import Algorithm, Update
from red.errors import SpecError


def _float_param(params: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    value = params.get(key, default)
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise SpecError(f"spec.algorithm.params.{key}: must be a number, got {value!r}") from None
    if not lo <= f <= hi:
        raise SpecError(f"spec.algorithm.params.{key}: must be in [{lo}, {hi}], got {f}")
    return f


class FedAvg(Algorithm):
    """McMahan et al.: the sample-weighted mean of the clients' models."""

    name: ClassVar[str] = "fedavg"
    pre_aggregate: ClassVar[bool] = True

    def aggregate(self, global_params: Params, updates: list[Update], *, version: int) -> Params:
        return weighted_mean([u.params for u in updates], [max(u.num_samples, 1) for u in updates])


class FedProx(FedAvg):
    """Li et al.: FedAvg whose clients add (μ/2)·‖w − w_global‖² to their loss (param ``mu``)."""

    name: ClassVar[str] = "fedprox"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.mu = _float_param(params, "mu", 0.01, 0.0, 1e3)

    def client_config(self) -> dict[str, Any]:
        return {"prox_mu": self.mu}


class Median(Algorithm):
    """Coordinate-wise median (Yin et al.): tolerates a minority of arbitrary (poisoned) updates."""

    name: ClassVar[str] = "median"

    def aggregate(self, global_params: Params, updates: list[Update], *, version: int) -> Params:
        return coordinate_median([u.params for u in updates])


class TrimmedMean(Algorithm):
    """Coordinate-wise β-trimmed mean (param ``trimRatio``, default 0.2)."""

    name: ClassVar[str] = "trimmed-mean"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.trim_ratio = _float_param(params, "trimRatio", 0.2, 0.0, 0.49)

    def aggregate(self, global_params: Params, updates: list[Update], *, version: int) -> Params:
        return trimmed_mean([u.params for u in updates], self.trim_ratio)


class FedBuff(Algorithm):
    """Nguyen et al.: asynchronous; the server applies the staleness-weighted mean of buffered deltas.

    Params: ``bufferSize`` (K updates per aggregation, default 3), ``serverLr`` (η, default 1.0),
    ``stalenessExponent`` (a in 1/(1+τ)^a, default 0.5).
    """

    name: ClassVar[str] = "fedbuff"
    asynchronous: ClassVar[bool] = True

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.buffer_size = int(_float_param(params, "bufferSize", 3, 1, 1e6))
        self.server_lr = _float_param(params, "serverLr", 1.0, 1e-6, 1e3)
        self.exponent = _float_param(params, "stalenessExponent", 0.5, 0.0, 10.0)

    def aggregate(self, global_params: Params, updates: list[Update], *, version: int) -> Params:
        # Updates carry deltas (trained − received). As in the paper, the staleness discount shrinks the
        # step itself: Δ = Σ nᵢ·s(τᵢ)·Δᵢ / Σ nᵢ. Normalising by Σ nᵢ·s(τᵢ) instead (a plain weighted mean)
        # cancels the discount whenever a whole buffer is stale, and the example oscillated to 0.3–0.6.
        samples = [max(u.num_samples, 1) for u in updates]
        discount = [staleness_weight(max(version - u.base_version, 0), self.exponent) for u in updates]
        mean_delta = weighted_mean([u.params for u in updates], [n * s for n, s in zip(samples, discount, strict=True)])
        shrink = sum(n * s for n, s in zip(samples, discount, strict=True)) / sum(samples)
        return apply_delta(global_params, mean_delta, self.server_lr * shrink)


__all__ = ["FedAvg", "FedBuff", "FedProx", "Median", "TrimmedMean", "subtract"]
