"""The event-driven controller: watch events in, one reconcile per Federation at a time, out on workers.

    Federation events (kopf) ─┐
    RayCluster events ────────┤   key = (namespace, federation)
    report ConfigMap events ──┼──▶ WorkQueue ──▶ N worker threads ──▶ Reconciler.reconcile(body)
    Ray pod events ───────────┤      ▲                                       │
    resync (minutes) ─────────┘      └── requeue after (requeue.py) ◀────────┘ or backoff on error

What keeps it cheap: the reconciler reads informer caches (`cached_kube`), so a pass that changes
nothing sends no request; the watch event of our own status write is recognised by its resourceVersion
and dropped; a terminal Federation is not requeued at all (its TTL aside).

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

from red_operator import metrics, names
from red_operator.cached_kube import CachedKube
from red_operator.decide import parse_time
from red_operator.events import EventPoster
from red_operator.reconcile import Reconciler
from red_operator.requeue import next_pass_seconds
from red_operator.settings import Settings
from red_operator.workqueue import WorkQueue

log = logging.getLogger(__name__)

Key = tuple[str, str]


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
        self.queue: WorkQueue[Key] = WorkQueue(
            backoff_base_seconds=settings.error_backoff_base_seconds,
            backoff_cap_seconds=settings.error_backoff_cap_seconds,
        )
        self._lock = threading.Lock()
        self._feds: dict[Key, dict[str, Any]] = {}
        self._own_writes: dict[Key, str] = {}
        self._key_locks: dict[Key, threading.Lock] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.last_progress = time.monotonic()
        """When a worker last finished a pass or found the queue empty (a liveness probe can read it)."""
        kube.on_status_written = self.on_status_written
        metrics.QUEUE_DEPTH.set_function(self.queue.depth)

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self, *, sync_timeout_seconds: float = 120) -> None:
        if not self.kube.caches.start(sync_timeout_seconds):
            raise RuntimeError(
                f"the RayCluster/ConfigMap/pod caches did not fill within {sync_timeout_seconds:.0f} s: "
                "check the operator's RBAC (list and watch) and the API server"
            )
        for i in range(self.settings.workers):
            t = threading.Thread(target=self._work, name=f"reconcile-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._resync, name="resync", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()
        self.kube.caches.stop()
        for t in self._threads:
            t.join(10)

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
        """An event on a RayCluster, report ConfigMap or Ray pod: wake the Federation it belongs to."""
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

    def forget(self, key: Key) -> None:
        """After the delete handler's cleanup: nothing cached about this Federation is true any more."""
        self.queue.discard(key)
        self.kube.forget_secrets(key[0], names.token_secret(key[1]))

    # --- workers ----------------------------------------------------------------------------------
    def _work(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get(timeout=5)
            self.last_progress = time.monotonic()
            if key is None:
                continue
            try:
                self._process(key)
            finally:
                self.queue.done(key)
                self.last_progress = time.monotonic()

    def _process(self, key: Key) -> None:
        with self.lock(key):
            body = self.federation(key)
            if body is None or body["metadata"].get("deletionTimestamp"):
                self.queue.forget(key)  # gone, or kopf's delete handler owns it now
                return
            prev_phase = (body.get("status") or {}).get("phase")
            started = time.perf_counter()
            try:
                outcome = self.reconciler.reconcile(body)
            except Exception as err:
                delay = self.queue.add_rate_limited(key)
                metrics.RECONCILES.labels(result="error").inc()
                metrics.ERRORS.labels(error=type(err).__name__).inc()
                log.exception("reconcile of %s/%s failed; retrying in %.1f s", key[0], key[1], delay)
                return
            finally:
                metrics.RECONCILE_SECONDS.observe(time.perf_counter() - started)
        self.queue.forget(key)
        metrics.RECONCILES.labels(result="written" if outcome.written else "unchanged").inc()
        for kind, reason, message in outcome.events:
            self.poster.post(body, kind, reason, message)
        now = datetime.now(UTC)
        phase = outcome.status.get("phase")
        if phase == "Running" and prev_phase != "Running":
            created = parse_time(body["metadata"].get("creationTimestamp"))
            if created is not None and (outcome.status.get("job") or {}).get("attempts") == 1:
                metrics.APPLY_TO_RUNNING.observe((now - created).total_seconds())
        if outcome.written and phase != prev_phase:
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
        )
        if after is not None:
            self.queue.add_after(key, after)

    def _resync(self) -> None:
        period = self.settings.resync_seconds
        while not self._stop.wait(period):
            with self._lock:
                keys = list(self._feds)
            # Spread over a tenth of the period: a thousand Federations are not all reconciled in one go.
            for key in keys:
                self.queue.add_after(key, random.uniform(0, period / 10))
