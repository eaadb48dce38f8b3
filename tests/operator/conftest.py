"""Fixtures for the operator's tests: a real local Ray head, the CRD, and the operator process.

Everything a fixture starts is stopped by it, also when a test fails.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.cluster import KubeCluster
from tests.operator.operator_proc import OperatorProcess, start_operator
from tests.operator.ray_head import RayHead, start_ray_head

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_head() -> Iterator[RayHead]:
    """A real local Ray head with its dashboard and token auth on, shared by the session's tests."""
    head = start_ray_head()
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="session")
def open_ray_head() -> Iterator[RayHead]:
    """A real local Ray head with token auth OFF: what a KubeRay older than v1.6.0 leaves running."""
    head = start_ray_head(num_cpus=1, auth=False)
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture(scope="session")
def federation_crd(kube_cluster: KubeCluster) -> str:
    """The checked-in CRD, installed on the session's cluster."""
    kube_cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds" / "federation.yaml"))
    # `kubectl wait` errors (not waits) while a brand-new CRD has no conditions yet: a loaded API
    # server can take that long, so try again.
    for attempt in range(3):
        done = kube_cluster.kubectl(
            "wait", "--for=condition=Established", "crd/federations.red.dev", "--timeout=60s", check=attempt == 2
        )
        if done.returncode == 0:
            break
        time.sleep(2)
    return "federations.red.dev"


class OperatorControl:
    """The running operator, and a way to restart it as a crash would (SIGKILL, then a new process)."""

    def __init__(
        self, cluster: KubeCluster, namespace: str, head: RayHead, workdir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.cluster, self.namespace, self.head, self.workdir = cluster, namespace, head, workdir
        self.env = env  # more environment for the operator (settings), on every start
        self.starts = 0
        self.op = self._start()

    def _start(self) -> OperatorProcess:
        self.starts += 1
        return start_operator(
            self.cluster.kubeconfig,
            self.workdir,
            dashboard_url=self.head.dashboard_url,
            token_file=self.head.token_file,
            namespaces=[self.namespace],
            env=self.env,
            log_name=f"operator-{self.starts}.log",
        )

    def restart(self, *, kill: bool = True) -> None:
        if kill:
            self.op.kill()
        else:
            self.op.stop()
        self.op = self._start()

    def logs(self) -> str:
        return "".join(p.read_text(errors="replace") for p in sorted(self.workdir.glob("operator-*.log")))


@pytest.fixture
def red_operator(
    kube_cluster: KubeCluster,
    kube_namespace: str,
    federation_crd: str,
    ray_head: RayHead,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[OperatorControl]:
    """The operator, watching the test's namespace, pointed at the local Ray head; a test's
    `@pytest.mark.operator_env(NAME=value)` adds settings to its environment."""
    marker = request.node.get_closest_marker("operator_env")
    env = {k: str(v) for k, v in marker.kwargs.items()} if marker else None
    control = OperatorControl(kube_cluster, kube_namespace, ray_head, tmp_path / "operator", env=env)
    try:
        yield control
    finally:
        # Delete the test's Federations while an operator still runs, so their Ray jobs stop and their
        # finalizers go (the namespace would hang in Terminating otherwise).
        try:
            if control.op.proc.poll() is not None:
                control.op = control._start()
            kube_cluster.kubectl(
                "delete",
                "federations",
                "--all",
                "-n",
                kube_namespace,
                "--timeout=120s",
                check=False,
                timeout=180,
            )
        finally:
            control.op.stop()
            print(f"\n--- operator log (tail) ---\n{control.logs()[-8000:]}")
