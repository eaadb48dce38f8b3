"""Durable checkpoints, the operator's side (plain dicts, no cluster): the claim and the credentials Secret in
the desired RayCluster's pods, the engine's folder keyed by the Federation's uid, resume decisions, the spec's
checks, and `status.checkpoint` folded from the engine's report."""

from __future__ import annotations

from typing import Any

import pytest
from red_operator import builders, checkpoints
from red_operator.decide import plan
from red_operator.settings import Settings
from red_operator.sizing import size_cluster
from red_operator.status import fold

from red.errors import SpecError
from red.spec.loader import spec_from_dict
from red.spec.status import parse_report
from tests.operator.helpers import gpu_pool, spec
from tests.operator.test_status import NOW, job, observe, report, running_plan

UID = "0123abcd-4567-89ef-0000-000000000000"


def pods(rc: dict[str, Any]) -> list[dict[str, Any]]:
    body = rc["spec"]
    return [body["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in body["workerGroupSpecs"])]


def test_the_claim_is_mounted_into_the_head_and_every_worker() -> None:
    s = spec(checkpoint={"persistentVolumeClaim": "ckpt", "everyRounds": 2},
             cluster={"nodePools": [gpu_pool(), gpu_pool(name="a100")]})
    rc = builders.build_raycluster("fl", "team", UID, s, size_cluster(s), checkpoint_mount_path="/mnt/ckpt")
    assert len(pods(rc)) == 3
    for pod in pods(rc):
        # After Red's own /dev/shm volume (pod shaping), the claim.
        assert pod["volumes"][1:] == [{"name": "red-checkpoints", "persistentVolumeClaim": {"claimName": "ckpt"}}]
        (container,) = pod["containers"]
        assert container["volumeMounts"][1:] == [{"name": "red-checkpoints", "mountPath": "/mnt/ckpt"}]
        assert "envFrom" not in container


def test_the_credentials_secret_reaches_every_ray_container_through_env_from() -> None:
    s = spec(checkpoint={"path": "s3://bucket/runs", "credentialsSecret": "s3-creds"})
    rc = builders.build_raycluster("fl", "team", UID, s, size_cluster(s))
    for pod in pods(rc):
        assert [v["name"] for v in pod["volumes"]] == ["dshm"]  # no claim: only Red's own /dev/shm
        assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "s3-creds"}}]


def test_no_checkpoint_storage_leaves_the_pods_alone() -> None:
    for ck in ({}, {"path": "/in-the-pod"}):
        s = spec(checkpoint=ck)
        for pod in pods(builders.build_raycluster("fl", "team", UID, s, size_cluster(s))):
            assert all(v["name"] != "red-checkpoints" for v in pod.get("volumes", []))
            container = pod["containers"][0]
            assert all(m["name"] != "red-checkpoints" for m in container.get("volumeMounts", []))
            assert not [e for e in container.get("envFrom", []) if "secretRef" in e]


