"""Hardening (issue 11) on the real control plane with a real Ray head and the engine training for real:
untrusted reports never wedge status, a lost cluster is one failure, a retry ignores its predecessor's
report, API errors are visible and backed off, bad specs fail before a cluster exists and recover when
fixed, and the liveness probe notices stuck reconciles."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from red_operator.jobs import JobsClient

from tests.fixtures.cluster import KubeCluster
from tests.operator.conftest import OperatorControl
from tests.operator.e2e_helpers import apply, condition, events, federation, status, wait_until
from tests.operator.operator_proc import start_operator
from tests.operator.ray_head import RayHead

pytestmark = [pytest.mark.cluster, pytest.mark.ray]


def has_raycluster(cluster: KubeCluster, ns: str, name: str) -> bool:
    return cluster.kubectl("get", "raycluster", name, "-n", ns, check=False).returncode == 0


def write_report(cluster: KubeCluster, ns: str, fed: str, text: str, tmp: Path) -> None:
    """Overwrite the report ConfigMap as user code could (the engine's account may write it)."""
    patch = tmp / "report-patch.json"
    patch.write_text(json.dumps({"data": {"report": text}}))
    cluster.kubectl("patch", "configmap", f"{fed}-report", "-n", ns, "--type=merge", "--patch-file", str(patch))


def report_condition(cluster: KubeCluster, ns: str, name: str, reason: str) -> dict[str, Any] | None:
    c = condition(status(cluster, ns, name), "ReportValid")
    return c if c.get("reason") == reason else None


def test_bad_reports_never_wedge_status(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, tmp_path: Path
) -> None:
    ns, name = kube_namespace, "untrusted"
    # client_0 sleeps 90 s in its only round: the engine writes nothing meanwhile, so what the test
    # writes into the report ConfigMap stays there while the operator reads it.
    apply(
        kube_cluster,
        ns,
        federation(
            name, rounds=1, clients=2, ttlSecondsAfterFinished=0, stallTimeoutSeconds=600,
            task={"name": "digits", "params": {"epochs": 1, "lr": 0.2, "slowdown": {"client_0": 90}}},
        ),
    )
    wait_until(
        "the engine's first report",
        lambda: report_condition(kube_cluster, ns, name, "Valid"),
        timeout_s=600,
        log=lambda: json.dumps(status(kube_cluster, ns, name), indent=1),
    )
    sid = status(kube_cluster, ns, name)["job"]["submissionId"]
    good = {
        "event": "round", "federation": name, "submissionId": sid, "round": 0, "rounds": 1,
        "nodes": [{"id": "client_0", "role": "train", "health": "Alive", "version": 0, "restarts": 0}],
    }

    # A diverging model: NaN and Infinity metrics. Dropped, said so, and status stays storable.
    nan = json.dumps({**good, "metrics": {"accuracy": 0.5}})
    nan = nan.replace('"accuracy": 0.5', '"accuracy": NaN, "loss": 1e999')
    write_report(kube_cluster, ns, name, nan, tmp_path)
    c = wait_until("ReportValid=True/Sanitized", lambda: report_condition(kube_cluster, ns, name, "Sanitized"))
    assert c["status"] == "True" and "accuracy" in c["message"] and "loss" in c["message"], c
    assert status(kube_cluster, ns, name).get("metrics") == {}

    # Wrong shapes: a list, a fractional round, a string version. Each one a condition, not a crash.
    for text, says in (
        ("[1, 2, 3]", "must be a JSON object, got list"),
        (json.dumps({**good, "round": 0.5}), "round"),
        (json.dumps({**good, "nodes": [{"id": "client_0", "version": "7"}]}), "nodes.0.version"),
        (json.dumps({**good, "pad": "x" * 600_000}), "bytes; at most"),
    ):
        write_report(kube_cluster, ns, name, text, tmp_path)

        def invalid(says: str = says) -> dict[str, Any] | None:
            c = report_condition(kube_cluster, ns, name, "ReportInvalid")
            return c if c and says in c["message"] else None

        c = wait_until(f"ReportValid=False naming {says!r}", invalid)
        assert c["status"] == "False"
    assert ("Warning", "ReportValidFalse") in {(e["type"], e["reason"]) for e in events(kube_cluster, ns, name)}

    # The run still ends, and the TTL still frees the cluster.
    wait_until("Succeeded", lambda: status(kube_cluster, ns, name).get("phase") == "Succeeded", timeout_s=300)
    wait_until("the TTL to remove the cluster", lambda: not has_raycluster(kube_cluster, ns, f"{name}-ray"))


def test_deleting_the_raycluster_costs_one_retry(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, ray_head: RayHead
) -> None:
    ns, name = kube_namespace, "lost"
    # client_0 sleeps 1 s a round, so the first attempt cannot finish before the test stops it (a fast
    # engine ran 40 plain rounds between "round 1" and the stop, and the attempt succeeded).
    task = {"name": "digits", "params": {"epochs": 1, "lr": 0.2, "slowdown": {"client_0": 1.0}}}
    apply(
        kube_cluster, ns,
        federation(name, rounds=20, clients=2, task=task, backoffLimit=1, stallTimeoutSeconds=600),
    )
    wait_until("round 1", lambda: (status(kube_cluster, ns, name).get("round") or 0) >= 1, timeout_s=300)
    first = status(kube_cluster, ns, name)["job"]["submissionId"]

    # Someone deletes the RayCluster; its job dies with it (the stand-in head outlives it: stop the job).
    kube_cluster.kubectl("delete", "raycluster", f"{name}-ray", "-n", ns, "--wait=false")
    JobsClient(ray_head.dashboard_url, ray_head.token).stop(first)
    # The failure count is the durable record of the loss. The job's status passes through LOST or STOPPED
    # only until the recreated cluster is ready and attempt 2 is submitted, which can be quicker than one
    # poll here (CI once missed that window on a loaded machine).
    lost = wait_until(
        "the loss recorded",
        lambda: int((st := status(kube_cluster, ns, name)).get("job", {}).get("failures") or 0) >= 1 and st,
        timeout_s=120,
    )
    assert lost["job"]["failures"] == 1, lost["job"]
    assert lost["job"]["status"] in ("LOST", "STOPPED", "PENDING", "RUNNING"), lost["job"]
    assert lost["job"]["countedFailure"] == first, lost["job"]

    # The retry (attempt 2) runs from a clean slate: the old attempt's report (its last words after
    # the stop, its dead nodes) is not this attempt's news.
    seen: list[dict[str, Any]] = []

    def done() -> bool:
        st = status(kube_cluster, ns, name)
        if (st.get("job") or {}).get("attempts") == 2:
            seen.append(st)
        return st.get("phase") in ("Succeeded", "Failed")

    wait_until("the federation to finish", done, timeout_s=600, poll_s=1)
    st = status(kube_cluster, ns, name)
    assert st["phase"] == "Succeeded", (st.get("reason"), st.get("message"), st.get("job"))
    assert (st["job"]["attempts"], st["job"]["failures"]) == (2, 1), st["job"]
    for s in seen:
        assert condition(s, "Degraded").get("status") != "True", condition(s, "Degraded")
        assert condition(s, "Stalled").get("status") != "True", condition(s, "Stalled")


def test_api_errors_are_a_condition_an_event_and_back_off(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl
) -> None:
    ns, name = kube_namespace, "quantity"
    pool = {
        "name": "gpu", "gpusPerWorker": 1, "cpusPerWorker": "4 cores", "minWorkers": 1, "maxWorkers": 1,
        "nodeSelector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    apply(kube_cluster, ns, federation(name, rounds=2, clients=2, cluster={"nodePools": [pool]}))

    def synced_false(wait: str) -> dict[str, Any] | None:
        c = condition(status(kube_cluster, ns, name), "Synced")
        return c if c.get("status") == "False" and f"retrying in {wait} s" in c.get("message", "") else None

    # The test operator's backoff base is 1 s: the waits double (1, 2, 4, 8 s) instead of a silent retry.
    c = wait_until("Synced=False, backing off to 8 s", lambda: synced_false("8"), timeout_s=120)
    assert c["reason"] == "ApiError" and "HTTP 422" in c["message"], c
    assert "create_namespaced_custom_object" in c["message"], c
    assert condition(status(kube_cluster, ns, name), "Stalled")["reason"] == "ApiError"
    warnings = [e for e in events(kube_cluster, ns, name) if (e["type"], e["reason"]) == ("Warning", "ApiError")]
    assert warnings and "HTTP 422" in warnings[0]["message"]
    assert not has_raycluster(kube_cluster, ns, f"{name}-ray")

    # Fixed (allowed: nothing runs yet), the next try creates the cluster and Synced comes back.
    pool["cpusPerWorker"] = "4"
    kube_cluster.kubectl(
        "patch", "federation", name, "-n", ns, "--type=merge", "-p",
        json.dumps({"spec": {"cluster": {"nodePools": [pool]}}}),
    )
    wait_until("the cluster", lambda: has_raycluster(kube_cluster, ns, f"{name}-ray"), timeout_s=120)
    wait_until("Synced=True", lambda: condition(status(kube_cluster, ns, name), "Synced").get("status") == "True")


def test_bad_specs_fail_before_a_cluster_and_recover_when_fixed(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl
) -> None:
    ns = kube_namespace
    # Both pass the CRD (task names and params are the registry's business); neither may cost a cluster.
    bad = {
        "unknown-task": ({"name": "imagenet"}, "unknown task 'imagenet'"),
        "nan-lr": ({"name": "digits", "params": {"lr": "nan"}}, "params.lr is not a finite number"),
    }
    for name, (task, _) in bad.items():
        apply(kube_cluster, ns, federation(name, rounds=2, clients=2, task=task))
    for name, (_, says) in bad.items():
        wait_until(f"{name} Failed", lambda name=name: status(kube_cluster, ns, name).get("phase") == "Failed")
        st = status(kube_cluster, ns, name)
        assert st["reason"] == "InvalidSpec" and says in st["message"], st
        assert not has_raycluster(kube_cluster, ns, f"{name}-ray")
        assert "job" not in st

    # Fixing the spec revives the Federation: it runs and succeeds.
    kube_cluster.kubectl(
        "patch", "federation", "nan-lr", "-n", ns, "--type=merge", "-p",
        json.dumps({"spec": {"task": {"name": "digits", "params": {"lr": 0.2}}}}),
    )
    wait_until("Succeeded", lambda: status(kube_cluster, ns, "nan-lr").get("phase") == "Succeeded", timeout_s=400)
    st = status(kube_cluster, ns, "nan-lr")
    assert st["job"]["attempts"] == 1 and "reason" not in st


def test_liveness_fails_when_reconciles_are_stuck(
    kube_cluster: KubeCluster, kube_namespace: str, federation_crd: str, ray_head: RayHead, tmp_path: Path
) -> None:
    ns, name = kube_namespace, "hung"
    # A "dashboard" that accepts connections and never answers, and a dashboard timeout longer than the
    # test: the submission hangs, as a wedged call would.
    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(64)
    port = black_hole.getsockname()[1]
    op = start_operator(
        kube_cluster.kubeconfig,
        tmp_path / "operator",
        dashboard_url=f"http://127.0.0.1:{port}",
        token_file=ray_head.token_file,
        namespaces=[ns],
        env={"RED_OPERATOR_HTTP_TIMEOUT_SECONDS": "900", "RED_OPERATOR_STUCK_AFTER_SECONDS": "15"},
    )
    try:
        apply(kube_cluster, ns, federation(name, rounds=2, clients=2))

        def liveness_fails() -> str | None:
            url = f"http://127.0.0.1:{op.liveness_port}/healthz"
            try:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    resp.read()
                    return None
            except urllib.error.HTTPError as err:
                return f"HTTP {err.code}"

        got = wait_until("the liveness probe to fail", liveness_fails, timeout_s=240, poll_s=2)
        assert got.startswith("HTTP 5"), got
    finally:
        op.stop()
        black_hole.close()
        kube_cluster.kubectl(
            "patch", "federation", name, "-n", ns, "--type=merge", "-p", '{"metadata":{"finalizers":null}}',
            check=False,
        )
        kube_cluster.kubectl("delete", "raycluster", "--all", "-n", ns, "--wait=false", check=False)
