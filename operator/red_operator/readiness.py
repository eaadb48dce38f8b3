"""Is a RayCluster really ready, and what do its pods say? Pure.

KubeRay's `status.state` is deprecated and hides pending and crash-looping pods, so readiness is the
`HeadPodReady` condition plus `readyWorkerReplicas == desiredWorkerReplicas`, and the pods themselves
are read for the reason when it is not. A pod the API server refuses to create (Pod Security admission,
a quota, an invalid volume) never exists to be read: KubeRay records the refusal in its
`ReplicaFailure` condition (Go: RayClusterReplicaFailure), quoting the API server, and that is reported
instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Container waiting reasons that mean "will not become ready without a fix".
_BAD_WAITING = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}


@dataclass(frozen=True)
class PodProblem:
    pod: str
    group: str
    reason: str
    message: str


@dataclass(frozen=True)
class ClusterObservation:
    exists: bool
    ready: bool = False
    reason: str = "Creating"
    message: str = ""
    desired_workers: int = 0
    ready_workers: int = 0
    service: str | None = None
    problems: list[PodProblem] = field(default_factory=list)
    refused: bool = False
    """The API server refused to create a pod: nothing changes until someone fixes the spec or the namespace."""


# KubeRay's RayClusterReplicaFailure reasons for pods it could not create (ray-operator utils/constant.go).
POD_CREATION_FAILURES = ("FailedCreateHeadPod", "FailedCreateWorkerPod")


def pod_problems(pods: list[dict[str, Any]]) -> list[PodProblem]:
    """Pending-unschedulable and crash-looping pods, each with the pod's own reason and message."""
    out = []
    for pod in pods:
        meta = pod.get("metadata", {})
        name = meta.get("name", "?")
        group = meta.get("labels", {}).get("ray.io/group", meta.get("labels", {}).get("ray.io/node-type", "?"))
        status = pod.get("status", {}) or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                out.append(PodProblem(name, group, cond.get("reason") or "Unschedulable", cond.get("message") or ""))
        for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _BAD_WAITING:
                msg = waiting.get("message") or ""
                last = (cs.get("lastState") or {}).get("terminated") or {}
                if last:
                    msg = (msg + f" (last exit code {last.get('exitCode')}, {last.get('reason')})").strip()
                out.append(PodProblem(name, group, waiting["reason"], msg))
        if status.get("phase") == "Failed":
            out.append(PodProblem(name, group, status.get("reason") or "PodFailed", status.get("message") or ""))
    return out


def observe_cluster(raycluster: dict[str, Any] | None, pods: list[dict[str, Any]]) -> ClusterObservation:
    """Fold a RayCluster object and its pods into one observation."""
    if raycluster is None:
        return ClusterObservation(exists=False, reason="NotFound", message="the RayCluster does not exist")
    status = raycluster.get("status") or {}
    if (raycluster.get("metadata") or {}).get("deletionTimestamp"):
        # Going away (deleted by hand, or by us): never ready, so no job is submitted to it.
        return ClusterObservation(True, False, "Deleting", "the RayCluster is being deleted")
    conds = {c.get("type"): c for c in status.get("conditions") or []}
    head_ready = (conds.get("HeadPodReady") or {}).get("status") == "True"
    desired = int(status.get("desiredWorkerReplicas") or 0)
    if not status.get("desiredWorkerReplicas"):
        groups = (raycluster.get("spec") or {}).get("workerGroupSpecs") or []
        desired = sum(int(g.get("replicas") or 0) for g in groups)
    ready_workers = int(status.get("readyWorkerReplicas") or 0)
    service = (status.get("head") or {}).get("serviceName")
    problems = pod_problems(pods)
    ready = head_ready and ready_workers == desired
    failure = conds.get("ReplicaFailure") or {}
    if not ready and failure.get("status") == "True" and failure.get("reason") in POD_CREATION_FAILURES:
        # KubeRay's message is "<reason>\n<the API server's error>": keep the API server's words.
        detail = str(failure.get("message") or "").removeprefix(str(failure["reason"])).strip()
        which = "head" if failure["reason"] == "FailedCreateHeadPod" else "worker"
        message = f"KubeRay could not create the {which} pod: {detail or 'no message'}"
        return ClusterObservation(
            True, False, failure["reason"], message, desired, ready_workers, service, problems, refused=True
        )
    if ready:
        return ClusterObservation(
            True,
            True,
            "ClusterReady",
            f"head ready, {ready_workers}/{desired} workers ready",
            desired,
            ready_workers,
            service,
            problems,
        )
    if problems:
        first = problems[0]
        same = [p for p in problems if p.reason == first.reason]
        message = f"{len(same)} pod(s) {first.reason}: {first.pod} (group {first.group}): {first.message}"
        return ClusterObservation(True, False, first.reason, message, desired, ready_workers, service, problems)
    message = f"waiting for the head (ready: {head_ready}) and workers ({ready_workers}/{desired} ready)"
    return ClusterObservation(True, False, "Creating", message, desired, ready_workers, service, problems)
