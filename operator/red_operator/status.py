"""Fold observations into `Federation.status`. Pure: the reconciler gathers, this decides what is true.

Inputs are the previous status, the plan the reconciler just carried out, the RayCluster observation, the
Ray job and the engine's latest report (from its ConfigMap). The output is the whole new status; the
reconciler writes it only when it differs.

The report is untrusted input (user code can write it): it is read through `red.spec.status.parse_report`
(the engine's typed contract). A report that does not parse is ignored and named by `ReportValid=False`;
one from another attempt (a retry's predecessor) is ignored, so a new attempt never inherits dead nodes.

`fold()` is a short composition of pure parts, each with its own table in tests/operator/test_status_parts.py:

* sections: `cluster_section` (rayCluster), `job_section` (job), `report_section` (lastReportTime,
  reportTime, round, nodes, metrics, versions, checkpoint), `progress_section` (progress, healthyNodes),
  `headline` (phase, reason, message, startTime, completionTime);
* conditions: `cluster_ready`, `job_submitted`, `run_outcome` (Succeeded, Failed and the phase, with
  `failure_of` for the reason), `nodes_health` (NodesHealthy, Degraded), `report_valid`, `suspended`,
  `stalled`, `ready_and_reconciling`; `invalid_spec_conditions` and `finished_conditions` for the two
  short paths (no valid spec; a run that already ended).
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


# ================================================================ the composition
def fold(previous: dict[str, Any], obs: Observed) -> dict[str, Any]:
    """The new status. Terminal phases (Succeeded, Failed) stick: later observations only update the
    cluster fields (e.g. after the TTL removed the cluster).

    Each section and each condition is one pure function below; this only puts them together, in the
    order they are written (the key order of the stored status follows it)."""
    prev = dict(previous or {})
    now = iso(obs.now)
    status: dict[str, Any] = {k: v for k, v in prev.items() if k != "conditions"}
    status["observedGeneration"] = obs.generation
    if obs.spec is None:
        return _fold_invalid_spec(status, prev, obs, now)
    status["rayCluster"] = cluster_section(obs)
    if prev.get("phase") in TERMINAL_PHASES:
        status["conditions"] = finished_conditions(prev_conditions(prev), obs.cluster, obs.generation, now)
        return status
    return _fold_active(status, prev, obs.spec, obs, now)


def _fold_invalid_spec(status: dict[str, Any], prev: dict[str, Any], obs: Observed, now: str) -> dict[str, Any]:
    status.update(phase=Phase.FAILED.value, reason=INVALID_SPEC, message=obs.spec_error or "")
    # Every Failed has a completionTime: `kubectl wait --for=jsonpath='{.status.completionTime}'` ends.
    status.setdefault("completionTime", now)
    status["conditions"] = C.merge(
        prev_conditions(prev), invalid_spec_conditions(obs.spec_error), generation=obs.generation, now=now
    )
    return status


def _fold_active(
    status: dict[str, Any], prev: dict[str, Any], spec: FederationSpec, obs: Observed, now: str
) -> dict[str, Any]:
    reading = read(obs)
    report = reading.report if reading is not None else None
    job = job_section(prev.get("job"), obs, spec, now)
    if starts_attempt(obs.plan):
        # A new attempt starts from nothing: the last one's nodes and report times are not its news.
        for key in ATTEMPT_FIELDS:
            status.pop(key, None)
    if job.get("submissionId"):
        status["job"] = job
    reported = report_section(prev, report, now)
    status.update(reported)
    nodes: list[dict[str, Any]] = reported.get("nodes", [])
    status.update(progress_section(status.get("round", 0), nodes, spec))

    view = JobView.of(job)
    outcome = run_outcome(spec, obs, view, report, status.get("round"))
    stalled_now = stalled(
        spec,
        obs,
        outcome.phase,
        outcome.failure,
        JobView.of(status.get("job")),
        status.get("lastReportTime"),
        prev_conditions(prev),
    )
    conds = [
        cluster_ready(spec, obs),
        job_submitted(view, obs.blocked),
        outcome.succeeded,
        outcome.failed,
        *nodes_health(nodes, outcome.phase, spec.effective_min_clients),
        report_valid(reading),
        SYNCED_OK,
        suspended(spec),
        stalled_now,
        *ready_and_reconciling(outcome.phase, obs.cluster, nodes, stalled_now),
    ]
    status = headline(status, outcome, view, obs, now)
    status["conditions"] = C.merge(prev_conditions(prev), conds, generation=obs.generation, now=now)
    return status


# ================================================================ sections
def prev_conditions(prev: dict[str, Any]) -> list[dict[str, Any]]:
    return list(prev.get("conditions") or [])


def cluster_section(obs: Observed) -> dict[str, Any]:
    """`status.rayCluster`: which cluster, whether it is ready, its workers and dashboard."""
    out: dict[str, Any] = {"name": obs.cluster_name or "", "existing": obs.cluster_existing}
    c = obs.cluster
    out["ready"] = bool(c and c.ready)
    if c is not None and c.exists:
        out["desiredWorkers"] = c.desired_workers
        out["readyWorkers"] = c.ready_workers
    if obs.dashboard_url:
        out["dashboardURL"] = obs.dashboard_url
    return out


# Cleared when a new attempt is submitted (the checkpoint stays: the next attempt resumes from it).
ATTEMPT_FIELDS = ("nodes", "metrics", "lastReportTime", "reportTime")


def starts_attempt(plan: Plan | None) -> bool:
    return plan is not None and plan.job == "submit"


def job_section(prev_job: dict[str, Any] | None, obs: Observed, spec: FederationSpec, now: str) -> dict[str, Any]:
    """`status.job`: the submission, its attempt and failure counts, and Ray's word on it. Stored only
    once it has a submissionId. The previous entry's keys keep their order (and any extra key stays)."""
    before = prev_job or {}
    job = dict(before)
    plan, ray = obs.plan, obs.ray_job
    if obs.submission_id:
        job["submissionId"] = obs.submission_id
    if plan is not None:
        job["attempts"] = plan.attempt
        job["failures"] = plan.failures
        if plan.failures > int(before.get("failures") or 0):
            job["countedFailure"] = before.get("submissionId")
            if ray is None:
                # Counted with no Ray to ask: the cluster (and the job with it) is gone. Recorded, so
                # the next pass that sees it gone does not count it again.
                job["status"] = "LOST"
    if ray is not None and ray.reachable:
        job["status"] = ray.status or "LOST"
        if ray.message:
            job["message"] = summarize(ray.message, C.MAX_MESSAGE)
    if starts_attempt(plan):
        job["status"] = "PENDING"
        job["submitTime"] = now
        job.pop("message", None)
    if (plan is not None and plan.job == "stop") or (spec.suspend and job.get("submissionId")):
        job["status"] = SUSPENDED
    return job


