"""When a reconcile pass fails: what to say, when to try again, and whether the operator is stuck.

A pass that raises (the API server answered 422 to a RayCluster whose `cpusPerWorker` is "4 cores", a
403 from missing RBAC, a timeout) is not retried at once in silence: the Federation gets a `Synced=False`
condition naming the call and the answer, a Warning Event, and the next try waits `backoff_seconds(n)`
(doubling, capped). This is the only retry mechanism: the controller queues the Federation again when
`Backoff` says (`requeue.next_pass_seconds`), and a watch event that comes earlier finds it still
backing off. An answer that will not change by waiting (4xx other than 409/429) also sets
`Stalled=True` so `kubectl wait` and kstatus see it.

`Heartbeat` feeds the liveness probe: the operator is stuck when a pass runs longer than the limit,
or when Federations exist but no worker finished a pass or came back to the queue within it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from red_operator import conditions as C

TRANSIENT_CODES = frozenset({408, 409, 429})


def backoff_seconds(failures: int, *, base: float, cap: float) -> float:
    """The wait after the `failures`-th consecutive failure: base, 2 base, 4 base, ... at most cap."""
    if failures <= 0:
        return 0.0
    return float(min(cap, base * 2 ** min(failures - 1, 30)))


@dataclass(frozen=True)
class Failure:
    code: int | None
    """The HTTP status of a Kubernetes API error; None for anything else (a timeout, a bug)."""
    message: str

    @property
    def permanent(self) -> bool:
        """Waiting will not fix it: a 4xx that is not a conflict, a timeout or throttling."""
        return self.code is not None and 400 <= self.code < 500 and self.code not in TRANSIENT_CODES


def describe(err: BaseException) -> Failure:
    """What went wrong, in one line: the call, the HTTP status and the API server's own message."""
    status = getattr(err, "status", None)
    call = getattr(err, "red_call", None)
    prefix = f"{call}: " if call else ""
    if isinstance(status, int) and status > 0:
        body = getattr(err, "body", None)
        detail = str(getattr(err, "reason", "") or "")
        try:
            parsed = json.loads(body) if body else None
            if isinstance(parsed, dict) and parsed.get("message"):
                detail = str(parsed["message"])
        except (TypeError, ValueError):
            if body:
                detail = str(body)[:500]
        return Failure(status, f"{prefix}HTTP {status}: {detail}"[: C.MAX_MESSAGE])
    return Failure(None, f"{prefix}{type(err).__name__}: {err}"[: C.MAX_MESSAGE])


def failure_conditions(
    previous: list[dict[str, Any]], failure: Failure, retry_seconds: float, *, generation: int, now: str
) -> list[dict[str, Any]]:
    """The stored conditions with `Synced=False` (and `Stalled=True` when waiting will not help)."""
    msg = f"{failure.message} (retrying in {retry_seconds:g} s)"
    new = [C.Condition(C.SYNCED, "False", "ApiError" if failure.code else "ReconcileError", msg)]
    if failure.permanent:
        new.append(C.Condition(C.STALLED, "True", "ApiError", msg))
    replaced = {c.type for c in new}
    kept = [
        C.Condition(c["type"], c["status"], c.get("reason", ""), c.get("message", ""))
        for c in previous
        if c.get("type") not in replaced
    ]
    merged = C.merge(previous, [*kept, *new], generation=generation, now=now)
    # Conditions that did not change keep their own observedGeneration.
    old = {c.get("type"): c for c in previous}
    for c in merged:
        if c["type"] not in replaced and c["type"] in old:
            c["observedGeneration"] = old[c["type"]].get("observedGeneration", generation)
    return merged


class Backoff:
    """Consecutive failures per Federation (by uid), and when the next pass is due. Thread-safe."""

    def __init__(self, *, base: float, cap: float) -> None:
        self.base, self.cap = base, cap
        self._failures: dict[str, int] = {}
        self._due: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def due(self, uid: str, now: datetime) -> bool:
        return self.remaining(uid, now) <= 0

    def remaining(self, uid: str, now: datetime) -> float:
        """Seconds until the next try is due (0 when it is)."""
        with self._lock:
            at = self._due.get(uid)
            return 0.0 if at is None else max(0.0, (at - now).total_seconds())

    def failed(self, uid: str, now: datetime) -> float:
        """Record a failure; returns the seconds until the next try."""
        with self._lock:
            n = self._failures.get(uid, 0) + 1
            self._failures[uid] = n
            wait = backoff_seconds(n, base=self.base, cap=self.cap)
            self._due[uid] = now + timedelta(seconds=wait)
            return wait

    def succeeded(self, uid: str) -> None:
        with self._lock:
            self._failures.pop(uid, None)
            self._due.pop(uid, None)


class Heartbeat:
    """Pass starts and ends per Federation, for the liveness probe. Thread-safe. A pass skipped for
    backoff counts as finished, and so does a worker that found the queue empty (`idle`): reconciles are
    event-driven, so a finished Federation may see no pass for many minutes while all is well."""

    def __init__(self) -> None:
        self._running: dict[int, datetime] = {}
        self._known: set[str] = set()
        self._last_progress: datetime | None = None
        self._lock = threading.Lock()
        self._next = 0

    def started(self, uid: str, now: datetime) -> int:
        with self._lock:
            if not self._known:
                self._last_progress = now
            self._known.add(uid)
            self._next += 1
            self._running[self._next] = now
            return self._next

    def finished(self, token: int, now: datetime) -> None:
        with self._lock:
            self._running.pop(token, None)
            self._last_progress = now

    def idle(self, now: datetime) -> None:
        """A worker came back to the queue and found nothing due: the operator is responsive."""
        with self._lock:
            self._last_progress = now

    def forget(self, uid: str) -> None:
        """The Federation is gone: no pass of it is expected any more."""
        with self._lock:
            self._known.discard(uid)

    def stuck(self, now: datetime, limit_seconds: float) -> str | None:
        """Why the operator is stuck, or None. With no Federation there is nothing to judge."""
        limit = timedelta(seconds=limit_seconds)
        with self._lock:
            if self._running:
                oldest = min(self._running.values())
                if now - oldest > limit:
                    return (
                        f"a reconcile pass has been running for {int((now - oldest).total_seconds())} s "
                        f"(limit {limit_seconds:g} s)"
                    )
            since = self._last_progress
            if self._known and since is not None and now - since > limit:
                silent = int((now - since).total_seconds())
                return f"no reconcile pass finished for {silent} s (limit {limit_seconds:g} s)"
        return None
