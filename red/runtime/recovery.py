"""Waiting for Ray to restart failed node actors: all of them at once, never one after another.

When a node actor dies, Ray restarts it (up to ``maxRestarts``) and the driver must learn which it was:
back (answers a ping: restore it, start its loop again), dead for good (Ray's actor table says DEAD), or
neither within ``restartTimeoutSeconds`` (a restart that cannot be placed, or a constructor that hangs:
treat it as dead).

A ping's ``ActorDiedError`` alone is not final: Ray's actor table decides, and an actor it still
restarts is asked again. When a whole Ray node goes (a worker pod deleted), such errors can come before
the GCS has noticed the loss and restarted the actors elsewhere.

Each failed node gets its own deadline and its own outstanding ping, and the driver's loop checks them
without blocking, so N nodes failing together cost one timeout, not N, and reports keep flowing meanwhile.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import ray

# How soon to ping again a node whose ping failed because it was still restarting.
RETRY_SECONDS = 0.25


def actor_state(handle: Any) -> str:
    """The GCS's word on an actor: ALIVE, RESTARTING, PENDING_CREATION, DEAD, ... ("" if unknown).

    `ray._private.state` reads the GCS directly; the public `ray.util.state` needs the dashboard, which
    a local run does not start."""
    from ray._private import state  # Ray is pinned (pyproject.toml); tests/engine cover this call

    info = state.actors(actor_id=handle._actor_id.hex())
    return str(info.get("State", "")) if info else ""


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
        # Why each node in the last poll's `dead` was given up on (for the log).
        self.why: dict[str, str] = {}

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
            except ray.exceptions.ActorDiedError as err:
                if actor_state(self._waiting[nid].handle) == "DEAD":
                    dead.append(nid)
                    self.why[nid] = f"Ray says it is dead: {str(err).splitlines()[0] if str(err) else err!r}"
                else:  # its node's loss not noticed yet, or being restarted: ask again
                    self._waiting[nid].ref, self._waiting[nid].retry_at = None, now + RETRY_SECONDS
                    continue
            except ray.exceptions.RayError:  # still restarting (ActorUnavailableError and kin): ask again
                self._waiting[nid].ref, self._waiting[nid].retry_at = None, now + RETRY_SECONDS
                continue
            del self._waiting[nid]
        for nid, w in list(self._waiting.items()):
            if now >= w.deadline:
                dead.append(nid)
                self.why[nid] = f"not back within restartTimeoutSeconds ({self.timeout_seconds:g})"
                del self._waiting[nid]
            elif w.ref is None and now >= w.retry_at:
                w.ref = w.handle.ping.remote()
        return restarted, dead
