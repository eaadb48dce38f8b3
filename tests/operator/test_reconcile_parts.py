"""The reconcile pass's pure parts, one table each: the Events a status change makes, the plan a pass
carries out, what it hands to `fold`, and what a deletion looks at (also when the spec no longer parses).
The steps that call the API are exercised against the real API server in test_operator_cluster.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from red_operator import names
from red_operator.decide import Plan, RayJob
from red_operator.events import Event, status_events
from red_operator.names import FederationRef
from red_operator.readiness import ClusterObservation
from red_operator.reconcile import (
    Acted,
    Claim,
    Seen,
    cluster_to_clean,
    observation,
    owned_for_cleanup,
    parse_for_cleanup,
    plan,
)
from red_operator.sizing import size_cluster
from red_operator.status import Blocked

from red.spec.status import parse_report
from tests.operator.helpers import spec

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REF = FederationRef("fl", "ns", "1234abcd-0000")
READY = ClusterObservation(True, True, "ClusterReady", "ok", 1, 1, "svc")
URL = "http://fl-ray-head-svc.ns.svc:8265"
BLOCKED = Blocked("NameConflict", "ConfigMap ns/fl-report is someone else's")
RUNNING = {"job": {"submissionId": "red-fl-1234abcd-1", "attempts": 1, "failures": 0, "status": "RUNNING"}}


def cond(type_: str, status: str, reason: str, message: str = "m") -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


# ---------------------------------------------------------------- events
def test_an_event_is_a_typed_record() -> None:
    assert Event.normal("Phase", "m") == Event("Normal", "Phase", "m")
    assert Event.warning("SubmitFailed", "m").type == "Warning"


@pytest.mark.parametrize(
    ("prev", "new", "expect"),
    [
        pytest.param({}, {}, [], id="nothing"),
        pytest.param(
            {"phase": "Running", "conditions": [cond("Ready", "True", "Running")]},
            {"phase": "Running", "conditions": [cond("Ready", "True", "Running", "other words")]},
            [],
            id="only-the-message-changed",
        ),
        pytest.param(
            {},
            {"phase": "Pending", "conditions": [cond("ClusterReady", "True", "Ready"), cond("Ready", "False", "x")]},
            [
                Event("Normal", "ClusterReadyTrue", "ClusterReady=True (Ready): m"),
                Event("Normal", "Phase", "phase - -> Pending"),
            ],
            id="first-status-new-true-conditions-only",
        ),
        pytest.param(
            {},
            {
                "phase": "Pending",
                "conditions": [cond("Reconciling", "True", "Pending"), cond("Synced", "True", "Synced")],
            },
            [Event("Normal", "Phase", "phase - -> Pending")],
            id="first-status-reconciling-and-synced-are-quiet",
        ),
        pytest.param(
            {"phase": "Pending", "conditions": [cond("Synced", "False", "ApiError", "boom")]},
            {"phase": "Pending", "conditions": [cond("Synced", "True", "Synced", "ok")]},
            [Event("Normal", "SyncedTrue", "Synced=True (Synced): ok")],
            id="synced-again-after-an-error-is-news",
        ),
        pytest.param(
            {"phase": "Running", "conditions": [cond("Stalled", "False", "Progressing")]},
            {"phase": "Running", "conditions": [cond("Stalled", "True", "NoProgress", "silent")]},
            [Event("Warning", "StalledTrue", "Stalled=True (NoProgress): silent")],
            id="bad-news-is-a-warning",
        ),
        pytest.param(
            {"phase": "Starting", "conditions": [cond("ClusterReady", "False", "Creating")]},
            {"phase": "Running", "conditions": [cond("ClusterReady", "True", "ClusterReady", "ok")]},
            [
                Event("Normal", "ClusterReadyTrue", "ClusterReady=True (ClusterReady): ok"),
                Event("Normal", "Phase", "phase Starting -> Running"),
            ],
            id="good-news-and-phase",
        ),
    ],
)
def test_status_events(prev: dict[str, Any], new: dict[str, Any], expect: list[Event]) -> None:
    assert status_events(prev, new) == expect


# ---------------------------------------------------------------- the federation reference
def test_federation_ref_from_a_body() -> None:
    body = {"metadata": {"name": "fl", "namespace": "ns", "uid": "1234abcd-0000", "generation": 3}}
    assert FederationRef.of(body) == REF and str(REF) == "ns/fl"
    assert FederationRef.of({"metadata": {"name": "fl", "namespace": "ns"}}).uid == ""


# ---------------------------------------------------------------- plan
@pytest.mark.parametrize(
    ("prev", "seen", "expect"),
    [
        pytest.param(
            {},
            Seen(ClusterObservation(False), URL),
            Plan("ensure", "none", 0, False, 0),
            id="first-pass-creates-the-cluster",
        ),
        pytest.param(
            {"job": {**RUNNING["job"], "attempts": 2, "failures": 1}},
            Seen(READY, URL, blocked=BLOCKED, ray_job=RayJob("FAILED")),
            Plan("leave", "none", 2, False, 1, why="NameConflict"),
            id="blocked-touches-and-counts-nothing",
        ),
        pytest.param(
            RUNNING,
            Seen(
                READY,
                URL,
                ray_job=RayJob("FAILED", "exit 1"),
                report=parse_report(
                    {"event": "failed", "federation": "fl", "round": 1, "rounds": 3, "reason": "SpecError"}
                ),
            ),
            Plan("ensure", "none", 1, False, 1, terminal_failure=True),
            id="engine-spec-error-is-not-retried",
        ),
    ],
)
def test_plan(prev: dict[str, Any], seen: Seen, expect: Plan) -> None:
    s = spec(clients=2, rounds=3)
    got = plan(s, prev, seen, size_cluster(s), NOW)
    assert (got.cluster, got.job, got.attempt, got.resume, got.failures, got.terminal_failure) == (
        expect.cluster,
        expect.job,
        expect.attempt,
        expect.resume,
        expect.failures,
        expect.terminal_failure,
    )
    if seen.blocked is not None:
        assert got.why == seen.blocked.reason


# ---------------------------------------------------------------- what fold gets
OURS = {"metadata": {"name": "fl-ray", "uid": "rc"}}


@pytest.mark.parametrize(
    ("claim", "acted", "expect"),
    [
        pytest.param(
            Claim("fl-ray", None, None),
            Acted(Plan("ensure", "none", 0, False, 0), Seen(ClusterObservation(False), URL)),
            {"cluster_name": "fl-ray", "cluster_existing": False, "dashboard_url": None, "submission_id": None},
            id="no-cluster-no-dashboard",
        ),
        pytest.param(
            Claim("shared", "shared", OURS),
            Acted(Plan("leave", "none", 1, False, 0), Seen(READY, URL, submission_id="red-fl-1234abcd-1")),
            {
                "cluster_name": "shared",
                "cluster_existing": True,
                "dashboard_url": URL,
                "submission_id": "red-fl-1234abcd-1",
            },
            id="borrowed",
        ),
        pytest.param(
            Claim("fl-ray", None, OURS),
            Acted(Plan("ensure", "submit", 2, False, 1), Seen(READY, URL, submission_id="red-fl-1"), "red-fl-2"),
            {"cluster_name": "fl-ray", "cluster_existing": False, "dashboard_url": URL, "submission_id": "red-fl-2"},
            id="this-pass-submission-wins",
        ),
    ],
)
def test_observation(claim: Claim, acted: Acted, expect: dict[str, Any]) -> None:
    s = spec(clients=2, rounds=3)
    obs = observation(3, NOW, s, size_cluster(s), claim, acted)
    assert {k: getattr(obs, k) for k in expect} == expect
    assert (obs.plan, obs.cluster, obs.blocked) == (acted.plan, acted.seen.cluster, acted.seen.blocked)


# ---------------------------------------------------------------- deletion
@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        pytest.param({"clients": 2, "rounds": 3}, None, id="own-cluster"),
        pytest.param({"clients": 2, "rounds": 3, "cluster": {"existingCluster": "shared"}}, "shared", id="borrowed"),
        pytest.param({"clients": "many", "cluster": {"existingCluster": "shared"}}, "shared", id="unparsable-borrowed"),
        pytest.param({"clients": "many"}, None, id="unparsable-own"),
        pytest.param({"clients": "many", "cluster": "oops"}, None, id="unparsable-cluster-not-a-mapping"),
        pytest.param({"clients": "many", "cluster": {"existingCluster": 7}}, None, id="unparsable-name-not-a-string"),
        pytest.param(None, None, id="no-spec"),
        pytest.param(["not", "a", "mapping"], None, id="spec-not-a-mapping"),
    ],
)
def test_cluster_to_clean(raw: Any, expect: str | None) -> None:
    assert cluster_to_clean(parse_for_cleanup(raw, REF), raw) == expect


def test_cleanup_does_not_need_the_registry() -> None:
    """A Federation naming a task this operator does not know is still deleted like any other."""
    raw = {"clients": 2, "rounds": 3, "task": {"name": "nobody-registered-this"}}
    parsed = parse_for_cleanup(raw, REF)
    assert parsed is not None and parsed.task.name == "nobody-registered-this"


@pytest.mark.parametrize(
    ("existing", "expect"),
    [
        pytest.param(
            None,
            [
                ("RayCluster", names.raycluster("fl")),
                ("RoleBinding", "fl-engine"),
                ("Role", "fl-engine"),
                ("ServiceAccount", "fl-engine"),
                ("ConfigMap", "fl-report"),
            ],
            id="own-cluster",
        ),
        pytest.param(
            "shared",
            [
                ("RoleBinding", "fl-engine"),
                ("Role", "fl-engine"),
                ("ServiceAccount", "fl-engine"),
                ("ConfigMap", "fl-report"),
            ],
            id="a-borrowed-cluster-is-never-deleted",
        ),
    ],
)
def test_owned_for_cleanup(existing: str | None, expect: list[tuple[str, str]]) -> None:
    assert owned_for_cleanup(REF, existing) == expect
