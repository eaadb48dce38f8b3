"""What a user types, on a real API server: `kubectl get fed -o wide`, and the documented way to wait for
a Federation's end (docs/kubernetes.md's blocks are run as written). Statuses are written here as the
operator would write them (the CRD alone; no operator, so each outcome is chosen by the test)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cluster import KubeCluster, kubectl_json
from tests.operator.e2e_helpers import REPO, apply, federation

pytestmark = pytest.mark.cluster

NAME = "digits-star"  # the name the docs use; each test has its own namespace
TESTED = "<!-- tested by tests/operator/test_kubectl_surface.py"


def documented_blocks() -> list[str]:
    """The bash blocks of docs/kubernetes.md that follow the `tested by` marker, in order."""
    text = (REPO / "docs" / "kubernetes.md").read_text()
    return re.findall(re.escape(TESTED) + r"[^\n]*\n```bash\n(.*?)```", text, flags=re.S)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cond(type_: str, status: str, reason: str) -> dict[str, Any]:
    return {"type": type_, "status": status, "reason": reason, "message": reason, "lastTransitionTime": now()}


OUTCOMES: dict[str, dict[str, Any]] = {
    "succeeded": {
        "phase": "Succeeded",
        "completionTime": now(),
        "conditions": [cond("Succeeded", "True", "Completed"), cond("Ready", "True", "Completed")],
    },
    "failed": {
        "phase": "Failed",
        "reason": "TooFewClients",
        "message": "2 of 3 clients are dead",
        "completionTime": now(),
        "conditions": [cond("Failed", "True", "TooFewClients"), cond("Ready", "False", "Failed")],
    },
    "stalled": {
        "phase": "Running",
        "conditions": [cond("Stalled", "True", "NoProgress"), cond("Ready", "False", "NotReady")],
    },
}


def set_status(cluster: KubeCluster, namespace: str, status: dict[str, Any]) -> None:
    import json

    cluster.kubectl(
        "patch",
        "federation",
        NAME,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def user_env(cluster: KubeCluster, namespace: str, tmp_path: Path) -> dict[str, str]:
    """A shell as the user has it: the pinned kubectl on PATH, a kubeconfig whose namespace is the test's."""
    kubeconfig = tmp_path / "kubeconfig"
    shutil.copy(cluster.kubeconfig, kubeconfig)
    subprocess.run(
        [
            str(cluster.bin_dir / "kubectl"),
            "config",
            "set-context",
            "--current",
            f"--namespace={namespace}",
            "--kubeconfig",
            str(kubeconfig),
        ],
        check=True,
        capture_output=True,
    )
    return {**os.environ, "PATH": f"{cluster.bin_dir}{os.pathsep}{os.environ['PATH']}", "KUBECONFIG": str(kubeconfig)}


def run_block(block: str, env: dict[str, str], later: dict[str, Any], cluster: KubeCluster, ns: str) -> Any:
    """Run a documented block with bash while the status changes 3 s in (the run ends during the wait)."""
    script = block.replace("--timeout=30m", "--timeout=120s")
    timer = threading.Timer(3.0, set_status, args=(cluster, ns, later))
    timer.start()
    started = time.monotonic()
    try:
        proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, timeout=200)
    finally:
        timer.cancel()
    proc.elapsed = time.monotonic() - started  # type: ignore[attr-defined]
    return proc


def test_the_docs_have_the_blocks_this_file_runs() -> None:
    simple, script = documented_blocks()
    assert "--for=jsonpath='{.status.completionTime}'" in simple
    assert "--for=condition=Stalled" in script and "wait -n" in script


@pytest.mark.parametrize("outcome", ["succeeded", "failed"])
def test_documented_wait_returns_on_either_outcome(
    kube_cluster: KubeCluster, kube_namespace: str, federation_crd: str, tmp_path: Path, outcome: str
) -> None:
    apply(kube_cluster, kube_namespace, federation(NAME))
    simple, _ = documented_blocks()
    proc = run_block(
        simple, user_env(kube_cluster, kube_namespace, tmp_path), OUTCOMES[outcome], kube_cluster, kube_namespace
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.elapsed < 60, "the wait did not end with the run"
    expected = "Succeeded" if outcome == "succeeded" else "Failed TooFewClients"
    assert proc.stdout.strip().splitlines()[-1].strip() == expected, proc.stdout


@pytest.mark.parametrize(("outcome", "rc"), [("succeeded", 0), ("failed", 1), ("stalled", 1)])
def test_documented_script_stops_at_the_first_outcome_and_exits_0_only_on_success(
    kube_cluster: KubeCluster, kube_namespace: str, federation_crd: str, tmp_path: Path, outcome: str, rc: int
) -> None:
    apply(kube_cluster, kube_namespace, federation(NAME))
    _, script = documented_blocks()
    proc = run_block(
        script, user_env(kube_cluster, kube_namespace, tmp_path), OUTCOMES[outcome], kube_cluster, kube_namespace
    )
    assert proc.returncode == rc, proc.stdout + proc.stderr
    assert proc.elapsed < 60, "the script did not stop at the outcome"
    if outcome == "failed":
        assert "TooFewClients" in proc.stdout


def test_waiting_for_succeeded_alone_hangs_on_failure(
    kube_cluster: KubeCluster, kube_namespace: str, federation_crd: str
) -> None:
    """Why the docs do not say `--for=condition=Succeeded`: on a failed run it only times out."""
    apply(kube_cluster, kube_namespace, federation(NAME))
    set_status(kube_cluster, kube_namespace, OUTCOMES["failed"])
    proc = kube_cluster.kubectl(
        "wait", f"federation/{NAME}", "-n", kube_namespace, "--for=condition=Succeeded", "--timeout=3s", check=False
    )
    assert proc.returncode != 0 and "timed out" in proc.stderr


def _table(out: str) -> list[dict[str, str]]:
    """`kubectl get` output as rows of column -> value (columns are separated by 2+ spaces)."""
    lines = out.rstrip("\n").splitlines()
    starts = [m.start() for m in re.finditer(r"\S+", lines[0])]
    names = lines[0].split()
    rows = []
    for line in lines[1:]:
        cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], len(line) + 1], strict=True)]
        rows.append(dict(zip(names, cells, strict=True)))
    return rows


