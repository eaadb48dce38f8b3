"""Prometheus metrics of the operator: reconciles, errors, Federations by phase."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

PHASES = ("Pending", "Starting", "Running", "Succeeded", "Failed", "Suspended")

REGISTRY = CollectorRegistry()
RECONCILES = Counter("red_operator_reconciles", "Reconcile passes, by result.", ["result"], registry=REGISTRY)
ERRORS = Counter(
    "red_operator_reconcile_errors",
    "Reconcile passes that raised, by error type.",
    ["error"],
    registry=REGISTRY,
)
SUBMISSIONS = Counter(
    "red_operator_job_submissions", "Ray job submissions, by outcome.", ["outcome"], registry=REGISTRY
)
FEDERATIONS = Gauge("red_operator_federations", "Federations by phase.", ["phase"], registry=REGISTRY)

_lock = threading.Lock()
_phases: dict[str, str] = {}


def set_phase(key: str, phase: str | None) -> None:
    """Record the phase of Federation `key` (namespace/name); None forgets it (deleted)."""
    with _lock:
        if phase is None:
            _phases.pop(key, None)
        else:
            _phases[key] = phase
        counts = {p: 0 for p in PHASES}
        for value in _phases.values():
            counts[value] = counts.get(value, 0) + 1
        for p, n in counts.items():
            FEDERATIONS.labels(phase=p).set(n)


def serve(port: int, host: str = "0.0.0.0") -> None:
    start_http_server(port, addr=host, registry=REGISTRY)
