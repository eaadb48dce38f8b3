"""The event-driven controller: watch events in, one reconcile per Federation at a time, out on workers.

    Federation events (kopf) ─┐
    RayCluster events ────────┤   key = (namespace, federation)
    Ray pod events ───────────┼──▶ WorkQueue ──▶ N worker threads ──▶ Reconciler.run(body)
    resync (minutes) ─────────┘      ▲                                       │
                                     └── requeue after (requeue.py) ◀────────┘

`Reconciler.run` does the pass, or says the Federation is backing off after a failed one (`failures`:
the Synced condition, the Warning Event, the doubling wait); the controller only turns "when next"
into a delayed queue add, so there is one retry mechanism. What keeps it cheap: the reconciler reads
RayClusters and Ray pods from informer caches (`cached_kube`) and derives tokens (`tokens`), so a pass
over a finished Federation sends no request; the watch event of our own status write is recognised by
its resourceVersion and dropped; a terminal Federation is not requeued at all (its TTL aside).

Deletion stays with kopf's finalizer handler (`handlers.delete`), which takes the same per-key lock.
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from datetime import UTC, datetime
from typing import Any

from red.spec.status import Phase
from red_operator import metrics, names
from red_operator.cached_kube import CachedKube
from red_operator.decide import parse_time
from red_operator.events import EventPoster
from red_operator.failures import Heartbeat
from red_operator.reconcile import Outcome, Reconciler
from red_operator.requeue import next_pass_seconds
from red_operator.settings import Settings
from red_operator.workqueue import WorkQueue

log = logging.getLogger(__name__)

Key = tuple[str, str]

IDLE_POLL_SECONDS = 5.0
"""A worker with nothing to do comes back this often, which tells the liveness probe it is not stuck."""


def _rv(obj: dict[str, Any]) -> str:
    return str(obj["metadata"].get("resourceVersion") or "")


def newer_or_same(candidate: str, current: str) -> bool:
    """resourceVersions are opaque, but etcd's are integers: compare those, trust anything else."""
    if candidate.isdigit() and current.isdigit():
        return int(candidate) >= int(current)
    return True


def _borrowed(fed: dict[str, Any]) -> str | None:
    name: str | None = ((fed.get("spec") or {}).get("cluster") or {}).get("existingCluster")
    return name


