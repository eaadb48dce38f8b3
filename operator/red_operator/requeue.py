"""When to reconcile a Federation again although no watch event came. Pure.

Watch events (the Federation, its RayCluster, its report ConfigMap, its Ray pods) start most passes.
Time starts the rest, only where the truth lives outside the API server or in the clock:

* starting (Pending, Starting): a few seconds. Ray's job status (PENDING -> RUNNING) lives in the
  dashboard, and readiness is double-checked although pod and RayCluster events already wake us;
* Running: the job-status poll interval (the dashboard again; the stall deadline is checked then too);
* Succeeded/Failed: nothing, except the moment `ttlSecondsAfterFinished` runs out;
* Suspended: nothing (only an edit of the Federation resumes it);
* after a failed pass (or one skipped while backing off): when `failures.Backoff` says, whatever the
  phase. That backoff is the only retry mechanism; this module only turns it into a time to wake.

The controller's slow resync (minutes) is the safety net under all of these.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from red.spec.status import Phase
from red_operator.decide import TERMINAL_PHASES, parse_time

TTL_SLACK_SECONDS = 0.5
"""Wake a little after the TTL runs out, never a little before (that pass would find nothing to do)."""


def next_pass_seconds(
    status: dict[str, Any],
    spec: dict[str, Any],
    now: datetime,
    *,
    starting_seconds: float,
    running_seconds: float,
    retry_seconds: float | None = None,
) -> float | None:
    """Seconds until the next timed pass, or None for "only when something changes". `retry_seconds`:
    the pass failed (or was skipped for backoff) and the Federation's backoff is due then."""
    if retry_seconds is not None:
        return retry_seconds
    phase = status.get("phase")
    if phase in TERMINAL_PHASES:
        ttl = spec.get("ttlSecondsAfterFinished")
        done = parse_time(status.get("completionTime"))
        if ttl is None or done is None:
            return None
        left = (done + timedelta(seconds=int(ttl)) - now).total_seconds()
        # Expired already: the pass that just ran acted on it (the RayCluster's deletion wakes us again).
        return left + TTL_SLACK_SECONDS if left > 0 else None
    if phase == Phase.SUSPENDED:
        return None
    if phase == Phase.RUNNING:
        return running_seconds
    return starting_seconds
