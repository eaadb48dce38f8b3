"""The kopf handlers: thin. Federation events feed the controller; deletion cleans up.

kopf watches the Federations (one watch for all of them) and owns their finalizer; everything else —
the work queue, the informers of RayClusters and Ray pods, the workers, the backoff of failed passes —
is the controller's (`controller.py`). No timer: a pass runs when a watch event, a due requeue or the
slow resync says so. An operator restart loses nothing: all state lives in the cluster and in
`status`, and the first listing queues every Federation once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from red.spec.model import GROUP, PLURAL, VERSION
from red_operator import names
from red_operator.controller import Controller
from red_operator.settings import Settings

log = logging.getLogger(__name__)


def build_registry(controller: Controller, settings: Settings) -> kopf.OperatorRegistry:
    """Register the handlers on a fresh registry (so tests and `main` can build their own)."""
    registry = kopf.OperatorRegistry()

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        # A custom registry has no default login handlers: use the same credentials as our client.
        return kopf.login_via_client(**kwargs)

    @kopf.on.startup(registry=registry)
    def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=names.GROUP_PREFIX)
        settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=names.GROUP_PREFIX)
        settings.persistence.finalizer = names.FINALIZER
        settings.execution.max_workers = 4  # only the delete handler runs in kopf's threads
        settings.posting.level = logging.WARNING  # our own Events are posted explicitly
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60
        # Before kopf lists the Federations: their first events then find the caches filled.
        controller.start()

    @kopf.on.cleanup(registry=registry)
    def stop(**_: Any) -> None:
        controller.stop()

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    async def federation_event(event: kopf.RawEvent, **_: Any) -> None:
        # Async: no thread hop for what is a dictionary copy and a queue add.
        controller.on_federation(event.get("type"), plain(event["object"]))

    @kopf.on.delete(GROUP, VERSION, PLURAL, registry=registry)
    def delete(body: kopf.Body, logger: kopf.Logger, **_: Any) -> None:
        key = (body.metadata.namespace or "", body.metadata.name or "")
        with controller.lock(key):
            removed = controller.reconciler.cleanup(plain(body))
        controller.forget(key, str(body.metadata.uid or ""))
        logger.info("removed: %s", ", ".join(removed) or "nothing")

    @kopf.on.probe(id="federations", registry=registry)
    def probe(**_: Any) -> str:
        stuck = controller.heartbeat.stuck(datetime.now(UTC), settings.stuck_after_seconds)
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
