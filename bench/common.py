"""What the benchmarks share: one way to build the star Federation each of them measures."""

from __future__ import annotations

from typing import Any

from red.spec import Federation, federation_from_dict


def star(name: str, *, rounds: int, clients: int, task: dict[str, Any], resources: dict[str, Any],
         fault_tolerance: dict[str, Any] | None = None, **spec: Any) -> Federation:
    """A star Federation; heartbeats are slow by default so supervision pings stay out of the timings."""
    return federation_from_dict({
        "apiVersion": "red.dev/v1alpha1",
        "kind": "Federation",
        "metadata": {"name": name},
        "spec": {
            "schema": "star",
            "rounds": rounds,
            "clients": clients,
            "task": task,
            "resources": resources,
            "faultTolerance": {"heartbeatSeconds": 30, **(fault_tolerance or {})},
            **spec,
        },
    })
