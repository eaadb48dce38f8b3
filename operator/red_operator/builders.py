"""Desired objects as plain dicts. Pure: nothing here talks to the cluster.

`build_raycluster` is the heart: a head group and one worker group per node pool, GPUs in the container
*limits* (KubeRay derives a worker's `num-gpus` from them), the pool's nodeSelector and tolerations, the
engine ServiceAccount on every pod, and Ray's token authentication through KubeRay's `authOptions`
with the Federation's own token Secret.

Every Ray pod is shaped by `shape_pod` from the head's or pool's pod-shaping fields (labels, env, volumes,
...), and by default it passes the `restricted` Pod Security Standard (`DEFAULT_*_SECURITY_CONTEXT`) and
holds Ray's object store in a memory-backed /dev/shm sized for it (KubeRay's own /dev/shm would be as
large as the pod's whole memory).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from red.spec.model import ENGINE_IMAGE, FederationSpec
from red.spec.pods import KUEUE_QUEUE_LABEL, SHM_VOLUME, PodShape, mebibytes
from red.spec.status import IMAGE_ENV
from red_operator import checkpoints, names
from red_operator.sizing import Sizing

DASHBOARD_PORT = 8265
GCS_PORT = 6379
CLIENT_PORT = 10001


def _meta(name: str, namespace: str, fed: str, uid: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": namespace,
        "labels": names.labels(fed, component),
        "ownerReferences": [names.owner_reference(fed, uid)],
    }


def _container(name: str, image: str, cpu: str, memory: str, gpus: int) -> dict[str, Any]:
    limits: dict[str, str] = {"cpu": cpu, "memory": memory}
    if gpus > 0:
        limits["nvidia.com/gpu"] = str(gpus)
    return {
        "name": name,
        "image": image,
        "resources": {"limits": limits, "requests": {"cpu": cpu, "memory": memory}},
    }


# The `restricted` Pod Security Standard, met by default (a user's securityContext replaces these whole).
# runAsUser 1000 is the `ray` user of Ray's images: runAsNonRoot alone cannot be verified for an image
# whose USER is a name, and the kubelet would refuse to start it.
DEFAULT_CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "runAsNonRoot": True,
    "seccompProfile": {"type": "RuntimeDefault"},
}
DEFAULT_POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _dump(items: list[Any]) -> list[dict[str, Any]]:
    return [i.model_dump(by_alias=True, exclude_none=True) for i in items]


def shape_pod(
    shape: PodShape, component_labels: dict[str, str], pod_spec: dict[str, Any], memory: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """A pod template from a pod spec (whose first container is Ray's) and the head's or pool's pod-shaping
    fields: (template, rayStartParams to add). Red's labels win over the user's (the model refuses
    theirs anyway): the operator and KubeRay find their pods by them."""
    pod_spec = copy.deepcopy(pod_spec)
    ray = pod_spec["containers"][0]
    store, shm = shape.shm_bytes(memory)
    volumes = [{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": mebibytes(shm)}}]
    volumes += _dump(shape.volumes)
    mounts = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}, *_dump(shape.volume_mounts)]
    ray["volumeMounts"] = [*ray.get("volumeMounts", []), *mounts]
    pod_spec["volumes"] = [*pod_spec.get("volumes", []), *volumes]
    if shape.env:
        ray["env"] = [*ray.get("env", []), *_dump(shape.env)]
    if shape.env_from:
        ray["envFrom"] = _dump(shape.env_from)
    ray["securityContext"] = copy.deepcopy(
        shape.security_context if shape.security_context is not None else DEFAULT_CONTAINER_SECURITY_CONTEXT
    )
    pod_spec["securityContext"] = copy.deepcopy(
        shape.pod_security_context if shape.pod_security_context is not None else DEFAULT_POD_SECURITY_CONTEXT
    )
    if shape.image_pull_secrets:
        pod_spec["imagePullSecrets"] = _dump(shape.image_pull_secrets)
    if shape.priority_class_name:
        pod_spec["priorityClassName"] = shape.priority_class_name
    if shape.node_selector:
        pod_spec["nodeSelector"] = dict(shape.node_selector)
    if shape.tolerations:
        pod_spec["tolerations"] = _dump(shape.tolerations)
    if shape.affinity is not None:
        pod_spec["affinity"] = shape.affinity.model_dump(by_alias=True, exclude_none=True)
    metadata: dict[str, Any] = {"labels": {**shape.labels, **component_labels}}
    if shape.annotations:
        metadata["annotations"] = dict(shape.annotations)
    # Ray sizes its object store itself from the memory it sees; naming it keeps Ray and /dev/shm in step.
    return {"metadata": metadata, "spec": pod_spec}, {"object-store-memory": str(store)}


def engine_image(spec: FederationSpec, default_image: str = ENGINE_IMAGE) -> str:
    """The image the Ray pods run: the Federation's own, else the operator's default."""
    return spec.cluster.image or default_image


def build_raycluster(
    fed: str,
    namespace: str,
    uid: str,
    spec: FederationSpec,
    sizing: Sizing,
    *,
    default_image: str = ENGINE_IMAGE,
    checkpoint_mount_path: str = checkpoints.DEFAULT_MOUNT_PATH,
) -> dict[str, Any]:
    """The RayCluster a Federation runs on. `sizing` comes from `sizing.size_cluster(spec)`;
    `default_image` serves when `spec.cluster.image` is unset (the operator's `engine_image` setting)."""
    cluster = spec.cluster
    image = engine_image(spec, default_image)
    account = names.engine_account(fed)
    head = _container("ray-head", image, cluster.head.cpu, cluster.head.memory, 0)
    head["ports"] = [
        {"containerPort": GCS_PORT, "name": "gcs-server"},
        {"containerPort": DASHBOARD_PORT, "name": "dashboard"},
        {"containerPort": CLIENT_PORT, "name": "client"},
    ]
    groups = []
    for pool in cluster.node_pools:
        replicas = sizing.workers.get(pool.name, pool.min_workers)
        pod_spec: dict[str, Any] = {
            "serviceAccountName": account,
            "containers": [
                _container(
                    "ray-worker",
                    image,
                    pool.cpus_per_worker,
                    pool.memory_per_worker,
                    pool.gpus_per_worker,
                )
            ],
        }
        template, params = shape_pod(
            pool, names.labels(fed, names.COMPONENT_RAY_WORKER), pod_spec, pool.memory_per_worker
        )
        groups.append(
            {
                "groupName": pool.name,
                "replicas": replicas,
                "minReplicas": replicas,
                "maxReplicas": max(replicas, pool.max_workers),
                "rayStartParams": params,
                "template": template,
            }
        )
    head_template, head_params = shape_pod(
        cluster.head,
        names.labels(fed, names.COMPONENT_RAY_HEAD),
        {"serviceAccountName": account, "containers": [head]},
        cluster.head.memory,
    )
    meta = _meta(names.raycluster(fed), namespace, fed, uid, names.COMPONENT_RAYCLUSTER)
    if cluster.queue_name is not None:
        # Kueue admits the RayCluster as one workload, by the queue its own metadata names.
        meta["labels"][KUEUE_QUEUE_LABEL] = cluster.queue_name
    rc: dict[str, Any] = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": meta,
        "spec": {
            "rayVersion": cluster.ray_version,
            # Ray >= 2.52 token auth, wired by KubeRay (RAY_AUTH_MODE/RAY_AUTH_TOKEN on every container)
            # from our own Secret, so the operator holds the token without reading KubeRay's objects.
            # KubeRay >= v1.6.0 (older ones prune authOptions: the operator then refuses to submit).
            "authOptions": {"mode": "token", "secretName": names.token_secret(fed, uid)},
            "headGroupSpec": {
                "rayStartParams": {"dashboard-host": "0.0.0.0", **head_params},
                "template": head_template,
            },
            "workerGroupSpecs": groups,
        },
    }
    return checkpoints.add_storage(rc, spec.checkpoint, checkpoint_mount_path)


def build_token_secret(fed: str, namespace: str, uid: str, token: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(names.token_secret(fed, uid), namespace, fed, uid, names.COMPONENT_TOKEN),
        "type": "Opaque",
        "stringData": {names.TOKEN_KEY: token},
    }


def build_report_configmap(fed: str, namespace: str, uid: str) -> dict[str, Any]:
    """The one object the engine may write: its progress report, folded into status by the operator."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(names.report_configmap(fed), namespace, fed, uid, names.COMPONENT_REPORT),
        "data": {},
    }


def build_service_account(
    fed: str, namespace: str, uid: str, annotations: dict[str, str] | None = None
) -> dict[str, Any]:
    """The account the Ray pods run as. `annotations` bind it to a cloud identity (IRSA, Workload Identity)."""
    meta = _meta(names.engine_account(fed), namespace, fed, uid, names.COMPONENT_ENGINE)
    if annotations:
        meta["annotations"] = dict(annotations)
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}


def build_role(fed: str, namespace: str, uid: str) -> dict[str, Any]:
    """Least privilege for code that runs user models: read and write its own report, nothing else."""
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": _meta(names.engine_account(fed), namespace, fed, uid, names.COMPONENT_ENGINE),
        "rules": [
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": [names.report_configmap(fed)],
                # patch only (the sink's one call): the operator must hold whatever this grants.
                "verbs": ["get", "patch"],
            }
        ],
    }


def build_role_binding(
    fed: str, namespace: str, uid: str, borrowed_accounts: list[str] | None = None
) -> dict[str, Any]:
    """Binds the engine's Role to its ServiceAccount and, for an `existingCluster`, to the ServiceAccounts
    that cluster's pods run as (in cluster the engine runs as those): the grant is this Federation's
    report ConfigMap and nothing else, so the lender gains nothing but a way to report for the borrower."""
    name = names.engine_account(fed)
    accounts = [name, *(a for a in dict.fromkeys(borrowed_accounts or []) if a != name)]
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _meta(name, namespace, fed, uid, names.COMPONENT_ENGINE),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": a, "namespace": namespace} for a in accounts],
    }


def head_image(rc: dict[str, Any]) -> str | None:
    """The image a RayCluster's head runs (its first container's), if it names one."""
    head = (((rc.get("spec") or {}).get("headGroupSpec") or {}).get("template") or {}).get("spec") or {}
    containers = head.get("containers") or [{}]
    image = containers[0].get("image")
    return str(image) if image else None


def pod_accounts(rc: dict[str, Any]) -> list[str]:
    """The ServiceAccounts a RayCluster's pods run as (`default` where a template names none)."""
    spec = rc.get("spec") or {}
    templates = [(spec.get("headGroupSpec") or {}).get("template") or {}]
    templates += [(g or {}).get("template") or {} for g in spec.get("workerGroupSpecs") or []]
    found = [((t.get("spec") or {}).get("serviceAccountName") or "default") for t in templates]
    return list(dict.fromkeys(found))


