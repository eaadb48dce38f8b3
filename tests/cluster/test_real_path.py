"""The user's path on pods that really run: `helm install`, `kubectl apply -f federation.yaml`, Succeeded, delete.

Everything here is what a user's cluster runs: the operator from our Dockerfile's `operator` image as a pod
(in-cluster config, only the chart's RBAC, the chart's default dashboard URL: the head Service's DNS
name), KubeRay's pods running Ray from our `engine` image with the token from our Secret, the engine in
the head pod writing its report as the Federation's ServiceAccount, its actors on the GPU pool's worker.
The only stand-ins: KubeRay's operator runs as a process on the host (as in every cluster test), and the
GPU node advertises `nvidia.com/gpu` without a device, so torch trains on the CPU there.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from red.spec.model import ClusterSpec
from tests.chart.tools import CHART, helm
from tests.cluster.conftest import REAL_NODES_SKIP, image_refs, node_containers
from tests.fixtures.cluster import KubeCluster, kubectl_json
from tests.helpers import wait_until

pytestmark = [pytest.mark.cluster, REAL_NODES_SKIP]

NS = "fl-real"
OPERATOR_NS = "red-system"
GPU_PLACEMENT = {
    "nodeSelector": {"red.dev/pool": "gpu"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}
ROUNDS = 300


def federation(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "red.dev/v1alpha1",
        "kind": "Federation",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "schema": "star",
            "rounds": ROUNDS,
            "clients": 3,
            # Rounds of about a second on these CPUs: long enough to lose a worker in the middle.
            "task": {"name": "digits", "params": {"epochs": 8, "lr": 0.05}},
            # Every node asks for a GPU share: they can only run on the GPU pool's worker.
            "resources": {"perNode": {"cpu": 0.1, "gpu": 0.25}, "broker": {"cpu": 0.1}},
            # A replaced worker pod starts Ray again before its actors can come back.
            "faultTolerance": {"heartbeatSeconds": 2, "maxRestarts": 3, "restartTimeoutSeconds": 300},
            "cluster": {
                # The only real nodes with the engine image are the GPU pool's (e2e/cluster imports its
                # GBs once): the head goes there too, which is what the head's own placement is for.
                "head": {"cpu": "1", "memory": "3Gi", **GPU_PLACEMENT},
                "nodePools": [
                    {
                        "name": "gpu",
                        "gpusPerWorker": 1,
                        "cpusPerWorker": "1",
                        "memoryPerWorker": "5Gi",
                        "minWorkers": 1,
                        "maxWorkers": 1,
                        **GPU_PLACEMENT,
                    }
                ],
            },
        },
    }


def fed_status(cluster: KubeCluster, name: str) -> dict[str, Any]:
    obj = kubectl_json(cluster, "get", "federation", name, "-n", NS)
    st: dict[str, Any] = obj.get("status") or {}
    return st


def pods(cluster: KubeCluster, namespace: str, selector: str = "") -> list[dict[str, Any]]:
    args = ["get", "pods", "-n", namespace] + (["-l", selector] if selector else [])
    items: list[dict[str, Any]] = kubectl_json(cluster, *args)["items"]
    return items


def describe(cluster: KubeCluster, name: str) -> str:
    """What to print when a wait fails: status, pods, the operator's last log lines."""
    out = [json.dumps(fed_status(cluster, name), indent=1)[:3000]]
    for p in pods(cluster, NS):
        out.append(f"{p['metadata']['name']} {p['spec'].get('nodeName')} {p['status'].get('phase')}")
    logs = cluster.kubectl(
        "logs", "-n", OPERATOR_NS, "-l", "app.kubernetes.io/name=red-operator", "--tail=30", check=False
    )
    return "\n".join(out) + "\n" + logs.stdout + logs.stderr


@pytest.fixture(scope="module")
def operator_release(real_cluster: KubeCluster) -> Iterator[dict[str, str]]:
    refs = image_refs(real_cluster)
    repo, tag = refs["RED_OPERATOR_IMAGE"].rsplit(":", 1)
    kc = ["--kubeconfig", str(real_cluster.kubeconfig)]
    helm(
        "install", "red", str(CHART), "-n", OPERATOR_NS, "--create-namespace",
        "--set", f"image.repository={repo}", "--set", f"image.tag={tag}", "--set", "image.pullPolicy=Never",
        "--set", f"engine.image={refs['RED_ENGINE_IMAGE']}",
        "--wait", "--timeout", "5m", *kc,
    )  # fmt: skip
    try:
        yield refs
    finally:
        helm("uninstall", "red", "-n", OPERATOR_NS, "--wait", *kc, check=False)


