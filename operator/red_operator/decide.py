"""What the reconciler does next, decided from observations only. Pure.

The job's attempt counter lives in `status.job.attempts` and names the submission
(`red-<fed>-<uid8>-<attempt>`), so an operator that restarts between a submission and its status write
re-submits the *same* id, gets "already exists" from Ray, and adopts the job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from red.spec.model import FederationSpec
from red.spec.status import TERMINAL_PHASES as TERMINAL_PHASES
from red.spec.status import Phase

# Engine failure reasons that a retry cannot fix: the same spec fails the same way (fix it instead).
NOT_RETRIED = frozenset({"SpecError"})
RAY_TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
RAY_ACTIVE = ("PENDING", "RUNNING")
# Our own job status (not Ray's): the job was stopped because of spec.suspend; resuming starts a new attempt.
SUSPENDED = "SUSPENDED"


@dataclass(frozen=True)
class RayJob:
    """What Ray's dashboard says about the current submission."""

    status: str | None
    """PENDING | RUNNING | STOPPED | SUCCEEDED | FAILED; None when Ray does not know the id."""
    message: str = ""
    error_type: str | None = None
    reachable: bool = True
    """False when the dashboard could not be asked (then `status` is the last known one)."""


@dataclass(frozen=True)
class Plan:
    cluster: Literal["ensure", "delete", "leave"]
    job: Literal["none", "submit", "stop"]
    attempt: int
    """The attempt to submit (job == submit), else the current one."""
    resume: bool
    failures: int
    terminal_failure: bool = False
    why: str = ""


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def ttl_expired(spec: FederationSpec, status: dict[str, Any], now: datetime) -> bool:
    ttl = spec.ttl_seconds_after_finished
    done = parse_time(status.get("completionTime"))
    return ttl is not None and done is not None and now >= done + timedelta(seconds=ttl)


def plan(
    spec: FederationSpec,
    status: dict[str, Any],
    ray_job: RayJob | None,
    *,
    cluster_ready: bool,
    fits: bool,
    now: datetime,
    engine_reason: str | None = None,
) -> Plan:
    """Decide cluster and job actions. `status` is the Federation's current status (maybe empty).
    `engine_reason` is the current attempt's failure reason from its own report, if it failed."""
    job = status.get("job") or {}
    attempts = int(job.get("attempts") or 0)
    failures = int(job.get("failures") or 0)
    existing = spec.cluster.existing_cluster is not None
    keep_or_delete: Literal["leave", "delete"] = "leave" if existing else "delete"
    phase = status.get("phase")
    resume = spec.checkpoint.enabled and attempts > 0

    if phase in TERMINAL_PHASES:
        cluster = keep_or_delete if ttl_expired(spec, status, now) else "leave"
        return Plan(cluster, "none", attempts, False, failures, phase == Phase.FAILED, "finished")
    current_active = ray_job is not None and ray_job.status in RAY_ACTIVE
    if spec.suspend:
        return Plan(keep_or_delete, "stop" if current_active else "none", attempts, False, failures, why="suspended")
    if not fits:
        return Plan("leave", "none", attempts, False, failures, why="does not fit")
    cluster_action: Literal["ensure", "leave"] = "leave" if existing else "ensure"

    if attempts == 0 or job.get("status") == SUSPENDED:
        # First run, or resuming after a suspend (the old cluster, and its job, are gone).
        if cluster_ready:
            return Plan(cluster_action, "submit", attempts + 1, resume, failures, why="cluster ready")
        return Plan(cluster_action, "none", attempts, False, failures, why="waiting for the cluster")

    status_now = ray_job.status if ray_job is not None else None
    if ray_job is not None and not ray_job.reachable:
        return Plan(cluster_action, "none", attempts, False, failures, why="dashboard unreachable")
    if status_now in RAY_ACTIVE or status_now == "SUCCEEDED":
        return Plan(cluster_action, "none", attempts, False, failures, why=f"job {status_now}")
    # FAILED, STOPPED by someone else, or lost (Ray no longer knows the id, or its cluster is gone):
    # one failure per submission, however many passes see it gone.
    already_counted = job.get("submissionId") is not None and job.get("countedFailure") == job.get("submissionId")
    if not already_counted:
        failures += 1
    not_retried = engine_reason in NOT_RETRIED and status_now == "FAILED"
    if not_retried or failures > spec.backoff_limit:
        why = f"{engine_reason} is not retried" if not_retried else "backoff limit reached"
        return Plan(cluster_action, "none", attempts, False, failures, terminal_failure=True, why=why)
    if not cluster_ready:
        return Plan(cluster_action, "none", attempts, False, failures, why="retry waits for the cluster")
    resume = spec.checkpoint.enabled
    return Plan(cluster_action, "submit", attempts + 1, resume, failures, why=f"retry after {status_now or 'LOST'}")
