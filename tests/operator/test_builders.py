"""Desired objects from a spec: sizing, the RayCluster, RBAC, the job request. Plain dicts, no cluster."""

from __future__ import annotations

import json
from typing import Any

import pytest
from red_operator import builders, names
from red_operator.sizing import size_cluster

from red.spec.model import ENGINE_IMAGE
from tests.operator.helpers import GPU_TOLERATION, gpu_pool, spec

UID = "0123abcd-4567-89ef-0000-000000000000"


@pytest.mark.parametrize(
    ("clients", "per_gpu", "pools", "expect_workers", "expect_short"),
    [
        # 8 clients x 0.5 GPU = 4 GPUs: one 8-GPU worker.
        (8, 0.5, [gpu_pool()], {"gpu": 1}, None),
        # 24 clients x 1 GPU: three 8-GPU workers, but maxWorkers 2 -> shortfall, never shrunk.
        (24, 1, [gpu_pool()], {"gpu": 2}, "short by 8 nodes"),
        # 24 x 1 with maxWorkers 3 fits.
        (24, 1, [gpu_pool(maxWorkers=3)], {"gpu": 3}, None),
        # 0.3 GPU each: floor(8 / 0.3) = 26 per worker -> 27 clients need 2 workers.
        (27, 0.3, [gpu_pool()], {"gpu": 2}, None),
        # Whole GPUs bigger than a worker: nothing fits.
        (2, 4, [gpu_pool(gpusPerWorker=2)], {"gpu": 0}, "no worker of any pool has 4 GPUs"),
        # Spill-over into the second GPU pool, in the order written.
        (
            20,
            1,
            [gpu_pool(maxWorkers=2), gpu_pool(name="a100", gpusPerWorker=4, maxWorkers=2)],
            {"gpu": 2, "a100": 1},
            None,
        ),
        # No GPU needed: pools get their minWorkers.
        (8, 0, [gpu_pool(minWorkers=1)], {"gpu": 1}, None),
        (8, 0, [], {}, None),
        # GPUs needed but no GPU pool at all.
        (8, 0.5, [], {}, "no pool with gpusPerWorker > 0"),
        (8, 0.5, [gpu_pool(name="cpu", gpusPerWorker=0)], {"cpu": 0}, "no pool with gpusPerWorker > 0"),
    ],
)
def test_sizing(
    clients: int,
    per_gpu: float,
    pools: list[dict[str, Any]],
    expect_workers: dict[str, int],
    expect_short: str | None,
) -> None:
    s = spec(clients=clients, resources={"perNode": {"gpu": per_gpu}}, cluster={"nodePools": pools})
    sizing = size_cluster(s)
    assert sizing.workers == expect_workers
    if expect_short is None:
        assert sizing.fits, sizing.shortfall
    else:
        assert not sizing.fits
        assert expect_short in (sizing.shortfall or "")
        assert "GPU" in (sizing.shortfall or "")


def test_shortfall_names_the_numbers() -> None:
    s = spec(clients=24, resources={"perNode": {"gpu": 1}}, cluster={"nodePools": [gpu_pool()]})
    short = size_cluster(s).shortfall or ""
    assert "needs 24 GPUs" in short and "at most 16" in short and "gpu: 2 x 8 GPUs" in short


def _raycluster(**over: Any) -> dict[str, Any]:
    s = spec(cluster={"image": "img:1", "nodePools": [gpu_pool()]}, **over)
    return builders.build_raycluster("fl", "ns", UID, s, size_cluster(s))


