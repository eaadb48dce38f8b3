"""`red run`'s local Ray (red.local_ray): the processes a run uses, and none that it does not.

Covered here: no dashboard server and no autoscaler monitor; `red.lean_agent` in place of Ray's
dashboard agent (its port files say "not served", and it ends with the raylet); the log monitor as a
thread of the driver, still bringing what actors print to the terminal, and gone after ``ray.shutdown``;
the runtime-env agent, the GCS and the raylet as usual; Ray's functions put back afterwards.

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

runtime_env = json.loads(os.environ["RED_TEST_RUNTIME_ENV"])
init_ray(num_cpus=1, runtime_env=runtime_env)

@ray.remote
class Echo:
    def hello(self, x):
        return x + 1

@ray.remote
def shout(s):
    print(s)  # reaches this driver's stderr through the log monitor (a thread of this process)
    return s

@ray.remote
def env_var(name):
    return os.environ.get(name)

@ray.remote
def connect_retry_ms():
    # A worker's config is the raylet's (Ray hands its system config to every process it starts).
    return ray._raylet.Config.raylet_client_connect_timeout_milliseconds()

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
retry_ms = ray.get(connect_retry_ms.remote())
job_env = ray.get(env_var.remote("RED_TEST_VAR"))
try:
    asked = ray.get(env_var.options(runtime_env={"env_vars": {"RED_TEST_VAR": "asked"}}).remote("RED_TEST_VAR"),
                    timeout=60)
except Exception as err:
    asked = f"{type(err).__name__}: {err}"
node = ray._private.worker._global_node
out = {
    "answer": answer,
    "said": said,
    "retry_ms": retry_ms,
    "forwarded": forwarded,
    "kinds": sorted(node.all_processes),
    "dashboard": [p for p in procs if "dashboard/dashboard.py" in p],
    "monitor": [p for p in procs if "autoscaler/_private/monitor.py" in p],
    "log_monitor": [p for p in procs if "log_monitor.py" in p],
    "gcs": [p for p in procs if "gcs_server" in p],
    "raylet": [p for p in procs if "raylet/raylet" in p],
    "ray_agent": [p for p in procs if "dashboard/agent.py" in p],
    # (the raylet's own command line names it too, in --dashboard_agent_command)
    "lean_agent": [p for p in procs if "red/lean_agent.py" in p and "raylet/raylet" not in p
                   and "--runtime-env" not in p],
    "runtime_env_agent": [p for p in procs if "runtime_env/agent/main.py" in p],
    "lean_runtime_env_agent": [p for p in procs if "lean_agent.py --runtime-env" in p and "raylet/raylet" not in p],
    "job_env": job_env,
    "asked": asked,
}
session = node.get_session_dir_path()
out["port_files"] = {
    name: open(os.path.join(session, ray._raylet.get_port_filename(node.node_id, getattr(ray._raylet, name)))).read()
    for name in ("METRICS_AGENT_PORT_NAME", "METRICS_EXPORT_PORT_NAME", "DASHBOARD_AGENT_LISTEN_PORT_NAME")
}
agents = [pid for pid in descendants(os.getpid()) if cmdline(pid) in out["lean_agent"] + out["lean_runtime_env_agent"]]
import threading
out["forwarders"] = [t.name for t in threading.enumerate() if t.name == "red-log-forwarder"]
ray.shutdown()
deadline = time.monotonic() + 5
while any(t.name == "red-log-forwarder" for t in threading.enumerate()) and time.monotonic() < deadline:
    time.sleep(0.05)
out["forwarders_left"] = [t.name for t in threading.enumerate() if t.name == "red-log-forwarder"]
deadline = time.monotonic() + 10
while any(cmdline(pid) for pid in agents) and time.monotonic() < deadline:
    time.sleep(0.1)
out["agents_left"] = [cmdline(pid) for pid in agents if cmdline(pid)]
import ray._private.services as ray_services
out["restored"] = [
    getattr(ray_node.Node, m).__qualname__ for m in ("start_api_server", "start_monitor", "start_log_monitor")
] + [f.__module__ + "." + f.__qualname__ for f in (ray_services.get_node, ray_services.start_ray_process)]
print("RESULT " + json.dumps(out))
"""


def run_start(runtime_env: dict | None = None) -> tuple[dict, str]:
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "RED_TEST_RUNTIME_ENV": json.dumps(runtime_env)}
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
    # The log monitor is a thread of the driver, not a process, and it ends with ray.shutdown().
    assert out["log_monitor"] == [] and "log_monitor" not in out["kinds"], out
    assert out["forwarders"] == ["red-log-forwarder"] and out["forwarders_left"] == [], out
    # Kept: what a run needs.
    assert out["gcs"] and out["raylet"], out
    # No runtime environment: red.lean_agent answers for Ray's runtime-env agent, and a task that asks
    # for one anyway gets an error that says where the environment goes.
    assert out["runtime_env_agent"] == [] and len(out["lean_runtime_env_agent"]) == 1, out
    assert out["asked"].startswith("RuntimeEnvSetupError") and "spec.runtimeEnv" in out["asked"], out["asked"]
    # Ray's dashboard agent is replaced by red.lean_agent, which says "not served" for all three ports
    # (what Ray's minimal install writes) and ends with the raylet.
    assert out["ray_agent"] == [] and len(out["lean_agent"]) == 1, out
    assert set(out["port_files"].values()) == {"-1"}, out["port_files"]
    assert out["agents_left"] == [], "the lean agents must exit with their raylet"
    # The raylet retries its object-store connection every 20 ms, not every second.
    assert out["retry_ms"] == 20, out["retry_ms"]
    assert out["answer"] == 42 and out["said"] == "red-local-ray-says-hello"
    assert out["forwarded"], "what actors print must still reach the terminal (the log forwarder)"
    assert "Traceback" not in stderr, stderr[-3000:]
    # The functions the lean start replaces are Ray's own again once ray.init returned.
    assert out["restored"] == [
        "Node.start_api_server",
        "Node.start_monitor",
        "Node.start_log_monitor",
        "ray._private.services.get_node",
        "ray._private.services.start_ray_process",
    ]


