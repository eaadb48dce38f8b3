"""A node's inbox: a thread-safe message queue with a bound.

Senders never wait for a receiver, so a node that falls behind (or a flood from a buggy neighbour)
would otherwise grow its queue until the actor runs out of memory. Beyond ``limit`` messages the
*oldest* is dropped and counted: in federated learning the oldest message is the stalest update, and a
round that loses one proceeds as if that node were a straggler. The limit is sized from the node's
degree (`limit_for_degree`), so a healthy node never reaches it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")

# At least this many messages, whatever the degree: room for several rounds of control traffic.
MIN_LIMIT = 1024
# Rounds' worth of messages from every neighbour that may be queued before the oldest are dropped.
ROUNDS_OF_BACKLOG = 4


def limit_for_degree(degree: int) -> int:
    """The inbox bound of a node with ``degree`` neighbours (a star server: one per client)."""
    return max(MIN_LIMIT, ROUNDS_OF_BACKLOG * max(degree, 0))


class Inbox(Generic[T]):
    """FIFO of at most ``limit`` items; `put` beyond it drops the oldest and counts it in ``dropped``."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"an inbox holds at least one message, got limit {limit}")
        self.limit = limit
        self.dropped = 0
        self._items: deque[T] = deque()
        self._cv = threading.Condition()

    def put(self, item: T) -> bool:
        """Append ``item``; False when the oldest message was dropped to make room."""
        with self._cv:
            full = len(self._items) >= self.limit
            if full:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cv.notify()
            return not full

    def get(self, block: bool = True, timeout: float | None = None) -> T:
        """The oldest item; raises `queue.Empty` when there is none (after ``timeout`` if blocking)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while not self._items:
                remaining = None if deadline is None else deadline - time.monotonic()
                if not block or (remaining is not None and remaining <= 0):
                    raise queue.Empty
                self._cv.wait(remaining)
            return self._items.popleft()

    def qsize(self) -> int:
        with self._cv:
            return len(self._items)