def test_raycluster_head_and_gpu_group() -> None:
    rc = _raycluster()
    assert rc["apiVersion"] == "ray.io/v1" and rc["kind"] == "RayCluster"
    meta = rc["metadata"]
    assert meta["name"] == "fl-ray" and meta["namespace"] == "ns"
    assert meta["labels"] == names.labels("fl", names.COMPONENT_RAYCLUSTER)
    owner = meta["ownerReferences"][0]
    assert owner["kind"] == "Federation" and owner["uid"] == UID and owner["controller"] is True
    spec_ = rc["spec"]
    assert spec_["authOptions"] == {"mode": "token", "secretName": "fl-ray-token-0123abcd"}
    head = spec_["headGroupSpec"]["template"]["spec"]
    assert head["serviceAccountName"] == "fl-engine"
    assert "nvidia.com/gpu" not in head["containers"][0]["resources"]["limits"]
    (group,) = spec_["workerGroupSpecs"]
    assert group["groupName"] == "gpu"
    assert group["replicas"] == group["minReplicas"] == 1
    pod = group["template"]["spec"]
    assert pod["nodeSelector"] == {"red.dev/pool": "gpu"}
    assert pod["tolerations"] == [GPU_TOLERATION]
    assert pod["serviceAccountName"] == "fl-engine"
    limits = pod["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "8"  # KubeRay derives num-gpus from limits
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["requests"]


@pytest.mark.parametrize(
    ("own_image", "default_image", "expect"),
    [
        (None, "registry.example/red-engine:7", "registry.example/red-engine:7"),  # the chart's engine.image
        ("mine:2", "registry.example/red-engine:7", "mine:2"),  # the Federation's own wins
        (None, None, ENGINE_IMAGE),  # neither: this release's engine image
    ],
)
def test_raycluster_image_defaults_to_the_operators_engine_image(
    own_image: str | None, default_image: str | None, expect: str
) -> None:
    cluster: dict[str, Any] = {"nodePools": [gpu_pool()], **({"image": own_image} if own_image else {})}
    s = spec(cluster=cluster)
    kw = {"default_image": default_image} if default_image else {}
    rc = builders.build_raycluster("fl", "ns", UID, s, size_cluster(s), **kw)
    head = rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    (group,) = rc["spec"]["workerGroupSpecs"]
    assert head["image"] == group["template"]["spec"]["containers"][0]["image"] == expect


def test_operator_setting_engine_image_reaches_the_raycluster() -> None:
    from red_operator.settings import Settings

    settings = Settings.from_env({"RED_OPERATOR_ENGINE_IMAGE": "registry.example/red-engine:7"})
    s = spec()
    rc = builders.build_raycluster("fl", "ns", UID, s, size_cluster(s), default_image=settings.engine_image)
    assert rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/red-engine:7"
    assert Settings().engine_image == ENGINE_IMAGE


def test_raycluster_is_pure_and_json_serialisable() -> None:
    assert json.dumps(_raycluster()) == json.dumps(_raycluster())


@pytest.mark.parametrize(
    ("builder", "kind", "name"),
    [
        (builders.build_report_configmap, "ConfigMap", "fl-report"),
        (builders.build_service_account, "ServiceAccount", "fl-engine"),
        (builders.build_role, "Role", "fl-engine"),
        (builders.build_role_binding, "RoleBinding", "fl-engine"),
    ],
)
def test_owned_objects_carry_owner_and_labels(builder: Any, kind: str, name: str) -> None:
    obj = builder("fl", "ns", UID)
    assert obj["kind"] == kind and obj["metadata"]["name"] == name
    assert obj["metadata"]["ownerReferences"][0]["uid"] == UID
    assert obj["metadata"]["labels"]["red.dev/federation"] == "fl"


def test_engine_role_is_limited_to_its_configmap() -> None:
    (rule,) = builders.build_role("fl", "ns", UID)["rules"]
    assert rule == {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["fl-report"],
        "verbs": ["get", "patch"],
    }
    binding = builders.build_role_binding("fl", "ns", UID)
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "fl-engine", "namespace": "ns"}]


def test_token_secret_uses_kuberay_key_and_a_name_with_the_uid() -> None:
    secret = builders.build_token_secret("fl", "ns", UID, "t0k")
    assert secret["stringData"] == {"auth_token": "t0k"}
    # Nothing made before the Federation existed can have this name (the operator cannot read Secrets).
    assert secret["metadata"]["name"] == "fl-ray-token-0123abcd"


def test_borrowed_cluster_accounts_may_write_the_report_and_nothing_else() -> None:
    binding = builders.build_role_binding("fl", "ns", UID, ["lender", "fl-engine", "lender"])
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "fl-engine", "namespace": "ns"},
        {"kind": "ServiceAccount", "name": "lender", "namespace": "ns"},
    ]
    assert binding["roleRef"]["name"] == "fl-engine"  # the Role limited to fl-report


@pytest.mark.parametrize(
    ("head_sa", "worker_sas", "expected"),
    [
        ("lender", ["lender"], ["lender"]),
        (None, [], ["default"]),
        ("head", ["w1", None], ["head", "w1", "default"]),
    ],
)
def test_pod_accounts_of_a_raycluster(head_sa: str | None, worker_sas: list[str | None], expected: list[str]) -> None:
    def template(sa: str | None) -> dict[str, Any]:
        return {"template": {"spec": {"serviceAccountName": sa} if sa else {}}}

    rc = {"spec": {"headGroupSpec": template(head_sa), "workerGroupSpecs": [template(s) for s in worker_sas]}}
    assert builders.pod_accounts(rc) == expected


