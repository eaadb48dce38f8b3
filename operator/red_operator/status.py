"""Fold observations into `Federation.status`. Pure: the reconciler gathers, this decides what is true.

Inputs are the previous status, the plan the reconciler just carried out, the RayCluster observation, the
Ray job and the engine's latest report (from its ConfigMap). The output is the whole new status; the
reconciler writes it only when it differs.

The report is untrusted input (user code can write it): it is read through `red.spec.status.parse_report`
(the engine's typed contract). A report that does not parse is ignored and named by `ReportValid=False`;
one from another attempt (a retry's predecessor) is ignored, so a new attempt never inherits dead nodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from red.spec.model import FederationSpec
from red.spec.status import HEALTHY, TERMINAL_PHASES, EngineReport, Event, Phase, ReportReading, parse_report
from red_operator import conditions as C
from red_operator.decide import SUSPENDED, Plan, RayJob, parse_time
from red_operator.logtail import summarize
from red_operator.readiness import ClusterObservation
from red_operator.sizing import Sizing

INVALID_SPEC = "InvalidSpec"
# The Failed condition adds "(after N attempt(s); backoffLimit B)": leave it room within C.MAX_MESSAGE.
FAILURE_MESSAGE = C.MAX_MESSAGE - 64


def recover(prev: dict[str, Any]) -> dict[str, Any]:
    """The status to continue from once a spec parses: a Federation that failed only because its spec
    was invalid starts afresh when the spec is fixed (every other failure is final)."""
    if prev.get("phase") != Phase.FAILED or prev.get("reason") != INVALID_SPEC:
        return prev
    return {k: v for k, v in prev.items() if k not in ("phase", "reason", "message", "completionTime")}


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
    report: ReportReading | str | dict[str, Any] | None = None
    """The engine's report: already read (ReportReading), or raw (ConfigMap text or a decoded dict)."""
    dashboard_url: str | None = None
    dashboard_error: str | None = None
    blocked: Blocked | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _camel(text: str) -> str:
    parts = [p for p in text.replace("-", "_").lower().split("_") if p]
    return "".join(p.capitalize() for p in parts) or "Failed"


def read(obs: Observed) -> ReportReading | None:
    """The observation's report, parsed against the current submission (None: no report at all)."""
    if obs.report is None or isinstance(obs.report, ReportReading):
        return obs.report
    return parse_report(obs.report, submission_id=obs.submission_id)


