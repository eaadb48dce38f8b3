"""The chart on a real API server (the e2e harness): every rendered object passes server-side dry-run,
`helm install` works, the ServiceAccount can do exactly what the operator needs, and the operator
process, run from this checkout with that ServiceAccount's token, reconciles a Federation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from red_operator.rbac import RULES

from tests.chart.tools import CHART, helm, is_aggregated, norm, render
from tests.cluster.test_harness_smoke import raycluster_manifest
from tests.fixtures.cluster import KubeCluster, kubectl_json
from tests.helpers import fed_dict, wait_until
from tests.operator.operator_proc import start_operator
from tests.operator.ray_head import free_port

pytestmark = pytest.mark.cluster


def release_name(namespace: str) -> str:
    return "red-" + namespace.rsplit("-", 1)[-1]


def dry_run(cluster: KubeCluster, objs: list[dict[str, Any]], namespace: str) -> str:
    """Server-side dry-run: the real schemas, defaulting and admission of the API server, nothing stored."""
    docs = yaml.safe_dump_all(objs)
    return cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "--field-manager=red-chart-test",
        "-n",
        namespace,
        "-f",
        "-",
        input=docs,
    ).stdout


@pytest.mark.parametrize(
    "values",
    [
        (),
        ("rbac.scope=namespace",),
        ("rbac.scope=namespace", "rbac.clusterReadAccess=false", "metrics.service.enabled=false"),
        (
            "operator.verbose=true",
            "image.digest=sha256:" + "0" * 64,
            "podLabels.team=ml",
            "tolerations[0].key=dedicated",
            "tolerations[0].operator=Exists",
            "nodeSelector.kubernetes\\.io/os=linux",
            "serviceAccount.annotations.a=b",
        ),
    ],
    ids=["cluster", "namespace", "namespace-minimal", "options"],
)
def test_every_rendered_object_passes_server_side_dry_run(
    kube_cluster: KubeCluster, kube_namespace: str, values: tuple[str, ...]
) -> None:
    objs = render(
        *values,
        f"rbac.watchNamespaces={{{kube_namespace}}}",
        namespace=kube_namespace,
        release=release_name(kube_namespace),
        include_crds=True,
    )
    out = dry_run(kube_cluster, objs, kube_namespace)
    # One line per object: the API server accepted each of them.
    assert len([ln for ln in out.splitlines() if "serverside-applied" in ln]) == len(objs), out


# ------------------------------------------------------------------ helm install + identity


def sa_kubeconfig(cluster: KubeCluster, namespace: str, sa: str, path: Path) -> Path:
    """A kubeconfig that authenticates as the ServiceAccount (a TokenRequest token), nothing else."""
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    server = admin["clusters"][0]["cluster"]
    token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=2h").stdout.strip()
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": server}],
                "users": [{"name": sa, "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": "c", "user": sa, "namespace": namespace}}],
                "current-context": "sa",
            }
        )
    )
    return path


class Release:
    def __init__(self, cluster: KubeCluster, namespace: str, scope: str) -> None:
        self.cluster, self.namespace, self.scope = cluster, namespace, scope
        # Cluster-scoped names (ClusterRole...) derive from the release: unique per test namespace
        # (its random suffix), and short enough that no name gets truncated.
        self.name = release_name(namespace)
        self.sa = ""

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.sa}"

    def helm(self, *args: str, check: bool = True) -> Any:
        return helm(*args, "--kubeconfig", str(self.cluster.kubeconfig), check=check)

    def can_i(self, verb: str, resource: str, *, namespace: str | None = None, subresource: str = "") -> bool:
        args = ["auth", "can-i", verb, resource, f"--as={self.user}"]
        args += ["-n", namespace or self.namespace] if namespace != "*" else ["--all-namespaces"]
        if subresource:
            args.append(f"--subresource={subresource}")
        out = self.cluster.kubectl(*args, check=False)
        assert out.stdout.strip() in ("yes", "no"), out.stdout + out.stderr
        return out.stdout.strip() == "yes"


@pytest.fixture(params=["cluster", "namespace"])
def release(request: pytest.FixtureRequest, kube_cluster: KubeCluster, kube_namespace: str) -> Iterator[Release]:
    rel = Release(kube_cluster, kube_namespace, request.param)
    rel.helm(
        "install",
        rel.name,
        str(CHART),
        "--namespace",
        kube_namespace,
        "--set",
        f"rbac.scope={request.param}",
        "--wait",
        "--timeout",
        "3m",
    )
    try:
        (sa,) = kubectl_json(
            kube_cluster, "get", "serviceaccounts", "-n", kube_namespace, "-l", f"app.kubernetes.io/instance={rel.name}"
        )["items"]
        rel.sa = sa["metadata"]["name"]
        yield rel
    finally:
        rel.helm("uninstall", rel.name, "--namespace", kube_namespace, "--wait", check=False)


def _rule_checks() -> list[tuple[str, str, str]]:
    """(verb, resource[.group], subresource) for every grant in RULES."""
    checks = []
    for rule in RULES:
        for group in rule["apiGroups"]:
            for res in rule["resources"]:
                base, _, sub = res.partition("/")
                for verb in rule["verbs"]:
                    checks.append((verb, f"{base}.{group}" if group else base, sub))
    return checks


CLUSTER_SCOPED = {"namespaces", "customresourcedefinitions.apiextensions.k8s.io"}

# Things the operator must NOT be able to do (least privilege), checked here and in kube-system.
FORBIDDEN = [
    ("delete", "nodes", ""),
    ("get", "secrets", ""),  # tokens are derived from the operator's key, never read
    ("list", "secrets", ""),
    ("delete", "secrets", ""),  # token Secrets go with their Federation (garbage collector)
    ("watch", "secrets", ""),
    ("update", "secrets", ""),
    ("patch", "secrets", ""),
    ("create", "deployments.apps", ""),
    ("create", "serviceaccounts", "token"),  # dev-only opt-in (rbac.engineTokenRequests)
    ("update", "configmaps", ""),
    ("create", "pods", ""),
    ("delete", "pods", ""),
    ("create", "pods", "exec"),
    ("update", "rayclusters.ray.io", ""),
    ("create", "federations.red.dev", ""),
    ("delete", "federations.red.dev", ""),
    ("create", "customresourcedefinitions.apiextensions.k8s.io", ""),
    ("create", "clusterroles.rbac.authorization.k8s.io", ""),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", ""),
    ("escalate", "roles.rbac.authorization.k8s.io", ""),
    ("bind", "roles.rbac.authorization.k8s.io", ""),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", ""),
    ("bind", "clusterroles.rbac.authorization.k8s.io", ""),
    ("update", "roles.rbac.authorization.k8s.io", ""),
    ("impersonate", "serviceaccounts", ""),
    ("create", "rayjobs.ray.io", ""),
    ("*", "*", ""),
]


def test_service_account_can_do_what_the_operator_needs_and_nothing_more(release: Release) -> None:
    missing: list[tuple[str, ...]] = []
    excess: list[tuple[str, ...]] = []
    for verb, res, sub in _rule_checks():
        if not release.can_i(verb, res, subresource=sub):
            missing.append((verb, res, sub))
        # Cluster scope: the same in any namespace; namespace scope: only the watched one.
        if res not in CLUSTER_SCOPED:
            elsewhere = release.can_i(verb, res, namespace="kube-system", subresource=sub)
            if elsewhere != (release.scope == "cluster"):
                (excess if elsewhere else missing).append((verb, res, sub, "kube-system"))
    for verb, res, sub in FORBIDDEN:
        if release.can_i(verb, res, subresource=sub):
            excess.append((verb, res, sub))
        if release.can_i(verb, res, namespace="kube-system", subresource=sub):
            excess.append((verb, res, sub, "kube-system"))
        if res == "secrets" and release.can_i(verb, res, namespace="*"):
            excess.append((verb, res, "all namespaces"))
    assert not missing, f"the chart's ServiceAccount lacks: {missing}"
    assert not excess, f"the chart's ServiceAccount may do more than the operator needs: {excess}"


def test_installed_roles_equal_operator_rules(release: Release) -> None:
    selector = f"app.kubernetes.io/instance={release.name}"
    cluster_roles = kubectl_json(release.cluster, "get", "clusterroles", "-l", selector)["items"]
    cluster_roles = [r for r in cluster_roles if not is_aggregated(r)]  # users' roles, not the operator's
    roles = kubectl_json(release.cluster, "get", "roles", "-n", release.namespace, "-l", selector)["items"]
    rules = [r for obj in cluster_roles + roles for r in obj["rules"]]
    assert norm(rules) == norm(RULES)


def test_operator_reconciles_a_federation_with_the_charts_identity(release: Release, tmp_path: Path) -> None:
    ns = release.namespace
    kubeconfig = sa_kubeconfig(release.cluster, ns, release.sa, tmp_path / "sa.kubeconfig")
    key = tmp_path / "token-key"
    key.write_text("a-key-of-at-least-32-bytes-for-this-test\n")
    # No Ray head answers here: the cluster side (RayCluster, status) is what this test checks; the
    # operator's own e2e runs the job on a real Ray head. Tokens are derived from the key, as in cluster:
    # this identity may create the token Secret but read no Secret at all.
    op = start_operator(
        kubeconfig,
        tmp_path / "op",
        dashboard_url=f"http://127.0.0.1:{free_port()}",
        token_file=None,
        token_key_file=key,
        namespaces=[ns],  # other tests' namespaces are not ours to reconcile, even with a ClusterRole
    )
    try:
        fed = fed_dict("chart-fed")
        fed["metadata"]["namespace"] = ns
        fed["spec"]["cluster"] = {
            "head": {"cpu": "1", "memory": "1Gi"},
            "nodePools": [
                {
                    "name": "cpu",
                    "gpusPerWorker": 0,
                    "cpusPerWorker": "1",
                    "memoryPerWorker": "1Gi",
                    "minWorkers": 1,
                    "maxWorkers": 1,
                    "nodeSelector": {"red.dev/pool": "cpu"},
                }
            ],
        }
        release.cluster.kubectl("apply", "-f", "-", input=json.dumps(fed))

        def raycluster() -> Any:
            items = kubectl_json(release.cluster, "get", "rayclusters.ray.io", "-n", ns)["items"]
            return items[0] if items else None

        rc = wait_until("the RayCluster", raycluster, log=op.logs)
        owner = rc["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"]) == ("Federation", "chart-fed")
        secret = rc["spec"]["authOptions"]["secretName"]
        assert release.cluster.kubectl("get", "secret", secret, "-n", ns, check=False).returncode == 0

        def cluster_ready() -> Any:
            st = kubectl_json(release.cluster, "get", "federation", "chart-fed", "-n", ns).get("status") or {}
            conds = {c["type"]: c for c in st.get("conditions") or []}
            return st if conds.get("ClusterReady", {}).get("status") == "True" else None

        # Readiness comes from the RayCluster and its pods: reading them works with the chart's rules.
        status = wait_until("ClusterReady=True in Federation.status", cluster_ready, timeout_s=180, log=op.logs)
        assert status["observedGeneration"] == 1
        assert status["rayCluster"]["name"] == rc["metadata"]["name"]

        # Deletion: the operator's cleanup and finalizer removal work with the chart's rules too.
        release.cluster.kubectl("delete", "federation", "chart-fed", "-n", ns, "--wait=false")
        wait_until(
            "the Federation to be gone",
            lambda: not kubectl_json(release.cluster, "get", "federations", "-n", ns)["items"],
            log=op.logs,
        )
        logs = op.logs()
        assert "Forbidden" not in logs and " 403" not in logs, logs[-6000:]
    finally:
        op.stop()


# ------------------------------------------------------------------ users: namespace editors and viewers


def user_kubectl(cluster: KubeCluster, kubeconfig: Path, *args: str, input: str | None = None) -> Any:
    """kubectl as that user (its own kubeconfig, no admin fallback)."""
    import subprocess

    return subprocess.run(
        [str(cluster.bin_dir / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=60,
    )


@pytest.mark.parametrize("release", ["cluster"], indirect=True)
def test_namespace_editor_creates_and_viewer_only_reads_federations(release: Release, tmp_path: Path) -> None:
    """The aggregated ClusterRoles at work: `edit` in a namespace is enough to run Federations there,
    `view` is enough to watch them, with no Red-specific binding."""
    cluster, ns = release.cluster, release.namespace
    for user, role in (("alice", "edit"), ("bob", "view")):
        cluster.kubectl("create", "serviceaccount", user, "-n", ns)
        cluster.kubectl(
            "create",
            "rolebinding",
            f"{user}-{role}",
            f"--clusterrole={role}",
            f"--serviceaccount={ns}:{user}",
            "-n",
            ns,
        )

    def can(user: str, verb: str) -> bool:
        out = cluster.kubectl(
            "auth",
            "can-i",
            verb,
            "federations.red.dev",
            "-n",
            ns,
            f"--as=system:serviceaccount:{ns}:{user}",
            check=False,
        )
        return out.stdout.strip() == "yes"

    # kube-controller-manager folds the chart's roles into edit/view: wait for it, then check each verb.
    wait_until("edit to include Federations", lambda: can("alice", "create"), timeout_s=60)
    wait_until("view to include Federations", lambda: can("bob", "list"), timeout_s=60)
    assert all(can("alice", v) for v in ("create", "get", "list", "watch", "update", "patch", "delete"))
    assert all(can("bob", v) for v in ("get", "list", "watch"))
    assert not any(can("bob", v) for v in ("create", "update", "patch", "delete"))
    elsewhere = cluster.kubectl(
        "auth",
        "can-i",
        "create",
        "federations.red.dev",
        "-n",
        "kube-system",
        f"--as=system:serviceaccount:{ns}:alice",
        check=False,
    )
    assert elsewhere.stdout.strip() == "no", "a RoleBinding grants its own namespace only"

    alice = sa_kubeconfig(cluster, ns, "alice", tmp_path / "alice.kubeconfig")
    bob = sa_kubeconfig(cluster, ns, "bob", tmp_path / "bob.kubeconfig")
    fed = fed_dict("editors-fed")
    created = user_kubectl(cluster, alice, "create", "-n", ns, "-f", "-", input=json.dumps(fed))
    assert created.returncode == 0, created.stderr
    assert "federation.red.dev/editors-fed created" in created.stdout

    listed = user_kubectl(cluster, bob, "get", "federations", "-n", ns, "-o", "name")
    assert listed.returncode == 0 and listed.stdout.split() == ["federation.red.dev/editors-fed"], listed.stderr
    fed["metadata"]["name"] = "viewers-fed"
    refused = user_kubectl(cluster, bob, "create", "-n", ns, "-f", "-", input=json.dumps(fed))
    assert refused.returncode != 0 and "Forbidden" in refused.stderr, refused.stdout + refused.stderr
    deleted = user_kubectl(cluster, alice, "delete", "federation", "editors-fed", "-n", ns, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr


def test_a_borrowed_clusters_token_needs_its_owners_explicit_grant(release: Release, tmp_path: Path) -> None:
    """The chart's identity reads no Secret: borrowing a RayCluster whose token Secret nobody granted it
    is refused with the commands that grant it; once granted, the refusal goes."""
    if release.scope != "cluster":
        pytest.skip("the grant is the same in both scopes; once is enough")
    ns = release.namespace
    kubeconfig = sa_kubeconfig(release.cluster, ns, release.sa, tmp_path / "sa.kubeconfig")
    key = tmp_path / "token-key"
    key.write_text("a-key-of-at-least-32-bytes-for-this-test\n")
    shared = raycluster_manifest("shared", workers=0)
    shared["metadata"]["namespace"] = ns
    shared["spec"]["authOptions"] = {"mode": "token", "secretName": "shared-token"}
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "shared-token", "namespace": ns},
        "stringData": {"auth_token": "the-lenders-token"},
    }
    for obj in (secret, shared):
        release.cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
    op = start_operator(
        kubeconfig,
        tmp_path / "op",
        dashboard_url=f"http://127.0.0.1:{free_port()}",
        token_file=None,
        token_key_file=key,
        namespaces=[ns],
    )
    try:
        fed = fed_dict("borrower")
        fed["metadata"]["namespace"] = ns
        fed["spec"]["cluster"] = {"existingCluster": "shared"}
        release.cluster.kubectl("apply", "-f", "-", input=json.dumps(fed))

        def stalled() -> Any:
            st = kubectl_json(release.cluster, "get", "federation", "borrower", "-n", ns).get("status") or {}
            return {c["type"]: c for c in st.get("conditions") or []}.get("Stalled") or {}

        def refused() -> Any:
            c = stalled()
            return c if c.get("reason") == "TokenNotReadable" else None

        c = wait_until("Stalled=True/TokenNotReadable", refused, timeout_s=180, log=op.logs)
        assert f"Secret {ns}/shared-token" in c["message"] and "kubectl create role" in c["message"], c
        # The owner's explicit grant: get on that one Secret, for the operator's ServiceAccount.
        release.cluster.kubectl(
            "create", "role", "red-read-shared-token", "-n", ns, "--verb=get", "--resource=secrets",
            "--resource-name=shared-token",
        )
        release.cluster.kubectl(
            "create", "rolebinding", "red-read-shared-token", "-n", ns, "--role=red-read-shared-token",
            f"--serviceaccount={ns}:{release.sa}",
        )
        wait_until("the refusal to go", lambda: stalled() and not refused(), timeout_s=120, log=op.logs)
        assert release.can_i("get", "secrets") is False  # still no Secret in general
    finally:
        release.cluster.kubectl("delete", "federation", "borrower", "-n", ns, "--wait=false", check=False)
        wait_until(
            "the Federation to be gone",
            lambda: not kubectl_json(release.cluster, "get", "federations", "-n", ns)["items"],
            log=op.logs,
        )
        op.stop()
