"""Durable checkpoints through the operator, on the real control plane (kube-apiserver, controller-manager,
scheduler, kwok GPU nodes, the real KubeRay operator) with a real local Ray head standing in for each
RayCluster's head, and the engine training digits for real.

Suspend (the operator stops the job and deletes the RayCluster) then unsuspend: the second attempt resumes
from the checkpoint and ends with exactly the model of an uninterrupted Federation with the same spec.

What the stand-in changes, said plainly: the Ray head runs on this host, not in the RayCluster's pods.
- PVC: the claim is bound to a hostPath PersistentVolume on a host directory, and the operator's
  `checkpointMountPath` setting (RED_OPERATOR_CHECKPOINT_MOUNT_PATH) points at that same directory, so the
  host head writes where a real head pod would see the claim mounted. The RayCluster that the operator
  creates mounts the claim at that path in its head and worker pods (checked on the API server).
- S3: the checkpoint goes to a real S3-compatible server (SeaweedFS) on this host. The credentials Secret
  is attached to the RayCluster's pods with envFrom (checked on the API server); the host head gets the
  same values in its environment, as envFrom would give a head pod.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from red_operator.jobs import JobsClient

from red.checkpoint import Checkpointer
from tests.fixtures.cluster import KubeCluster, kubectl_json
from tests.fixtures.s3 import S3Server
from tests.operator.conftest import OperatorControl
from tests.operator.e2e_helpers import apply, events, federation, get_fed, status, wait_until
from tests.operator.ray_head import RayHead, start_ray_head

pytestmark = [pytest.mark.cluster, pytest.mark.ray, pytest.mark.s3]

ROUNDS = 8


@pytest.fixture(scope="module")
def s3_ray_head(s3_server: S3Server) -> Iterator[RayHead]:
    """A Ray head whose environment holds the S3 credentials (what envFrom of the Secret gives a head pod)."""
    head = start_ray_head(env={k: v for k, v in s3_server.env.items() if k != "AWS_ENDPOINT_URL"})
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture
def ckpt_operator(
    kube_cluster: KubeCluster, kube_namespace: str, federation_crd: str, s3_ray_head: RayHead, tmp_path: Path
) -> Iterator[OperatorControl]:
    mount = tmp_path / "claim"
    mount.mkdir()
    control = OperatorControl(
        kube_cluster, kube_namespace, s3_ray_head, tmp_path / "operator",
        env={"RED_OPERATOR_CHECKPOINT_MOUNT_PATH": str(mount)},
    )
    control.mount = mount  # type: ignore[attr-defined]
    try:
        yield control
    finally:
        try:
            kube_cluster.kubectl("delete", "federations", "--all", "-n", kube_namespace, "--timeout=120s",
                                 check=False, timeout=180)
        finally:
            control.op.stop()
            print(f"\n--- operator log (tail) ---\n{control.logs()[-8000:]}")


def spec_with(checkpoint: dict[str, Any]) -> dict[str, Any]:
    # client_0 sleeps 2 s per epoch: rounds are slow enough to suspend mid-run, and sleeping changes no number.
    return {
        "rounds": ROUNDS,
        "clients": 3,
        "seed": 7,
        "task": {"name": "digits", "params": {"partition": "iid", "epochs": 1, "lr": 0.2,
                                              "slowdown": {"client_0": 2.0}}},
        "resources": {"perNode": {"cpu": 0.1}, "broker": {"cpu": 0.1}, "maxActors": 2},
        "checkpoint": {"everyRounds": 2, **checkpoint},
    }


def suspend_and_resume(kube_cluster: KubeCluster, ns: str, name: str, head: RayHead) -> int:
    """Suspend once a checkpoint exists, check what suspend leaves, unsuspend. Returns the checkpoint's round."""
    wait_until(
        "a checkpoint in status",
        lambda: ((status(kube_cluster, ns, name).get("checkpoint") or {}).get("round") or 0) >= 2,
        timeout_s=400, poll_s=0.5,
    )
    kube_cluster.kubectl("patch", "federation", name, "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_until("suspended", lambda: status(kube_cluster, ns, name).get("phase") == "Suspended", timeout_s=60)
    wait_until(
        "the RayCluster to go",
        lambda: kube_cluster.kubectl("get", "raycluster", f"{name}-ray", "-n", ns, check=False).returncode != 0,
        timeout_s=60,
    )
    client = JobsClient(head.dashboard_url, head.token)
    first = status(kube_cluster, ns, name)["job"]["submissionId"]
    wait_until("job 1 stopped", lambda: (client.get(first) or {}).get("status") in ("STOPPED", "FAILED"),
               timeout_s=60)
    st = status(kube_cluster, ns, name)
    assert st["phase"] == "Suspended" and st["checkpoint"]["round"] < ROUNDS, st
    saved = int(st["checkpoint"]["round"])
    kube_cluster.kubectl("patch", "federation", name, "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    return saved


def finished(kube_cluster: KubeCluster, ns: str, name: str) -> dict[str, Any]:
    wait_until("Succeeded", lambda: status(kube_cluster, ns, name).get("phase") in ("Succeeded", "Failed"),
               timeout_s=600, poll_s=1)
    st = status(kube_cluster, ns, name)
    assert st["phase"] == "Succeeded", st
    return st


def resumed_from(head: RayHead, submission_id: str) -> dict[str, Any]:
    """The second attempt's first report line in its Ray job log: where it started."""
    logs = JobsClient(head.dashboard_url, head.token).logs(submission_id)
    lines = [json.loads(ln) for ln in logs.splitlines() if ln.startswith('{"')]
    start = next(r for r in lines if r.get("event") == "start")
    return start


def assert_same_model(a: dict[str, Any] | None, b: dict[str, Any] | None) -> None:
    assert a is not None and b is not None and a["round"] == b["round"] == ROUNDS
    assert a["params"].keys() == b["params"].keys()
    for k in a["params"]:
        np.testing.assert_array_equal(a["params"][k], b["params"][k])
    assert a["clientVersions"] == b["clientVersions"]


def pod_templates(rc: dict[str, Any]) -> list[dict[str, Any]]:
    return [rc["spec"]["headGroupSpec"]["template"]["spec"],
            *(g["template"]["spec"] for g in rc["spec"]["workerGroupSpecs"])]


def test_suspend_and_resume_through_a_pvc_reproduces_the_uninterrupted_run(
    kube_cluster: KubeCluster, kube_namespace: str, ckpt_operator: OperatorControl, s3_ray_head: RayHead
) -> None:
    ns = kube_namespace
    mount: Path = ckpt_operator.mount  # type: ignore[attr-defined]
    pv = {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{ns}-ckpt"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"], "storageClassName": "red-ckpt",
                 "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": str(mount)},
                 "claimRef": {"namespace": ns, "name": "ckpt"}},
    }
    pvc = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "ckpt"},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "red-ckpt", "volumeName": f"{ns}-ckpt",
                 "resources": {"requests": {"storage": "1Gi"}}},
    }
    kube_cluster.kubectl("apply", "-f", "-", input=json.dumps(pv))
    try:
        apply(kube_cluster, ns, pvc)
        wait_until("the claim bound", lambda: kubectl_json(kube_cluster, "get", "pvc", "ckpt", "-n", ns)
                   .get("status", {}).get("phase") == "Bound", timeout_s=60)
        storage = {"persistentVolumeClaim": "ckpt"}
        apply(kube_cluster, ns, federation("straight", **spec_with(storage)))
        apply(kube_cluster, ns, federation("paused", **spec_with(storage)))

        # The claim is in the RayCluster's pods, mounted where the engine writes.
        wait_until("the RayCluster", lambda: kube_cluster.kubectl(
            "get", "raycluster", "paused-ray", "-n", ns, check=False).returncode == 0, timeout_s=120)
        rc = kubectl_json(kube_cluster, "get", "raycluster", "paused-ray", "-n", ns)
        for pod in pod_templates(rc):
            assert {"name": "red-checkpoints", "persistentVolumeClaim": {"claimName": "ckpt"}} in pod["volumes"]
            assert {"name": "red-checkpoints", "mountPath": str(mount)} in pod["containers"][0]["volumeMounts"]

        saved = suspend_and_resume(kube_cluster, ns, "paused", s3_ray_head)
        paused = finished(kube_cluster, ns, "paused")
        straight = finished(kube_cluster, ns, "straight")
    finally:
        kube_cluster.kubectl("delete", "pv", f"{ns}-ckpt", "--wait=false", check=False)

    assert paused["job"]["attempts"] == 2 and straight["job"]["attempts"] == 1
    start = resumed_from(s3_ray_head, paused["job"]["submissionId"])
    assert start["round"] >= saved and start["checkpoint"]["round"] == start["round"], start
    assert any("resuming from checkpoint" in e.get("message", "") for e in events(kube_cluster, ns, "paused"))

    # Each Federation checkpoints under its own uid: the same claim, never the same folder.
    uid_p, uid_s = (get_fed(kube_cluster, ns, n)["metadata"]["uid"] for n in ("paused", "straight"))
    ck = paused["checkpoint"]
    assert ck["round"] == ROUNDS and ck["path"] == f"{mount}/{uid_p}/round-{ROUNDS:06d}" and ck["time"], ck
    assert sorted(p.name for p in mount.iterdir()) == sorted([uid_p, uid_s])
    assert paused["metrics"]["accuracy"] == straight["metrics"]["accuracy"]
    assert_same_model(Checkpointer(str(mount / uid_p)).load_latest(), Checkpointer(str(mount / uid_s)).load_latest())