def _report_condition(reading: ReportReading | None) -> C.Condition:
    if reading is None:
        return C.Condition(C.REPORT_VALID, "Unknown", "NoReport", "no report from the engine yet")
    if reading.other_attempt is not None:
        return C.Condition(
            C.REPORT_VALID,
            "Unknown",
            "OtherAttempt",
            f"the report is from submission {reading.other_attempt}; waiting for this attempt's first report",
        )
    if reading.problem is not None:
        return C.Condition(C.REPORT_VALID, "False", "ReportInvalid", f"report ignored: {reading.problem}")
    if reading.notes:
        return C.Condition(C.REPORT_VALID, "True", "Sanitized", "; ".join(reading.notes))
    return C.Condition(C.REPORT_VALID, "True", "Valid", "the engine's report matches its schema")


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
            C.Condition(C.FAILED, "True", INVALID_SPEC, obs.spec_error or "invalid spec"),
            C.Condition(C.READY, "False", INVALID_SPEC, obs.spec_error or "invalid spec"),
            C.Condition(C.STALLED, "True", INVALID_SPEC, "fix the spec"),
            C.Condition(C.RECONCILING, "False", INVALID_SPEC, "fix the spec"),
        ]
        status.update(phase=Phase.FAILED.value, reason=INVALID_SPEC, message=obs.spec_error or "")
        # Every Failed has a completionTime: `kubectl wait --for=jsonpath='{.status.completionTime}'` ends.
        status.setdefault("completionTime", now)
        status["conditions"] = C.merge(prev_conds, invalid, generation=obs.generation, now=now)
        return status

    spec = obs.spec
    status["rayCluster"] = _cluster_status(obs)
    if prev.get("phase") in TERMINAL_PHASES:
        # A finished Federation's conditions stay as they were, except a stale API error: this pass
        # got here, so the API answers again.
        prev_conds = [c for c in prev_conds if c.get("type") != C.SYNCED or c.get("status") == "True"]
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
    reading = read(obs)
    report: EngineReport | None = reading.report if reading is not None else None
    job = dict(prev.get("job") or {})
    if obs.submission_id:
        job["submissionId"] = obs.submission_id
    ray = obs.ray_job
    if plan is not None:
        job["attempts"] = plan.attempt
        job["failures"] = plan.failures
        if plan.failures > int((prev.get("job") or {}).get("failures") or 0):
            job["countedFailure"] = (prev.get("job") or {}).get("submissionId")
            if ray is None:
                # Counted with no Ray to ask: the cluster (and the job with it) is gone. Recorded, so
                # the next pass that sees it gone does not count it again.
                job["status"] = "LOST"
    if ray is not None and ray.reachable:
        job["status"] = ray.status or "LOST"
        if ray.message:
            job["message"] = summarize(ray.message, C.MAX_MESSAGE)
    if plan is not None and plan.job == "submit":
        job["status"] = "PENDING"
        job["submitTime"] = now
        job.pop("message", None)
        # A new attempt starts from nothing: the last one's nodes and report times are not its news.
        for key in ("nodes", "metrics", "lastReportTime", "reportTime"):
            status.pop(key, None)
    if (plan is not None and plan.job == "stop") or (spec.suspend and job.get("submissionId")):
        job["status"] = SUSPENDED
    if job.get("submissionId"):
        status["job"] = job

    nodes = [n.status_entry() for n in report.nodes] if report is not None else []
    if report is not None:
        if report.time != prev.get("reportTime") or "lastReportTime" not in prev:
            status["lastReportTime"] = now
            if report.time:
                status["reportTime"] = report.time
        status["round"] = report.round
        status["nodes"] = nodes
        status["metrics"] = dict(report.metrics)
        if report.software:
            # Unknown ones (cuda without a GPU) are left out: status is written as a merge patch, where
            # null deletes.
            status["versions"] = {k: v for k, v in report.software.items() if v is not None}
        if report.checkpoint is not None:  # kept across attempts: it is where the next one resumes from
            status["checkpoint"] = report.checkpoint.status_entry()
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
        phase = Phase.SUCCEEDED
        acc = report.metrics.get("accuracy") if report is not None else None
        msg = f"finished {status.get('round', rounds)}/{rounds} rounds" + (
            f", accuracy {acc:.3f}" if acc is not None else ""
        )
        conds.append(C.Condition(C.SUCCEEDED, "True", "Completed", msg))
        conds.append(C.Condition(C.FAILED, "False", "Completed", msg))
    elif failed:
        phase = Phase.FAILED
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
        phase = Phase.SUSPENDED if spec.suspend else Phase.PENDING
        if not spec.suspend and cluster is not None and cluster.exists:
            phase = Phase.RUNNING if job_status == "RUNNING" else Phase.STARTING
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
        if gone and phase in (Phase.RUNNING, Phase.STARTING):
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
    conds.append(_report_condition(reading))
    conds.append(C.Condition(C.SYNCED, "True", "Synced", "the last pass reached every API it called"))

    conds.append(
        C.Condition(C.SUSPENDED, "True", "Suspended", "spec.suspend is true: job stopped, cluster removed")
        if spec.suspend
        else C.Condition(C.SUSPENDED, "False", "NotSuspended", "spec.suspend is false")
    )

    # --- stalled (kstatus: needs intervention)
    stalled = _stalled(spec, status, obs, phase, prev_conds)
    conds.append(stalled)

    # --- ready / reconciling
    ready_now = phase == Phase.SUCCEEDED or (
        phase == Phase.RUNNING and cluster is not None and cluster.ready and (not nodes or not dead)
    )
    ready_reason = {Phase.SUCCEEDED: "Completed", Phase.RUNNING: "Running"}.get(phase, phase.value)
    conds.append(
        C.Condition(
            C.READY,
            "True" if ready_now else "False",
            ready_reason if ready_now else (ready_reason if phase != Phase.RUNNING else "NotReady"),
            f"phase {phase.value}",
        )
    )
    reconciling = phase in (Phase.PENDING, Phase.STARTING) and stalled.status != "True"
    conds.append(
        C.Condition(C.RECONCILING, "True" if reconciling else "False", phase.value, f"phase {phase.value}")
    )

    if phase in TERMINAL_PHASES:
        status.setdefault("completionTime", now)
    if phase in (Phase.RUNNING, Phase.STARTING) and job.get("submissionId"):
        status.setdefault("startTime", now)
    if phase != Phase.FAILED:
        status.pop("reason", None)
        status.pop("message", None)
    if obs.dashboard_error and phase not in TERMINAL_PHASES:
        status["message"] = obs.dashboard_error
    if obs.blocked is not None and phase not in TERMINAL_PHASES:
        status["message"] = obs.blocked.message
    status["phase"] = phase.value
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