def build_job_request(
    fed: str,
    namespace: str,
    spec: dict[str, Any],
    submission_id: str,
    *,
    entrypoint: str,
    resume: bool,
    report_interval_seconds: float,
    kubeconfig_path: str | None = None,
    extra_env: dict[str, str] | None = None,
    image: str | None = None,
    runtime_env: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The body of `POST /api/jobs/`. The spec travels in the job's environment, as JSON. `runtime_env` is
    the user's (`spec.runtimeEnv.ray_runtime_env()`): their code, packages and variables, under ours."""
    user = dict(runtime_env or {})
    env = {
        **(user.pop("env_vars", None) or {}),
        "RED_FEDERATION": json.dumps(
            {
                "apiVersion": "red.dev/v1alpha1",
                "kind": "Federation",
                "metadata": {"name": fed, "namespace": namespace},
                "spec": spec,
            },
            separators=(",", ":"),
            sort_keys=True,
        ),
        "RED_NAMESPACE": namespace,
        "RED_REPORT_CONFIGMAP": names.report_configmap(fed),
        "RED_SUBMISSION_ID": submission_id,  # stamped on every report: the operator ignores other attempts
        "RED_RESUME": "1" if resume else "0",
        "RED_REPORT_INTERVAL_SECONDS": f"{report_interval_seconds:g}",
        **(extra_env or {}),
    }
    if kubeconfig_path:
        env["KUBECONFIG"] = kubeconfig_path
    if image:
        env[IMAGE_ENV] = image  # the engine reports it with its software versions
    return {
        "entrypoint": entrypoint,
        "submission_id": submission_id,
        "runtime_env": {**user, "env_vars": env},
        "metadata": {"red.dev/federation": fed, "red.dev/namespace": namespace},
    }