def test_suspend_and_resume_through_s3_reproduces_the_uninterrupted_run(
    kube_cluster: KubeCluster, kube_namespace: str, ckpt_operator: OperatorControl, s3_ray_head: RayHead,
    s3_server: S3Server, s3_prefix: str,
) -> None:
    ns = kube_namespace
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds"},
              "stringData": {k: v for k, v in s3_server.env.items() if k.startswith("AWS_") and "KEY" in k}}
    apply(kube_cluster, ns, secret)
    storage = {"path": f"s3://{s3_prefix}", "credentialsSecret": "s3-creds", "endpointUrl": s3_server.endpoint_url}
    apply(kube_cluster, ns, federation("straight-s3", **spec_with(storage)))
    apply(kube_cluster, ns, federation("paused-s3", **spec_with(storage)))

    wait_until("the RayCluster", lambda: kube_cluster.kubectl(
        "get", "raycluster", "paused-s3-ray", "-n", ns, check=False).returncode == 0, timeout_s=120)
    for pod in pod_templates(kubectl_json(kube_cluster, "get", "raycluster", "paused-s3-ray", "-n", ns)):
        assert {"secretRef": {"name": "s3-creds"}} in pod["containers"][0]["envFrom"]

    saved = suspend_and_resume(kube_cluster, ns, "paused-s3", s3_ray_head)
    paused = finished(kube_cluster, ns, "paused-s3")
    straight = finished(kube_cluster, ns, "straight-s3")

    assert paused["job"]["attempts"] == 2
    start = resumed_from(s3_ray_head, paused["job"]["submissionId"])
    assert start["round"] >= saved and start["checkpoint"]["round"] == start["round"], start
    uid_p, uid_s = (get_fed(kube_cluster, ns, n)["metadata"]["uid"] for n in ("paused-s3", "straight-s3"))
    assert paused["checkpoint"]["path"] == f"s3://{s3_prefix}/{uid_p}/round-{ROUNDS:06d}"
    assert paused["metrics"]["accuracy"] == straight["metrics"]["accuracy"]
    options = {"endpoint_url": s3_server.endpoint_url, "key": s3_server.access_key, "secret": s3_server.secret_key}
    assert_same_model(
        Checkpointer(f"s3://{s3_prefix}/{uid_p}", storage_options=options).load_latest(),
        Checkpointer(f"s3://{s3_prefix}/{uid_s}", storage_options=options).load_latest(),
    )
