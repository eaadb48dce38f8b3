"""Prometheus metrics of the operator: reconciles (count, duration), errors, the work queue, Federations by
phase, and how long a Federation takes from `kubectl apply` to Running."""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from red.spec.status import Phase

PHASES = tuple(p.value for p in Phase)

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
RECONCILE_SECONDS = Histogram(
    "red_operator_reconcile_duration_seconds",
    "Wall time of one reconcile pass (cache reads, Ray dashboard calls, writes).",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "red_operator_workqueue_depth",
    "Federations waiting for a worker now (delayed requeues not counted).",
    registry=REGISTRY,
)
APPLY_TO_RUNNING = Histogram(
    "red_operator_apply_to_running_seconds",
    "From the Federation's creationTimestamp to phase Running (first attempt, seen by this replica).",
    buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
    registry=REGISTRY,
)
LEADER = Gauge(
    "red_operator_leader", "1 while this replica holds the leader Lease (or runs without one).", registry=REGISTRY
)

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