def test_storage_is_added_to_what_the_pods_already_have() -> None:
    rc = {"spec": {"headGroupSpec": {"template": {"spec": {
        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory"}}],
        "containers": [{"name": "ray-head", "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
                        "envFrom": [{"configMapRef": {"name": "cfg"}}]}],
    }}}, "workerGroupSpecs": []}}
    ck = spec_from_dict({"checkpoint": {"persistentVolumeClaim": "ckpt"}}).checkpoint
    pod = checkpoints.add_storage(rc, ck)["spec"]["headGroupSpec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["shm", "red-checkpoints"]
    assert [m["mountPath"] for m in pod["containers"][0]["volumeMounts"]] == ["/dev/shm", "/red/checkpoints"]
    assert pod["containers"][0]["envFrom"] == [{"configMapRef": {"name": "cfg"}}]


@pytest.mark.parametrize(
    ("ck", "mount", "expect"),
    [
        ({"persistentVolumeClaim": "ckpt"}, "/red/checkpoints", f"/red/checkpoints/{UID}"),
        ({"persistentVolumeClaim": "ckpt"}, "/tmp/host-dir/", f"/tmp/host-dir/{UID}"),
        ({"path": "s3://bucket/runs/"}, "/red/checkpoints", f"s3://bucket/runs/{UID}"),
        ({"path": "/ckpt/digits"}, "/red/checkpoints", f"/ckpt/digits/{UID}"),
        ({}, "/red/checkpoints", None),
    ],
)
def test_the_engine_folder_is_keyed_by_the_federation_uid(ck: dict[str, Any], mount: str, expect: str | None) -> None:
    spec_ck = spec_from_dict({"checkpoint": ck}).checkpoint
    assert checkpoints.engine_path(spec_ck, UID, mount) == expect
    env = checkpoints.engine_env(spec_ck, UID, mount)
    assert env == ({"RED_CHECKPOINT_PATH": expect} if expect else {})
    # A new Federation reusing the name has a new uid, so a new folder: it never resumes the old run.
    if expect:
        assert checkpoints.engine_path(spec_ck, "another-uid", mount) != expect


def test_the_mount_path_is_a_setting() -> None:
    assert Settings().checkpoint_mount_path == "/red/checkpoints"
    assert Settings.from_env({"RED_OPERATOR_CHECKPOINT_MOUNT_PATH": "/tmp/x"}).checkpoint_mount_path == "/tmp/x"


def test_resume_after_suspend_with_a_claim() -> None:
    suspended = {"phase": "Suspended", **job(status="SUSPENDED")}
    p = plan(spec(checkpoint={"persistentVolumeClaim": "ckpt"}), suspended, None, cluster_ready=True, fits=True,
             now=NOW)
    assert (p.job, p.attempt, p.resume) == ("submit", 2, True)


@pytest.mark.parametrize(
    ("ck", "problem"),
    [
        ({"persistentVolumeClaim": "ckpt", "path": "/x"}, "checkpoint.path: leave it unset with persistentVolumeClaim"),
        ({"path": "/x", "endpointUrl": "http://minio:9000"}, "spec.checkpoint.endpointUrl is for object storage"),
        ({"credentialsSecret": "creds"}, "spec.checkpoint.credentialsSecret is for object storage"),
        ({"path": "s3://b/p", "endpointUrl": "minio:9000"}, "must be an http:// or https:// URL"),
        ({"persistentVolumeClaim": "My_Claim"}, "must name a PersistentVolumeClaim"),
        ({"path": "s3://b/p", "credentialsSecret": "Creds!"}, "must name a Secret"),
    ],
)
def test_storage_mistakes_are_refused_with_the_fix(ck: dict[str, Any], problem: str) -> None:
    with pytest.raises(SpecError, match=problem.replace(".", r"\.").replace("/", "/")):
        spec_from_dict({"checkpoint": ck})


def test_valid_storage_choices_parse() -> None:
    s3 = spec_from_dict({"checkpoint": {"path": "s3://b/p", "credentialsSecret": "creds",
                                        "endpointUrl": "http://seaweed:8333"}}).checkpoint
    assert s3.enabled and s3.endpoint_url == "http://seaweed:8333"
    assert spec_from_dict({"checkpoint": {"persistentVolumeClaim": "ckpt"}}).checkpoint.enabled
    assert not spec_from_dict({}).checkpoint.enabled


def test_status_shows_the_checkpoint_and_keeps_it_across_attempts() -> None:
    ck = {"round": 4, "path": f"s3://b/p/{UID}/round-000004", "time": "2026-01-01T12:00:04Z"}
    status = fold(job(status="RUNNING"), observe(plan=running_plan(), report=report(checkpoint=ck)))
    assert status["checkpoint"] == ck
    # A later report of the same attempt without one (none saved since) keeps it; so does a new attempt.
    later = fold(status, observe(plan=running_plan(), report=report(rnd=5)))
    assert later["checkpoint"] == ck


def test_a_malformed_checkpoint_in_the_report_makes_the_report_invalid() -> None:
    reading = parse_report(report(checkpoint={"round": -1, "path": "x"}))
    assert reading.report is None and "checkpoint.round" in (reading.problem or "")
