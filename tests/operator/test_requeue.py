"""When a Federation is reconciled without an event: a table of phases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from red_operator.requeue import next_pass_seconds

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "spec", "want"),
    [
        ({}, {}, 3.0),  # new: nothing written yet
        ({"phase": "Pending"}, {}, 3.0),
        ({"phase": "Starting"}, {}, 3.0),
        ({"phase": "Running"}, {}, 5.0),
        ({"phase": "Suspended"}, {}, None),
        ({"phase": "Succeeded", "completionTime": "2026-01-01T11:00:00Z"}, {}, None),
        ({"phase": "Failed", "completionTime": "2026-01-01T11:00:00Z"}, {}, None),
        # TTL still to run: wake just after it
        ({"phase": "Succeeded", "completionTime": "2026-01-01T11:59:50Z"}, {"ttlSecondsAfterFinished": 60}, 50.5),
        # TTL already over: the pass that just ran deleted the cluster
        ({"phase": "Succeeded", "completionTime": "2026-01-01T11:00:00Z"}, {"ttlSecondsAfterFinished": 60}, None),
        ({"phase": "Failed", "completionTime": "2026-01-01T12:00:00Z"}, {"ttlSecondsAfterFinished": 0}, None),
        ({"phase": "Succeeded"}, {"ttlSecondsAfterFinished": 60}, None),  # no completionTime yet
    ],
)
def test_next_pass(status: dict[str, Any], spec: dict[str, Any], want: float | None) -> None:
    assert next_pass_seconds(status, spec, NOW, starting_seconds=3.0, running_seconds=5.0) == want


@pytest.mark.parametrize("phase", [None, "Running", "Succeeded", "Suspended"])
def test_a_failed_pass_waits_for_its_backoff_in_any_phase(phase: str | None) -> None:
    status = {"phase": phase} if phase else {}
    got = next_pass_seconds(status, {}, NOW, starting_seconds=3.0, running_seconds=5.0, retry_seconds=16.0)
    assert got == 16.0