def _failure(report: EngineReport | None, ray: RayJob | None, job: dict[str, Any]) -> tuple[str, str]:
    """Prefer the engine's own reason (it knows *why*), then Ray's."""
    if report is not None and report.event == Event.FAILED:
        return (report.reason or "EngineFailed")[:128], report.message or "the engine failed"
    # Ray's message ends with the job's last log lines: keep its first line and the end, where the error is.
    if ray is not None and ray.error_type:
        return _camel(ray.error_type), summarize(ray.message, FAILURE_MESSAGE) or job.get("message", "")
    status = job.get("status") or "LOST"
    if status == "LOST":
        return "JobLost", "Ray no longer knows the submission (the head restarted?)"
    return f"Job{status.capitalize()}", summarize(ray.message, FAILURE_MESSAGE) if ray and ray.message else job.get(
        "message", f"the Ray job ended {status}"
    )


def _stalled(
    spec: FederationSpec, status: dict[str, Any], obs: Observed, phase: Phase, prev: list[dict[str, Any]]
) -> C.Condition:
    if obs.sizing is not None and not obs.sizing.fits:
        return C.Condition(C.STALLED, "True", "InsufficientResources", obs.sizing.shortfall or "")
    if obs.blocked is not None and phase not in TERMINAL_PHASES:
        return C.Condition(C.STALLED, "True", obs.blocked.reason, obs.blocked.message)
    if obs.cluster is not None and obs.cluster.refused and phase not in TERMINAL_PHASES:
        # Admission (or a quota) refuses the pods: waiting changes nothing; fix the spec or the namespace.
        return C.Condition(C.STALLED, "True", obs.cluster.reason, obs.cluster.message)
    if phase == Phase.FAILED:
        # kstatus (Flux, kubectl wait) reads a terminal failure from Stalled=True; without it a Failed
        # Federation would count as Current.
        return C.Condition(
            C.STALLED,
            "True",
            str(status.get("reason") or "Failed"),
            str(status.get("message") or "the federation failed; see status.reason"),
        )
    if phase == Phase.RUNNING or (phase == Phase.STARTING and (status.get("job") or {}).get("status") == "PENDING"):
        # Silence counts from this attempt's last report, else from its submission.
        submitted = C.get(prev, C.JOB_SUBMITTED)
        since = (
            parse_time(status.get("lastReportTime"))
            or parse_time((status.get("job") or {}).get("submitTime"))
            or parse_time(
                (submitted or {}).get("lastTransitionTime")
                if submitted and submitted.get("status") == "True"
                else None
            )
        )
        if since is not None and obs.now - since > timedelta(seconds=spec.stall_timeout_seconds):
            silent = int((obs.now - since).total_seconds())
            return C.Condition(
                C.STALLED,
                "True",
                "NoProgress",
                f"no report from the engine for {silent} s (stallTimeoutSeconds {spec.stall_timeout_seconds})",
            )
    return C.Condition(C.STALLED, "False", "Progressing", f"phase {phase.value}")
