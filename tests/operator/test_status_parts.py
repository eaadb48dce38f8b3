"""`fold()`'s parts, one table each: every status section and every condition is a pure function of a
few inputs. `test_status.py` checks the composition; these check each part on its own named cases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from red_operator import conditions as C
from red_operator import status as S
from red_operator.decide import Plan, RayJob
from red_operator.readiness import ClusterObservation
from red_operator.sizing import size_cluster

from red.spec.status import EngineReport, Phase, ReportReading, parse_report
from tests.operator.helpers import gpu_pool, spec

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
T = S.iso(NOW)
READY = ClusterObservation(True, True, "ClusterReady", "ok", 1, 1, "svc")
CREATING = ClusterObservation(True, False, "Creating", "waiting", 1, 0, "svc")
GONE = ClusterObservation(False)
REFUSED = ClusterObservation(True, False, "FailedCreateHeadPod", "forbidden by quota", 1, 0, "svc", refused=True)
BLOCKED = S.Blocked("NameConflict", "RayCluster ns/fl-ray is someone else's")
SPEC = spec(clients=2, rounds=5, stallTimeoutSeconds=60)
TOO_BIG = spec(clients=24, resources={"perNode": {"gpu": 1}}, cluster={"nodePools": [gpu_pool()]})
ALIVE = {"id": "client_0", "health": "Alive"}
DEAD = {"id": "client_1", "health": "Dead"}
PENDING = {"id": "client_1", "health": "Pending"}
FINISHED = {"id": "client_1", "health": "Finished"}


def obs(s: Any = SPEC, **kw: Any) -> S.Observed:
    base: dict[str, Any] = {"sizing": size_cluster(s), "cluster_name": "fl-ray", "cluster": READY}
    base.update(kw)
    return S.Observed(generation=3, now=NOW, spec=s, **base)


def engine_report(**kw: Any) -> EngineReport:
    raw = {"event": "round", "federation": "fl", "round": 3, "rounds": 5, "metrics": {"accuracy": 0.93}, **kw}
    reading = parse_report(raw)
    assert reading.report is not None, reading.problem
    return reading.report


def plan(job: str = "none", attempt: int = 1, failures: int = 0, terminal: bool = False) -> Plan:
    return Plan("ensure", job, attempt, False, failures, terminal)  # type: ignore[arg-type]


def triple(c: C.Condition) -> tuple[str, str, str]:
    return c.status, c.reason, c.message


# ================================================================ sections
@pytest.mark.parametrize(
    ("kw", "expect"),
    [
        pytest.param(
            {"cluster": None, "cluster_name": None},
            {"name": "", "existing": False, "ready": False},
            id="nothing-observed",
        ),
        pytest.param(
            {"cluster": GONE, "cluster_existing": True},
            {"name": "fl-ray", "existing": True, "ready": False},
            id="gone-no-worker-counts",
        ),
        pytest.param(
            {"cluster": CREATING},
            {"name": "fl-ray", "existing": False, "ready": False, "desiredWorkers": 1, "readyWorkers": 0},
            id="creating",
        ),
        pytest.param(
            {"dashboard_url": "http://fl-ray-head-svc:8265"},
            {
                "name": "fl-ray",
                "existing": False,
                "ready": True,
                "desiredWorkers": 1,
                "readyWorkers": 1,
                "dashboardURL": "http://fl-ray-head-svc:8265",
            },
            id="ready-with-dashboard",
        ),
    ],
)
def test_cluster_section(kw: dict[str, Any], expect: dict[str, Any]) -> None:
    assert S.cluster_section(obs(**kw)) == expect


@pytest.mark.parametrize(
    ("prev_job", "kw", "s", "expect"),
    [
        pytest.param(None, {}, SPEC, {}, id="nothing-yet"),
        pytest.param(
            None,
            {"plan": plan("submit"), "submission_id": "sub-1"},
            SPEC,
            {"submissionId": "sub-1", "attempts": 1, "failures": 0, "status": "PENDING", "submitTime": T},
            id="submitted-this-pass",
        ),
        pytest.param(
            {"submissionId": "sub-1", "attempts": 1, "failures": 0, "status": "PENDING"},
            {"plan": plan(), "ray_job": RayJob("RUNNING", "started")},
            SPEC,
            {"submissionId": "sub-1", "attempts": 1, "failures": 0, "status": "RUNNING", "message": "started"},
            id="ray-says-running",
        ),
        pytest.param(
            {"submissionId": "sub-1", "attempts": 1, "failures": 0, "status": "RUNNING"},
            {"plan": plan(), "ray_job": RayJob("SUCCEEDED", reachable=False)},
            SPEC,
            {"submissionId": "sub-1", "attempts": 1, "failures": 0, "status": "RUNNING"},
            id="unreachable-dashboard-keeps-status",
        ),
        pytest.param(
            {"submissionId": "sub-1", "attempts": 1, "failures": 0, "status": "RUNNING"},
            {"plan": plan(failures=1)},
            SPEC,
            {"submissionId": "sub-1", "attempts": 1, "failures": 1, "status": "LOST", "countedFailure": "sub-1"},
            id="failure-counted-without-ray-is-lost",
        ),
        pytest.param(
            {"submissionId": "sub-1", "attempts": 1, "failures": 0, "status": "RUNNING"},
            {"plan": plan(failures=1), "ray_job": RayJob(None)},
            SPEC,
            {"submissionId": "sub-1", "attempts": 1, "failures": 1, "status": "LOST", "countedFailure": "sub-1"},
            id="ray-forgot-the-job",
        ),
        pytest.param(
            {"submissionId": "sub-1", "attempts": 1, "failures": 1, "status": "FAILED", "message": "boom"},
            {"plan": plan("submit", attempt=2, failures=1), "submission_id": "sub-2"},
            SPEC,
            {"submissionId": "sub-2", "attempts": 2, "failures": 1, "status": "PENDING", "submitTime": T},
            id="retry-drops-the-old-message",
        ),
        pytest.param(
            {"submissionId": "sub-1", "attempts": 1, "failures": 0, "status": "RUNNING"},
            {"plan": plan("stop")},
            SPEC,
            {"submissionId": "sub-1", "attempts": 1, "failures": 0, "status": "SUSPENDED"},
            id="stopped",
        ),
        pytest.param(
            {"submissionId": "sub-1", "attempts": 1, "failures": 0, "status": "SUSPENDED"},
            {"plan": None},
            spec(clients=2, rounds=5, suspend=True),
            {"submissionId": "sub-1", "attempts": 1, "failures": 0, "status": "SUSPENDED"},
            id="suspended-stays-suspended",
        ),
    ],
)
def test_job_section(prev_job: dict[str, Any] | None, kw: dict[str, Any], s: Any, expect: dict[str, Any]) -> None:
    assert S.job_section(prev_job, obs(s, **kw), s, T) == expect


@pytest.mark.parametrize(
    ("prev", "report", "expect"),
    [
        pytest.param({"round": 2}, None, {}, id="no-report-changes-nothing"),
        pytest.param(
            {},
            engine_report(time="t1", nodes=[{"id": "client_0", "health": "Alive"}]),
            {
                "lastReportTime": T,
                "reportTime": "t1",
                "round": 3,
                "nodes": [
                    {
                        "id": "client_0",
                        "role": "",
                        "health": "Alive",
                        "version": 0,
                        "restarts": 0,
                        "lastHeartbeat": None,
                    }
                ],
                "metrics": {"accuracy": 0.93},
            },
            id="first-report",
        ),
        pytest.param(
            {"reportTime": "t1", "lastReportTime": "earlier"},
            engine_report(time="t1"),
            {"round": 3, "nodes": [], "metrics": {"accuracy": 0.93}},
            id="same-report-time-keeps-last-report-time",
        ),
        pytest.param(
            {},
            engine_report(software={"red": "0.1.0", "cuda": None}),
            {"lastReportTime": T, "round": 3, "nodes": [], "metrics": {"accuracy": 0.93}, "versions": {"red": "0.1.0"}},
            id="unknown-versions-left-out",
        ),
        pytest.param(
            {},
            engine_report(checkpoint={"round": 2, "path": "/ckpt/r2", "time": "t0"}),
            {
                "lastReportTime": T,
                "round": 3,
                "nodes": [],
                "metrics": {"accuracy": 0.93},
                "checkpoint": {"round": 2, "path": "/ckpt/r2", "time": "t0"},
            },
            id="checkpoint",
        ),
    ],
)
def test_report_section(prev: dict[str, Any], report: EngineReport | None, expect: dict[str, Any]) -> None:
    got = S.report_section(prev, report, T)
    if expect.get("nodes"):
        # The entry's exact shape is NodeReport.status_entry's business; here only which nodes.
        assert [n["id"] for n in got["nodes"]] == [n["id"] for n in expect["nodes"]]
        got = {**got, "nodes": expect["nodes"]}
    assert got == expect


@pytest.mark.parametrize(
    ("round_", "nodes", "expect"),
    [
        pytest.param(0, [], {"progress": "0/5", "healthyNodes": "0/2"}, id="no-report-counts-spec-clients"),
        pytest.param(3, [ALIVE, FINISHED], {"progress": "3/5", "healthyNodes": "2/2"}, id="finished-counts-healthy"),
        pytest.param(4, [ALIVE, DEAD, PENDING], {"progress": "4/5", "healthyNodes": "1/3"}, id="dead-and-pending"),
    ],
)
def test_progress_section(round_: int, nodes: list[dict[str, Any]], expect: dict[str, str]) -> None:
    assert S.progress_section(round_, nodes, SPEC) == expect


def _outcome(phase: Phase, failure: S.Failure | None = None) -> S.RunOutcome:
    c = C.Condition("x", "False", "r", "m")
    return S.RunOutcome(phase, c, c, failure)


@pytest.mark.parametrize(
    ("status", "outcome", "job", "kw", "expect"),
    [
        pytest.param(
            {"reason": "Old", "message": "old"},
            _outcome(Phase.STARTING),
            S.JobView("sub-1"),
            {},
            {"startTime": T, "phase": "Starting"},
            id="starting-drops-old-reason-sets-start",
        ),
        pytest.param(
            {"startTime": "t0"},
            _outcome(Phase.RUNNING),
            S.JobView("sub-1"),
            {},
            {"startTime": "t0", "phase": "Running"},
            id="start-time-sticks",
        ),
        pytest.param(
            {},
            _outcome(Phase.PENDING),
            S.JobView(),
            {"dashboard_error": "dashboard unreachable"},
            {"message": "dashboard unreachable", "phase": "Pending"},
            id="dashboard-error-is-the-message",
        ),
        pytest.param(
            {},
            _outcome(Phase.STARTING),
            S.JobView(),
            {"dashboard_error": "unreachable", "blocked": BLOCKED},
            {"message": BLOCKED.message, "phase": "Starting"},
            id="blocked-message-wins",
        ),
        pytest.param(
            {},
            _outcome(Phase.FAILED, S.Failure("TooFewClients", "1 alive")),
            S.JobView("sub-1"),
            {"blocked": BLOCKED},
            {"reason": "TooFewClients", "message": "1 alive", "completionTime": T, "phase": "Failed"},
            id="failed-keeps-its-own-message",
        ),
        pytest.param(
            {"completionTime": "t0"},
            _outcome(Phase.SUCCEEDED),
            S.JobView("sub-1"),
            {},
            {"completionTime": "t0", "phase": "Succeeded"},
            id="completion-time-sticks",
        ),
    ],
)
def test_headline(
    status: dict[str, Any], outcome: S.RunOutcome, job: S.JobView, kw: dict[str, Any], expect: dict[str, Any]
) -> None:
    before = dict(status)
    assert S.headline(status, outcome, job, obs(**kw), T) == expect
    assert status == before  # pure


# ================================================================ conditions
@pytest.mark.parametrize(
    ("s", "kw", "expect"),
    [
        pytest.param(TOO_BIG, {"sizing": size_cluster(TOO_BIG)}, ("False", "InsufficientResources"), id="does-not-fit"),
        pytest.param(spec(clients=2, suspend=True), {}, ("False", "Suspended"), id="suspended"),
        pytest.param(SPEC, {"cluster": None, "blocked": BLOCKED}, ("False", "NameConflict"), id="blocked-no-cluster"),
        pytest.param(SPEC, {"cluster": READY, "blocked": BLOCKED}, ("True", "ClusterReady"), id="blocked-but-exists"),
        pytest.param(SPEC, {"cluster": None}, ("False", "Creating"), id="not-yet"),
        pytest.param(SPEC, {"cluster": GONE}, ("False", "Creating"), id="gone"),
        pytest.param(SPEC, {"cluster": CREATING}, ("False", "Creating"), id="pods-coming-up"),
        pytest.param(SPEC, {"cluster": READY}, ("True", "ClusterReady"), id="ready"),
    ],
)
def test_cluster_ready(s: Any, kw: dict[str, Any], expect: tuple[str, str]) -> None:
    c = S.cluster_ready(s, obs(s, **kw))
    assert c.type == C.CLUSTER_READY and (c.status, c.reason) == expect


@pytest.mark.parametrize(
    ("job", "blocked", "expect"),
    [
        pytest.param(
            S.JobView("sub-1", "RUNNING", attempts=2),
            None,
            ("True", "Submitted", "sub-1 (attempt 2): RUNNING"),
            id="submitted",
        ),
        pytest.param(
            S.JobView("sub-1", "RUNNING"),
            BLOCKED,
            ("True", "Submitted", "sub-1 (attempt 1): RUNNING"),
            id="blocked-later",
        ),
        pytest.param(
            S.JobView("sub-1"),
            None,
            ("False", "WaitingForCluster", "the job is submitted once the cluster is ready"),
            id="no-status-yet",
        ),
        pytest.param(S.JobView(), BLOCKED, ("False", "NameConflict", BLOCKED.message), id="blocked"),
        pytest.param(
            S.JobView(),
            None,
            ("False", "WaitingForCluster", "the job is submitted once the cluster is ready"),
            id="waiting",
        ),
    ],
)
def test_job_submitted(job: S.JobView, blocked: S.Blocked | None, expect: tuple[str, str, str]) -> None:
    assert triple(S.job_submitted(job, blocked)) == expect


@pytest.mark.parametrize(
    ("s", "kw", "job", "report", "round_", "phase", "succeeded", "failed"),
    [
        pytest.param(
            SPEC,
            {},
            S.JobView("sub-1", "SUCCEEDED"),
            engine_report(event="done", round=5),
            5,
            Phase.SUCCEEDED,
            ("True", "Completed", "finished 5/5 rounds, accuracy 0.930"),
            ("False", "Completed", "finished 5/5 rounds, accuracy 0.930"),
            id="succeeded",
        ),
        pytest.param(
            SPEC,
            {},
            S.JobView("sub-1", "SUCCEEDED"),
            None,
            None,
            Phase.SUCCEEDED,
            ("True", "Completed", "finished 5/5 rounds"),
            ("False", "Completed", "finished 5/5 rounds"),
            id="succeeded-without-report",
        ),
        pytest.param(
            SPEC,
            {
                "plan": plan(failures=1, terminal=True),
                "ray_job": RayJob("FAILED", "exit 1", "JOB_ENTRYPOINT_COMMAND_ERROR"),
            },
            S.JobView("sub-1", "FAILED", attempts=2),
            None,
            2,
            Phase.FAILED,
            ("False", "JobEntrypointCommandError", "exit 1"),
            ("True", "JobEntrypointCommandError", "exit 1 (after 2 attempt(s); backoffLimit 2)"),
            id="failed-for-good",
        ),
        pytest.param(
            SPEC,
            {"plan": plan()},
            S.JobView("sub-1", "RUNNING"),
            None,
            3,
            Phase.RUNNING,
            ("False", "NotFinished", "round 3/5"),
            ("False", "NoFailure", "0 failed attempt(s), backoffLimit 2"),
            id="running",
        ),
        pytest.param(
            SPEC,
            {"plan": plan("submit", attempt=2, failures=1)},
            S.JobView("sub-2", "PENDING", failures=1),
            None,
            None,
            Phase.STARTING,
            ("False", "NotFinished", "round 0/5"),
            ("False", "Retrying", "1 failed attempt(s), backoffLimit 2"),
            id="retrying",
        ),
        pytest.param(
            SPEC,
            {"cluster": GONE},
            S.JobView(),
            None,
            None,
            Phase.PENDING,
            ("False", "NotFinished", "round 0/5"),
            ("False", "NoFailure", "0 failed attempt(s), backoffLimit 2"),
            id="no-cluster-is-pending",
        ),
        pytest.param(
            spec(clients=2, rounds=5, suspend=True),
            {},
            S.JobView("sub-1", "SUSPENDED"),
            None,
            2,
            Phase.SUSPENDED,
            ("False", "NotFinished", "round 2/5"),
            ("False", "NoFailure", "0 failed attempt(s), backoffLimit 2"),
            id="suspended",
        ),
    ],
)
def test_run_outcome(
    s: Any,
    kw: dict[str, Any],
    job: S.JobView,
    report: EngineReport | None,
    round_: int | None,
    phase: Phase,
    succeeded: tuple[str, str, str],
    failed: tuple[str, str, str],
) -> None:
    out = S.run_outcome(s, obs(s, **kw), job, report, round_)
    assert out.phase == phase
    assert (out.succeeded.type, out.failed.type) == (C.SUCCEEDED, C.FAILED)
    assert (triple(out.succeeded), triple(out.failed)) == (succeeded, failed)
    assert (out.failure is not None) == (phase == Phase.FAILED)


@pytest.mark.parametrize(
    ("report", "ray", "job", "expect"),
    [
        pytest.param(
            engine_report(event="failed", reason="TooFewClients", message="1 alive < minClients 2"),
            RayJob("FAILED", "exit 1", "JOB_ENTRYPOINT_COMMAND_ERROR"),
            S.JobView("sub-1", "FAILED"),
            S.Failure("TooFewClients", "1 alive < minClients 2"),
            id="engine-reason-first",
        ),
        pytest.param(
            engine_report(event="failed"),
            None,
            S.JobView("sub-1", "FAILED"),
            S.Failure("EngineFailed", "the engine failed"),
            id="engine-without-reason",
        ),
        pytest.param(
            engine_report(),
            RayJob("FAILED", "exit 1", "JOB_ENTRYPOINT_COMMAND_ERROR"),
            S.JobView("sub-1", "FAILED"),
            S.Failure("JobEntrypointCommandError", "exit 1"),
            id="ray-error-type",
        ),
        pytest.param(
            None,
            RayJob("FAILED", "", "RUNTIME_ENV_SETUP_FAILED"),
            S.JobView("sub-1", "FAILED", message="pip failed"),
            S.Failure("RuntimeEnvSetupFailed", "pip failed"),
            id="ray-error-type-message-from-job",
        ),
        pytest.param(
            None,
            None,
            S.JobView("sub-1", "LOST"),
            S.Failure("JobLost", "Ray no longer knows the submission (the head restarted?)"),
            id="lost",
        ),
        pytest.param(
            None,
            None,
            S.JobView("sub-1"),
            S.Failure("JobLost", "Ray no longer knows the submission (the head restarted?)"),
            id="no-status-is-lost",
        ),
        pytest.param(
            None,
            RayJob("STOPPED", "stopped by user"),
            S.JobView("sub-1", "STOPPED"),
            S.Failure("JobStopped", "stopped by user"),
            id="stopped-ray-message",
        ),
        pytest.param(
            None,
            None,
            S.JobView("sub-1", "STOPPED"),
            S.Failure("JobStopped", "the Ray job ended STOPPED"),
            id="stopped-no-message",
        ),
    ],
)
def test_failure_of(report: EngineReport | None, ray: RayJob | None, job: S.JobView, expect: S.Failure) -> None:
    assert S.failure_of(report, ray, job) == expect


@pytest.mark.parametrize(
    ("nodes", "phase", "healthy", "degraded"),
    [
        pytest.param(
            [],
            Phase.RUNNING,
            ("Unknown", "NoReport", "no report from the engine yet"),
            ("False", "NoReport", "no report from the engine yet"),
            id="no-report",
        ),
        pytest.param(
            [ALIVE, FINISHED],
            Phase.RUNNING,
            ("True", "AllAlive", "2/2 nodes healthy"),
            ("False", "AllAlive", "every node is alive"),
            id="all-alive",
        ),
        pytest.param(
            [ALIVE, DEAD],
            Phase.RUNNING,
            ("False", "NodesUnhealthy", "1/2 unhealthy: client_1 (Dead)"),
            ("True", "NodesDead", "1 node(s) dead; 1 alive (minClients 2)"),
            id="dead-while-running",
        ),
        pytest.param(
            [ALIVE, DEAD],
            Phase.SUCCEEDED,
            ("False", "NodesUnhealthy", "1/2 unhealthy: client_1 (Dead)"),
            ("False", "NoDeadNodes", "no node is dead"),
            id="dead-after-the-run",
        ),
        pytest.param(
            [ALIVE, PENDING],
            Phase.RUNNING,
            ("False", "NodesUnhealthy", "1/2 unhealthy: client_1 (Pending)"),
            ("False", "NoDeadNodes", "no node is dead"),
            id="pending-is-not-dead",
        ),
    ],
)
def test_nodes_health(
    nodes: list[dict[str, Any]], phase: Phase, healthy: tuple[str, str, str], degraded: tuple[str, str, str]
) -> None:
    h, d = S.nodes_health(nodes, phase, min_clients=2)
    assert (h.type, d.type) == (C.NODES_HEALTHY, C.DEGRADED)
    assert (triple(h), triple(d)) == (healthy, degraded)


@pytest.mark.parametrize(
    ("reading", "expect"),
    [
        pytest.param(None, ("Unknown", "NoReport"), id="none"),
        pytest.param(ReportReading(None, other_attempt="sub-0"), ("Unknown", "OtherAttempt"), id="other-attempt"),
        pytest.param(ReportReading(None, "not JSON"), ("False", "ReportInvalid"), id="invalid"),
        pytest.param(ReportReading(engine_report(), notes=("metric dropped",)), ("True", "Sanitized"), id="sanitized"),
        pytest.param(ReportReading(engine_report()), ("True", "Valid"), id="valid"),
    ],
)
def test_report_valid(reading: ReportReading | None, expect: tuple[str, str]) -> None:
    c = S.report_valid(reading)
    assert c.type == C.REPORT_VALID and (c.status, c.reason) == expect


@pytest.mark.parametrize(
    ("suspend", "expect"),
    [
        pytest.param(True, ("True", "Suspended"), id="suspended"),
        pytest.param(False, ("False", "NotSuspended"), id="not"),
    ],
)
def test_suspended(suspend: bool, expect: tuple[str, str]) -> None:
    c = S.suspended(spec(suspend=suspend))
    assert c.type == C.SUSPENDED and (c.status, c.reason) == expect


def ago(seconds: int) -> str:
    return S.iso(NOW - timedelta(seconds=seconds))


SUBMITTED_LONG_AGO = [
    {"type": C.JOB_SUBMITTED, "status": "True", "reason": "Submitted", "message": "", "lastTransitionTime": ago(600)}
]


@pytest.mark.parametrize(
    ("s", "kw", "phase", "failure", "job", "last_report", "prev", "expect"),
    [
        pytest.param(
            TOO_BIG, {"sizing": size_cluster(TOO_BIG)}, Phase.PENDING, None, S.JobView(), None, [],
            ("True", "InsufficientResources"), id="does-not-fit",
        ),
        pytest.param(
            SPEC, {"blocked": BLOCKED}, Phase.STARTING, None, S.JobView(), None, [],
            ("True", "NameConflict"), id="blocked",
        ),
        pytest.param(
            SPEC, {"cluster": REFUSED}, Phase.STARTING, None, S.JobView(), None, [],
            ("True", "FailedCreateHeadPod"), id="pods-refused",
        ),
        pytest.param(
            SPEC, {"cluster": REFUSED}, Phase.FAILED, S.Failure("TooFewClients", "1 alive"), S.JobView(), None, [],
            ("True", "TooFewClients"), id="failed-names-its-reason",
        ),
        pytest.param(
            SPEC, {}, Phase.FAILED, S.Failure("", ""), S.JobView(), None, [],
            ("True", "Failed"), id="failed-without-reason",
        ),
        pytest.param(
            SPEC, {}, Phase.RUNNING, None, S.JobView("sub-1", "RUNNING"), ago(61), [],
            ("True", "NoProgress"), id="silent-since-last-report",
        ),
        pytest.param(
            SPEC, {}, Phase.RUNNING, None, S.JobView("sub-1", "RUNNING"), ago(59), [],
            ("False", "Progressing"), id="recent-report",
        ),
        pytest.param(
            SPEC, {}, Phase.STARTING, None, S.JobView("sub-1", "PENDING", submit_time=ago(61)), None, [],
            ("True", "NoProgress"), id="pending-since-submission",
        ),
        pytest.param(
            SPEC, {}, Phase.RUNNING, None, S.JobView("sub-1", "RUNNING"), None, SUBMITTED_LONG_AGO,
            ("True", "NoProgress"), id="since-job-submitted-condition",
        ),
        pytest.param(
            SPEC, {}, Phase.STARTING, None, S.JobView("sub-1", "RUNNING", submit_time=ago(600)), None, [],
            ("False", "Progressing"), id="starting-cluster-is-not-silence",
        ),
        pytest.param(
            SPEC, {}, Phase.RUNNING, None, S.JobView("sub-1", "RUNNING"), None, [],
            ("False", "Progressing"), id="no-clock-to-count-from",
        ),
    ],
)  # fmt: skip
def test_stalled(
    s: Any,
    kw: dict[str, Any],
    phase: Phase,
    failure: S.Failure | None,
    job: S.JobView,
    last_report: str | None,
    prev: list[dict[str, Any]],
    expect: tuple[str, str],
) -> None:
    c = S.stalled(s, obs(s, **kw), phase, failure, job, last_report, prev)
    assert c.type == C.STALLED and (c.status, c.reason) == expect


STALLED = C.Condition(C.STALLED, "True", "NoProgress", "")
PROGRESSING = C.Condition(C.STALLED, "False", "Progressing", "")


@pytest.mark.parametrize(
    ("phase", "cluster", "nodes", "stalled_now", "ready", "reconciling"),
    [
        pytest.param(
            Phase.SUCCEEDED, None, [DEAD], PROGRESSING, ("True", "Completed"), ("False", "Succeeded"), id="done"
        ),
        pytest.param(
            Phase.RUNNING, READY, [ALIVE], PROGRESSING, ("True", "Running"), ("False", "Running"), id="running"
        ),
        pytest.param(
            Phase.RUNNING, READY, [], PROGRESSING, ("True", "Running"), ("False", "Running"), id="running-no-report"
        ),
        pytest.param(
            Phase.RUNNING,
            READY,
            [ALIVE, DEAD],
            PROGRESSING,
            ("False", "NotReady"),
            ("False", "Running"),
            id="dead-node",
        ),
        pytest.param(
            Phase.RUNNING,
            CREATING,
            [ALIVE],
            PROGRESSING,
            ("False", "NotReady"),
            ("False", "Running"),
            id="cluster-not-ready",
        ),
        pytest.param(
            Phase.STARTING, READY, [], PROGRESSING, ("False", "Starting"), ("True", "Starting"), id="starting"
        ),
        pytest.param(
            Phase.STARTING, READY, [], STALLED, ("False", "Starting"), ("False", "Starting"), id="starting-stalled"
        ),
        pytest.param(Phase.PENDING, None, [], PROGRESSING, ("False", "Pending"), ("True", "Pending"), id="pending"),
        pytest.param(Phase.FAILED, READY, [], STALLED, ("False", "Failed"), ("False", "Failed"), id="failed"),
        pytest.param(
            Phase.SUSPENDED, None, [], PROGRESSING, ("False", "Suspended"), ("False", "Suspended"), id="suspended"
        ),
    ],
)
def test_ready_and_reconciling(
    phase: Phase,
    cluster: ClusterObservation | None,
    nodes: list[dict[str, Any]],
    stalled_now: C.Condition,
    ready: tuple[str, str],
    reconciling: tuple[str, str],
) -> None:
    r, rec = S.ready_and_reconciling(phase, cluster, nodes, stalled_now)
    assert (r.type, rec.type) == (C.READY, C.RECONCILING)
    assert ((r.status, r.reason), (rec.status, rec.reason)) == (ready, reconciling)
    assert r.message == rec.message == f"phase {phase.value}"


@pytest.mark.parametrize(
    ("error", "expect"),
    [
        pytest.param("spec.clients: bad", "spec.clients: bad", id="says-why"),
        pytest.param(None, "invalid spec", id="no-detail"),
    ],
)
def test_invalid_spec_conditions(error: str | None, expect: str) -> None:
    got = {c.type: (c.status, c.reason, c.message) for c in S.invalid_spec_conditions(error)}
    assert got == {
        C.FAILED: ("True", "InvalidSpec", expect),
        C.READY: ("False", "InvalidSpec", expect),
        C.STALLED: ("True", "InvalidSpec", "fix the spec"),
        C.RECONCILING: ("False", "InvalidSpec", "fix the spec"),
    }


def _stored(type_: str, status: str, reason: str = "R") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": "m",
        "observedGeneration": 1,
        "lastTransitionTime": "t0",
    }


@pytest.mark.parametrize(
    ("prev", "cluster", "expect"),
    [
        pytest.param(
            [_stored(C.SUCCEEDED, "True"), _stored(C.SYNCED, "False", "ApiError")],
            READY,
            [_stored(C.SUCCEEDED, "True")],
            id="stale-api-error-dropped",
        ),
        pytest.param(
            [_stored(C.SUCCEEDED, "True"), _stored(C.SYNCED, "True")],
            None,
            [_stored(C.SUCCEEDED, "True"), _stored(C.SYNCED, "True")],
            id="unchanged",
        ),
        pytest.param(
            [_stored(C.CLUSTER_READY, "True"), _stored(C.SUCCEEDED, "True")],
            GONE,
            [
                {**_stored(C.SUCCEEDED, "True"), "observedGeneration": 3},
                {
                    **_stored(C.CLUSTER_READY, "False", "Deleted"),
                    "message": "the RayCluster was removed after the run (ttlSecondsAfterFinished)",
                    "observedGeneration": 3,
                    "lastTransitionTime": T,
                },
            ],
            id="cluster-removed-by-ttl",
        ),
    ],
)
def test_finished_conditions(
    prev: list[dict[str, Any]], cluster: ClusterObservation | None, expect: list[dict[str, Any]]
) -> None:
    assert S.finished_conditions(prev, cluster, 3, T) == expect