@dataclass(frozen=True)
class JobView:
    """`status.job` as the conditions read it (absent keys are None; attempts and failures have the
    defaults the messages show)."""

    submission_id: str | None = None
    status: str | None = None
    attempts: int = 1
    failures: int = 0
    message: str | None = None
    submit_time: str | None = None

    @classmethod
    def of(cls, job: dict[str, Any] | None) -> JobView:
        job = job or {}
        return cls(
            submission_id=job.get("submissionId"),
            status=job.get("status"),
            attempts=job.get("attempts", 1),
            failures=job.get("failures", 0),
            message=job.get("message"),
            submit_time=job.get("submitTime"),
        )


def report_section(prev: dict[str, Any], report: EngineReport | None, now: str) -> dict[str, Any]:
    """What the engine's report adds: report times, round, nodes, metrics, versions, checkpoint. No
    report: nothing (the last good word stays)."""
    if report is None:
        return {}
    out: dict[str, Any] = {}
    if report.time != prev.get("reportTime") or "lastReportTime" not in prev:
        out["lastReportTime"] = now
        if report.time:
            out["reportTime"] = report.time
    out["round"] = report.round
    out["nodes"] = [n.status_entry() for n in report.nodes]
    out["metrics"] = dict(report.metrics)
    if report.software:
        # Unknown ones (cuda without a GPU) are left out: status is written as a merge patch, where
        # null deletes.
        out["versions"] = {k: v for k, v in report.software.items() if v is not None}
    if report.checkpoint is not None:  # kept across attempts: it is where the next one resumes from
        out["checkpoint"] = report.checkpoint.status_entry()
    return out