def test_get_wide_shows_ready_reason_raycluster_and_job(
    kube_cluster: KubeCluster, kube_namespace: str, federation_crd: str
) -> None:
    apply(kube_cluster, kube_namespace, federation(NAME))
    set_status(
        kube_cluster,
        kube_namespace,
        {
            **OUTCOMES["failed"],
            "progress": "3/4",
            "healthyNodes": "1/4",
            "rayCluster": {"name": f"{NAME}-ray"},
            "job": {"submissionId": "red-digits-star-0a1b2c3d-1"},
        },
    )
    plain = kube_cluster.kubectl("get", "fed", NAME, "-n", kube_namespace).stdout
    assert plain.splitlines()[0].split() == ["NAME", "PHASE", "READY", "ROUND", "NODES", "ACCURACY", "AGE"]
    (row,) = _table(kube_cluster.kubectl("get", "fed", NAME, "-n", kube_namespace, "-o", "wide").stdout)
    assert {k: row[k] for k in ("NAME", "PHASE", "READY", "ROUND", "NODES", "REASON", "RAYCLUSTER", "JOB")} == {
        "NAME": NAME,
        "PHASE": "Failed",
        "READY": "False",
        "ROUND": "3/4",
        "NODES": "1/4",
        "REASON": "TooFewClients",
        "RAYCLUSTER": f"{NAME}-ray",
        "JOB": "red-digits-star-0a1b2c3d-1",
    }


def test_operator_json_logs_are_json_lines(
    kube_cluster: KubeCluster, kube_namespace: str, federation_crd: str, tmp_path: Path
) -> None:
    """`RED_OPERATOR_LOG_FORMAT=json` (the chart's operator.logFormat): the real operator, reconciling."""
    import json

    from tests.operator.e2e_helpers import wait_until
    from tests.operator.operator_proc import start_operator
    from tests.operator.ray_head import free_port

    token = tmp_path / "token"
    token.write_text("not-a-real-token\n")
    op = start_operator(
        kube_cluster.kubeconfig,
        tmp_path / "op",
        dashboard_url=f"http://127.0.0.1:{free_port()}",
        token_file=token,
        namespaces=[kube_namespace],
        env={"RED_OPERATOR_LOG_FORMAT": "json"},
    )
    created = f"{kube_namespace}/json-logs: created RoleBinding"
    try:
        apply(kube_cluster, kube_namespace, federation("json-logs"))
        wait_until("the operator to log the objects it created", lambda: created in op.logs(), log=op.logs)
        # While it runs: what it created carries the recommended labels, on the real API server too.
        rc = wait_until(
            "the RayCluster",
            lambda: kubectl_json(kube_cluster, "get", "rayclusters.ray.io", "-n", kube_namespace)["items"],
            log=op.logs,
        )[0]
        selector = "app.kubernetes.io/instance=json-logs,app.kubernetes.io/part-of=red"
        owned = kubectl_json(
            kube_cluster,
            "get",
            "secrets,configmaps,serviceaccounts,roles,rolebindings",
            "-n",
            kube_namespace,
            "-l",
            selector,
        )["items"]
    finally:
        op.stop()
    assert rc["metadata"]["labels"]["app.kubernetes.io/component"] == "ray-cluster"
    assert sorted(o["kind"] for o in owned) == ["ConfigMap", "Role", "RoleBinding", "Secret", "ServiceAccount"]
    lines = [ln for ln in op.logs().splitlines() if ln.strip()]
    records = []
    for ln in lines:
        try:
            records.append(json.loads(ln))
        except ValueError:
            raise AssertionError(f"not a JSON line: {ln!r}") from None
    assert all({"message", "severity", "timestamp"} <= r.keys() for r in records)
    assert any(r["message"].startswith(created) for r in records)