@pytest.mark.ray
def test_a_run_with_a_runtime_environment_gets_rays_runtime_env_agent() -> None:
    out, stderr = run_start({"env_vars": {"RED_TEST_VAR": "job"}})
    assert len(out["runtime_env_agent"]) == 1 and out["lean_runtime_env_agent"] == [], out
    assert out["job_env"] == "job"  # the job's environment, installed by Ray's agent
    assert out["asked"] == "asked"  # and a task's own
    assert out["forwarded"] and out["answer"] == 42
    assert "Traceback" not in stderr, stderr[-3000:]


@pytest.mark.ray
def test_the_skipped_methods_come_back_when_ray_init_fails() -> None:
    """A typo in an init argument fails ray.init inside the lean start; Ray's Node is left as it was."""
    import ray._private.node as ray_node
    import ray._private.services as ray_services

    from red.local_ray import SKIPPED, start_lean

    before = {m: ray_node.Node.__dict__[m] for m in SKIPPED}
    get_node, start_ray_process = ray_services.get_node, ray_services.start_ray_process
    with pytest.raises(RuntimeError, match="Unknown keyword argument"):
        start_lean(num_cpus=1, not_an_init_argument=True)
    assert {m: ray_node.Node.__dict__[m] for m in SKIPPED} == before
    assert ray_services.get_node is get_node
    assert ray_services.start_ray_process is start_ray_process


def test_the_raylet_command_gets_the_lean_agent_and_keeps_everything_else() -> None:
    import ray._raylet as ray_raylet

    from red.errors import RedError
    from red.local_ray import LEAN_AGENT, lean_agent_command

    node = "ab" * 28
    command = [
        "/x/raylet",
        "--session_dir=/tmp/ray/session_1",
        f"--node_id={node}",
        "--dashboard_agent_command=/usr/bin/python -u /x/dashboard/agent.py --node-id=x",
        "--runtime_env_agent_command=/usr/bin/python -u /x/runtime_env/agent/main.py",
    ]
    out = lean_agent_command(command)
    assert out[:3] == command[:3] and out[4:] == command[4:]
    agent = out[3].removeprefix("--dashboard_agent_command=").split()
    assert agent[:4] == [sys.executable, "-u", "-I", str(LEAN_AGENT)]
    assert agent[4:] == [
        f"/tmp/ray/session_1/{ray_raylet.get_port_filename(node, getattr(ray_raylet, n))}"
        for n in ("METRICS_AGENT_PORT_NAME", "METRICS_EXPORT_PORT_NAME", "DASHBOARD_AGENT_LISTEN_PORT_NAME")
    ]
    # A Ray that starts its raylet some other way gets a message, not a raylet with Ray's own agent.
    for missing in ("--session_dir", "--node_id", "--dashboard_agent_command"):
        with pytest.raises(RedError, match=f"without one {missing}="):
            lean_agent_command([a for a in command if not a.startswith(missing)])


def test_without_a_runtime_environment_the_runtime_env_agent_is_the_lean_one_where_rays_would_listen() -> None:
    import ray._raylet as ray_raylet

    from red.errors import RedError
    from red.local_ray import LEAN_AGENT, lean_agent_command

    node = "cd" * 28
    ray_agent = "/usr/bin/python -u /x/runtime_env/agent/main.py --node-id=x --node-ip-address=10.1.2.3 " \
                "--runtime-env-agent-port=0 --session-dir=/tmp/ray/session_2"
    command = ["/x/raylet", "--session_dir=/tmp/ray/session_2", f"--node_id={node}",
               "--dashboard_agent_command=/usr/bin/python /x/dashboard/agent.py",
               f"--runtime_env_agent_command={ray_agent}", "--other=1"]
    out = lean_agent_command(command, runtime_env_agent=False)
    assert out[:3] == command[:3] and out[5:] == command[5:]
    assert out[3] == lean_agent_command(command)[3]  # the dashboard agent's stand-in as before
    agent = out[4].removeprefix("--runtime_env_agent_command=").split()
    port_file = ray_raylet.get_port_filename(node, ray_raylet.RUNTIME_ENV_AGENT_PORT_NAME)
    assert agent == [sys.executable, "-u", "-I", str(LEAN_AGENT), "--runtime-env", "10.1.2.3", "0",
                     f"/tmp/ray/session_2/{port_file}"]
    assert lean_agent_command(command, runtime_env_agent=True)[4] == command[4]  # Ray's own, untouched
    with pytest.raises(RedError, match="without one --node-ip-address="):
        lean_agent_command([*command[:4], command[4].replace("--node-ip-address=10.1.2.3 ", ""), *command[5:]],
                           runtime_env_agent=False)
