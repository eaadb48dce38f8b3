"""Pod shaping, the restricted defaults, /dev/shm sizing and the user's runtime_env in the job: plain dicts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from red_operator import builders, names
from red_operator import conditions as C
from red_operator.decide import plan
from red_operator.readiness import observe_cluster
from red_operator.sizing import size_cluster
from red_operator.status import Observed, fold

from tests.operator.helpers import gpu_pool, spec

UID = "0123abcd-4567-89ef-0000-000000000000"
GiB = 2**30


def raycluster(head: dict[str, Any] | None = None, **pool: Any) -> dict[str, Any]:
    s = spec(cluster={"image": "img:1", "head": head or {}, "nodePools": [gpu_pool(**pool)]})
    return builders.build_raycluster("fl", "ns", UID, s, size_cluster(s))


def head_of(rc: dict[str, Any]) -> dict[str, Any]:
    t: dict[str, Any] = rc["spec"]["headGroupSpec"]["template"]
    return t


def worker_of(rc: dict[str, Any]) -> dict[str, Any]:
    t: dict[str, Any] = rc["spec"]["workerGroupSpecs"][0]["template"]
    return t


def test_defaults_meet_the_restricted_pod_security_standard() -> None:
    rc = raycluster()
    for template in (head_of(rc), worker_of(rc)):
        pod = template["spec"]
        (ray,) = pod["containers"]
        assert ray["securityContext"] == {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert pod["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        # Nothing the restricted profile forbids: no hostPath, no host namespaces, no added capabilities.
        assert all(set(v) <= {"name", "emptyDir"} for v in pod["volumes"])
        assert not {"hostNetwork", "hostPID", "hostIPC"} & set(pod)


@pytest.mark.parametrize(
    ("head", "pool", "head_store", "worker_store"),
    [
        # Ray's default: 30% of the pod's memory; /dev/shm 10% larger, as Ray asks.
        ({}, {}, int(2 * GiB * 0.3), int(16 * GiB * 0.3)),
        ({"memory": "8Gi"}, {"memoryPerWorker": "64Gi"}, int(8 * GiB * 0.3), int(64 * GiB * 0.3)),
        # Set explicitly.
        ({"objectStoreMemory": "1Gi"}, {"objectStoreMemory": "10Gi"}, GiB, 10 * GiB),
    ],
)
def test_shm_is_sized_for_the_object_store(
    head: dict[str, Any], pool: dict[str, Any], head_store: int, worker_store: int
) -> None:
    rc = raycluster(head, **pool)
    for group, template, store in (
        (rc["spec"]["headGroupSpec"], head_of(rc), head_store),
        (rc["spec"]["workerGroupSpecs"][0], worker_of(rc), worker_store),
    ):
        assert group["rayStartParams"]["object-store-memory"] == str(store)
        (shm,) = [v for v in template["spec"]["volumes"] if v["name"] == "dshm"]
        assert shm["emptyDir"]["medium"] == "Memory"
        limit_mib = int(shm["emptyDir"]["sizeLimit"].removesuffix("Mi"))
        assert store * 1.1 <= limit_mib * 2**20 < store * 1.1 + 2**20
        assert {"name": "dshm", "mountPath": "/dev/shm"} in template["spec"]["containers"][0]["volumeMounts"]
    assert rc["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "0.0.0.0"


SHAPE = {
    "labels": {"team": "vision", "kueue.x-k8s.io/queue-name": "team-a"},
    "annotations": {"example.com/owner": "alice"},
    "env": [{"name": "HF_HOME", "value": "/data/hf"}, {"name": "RAY_memory_monitor_refresh_ms", "value": "0"}],
    "envFrom": [{"secretRef": {"name": "s3-credentials"}}],
    "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}],
    "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": True}],
    "imagePullSecrets": [{"name": "registry"}],
    "priorityClassName": "training",
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}},
    # The head too: e.g. onto a tainted GPU pool when that pool is all a cluster has.
    "nodeSelector": {"red.dev/pool": "gpu"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}


@pytest.mark.parametrize("where", ["head", "pool"])
def test_shaping_fields_reach_the_pod_template(where: str) -> None:
    rc = raycluster(SHAPE) if where == "head" else raycluster(None, **SHAPE)
    template = head_of(rc) if where == "head" else worker_of(rc)
    component = names.COMPONENT_RAY_HEAD if where == "head" else names.COMPONENT_RAY_WORKER
    meta, pod = template["metadata"], template["spec"]
    ray = pod["containers"][0]
    assert meta["labels"] == {**SHAPE["labels"], **names.labels("fl", component)}
    assert meta["annotations"] == SHAPE["annotations"]
    assert ray["env"] == SHAPE["env"]
    assert ray["envFrom"] == SHAPE["envFrom"]
    assert pod["volumes"][1:] == SHAPE["volumes"]
    assert ray["volumeMounts"][1:] == SHAPE["volumeMounts"]
    assert pod["imagePullSecrets"] == SHAPE["imagePullSecrets"]
    assert pod["priorityClassName"] == "training"
    assert pod["affinity"] == SHAPE["affinity"]
    assert pod["nodeSelector"] == SHAPE["nodeSelector"]
    assert pod["tolerations"] == SHAPE["tolerations"]
    assert pod["serviceAccountName"] == names.engine_account("fl")
    # Kueue admits the RayCluster whole: the queue is on its own metadata too.
    assert rc["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    # The other group is untouched.
    other = worker_of(rc) if where == "head" else head_of(rc)
    assert "team" not in other["metadata"]["labels"] and "envFrom" not in other["spec"]["containers"][0]


def test_unshaped_cluster_has_no_queue_and_no_extras() -> None:
    rc = raycluster()
    assert "kueue.x-k8s.io/queue-name" not in rc["metadata"]["labels"]
    pod = worker_of(rc)["spec"]
    assert not {"imagePullSecrets", "priorityClassName", "affinity"} & set(pod)
    # The head lands wherever the scheduler likes unless told (the GPU pool's own placement is its own).
    assert not {"nodeSelector", "tolerations"} & set(head_of(rc)["spec"])
    assert "env" not in pod["containers"][0] and "annotations" not in worker_of(rc)["metadata"]


def test_a_users_security_context_replaces_the_default_whole() -> None:
    rc = raycluster(None, securityContext={"privileged": True}, podSecurityContext={"fsGroup": 100})
    pod = worker_of(rc)["spec"]
    assert pod["containers"][0]["securityContext"] == {"privileged": True}
    assert pod["securityContext"] == {"fsGroup": 100}
    assert head_of(rc)["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize(
    ("annotations", "expect"),
    [
        (None, None),
        ({}, None),
        (
            {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/red"},
            {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/red"},
        ),
    ],
)
def test_service_account_annotations(annotations: dict[str, str] | None, expect: dict[str, str] | None) -> None:
    sa = builders.build_service_account("fl", "ns", UID, annotations)
    assert sa["metadata"].get("annotations") == expect
    assert sa["metadata"]["name"] == names.engine_account("fl")


def test_job_request_carries_the_users_runtime_env_under_reds_own_env() -> None:
    user = {
        "working_dir": "https://h/code.zip",
        "py_modules": ["s3://b/pkg.whl"],
        "pip": ["scikit-learn"],
        "env_vars": {"MY_SETTING": "1"},
    }
    req = builders.build_job_request(
        "fl",
        "ns",
        {},
        "red-fl-1",
        entrypoint="python -m x",
        resume=False,
        report_interval_seconds=2,
        runtime_env=user,
    )
    env = req["runtime_env"]
    assert env["working_dir"] == "https://h/code.zip" and env["py_modules"] == ["s3://b/pkg.whl"]
    assert env["pip"] == ["scikit-learn"]
    assert env["env_vars"]["MY_SETTING"] == "1" and env["env_vars"]["RED_SUBMISSION_ID"] == "red-fl-1"
    bare = builders.build_job_request(
        "fl", "ns", {}, "red-fl-1", entrypoint="python -m x", resume=False, report_interval_seconds=2
    )
    assert set(bare["runtime_env"]) == {"env_vars"}


KUBERAY_REFUSAL = (
    'FailedCreateHeadPod\npods "fl-ray-head-x" is forbidden: violates PodSecurity "restricted:latest": '
    'hostPath volumes (volume "host")'
)


@pytest.mark.parametrize(
    ("condition", "reason", "refused"),
    [
        (
            {
                "type": "ReplicaFailure",
                "status": "True",
                "reason": "FailedCreateHeadPod",
                "message": KUBERAY_REFUSAL,
            },
            "FailedCreateHeadPod",
            True,
        ),
        (
            {
                "type": "ReplicaFailure",
                "status": "True",
                "reason": "FailedCreateWorkerPod",
                "message": "FailedCreateWorkerPod\nexceeded quota",
            },
            "FailedCreateWorkerPod",
            True,
        ),
        # Other failures (deleting pods) say nothing about admission.
        (
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedDeleteAllPods", "message": "x"},
            "Creating",
            False,
        ),
        (
            {"type": "ReplicaFailure", "status": "False", "reason": "FailedCreateHeadPod", "message": "x"},
            "Creating",
            False,
        ),
    ],
)
def test_refused_pods_are_reported_with_the_api_servers_words(
    condition: dict[str, Any], reason: str, refused: bool
) -> None:
    rc = {
        "metadata": {"name": "fl-ray"},
        "spec": {"workerGroupSpecs": [{"replicas": 1}]},
        "status": {"conditions": [condition]},
    }
    obs = observe_cluster(rc, [])
    assert (obs.reason, obs.refused, obs.ready) == (reason, refused, False)
    if reason == "FailedCreateHeadPod":
        assert obs.message == (
            'KubeRay could not create the head pod: pods "fl-ray-head-x" is forbidden: violates PodSecurity '
            '"restricted:latest": hostPath volumes (volume "host")'
        )


def test_refused_pods_stall_the_federation_with_admissions_message() -> None:
    s = spec(clients=2, rounds=5)
    rc = {
        "metadata": {"name": "fl-ray"},
        "spec": {"workerGroupSpecs": [{"replicas": 1}]},
        "status": {
            "conditions": [
                {
                    "type": "ReplicaFailure",
                    "status": "True",
                    "reason": "FailedCreateHeadPod",
                    "message": KUBERAY_REFUSAL,
                }
            ]
        },
    }
    now = datetime(2026, 1, 1, tzinfo=UTC)
    cluster = observe_cluster(rc, [])
    p = plan(s, {}, None, cluster_ready=False, fits=True, now=now)
    st = fold({}, Observed(1, now, s, sizing=size_cluster(s), cluster_name="fl-ray", cluster=cluster, plan=p))
    assert st["phase"] == "Starting"
    for type_ in (C.CLUSTER_READY, C.STALLED):
        c = C.get(st["conditions"], type_)
        assert c is not None
        assert c["reason"] == "FailedCreateHeadPod"
        assert 'violates PodSecurity "restricted:latest": hostPath volumes' in c["message"]
    stalled = C.get(st["conditions"], C.STALLED)
    assert stalled is not None and stalled["status"] == "True"
    reconciling = C.get(st["conditions"], C.RECONCILING)
    assert reconciling is not None and reconciling["status"] == "False"
