"""A deduplicating, delaying work queue of keys (client-go's workqueue, in Python).

The rules, the same as controller-runtime's, so that one Federation is never reconciled twice at once
and a burst of events costs one reconcile:

* A key is queued at most once: adding a key that waits already is a no-op.
* A key being processed is never handed to a second worker. Adding it meanwhile marks it *dirty*;
  `done()` puts it back, so the event that arrived during the pass is not lost.
* `add_after(key, seconds)` queues it later; an earlier request wins over a later one.

Unlike client-go's it has no rate limiter: a failed pass is retried when the Federation's own backoff
says (`failures.Backoff`, which also writes the wait into its Synced condition), via `add_after`.

Thread-safe; `get()` blocks until a key is due or the queue shuts down (then it returns None).
"""

from __future__ import annotations

import heapq
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class WorkQueue(Generic[K]):
    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._cond = threading.Condition()
        self._queue: deque[K] = deque()
        self._queued: set[K] = set()
        self._processing: set[K] = set()
        self._dirty: set[K] = set()
        # Delayed adds: (due, seq, key) in a heap; `_due[key]` is the earliest pending time per key,
        # so stale heap entries (superseded by an earlier add) are skipped when popped.
        self._delayed: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._seq = 0
        self._clock = clock
        self._shutdown = False

    # --- producers --------------------------------------------------------------------------------
    def add(self, key: K) -> None:
        with self._cond:
            self._add_locked(key)

    def add_after(self, key: K, seconds: float) -> None:
        if seconds <= 0:
            self.add(key)
            return
        with self._cond:
            if self._shutdown:
                return
            due = self._clock() + seconds
            if key in self._due and self._due[key] <= due:
                return
            self._due[key] = due
            self._seq += 1
            heapq.heappush(self._delayed, (due, self._seq, key))
            self._cond.notify()

    def discard(self, key: K) -> None:
        """Drop every trace of `key` (the object is gone). A pass in flight still finishes."""
        with self._cond:
            self._due.pop(key, None)
            self._dirty.discard(key)
            if key in self._queued:
                self._queued.discard(key)
                self._queue.remove(key)

    # --- consumers --------------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> K | None:
        """The next key due, marked as processing (call `done(key)` after), or None on shutdown/timeout."""
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while True:
                if self._shutdown:
                    return None
                self._promote_due_locked()
                if self._queue:
                    key = self._queue.popleft()
                    self._queued.discard(key)
                    self._processing.add(key)
                    return key
                wait = self._delayed[0][0] - self._clock() if self._delayed else None
                if deadline is not None:
                    left = deadline - self._clock()
                    if left <= 0:
                        return None
                    wait = left if wait is None else min(wait, left)
                self._cond.wait(None if wait is None else max(wait, 0.0))

    def done(self, key: K) -> None:
        with self._cond:
            self._processing.discard(key)
            if key in self._dirty:
                self._dirty.discard(key)
                self._add_locked(key)

    def shutdown(self) -> None:
        with self._cond:
            self._shutdown = True
            self._cond.notify_all()

    # --- observation ------------------------------------------------------------------------------
    def depth(self) -> int:
        """Keys ready to be handed out now (waiting for a worker), not counting delayed ones."""
        with self._cond:
            self._promote_due_locked()
            return len(self._queue)

    def delayed(self) -> int:
        with self._cond:
            return len(self._due)

    def processing(self) -> int:
        with self._cond:
            return len(self._processing)

    # --- internals --------------------------------------------------------------------------------
    def _add_locked(self, key: K) -> None:
        if self._shutdown:
            return
        if key in self._processing:
            self._dirty.add(key)
            return
        self._due.pop(key, None)  # queued now: a pending later add is superseded
        if key not in self._queued:
            self._queued.add(key)
            self._queue.append(key)
            self._cond.notify()

    def _promote_due_locked(self) -> None:
        now = self._clock()
        while self._delayed and self._delayed[0][0] <= now:
            due, _, key = heapq.heappop(self._delayed)
            if self._due.get(key) != due:
                continue  # superseded by an earlier or an immediate add
            del self._due[key]
            self._add_locked(key)
