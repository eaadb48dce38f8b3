"""The operator on the real control plane (kube-apiserver, scheduler, controller-manager, kwok GPU nodes,
the real KubeRay operator), with a real local Ray head standing in for each RayCluster's head through the
dashboard URL template, and the engine training for real."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from red_operator.jobs import JobsClient

from tests.fixtures.cluster import KubeCluster, kubectl_json
from tests.operator.conftest import OperatorControl
from tests.operator.e2e_helpers import (
    REPO,
    apply,
    condition,
    events,
    federation,
    get_fed,
    status,
    status_watch,
    wait_until,
)
from tests.operator.ray_head import RayHead

pytestmark = [pytest.mark.cluster, pytest.mark.ray]


def jobs_of(head: RayHead, prefix: str) -> list[dict[str, Any]]:
    client = JobsClient(head.dashboard_url, head.token)
    code, text = client._call("GET", "/api/jobs/")
    assert code == 200, text
    return [j for j in json.loads(text) if (j.get("submission_id") or "").startswith(prefix)]


def submission_prefix(fed: dict[str, Any]) -> str:
    return f"red-{fed['metadata']['name']}-{fed['metadata']['uid'].replace('-', '')[:8]}-"


# The engine reports at most every 0.1 s and the operator reads it every 0.25 s while Running: 20 rounds of
# digits take a second or two once the actors are up, shorter than the defaults (2 s, 5 s) would show.
@pytest.mark.operator_env(RED_OPERATOR_REPORT_INTERVAL_SECONDS=0.1, RED_OPERATOR_JOB_POLL_SECONDS=0.25)
def test_happy_path_digits_star(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, ray_head: RayHead
) -> None:
    ns, name = kube_namespace, "digits-star"
    kube_cluster.kubectl("apply", "-n", ns, "-f", str(REPO / "examples" / "digits-star.yaml"))

    # A RayCluster with a GPU worker group, whose pods land on the GPU nodes.
    rc = wait_until(
        "the RayCluster",
        lambda: kube_cluster.kubectl("get", "raycluster", f"{name}-ray", "-n", ns, check=False).returncode == 0,
    )
    rc = kubectl_json(kube_cluster, "get", "raycluster", f"{name}-ray", "-n", ns)
    (group,) = rc["spec"]["workerGroupSpecs"]
    assert group["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert rc["metadata"]["ownerReferences"][0]["kind"] == "Federation"

    def worker_pods_on_gpu() -> list[str] | None:
        pods = kubectl_json(
            kube_cluster, "get", "pods", "-n", ns, "-l", f"ray.io/cluster={name}-ray,ray.io/node-type=worker"
        )["items"]
        nodes = [p["spec"].get("nodeName") for p in pods]
        return nodes if pods and all(nodes) else None

    for node in wait_until("worker pods scheduled", worker_pods_on_gpu):
        labels = kubectl_json(kube_cluster, "get", "node", node)["metadata"]["labels"]
        assert labels["red.dev/pool"] == "gpu", node

    # `kubectl get fed` shows the phase, and status follows the rounds while the engine runs.
    phases: set[str] = set()

    def finished() -> bool:
        out = kube_cluster.kubectl("get", "fed", name, "-n", ns, "--no-headers").stdout.split()
        phases.add(out[1] if len(out) > 1 else "")
        return status(kube_cluster, ns, name).get("phase") in ("Succeeded", "Failed")

    with status_watch(kube_cluster, ns, name) as history:
        wait_until("the federation to finish", finished, timeout_s=600, poll_s=1)
    wait = kube_cluster.kubectl("wait", "--for=condition=Succeeded", f"federation/{name}", "-n", ns, "--timeout=60s")
    assert "condition met" in wait.stdout

    st = status(kube_cluster, ns, name)
    assert st["phase"] == "Succeeded", st
    assert "Running" in phases, phases
    running = [r for phase, r in history if phase == "Running"]
    assert any(0 < r < 20 for r in running), f"no round between the first and the last while Running: {history}"
    assert running == sorted(running), f"status went backwards: {history}"
    assert st["metrics"]["accuracy"] >= 0.90, st["metrics"]
    assert st["round"] == 20 and st["progress"] == "20/20"
    ids = sorted(n["id"] for n in st["nodes"] if n["role"] != "server")
    assert len([i for i in ids if i.startswith("client_")]) == 10, st["nodes"]
    assert all(isinstance(n["version"], int) and n["version"] > 0 for n in st["nodes"] if n["id"].startswith("client_"))
    assert st["job"]["attempts"] == 1 and st["job"]["status"] == "SUCCEEDED"
    assert st["observedGeneration"] == get_fed(kube_cluster, ns, name)["metadata"]["generation"]
    assert st.get("startTime") and st.get("completionTime")
    for type_ in ("ClusterReady", "JobSubmitted", "NodesHealthy", "Ready"):
        assert condition(st, type_)["status"] == "True", (type_, condition(st, type_))
    assert condition(st, "Failed")["status"] == "False"

    # The job was submitted exactly once.
    fed = get_fed(kube_cluster, ns, name)
    assert len(jobs_of(ray_head, submission_prefix(fed))) == 1
    reasons = {e["reason"] for e in events(kube_cluster, ns, name)}
    assert {"ClusterCreated", "JobSubmitted", "SucceededTrue"} <= reasons, reasons
    # The engine's report reached status only through its own ConfigMap; the token never did.
    assert ray_head.token not in json.dumps(fed)
    metrics = red_operator.op.metrics()
    assert 'red_operator_federations{phase="Succeeded"} 1.0' in metrics
    assert "red_operator_reconciles_total" in metrics


def test_operator_restart_submits_nothing_twice(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, ray_head: RayHead
) -> None:
    ns, name = kube_namespace, "restart"
    apply(kube_cluster, ns, federation(name, rounds=10))
    wait_until("a round reported", lambda: (status(kube_cluster, ns, name).get("round") or 0) >= 1, timeout_s=300)
    before = status(kube_cluster, ns, name)
    red_operator.restart(kill=True)  # as a crash: no chance to clean up or write anything
    after_restart = status(kube_cluster, ns, name)
    assert after_restart["job"] == before["job"] or after_restart["round"] >= before["round"]

    rounds: list[int] = []

    def done() -> bool:
        st = status(kube_cluster, ns, name)
        rounds.append(int(st.get("round") or 0))
        return st.get("phase") in ("Succeeded", "Failed")

    wait_until("the federation to finish", done, timeout_s=600, poll_s=1)
    st = status(kube_cluster, ns, name)
    assert st["phase"] == "Succeeded", st
    assert rounds == sorted(rounds), f"status went backwards: {rounds}"
    assert min(rounds) >= before["round"]
    assert st["job"]["attempts"] == 1 and st["job"]["submissionId"] == before["job"]["submissionId"]
    assert len(jobs_of(ray_head, submission_prefix(get_fed(kube_cluster, ns, name)))) == 1
    assert st["startTime"] == before["startTime"]


def test_delete_mid_run_leaves_nothing(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, ray_head: RayHead
) -> None:
    ns, name = kube_namespace, "doomed"
    apply(kube_cluster, ns, federation(name, rounds=200))
    wait_until(
        "the federation to run",
        lambda: status(kube_cluster, ns, name).get("phase") == "Running",
        timeout_s=300,
    )
    fed = get_fed(kube_cluster, ns, name)
    (job,) = jobs_of(ray_head, submission_prefix(fed))
    kube_cluster.kubectl("delete", "federation", name, "-n", ns, "--timeout=120s")

    client = JobsClient(ray_head.dashboard_url, ray_head.token)
    wait_until(
        "the Ray job to stop",
        lambda: (client.get(job["submission_id"]) or {}).get("status") in ("STOPPED", "FAILED"),
        timeout_s=60,
    )

    def leftovers() -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for kind in (
            "rayclusters",
            "pods",
            "secrets",
            "configmaps",
            "serviceaccounts",
            "roles",
            "rolebindings",
            "services",
        ):
            items = kubectl_json(kube_cluster, "get", kind, "-n", ns)["items"]
            names = [
                i["metadata"]["name"] for i in items if i["metadata"]["name"] not in ("default", "kube-root-ca.crt")
            ]
            if names:
                found[kind] = names
        return found

    wait_until("everything the Federation owned to go", lambda: not leftovers(), timeout_s=120)
    assert not list((red_operator.workdir / "engine-kubeconfigs").glob("*"))


def test_not_enough_gpus_names_the_shortfall(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl
) -> None:
    ns = kube_namespace
    pool = {
        "name": "h100",
        "gpusPerWorker": 8,
        "nodeSelector": {"red.dev/pool": "gpu"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    }
    # The spec itself fits (3 workers of 8 GPUs) but the GPU pool has 2 nodes x 8: a pod stays Pending.
    apply(
        kube_cluster,
        ns,
        federation(
            "big",
            clients=24,
            resources={"perNode": {"cpu": 0.1, "gpu": 1}},
            cluster={"nodePools": [{**pool, "maxWorkers": 3}]},
        ),
    )
    # The spec cannot fit its own node pools: nothing is created, the condition says by how much.
    apply(
        kube_cluster,
        ns,
        federation(
            "too-big",
            clients=24,
            resources={"perNode": {"cpu": 0.1, "gpu": 1}},
            cluster={"nodePools": [{**pool, "maxWorkers": 2}]},
        ),
    )

    def unschedulable() -> dict[str, Any] | None:
        c = condition(status(kube_cluster, ns, "big"), "ClusterReady")
        return c if c.get("reason") == "Unschedulable" else None

    c = wait_until("ClusterReady=False/Unschedulable", unschedulable, timeout_s=180)
    assert c["status"] == "False"
    assert "Insufficient nvidia.com/gpu" in c["message"], c
    st = status(kube_cluster, ns, "big")
    assert st["phase"] == "Starting" and "job" not in st  # never submitted to a cluster that is not ready
    # What the pods need is made before the RayCluster; what only the job needs waits for the job.
    def exists(kind: str, obj_name: str) -> bool:
        return kube_cluster.kubectl("get", kind, obj_name, "-n", ns, check=False).returncode == 0

    assert exists("serviceaccount", "big-engine") and exists("raycluster", "big-ray")
    for kind, obj_name in (("configmap", "big-report"), ("role", "big-engine"), ("rolebinding", "big-engine")):
        assert not exists(kind, obj_name), f"{kind} {obj_name} made before the job was submitted"

    def shortfall() -> dict[str, Any] | None:
        c = condition(status(kube_cluster, ns, "too-big"), "ClusterReady")
        return c if c.get("reason") == "InsufficientResources" else None

    c = wait_until("ClusterReady=False/InsufficientResources", shortfall, timeout_s=60)
    assert "needs 24 GPUs" in c["message"] and "at most 16" in c["message"], c
    assert condition(status(kube_cluster, ns, "too-big"), "Stalled")["status"] == "True"
    assert kube_cluster.kubectl("get", "raycluster", "too-big-ray", "-n", ns, check=False).returncode != 0
    reasons = {(e["type"], e["reason"]) for e in events(kube_cluster, ns, "big")}
    assert ("Warning", "ClusterReadyFalse") in reasons, reasons


def test_suspend_stops_and_resume_restarts(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, ray_head: RayHead
) -> None:
    ns, name = kube_namespace, "pausable"
    apply(kube_cluster, ns, federation(name, rounds=200))
    wait_until("running", lambda: status(kube_cluster, ns, name).get("phase") == "Running", timeout_s=300)
    kube_cluster.kubectl("patch", "federation", name, "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_until("suspended", lambda: status(kube_cluster, ns, name).get("phase") == "Suspended", timeout_s=60)
    wait_until(
        "the RayCluster to go",
        lambda: kube_cluster.kubectl("get", "raycluster", f"{name}-ray", "-n", ns, check=False).returncode != 0,
        timeout_s=60,
    )
    fed = get_fed(kube_cluster, ns, name)
    (first,) = jobs_of(ray_head, submission_prefix(fed))
    client = JobsClient(ray_head.dashboard_url, ray_head.token)
    wait_until(
        "job 1 stopped",
        lambda: (client.get(first["submission_id"]) or {}).get("status") == "STOPPED",
        timeout_s=60,
    )
    assert condition(status(kube_cluster, ns, name), "Suspended")["status"] == "True"

    kube_cluster.kubectl("patch", "federation", name, "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_until(
        "attempt 2",
        lambda: (status(kube_cluster, ns, name).get("job") or {}).get("attempts") == 2,
        timeout_s=180,
    )
    assert len(jobs_of(ray_head, submission_prefix(fed))) == 2
    time.sleep(0)


def test_ttl_removes_the_cluster_after_success(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, ray_head: RayHead
) -> None:
    ns, name = kube_namespace, "short-lived"
    apply(kube_cluster, ns, federation(name, rounds=2, clients=2, ttlSecondsAfterFinished=0))
    wait_until("Succeeded", lambda: status(kube_cluster, ns, name).get("phase") == "Succeeded", timeout_s=400)
    wait_until(
        "the RayCluster to be removed after the TTL",
        lambda: kube_cluster.kubectl("get", "raycluster", f"{name}-ray", "-n", ns, check=False).returncode != 0,
        timeout_s=90,
    )
    st = status(kube_cluster, ns, name)  # the Federation and its status stay: only the cluster goes
    assert st["phase"] == "Succeeded" and st.get("completionTime")
    assert condition(st, "Succeeded")["status"] == "True"


def test_engine_spec_error_fails_at_once_with_reason(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, ray_head: RayHead
) -> None:
    ns, name = kube_namespace, "bad-params"
    # Valid for the API server (task params are free-form), refused by the engine: a real job failure,
    # and one a retry cannot fix (the same spec fails the same way), so backoffLimit does not apply.
    bad = federation(name, backoffLimit=2, task={"name": "digits", "params": {"partition": "weird"}})
    apply(kube_cluster, ns, bad)
    wait_until("Failed", lambda: status(kube_cluster, ns, name).get("phase") == "Failed", timeout_s=400)
    st = status(kube_cluster, ns, name)
    assert st["job"]["attempts"] == 1, st["job"]
    failed = condition(st, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "SpecError", failed
    assert "spec.task.params.partition" in failed["message"]
    assert condition(st, "Stalled")["status"] == "True"  # kstatus sees the terminal failure
    fed = get_fed(kube_cluster, ns, name)
    assert len(jobs_of(ray_head, submission_prefix(fed))) == 1


def test_engine_failure_retries_up_to_backoff_limit_then_fails_with_reason(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, ray_head: RayHead
) -> None:
    ns, name = kube_namespace, "too-slow"
    # client_0 takes 60 s for its round, the round timeout is 3 s: every attempt fails the same way at
    # run time (not a spec error), so it is retried backoffLimit times.
    slow = federation(
        name, rounds=1, clients=2, backoffLimit=1, faultTolerance={"heartbeatSeconds": 2, "roundTimeoutSeconds": 3},
        task={"name": "digits", "params": {"epochs": 1, "lr": 0.2, "slowdown": {"client_0": 60}}},
    )
    apply(kube_cluster, ns, slow)
    wait_until("Failed", lambda: status(kube_cluster, ns, name).get("phase") == "Failed", timeout_s=400)
    st = status(kube_cluster, ns, name)
    assert st["job"]["attempts"] == 2, st["job"]  # the first try and one retry (backoffLimit 1)
    failed = condition(st, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "Stalled", failed
    fed = get_fed(kube_cluster, ns, name)
    assert len(jobs_of(ray_head, submission_prefix(fed))) == 2


def test_engine_silence_sets_stalled(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, ray_head: RayHead
) -> None:
    ns, name = kube_namespace, "slowpoke"
    # client_0 sleeps 45 s per local epoch: the engine has nothing to report for longer than the
    # 10 s stall deadline, so the operator must say Stalled (and clear it once rounds flow again).
    slow = federation(
        name, rounds=1, clients=2, stallTimeoutSeconds=10,
        task={"name": "digits", "params": {"epochs": 1, "lr": 0.2, "slowdown": {"client_0": 45}}},
    )
    apply(kube_cluster, ns, slow)

    def stalled() -> dict[str, Any] | None:
        c = condition(status(kube_cluster, ns, name), "Stalled")
        return c if c and c["status"] == "True" else None

    c = wait_until("Stalled=True", stalled, timeout_s=300)
    assert c["reason"] == "NoProgress" and "stallTimeoutSeconds 10" in c["message"]
    assert status(kube_cluster, ns, name)["phase"] == "Running"
    wait_until("Succeeded", lambda: status(kube_cluster, ns, name).get("phase") == "Succeeded", timeout_s=300)
    assert condition(status(kube_cluster, ns, name), "Stalled")["status"] == "False"


def test_existing_cluster_is_used_and_never_deleted(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, ray_head: RayHead
) -> None:
    from tests.cluster.test_harness_smoke import raycluster_manifest

    ns, name = kube_namespace, "borrower"
    shared = raycluster_manifest("shared", workers=1)
    shared["spec"]["authOptions"] = {"mode": "token", "secretName": "shared-token"}
    secret = {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "shared-token"},
        "stringData": {"auth_token": ray_head.token},
    }
    apply(kube_cluster, ns, secret)
    apply(kube_cluster, ns, shared)
    apply(kube_cluster, ns, federation(name, rounds=2, clients=2, cluster={"existingCluster": "shared"}))
    wait_until("Succeeded", lambda: status(kube_cluster, ns, name).get("phase") == "Succeeded", timeout_s=400)
    st = status(kube_cluster, ns, name)
    assert st["rayCluster"]["name"] == "shared" and st["rayCluster"]["existing"] is True
    # In cluster the engine runs as the borrowed cluster's ServiceAccount (here `default`): it may write
    # the borrower's report, and nothing else.
    lender = f"--as=system:serviceaccount:{ns}:default"
    can = kube_cluster.kubectl("auth", "can-i", "patch", f"configmap/{name}-report", "-n", ns, lender, check=False)
    assert can.stdout.strip() == "yes", can.stdout + can.stderr
    cannot = kube_cluster.kubectl("auth", "can-i", "patch", "configmap/other", "-n", ns, lender, check=False)
    assert cannot.stdout.strip() == "no", cannot.stdout + cannot.stderr
    # No cluster of its own was made, and deleting the Federation leaves the borrowed one alone.
    assert kube_cluster.kubectl("get", "raycluster", f"{name}-ray", "-n", ns, check=False).returncode != 0
    kube_cluster.kubectl("delete", "federation", name, "-n", ns, "--wait=true", "--timeout=120s")
    time.sleep(3)
    assert kube_cluster.kubectl("get", "raycluster", "shared", "-n", ns, check=False).returncode == 0
    assert kube_cluster.kubectl("get", "secret", "shared-token", "-n", ns, check=False).returncode == 0