def progress_section(round_: int, nodes: list[dict[str, Any]], spec: FederationSpec) -> dict[str, Any]:
    """The two display columns: `progress` (round/rounds) and `healthyNodes` (healthy/total)."""
    healthy = [n for n in nodes if n.get("health") in HEALTHY]
    return {"progress": f"{round_}/{spec.rounds}", "healthyNodes": f"{len(healthy)}/{len(nodes) or spec.clients}"}


def headline(status: dict[str, Any], outcome: RunOutcome, job: JobView, obs: Observed, now: str) -> dict[str, Any]:
    """The top-level fields that follow the phase: reason and message, completion and start times,
    the phase itself. Returns a new status."""
    out = dict(status)
    phase = outcome.phase
    if outcome.failure is not None:
        out["reason"], out["message"] = outcome.failure.reason, outcome.failure.message
    if phase in TERMINAL_PHASES:
        out.setdefault("completionTime", now)
    if phase in (Phase.RUNNING, Phase.STARTING) and job.submission_id:
        out.setdefault("startTime", now)
    if phase != Phase.FAILED:
        out.pop("reason", None)
        out.pop("message", None)
    if obs.dashboard_error and phase not in TERMINAL_PHASES:
        out["message"] = obs.dashboard_error
    if obs.blocked is not None and phase not in TERMINAL_PHASES:
        out["message"] = obs.blocked.message
    out["phase"] = phase.value
    return out


# ================================================================ conditions
SYNCED_OK = C.Condition(C.SYNCED, "True", "Synced", "the last pass reached every API it called")


def invalid_spec_conditions(error: str | None) -> list[C.Condition]:
    return [
        C.Condition(C.FAILED, "True", INVALID_SPEC, error or "invalid spec"),
        C.Condition(C.READY, "False", INVALID_SPEC, error or "invalid spec"),
        C.Condition(C.STALLED, "True", INVALID_SPEC, "fix the spec"),
        C.Condition(C.RECONCILING, "False", INVALID_SPEC, "fix the spec"),
    ]


def finished_conditions(
    prev: list[dict[str, Any]], cluster: ClusterObservation | None, generation: int, now: str
) -> list[dict[str, Any]]:
    """A finished Federation's conditions stay as they were, except a stale API error (this pass got
    here, so the API answers again) and ClusterReady once the TTL removed the cluster."""
    kept = [c for c in prev if c.get("type") != C.SYNCED or c.get("status") == "True"]
    if cluster is None or cluster.exists:
        return kept
    deleted = C.Condition(
        C.CLUSTER_READY, "False", "Deleted", "the RayCluster was removed after the run (ttlSecondsAfterFinished)"
    )
    return C.merge(kept, [*_keep(kept, exclude=C.CLUSTER_READY), deleted], generation=generation, now=now)


def _keep(prev: list[dict[str, Any]], exclude: str) -> list[C.Condition]:
    return [
        C.Condition(c["type"], c["status"], c.get("reason", ""), c.get("message", ""))
        for c in prev
        if c.get("type") != exclude
    ]


def cluster_ready(spec: FederationSpec, obs: Observed) -> C.Condition:
    cluster = obs.cluster
    if obs.sizing is not None and not obs.sizing.fits:
        return C.Condition(C.CLUSTER_READY, "False", "InsufficientResources", obs.sizing.shortfall or "")
    if spec.suspend:
        return C.Condition(C.CLUSTER_READY, "False", "Suspended", "the cluster is removed while suspended")
    if obs.blocked is not None and (cluster is None or not cluster.exists):
        return C.Condition(C.CLUSTER_READY, "False", obs.blocked.reason, obs.blocked.message)
    if cluster is None or not cluster.exists:
        return C.Condition(C.CLUSTER_READY, "False", "Creating", "creating the RayCluster")
    return C.Condition(C.CLUSTER_READY, "True" if cluster.ready else "False", cluster.reason, cluster.message)


