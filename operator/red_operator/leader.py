"""Leader election on a coordination.k8s.io Lease (client-go's leaderelection, the parts we need).

Several replicas may run; only the Lease's holder reconciles. The rules:

* A standby tries every `retry` seconds. It takes the Lease when nobody holds it, or when the record
  (holder, renewTime) has not changed for `duration` seconds *by its own clock*: clocks of different
  machines are never compared.
* Every write carries the resourceVersion it read, so two standbys racing for one Lease cannot both win
  (the loser gets 409 Conflict).
* The leader renews every `retry` seconds. One that could not renew for `renew_deadline` seconds
  (shorter than `duration`, so it stops before anyone may take over) calls `on_lost`: the operator exits
  and its pod restarts as a standby. A leader stopping cleanly releases the Lease, so a rolling update
  hands over at once instead of after `duration`.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def micro_time(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def default_identity() -> str:
    """Pod name (the hostname in a pod), process id and a random suffix: unique across restarts."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{os.getpid()}_{uuid.uuid4().hex[:6]}"


def default_namespace(configured: str) -> str:
    if configured:
        return configured
    try:
        with open(SA_NAMESPACE_FILE) as fh:
            return fh.read().strip() or "default"
    except OSError:
        return "default"


@dataclass(frozen=True)
class Record:
    holder: str
    renew_time: str
    transitions: int


def record_of(lease: dict[str, Any]) -> Record:
    spec = lease.get("spec") or {}
    return Record(spec.get("holderIdentity") or "", spec.get("renewTime") or "", int(spec.get("leaseTransitions") or 0))


class LeaderElector:
    def __init__(
        self,
        api: client.ApiClient,
        *,
        namespace: str,
        name: str,
        identity: str,
        duration_seconds: float,
        renew_deadline_seconds: float,
        retry_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not retry_seconds < renew_deadline_seconds < duration_seconds:
            raise ValueError(
                f"leader election needs retry ({retry_seconds}) < renew deadline ({renew_deadline_seconds}) "
                f"< lease duration ({duration_seconds}) seconds: a leader must give up before a standby may take over"
            )
        self.coord: Any = client.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration, self.renew_deadline, self.retry = duration_seconds, renew_deadline_seconds, retry_seconds
        self._clock = clock
        self._observed: Record | None = None
        self._observed_at = 0.0
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    # --- one attempt ------------------------------------------------------------------------------
    def try_acquire_or_renew(self) -> bool:
        """One read and at most one write. True when this replica holds the Lease afterwards."""
        now_wall = micro_time(datetime.now(UTC))
        try:
            lease: dict[str, Any] = self._raw_get()
        except ApiException as err:
            if err.status != 404:
                raise
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(now_wall, now_wall, 0),
            }
            try:
                self.coord.create_namespaced_lease(self.namespace, body)
            except ApiException as err2:
                if err2.status == 409:
                    return False  # another replica created it first
                raise
            self._observe(Record(self.identity, now_wall, 0))
            return True
        rec = record_of(lease)
        self._observe(rec)
        spec = lease.get("spec") or {}
        mine = rec.holder == self.identity
        if rec.holder and not mine and self._clock() < self._observed_at + self.duration:
            return False  # held, and renewed within the lease duration (as far as we have watched)
        acquire = spec.get("acquireTime") if mine else now_wall
        transitions = rec.transitions if mine else rec.transitions + 1
        lease["spec"] = self._spec(acquire or now_wall, now_wall, transitions)
        try:
            self.coord.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as err:
            if err.status == 409:
                return False  # someone wrote in between: read again next time
            raise
        self._observe(Record(self.identity, now_wall, transitions))
        return True

    def _raw_get(self) -> dict[str, Any]:
        resp = self.coord.read_namespaced_lease(self.name, self.namespace, _preload_content=False)
        lease: dict[str, Any] = json.loads(resp.data)
        return lease

    def _spec(self, acquire: str, renew: str, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.duration)),
            "acquireTime": acquire,
            "renewTime": renew,
            "leaseTransitions": transitions,
        }

    def _observe(self, rec: Record) -> None:
        if rec != self._observed:
            self._observed, self._observed_at = rec, self._clock()

    # --- loops ------------------------------------------------------------------------------------
    def wait_until_leader(self) -> bool:
        """Block until this replica holds the Lease (True) or `stop()` is called (False)."""
        log.info("leader election: %s waiting for Lease %s/%s", self.identity, self.namespace, self.name)
        while not self._stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    log.info("leader election: %s is the leader", self.identity)
                    return True
            except Exception as err:  # the API server may be down for a while: keep trying
                log.warning("leader election: %s", err)
            self._stop.wait(self.retry)
        return False

    def keep_renewing(self, on_lost: Callable[[], None]) -> None:
        """Renew in a background thread; `on_lost()` once renewing failed for the renew deadline."""

        def loop() -> None:
            last = self._clock()
            while not self._stop.wait(self.retry):
                try:
                    if self.try_acquire_or_renew():
                        last = self._clock()
                        continue
                    log.error("leader election: the Lease is held by %s now", self._observed)
                except Exception as err:  # counted against the deadline below
                    log.warning("leader election: renewing failed: %s", err)
                if self._clock() - last >= self.renew_deadline or (
                    self._observed is not None and self._observed.holder not in ("", self.identity)
                ):
                    log.error("leader election: %s lost the Lease", self.identity)
                    on_lost()
                    return

        self._renewer = threading.Thread(target=loop, name="lease-renewer", daemon=True)
        self._renewer.start()

    def stop(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(self.retry + 5)

    def release(self) -> None:
        """Give the Lease up (clean shutdown): a standby takes it at its next try."""
        self.stop()
        try:
            lease = self._raw_get()
            if record_of(lease).holder != self.identity:
                return
            lease["spec"]["holderIdentity"] = None
            lease["spec"]["leaseDurationSeconds"] = 1
            self.coord.replace_namespaced_lease(self.name, self.namespace, lease)
            log.info("leader election: %s released the Lease", self.identity)
        except Exception as err:  # best effort: it expires anyway
            log.warning("leader election: could not release the Lease: %s", err)
