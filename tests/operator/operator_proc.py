"""Run the real operator (`python -m red_operator.main`, what the `red-operator` script runs) as a
process against a cluster, out of cluster: the dashboard URL template points at a local Ray head."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.operator.ray_head import free_port, stop_process_group


@dataclass
class OperatorProcess:
    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    liveness_port: int

    def stop(self) -> None:
        stop_process_group(self.proc, grace_s=20)

    def kill(self) -> None:
        """SIGKILL: an operator that dies without any chance to clean up."""
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def logs(self) -> str:
        return self.log.read_text(errors="replace")

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
            return str(resp.read().decode())

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def start_operator(
    kubeconfig: Path,
    workdir: Path,
    *,
    dashboard_url: str,
    token_file: Path | None,
    token_key_file: Path | None = None,
    namespaces: list[str] | None = None,
    env: dict[str, str] | None = None,
    job_poll_seconds: float = 1.0,
    backoff_base_seconds: float = 1.0,
    log_name: str = "operator.log",
) -> OperatorProcess:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / log_name
    metrics_port, liveness_port = free_port(), free_port()
    args = [
        sys.executable,
        "-m",
        "red_operator.main",
        "--kubeconfig",
        str(kubeconfig),
        "--dashboard-url-template",
        dashboard_url,
        "--engine-kubeconfig-dir",
        str(workdir / "engine-kubeconfigs"),
        "--job-poll-seconds",
        str(job_poll_seconds),
        "--metrics-port",
        str(metrics_port),
        "--liveness-port",
        str(liveness_port),
        "--bind",
        "127.0.0.1",
    ]
    # A dev token (the stand-in Ray head's), or the production path: tokens derived from a key.
    if token_file is not None:
        args += ["--ray-token-file", str(token_file)]
    if token_key_file is not None:
        args += ["--token-key-file", str(token_key_file)]
    for ns in namespaces or []:
        args += ["--namespace", ns]
    proc = subprocess.Popen(
        args,
        env={**os.environ, "RED_OPERATOR_BACKOFF_BASE_SECONDS": str(backoff_base_seconds), **(env or {})},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    op = OperatorProcess(proc, log, metrics_port, liveness_port)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"red-operator exited with {proc.returncode}:\n{op.logs()[-4000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{liveness_port}/healthz", timeout=5) as resp:
                if resp.status == 200:
                    return op
        except OSError:
            pass
        time.sleep(0.5)
    op.stop()
    raise AssertionError(f"red-operator's liveness endpoint never answered:\n{op.logs()[-4000:]}")
