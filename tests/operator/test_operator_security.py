"""The operator's security rules on the real control plane (issue 11): look-alike objects are never
adopted or deleted, another Federation's cluster is never borrowed, a Ray head that runs without token
auth gets nothing submitted, and a borrowed cluster's pods may write the borrower's report only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cluster.test_harness_smoke import raycluster_manifest
from tests.fixtures.cluster import KubeCluster, kubectl_json
from tests.operator.conftest import OperatorControl
from tests.operator.e2e_helpers import apply, condition, events, federation, get_fed, status, wait_until
from tests.operator.operator_proc import start_operator
from tests.operator.ray_head import RayHead, free_port
from tests.operator.test_operator_cluster import jobs_of, submission_prefix

pytestmark = [pytest.mark.cluster, pytest.mark.ray]


def stalled_with(cluster: KubeCluster, ns: str, name: str, reason: str) -> dict[str, Any] | None:
    c = condition(status(cluster, ns, name), "Stalled")
    return c if c.get("status") == "True" and c.get("reason") == reason else None


def meta_of(cluster: KubeCluster, ns: str, kind: str, name: str) -> dict[str, Any] | None:
    out = cluster.kubectl("get", kind, name, "-n", ns, "-o", "json", check=False)
    if out.returncode != 0:
        return None
    obj: dict[str, Any] = json.loads(out.stdout)
    return obj


def their_report_configmap(fed: str) -> dict[str, Any]:
    """Someone else's ConfigMap with the name the operator gives Federation ``fed``'s report."""
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{fed}-report"}, "data": {"mine": "yes"}}


def test_look_alikes_are_reported_never_used_and_survive_deletion(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, ray_head: RayHead
) -> None:
    ns, name = kube_namespace, "lookalike"
    # Someone else's objects that happen to have the names the operator would give this Federation's.
    apply(kube_cluster, ns, {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": f"{name}-engine"}})
    apply(kube_cluster, ns, their_report_configmap(name))
    before = {k: meta_of(kube_cluster, ns, k, n) for k, n in (("sa", f"{name}-engine"), ("cm", f"{name}-report"))}
    apply(kube_cluster, ns, federation(name, rounds=2, clients=2))

    c = wait_until("Stalled=True/NameConflict", lambda: stalled_with(kube_cluster, ns, name, "NameConflict"))
    assert f"ServiceAccount {ns}/{name}-engine" in c["message"], c
    assert f"ConfigMap {ns}/{name}-report" in c["message"], c
    st = status(kube_cluster, ns, name)
    assert condition(st, "JobSubmitted")["reason"] == "NameConflict" and "job" not in st
    assert ("Warning", "StalledTrue") in {(e["type"], e["reason"]) for e in events(kube_cluster, ns, name)}
    # Nothing runs on top of a look-alike: no cluster (its pods would run as that ServiceAccount), no job,
    # and nothing is created at all (a RoleBinding would grant our Role to that ServiceAccount).
    assert meta_of(kube_cluster, ns, "raycluster", f"{name}-ray") is None
    assert meta_of(kube_cluster, ns, "rolebinding", f"{name}-engine") is None
    assert meta_of(kube_cluster, ns, "role", f"{name}-engine") is None
    assert not jobs_of(ray_head, submission_prefix(get_fed(kube_cluster, ns, name)))

    kube_cluster.kubectl("delete", "federation", name, "-n", ns, "--timeout=120s")
    for short, obj_name in (("sa", f"{name}-engine"), ("cm", f"{name}-report")):
        after = meta_of(kube_cluster, ns, short, obj_name)
        assert after is not None, f"{short} {obj_name} was deleted with a Federation that did not own it"
        assert after["metadata"]["uid"] == before[short]["metadata"]["uid"]  # type: ignore[index]
        assert not after["metadata"].get("ownerReferences")
    assert (meta_of(kube_cluster, ns, "cm", f"{name}-report") or {}).get("data") == {"mine": "yes"}


def test_a_configmap_look_alike_stops_the_job_not_the_cluster(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, ray_head: RayHead
) -> None:
    # The report ConfigMap, Role and RoleBinding are made in the pass that first submits the job: a
    # look-alike of one of them is found then, and nothing is submitted, bound or overwritten.
    ns, name = kube_namespace, "cmonly"
    apply(kube_cluster, ns, their_report_configmap(name))
    apply(kube_cluster, ns, federation(name, rounds=2, clients=2))
    c = wait_until("Stalled=True/NameConflict", lambda: stalled_with(kube_cluster, ns, name, "NameConflict"))
    assert f"ConfigMap {ns}/{name}-report" in c["message"] and "ServiceAccount" not in c["message"], c
    st = status(kube_cluster, ns, name)
    assert "job" not in st and not jobs_of(ray_head, submission_prefix(get_fed(kube_cluster, ns, name)))
    assert meta_of(kube_cluster, ns, "raycluster", f"{name}-ray") is not None  # made before the job stage
    assert meta_of(kube_cluster, ns, "rolebinding", f"{name}-engine") is None
    assert (meta_of(kube_cluster, ns, "cm", f"{name}-report") or {}).get("data") == {"mine": "yes"}


def test_a_raycluster_with_our_name_is_not_ours(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, ray_head: RayHead
) -> None:
    ns, name = kube_namespace, "squatted"
    apply(kube_cluster, ns, raycluster_manifest(f"{name}-ray", workers=0))
    uid = (meta_of(kube_cluster, ns, "raycluster", f"{name}-ray") or {})["metadata"]["uid"]
    apply(kube_cluster, ns, federation(name, rounds=2, clients=2))
    c = wait_until("Stalled=True/NameConflict", lambda: stalled_with(kube_cluster, ns, name, "NameConflict"))
    assert f"RayCluster {ns}/{name}-ray" in c["message"] and "no controller ownerReference" in c["message"]
    assert not jobs_of(ray_head, submission_prefix(get_fed(kube_cluster, ns, name)))
    kube_cluster.kubectl("delete", "federation", name, "-n", ns, "--timeout=120s")
    rc = meta_of(kube_cluster, ns, "raycluster", f"{name}-ray")
    assert rc is not None and rc["metadata"]["uid"] == uid, "deleted a RayCluster it did not own"


def test_another_federations_cluster_is_not_borrowed(
    kube_cluster: KubeCluster, kube_namespace: str, red_operator: OperatorControl, ray_head: RayHead
) -> None:
    ns = kube_namespace
    # The lender: a Federation that controls a RayCluster (suspended, so nothing else happens to it).
    apply(kube_cluster, ns, federation("lender", suspend=True))
    lender = get_fed(kube_cluster, ns, "lender")
    rc = raycluster_manifest("lender-cluster", workers=0)
    rc["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "red.dev/v1alpha1",
            "kind": "Federation",
            "name": "lender",
            "uid": lender["metadata"]["uid"],
            "controller": True,
        }
    ]
    apply(kube_cluster, ns, rc)
    apply(kube_cluster, ns, federation("borrower", rounds=2, clients=2, cluster={"existingCluster": "lender-cluster"}))
    c = wait_until(
        "Stalled=True/ClusterNotBorrowable",
        lambda: stalled_with(kube_cluster, ns, "borrower", "ClusterNotBorrowable"),
    )
    assert "belongs to Federation lender" in c["message"], c
    assert not jobs_of(ray_head, submission_prefix(get_fed(kube_cluster, ns, "borrower")))
    kube_cluster.kubectl("delete", "federation", "borrower", "-n", ns, "--timeout=120s")
    assert meta_of(kube_cluster, ns, "raycluster", "lender-cluster") is not None


@pytest.fixture
def operator_on_open_head(
    kube_cluster: KubeCluster, kube_namespace: str, federation_crd: str, open_ray_head: RayHead, tmp_path: Path
) -> Iterator[OperatorControl]:
    """The operator, pointed at a Ray head that runs WITHOUT token auth."""
    control = OperatorControl(kube_cluster, kube_namespace, open_ray_head, tmp_path / "operator")
    try:
        yield control
    finally:
        try:
            kube_cluster.kubectl(
                "delete", "federations", "--all", "-n", kube_namespace, "--timeout=120s", check=False, timeout=180
            )
        finally:
            control.op.stop()
            print(f"\n--- operator log (tail) ---\n{control.logs()[-8000:]}")


def test_a_head_without_token_auth_gets_nothing_submitted(
    kube_cluster: KubeCluster, kube_namespace: str, operator_on_open_head: OperatorControl, open_ray_head: RayHead
) -> None:
    ns, name = kube_namespace, "exposed"
    apply(kube_cluster, ns, federation(name, rounds=2, clients=2))
    c = wait_until(
        "Stalled=True/AuthNotEnforced",
        lambda: stalled_with(kube_cluster, ns, name, "AuthNotEnforced"),
        timeout_s=300,
    )
    assert "KubeRay >= v1.6.0" in c["message"] and "nothing was submitted" in c["message"], c
    st = status(kube_cluster, ns, name)
    assert condition(st, "ClusterReady")["status"] == "True"  # the cluster is fine; its head is open
    assert condition(st, "JobSubmitted")["reason"] == "AuthNotEnforced" and "job" not in st
    assert not jobs_of(open_ray_head, submission_prefix(get_fed(kube_cluster, ns, name)))


def test_token_secret_holds_the_derived_token(
    kube_cluster: KubeCluster, kube_namespace: str, federation_crd: str, tmp_path: Path
) -> None:
    """Without a dev token the operator derives each token from its key, writes it once for KubeRay, and
    points the RayCluster at it."""
    ns, name = kube_namespace, "derived"
    key = tmp_path / "key"
    key.write_text("k" * 48)
    op = start_operator(
        kube_cluster.kubeconfig,
        tmp_path / "op",
        dashboard_url=f"http://127.0.0.1:{free_port()}",
        token_file=None,
        token_key_file=key,
        namespaces=[ns],
    )
    try:
        apply(kube_cluster, ns, federation(name, rounds=2, clients=2))
        rc = wait_until("the RayCluster", lambda: meta_of(kube_cluster, ns, "raycluster", f"{name}-ray"), log=op.logs)
        uid = get_fed(kube_cluster, ns, name)["metadata"]["uid"]
        secret_name = rc["spec"]["authOptions"]["secretName"]
        assert secret_name == f"{name}-ray-token-{uid.replace('-', '')[:8]}"
        secret = kubectl_json(kube_cluster, "get", "secret", secret_name, "-n", ns)
        token = base64.b64decode(secret["data"]["auth_token"]).decode()
        assert token == hmac.new(b"k" * 48, f"red.dev/ray-token/{uid}".encode(), hashlib.sha256).hexdigest()
        assert secret["metadata"]["ownerReferences"][0]["uid"] == uid  # goes with the Federation
        assert token not in str(get_fed(kube_cluster, ns, name))
        kube_cluster.kubectl("delete", "federation", name, "-n", ns, "--timeout=120s")
    finally:
        op.stop()
