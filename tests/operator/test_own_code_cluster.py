"""Users' own code and pod shaping on the real control plane (kube-apiserver with Pod Security admission,
the real KubeRay operator, kwok nodes), with a real token-auth Ray head standing in for the RayCluster's
head, and the engine training for real.

* A task that exists only in a zip served over HTTP runs to Succeeded: the operator does not know the
  name, Ray fetches the zip for the job, the engine imports it and finds the name.
* That Federation runs in a namespace that enforces the `restricted` Pod Security Standard, and the pods
  KubeRay makes carry every pod-shaping field.
* A Federation whose pods admission refuses says so, quoting admission, instead of sitting in Creating.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.cluster import KubeCluster, kubectl_json
from tests.operator.conftest import OperatorControl
from tests.operator.e2e_helpers import apply, condition, federation, status, wait_until
from tests.operator.ray_head import RayHead

pytestmark = [pytest.mark.cluster, pytest.mark.ray]

TASK_MODULE = '''
"""Digits, shipped in a zip: neither the image nor the operator knows the name "zip-digits"."""
import os

import red.tasks
from red.tasks.digits import DigitsTask


@red.tasks.register("zip-digits")
class ZipDigits(DigitsTask):
    def __init__(self, *args, **kwargs):
        # spec.runtimeEnv.envVars reaches every actor that builds the task.
        if os.environ.get("ZIP_TASK_MARK") != "from-the-yaml":
            raise RuntimeError("ZIP_TASK_MARK is not set: spec.runtimeEnv.envVars did not reach this process")
        super().__init__(*args, **kwargs)
'''


@pytest.fixture
def code_url(tmp_path: Path) -> Iterator[str]:
    """A zip holding `zip_task.py`, served over HTTP on loopback for as long as the test runs."""
    root = tmp_path / "served"
    root.mkdir()
    with zipfile.ZipFile(root / "code.zip", "w") as z:
        z.writestr("zip_task.py", TASK_MODULE)
        z.writestr("README.txt", "two top-level entries, so Ray keeps the archive's layout as it is\n")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/code.zip"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def restricted_namespace(kube_cluster: KubeCluster, kube_namespace: str) -> str:
    kube_cluster.kubectl("label", "namespace", kube_namespace, "pod-security.kubernetes.io/enforce=restricted")
    return kube_namespace


@pytest.fixture
def priority_class(kube_cluster: KubeCluster, kube_namespace: str) -> Iterator[str]:
    name = f"red-test-{kube_namespace}"[:63]
    kube_cluster.kubectl("create", "priorityclass", name, "--value=1000")
    try:
        yield name
    finally:
        kube_cluster.kubectl("delete", "priorityclass", name, "--ignore-not-found", check=False)


GPU_POOL = {
    "name": "gpu",
    "gpusPerWorker": 1,
    "minWorkers": 1,
    "maxWorkers": 1,
    "nodeSelector": {"nvidia.com/gpu.present": "true"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}


def shape(priority: str) -> dict[str, Any]:
    return {
        "labels": {"team": "vision", "kueue.x-k8s.io/queue-name": "team-a"},
        "annotations": {"example.com/owner": "alice"},
        "env": [{"name": "HF_HOME", "value": "/data/hf"}],
        "envFrom": [{"secretRef": {"name": "s3-credentials", "optional": True}}],
        # A ConfigMap: the scheduler would hold a pod whose PersistentVolumeClaim is not bound.
        "volumes": [{"name": "data", "configMap": {"name": "datasets"}}],
        "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
        "imagePullSecrets": [{"name": "registry"}],
        "priorityClassName": priority,
        "affinity": {
            "podAntiAffinity": {
                "preferredDuringSchedulingIgnoredDuringExecution": [
                    {
                        "weight": 10,
                        "podAffinityTerm": {
                            "topologyKey": "kubernetes.io/hostname",
                            "labelSelector": {"matchLabels": {"team": "vision"}},
                        },
                    }
                ]
            }
        },
    }


def ray_pods(cluster: KubeCluster, ns: str, rc: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json(cluster, "get", "pods", "-n", ns, "-l", f"ray.io/cluster={rc}")["items"]
    return items


def test_pods_that_admission_refuses_are_reported(
    kube_cluster: KubeCluster, restricted_namespace: str, red_operator: OperatorControl
) -> None:
    ns, name = restricted_namespace, "refused"
    head = {"volumes": [{"name": "host", "hostPath": {"path": "/var/run"}}]}
    apply(kube_cluster, ns, federation(name, cluster={"head": head, "nodePools": [GPU_POOL]}))

    def refused() -> dict[str, Any] | None:
        c = condition(status(kube_cluster, ns, name), "ClusterReady")
        return c if c.get("reason") == "FailedCreateHeadPod" else None

    c = wait_until("ClusterReady=False/FailedCreateHeadPod", refused, timeout_s=180)
    assert c["status"] == "False"
    assert 'violates PodSecurity "restricted:latest"' in c["message"] and "hostPath" in c["message"], c
    st = status(kube_cluster, ns, name)
    stalled = condition(st, "Stalled")
    assert stalled["status"] == "True" and stalled["reason"] == "FailedCreateHeadPod", stalled
    assert st["phase"] == "Starting" and "job" not in st
    assert not ray_pods(kube_cluster, ns, f"{name}-ray")


def test_shipped_task_runs_in_a_restricted_namespace_on_shaped_pods(
    kube_cluster: KubeCluster,
    restricted_namespace: str,
    red_operator: OperatorControl,
    ray_head: RayHead,
    code_url: str,
    priority_class: str,
) -> None:
    ns, name = restricted_namespace, "own-code"
    pod_shape = shape(priority_class)
    apply(
        kube_cluster,
        ns,
        federation(
            name,
            rounds=3,
            task={"name": "zip-digits", "params": {"epochs": 1, "lr": 0.2}},
            runtimeEnv={"workingDir": code_url, "imports": ["zip_task"], "envVars": {"ZIP_TASK_MARK": "from-the-yaml"}},
            cluster={
                "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/red"}},
                "head": pod_shape,
                "nodePools": [{**GPU_POOL, **pod_shape, "objectStoreMemory": "2Gi"}],
            },
        ),
    )

    def finished() -> dict[str, Any] | None:
        st = status(kube_cluster, ns, name)
        return st if st.get("phase") in ("Succeeded", "Failed") else None

    st = wait_until(
        "the federation to finish",
        finished,
        timeout_s=400,
        poll_s=2,
        log=lambda: (
            json.dumps(status(kube_cluster, ns, name), indent=1)[-2500:]
            + "\n--- Ray head ---\n"
            + ray_head.log.read_text(errors="replace")[-3000:]
        ),
    )
    assert st["phase"] == "Succeeded", st
    assert st["round"] == 3 and st["metrics"]["accuracy"] > 0.5, st

    # Admission let every Ray pod in, and each carries the shaping fields and the restricted defaults.
    pods = ray_pods(kube_cluster, ns, f"{name}-ray")
    assert {p["metadata"]["labels"]["ray.io/node-type"] for p in pods} == {"head", "worker"}, pods
    for pod in pods:
        meta, spec = pod["metadata"], pod["spec"]
        ray = spec["containers"][0]
        assert meta["labels"]["team"] == "vision" and meta["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
        assert meta["annotations"]["example.com/owner"] == "alice"
        assert {"name": "HF_HOME", "value": "/data/hf"} in ray["env"]
        assert ray["envFrom"] == [{"secretRef": {"name": "s3-credentials", "optional": True}}]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["data"]["configMap"]["name"] == "datasets"
        assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
        mounts = {m["mountPath"]: m["name"] for m in ray["volumeMounts"]}
        assert mounts["/data"] == "data" and mounts["/dev/shm"] == "dshm"
        assert spec["imagePullSecrets"] == [{"name": "registry"}]
        assert spec["priorityClassName"] == priority_class and spec["priority"] == 1000
        assert spec["affinity"] == pod_shape["affinity"]
        assert ray["securityContext"]["allowPrivilegeEscalation"] is False
        assert ray["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["serviceAccountName"] == f"{name}-engine"
    worker = next(p for p in pods if p["metadata"]["labels"]["ray.io/node-type"] == "worker")
    shm = next(v for v in worker["spec"]["volumes"] if v["name"] == "dshm")
    assert shm["emptyDir"]["sizeLimit"] == "2253Mi"  # 2Gi object store x 1.1, rounded up to whole Mi

    rc = kubectl_json(kube_cluster, "get", "raycluster", f"{name}-ray", "-n", ns)
    assert rc["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    sa = kubectl_json(kube_cluster, "get", "serviceaccount", f"{name}-engine", "-n", ns)
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == "arn:aws:iam::1:role/red"


def test_a_name_the_shipped_code_does_not_register_fails_clearly(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, ray_head: RayHead, code_url: str
) -> None:
    ns, name = kube_namespace, "misnamed"
    apply(
        kube_cluster,
        ns,
        federation(
            name,
            task={"name": "zip-digitz"},  # the zip registers "zip-digits"
            runtimeEnv={"workingDir": code_url, "imports": ["zip_task"], "envVars": {"ZIP_TASK_MARK": "from-the-yaml"}},
        ),
    )

    def failed() -> dict[str, Any] | None:
        st = status(kube_cluster, ns, name)
        return st if st.get("phase") in ("Succeeded", "Failed") else None

    st = wait_until(
        "the federation to fail",
        failed,
        timeout_s=400,
        poll_s=2,
        log=lambda: json.dumps(status(kube_cluster, ns, name), indent=1)[-2500:],
    )
    assert st["phase"] == "Failed", st
    c = condition(st, "Failed")
    assert c["reason"] == "SpecError", c
    assert "spec.task.name: unknown task 'zip-digitz'" in c["message"], c
    assert f"The job ships workingDir {code_url}; imports zip_task" in c["message"], c
    assert st["job"]["attempts"] == 1, st["job"]  # a spec error is not retried
