"""metav1.Condition helpers. Conditions are the truth of a Federation's status; the phase is for display.

Types (each set on every reconcile, each with a reason and a message):

* `Ready`         — running with a ready cluster and healthy nodes, or finished successfully (kstatus)
* `Succeeded`     — the engine finished every round
* `Failed`        — the run stopped for good (Ray's or the engine's reason); retries are exhausted
* `ClusterReady`  — HeadPodReady and every desired worker ready; False names the pending/crashing pod
* `JobSubmitted`  — the engine job was submitted (or adopted) on the cluster's Ray
* `NodesHealthy`  — every virtual node in the last report is alive
* `Degraded`      — some nodes are dead but the federation keeps going (>= minClients alive)
* `Suspended`     — spec.suspend stopped the job and removed the cluster
* `Stalled`       — no progress without intervention: engine silent past stallTimeoutSeconds, or the
                    federation cannot fit (kstatus)
* `Reconciling`   — still working towards the spec (kstatus)
* `ReportValid`   — the engine's last report matched its schema (True/Sanitized: something non-finite or
                    too large was dropped; False/ReportInvalid: it was ignored, the message says why;
                    Unknown/OtherAttempt: it was written by an earlier attempt)
* `Synced`        — the last pass reached the Kubernetes API without errors (False/ApiError names the
                    call and the API server's answer; the operator backs off meanwhile)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["True", "False", "Unknown"]

READY = "Ready"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
CLUSTER_READY = "ClusterReady"
JOB_SUBMITTED = "JobSubmitted"
NODES_HEALTHY = "NodesHealthy"
DEGRADED = "Degraded"
SUSPENDED = "Suspended"
STALLED = "Stalled"
RECONCILING = "Reconciling"
REPORT_VALID = "ReportValid"
SYNCED = "Synced"

ORDER = (
    READY,
    SUCCEEDED,
    FAILED,
    CLUSTER_READY,
    JOB_SUBMITTED,
    NODES_HEALTHY,
    DEGRADED,
    SUSPENDED,
    STALLED,
    RECONCILING,
    REPORT_VALID,
    SYNCED,
)
# Conditions whose True is bad news: their transitions to True become Warning events.
ABNORMAL_WHEN_TRUE = {FAILED, DEGRADED, STALLED}
MAX_MESSAGE = 1024


@dataclass(frozen=True)
class Condition:
    type: str
    status: Status
    reason: str
    message: str


def merge(previous: list[dict[str, Any]], new: list[Condition], *, generation: int, now: str) -> list[dict[str, Any]]:
    """Conditions as stored: `lastTransitionTime` moves only when the status changes."""
    old = {c.get("type"): c for c in previous}
    out = []
    for c in sorted(new, key=lambda c: ORDER.index(c.type) if c.type in ORDER else len(ORDER)):
        prior = old.get(c.type)
        changed = prior is None or prior.get("status") != c.status
        out.append(
            {
                "type": c.type,
                "status": c.status,
                "reason": c.reason,
                "message": c.message[:MAX_MESSAGE],
                "observedGeneration": generation,
                "lastTransitionTime": now if changed or prior is None else prior.get("lastTransitionTime", now),
            }
        )
    return out


# New conditions that are True from the start of every Federation's life say nothing the first status's
# Phase Event does not: no Event for them (one fewer API write each per new Federation; their later
# changes still make Events).
QUIET_WHEN_NEW = {RECONCILING, SYNCED}


def transitions(previous: list[dict[str, Any]], current: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Conditions whose status or reason changed (each one becomes an Event)."""
    old = {c.get("type"): c for c in previous}
    out = []
    for c in current:
        prior = old.get(c["type"])
        if prior is None:
            if c["status"] == "True" and c["type"] not in QUIET_WHEN_NEW:
                out.append(c)
        elif prior.get("status") != c["status"] or prior.get("reason") != c["reason"]:
            out.append(c)
    return out


def get(conditions: list[dict[str, Any]], type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: list[dict[str, Any]], type_: str) -> bool:
    c = get(conditions, type_)
    return c is not None and c.get("status") == "True"


_BENIGN_FALSE_REASONS = {"Creating", "Suspended", "Deleted", "NoReport"}
_WARN_WHEN_FALSE = (CLUSTER_READY, NODES_HEALTHY, REPORT_VALID, SYNCED)


def is_bad_news(c: dict[str, Any]) -> bool:
    """Whether a condition's new state deserves a Warning event."""
    if c["type"] in ABNORMAL_WHEN_TRUE:
        return bool(c["status"] == "True")
    if c["type"] in _WARN_WHEN_FALSE:
        return c["status"] == "False" and c.get("reason") not in _BENIGN_FALSE_REASONS
    return False
