"""How many workers each node pool needs for a Federation, or why it cannot fit. Pure.

Every virtual node gets a placement-group bundle of `resources.perNode`; a bundle cannot span pods, so a
worker with G GPUs holds floor(G / perNode.gpu) GPU nodes. GPU pools are filled in the order written, each
up to its `maxWorkers`. Pools without GPUs (and every pool when the federation needs no GPU) get their
`minWorkers`. When the pools cannot hold the federation, the result names the shortfall and the operator
reports it: the cluster is never silently made smaller than the spec asks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from red.spec.model import FederationSpec

_EPS = 1e-9


@dataclass(frozen=True)
class Sizing:
    workers: dict[str, int] = field(default_factory=dict)
    """Replicas per node pool name."""
    gpu_nodes: int = 0
    """Virtual nodes (clients, and the broker when it asks for a GPU) that need a GPU."""
    gpus_needed: float = 0.0
    gpus_requested: int = 0
    """nvidia.com/gpu over all worker pods of the plan."""
    shortfall: str | None = None
    """Why the federation cannot fit, naming the numbers and the fix; None when it fits."""

    @property
    def fits(self) -> bool:
        return self.shortfall is None


def _fmt(x: float) -> str:
    return f"{x:g}"


def size_cluster(spec: FederationSpec) -> Sizing:
    """Workers per pool for `spec`, or a shortfall. See the module docstring for the rules."""
    per_gpu = spec.resources.per_node.gpu
    pools = spec.cluster.node_pools
    workers = {p.name: p.min_workers for p in pools}
    gpu_nodes = spec.clients if per_gpu > 0 else 0
    if spec.resources.broker.gpu > 0:
        gpu_nodes += 1
    need = spec.clients * per_gpu + spec.resources.broker.gpu
    if need <= 0:
        return Sizing(workers, 0, 0.0, sum(p.gpus_per_worker * workers[p.name] for p in pools))
    gpu_pools = [p for p in pools if p.gpus_per_worker > 0]
    if not gpu_pools:
        return Sizing(
            workers,
            gpu_nodes,
            need,
            0,
            shortfall=f"the federation needs {_fmt(need)} GPUs ({spec.clients} clients x "
            f"{_fmt(per_gpu)}) but spec.cluster.nodePools has no pool with gpusPerWorker > 0: add a GPU "
            "node pool, or set resources.perNode.gpu to 0",
        )
    biggest = max(spec.resources.per_node.gpu, spec.resources.broker.gpu)
    remaining = gpu_nodes
    capacity = 0
    for pool in gpu_pools:
        per_worker = math.floor(pool.gpus_per_worker / biggest + _EPS) if biggest > 0 else 0
        if per_worker == 0:
            continue
        take = min(pool.max_workers, math.ceil(remaining / per_worker)) if remaining > 0 else 0
        workers[pool.name] = max(pool.min_workers, take)
        remaining -= min(remaining, take * per_worker)
        capacity += pool.max_workers * per_worker
    requested = sum(p.gpus_per_worker * workers[p.name] for p in pools)
    if remaining > 0:
        offered = ", ".join(f"{p.name}: {p.max_workers} x {p.gpus_per_worker} GPUs" for p in gpu_pools)
        fits_per_worker = capacity == 0
        detail = (
            f"no worker of any pool has {_fmt(biggest)} GPUs for one node"
            if fits_per_worker
            else f"the node pools hold at most {capacity} of them ({offered})"
        )
        return Sizing(
            workers,
            gpu_nodes,
            need,
            requested,
            shortfall=f"the federation needs {_fmt(need)} GPUs for {gpu_nodes} GPU nodes "
            f"({_fmt(per_gpu)} GPU each) but {detail}; short by {remaining} nodes: raise maxWorkers or "
            "gpusPerWorker, or lower clients or resources.perNode.gpu",
        )
    return Sizing(workers, gpu_nodes, need, requested)