def test_a_federation_runs_on_real_pods_survives_a_lost_worker_and_leaves_nothing(
    real_cluster: KubeCluster, operator_release: dict[str, str]
) -> None:
    cluster, name = real_cluster, "digits"
    # The operator is a pod from our image, on the real CPU node, with the chart's ServiceAccount.
    (op,) = pods(cluster, OPERATOR_NS, "app.kubernetes.io/name=red-operator")
    assert op["spec"]["nodeName"] == "real-cpu-0"
    assert op["spec"]["containers"][0]["image"] == operator_release["RED_OPERATOR_IMAGE"]
    assert op["status"]["phase"] == "Running"

    cluster.kubectl("create", "namespace", NS)
    cluster.kubectl("apply", "-f", "-", input=json.dumps(federation(name)))
    t0 = time.monotonic()

    # KubeRay's pods, from our engine image, on the GPU node; the worker gets its GPU from the limits.
    def running_ray_pods() -> list[dict[str, Any]] | None:
        found = pods(cluster, NS, "ray.io/cluster")
        ready = [p for p in found if p["status"].get("phase") == "Running"]
        return found if len(ready) == 2 else None

    ray_pods = wait_until(
        "the head and the worker pod running", running_ray_pods, 600, 2, lambda: describe(cluster, name)
    )
    for p in ray_pods:
        assert p["spec"]["nodeName"] == "real-gpu-0"
        assert p["spec"]["containers"][0]["image"] == operator_release["RED_ENGINE_IMAGE"]
        assert p["spec"]["serviceAccountName"] == f"{name}-engine"
    (worker,) = [p for p in ray_pods if p["metadata"]["labels"]["ray.io/node-type"] == "worker"]
    assert worker["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"

    # The engine is running rounds: lose the worker (and every node actor on it) in the middle.
    wait_until(
        "round 3 reported",
        lambda: int((fed_status(cluster, name).get("progress") or "0/0").split("/")[0]) >= 3,
        900, 1, lambda: describe(cluster, name),
    )  # fmt: skip
    cluster.kubectl("delete", "pod", "-n", NS, worker["metadata"]["name"], "--wait=false")
    wait_until(
        "a new worker pod running",
        lambda: any(
            p["metadata"]["name"] != worker["metadata"]["name"] and p["status"].get("phase") == "Running"
            for p in pods(cluster, NS, "ray.io/node-type=worker")
        ),
        300, 2, lambda: describe(cluster, name),
    )  # fmt: skip

    cluster.kubectl("wait", "-n", NS, "--for=condition=Succeeded", f"federation/{name}", "--timeout=900s", timeout=930)
    elapsed = time.monotonic() - t0
    st = fed_status(cluster, name)
    assert st["phase"] == "Succeeded", describe(cluster, name)
    assert st["metrics"]["accuracy"] >= 0.85, st["metrics"]
    nodes = {n["id"]: n for n in st["nodes"]}
    assert set(nodes) == {"server", "client_0", "client_1", "client_2"}, nodes
    # The server's version is the last round; a client's is the model it last took part with.
    assert nodes["server"]["version"] == ROUNDS, nodes
    assert all(n["version"] >= ROUNDS - 1 for n in nodes.values()), nodes
    # Every node actor lived on the lost worker: each came back, in the same run. Before the fix in
    # red/runtime/recovery.py the first ActorDiedError counted as dead for good, the run failed with
    # ServerLost after 0 of 3 restarts, and the operator's retry started it again from round 0.
    assert all(n["restarts"] >= 1 for n in nodes.values()), nodes
    assert st["job"]["attempts"] == 1 and not st["job"].get("failures"), st["job"]
    assert st["versions"]["image"] == operator_release["RED_ENGINE_IMAGE"], st["versions"]
    # The Ray that ran in the image is the one the CRD's default rayVersion tells KubeRay to expect.
    assert st["versions"]["ray"] == ClusterSpec().ray_version, st["versions"]
    print(f"\n[real path] apply to Succeeded in {elapsed:.0f} s; restarts {[n['restarts'] for n in nodes.values()]}")

    # Ray on the worker took its GPU from the pod's limit (every node actor asked for a share and ran);
    # torch there finds no CUDA, and the engine said so and trained on the CPU rather than failing.
    (head,) = pods(cluster, NS, "ray.io/node-type=head")
    driver_log = cluster.kubectl(
        "exec", "-n", NS, head["metadata"]["name"], "--",
        "bash", "-c", "cat /tmp/ray/session_latest/logs/job-driver-*.log",
    ).stdout  # fmt: skip
    assert "torch finds no CUDA device: no GPU memory cap, training on CPU" in driver_log, driver_log[-3000:]

    # The engine in the head pod wrote its report as the Federation's ServiceAccount (mounted token).
    engine_user = f"system:serviceaccount:{NS}:{name}-engine"
    writes = [
        e
        for e in map(json.loads, (cluster.state_dir / "audit.log").read_text().splitlines())
        if e.get("objectRef", {}).get("resource") == "configmaps"
        and e.get("objectRef", {}).get("namespace") == NS
        and e.get("verb") in ("update", "patch", "create")
    ]
    assert any(e["user"]["username"] == engine_user for e in writes), {e["user"]["username"] for e in writes}

    cluster.kubectl("delete", "federation", name, "-n", NS, "--timeout=300s", timeout=320)

    def left() -> list[str]:
        found = [f"pod {p['metadata']['name']}" for p in pods(cluster, NS)]
        for kind in ("rayclusters", "secrets", "configmaps", "serviceaccounts", "roles", "rolebindings"):
            for item in kubectl_json(cluster, "get", kind, "-n", NS)["items"]:
                # What Kubernetes puts in every namespace is not ours.
                if item["metadata"]["name"] not in ("kube-root-ca.crt", "default"):
                    found.append(f"{kind} {item['metadata']['name']}")
        found += [f"container {c}" for c in node_containers("real-gpu-0", NS)]
        return found

    # The garbage collector learns the CRD that helm installed at its next resync (up to 30 s).
    wait_until("nothing of the Federation left", lambda: not left(), 240, 3, lambda: str(left()))
