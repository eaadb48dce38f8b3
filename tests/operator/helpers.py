"""Plain-dict factories shared by the operator's unit tests."""

from __future__ import annotations

from typing import Any

from red.spec.loader import spec_from_dict
from red.spec.model import FederationSpec

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def gpu_pool(**over: Any) -> dict[str, Any]:
    pool = {
        "name": "gpu",
        "gpusPerWorker": 8,
        "maxWorkers": 2,
        "nodeSelector": {"red.dev/pool": "gpu"},
        "tolerations": [GPU_TOLERATION],
    }
    pool.update(over)
    return pool


def spec(**over: Any) -> FederationSpec:
    data: dict[str, Any] = {
        "clients": 8,
        "rounds": 3,
        "resources": {"perNode": {"cpu": 0.1, "gpu": 0.5}},
        "cluster": {"nodePools": [gpu_pool()]},
    }
    data.update(over)
    return spec_from_dict(data)
