"""Readiness from KubeRay's conditions and replica counts, and reasons from the pods themselves."""

from __future__ import annotations

from typing import Any

import pytest
from red_operator.readiness import observe_cluster


def rc(head_ready: bool = True, desired: int = 2, ready: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"name": "fl-ray"},
        "spec": {"workerGroupSpecs": [{"replicas": desired}]},
        "status": {
            "state": "ready",  # deprecated and ignored: it hides pending and crashing pods
            "conditions": [{"type": "HeadPodReady", "status": "True" if head_ready else "False"}],
            "desiredWorkerReplicas": desired,
            "readyWorkerReplicas": ready,
            "head": {"serviceName": "fl-ray-head-svc"},
        },
    }


def pod(name: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"ray.io/group": "gpu"}}, "status": status}


UNSCHEDULABLE = pod(
    "fl-ray-gpu-worker-x",
    phase="Pending",
    conditions=[
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/4 nodes are available: 2 Insufficient nvidia.com/gpu.",
        }
    ],
)
CRASHING = pod(
    "fl-ray-gpu-worker-y",
    phase="Running",
    containerStatuses=[
        {
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
        }
    ],
)


@pytest.mark.parametrize(
    ("cluster", "pods", "ready", "reason", "in_message"),
    [
        (rc(), [], True, "ClusterReady", "2/2 workers"),
        (rc(head_ready=False), [], False, "Creating", "head (ready: False)"),
        (rc(ready=1), [UNSCHEDULABLE], False, "Unschedulable", "Insufficient nvidia.com/gpu"),
        (rc(ready=1), [CRASHING], False, "CrashLoopBackOff", "last exit code 1"),
        (rc(ready=1), [], False, "Creating", "1/2 ready"),
        (None, [], False, "NotFound", "does not exist"),
    ],
)
def test_observe_cluster(
    cluster: dict[str, Any] | None, pods: list[dict[str, Any]], ready: bool, reason: str, in_message: str
) -> None:
    obs = observe_cluster(cluster, pods)
    assert obs.ready is ready
    assert obs.reason == reason
    assert in_message in obs.message
    if cluster is not None:
        assert obs.service == "fl-ray-head-svc"


def test_state_ready_alone_is_not_ready() -> None:
    assert not observe_cluster(rc(ready=0), []).ready


def test_a_cluster_being_deleted_is_never_ready() -> None:
    going = rc()
    going["metadata"]["deletionTimestamp"] = "2026-01-01T12:00:00Z"
    obs = observe_cluster(going, [])
    assert (obs.exists, obs.ready, obs.reason) == (True, False, "Deleting")
