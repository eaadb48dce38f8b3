"""Trainer processes forked from a pool host, so that they share its torch instead of loading their own.

A torch process costs about 465 MB here (PSS), most of it the same in every process: torch's heap and
anonymous mappings after ``import torch`` (about 267 MB) and the pages its CUDA libraries write while
they load (about 120 MB). Ray starts each actor in a process of its own, with no fork server, so two
pool hosts paid for two torches. A process forked from a host after its torch, task and data are loaded
shares all of that copy-on-write. Measured in a 2-core run here (PSS at round 2): the host 407 MB and
its trainer 188 MB (13 MB of it its own), where two hosts were 464 MB each. A trainer also starts in
milliseconds instead of the 1.7 s of CPU ``import torch`` takes.

A trainer runs only plain functions of the host's task and model (copies made by the fork): never a
Ray call, never CUDA (hosts with GPUs do not fork; CUDA does not survive a fork). It reads calls from
a pipe and writes results back, and exits when the pipe closes: when the host closes it, or when the
host's process dies, whichever comes first.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection, Pipe
from typing import Any

from red.errors import RedError

log = logging.getLogger(__name__)


class TrainerLost(RedError):
    """A forked trainer died (killed, out of memory) before it answered: its share is done by the host."""


class ForkedTrainers:
    """``count`` processes forked from this one; ``submit`` a call to one, ``collect`` its result.
    Each call gets the fork's copy of ``context`` (the pool host) as its first argument."""

    def __init__(self, count: int, context: Any = None) -> None:
        self._conns: list[Connection | None] = []
        self.pids: list[int] = []
        self.answered = 0  # calls answered by a trainer, for tests and benchmarks
        # Flush first: a fork copies unwritten buffered output, which both processes would then write.
        sys.stdout.flush()
        sys.stderr.flush()
        for _ in range(count):
            parent_end, child_end = Pipe(duplex=True)
            pid = os.fork()
            if pid == 0:  # the trainer
                parent_end.close()
                # Earlier trainers' pipe ends were copied into this process too: close them, or a
                # trainer would never see its pipe close when the host dies.
                for c in self._conns:
                    if c is not None:
                        c.close()
                _serve(child_end, context)  # never returns
            child_end.close()
            self._conns.append(parent_end)
            self.pids.append(pid)

    def __len__(self) -> int:
        return sum(c is not None for c in self._conns)

    @property
    def live(self) -> list[int]:
        """Indices of the trainers still running."""
        return [i for i, c in enumerate(self._conns) if c is not None]

    def submit(self, i: int, fn: Callable[..., Any], *args: Any) -> None:
        """Start ``fn(context, *args)`` in trainer ``i``. ``fn`` must be a module-level function (it is
        sent by name); ``args`` are pickled."""
        conn = self._conns[i]
        if conn is None:
            raise TrainerLost(f"forked trainer {i} is gone")
        try:
            conn.send((fn, args))
        except (BrokenPipeError, ConnectionResetError, EOFError, OSError) as err:
            raise self._lost(i, f"forked trainer {i} (pid {self.pids[i]}) is gone: {err!r}") from None

    def collect(self, i: int) -> Any:
        """What trainer ``i``'s call returned; what it raised is raised here."""
        conn = self._conns[i]
        if conn is None:
            raise TrainerLost(f"forked trainer {i} is gone")
        try:
            ok, value = conn.recv()
        except (EOFError, ConnectionResetError, OSError) as err:
            raise self._lost(i, f"forked trainer {i} (pid {self.pids[i]}) died before answering: {err!r}") from None
        self.answered += 1
        if ok:
            return value
        raise value

    def _lost(self, i: int, why: str) -> TrainerLost:
        """Forget trainer ``i``, say so once (the host trains its shares from now on: slower, not
        wrong), and return the error to raise."""
        conn = self._conns[i]
        self._conns[i] = None
        if conn is not None:
            conn.close()
        _reap(self.pids[i], wait=0.0)
        log.warning("%s; the pool host trains its share of each batch from now on (%d trainers left)",
                    why, len(self))
        return TrainerLost(why)

    def close(self) -> None:
        """Stop every trainer: closing its pipe ends its loop; one that does not exit in a second is
        killed."""
        for i in self.live:
            conn = self._conns[i]
            self._conns[i] = None
            if conn is not None:
                conn.close()
        for pid in self.pids:
            _reap(pid, wait=1.0)


def _reap(pid: int, wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return  # already reaped
        if done:
            return
        if time.monotonic() >= deadline:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            return
        time.sleep(0.01)


def _serve(conn: Connection, context: Any) -> None:
    """A trainer's whole life: answer calls until the pipe closes, then leave without running the
    host's exit handlers (Ray's among them: they belong to the host's connection, not to this copy)."""
    code = 0
    try:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C goes to the host, which closes the pipe
        while True:
            try:
                fn, args = conn.recv()
            except (EOFError, OSError):
                break
            try:
                reply: tuple[bool, Any] = (True, fn(context, *args))
            except BaseException as err:  # sent back, raised in the host as if it had run the call
                reply = (False, _picklable(err))
            try:
                conn.send(reply)
            except (BrokenPipeError, OSError):
                break
    except BaseException:
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _picklable(err: BaseException) -> BaseException:
    """``err`` itself when it pickles (the task's own exception types do), else a RedError that keeps
    its type, message and traceback."""
    import pickle

    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        tb = "".join(traceback.format_exception(type(err), err, err.__traceback__))
        return RedError(f"{type(err).__name__}: {err} (in a forked trainer)\n{tb}")


__all__ = ["ForkedTrainers", "TrainerLost"]
