"""Waiting for Ray to restart failed node actors: all of them at once, never one after another.

When a node actor dies, Ray restarts it (up to ``maxRestarts``) and the driver must learn which it was:
back (answers a ping: restore it, start its loop again), dead for good (``ActorDiedError``), or neither
within ``restartTimeoutSeconds`` (a restart that cannot be placed, or a constructor that hangs: treat it
as dead). Each failed node gets its own deadline and its own outstanding ping, and the driver's loop
checks them without blocking, so N nodes failing together cost one timeout, not N, and reports keep
flowing meanwhile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import ray

# How soon to ping again a node whose ping failed because it was still restarting.
RETRY_SECONDS = 0.25


@dataclass
class _Waiting:
    handle: Any
    deadline: float
    ref: Any = None  # the outstanding ping, if any
    retry_at: float = 0.0


class Recoveries:
    """Failed node actors being restarted, each with its own deadline; see the module docstring."""

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self._waiting: dict[str, _Waiting] = {}

    def begin(self, node_id: str, handle: Any) -> None:
        """Start waiting for ``node_id`` (whose run failed) to come back."""
        self._waiting[node_id] = _Waiting(handle, time.monotonic() + self.timeout_seconds)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._waiting

    def __len__(self) -> int:
        return len(self._waiting)

    def poll(self) -> tuple[dict[str, dict[str, Any]], list[str]]:
        """Without blocking: ``(restarted: node id → its ping, dead: node ids)``; both leave the set."""
        restarted: dict[str, dict[str, Any]] = {}
        dead: list[str] = []
        now = time.monotonic()
        refs = {w.ref: nid for nid, w in self._waiting.items() if w.ref is not None}
        ready = ray.wait(list(refs), num_returns=len(refs), timeout=0)[0] if refs else []
        for ref in ready:
            nid = refs[ref]
            try:
                restarted[nid] = dict(ray.get(ref))
            except ray.exceptions.ActorDiedError:
                dead.append(nid)
            except ray.exceptions.RayError:  # still restarting (ActorUnavailableError and kin): ask again
                self._waiting[nid].ref, self._waiting[nid].retry_at = None, now + RETRY_SECONDS
                continue
            del self._waiting[nid]
        for nid, w in list(self._waiting.items()):
            if now >= w.deadline:
                dead.append(nid)
                del self._waiting[nid]
            elif w.ref is None and now >= w.retry_at:
                w.ref = w.handle.ping.remote()
        return restarted, dead
