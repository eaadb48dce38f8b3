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

The raylet itself waited on two things a local run does not need (measured from its log):

* its dashboard agent, which writes its ports only after importing the dashboard's seven modules: 1.3-1.5 s
  and 125 MB, for metrics export and the dashboard's node views, neither of which a local run has.
  `red.lean_agent` takes its place and says "not served" at once, as Ray's minimal install does;
* its own object store, which it polls once a second while another thread creates it: in about half the
  starts it found the store 5 ms late and slept a second. `FAST_CONNECT` polls every 20 ms.

Together ``ray.init`` went from 2.3-3.5 s to 1.3-1.7 s here.

The raylet's runtime-env agent (52 MB of PSS) installs runtime environments, and the raylet asks it only
for a task or actor that has one. It is started for a run with one (``spec.runtimeEnv``, the user's
code). Without, `red.lean_agent` listens in its place and answers that the Federation has no
spec.runtimeEnv, which Ray raises as a ``RuntimeEnvSetupError`` in whoever asked.

The log monitor, which brings what actors print to the terminal, is a process of its own: the same
Python and Ray imports as a worker, 48 MB of PSS, to read a handful of files every 0.1 s and publish
their new lines to the GCS. `start_lean` runs Ray's own ``LogMonitor`` on a thread of the driver instead,
the process that prints those lines anyway (`LogForwarder`), and starts none when ``log_to_driver`` is off.

