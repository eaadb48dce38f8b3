"""The kopf handlers: thin. A timer reconciles each Federation level-based; deletion cleans up.

A timer (not create/update handlers) because the truth changes outside the Federation object: pods
schedule, the Ray job advances, the engine writes its report. Every pass observes everything again, so
an operator restart loses nothing: all state lives in the cluster and in `status`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from red.spec.model import GROUP, PLURAL, VERSION
from red_operator import metrics, names
from red_operator.failures import Heartbeat
from red_operator.reconcile import Reconciler
from red_operator.settings import Settings

log = logging.getLogger(__name__)


def build_registry(reconciler: Reconciler, settings: Settings) -> kopf.OperatorRegistry:
    """Register the handlers on a fresh registry (so tests and `main` can build their own)."""
    registry = kopf.OperatorRegistry()
    heartbeat = Heartbeat()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A custom registry has no default login handlers: use the same credentials as our client.
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=names.GROUP_PREFIX)
        settings.persistence.finalizer = names.FINALIZER
        settings.execution.max_workers = reconciler.settings.workers
        settings.posting.level = logging.WARNING  # our own Events are posted explicitly
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60

    @kopf.timer(GROUP, VERSION, PLURAL, interval=settings.reconcile_interval_seconds, registry=registry)
    def reconcile(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        lock = _lock(memo)
        token = heartbeat.started(str(body.metadata.uid), datetime.now(UTC))
        try:
            with lock:
                # A failed pass is handled in `run` (condition, Event, our own backoff), not by kopf's
                # retries (a minute for timers, and silent).
                outcome = reconciler.run(plain(body))
        finally:
            heartbeat.finished(token, datetime.now(UTC))
        if outcome.skipped:
            return
        if outcome.error_kind is not None:
            metrics.RECONCILES.labels(result="error").inc()
            metrics.ERRORS.labels(error=outcome.error_kind).inc()
        else:
            metrics.RECONCILES.labels(result="written" if outcome.written else "unchanged").inc()
        for kind, reason, message in outcome.events:
            kopf.event(body, type=kind, reason=reason, message=message)

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def delete(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
        with _lock(memo):
            removed = reconciler.cleanup(plain(body))
        heartbeat.forget(str(body.metadata.uid))
        logger.info("removed: %s", ", ".join(removed) or "nothing")

    @kopf.on.probe(id="federations", registry=registry)
    def probe(**_: Any) -> str:
        stuck = heartbeat.stuck(datetime.now(UTC), settings.stuck_after_seconds)
        if stuck is not None:
            # Permanent: kopf then answers the liveness endpoint with an error at once (no retries).
            raise kopf.PermanentError(f"reconciles are stuck: {stuck}")
        return "ok"

    return registry


def plain(obj: Any) -> Any:
    """A deep copy made of plain dicts and lists: kopf's Body is a live view that changes under us."""
    if isinstance(obj, Mapping):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain(v) for v in obj]
    return obj


_locks_guard = threading.Lock()


def _lock(memo: kopf.Memo) -> threading.Lock:
    with _locks_guard:
        lock = memo.get("lock")
        if lock is None:
            lock = memo["lock"] = threading.Lock()
        return lock  # type: ignore[no-any-return]
