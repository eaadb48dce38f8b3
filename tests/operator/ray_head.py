"""A real local Ray head (dashboard and token auth on, unless asked otherwise) standing in for a RayCluster's
head.

It is stopped by killing its own process group and the processes that name its private temp dir, never
with `ray stop` (which would stop every Ray on the machine, including other tests' ones). Its HOME is
private too, so no `~/.ray/auth_token` leaks into the developer's.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayHead:
    dashboard_url: str
    token: str
    token_file: Path
    temp_dir: Path
    home: Path
    proc: subprocess.Popen[bytes]
    log: Path
    gcs_address: str = ""

    def stop(self) -> None:
        stop_process_group(self.proc)
        # Workers and agents started by the raylet name our temp dir; they may have left the group.
        for pid in _pids_mentioning(str(self.temp_dir)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        shutil.rmtree(self.home, ignore_errors=True)


def _pids_mentioning(needle: str) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle.encode() in (entry / "cmdline").read_bytes():
                out.append(int(entry.name))
        except OSError:
            continue
    return out


def stop_process_group(proc: subprocess.Popen[bytes], grace_s: float = 15) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def wait_http(url: str, token: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                if resp.status == 200:
                    return
        except Exception as err:
            last = err
        time.sleep(1)
    raise AssertionError(f"{url} did not answer within {timeout_s} s: {last}")


def start_ray_head(
    num_cpus: int = 2, *, auth: bool = True, attempts: int = 3, env: dict[str, str] | None = None
) -> RayHead:
    """Start a head; retried because Ray gives its raylet a fixed 30 s to register, which a loaded
    machine can miss ("The current node timed out during startup"). `auth=False`: token authentication
    off (`RAY_AUTH_MODE=disabled`), as on a cluster whose KubeRay dropped `authOptions`: the dashboard
    then answers anyone. The token still exists (callers send it). `env`: more environment for the head
    and so for its jobs (what envFrom gives a real head pod)."""
    for attempt in range(1, attempts + 1):
        try:
            return _start_ray_head(num_cpus, auth=auth, env=env)
        except Exception:
            if attempt == attempts:
                raise
            sys.stderr.write(f"ray head did not start (attempt {attempt}/{attempts}); retrying\n")
    raise AssertionError("unreachable")


def _start_ray_head(num_cpus: int, *, auth: bool, env: dict[str, str] | None) -> RayHead:
    temp_dir = Path(tempfile.mkdtemp(prefix="rr", dir="/tmp"))  # short: Ray's socket paths are limited
    home = Path(tempfile.mkdtemp(prefix="red-ray-home-"))
    token = secrets.token_hex(32)
    token_file = home / "token"
    token_file.write_text(token)
    dash = free_port()
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token" if auth else "disabled",
        **({"RAY_AUTH_TOKEN": token} if auth else {}),
        # A private HOME: nothing (e.g. ~/.ray/auth_token) leaks into the developer's one.
        "HOME": str(home),
        "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_DEDUP_LOGS": "0",
        "PYTHONUNBUFFERED": "1",  # `ray start`'s "Ray runtime started." must reach the log at once
        **(env or {}),
    }
    env.pop("RAY_ADDRESS", None)
    log = home / "ray-head.log"
    gcs_port = free_port()
    args = [
        str(VENV_BIN / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={gcs_port}",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--dashboard-agent-grpc-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        f"--metrics-export-port={free_port()}",
        f"--runtime-env-agent-port={free_port()}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    proc = subprocess.Popen(
        args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True, cwd=home
    )
    head = RayHead(
        f"http://127.0.0.1:{dash}", token, token_file, temp_dir, home, proc, log, f"127.0.0.1:{gcs_port}"
    )
    try:
        wait_http(f"{head.dashboard_url}/api/version", token, timeout_s=120)
        # The Jobs API answers only once the head's agent is up.
        wait_http(f"{head.dashboard_url}/api/jobs/", token, timeout_s=120)
        # The dashboard answers before the raylet has registered; `ray start` says this once it has (or
        # exits when the raylet missed its 30 s).
        deadline = time.monotonic() + 120
        while "Ray runtime started" not in log.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"ray start failed or hung (exit {proc.poll()})")
            time.sleep(1)
    except BaseException:
        sys.stderr.write(log.read_text(errors="replace")[-4000:])
        head.stop()
        raise
    return head
