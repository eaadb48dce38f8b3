"""One placement group per federation: a broker bundle plus one bundle per node actor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group

from red.errors import PlacementError

Bundle = dict[str, float]


def bundles_for(broker: Mapping[str, float], nodes: Sequence[Mapping[str, float]]) -> list[Bundle]:
    """Ray bundles (``{"CPU": .., "GPU": ..}``) from lowercase cpu/gpu amounts; zero entries dropped."""

    def one(r: Mapping[str, float]) -> Bundle:
        b = {"CPU": float(r.get("cpu", 0.0)), "GPU": float(r.get("gpu", 0.0))}
        b = {k: v for k, v in b.items() if v > 0}
        return b or {"CPU": 0.001}  # Ray refuses empty bundles

    return [one(broker)] + [one(n) for n in nodes]


def shortfall(bundles: Sequence[Bundle], available: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """Resources whose total request exceeds what the cluster has: name → (needed, have)."""
    need: dict[str, float] = {}
    for b in bundles:
        for k, v in b.items():
            need[k] = need.get(k, 0.0) + v
    return {k: (v, float(available.get(k, 0.0))) for k, v in need.items() if v > available.get(k, 0.0) + 1e-9}


def describe_shortfall(short: Mapping[str, tuple[float, float]], what: str) -> str:
    parts = [f"{k}: needs {need:g}, the Ray cluster has {have:g}" for k, (need, have) in sorted(short.items())]
    hint = (
        "lower spec.resources.perNode (or spec.clients), or run on a cluster that has them"
        + (" (for GPUs: a node with GPUs, or perNode.gpu: 0 on a CPU-only machine)" if "GPU" in short else "")
    )
    return f"{what} cannot be placed: {'; '.join(parts)}. Fix: {hint}"


def cluster_capacity() -> tuple[float, float] | None:
    """(CPUs, memory in bytes) of the Ray cluster this process is connected to; None when it is not
    (drawing or validating a spec: there is no cluster to size anything for)."""
    if not ray.is_initialized():
        return None
    total = ray.cluster_resources()  # type: ignore[no-untyped-call]
    return float(total.get("CPU", 0.0)), float(total.get("memory", 0.0))


def node_cpus() -> list[float]:
    """CPUs of each live node of the Ray cluster this process is connected to."""
    return [float(n.get("Resources", {}).get("CPU", 0.0)) for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]


def create_placement_group(
    name: str, bundles: list[Bundle], *, strategy: str = "PACK", timeout_seconds: float = 60.0
) -> Any:
    """Create and wait for the group; never hangs: fails after ``timeout_seconds`` naming what's missing."""
    short = shortfall(bundles, ray.cluster_resources())
    if short:
        raise PlacementError(describe_shortfall(short, f"federation {name!r}"))
    pg = placement_group(bundles, strategy=strategy, name=name)
    ready, _ = ray.wait([pg.ready()], timeout=timeout_seconds)
    if not ready:
        remove_placement_group(pg)
        # Total capacity sufficed; what is free right now (other jobs) or the strategy does not.
        short_now = shortfall(bundles, ray.available_resources())
        detail = (
            describe_shortfall(short_now, f"federation {name!r}")
            if short_now
            else f"federation {name!r}: placement group ({strategy}) not placed within "
            f"{timeout_seconds:g}s although the totals fit; use strategy PACK or SPREAD, or free resources"
        )
        raise PlacementError(detail)
    return pg


def remove(pg: Any) -> None:
    if pg is not None and ray.is_initialized():
        try:
            remove_placement_group(pg)
        except Exception:  # already removed, or Ray is shutting down: nothing left to free
            pass
