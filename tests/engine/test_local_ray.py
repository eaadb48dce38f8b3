"""`red run`'s local Ray (red.local_ray): the processes a run uses, and none that it does not.

The first case starts its own Ray in a subprocess, because the test session's Ray may already run in
this one, and reads the process table of what that Ray started. The second fails ``ray.init`` before it
starts anything, so it runs here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

START = """
import io, json, os, sys, time
import ray
import ray._private.node as ray_node
from red.runner import init_ray
from tests.helpers import cmdline, descendants

init_ray(num_cpus=1)

@ray.remote
class Echo:
    def hello(self, x):
        return x + 1

@ray.remote
def shout(s):
    print(s)  # reaches this driver's stderr through the log monitor
    return s

class Tee(io.TextIOBase):
    # Ray's log monitor forwards what actors print to this driver's sys.stdout/sys.stderr.
    def __init__(self, inner):
        self.inner, self.seen = inner, []
    def write(self, s):
        self.seen.append(s)
        return self.inner.write(s)
    def flush(self):
        self.inner.flush()

sys.stdout, sys.stderr = Tee(sys.stdout), Tee(sys.stderr)
answer = ray.get(Echo.remote().hello.remote(41))
said = ray.get(shout.remote("red-local-ray-says-hello"))
deadline = time.monotonic() + 30
forwarded = False
while not forwarded and time.monotonic() < deadline:
    forwarded = any("red-local-ray-says-hello" in s for t in (sys.stdout, sys.stderr) for s in t.seen)
    time.sleep(0.1)
sys.stdout, sys.stderr = sys.stdout.inner, sys.stderr.inner
procs = [cmdline(pid) for pid in descendants(os.getpid())[1:]]
node = ray._private.worker._global_node
out = {
    "answer": answer,
    "said": said,
    "forwarded": forwarded,
    "kinds": sorted(node.all_processes),
    "dashboard": [p for p in procs if "dashboard/dashboard.py" in p],
    "monitor": [p for p in procs if "autoscaler/_private/monitor.py" in p],
    "log_monitor": [p for p in procs if "log_monitor.py" in p],
    "gcs": [p for p in procs if "gcs_server" in p],
    "raylet": [p for p in procs if "raylet/raylet" in p],
}
ray.shutdown()
import ray._private.services as ray_services
out["restored"] = [
    getattr(ray_node.Node, m).__qualname__ for m in ("start_api_server", "start_monitor")
] + [ray_services.get_node.__module__ + "." + ray_services.get_node.__qualname__]
print("RESULT " + json.dumps(out))
"""


def run_start() -> tuple[dict, str]:
    env = {**os.environ, "RAY_DEDUP_LOGS": "0"}
    res = subprocess.run([sys.executable, "-c", START], capture_output=True, text=True, cwd=ROOT, env=env, timeout=180)
    assert res.returncode == 0, res.stderr[-3000:]
    line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :]), res.stderr


@pytest.mark.ray
def test_local_ray_starts_no_dashboard_server_and_no_autoscaler_but_works() -> None:
    out, stderr = run_start()
    # Left out: nobody talks to them in a local run.
    assert out["dashboard"] == [], out
    assert out["monitor"] == [], out
    assert "dashboard" not in out["kinds"] and "monitor" not in out["kinds"], out["kinds"]
    # Kept: what a run needs.
    assert out["gcs"] and out["raylet"] and out["log_monitor"], out
    assert out["answer"] == 42 and out["said"] == "red-local-ray-says-hello"
    assert out["forwarded"], "what actors print must still reach the terminal (the log monitor)"
    assert "Traceback" not in stderr, stderr[-3000:]
    # The functions the lean start replaces are Ray's own again once ray.init returned.
    assert out["restored"] == ["Node.start_api_server", "Node.start_monitor", "ray._private.services.get_node"]


@pytest.mark.ray
def test_the_skipped_methods_come_back_when_ray_init_fails() -> None:
    """A typo in an init argument fails ray.init inside the lean start; Ray's Node is left as it was."""
    import ray._private.node as ray_node
    import ray._private.services as ray_services

    from red.local_ray import SKIPPED, start_lean

    before = {m: ray_node.Node.__dict__[m] for m in SKIPPED}
    get_node = ray_services.get_node
    with pytest.raises(RuntimeError, match="Unknown keyword argument"):
        start_lean(num_cpus=1, not_an_init_argument=True)
    assert {m: ray_node.Node.__dict__[m] for m in SKIPPED} == before
    assert ray_services.get_node is get_node
