"""Start a local Ray with only the processes a federation run uses.

On one machine ``ray.init()`` starts the GCS, the raylet and its two agents, the log monitor, and two
processes that `red run` never talks to:

* the dashboard's API server. Ray starts it even with ``include_dashboard=False`` (it then serves only
  usage statistics) and ``ray.init`` polls until it has written its address: about 1.3 s on the way to
  the first round, 1.5 s of CPU and 120 MB of PSS;
* the autoscaler monitor. A local cluster has a fixed size, so there is nothing to scale: 0.5 s of CPU
  and 50 MB.

It also waits less for the raylet. ``ray.init`` asks the GCS whether the new raylet has registered
through a call that checks once a second; the raylet takes 0.8–1.9 s here, so that wait ended up to a
second late. `start_lean` first watches for the registration itself, every 50 ms, and only then makes
Ray's call, which now answers at once (0.25–0.3 s less, measured).

Ray 2.60 has no switch for any of this, so `start_lean` replaces the two `Node` methods that start the
idle processes and ``services.get_node`` for the length of one ``ray.init`` call and puts them back
afterwards. Everything else is ``ray.init`` as usual: token authentication, the runtime environment, the
log monitor that brings the actors' logs to the terminal, ``ray.shutdown``. Ray is pinned in
pyproject.toml; ``tests/engine/test_local_ray.py`` fails if a Ray upgrade renames these functions or
starts the two processes some other way. A cluster reached with ``--address`` (and every KubeRay head)
is untouched.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import ray
import ray._private.node as ray_node
import ray._private.services as ray_services

from red.errors import RedError

# Methods of ray._private.node.Node that start a process a local federation run does not use: the
# dashboard's API server and the autoscaler monitor.
SKIPPED: tuple[str, ...] = ("start_api_server", "start_monitor")
_lock = threading.Lock()


def _skip(name: str) -> Any:
    def skipped(self: Any, *args: Any, **kwargs: Any) -> None:
        # The dashboard URL stays None, as after a dashboard that failed to start: ray.init allows that.
        return None

    skipped.__name__ = name
    skipped.__qualname__ = f"lean.{name}"
    return skipped


def _get_node_soon(original: Any) -> Any:
    """``services.get_node``, called once the node is registered (watched every 50 ms)."""

    def get_node(gcs_address: str, node_id: str) -> Any:
        try:
            from ray._raylet import GcsClient  # type: ignore[attr-defined]

            client = GcsClient(address=gcs_address)
            deadline = time.monotonic() + REGISTER_WATCH_S
            while time.monotonic() < deadline:
                if any(k.hex() == node_id for k in client.get_all_node_info(timeout=2)):
                    break
                time.sleep(0.05)
        except Exception:  # only a shortcut: Ray's own call below waits, and reports what is wrong
            pass
        return original(gcs_address, node_id)

    return get_node


# How long to watch for the raylet's registration (it takes 1-2 s) before leaving it to Ray's own wait,
# which gives up 30 s later with its own message.
REGISTER_WATCH_S = 10.0


@contextlib.contextmanager
def _without_idle_processes() -> Iterator[None]:
    missing = [f"Node.{m}" for m in SKIPPED if not callable(getattr(ray_node.Node, m, None))]
    if not callable(getattr(ray_services, "get_node", None)):
        missing.append("services.get_node")
    if missing:
        raise RedError(
            f"this Ray ({ray.__version__}) has no {', '.join(missing)}: red's lean local start is written for "
            "the Ray that pyproject.toml pins; install that version (pip install -e '.[engine]')"
        )
    with _lock:
        saved = {m: ray_node.Node.__dict__[m] for m in SKIPPED}
        get_node = ray_services.get_node
        try:
            for m in SKIPPED:
                setattr(ray_node.Node, m, _skip(m))
            ray_services.get_node = _get_node_soon(get_node)
            yield
        finally:
            for m, fn in saved.items():
                setattr(ray_node.Node, m, fn)
            ray_services.get_node = get_node


def start_lean(**init_kwargs: Any) -> Any:
    """``ray.init(**init_kwargs)`` for a new local cluster, without the processes in `SKIPPED`.
    Returns what ``ray.init`` returns."""
    if init_kwargs.get("address"):
        raise ValueError("start_lean starts a new local Ray; connect to an existing one with ray.init(address=...)")
    with _without_idle_processes():
        return ray.init(include_dashboard=False, **init_kwargs)
