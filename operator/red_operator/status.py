"""Fold observations into `Federation.status`. Pure: the reconciler gathers, this decides what is true.

Inputs are the previous status, the plan the reconciler just carried out, the RayCluster observation, the
Ray job and the engine's latest report (from its ConfigMap). The output is the whole new status; the
reconciler writes it only when it differs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from red.spec.model import FederationSpec
from red_operator import conditions as C
from red_operator.decide import SUSPENDED, Plan, RayJob, parse_time
from red_operator.readiness import ClusterObservation
from red_operator.sizing import Sizing

HEALTHY = ("Alive", "Finished")


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Blocked:
    """The operator refuses to go on until someone intervenes (a look-alike object, a cluster that may
    not be borrowed, a Ray head that does not enforce token auth). Shown as Stalled=True with this reason."""

    reason: str
    message: str


@dataclass(frozen=True)
class Observed:
    generation: int
    now: datetime
    spec: FederationSpec | None
    spec_error: str | None = None
    sizing: Sizing | None = None
    cluster_name: str | None = None
    cluster_existing: bool = False
    cluster: ClusterObservation | None = None
    plan: Plan | None = None
    submission_id: str | None = None
    ray_job: RayJob | None = None
    report: dict[str, Any] | None = None
    dashboard_url: str | None = None
    dashboard_error: str | None = None
    blocked: Blocked | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _camel(text: str) -> str:
    parts = [p for p in text.replace("-", "_").lower().split("_") if p]
    return "".join(p.capitalize() for p in parts) or "Failed"


def _nodes(report: dict[str, Any] | None) -> list[dict[str, Any]]:
    keys = ("id", "role", "health", "version", "restarts", "lastHeartbeat")
    return [{k: n.get(k) for k in keys if k in n} for n in (report or {}).get("nodes") or []]


def _metrics(report: dict[str, Any] | None) -> dict[str, float]:
    raw = (report or {}).get("metrics") or {}
    return {k: v for k, v in raw.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def fold(previous: dict[str, Any], obs: Observed) -> dict[str, Any]:
    """The new status. Terminal phases (Succeeded, Failed) stick: later observations only update the
    cluster fields (e.g. after the TTL removed the cluster)."""
    prev = dict(previous or {})
    prev_conds: list[dict[str, Any]] = list(prev.get("conditions") or [])
    now = iso(obs.now)
    status: dict[str, Any] = {k: v for k, v in prev.items() if k not in ("conditions",)}
    status["observedGeneration"] = obs.generation

    if obs.spec is None:
        invalid = [
            C.Condition(C.FAILED, "True", "InvalidSpec", obs.spec_error or "invalid spec"),
            C.Condition(C.READY, "False", "InvalidSpec", obs.spec_error or "invalid spec"),
            C.Condition(C.STALLED, "True", "InvalidSpec", "fix the spec"),
            C.Condition(C.RECONCILING, "False", "InvalidSpec", "fix the spec"),
        ]
        status.update(phase="Failed", reason="InvalidSpec", message=obs.spec_error or "")
        status["conditions"] = C.merge(prev_conds, invalid, generation=obs.generation, now=now)
        return status

    spec = obs.spec
    status["rayCluster"] = _cluster_status(obs)
    if prev.get("phase") in ("Succeeded", "Failed"):
        status["conditions"] = prev_conds
        if obs.cluster is not None and not obs.cluster.exists:
            status["conditions"] = C.merge(
                prev_conds,
                [
                    *_keep(prev_conds, exclude=C.CLUSTER_READY),
                    C.Condition(
                        C.CLUSTER_READY,
                        "False",
                        "Deleted",
                        "the RayCluster was removed after the run (ttlSecondsAfterFinished)",
                    ),
                ],
                generation=obs.generation,
                now=now,
            )
        return status

    plan = obs.plan
    report = obs.report
    job = dict(prev.get("job") or {})
    if obs.submission_id:
        job["submissionId"] = obs.submission_id
    if plan is not None:
        job["attempts"] = plan.attempt
        job["failures"] = plan.failures
        if plan.failures > int((prev.get("job") or {}).get("failures") or 0):
            job["countedFailure"] = (prev.get("job") or {}).get("submissionId")
    ray = obs.ray_job
    if ray is not None and ray.reachable:
        job["status"] = ray.status or "LOST"
        if ray.message:
            job["message"] = ray.message[: C.MAX_MESSAGE]
    if plan is not None and plan.job == "submit":
        job["status"] = "PENDING"
        job.pop("message", None)
    if (plan is not None and plan.job == "stop") or (spec.suspend and job.get("submissionId")):
        job["status"] = SUSPENDED
    if job.get("submissionId"):
        status["job"] = job

    nodes = _nodes(report)
    if report is not None:
        if report.get("time") != prev.get("reportTime") or "lastReportTime" not in prev:
            status["lastReportTime"] = now
            if report.get("time"):
                status["reportTime"] = str(report["time"])
        status["round"] = int(report.get("round") or 0)
        status["nodes"] = nodes
        status["metrics"] = _metrics(report)
    rounds = spec.rounds
    status["progress"] = f"{status.get('round', 0)}/{rounds}"
    healthy = [n for n in nodes if n.get("health") in HEALTHY]
    status["healthyNodes"] = f"{len(healthy)}/{len(nodes) or spec.clients}"

    conds: list[C.Condition] = []
    cluster = obs.cluster
    # --- cluster
    if obs.sizing is not None and not obs.sizing.fits:
        conds.append(C.Condition(C.CLUSTER_READY, "False", "InsufficientResources", obs.sizing.shortfall or ""))
    elif spec.suspend:
        conds.append(C.Condition(C.CLUSTER_READY, "False", "Suspended", "the cluster is removed while suspended"))
    elif obs.blocked is not None and (cluster is None or not cluster.exists):
        conds.append(C.Condition(C.CLUSTER_READY, "False", obs.blocked.reason, obs.blocked.message))
    elif cluster is None or not cluster.exists:
        conds.append(C.Condition(C.CLUSTER_READY, "False", "Creating", "creating the RayCluster"))
    else:
        conds.append(
            C.Condition(C.CLUSTER_READY, "True" if cluster.ready else "False", cluster.reason, cluster.message)
        )

    # --- job
    job_status = job.get("status")
    sub = job.get("submissionId")
    if sub and job_status not in (None,):
        conds.append(
            C.Condition(
                C.JOB_SUBMITTED,
                "True",
                "Submitted",
                f"{sub} (attempt {job.get('attempts', 1)}): {job_status}",
            )
        )
    elif obs.blocked is not None:
        conds.append(C.Condition(C.JOB_SUBMITTED, "False", obs.blocked.reason, obs.blocked.message))
    else:
        conds.append(
            C.Condition(
                C.JOB_SUBMITTED,
                "False",
                "WaitingForCluster",
                "the job is submitted once the cluster is ready",
            )
        )

    # --- outcome
    # Ray's word is final (the driver exited 0); the engine's "done" report alone is not: the job may
    # still fail on its way out.
    succeeded = job_status == "SUCCEEDED"
    failed = plan is not None and plan.terminal_failure
    if succeeded:
        phase = "Succeeded"
        acc = _metrics(report).get("accuracy")
        msg = f"finished {status.get('round', rounds)}/{rounds} rounds" + (
            f", accuracy {acc:.3f}" if acc is not None else ""
        )
        conds.append(C.Condition(C.SUCCEEDED, "True", "Completed", msg))
        conds.append(C.Condition(C.FAILED, "False", "Completed", msg))
    elif failed:
        phase = "Failed"
        reason, message = _failure(report, ray, job)
        conds.append(C.Condition(C.SUCCEEDED, "False", reason, message))
        conds.append(
            C.Condition(
                C.FAILED,
                "True",
                reason,
                f"{message} (after {job.get('attempts', 1)} attempt(s); backoffLimit {spec.backoff_limit})",
            )
        )
        status["reason"], status["message"] = reason, message
    else:
        phase = "Suspended" if spec.suspend else "Pending"
        if not spec.suspend and cluster is not None and cluster.exists:
            phase = "Running" if job_status == "RUNNING" else "Starting"
        conds.append(C.Condition(C.SUCCEEDED, "False", "NotFinished", f"round {status.get('round', 0)}/{rounds}"))
        retry = job.get("failures", 0)
        conds.append(
            C.Condition(
                C.FAILED,
                "False",
                "Retrying" if retry else "NoFailure",
                f"{retry} failed attempt(s), backoffLimit {spec.backoff_limit}",
            )
        )

    # --- nodes
    dead = [n for n in nodes if n.get("health") not in HEALTHY]
    if not nodes:
        conds.append(C.Condition(C.NODES_HEALTHY, "Unknown", "NoReport", "no report from the engine yet"))
        conds.append(C.Condition(C.DEGRADED, "False", "NoReport", "no report from the engine yet"))
    elif dead:
        ids = ", ".join(f"{n.get('id')} ({n.get('health')})" for n in dead[:10])
        conds.append(
            C.Condition(C.NODES_HEALTHY, "False", "NodesUnhealthy", f"{len(dead)}/{len(nodes)} unhealthy: {ids}")
        )
        gone = [n for n in dead if n.get("health") == "Dead"]
        if gone and phase in ("Running", "Starting"):
            conds.append(
                C.Condition(
                    C.DEGRADED,
                    "True",
                    "NodesDead",
                    f"{len(gone)} node(s) dead; {len(healthy)} alive (minClients {spec.effective_min_clients})",
                )
            )
        else:
            conds.append(C.Condition(C.DEGRADED, "False", "NoDeadNodes", "no node is dead"))
    else:
        conds.append(C.Condition(C.NODES_HEALTHY, "True", "AllAlive", f"{len(nodes)}/{len(nodes)} nodes healthy"))
        conds.append(C.Condition(C.DEGRADED, "False", "AllAlive", "every node is alive"))

    conds.append(
        C.Condition(C.SUSPENDED, "True", "Suspended", "spec.suspend is true: job stopped, cluster removed")
        if spec.suspend
        else C.Condition(C.SUSPENDED, "False", "NotSuspended", "spec.suspend is false")
    )

    # --- stalled (kstatus: needs intervention)
    stalled = _stalled(spec, status, obs, phase, prev_conds)
    conds.append(stalled)

    # --- ready / reconciling
    ready_now = phase == "Succeeded" or (
        phase == "Running" and cluster is not None and cluster.ready and (not nodes or not dead)
    )
    ready_reason = {"Succeeded": "Completed", "Running": "Running"}.get(phase, phase)
    conds.append(
        C.Condition(
            C.READY,
            "True" if ready_now else "False",
            ready_reason if ready_now else (ready_reason if phase != "Running" else "NotReady"),
            f"phase {phase}",
        )
    )
    reconciling = phase in ("Pending", "Starting") and stalled.status != "True"
    conds.append(C.Condition(C.RECONCILING, "True" if reconciling else "False", phase, f"phase {phase}"))

    if phase in ("Succeeded", "Failed"):
        status.setdefault("completionTime", now)
    if phase in ("Running", "Starting") and job.get("submissionId"):
        status.setdefault("startTime", now)
    if phase != "Failed":
        status.pop("reason", None)
        status.pop("message", None)
    if obs.dashboard_error and phase not in ("Succeeded", "Failed"):
        status["message"] = obs.dashboard_error
    if obs.blocked is not None and phase not in ("Succeeded", "Failed"):
        status["message"] = obs.blocked.message
    status["phase"] = phase
    status["conditions"] = C.merge(prev_conds, conds, generation=obs.generation, now=now)
    return status


def _keep(prev: list[dict[str, Any]], exclude: str) -> list[C.Condition]:
    return [
        C.Condition(c["type"], c["status"], c.get("reason", ""), c.get("message", ""))
        for c in prev
        if c.get("type") != exclude
    ]


def _cluster_status(obs: Observed) -> dict[str, Any]:
    out: dict[str, Any] = {"name": obs.cluster_name or "", "existing": obs.cluster_existing}
    c = obs.cluster
    out["ready"] = bool(c and c.ready)
    if c is not None and c.exists:
        out["desiredWorkers"] = c.desired_workers
        out["readyWorkers"] = c.ready_workers
    if obs.dashboard_url:
        out["dashboardURL"] = obs.dashboard_url
    return out


def _failure(report: dict[str, Any] | None, ray: RayJob | None, job: dict[str, Any]) -> tuple[str, str]:
    """Prefer the engine's own reason (it knows *why*), then Ray's."""
    if report and report.get("event") == "failed":
        return str(report.get("reason") or "EngineFailed"), str(report.get("message") or "the engine failed")
    if ray is not None and ray.error_type:
        return _camel(ray.error_type), ray.message or job.get("message", "")
    status = job.get("status") or "LOST"
    if status == "LOST":
        return "JobLost", "Ray no longer knows the submission (the head restarted?)"
    return f"Job{status.capitalize()}", ray.message if ray and ray.message else job.get(
        "message", f"the Ray job ended {status}"
    )


def _stalled(
    spec: FederationSpec, status: dict[str, Any], obs: Observed, phase: str, prev: list[dict[str, Any]]
) -> C.Condition:
    if obs.sizing is not None and not obs.sizing.fits:
        return C.Condition(C.STALLED, "True", "InsufficientResources", obs.sizing.shortfall or "")
    if obs.blocked is not None and phase not in ("Succeeded", "Failed"):
        return C.Condition(C.STALLED, "True", obs.blocked.reason, obs.blocked.message)
    if phase == "Failed":
        # kstatus (Flux, kubectl wait) reads a terminal failure from Stalled=True; without it a Failed
        # Federation would count as Current.
        return C.Condition(
            C.STALLED,
            "True",
            str(status.get("reason") or "Failed"),
            str(status.get("message") or "the federation failed; see status.reason"),
        )
    if phase == "Running" or (phase == "Starting" and (status.get("job") or {}).get("status") == "PENDING"):
        submitted = C.get(prev, C.JOB_SUBMITTED)
        since = parse_time(status.get("lastReportTime")) or parse_time(
            (submitted or {}).get("lastTransitionTime") if submitted and submitted.get("status") == "True" else None
        )
        if since is not None and obs.now - since > timedelta(seconds=spec.stall_timeout_seconds):
            silent = int((obs.now - since).total_seconds())
            return C.Condition(
                C.STALLED,
                "True",
                "NoProgress",
                f"no report from the engine for {silent} s (stallTimeoutSeconds {spec.stall_timeout_seconds})",
            )
    return C.Condition(C.STALLED, "False", "Progressing", f"phase {phase}")