def job_submitted(job: JobView, blocked: Blocked | None) -> C.Condition:
    if job.submission_id and job.status is not None:
        return C.Condition(
            C.JOB_SUBMITTED, "True", "Submitted", f"{job.submission_id} (attempt {job.attempts}): {job.status}"
        )
    if blocked is not None:
        return C.Condition(C.JOB_SUBMITTED, "False", blocked.reason, blocked.message)
    return C.Condition(C.JOB_SUBMITTED, "False", "WaitingForCluster", "the job is submitted once the cluster is ready")


@dataclass(frozen=True)
class Failure:
    """Why a run failed for good: status.reason and status.message."""

    reason: str
    message: str


@dataclass(frozen=True)
class RunOutcome:
    """The phase and the two outcome conditions (Succeeded, Failed) that go with it."""

    phase: Phase
    succeeded: C.Condition
    failed: C.Condition
    failure: Failure | None = None
    """Set when the phase is Failed."""


def run_outcome(
    spec: FederationSpec, obs: Observed, job: JobView, report: EngineReport | None, round_: int | None
) -> RunOutcome:
    """Succeeded, Failed or still going (and then which phase). `round_` is the last reported round."""
    rounds = spec.rounds
    # Ray's word is final (the driver exited 0); the engine's "done" report alone is not: the job may
    # still fail on its way out.
    if job.status == "SUCCEEDED":
        acc = report.metrics.get("accuracy") if report is not None else None
        msg = f"finished {rounds if round_ is None else round_}/{rounds} rounds" + (
            f", accuracy {acc:.3f}" if acc is not None else ""
        )
        return RunOutcome(
            Phase.SUCCEEDED,
            C.Condition(C.SUCCEEDED, "True", "Completed", msg),
            C.Condition(C.FAILED, "False", "Completed", msg),
        )
    if obs.plan is not None and obs.plan.terminal_failure:
        failure = failure_of(report, obs.ray_job, job)
        return RunOutcome(
            Phase.FAILED,
            C.Condition(C.SUCCEEDED, "False", failure.reason, failure.message),
            C.Condition(
                C.FAILED,
                "True",
                failure.reason,
                f"{failure.message} (after {job.attempts} attempt(s); backoffLimit {spec.backoff_limit})",
            ),
            failure,
        )
    phase = Phase.SUSPENDED if spec.suspend else Phase.PENDING
    if not spec.suspend and obs.cluster is not None and obs.cluster.exists:
        phase = Phase.RUNNING if job.status == "RUNNING" else Phase.STARTING
    retry = job.failures
    return RunOutcome(
        phase,
        C.Condition(C.SUCCEEDED, "False", "NotFinished", f"round {0 if round_ is None else round_}/{rounds}"),
        C.Condition(
            C.FAILED,
            "False",
            "Retrying" if retry else "NoFailure",
            f"{retry} failed attempt(s), backoffLimit {spec.backoff_limit}",
        ),
    )


def failure_of(report: EngineReport | None, ray: RayJob | None, job: JobView) -> Failure:
    """Prefer the engine's own reason (it knows *why*), then Ray's."""
    if report is not None and report.event == Event.FAILED:
        return Failure((report.reason or "EngineFailed")[:128], report.message or "the engine failed")
    # Ray's message ends with the job's last log lines: keep its first line and the end, where the error is.
    if ray is not None and ray.error_type:
        return Failure(
            _camel(ray.error_type),
            summarize(ray.message, FAILURE_MESSAGE) or (job.message if job.message is not None else ""),
        )
    status = job.status or "LOST"
    if status == "LOST":
        return Failure("JobLost", "Ray no longer knows the submission (the head restarted?)")
    if ray and ray.message:
        return Failure(f"Job{status.capitalize()}", summarize(ray.message, FAILURE_MESSAGE))
    return Failure(
        f"Job{status.capitalize()}", job.message if job.message is not None else f"the Ray job ended {status}"
    )


