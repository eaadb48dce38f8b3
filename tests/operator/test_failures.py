"""Failed passes: what they say, when the next try comes, and when the liveness probe gives up."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from kubernetes.client.exceptions import ApiException
from red_operator import conditions as C
from red_operator.failures import Backoff, Failure, Heartbeat, backoff_seconds, describe, failure_conditions

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("failures", "wait"), [(0, 0.0), (1, 2.0), (2, 4.0), (3, 8.0), (7, 128.0), (8, 256.0), (9, 300.0), (500, 300.0)]
)
def test_backoff_doubles_up_to_the_cap(failures: int, wait: float) -> None:
    assert backoff_seconds(failures, base=2.0, cap=300.0) == wait


def api_error(status: int, message: str, call: str = "create_namespaced_custom_object") -> ApiException:
    err = ApiException(status=status, reason="Unprocessable Entity")
    err.body = json.dumps({"kind": "Status", "message": message})
    err.red_call = call  # type: ignore[attr-defined]
    return err


@pytest.mark.parametrize(
    ("err", "code", "permanent", "text"),
    [
        (api_error(422, 'RayCluster "x" is invalid: quantities must match'), 422, True, "HTTP 422: RayCluster"),
        (api_error(403, "forbidden: cannot create"), 403, True, "create_namespaced_custom_object: HTTP 403"),
        (api_error(409, "conflict"), 409, False, "HTTP 409"),
        (api_error(429, "slow down"), 429, False, "HTTP 429"),
        (api_error(503, "unavailable"), 503, False, "HTTP 503"),
        (TimeoutError("read timed out"), None, False, "TimeoutError: read timed out"),
    ],
)
def test_describe(err: Exception, code: int | None, permanent: bool, text: str) -> None:
    f = describe(err)
    assert (f.code, f.permanent) == (code, permanent)
    assert text in f.message, f.message


def test_failure_conditions_keep_the_rest() -> None:
    prev = C.merge(
        [], [C.Condition(C.READY, "False", "Starting", ""), C.Condition(C.STALLED, "False", "Progressing", "")],
        generation=1, now="t1",
    )
    out = failure_conditions(prev, Failure(422, "create: HTTP 422: bad quantity"), 4.0, generation=2, now="t2")
    by = {c["type"]: c for c in out}
    assert (by[C.SYNCED]["status"], by[C.SYNCED]["reason"]) == ("False", "ApiError")
    assert "retrying in 4 s" in by[C.SYNCED]["message"]
    assert (by[C.STALLED]["status"], by[C.STALLED]["reason"]) == ("True", "ApiError")
    assert by[C.READY] == prev[0]  # untouched, its observedGeneration too
    transient = failure_conditions(prev, Failure(503, "HTTP 503"), 2.0, generation=2, now="t2")
    assert {c["type"]: c["status"] for c in transient}[C.STALLED] == "False"


def test_backoff_per_federation() -> None:
    b = Backoff(base=2.0, cap=10.0)
    assert b.due("a", NOW)
    assert [b.failed("a", NOW) for _ in range(4)] == [2.0, 4.0, 8.0, 10.0]
    assert not b.due("a", NOW + timedelta(seconds=9)) and b.due("a", NOW + timedelta(seconds=10))
    assert b.remaining("a", NOW + timedelta(seconds=7)) == 3.0  # the controller requeues then
    assert b.remaining("a", NOW + timedelta(seconds=11)) == 0.0
    assert b.due("b", NOW)
    b.succeeded("a")
    assert b.due("a", NOW) and b.failed("a", NOW) == 2.0


def test_heartbeat_says_when_reconciles_are_stuck() -> None:
    h = Heartbeat()
    assert h.stuck(NOW + timedelta(hours=1), 60) is None  # no Federation: nothing to judge
    t = h.started("a", NOW)
    assert h.stuck(NOW + timedelta(seconds=30), 60) is None
    reason = h.stuck(NOW + timedelta(seconds=61), 60)
    assert reason is not None and "running for 61 s" in reason
    h.finished(t, NOW + timedelta(seconds=62))
    assert h.stuck(NOW + timedelta(seconds=100), 60) is None
    reason = h.stuck(NOW + timedelta(seconds=200), 60)  # a Federation exists, no pass for 138 s
    assert reason is not None and "no reconcile pass finished for 138 s" in reason
    # Event-driven: a finished Federation sees no pass for minutes. A worker back at an empty queue
    # shows the operator responsive.
    h.idle(NOW + timedelta(seconds=190))
    assert h.stuck(NOW + timedelta(seconds=200), 60) is None
    assert h.stuck(NOW + timedelta(seconds=260), 60) is not None
    h.forget("a")
    assert h.stuck(NOW + timedelta(seconds=300), 60) is None
