"""The work queue's rules (client-go's): dedup, one key in flight, dirty re-adds, delays."""

from __future__ import annotations

import threading

from red_operator.workqueue import WorkQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def drain(q: WorkQueue[str]) -> list[str]:
    out = []
    while (k := q.get(timeout=0)) is not None:
        out.append(k)
        q.done(k)
    return out


def test_adds_of_a_waiting_key_collapse_into_one() -> None:
    q: WorkQueue[str] = WorkQueue()
    for k in ("a", "b", "a", "a", "c", "b"):
        q.add(k)
    assert q.depth() == 3
    assert drain(q) == ["a", "b", "c"]


def test_a_key_in_flight_is_not_handed_out_twice_and_an_add_meanwhile_is_kept() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert q.get(timeout=0) == "a"
    q.add("a")  # an event during the pass
    q.add("a")
    assert q.get(timeout=0) is None  # not while the first pass runs
    q.done("a")
    assert q.get(timeout=0) == "a"  # once more, for the event that came meanwhile
    q.done("a")
    assert q.get(timeout=0) is None


def test_add_after_waits_and_the_earliest_request_wins() -> None:
    clock = Clock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 30)  # later: ignored
    q.add_after("a", 5)  # earlier: wins
    assert q.get(timeout=0) is None and q.delayed() == 1
    clock.now += 5
    assert drain(q) == ["a"]
    clock.now += 30
    assert drain(q) == []  # the superseded 10 s and 30 s requests never fire


def test_an_immediate_add_supersedes_a_delayed_one() -> None:
    clock = Clock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add_after("a", 10)
    q.add("a")
    assert drain(q) == ["a"]
    clock.now += 20
    assert drain(q) == []


def test_a_delayed_key_that_comes_due_while_in_flight_runs_again_after() -> None:
    clock = Clock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add("a")
    assert q.get(timeout=0) == "a"
    q.add_after("a", 1)
    clock.now += 2
    assert q.get(timeout=0) is None
    q.done("a")
    assert q.get(timeout=0) == "a"


def test_discard_drops_a_waiting_key() -> None:
    clock = Clock()
    q: WorkQueue[str] = WorkQueue(clock=clock)
    q.add("a")
    q.add_after("b", 1)
    q.discard("a")
    q.discard("b")
    clock.now += 2
    assert drain(q) == []


def test_shutdown_wakes_a_blocked_worker() -> None:
    q: WorkQueue[str] = WorkQueue()
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(q.get()))
    t.start()
    q.shutdown()
    t.join(10)
    assert not t.is_alive() and got == [None]


def test_workers_never_process_one_key_concurrently() -> None:
    q: WorkQueue[int] = WorkQueue()
    active: set[int] = set()
    overlaps: list[int] = []
    counts = [0] * 5
    guard = threading.Lock()

    def worker() -> None:
        while (k := q.get(timeout=0.5)) is not None:
            with guard:
                if k in active:
                    overlaps.append(k)
                active.add(k)
                counts[k] += 1
            with guard:
                active.discard(k)
            q.done(k)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for i in range(2000):
        q.add(i % 5)
    for t in threads:
        t.join(30)
    assert not overlaps
    assert all(c >= 1 for c in counts)
