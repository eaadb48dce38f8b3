"""Kubernetes Events on a Federation: the `Event` a reconcile pass decides to post, the ones a status
change makes (pure), and posting them from any thread (kopf's `kopf.event` works only inside its
handlers, and reconciles run on the controller's own workers)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from red_operator import conditions, names

log = logging.getLogger(__name__)

MAX_MESSAGE = 1024  # the API server refuses longer event messages

EventType = Literal["Normal", "Warning"]


@dataclass(frozen=True)
class Event:
    """One Event to post on the Federation: `kubectl describe federation` shows them."""

    type: EventType
    reason: str
    message: str

    @classmethod
    def normal(cls, reason: str, message: str) -> Event:
        return cls("Normal", reason, message)

    @classmethod
    def warning(cls, reason: str, message: str) -> Event:
        return cls("Warning", reason, message)


def status_events(prev: dict[str, Any], new: dict[str, Any]) -> list[Event]:
    """The Events a status change makes: one per condition whose status or reason changed (a Warning
    when it is bad news), and one when the phase moved. Pure."""
    out = [
        Event(
            "Warning" if conditions.is_bad_news(c) else "Normal",
            f"{c['type']}{c['status']}",
            f"{c['type']}={c['status']} ({c['reason']}): {c['message']}",
        )
        for c in conditions.transitions(prev.get("conditions") or [], new.get("conditions") or [])
    ]
    if prev.get("phase") != new.get("phase"):
        out.append(Event.normal("Phase", f"phase {prev.get('phase') or '-'} -> {new.get('phase')}"))
    return out


def build_event(body: dict[str, Any], type_: str, reason: str, message: str, now: datetime) -> dict[str, Any]:
    """A core/v1 Event about `body`. Pure."""
    meta = body["metadata"]
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:MAX_MESSAGE],
        "source": {"component": names.MANAGER},
        "reportingComponent": names.MANAGER,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventPoster:
    def __init__(self, api: client.ApiClient, timeout_seconds: float = 30.0) -> None:
        self.core: Any = client.CoreV1Api(api)
        self.timeout = timeout_seconds

    def post(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        event = build_event(body, type_, reason, message, datetime.now(UTC))
        try:
            self.core.create_namespaced_event(body["metadata"]["namespace"], event, _request_timeout=self.timeout)
        except Exception as err:  # an event is informative: never fail a reconcile over one (nor a timeout)
            why = err.reason if isinstance(err, ApiException) else repr(err)
            log.warning("could not post event %s on %s: %s", reason, body["metadata"]["name"], why)
