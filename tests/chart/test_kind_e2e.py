"""e2e/kind cannot run here (no Docker engine): validate what can be — the script's syntax and lint,
the kind config, and the manifests it applies (against Red's spec model, and server-side against the
Federation CRD on the harness's API server)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from red.spec import federation_from_dict
from tests.chart.tools import REPO, tool
from tests.fixtures.cluster import KubeCluster

KIND = REPO / "e2e" / "kind"
RUN = KIND / "run.sh"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as `kubectl patch --type merge` applies it."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def test_run_script_parses_and_is_shellcheck_clean() -> None:
    subprocess.run(["bash", "-n", str(RUN)], check=True)
    lint = subprocess.run(
        [tool("shellcheck"), "-x", "--severity=style", str(RUN)], capture_output=True, text=True, cwd=KIND
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert os.access(RUN, os.X_OK)


def test_kind_config_is_a_kind_cluster_with_the_patched_pool() -> None:
    cfg = yaml.safe_load((KIND / "kind-config.yaml").read_text())
    assert (cfg["apiVersion"], cfg["kind"]) == ("kind.x-k8s.io/v1alpha4", "Cluster")
    roles = [n["role"] for n in cfg["nodes"]]
    assert roles.count("control-plane") == 1 and "worker" in roles
    patch = yaml.safe_load((KIND / "kind-federation-patch.yaml").read_text())
    (pool,) = patch["spec"]["cluster"]["nodePools"]
    worker_labels = [n.get("labels", {}) for n in cfg["nodes"] if n["role"] == "worker"]
    assert all(pool["nodeSelector"].items() <= labels.items() for labels in worker_labels)
    assert pool["gpusPerWorker"] == 0, "kind has no GPUs"


def test_script_uses_the_dockerfile_targets_and_pinned_kuberay() -> None:
    text = RUN.read_text()
    dockerfile = (REPO / "Dockerfile").read_text()
    for target in re.findall(r"docker build --target (\S+)", text):
        assert re.search(rf"^FROM \S+ AS {target}$", dockerfile, flags=re.M), target
    assert "KUBERAY_VERSION#v" in text and 'source "${REPO}/e2e/versions.env"' in text
    # Failure-aware: waits for the end (completionTime, set on Succeeded and Failed), then checks the phase.
    assert "--for=jsonpath='{.status.completionTime}'" in text and "--for=condition=Succeeded" not in text
    assert "!= Succeeded" in text


def patched_examples() -> list[dict[str, Any]]:
    patch = yaml.safe_load((KIND / "kind-federation-patch.yaml").read_text())
    out = []
    for path in sorted((REPO / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Federation":
                out.append(merge_patch(doc, patch))
    return out


def test_patched_examples_are_valid_federations() -> None:
    feds = patched_examples()
    assert feds
    for doc in feds:
        fed = federation_from_dict(doc, source=doc["metadata"]["name"])
        assert fed.spec.cluster.image == "red-engine:dev"
        assert all(p.gpus_per_worker == 0 for p in fed.spec.cluster.node_pools)


@pytest.mark.cluster
def test_rendered_manifests_pass_server_side_dry_run(
    kube_cluster: KubeCluster, kube_namespace: str, tmp_path: Path
) -> None:
    # `run.sh render` uses kubectl's offline merge patch: the same objects as the Python merge above.
    env = {**os.environ, "PATH": f"{kube_cluster.bin_dir}:{os.environ['PATH']}", "KUBECONFIG": "/dev/null"}
    out = subprocess.run([str(RUN), "render"], capture_output=True, text=True, env=env, check=True).stdout
    rendered = [d for d in yaml.safe_load_all(out) if d]
    assert rendered == patched_examples()
    kube_cluster.kubectl(
        "apply", "--server-side", "--force-conflicts", "-f", str(REPO / "charts/red-operator/crds/federation.yaml")
    )
    kube_cluster.kubectl("wait", "--for=condition=Established", "crd/federations.red.dev", "--timeout=60s")
    res = kube_cluster.kubectl("apply", "--dry-run=server", "--server-side", "-n", kube_namespace, "-f", "-", input=out)
    assert res.stdout.count("serverside-applied") == len(rendered), res.stdout