def nodes_health(nodes: list[dict[str, Any]], phase: Phase, min_clients: int) -> tuple[C.Condition, C.Condition]:
    """NodesHealthy and Degraded, from the report's nodes. Degraded only while running: a dead node
    in a finished or waiting run changes nothing."""
    if not nodes:
        return (
            C.Condition(C.NODES_HEALTHY, "Unknown", "NoReport", "no report from the engine yet"),
            C.Condition(C.DEGRADED, "False", "NoReport", "no report from the engine yet"),
        )
    dead = [n for n in nodes if n.get("health") not in HEALTHY]
    if not dead:
        return (
            C.Condition(C.NODES_HEALTHY, "True", "AllAlive", f"{len(nodes)}/{len(nodes)} nodes healthy"),
            C.Condition(C.DEGRADED, "False", "AllAlive", "every node is alive"),
        )
    ids = ", ".join(f"{n.get('id')} ({n.get('health')})" for n in dead[:10])
    unhealthy = C.Condition(C.NODES_HEALTHY, "False", "NodesUnhealthy", f"{len(dead)}/{len(nodes)} unhealthy: {ids}")
    gone = [n for n in dead if n.get("health") == "Dead"]
    if gone and phase in (Phase.RUNNING, Phase.STARTING):
        alive = len(nodes) - len(dead)
        return unhealthy, C.Condition(
            C.DEGRADED, "True", "NodesDead", f"{len(gone)} node(s) dead; {alive} alive (minClients {min_clients})"
        )
    return unhealthy, C.Condition(C.DEGRADED, "False", "NoDeadNodes", "no node is dead")


def report_valid(reading: ReportReading | None) -> C.Condition:
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


def suspended(spec: FederationSpec) -> C.Condition:
    if spec.suspend:
        return C.Condition(C.SUSPENDED, "True", "Suspended", "spec.suspend is true: job stopped, cluster removed")
    return C.Condition(C.SUSPENDED, "False", "NotSuspended", "spec.suspend is false")


def stalled(
    spec: FederationSpec,
    obs: Observed,
    phase: Phase,
    failure: Failure | None,
    job: JobView,
    last_report_time: str | None,
    prev: list[dict[str, Any]],
) -> C.Condition:
    """kstatus's Stalled: no progress without intervention. `job` is the job as stored this pass."""
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
            (failure.reason if failure else "") or "Failed",
            (failure.message if failure else "") or "the federation failed; see status.reason",
        )
    if phase == Phase.RUNNING or (phase == Phase.STARTING and job.status == "PENDING"):
        # Silence counts from this attempt's last report, else from its submission.
        submitted = C.get(prev, C.JOB_SUBMITTED)
        since = (
            parse_time(last_report_time)
            or parse_time(job.submit_time)
            or parse_time(
                (submitted or {}).get("lastTransitionTime") if submitted and submitted.get("status") == "True" else None
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


def ready_and_reconciling(
    phase: Phase, cluster: ClusterObservation | None, nodes: list[dict[str, Any]], stalled_now: C.Condition
) -> tuple[C.Condition, C.Condition]:
    """kstatus's Ready (running on a ready cluster with every node alive, or finished) and Reconciling
    (still working towards the spec, and not stalled)."""
    all_alive = all(n.get("health") in HEALTHY for n in nodes)
    ready_now = phase == Phase.SUCCEEDED or (
        phase == Phase.RUNNING and cluster is not None and cluster.ready and all_alive
    )
    reason = {Phase.SUCCEEDED: "Completed", Phase.RUNNING: "Running"}.get(phase, phase.value)
    ready = C.Condition(
        C.READY,
        "True" if ready_now else "False",
        reason if ready_now or phase != Phase.RUNNING else "NotReady",
        f"phase {phase.value}",
    )
    reconciling = phase in (Phase.PENDING, Phase.STARTING) and stalled_now.status != "True"
    return ready, C.Condition(C.RECONCILING, "True" if reconciling else "False", phase.value, f"phase {phase.value}")
