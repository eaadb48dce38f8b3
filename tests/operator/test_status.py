"""Decisions and status folding on plain dicts: what the operator does and what it reports."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from red_operator import conditions as C
from red_operator.decide import RayJob, plan
from red_operator.readiness import ClusterObservation
from red_operator.sizing import size_cluster
from red_operator.status import Observed, iso, recover
from red_operator.status import fold as _fold

from red.spec.federation_status import FederationStatus
from tests.operator.helpers import gpu_pool, spec


def fold(previous: dict[str, Any], obs: Observed) -> dict[str, Any]:
    """Every status these tests fold meets the CRD's status model (unknown fields forbidden): a field
    the operator writes and the schema lacks would be pruned by the API server without a word."""
    out = _fold(previous, obs)
    FederationStatus.model_validate(out)
    return out

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
READY = ClusterObservation(True, True, "ClusterReady", "ok", 1, 1, "svc")
CREATING = ClusterObservation(True, False, "Creating", "waiting", 1, 0, "svc")


def job(**kw: Any) -> dict[str, Any]:
    return {"job": {"submissionId": "red-fl-x-1", "attempts": 1, "failures": 0, **kw}}


# ---------------------------------------------------------------- decide
@pytest.mark.parametrize(
    ("spec_over", "status", "ray", "ready", "expect"),
    [
        # first run: wait for the cluster, then submit attempt 1
        ({}, {}, None, False, ("ensure", "none", 0, 0, False)),
        ({}, {}, None, True, ("ensure", "submit", 1, 0, False)),
        # running / succeeded: nothing to do
        ({}, job(status="RUNNING"), RayJob("RUNNING"), True, ("ensure", "none", 1, 0, False)),
        ({}, job(status="RUNNING"), RayJob("SUCCEEDED"), True, ("ensure", "none", 1, 0, False)),
        # failure with retries left: resubmit as attempt 2 (and count the failure once)
        ({}, job(status="RUNNING"), RayJob("FAILED", "boom"), True, ("ensure", "submit", 2, 1, False)),
        # backoffLimit 0: the first failure is final
        ({"backoffLimit": 0}, job(status="RUNNING"), RayJob("FAILED"), True, ("ensure", "none", 1, 1, True)),
        # a failure already counted is not counted again
        (
            {"backoffLimit": 1},
            {
                "job": {
                    "submissionId": "s",
                    "status": "FAILED",
                    "countedFailure": "s",
                    "attempts": 1,
                    "failures": 1,
                }
            },
            RayJob("FAILED"),
            False,
            ("ensure", "none", 1, 1, False),
        ),
        # Ray lost the job (head restarted): a failure too
        ({}, job(status="RUNNING"), RayJob(None), True, ("ensure", "submit", 2, 1, False)),
        # dashboard unreachable: wait, change nothing
        (
            {},
            job(status="RUNNING"),
            RayJob("RUNNING", reachable=False),
            True,
            ("ensure", "none", 1, 0, False),
        ),
        # suspend: stop the running job and delete the cluster
        ({"suspend": True}, job(status="RUNNING"), RayJob("RUNNING"), True, ("delete", "stop", 1, 0, False)),
        # resume after suspend: a new attempt
        ({}, {"phase": "Suspended", **job(status="SUSPENDED")}, None, True, ("ensure", "submit", 2, 0, False)),
        # ... also after a pass in which the phase already moved on (waiting for the new cluster)
        ({}, {"phase": "Pending", **job(status="SUSPENDED")}, None, False, ("ensure", "none", 1, 0, False)),
        # an existing cluster is never created nor deleted
        (
            {"suspend": True, "cluster": {"existingCluster": "shared"}},
            {},
            None,
            True,
            ("leave", "none", 0, 0, False),
        ),
    ],
)
def test_plan(
    spec_over: dict[str, Any],
    status: dict[str, Any],
    ray: RayJob | None,
    ready: bool,
    expect: tuple[Any, ...],
) -> None:
    p = plan(spec(**spec_over), status, ray, cluster_ready=ready, fits=True, now=NOW)
    assert (p.cluster, p.job, p.attempt, p.failures, p.terminal_failure) == expect


def test_resume_uses_checkpoint_only_when_configured() -> None:
    status = {"phase": "Suspended", **job(status="SUSPENDED")}
    with_ckpt = plan(spec(checkpoint={"path": "/ckpt"}), status, None, cluster_ready=True, fits=True, now=NOW)
    without = plan(spec(), status, None, cluster_ready=True, fits=True, now=NOW)
    assert with_ckpt.resume and not without.resume


@pytest.mark.parametrize(
    ("ttl", "age_s", "existing", "expect"),
    [
        (60, 30, None, "leave"),
        (60, 61, None, "delete"),
        (60, 61, "shared", "leave"),
        (None, 10**6, None, "leave"),
    ],
)
def test_ttl_after_finished(ttl: int | None, age_s: int, existing: str | None, expect: str) -> None:
    s = spec(ttlSecondsAfterFinished=ttl, cluster={"existingCluster": existing} if existing else {})
    done = (NOW - timedelta(seconds=age_s)).strftime("%Y-%m-%dT%H:%M:%SZ")
    p = plan(s, {"phase": "Succeeded", "completionTime": done}, None, cluster_ready=True, fits=True, now=NOW)
    assert p.cluster == expect and p.job == "none"


def test_shortfall_creates_nothing() -> None:
    p = plan(spec(), {}, None, cluster_ready=False, fits=False, now=NOW)
    assert (p.cluster, p.job) == ("leave", "none")


# ---------------------------------------------------------------- fold
def report(event: str = "round", rnd: int = 3, **kw: Any) -> dict[str, Any]:
    nodes = kw.pop(
        "nodes",
        [
            {
                "id": f"client_{i}",
                "role": "train",
                "health": "Alive",
                "version": rnd,
                "restarts": 0,
                "lastHeartbeat": None,
            }
            for i in range(2)
        ],
    )
    return {
        "event": event,
        "federation": "fl",
        "round": rnd,
        "rounds": 5,
        "metrics": {"accuracy": 0.93, "loss": 0.2, "note": "x"},
        "nodes": nodes,
        "time": f"2026-01-01T12:00:0{rnd}.000Z",
        **kw,
    }


def observe(s: Any = None, **kw: Any) -> Observed:
    s = s or spec(clients=2, rounds=5)
    base: dict[str, Any] = {"sizing": size_cluster(s), "cluster_name": "fl-ray", "cluster": READY}
    base.update(kw)
    return Observed(generation=3, now=NOW, spec=s, **base)


def cond(status: dict[str, Any], type_: str) -> tuple[str, str]:
    c = C.get(status["conditions"], type_)
    assert c is not None, type_
    return c["status"], c["reason"]


def running_plan() -> Any:
    return plan(spec(), job(status="RUNNING"), RayJob("RUNNING"), cluster_ready=True, fits=True, now=NOW)


@pytest.mark.parametrize(
    ("obs_kw", "prev", "phase", "expect_conditions"),
    [
        # cluster still coming up
        (
            {"cluster": CREATING, "plan": plan(spec(), {}, None, cluster_ready=False, fits=True, now=NOW)},
            {},
            "Starting",
            {
                C.CLUSTER_READY: ("False", "Creating"),
                C.JOB_SUBMITTED: ("False", "WaitingForCluster"),
                C.RECONCILING: ("True", "Starting"),
            },
        ),
        # submitted this pass
        (
            {
                "plan": plan(spec(), {}, None, cluster_ready=True, fits=True, now=NOW),
                "submission_id": "red-fl-x-1",
            },
            {},
            "Starting",
            {C.CLUSTER_READY: ("True", "ClusterReady"), C.JOB_SUBMITTED: ("True", "Submitted")},
        ),
        # running with a report
        (
            {"plan": running_plan(), "ray_job": RayJob("RUNNING"), "report": report()},
            job(status="RUNNING"),
            "Running",
            {
                C.READY: ("True", "Running"),
                C.NODES_HEALTHY: ("True", "AllAlive"),
                C.DEGRADED: ("False", "AllAlive"),
            },
        ),
        # a dead node: degraded but going
        (
            {
                "plan": running_plan(),
                "ray_job": RayJob("RUNNING"),
                "report": report(
                    nodes=[
                        {"id": "client_0", "health": "Alive", "version": 3},
                        {"id": "client_1", "health": "Dead", "version": 2},
                    ]
                ),
            },
            job(status="RUNNING"),
            "Running",
            {
                C.NODES_HEALTHY: ("False", "NodesUnhealthy"),
                C.DEGRADED: ("True", "NodesDead"),
                C.READY: ("False", "NotReady"),
            },
        ),
        # done
        (
            {"plan": running_plan(), "ray_job": RayJob("SUCCEEDED"), "report": report("done", 5)},
            job(status="RUNNING"),
            "Succeeded",
            {
                C.SUCCEEDED: ("True", "Completed"),
                C.READY: ("True", "Completed"),
                C.FAILED: ("False", "Completed"),
            },
        ),
        # final failure: the engine's reason wins over Ray's
        (
            {
                "plan": plan(
                    spec(backoffLimit=0),
                    job(status="RUNNING"),
                    RayJob("FAILED"),
                    cluster_ready=True,
                    fits=True,
                    now=NOW,
                ),
                "ray_job": RayJob("FAILED", "exit 1", "JOB_ENTRYPOINT_COMMAND_ERROR"),
                "report": report("failed", 2, reason="TooFewClients", message="1 alive < minClients 2"),
            },
            job(status="RUNNING"),
            "Failed",
            {
                C.FAILED: ("True", "TooFewClients"),
                C.SUCCEEDED: ("False", "TooFewClients"),
                # kstatus reads terminal failure from Stalled
                C.STALLED: ("True", "TooFewClients"),
                C.RECONCILING: ("False", "Failed"),
            },
        ),
        # final failure without a report: Ray's error type
        (
            {
                "plan": plan(
                    spec(backoffLimit=0),
                    job(status="RUNNING"),
                    RayJob("FAILED"),
                    cluster_ready=True,
                    fits=True,
                    now=NOW,
                ),
                "ray_job": RayJob("FAILED", "exit 1", "JOB_ENTRYPOINT_COMMAND_ERROR"),
            },
            job(status="RUNNING"),
            "Failed",
            {C.FAILED: ("True", "JobEntrypointCommandError")},
        ),
        # does not fit: stalled, nothing created
        (
            {
                "sizing": size_cluster(
                    spec(clients=24, resources={"perNode": {"gpu": 1}}, cluster={"nodePools": [gpu_pool()]})
                ),
                "cluster": None,
                "plan": plan(spec(), {}, None, cluster_ready=False, fits=False, now=NOW),
            },
            {},
            "Pending",
            {
                C.CLUSTER_READY: ("False", "InsufficientResources"),
                C.STALLED: ("True", "InsufficientResources"),
            },
        ),
    ],
)
def test_fold(
    obs_kw: dict[str, Any], prev: dict[str, Any], phase: str, expect_conditions: dict[str, tuple[str, str]]
) -> None:
    status = fold(prev, observe(**obs_kw))
    assert status["phase"] == phase
    assert status["observedGeneration"] == 3
    for type_, want in expect_conditions.items():
        assert cond(status, type_) == want, (type_, C.get(status["conditions"], type_))
    for c in status["conditions"]:
        assert set(c) == {"type", "status", "reason", "message", "observedGeneration", "lastTransitionTime"}


def test_fold_reports_nodes_metrics_and_progress() -> None:
    status = fold(job(status="RUNNING"), observe(plan=running_plan(), ray_job=RayJob("RUNNING"), report=report()))
    assert status["round"] == 3 and status["progress"] == "3/5"
    assert status["healthyNodes"] == "2/2"
    assert status["metrics"] == {"accuracy": 0.93, "loss": 0.2}  # non-numbers dropped
    assert [n["id"] for n in status["nodes"]] == ["client_0", "client_1"]
    assert all(n["version"] == 3 for n in status["nodes"])
    assert status["job"]["status"] == "RUNNING"
    assert status["lastReportTime"] == "2026-01-01T12:00:00Z"


def test_shortfall_message_reaches_status() -> None:
    s = spec(clients=24, resources={"perNode": {"gpu": 1}}, cluster={"nodePools": [gpu_pool()]})
    status = fold(
        {},
        observe(
            s,
            sizing=size_cluster(s),
            cluster=None,
            plan=plan(s, {}, None, cluster_ready=False, fits=False, now=NOW),
        ),
    )
    c = C.get(status["conditions"], C.CLUSTER_READY)
    assert c is not None and "needs 24 GPUs" in c["message"]


def test_stalled_after_silence() -> None:
    s = spec(clients=2, rounds=5, stallTimeoutSeconds=60)
    old = (NOW - timedelta(seconds=61)).strftime("%Y-%m-%dT%H:%M:%SZ")
    prev = {**job(status="RUNNING"), "lastReportTime": old, "reportTime": "same"}
    r = report()
    r["time"] = "same"  # the engine wrote nothing new
    p = plan(s, prev, RayJob("RUNNING"), cluster_ready=True, fits=True, now=NOW)
    status = fold(prev, observe(s, plan=p, ray_job=RayJob("RUNNING"), report=r))
    assert cond(status, C.STALLED) == ("True", "NoProgress")
    fresh = fold(prev, observe(s, plan=p, ray_job=RayJob("RUNNING"), report=report()))
    assert cond(fresh, C.STALLED) == ("False", "Progressing")


def test_terminal_phase_sticks() -> None:
    done = fold(
        job(status="RUNNING"),
        observe(plan=running_plan(), ray_job=RayJob("SUCCEEDED"), report=report("done", 5)),
    )
    later = fold(done, observe(cluster=ClusterObservation(False), plan=None))
    assert later["phase"] == "Succeeded"
    assert cond(later, C.SUCCEEDED) == ("True", "Completed")
    assert cond(later, C.CLUSTER_READY) == ("False", "Deleted")


def test_last_transition_time_moves_only_on_change() -> None:
    first = C.merge([], [C.Condition("Ready", "False", "A", "")], generation=1, now="t1")
    same = C.merge(first, [C.Condition("Ready", "False", "B", "")], generation=1, now="t2")
    flip = C.merge(same, [C.Condition("Ready", "True", "B", "")], generation=1, now="t3")
    assert [c["lastTransitionTime"] for c in (first[0], same[0], flip[0])] == ["t1", "t1", "t3"]
    assert C.transitions(first, same) == same  # the reason changed: an event
    assert C.transitions(same, same) == []


def test_invalid_spec_fails_with_reason() -> None:
    status = fold({}, Observed(generation=1, now=NOW, spec=None, spec_error="spec.clients: bad"))
    assert status["phase"] == "Failed"
    assert cond(status, C.FAILED) == ("True", "InvalidSpec")
    # docs/kubernetes.md waits for completionTime: it must be set on every Failed.
    assert status["completionTime"] == iso(NOW)


# ---------------------------------------------------------------- hardening: reports, retries, specs
def test_an_invalid_report_is_a_condition_and_status_stays_storable() -> None:
    prev = {**job(status="RUNNING"), "metrics": {"accuracy": 0.5}, "round": 2}
    for raw in ("[1, 2]", '{"event": "round", "federation": "fl", "round": 1.5, "rounds": 5}'):
        status = fold(prev, observe(plan=running_plan(), ray_job=RayJob("RUNNING"), report=raw))
        assert status["phase"] == "Running"
        assert cond(status, C.REPORT_VALID) == ("False", "ReportInvalid")
        assert status["metrics"] == {"accuracy": 0.5} and status["round"] == 2  # the last good word stays
        json.dumps(status, allow_nan=False)


def test_non_finite_metrics_never_reach_status() -> None:
    raw = json.dumps(report()).replace('"accuracy": 0.93', '"accuracy": NaN').replace('"loss": 0.2', '"loss": Infinity')
    status = fold(job(status="RUNNING"), observe(plan=running_plan(), ray_job=RayJob("RUNNING"), report=raw))
    assert status["metrics"] == {}
    c = C.get(status["conditions"], C.REPORT_VALID)
    assert c is not None and c["reason"] == "Sanitized" and "accuracy" in c["message"], c
    json.dumps(status, allow_nan=False)


def test_a_retry_does_not_inherit_the_previous_attempts_report() -> None:
    s = spec(clients=2, rounds=5, stallTimeoutSeconds=60)
    long_ago = (NOW - timedelta(seconds=3600)).strftime("%Y-%m-%dT%H:%M:%SZ")
    old_report = report(
        submissionId="red-fl-x-1",
        nodes=[{"id": "client_0", "health": "Dead"}, {"id": "client_1", "health": "Dead"}],
    )
    prev = {**job(status="FAILED"), "lastReportTime": long_ago, "reportTime": "old", "nodes": old_report["nodes"]}
    p = plan(s, prev, RayJob("FAILED"), cluster_ready=True, fits=True, now=NOW)
    assert (p.job, p.attempt) == ("submit", 2)
    submitted = fold(prev, observe(s, plan=p, submission_id="red-fl-x-2", report=None))
    assert "nodes" not in submitted and "lastReportTime" not in submitted
    # The next pass still finds the old attempt's report in the ConfigMap: it is set aside.
    later = NOW + timedelta(seconds=5)
    p2 = plan(s, submitted, RayJob("RUNNING"), cluster_ready=True, fits=True, now=later)
    running = fold(
        submitted,
        Observed(
            generation=3, now=later, spec=s, sizing=size_cluster(s), cluster_name="fl-ray", cluster=READY,
            plan=p2, submission_id="red-fl-x-2", ray_job=RayJob("RUNNING"), report=json.dumps(old_report),
        ),
    )
    assert running["phase"] == "Running"
    assert cond(running, C.DEGRADED) == ("False", "NoReport")
    assert cond(running, C.STALLED) == ("False", "Progressing")
    assert cond(running, C.REPORT_VALID) == ("Unknown", "OtherAttempt")
    assert "nodes" not in running


def test_a_lost_cluster_is_one_failure() -> None:
    s = spec(backoffLimit=3)
    prev = job(status="RUNNING")
    statuses = [prev]
    for _ in range(3):  # three passes while the RayCluster is gone (no Ray to ask)
        p = plan(s, statuses[-1], None, cluster_ready=False, fits=True, now=NOW)
        statuses.append(fold(statuses[-1], observe(s, plan=p, cluster=ClusterObservation(False))))
    assert [st["job"]["failures"] for st in statuses[1:]] == [1, 1, 1]
    assert statuses[-1]["job"]["status"] == "LOST"
    assert statuses[-1]["job"]["countedFailure"] == "red-fl-x-1"
    # The new cluster is ready: the retry is attempt 2, still one failure.
    p = plan(s, statuses[-1], None, cluster_ready=True, fits=True, now=NOW)
    assert (p.job, p.attempt, p.failures) == ("submit", 2, 1)


@pytest.mark.parametrize(
    ("reason", "terminal", "job_action"), [("SpecError", True, "none"), ("TooFewClients", False, "submit")]
)
def test_a_spec_error_is_not_retried(reason: str, terminal: bool, job_action: str) -> None:
    s = spec(backoffLimit=2)
    p = plan(s, job(status="RUNNING"), RayJob("FAILED"), cluster_ready=True, fits=True, now=NOW, engine_reason=reason)
    assert (p.terminal_failure, p.job, p.failures) == (terminal, job_action, 1)


@pytest.mark.parametrize(
    ("prev", "recovered"),
    [
        ({"phase": "Failed", "reason": "InvalidSpec", "message": "bad", "completionTime": "t"}, {}),
        ({"phase": "Failed", "reason": "SpecError", "message": "bad"}, None),
        ({"phase": "Succeeded"}, None),
    ],
)
def test_a_fixed_spec_revives_only_an_invalid_spec_failure(
    prev: dict[str, Any], recovered: dict[str, Any] | None
) -> None:
    assert recover(prev) == (prev if recovered is None else recovered)
    if recovered is not None:
        status = fold(recover(prev), observe(plan=plan(spec(), {}, None, cluster_ready=False, fits=True, now=NOW)))
        assert status["phase"] == "Starting" and "reason" not in status


# ---------------------------------------------------------------- software versions and failed-job logs
SOFTWARE = {"red": "0.1.0", "ray": "2.60.0", "torch": "2.9.1", "python": "3.11.2", "cuda": None, "image": "img:1"}


def test_status_versions_come_from_the_report_and_stay() -> None:
    status = fold(
        job(status="RUNNING"), observe(plan=running_plan(), ray_job=RayJob("RUNNING"), report=report(software=SOFTWARE))
    )
    known = {k: v for k, v in SOFTWARE.items() if v is not None}  # no null: a merge patch would delete it
    assert status["versions"] == known and "cuda" not in known
    # A later report without them (an older engine) leaves them as they were.
    later = fold(status, observe(plan=running_plan(), ray_job=RayJob("RUNNING"), report=report(rnd=4)))
    assert later["versions"] == known


RAY_FAILED = (
    "Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\n"
    + "\n".join(f"INFO start-up chatter {i}" for i in range(300))
    + "\nTraceback (most recent call last):\nValueError: boom in the task's __init__\n"
)


def test_a_failed_job_without_an_engine_report_shows_the_end_of_its_log() -> None:
    s = spec(backoffLimit=0)
    ray = RayJob("FAILED", RAY_FAILED, "JOB_ENTRYPOINT_COMMAND_ERROR")
    p = plan(s, job(status="RUNNING"), ray, cluster_ready=True, fits=True, now=NOW)
    status = fold(job(status="RUNNING"), observe(s, plan=p, ray_job=ray))
    assert status["phase"] == "Failed"
    failed = C.get(status["conditions"], C.FAILED)
    assert failed is not None and failed["reason"] == "JobEntrypointCommandError"
    assert failed["message"].startswith("Job entrypoint command failed with exit code 1; last log lines:")
    assert "ValueError: boom in the task's __init__" in failed["message"]
    assert failed["message"].endswith("(after 1 attempt(s); backoffLimit 0)")  # not cut off
    assert "ValueError: boom" in status["message"] and "ValueError: boom" in status["job"]["message"]
    assert len(status["job"]["message"]) <= C.MAX_MESSAGE


def test_the_engines_own_reason_still_comes_first() -> None:
    s = spec(backoffLimit=0)
    ray = RayJob("FAILED", RAY_FAILED, "JOB_ENTRYPOINT_COMMAND_ERROR")
    p = plan(s, job(status="RUNNING"), ray, cluster_ready=True, fits=True, now=NOW)
    failed_report = report("failed", reason="NodeError", message="node 'client_0' raised in train(): ValueError('x')")
    status = fold(job(status="RUNNING"), observe(s, plan=p, ray_job=ray, report=failed_report))
    assert cond(status, C.FAILED) == ("True", "NodeError")
    assert "ValueError('x')" in status["message"]
