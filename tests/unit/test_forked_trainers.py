"""Trainers forked from a pool host (`red.runtime.forked`), how hosts are grouped (`group_slots`), and the
merge of partial means they send back: real processes, no Ray."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from red.aggregation import RunningWeightedMean, weighted_mean
from red.errors import RedError
from red.runtime.forked import ForkedTrainers, TrainerLost
from red.runtime.pool import group_slots, split_evenly


class Context:
    def __init__(self) -> None:
        self.value = 1


def whoami(ctx: Context, add: int) -> tuple[int, int, int]:
    ctx.value += add  # changes the trainer's copy only
    return os.getpid(), os.getppid(), ctx.value


def fail(ctx: Context, message: str) -> None:
    raise ValueError(message)


class Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:  # pickle calls cls(*args) with one arg: it fails
        super().__init__(f"{a}-{b}")


def fail_unpicklable(ctx: Context) -> None:
    raise Unpicklable(1, 2)


def _gone(pid: int, within: float = 5.0) -> bool:
    """No such process, or a zombie nobody reaped yet (it runs nothing)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_trainers_are_forked_children_that_answer_with_their_own_copy() -> None:
    ctx = Context()
    trainers = ForkedTrainers(2, context=ctx)
    try:
        assert len(trainers) == 2 and trainers.live == [0, 1]
        for i in trainers.live:
            trainers.submit(i, whoami, 10 * (i + 1))
        got = [trainers.collect(i) for i in trainers.live]
        assert [g[0] for g in got] == trainers.pids
        assert all(g[1] == os.getpid() for g in got)
        assert [g[2] for g in got] == [11, 21]  # each from the context as it was at the fork
        assert ctx.value == 1  # the host's own copy is untouched
        trainers.submit(0, whoami, 1)
        assert trainers.collect(0)[2] == 12  # a trainer keeps its copy between calls
        assert trainers.answered == 3
    finally:
        trainers.close()
    assert all(_gone(p) for p in trainers.pids)


def test_what_a_trainer_raises_is_raised_in_the_host() -> None:
    trainers = ForkedTrainers(1, context=Context())
    try:
        trainers.submit(0, fail, "bad data in the task's own code")
        with pytest.raises(ValueError, match="bad data in the task's own code"):
            trainers.collect(0)
        trainers.submit(0, fail_unpicklable)
        with pytest.raises(RedError, match=r"Unpicklable: 1-2 \(in a forked trainer\)"):
            trainers.collect(0)
        trainers.submit(0, whoami, 0)  # still serving after both
        assert trainers.collect(0)[0] == trainers.pids[0]
    finally:
        trainers.close()


def test_a_killed_trainer_is_reported_lost_and_the_others_serve_on() -> None:
    trainers = ForkedTrainers(2, context=Context())
    try:
        os.kill(trainers.pids[0], signal.SIGKILL)
        assert _gone(trainers.pids[0])
        with pytest.raises(TrainerLost, match="forked trainer 0"):
            trainers.submit(0, whoami, 0)  # the pipe may still take the call: then collect fails
            trainers.collect(0)
        assert trainers.live == [1]
        with pytest.raises(TrainerLost):
            trainers.submit(0, whoami, 0)
        trainers.submit(1, whoami, 0)
        assert trainers.collect(1)[0] == trainers.pids[1]
    finally:
        trainers.close()
    assert all(_gone(p) for p in trainers.pids)


HOST = """
import sys, time
from red.runtime.forked import ForkedTrainers
t = ForkedTrainers(2)
print(*t.pids, flush=True)
time.sleep(60)
"""


def test_trainers_exit_when_their_host_dies() -> None:
    host = subprocess.Popen([sys.executable, "-c", HOST], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None
        pids = [int(p) for p in host.stdout.readline().split()]
        assert len(pids) == 2 and not any(_gone(p, within=0.2) for p in pids)
        host.kill()  # SIGKILL: no close(), no exit handler; only the pipes closing tell the trainers
        host.wait()
        assert all(_gone(p) for p in pids), "a trainer outlived its host"
    finally:
        host.kill()


@pytest.mark.parametrize(
    ("slots", "node_cpus", "expect"),
    [
        (1, [4.0], (1, 1)),  # one slot: one host, nothing to fork
        (2, [2.0], (1, 2)),  # this machine: one host and one trainer instead of two torch processes
        (4, [4.0], (1, 4)),
        (8, [4.0, 4.0], (2, 4)),  # one host per node's cores
        (8, [0.0, 4.0, 4.0], (2, 4)),  # a KubeRay head with num-cpus 0 hosts nothing
        (12, [16.0, 4.0, 4.0], (3, 4)),  # the smallest node decides, so that every host fits anywhere
        (5, [4.0], (2, 3)),  # shared evenly: two hosts of 3, not 4 and 1
        (3, [0.5], (3, 1)),  # no node with a whole CPU: one process per host
        (2, [], (2, 1)),
    ],
)
def test_group_slots(slots: int, node_cpus: list[float], expect: tuple[int, int]) -> None:
    assert group_slots(slots, node_cpus) == expect


def test_merging_partial_means_is_the_mean_of_every_update() -> None:
    rng = np.random.default_rng(0)
    updates = [{"w": rng.normal(size=(8, 3)).astype(np.float32), "b": rng.normal(size=3).astype(np.float32)}
               for _ in range(11)]
    weights = [float(w) for w in rng.integers(1, 50, size=11)]
    whole = RunningWeightedMean()
    for u, w in zip(updates, weights, strict=True):
        whole.add(u, w)
    merged = RunningWeightedMean()
    for share in split_evenly(list(range(11)), 3):
        part = RunningWeightedMean()
        for i in share:
            part.add(updates[i], weights[i])
        merged.merge(part)
    merged.merge(RunningWeightedMean())  # an empty share changes nothing
    expect = weighted_mean(updates, weights)
    assert merged.count == 11 and merged.total_weight == sum(weights)
    for k in expect:
        assert merged.result()[k].dtype == np.float32
        np.testing.assert_allclose(merged.result()[k], expect[k], rtol=1e-6, err_msg=k)
        np.testing.assert_allclose(merged.result()[k], whole.result()[k], rtol=1e-6, err_msg=k)
    with pytest.raises(ValueError, match="disagree on parameter names"):
        other = RunningWeightedMean()
        other.add({"v": np.zeros(3)}, 1.0)
        merged.merge(other)


@pytest.mark.parametrize(("n", "k"), [(0, 3), (2, 3), (10, 3), (9, 3), (500, 2)])
def test_split_is_contiguous_and_even(n: int, k: int) -> None:
    shares = split_evenly(list(range(n)), k)
    assert len(shares) == k
    assert [x for s in shares for x in s] == list(range(n))
    sizes = [len(s) for s in shares]
    assert max(sizes) - min(sizes) <= 1