class Controller:
    def __init__(self, reconciler: Reconciler, kube: CachedKube, poster: EventPoster, settings: Settings) -> None:
        self.reconciler = reconciler
        self.kube = kube
        self.poster = poster
        self.settings = settings
        self.queue: WorkQueue[Key] = WorkQueue()
        self.heartbeat = Heartbeat()
        self._lock = threading.Lock()
        self._feds: dict[Key, dict[str, Any]] = {}
        self._own_writes: dict[Key, str] = {}
        self._key_locks: dict[Key, threading.Lock] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        kube.on_status_written = self.on_status_written
        metrics.QUEUE_DEPTH.set_function(self.queue.depth)

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self, *, sync_timeout_seconds: float = 120) -> None:
        if not self.kube.caches.start(sync_timeout_seconds):
            raise RuntimeError(
                f"the RayCluster and pod caches did not fill within {sync_timeout_seconds:.0f} s: "
                "check the operator's RBAC (list and watch) and the API server"
            )
        for i in range(self.settings.workers):
            t = threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._resync, name="resync", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self, timeout_seconds: float = 8.0) -> None:
        """Stop taking work and wait for the passes in flight, all together at most `timeout_seconds`:
        a rolling update's SIGTERM must end in time for the Lease to be released (the threads are daemons,
        and a pass cut short is redone by the next leader: every step is idempotent)."""
        t0 = time.monotonic()
        self._stop.set()
        self.queue.shutdown()
        self.kube.caches.stop()
        deadline = t0 + timeout_seconds
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        busy = [t.name for t in self._threads if t.is_alive()]
        log.info(
            "controller stopped in %.1f s%s", time.monotonic() - t0, f" ({', '.join(busy)} still busy)" if busy else ""
        )

    # --- inputs -----------------------------------------------------------------------------------
    def on_federation(self, event_type: str | None, body: dict[str, Any]) -> None:
        """Every Federation watch event (kopf's `on.event`), with a plain copy of the body."""
        key: Key = (body["metadata"]["namespace"], body["metadata"]["name"])
        if event_type == "DELETED":
            with self._lock:
                self._feds.pop(key, None)
                self._own_writes.pop(key, None)
                self._key_locks.pop(key, None)
            self.queue.discard(key)
            self.heartbeat.forget(str(body["metadata"].get("uid") or ""))
            return
        rv = _rv(body)
        with self._lock:
            current = self._feds.get(key)
            if current is not None and not newer_or_same(rv, _rv(current)):
                return  # older than what our own write returned: nothing new
            self._feds[key] = body
            ours = self._own_writes.get(key) == rv
        if not ours:
            self.queue.add(key)

    def on_status_written(self, written: dict[str, Any]) -> None:
        key: Key = (written["metadata"]["namespace"], written["metadata"]["name"])
        with self._lock:
            self._own_writes[key] = _rv(written)
            current = self._feds.get(key)
            if current is None or newer_or_same(_rv(written), _rv(current)):
                self._feds[key] = written

    def on_owned(self, kind: str, obj: dict[str, Any], deleted: bool) -> None:
        """An event on a RayCluster or a Ray pod: wake the Federation it belongs to."""
        meta = obj["metadata"]
        ns = meta.get("namespace", "")
        fed = (meta.get("labels") or {}).get(names.LABEL_FEDERATION)
        if fed:
            self.queue.add((ns, fed))
            return
        if kind == "RayCluster":  # maybe borrowed (`existingCluster`) by some Federations
            with self._lock:
                borrowers = [k for k, b in self._feds.items() if k[0] == ns and _borrowed(b) == meta["name"]]
            for k in borrowers:
                self.queue.add(k)

    def lock(self, key: Key) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def federation(self, key: Key) -> dict[str, Any] | None:
        with self._lock:
            body = self._feds.get(key)
            return copy.deepcopy(body) if body is not None else None

    def forget(self, key: Key, uid: str) -> None:
        """After the delete handler's cleanup: nothing about this Federation is pending any more."""
        self.queue.discard(key)
        self.heartbeat.forget(uid)

    # --- workers ----------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=IDLE_POLL_SECONDS)
            if key is None:
                self.heartbeat.idle(datetime.now(UTC))
                continue
            try:
                self._process(key)
            except Exception:  # a worker must survive anything; the resync comes back to this key
                log.exception("reconcile of %s/%s: unexpected error", key[0], key[1])
            finally:
                self.queue.done(key)

    def _process(self, key: Key) -> None:
        with self.lock(key):
            body = self.federation(key)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return  # gone, or kopf's delete handler owns it now
            prev_phase = (body.get("status") or {}).get("phase")
            uid = str(body["metadata"].get("uid") or "")
            token = self.heartbeat.started(uid, datetime.now(UTC))
            started = time.perf_counter()
            try:
                outcome = self.reconciler.run(body)
            finally:
                self.heartbeat.finished(token, datetime.now(UTC))
            if not outcome.skipped:
                metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        self._account(body, outcome)
        now = datetime.now(UTC)
        phase = outcome.status.get("phase")
        if phase == Phase.RUNNING and prev_phase != Phase.RUNNING:
            created = parse_time(body["metadata"].get("creationTimestamp"))
            if created is not None and (outcome.status.get("job") or {}).get("attempts") == 1:
                metrics.APPLY_TO_RUNNING.observe((now - created).total_seconds())
        if outcome.error_kind is None and outcome.written and phase != prev_phase:
            # The next decision reads this status (e.g. a TTL of 0 deletes the cluster on the pass after
            # Succeeded), and the watch event of our own write is dropped: so one more pass, now.
            self.queue.add(key)
            return
        after = next_pass_seconds(
            outcome.status,
            body.get("spec") or {},
            now,
            starting_seconds=self.settings.starting_poll_seconds,
            running_seconds=self.settings.job_poll_seconds,
            retry_seconds=outcome.retry_seconds,
        )
        if after is not None:
            self.queue.add_after(key, after)

    def _account(self, body: dict[str, Any], outcome: Outcome) -> None:
        """Metrics and Events of a pass (none for one skipped while backing off)."""
        if outcome.skipped:
            return
        if outcome.error_kind is not None:
            metrics.RECONCILES.labels(result="error").inc()
            metrics.ERRORS.labels(error=outcome.error_kind).inc()
        else:
            metrics.RECONCILES.labels(result="written" if outcome.written else "unchanged").inc()
        for event in outcome.events:
            self.poster.post(body, event.type, event.reason, event.message)

    def _resync(self) -> None:
        period = self.settings.resync_seconds
        while not self._stop.wait(period):
            with self._lock:
                keys = list(self._feds)
            # Spread over a tenth of the period: a thousand Federations are not all reconciled in one go.
            for key in keys:
                self.queue.add_after(key, random.uniform(0, period / 10))