Ray 2.60 has no switch for any of this, so `start_lean` replaces the `Node` methods that start the
idle processes, ``services.get_node`` and ``services.start_ray_process`` (to give the raylet its agents)
for the length of one ``ray.init`` call and puts them back afterwards. Everything else is ``ray.init`` as
usual: token authentication, the runtime environment, ``ray.shutdown``. Ray is pinned in pyproject.toml;
``tests/engine/test_local_ray.py`` fails if a Ray upgrade renames these functions or starts these
processes some other way. A cluster reached with ``--address`` (and every KubeRay head) is untouched.
"""

from __future__ import annotations

import contextlib
import logging
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray
import ray._private.node as ray_node
import ray._private.ray_constants as ray_constants
import ray._private.services as ray_services
import ray._private.worker as ray_worker
import ray._raylet as ray_raylet

from red.errors import RedError

log = logging.getLogger(__name__)

# Methods of ray._private.node.Node that start a process a local federation run does not use: the
# dashboard's API server and the autoscaler monitor; and the log monitor's, run as a thread instead.
SKIPPED: tuple[str, ...] = ("start_api_server", "start_monitor", "start_log_monitor")
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


# The stand-in for the raylet's dashboard agent, and the port files it writes (Ray's names for them).
LEAN_AGENT = Path(__file__).with_name("lean_agent.py")
AGENT_PORTS = ("METRICS_AGENT_PORT_NAME", "METRICS_EXPORT_PORT_NAME", "DASHBOARD_AGENT_LISTEN_PORT_NAME")
AGENT_FLAG = "--dashboard_agent_command="


def _flag(command: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in command if a.startswith(f"{name}=")]
    if len(values) != 1:
        raise RedError(
            f"this Ray ({ray.__version__}) starts its raylet without one {name}=...: red's lean local start "
            "is written for the Ray that pyproject.toml pins; install that version (pip install -e '.[engine]')"
        )
    return values[0]


RUNTIME_ENV_FLAG = "--runtime_env_agent_command="


def lean_agent_command(raylet_command: list[str], runtime_env_agent: bool = True) -> list[str]:
    """The raylet's command line with `red.lean_agent` as its dashboard agent, and as its runtime-env
    agent too unless ``runtime_env_agent`` (Ray's, for a run that has a runtime environment)."""
    session_dir = _flag(raylet_command, "--session_dir")
    node_id = _flag(raylet_command, "--node_id")
    _flag(raylet_command, AGENT_FLAG.rstrip("="))
    files = [
        str(Path(session_dir) / ray_raylet.get_port_filename(node_id, getattr(ray_raylet, name)))  # type: ignore[attr-defined]
        for name in AGENT_PORTS
    ]
    lean = [sys.executable, "-u", "-I", str(LEAN_AGENT)]
    agent = subprocess.list2cmdline([*lean, *files])
    out = [f"{AGENT_FLAG}{agent}" if a.startswith(AGENT_FLAG) else a for a in raylet_command]
    if runtime_env_agent:
        return out
    # Where Ray's runtime-env agent would listen: its own command line says.
    ray_agent = shlex.split(_flag(raylet_command, RUNTIME_ENV_FLAG.rstrip("=")))
    host, port = _flag(ray_agent, "--node-ip-address"), _flag(ray_agent, "--runtime-env-agent-port")
    port_file = Path(session_dir) / ray_raylet.get_port_filename(node_id, ray_raylet.RUNTIME_ENV_AGENT_PORT_NAME)  # type: ignore[attr-defined]
    stand_in = subprocess.list2cmdline([*lean, "--runtime-env", host, port, str(port_file)])
    return [f"{RUNTIME_ENV_FLAG}{stand_in}" if a.startswith(RUNTIME_ENV_FLAG) else a for a in out]


def _start_with_lean_agent(original: Any, runtime_env_agent: bool) -> Any:
    """``services.start_ray_process``, with the raylet's agents replaced by `red.lean_agent`."""

    def start_ray_process(command: list[str], process_type: str, *args: Any, **kwargs: Any) -> Any:
        if process_type == ray_constants.PROCESS_TYPE_RAYLET:
            command = lean_agent_command(command, runtime_env_agent)
        return original(command, process_type, *args, **kwargs)

    return start_ray_process


# The raylet connects to its own object store, which its other thread is still creating, and retries
# after raylet_client_connect_timeout_milliseconds (1000 by default): in about half the starts here
# the store was ready 5 ms after the first try and the raylet slept a whole second. Same total patience
# (10 s), tried every 20 ms.
FAST_CONNECT = {"raylet_client_connect_timeout_milliseconds": 20, "raylet_client_num_connect_attempts": 500}


@contextlib.contextmanager
def _without_idle_processes(runtime_env_agent: bool) -> Iterator[None]:
    missing = [f"Node.{m}" for m in SKIPPED if not callable(getattr(ray_node.Node, m, None))]
    for fn in ("get_node", "start_ray_process"):
        if not callable(getattr(ray_services, fn, None)):
            missing.append(f"services.{fn}")
    missing += [f"_raylet.{n}" for n in (*AGENT_PORTS, "RUNTIME_ENV_AGENT_PORT_NAME", "get_port_filename")
                if not hasattr(ray_raylet, n)]
    if missing:
        raise RedError(
            f"this Ray ({ray.__version__}) has no {', '.join(missing)}: red's lean local start is written for "
            "the Ray that pyproject.toml pins; install that version (pip install -e '.[engine]')"
        )
    with _lock:
        saved = {m: ray_node.Node.__dict__[m] for m in SKIPPED}
        get_node = ray_services.get_node
        start_ray_process = ray_services.start_ray_process
        try:
            for m in SKIPPED:
                setattr(ray_node.Node, m, _skip(m))
            ray_services.get_node = _get_node_soon(get_node)
            ray_services.start_ray_process = _start_with_lean_agent(start_ray_process, runtime_env_agent)
            yield
        finally:
            for m, fn in saved.items():
                setattr(ray_node.Node, m, fn)
            ray_services.get_node = get_node
            ray_services.start_ray_process = start_ray_process


class LogForwarder(threading.Thread):
    """Ray's ``LogMonitor`` on a daemon thread of the driver, for as long as ``node`` is this process's
    Ray: it publishes the new lines of the workers' log files to the GCS, from where the driver prints
    them as it would from Ray's log-monitor process."""

    def __init__(self, node: Any) -> None:
        super().__init__(name="red-log-forwarder", daemon=True)
        from ray._private.log_monitor import LogMonitor, is_proc_alive

        self.node: Any = node
        # What it says about itself went to its own log file in Ray; here it would reach the terminal.
        logging.getLogger(LogMonitor.__module__).setLevel(logging.WARNING)
        # No gcs_address: it is only used to ask whether autoscaler v2 runs, and a local run has none.
        self.monitor = LogMonitor(node.node_ip_address, node.get_logs_dir_path(),
                                  ray_raylet.GcsClient(address=node.gcs_address),  # type: ignore[attr-defined]
                                  is_proc_alive)

    def run(self) -> None:
        monitor, node, last = self.monitor, self.node, 0.0
        try:
            # Ray's LogMonitor.run, ending with the node: ray.shutdown() forgets it.
            while _current_node() is node:
                if monitor.should_update_filenames(last):
                    monitor.update_log_filenames()
                    last = time.time()
                monitor.open_closed_files()
                if not monitor.check_log_files_and_publish_updates():
                    time.sleep(0.1)
        except Exception as err:  # the GCS going away under ray.shutdown(); anything else is worth a line
            if _current_node() is node:
                log.warning("actors' output no longer reaches this terminal (%r); it is still in %s",
                            err, node.get_logs_dir_path())
        finally:
            monitor._close_all_files()


def _current_node() -> Any:
    """This process's Ray node: None once ray.shutdown() ran."""
    return ray_worker._global_node


def start_lean(**init_kwargs: Any) -> Any:
    """``ray.init(**init_kwargs)`` for a new local cluster, without the processes in `SKIPPED`, with
    `red.lean_agent` as the raylet's dashboard agent (and as its runtime-env agent when there is no
    ``runtime_env``), `FAST_CONNECT` (a caller's ``_system_config`` wins) and, unless
    ``log_to_driver=False``, a `LogForwarder`. Returns what ``ray.init`` returns."""
    if init_kwargs.get("address"):
        raise ValueError("start_lean starts a new local Ray; connect to an existing one with ray.init(address=...)")
    system_config = {**FAST_CONNECT, **init_kwargs.pop("_system_config", {})}
    # Ray's runtime-env agent only for a run with a runtime environment: no other asks it for anything.
    with _without_idle_processes(runtime_env_agent=bool(init_kwargs.get("runtime_env"))):
        started = ray.init(include_dashboard=False, _system_config=system_config, **init_kwargs)
    if init_kwargs.get("log_to_driver", True):
        try:
            LogForwarder(_current_node()).start()
        except Exception as err:  # the run works without it: only the actors' output stays in its files
            log.warning("actors' output will not reach this terminal (%r); it is in %s", err,
                        _current_node().get_logs_dir_path())
    return started