def test_job_request_carries_spec_not_token() -> None:
    req = builders.build_job_request(
        "fl",
        "ns",
        {"clients": 2},
        "red-fl-0123abcd-1",
        entrypoint="python -m red_operator.engine_job",
        resume=True,
        report_interval_seconds=2,
        kubeconfig_path="/tmp/k",
    )
    assert req["submission_id"] == "red-fl-0123abcd-1"
    env = req["runtime_env"]["env_vars"]
    fed = json.loads(env["RED_FEDERATION"])
    assert fed["metadata"] == {"name": "fl", "namespace": "ns"} and fed["spec"] == {"clients": 2}
    assert env["RED_RESUME"] == "1" and env["KUBECONFIG"] == "/tmp/k"
    assert env["RED_REPORT_CONFIGMAP"] == "fl-report"
    assert "token" not in json.dumps(req).lower().replace("ray-token", "")


def test_submission_id_is_deterministic() -> None:
    assert names.submission_id("fl", UID, 1) == names.submission_id("fl", UID, 1) == "red-fl-0123abcd-1"
    assert names.submission_id("fl", UID, 2) != names.submission_id("fl", UID, 1)


# ------------------------------------------------------------------ labels

RECOMMENDED = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/version",
}


def _every_built_object() -> list[tuple[str, dict[str, Any]]]:
    """(where, labels) for every object and pod template the operator creates for one Federation."""
    s = spec(clients=4, resources={"perNode": {"gpu": 0.5}}, cluster={"nodePools": [gpu_pool()]})
    rc = builders.build_raycluster("fl", "ns", UID, s, size_cluster(s))
    out = [
        ("RayCluster", rc["metadata"]["labels"]),
        ("head pods", rc["spec"]["headGroupSpec"]["template"]["metadata"]["labels"]),
        *[
            (f"{g['groupName']} worker pods", g["template"]["metadata"]["labels"])
            for g in rc["spec"]["workerGroupSpecs"]
        ],
    ]
    for build in (
        builders.build_report_configmap,
        builders.build_service_account,
        builders.build_role,
        builders.build_role_binding,
    ):
        obj = build("fl", "ns", UID)
        out.append((obj["kind"], obj["metadata"]["labels"]))
    secret = builders.build_token_secret("fl", "ns", UID, "t")
    out.append((secret["kind"], secret["metadata"]["labels"]))
    return out


@pytest.mark.parametrize(
    ("where", "component"),
    [
        ("RayCluster", "ray-cluster"),
        ("head pods", "ray-head"),
        ("gpu worker pods", "ray-worker"),
        ("Secret", "ray-token"),
        ("ConfigMap", "report"),
        ("ServiceAccount", "engine"),
        ("Role", "engine"),
        ("RoleBinding", "engine"),
    ],
)
def test_every_created_object_has_the_recommended_labels(where: str, component: str) -> None:
    import red

    labels = dict(_every_built_object())[where]
    assert labels.keys() >= RECOMMENDED, f"{where} lacks {RECOMMENDED - labels.keys()}"
    assert labels == {
        "app.kubernetes.io/name": "red",
        "app.kubernetes.io/instance": "fl",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "red",
        "app.kubernetes.io/managed-by": "red-operator",
        "app.kubernetes.io/version": red.__version__,
        "red.dev/federation": "fl",
    }


def test_the_label_table_covers_every_built_object() -> None:
    assert len(_every_built_object()) == 8  # one row above per object; add a row with each new builder


def test_job_request_names_the_image_for_the_engines_report() -> None:
    req = builders.build_job_request(
        "fl", "ns", {}, "red-fl-1", entrypoint="e", resume=False, report_interval_seconds=2, image="img:1"
    )
    assert req["runtime_env"]["env_vars"]["RED_ENGINE_IMAGE"] == "img:1"
    req = builders.build_job_request(
        "fl", "ns", {}, "red-fl-1", entrypoint="e", resume=False, report_interval_seconds=2
    )
    assert "RED_ENGINE_IMAGE" not in req["runtime_env"]["env_vars"]


@pytest.mark.parametrize(
    ("rc", "image"),
    [
        ({"spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"image": "theirs:3"}]}}}}}, "theirs:3"),
        ({"spec": {"headGroupSpec": {"template": {"spec": {"containers": [{}]}}}}}, None),
        ({"spec": {}}, None),
        ({}, None),
    ],
)
def test_head_image_of_a_borrowed_cluster(rc: dict[str, Any], image: str | None) -> None:
    assert builders.head_image(rc) == image
