"""The e2e harness itself: a real control plane, kwok's simulated GPU nodes, and the real KubeRay operator.

These tests check what the operator tests rely on: GPU requests and taints schedule as on a real GPU
pool, KubeRay reports a RayCluster ready on kwok's pods, garbage collection works, and `down` leaves
nothing listening.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cluster import KubeCluster, cluster_up, kubectl_json, listening_ports
from tests.helpers import wait_until

pytestmark = pytest.mark.cluster

GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
POLL_S = 0.25


def pod_manifest(name: str, gpus: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "tolerations": [GPU_TOLERATION],
            "containers": [
                {
                    "name": "main",
                    # kwok never pulls or runs it; the name only has to be valid.
                    "image": "registry.invalid/red/trainer:0",
                    "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                }
            ],
        },
    }


def raycluster_manifest(name: str, workers: int) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": name},
        "spec": {
            "rayVersion": "2.60.0",
            "headGroupSpec": {
                "rayStartParams": {},
                "template": {
                    "spec": {
                        "nodeSelector": {"red.dev/pool": "cpu"},
                        "containers": [
                            {
                                "name": "ray-head",
                                "image": "rayproject/ray:2.60.0",
                                "resources": {"limits": {"cpu": "2", "memory": "4Gi"}},
                            }
                        ],
                    }
                },
            },
            "workerGroupSpecs": [
                {
                    "groupName": "gpu",
                    "replicas": workers,
                    "minReplicas": workers,
                    "maxReplicas": workers,
                    "rayStartParams": {},
                    "template": {
                        "spec": {
                            "nodeSelector": {"red.dev/pool": "gpu"},
                            "tolerations": [GPU_TOLERATION],
                            "containers": [
                                {
                                    "name": "ray-worker",
                                    "image": "rayproject/ray:2.60.0",
                                    "resources": {"limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}},
                                }
                            ],
                        }
                    },
                }
            ],
        },
    }


def apply(cluster: KubeCluster, namespace: str, manifest: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(manifest))


def node_labels(cluster: KubeCluster, node: str) -> dict[str, str]:
    labels: dict[str, str] = kubectl_json(cluster, "get", "node", node)["metadata"]["labels"]
    return labels


# Runs first and alone (before the session cluster exists): it starts and stops a cluster of its own,
# so it really exercises `down`.
def test_down_stops_everything_and_frees_every_port() -> None:
    cluster = cluster_up("red-pytest-teardown")
    try:
        listeners = cluster.listeners
        components = {lsn.component for lsn in listeners}
        assert {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"} <= components
        assert "kuberay-operator" in components
        # Every listener the harness opens is on loopback.
        assert {lsn.address for lsn in listeners} == {"127.0.0.1"}, listeners
        assert cluster.leftover_ports() == {lsn.port for lsn in listeners}
        pid_files = list((cluster.state_dir / "pids").glob("*.pid"))
        pids = [int(f.read_text().split()[0]) for f in pid_files]
        assert len(pids) == 6
    finally:
        cluster.down()
    assert cluster.leftover_ports() == set()
    assert not cluster.state_dir.exists()
    for pid in pids:
        # Either gone, or (if the PID was reused meanwhile) no longer the process we started.
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        assert str(cluster.bin_dir).encode() not in cmdline, f"pid {pid} still runs {cmdline!r}"
    # `down` is idempotent.
    cluster.down()


def test_listeners_are_loopback_only(kube_cluster: KubeCluster) -> None:
    assert kube_cluster.listeners
    assert all(lsn.address == "127.0.0.1" for lsn in kube_cluster.listeners), kube_cluster.listeners
    now = listening_ports()
    assert all(("127.0.0.1", lsn.port) in now for lsn in kube_cluster.listeners)


def test_simulated_node_pools(kube_cluster: KubeCluster) -> None:
    nodes = kubectl_json(kube_cluster, "get", "nodes")["items"]
    by_pool: dict[str, list[dict[str, Any]]] = {}
    for node in nodes:
        by_pool.setdefault(node["metadata"]["labels"].get("red.dev/pool", ""), []).append(node)
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]
    assert len(by_pool["cpu"]) == 2
    assert len(by_pool["gpu"]) == 2
    for node in by_pool["gpu"]:
        assert node["status"]["allocatable"]["nvidia.com/gpu"] == "8"
        assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
        assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in node["spec"]["taints"]
    for node in by_pool["cpu"]:
        assert "nvidia.com/gpu" not in node["status"]["allocatable"]


def test_gpu_pod_is_scheduled_on_a_gpu_node_and_runs(kube_cluster: KubeCluster, kube_namespace: str) -> None:
    from kubernetes import client

    apply(kube_cluster, kube_namespace, pod_manifest("one-gpu", gpus=1))
    with kube_cluster.api_client() as api_client:
        core = client.CoreV1Api(api_client)

        def running() -> Any:
            pod = core.read_namespaced_pod("one-gpu", kube_namespace)
            return pod if pod.status and pod.status.phase == "Running" else None

        pod = wait_until("the GPU pod to run", running)
    assert pod.spec.node_name.startswith("kwok-gpu-")
    labels = node_labels(kube_cluster, pod.spec.node_name)
    assert labels["red.dev/pool"] == "gpu"
    assert labels["nvidia.com/gpu.present"] == "true"
    ready = {c.type: c.status for c in pod.status.conditions}
    assert ready["PodScheduled"] == "True"
    assert ready["Ready"] == "True"


def test_pod_wanting_more_gpus_than_any_node_stays_pending(kube_cluster: KubeCluster, kube_namespace: str) -> None:
    apply(kube_cluster, kube_namespace, pod_manifest("nine-gpus", gpus=9))

    def unschedulable() -> dict[str, Any] | None:
        pod = kubectl_json(kube_cluster, "get", "pod", "nine-gpus", "-n", kube_namespace)
        for cond in pod["status"].get("conditions", []):
            if cond["type"] == "PodScheduled" and cond["status"] == "False":
                return {"pod": pod, "cond": cond}
        return None

    seen = wait_until("the scheduler to give up on the 9-GPU pod", unschedulable, timeout_s=30)
    assert seen["cond"]["reason"] == "Unschedulable"
    assert "nvidia.com/gpu" in seen["cond"]["message"], seen["cond"]["message"]
    assert seen["pod"]["status"]["phase"] == "Pending"
    assert not seen["pod"]["spec"].get("nodeName")


def raycluster_status(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    status: dict[str, Any] = kubectl_json(cluster, "get", "raycluster", name, "-n", namespace).get("status", {})
    return status


def ray_pods(cluster: KubeCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json(cluster, "get", "pods", "-n", namespace, "-l", f"ray.io/cluster={name}")[
        "items"
    ]
    return items


def wait_raycluster_ready(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    def ready() -> dict[str, Any] | None:
        status = raycluster_status(cluster, namespace, name)
        conds = {c["type"]: c["status"] for c in status.get("conditions", [])}
        desired = status.get("desiredWorkerReplicas")
        if conds.get("HeadPodReady") == "True" and desired and status.get("readyWorkerReplicas") == desired:
            return status
        return None

    result: dict[str, Any] = wait_until(f"RayCluster {name} to become ready", ready, timeout_s=120)
    return result


@pytest.fixture
def ready_raycluster(kube_cluster: KubeCluster, kube_namespace: str) -> Iterator[tuple[str, str]]:
    apply(kube_cluster, kube_namespace, raycluster_manifest("smoke", workers=2))
    wait_raycluster_ready(kube_cluster, kube_namespace, "smoke")
    yield kube_namespace, "smoke"


def test_raycluster_with_gpu_workers_becomes_ready(
    kube_cluster: KubeCluster, ready_raycluster: tuple[str, str]
) -> None:
    namespace, name = ready_raycluster
    status = raycluster_status(kube_cluster, namespace, name)
    assert status["desiredWorkerReplicas"] == 2
    assert status["readyWorkerReplicas"] == 2
    assert status["desiredGPU"] == "2"
    pods = ray_pods(kube_cluster, namespace, name)
    heads = [p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "head"]
    workers = [p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "worker"]
    assert len(heads) == 1
    assert len(workers) == 2
    assert node_labels(kube_cluster, heads[0]["spec"]["nodeName"])["red.dev/pool"] == "cpu"
    for worker in workers:
        assert worker["metadata"]["labels"]["ray.io/group"] == "gpu"
        assert worker["status"]["phase"] == "Running"
        ray_container = worker["spec"]["containers"][0]
        assert ray_container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        labels = node_labels(kube_cluster, worker["spec"]["nodeName"])
        assert labels["red.dev/pool"] == "gpu"
    # KubeRay's head service: what the operator will build the dashboard URL from.
    service = status["head"]["serviceName"]
    kube_cluster.kubectl("get", "service", service, "-n", namespace)


def test_deleting_raycluster_garbage_collects_its_pods(
    kube_cluster: KubeCluster, ready_raycluster: tuple[str, str]
) -> None:
    namespace, name = ready_raycluster
    rc = kubectl_json(kube_cluster, "get", "raycluster", name, "-n", namespace)
    pods = ray_pods(kube_cluster, namespace, name)
    assert len(pods) == 3
    for pod in pods:
        owners = pod["metadata"]["ownerReferences"]
        assert [o["uid"] for o in owners if o.get("controller")] == [rc["metadata"]["uid"]]

    kube_cluster.kubectl("delete", "raycluster", name, "-n", namespace, "--wait=false")
    wait_until("the RayCluster's pods to be deleted", lambda: not ray_pods(kube_cluster, namespace, name))
    assert not kubectl_json(kube_cluster, "get", "services", "-n", namespace, "-l", f"ray.io/cluster={name}")["items"]


def test_controller_manager_garbage_collects_owned_objects(kube_cluster: KubeCluster, kube_namespace: str) -> None:
    # Pure Kubernetes GC, no KubeRay involved: a ConfigMap owned by another goes when its owner goes.
    kube_cluster.kubectl("create", "configmap", "owner", "-n", kube_namespace)
    owner_uid = kubectl_json(kube_cluster, "get", "configmap", "owner", "-n", kube_namespace)["metadata"]["uid"]
    apply(
        kube_cluster,
        kube_namespace,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "dependent",
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}],
            },
        },
    )
    kube_cluster.kubectl("delete", "configmap", "owner", "-n", kube_namespace)

    def gone() -> bool:
        proc = kube_cluster.kubectl("get", "configmap", "dependent", "-n", kube_namespace, check=False)
        return proc.returncode != 0 and "NotFound" in proc.stderr

    wait_until("the dependent ConfigMap to be garbage-collected", gone)
