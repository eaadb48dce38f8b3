"""Durable checkpoints on Kubernetes: where the engine writes them and what the Ray pods need for that. Pure.

A checkpoint must outlive the RayCluster (suspend deletes it; a retry may land on a new one), so it goes
to storage of its own, under a folder named by the Federation's uid: a new Federation that reuses an old
one's name never resumes the old run.

- `spec.checkpoint.persistentVolumeClaim`: the claim is mounted into the head and every worker at
  `Settings.checkpoint_mount_path`; the engine writes under `<mount>/<uid>`.
- `spec.checkpoint.path` (`s3://bucket/prefix`, or any fsspec URL): the engine writes under
  `<path>/<uid>`; `credentialsSecret`'s keys become the pods' environment (envFrom), so the Ray job (which
  runs on the head) finds AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY as boto does.
- A plain directory `path` without a claim lives inside the head pod and is lost with it.
"""

from __future__ import annotations

from typing import Any

from red.spec.model import CheckpointSpec

DEFAULT_MOUNT_PATH = "/red/checkpoints"
VOLUME = "red-checkpoints"
ENV_PATH = "RED_CHECKPOINT_PATH"
"""The engine job's checkpoint folder (it replaces spec.checkpoint.path in the engine)."""


def engine_path(spec: CheckpointSpec, uid: str, mount_path: str = DEFAULT_MOUNT_PATH) -> str | None:
    """The folder this Federation's engine checkpoints to; None when checkpoints are off."""
    if spec.persistent_volume_claim is not None:
        return f"{mount_path.rstrip('/')}/{uid}"
    if spec.path is not None:
        return f"{spec.path.rstrip('/')}/{uid}"
    return None


def engine_env(spec: CheckpointSpec, uid: str, mount_path: str = DEFAULT_MOUNT_PATH) -> dict[str, str]:
    """What the Ray job's environment gets (see `builders.build_job_request`'s `extra_env`)."""
    path = engine_path(spec, uid, mount_path)
    return {ENV_PATH: path} if path is not None else {}


def add_storage(
    raycluster: dict[str, Any], spec: CheckpointSpec, mount_path: str = DEFAULT_MOUNT_PATH
) -> dict[str, Any]:
    """``raycluster`` with the claim mounted into (and the credentials Secret on) the head and every worker
    group. Appends to whatever volumes, mounts and envFrom the pods already have; returns ``raycluster``."""
    if spec.persistent_volume_claim is None and spec.credentials_secret is None:
        return raycluster
    body = raycluster.get("spec") or {}
    groups = [body.get("headGroupSpec") or {}, *(body.get("workerGroupSpecs") or [])]
    for group in groups:
        pod = group.setdefault("template", {}).setdefault("spec", {})
        if spec.persistent_volume_claim is not None:
            pod.setdefault("volumes", []).append(
                {"name": VOLUME, "persistentVolumeClaim": {"claimName": spec.persistent_volume_claim}}
            )
        for container in pod.get("containers") or []:
            if spec.persistent_volume_claim is not None:
                container.setdefault("volumeMounts", []).append({"name": VOLUME, "mountPath": mount_path})
            if spec.credentials_secret is not None:
                container.setdefault("envFrom", []).append({"secretRef": {"name": spec.credentials_secret}})
    return raycluster
