"""Start a local Ray with only the processes a federation run uses.

On one machine ``ray.init()`` starts the GCS, the raylet and its two agents, the log monitor, and two
processes that `red run` never talks to:

* the dashboard's API server. Ray starts it even with ``include_dashboard=False`` (it then serves only
  usage statistics) and ``ray.init`` polls until it has written its address: about 1.3 s on the way to
  the first round, 1.5 s of CPU and 120 MB of PSS;
* the autoscaler monitor. A local cluster has a fixed size, so there is nothing to scale: 0.5 s of CPU
  and 50 MB.

Ray 2.60 has no switch for either, so `start_lean` leaves out the two `Node` methods that start them for
the length of one ``ray.init`` call and puts them back afterwards. Everything else is ``ray.init`` as
usual: token authentication, the runtime environment, the log monitor that brings the actors' logs to
the terminal, ``ray.shutdown``. Ray is pinned in pyproject.toml; ``tests/engine/test_local_ray.py``
fails if a Ray upgrade renames the methods or starts the two processes some other way. A cluster
reached with ``--address`` (and every KubeRay head) is untouched.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import ray
import ray._private.node as ray_node

from red.errors import RedError

# Methods of ray._private.node.Node that start a process a local federation run does not use.
SKIPPED: dict[str, str] = {
    "start_api_server": "the dashboard's API server",
    "start_monitor": "the autoscaler monitor",
}
_lock = threading.Lock()


def _skip(name: str) -> Any:
    def skipped(self: Any, *args: Any, **kwargs: Any) -> None:
        # The dashboard URL stays None, as after a dashboard that failed to start: ray.init allows that.
        return None

    skipped.__name__ = name
    skipped.__qualname__ = f"lean.{name}"
    return skipped


@contextlib.contextmanager
def _without_idle_processes() -> Iterator[None]:
    missing = [m for m in SKIPPED if not callable(getattr(ray_node.Node, m, None))]
    if missing:
        raise RedError(
            f"this Ray ({ray.__version__}) has no Node.{', Node.'.join(missing)}: red's lean local start is "
            "written for the Ray that pyproject.toml pins; install that version (pip install -e '.[engine]')"
        )
    with _lock:
        saved = {m: ray_node.Node.__dict__[m] for m in SKIPPED}
        try:
            for m in SKIPPED:
                setattr(ray_node.Node, m, _skip(m))
            yield
        finally:
            for m, fn in saved.items():
                setattr(ray_node.Node, m, fn)


def start_lean(**init_kwargs: Any) -> Any:
    """``ray.init(**init_kwargs)`` for a new local cluster, without the processes in `SKIPPED`.
    Returns what ``ray.init`` returns."""
    if init_kwargs.get("address"):
        raise ValueError("start_lean starts a new local Ray; connect to an existing one with ray.init(address=...)")
    with _without_idle_processes():
        return ray.init(include_dashboard=False, **init_kwargs)
