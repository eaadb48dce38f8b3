"""Helpers for the operator's tests on the real control plane."""

from __future__ import annotations

import contextlib
import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.fixtures.cluster import KubeCluster, kubectl_json
from tests.helpers import wait_until as wait_until  # re-exported for the e2e tests

REPO = Path(__file__).resolve().parents[2]


def federation(name: str, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schema": "star",
        "rounds": 4,
        "clients": 3,
        "task": {"name": "digits", "params": {"epochs": 1, "lr": 0.2}},
        "resources": {"perNode": {"cpu": 0.1}, "broker": {"cpu": 0.1}},
        "faultTolerance": {"heartbeatSeconds": 2},
        "cluster": {
            "nodePools": [
                {
                    "name": "gpu",
                    "gpusPerWorker": 1,
                    "minWorkers": 1,
                    "maxWorkers": 1,
                    "nodeSelector": {"nvidia.com/gpu.present": "true"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                }
            ]
        },
    }
    base.update(spec)
    return {"apiVersion": "red.dev/v1alpha1", "kind": "Federation", "metadata": {"name": name}, "spec": base}


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "examples" / name).read_text())
    return data


def apply(cluster: KubeCluster, namespace: str, obj: dict[str, Any], check: bool = True) -> Any:
    return cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj), check=check)


def get_fed(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    obj: dict[str, Any] = kubectl_json(cluster, "get", "federation", name, "-n", namespace)
    return obj


def status(cluster: KubeCluster, namespace: str, name: str) -> dict[str, Any]:
    st: dict[str, Any] = get_fed(cluster, namespace, name).get("status") or {}
    return st


def condition(st: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in st.get("conditions") or [] if c["type"] == type_), {})


def events(cluster: KubeCluster, namespace: str, name: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl_json(
        cluster, "get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}"
    )["items"]
    return items


@contextlib.contextmanager
def status_watch(cluster: KubeCluster, namespace: str, name: str) -> Iterator[list[tuple[str, int]]]:
    """Every (phase, round) the Federation's status held while the block ran, in order, from a watch:
    polling can miss the rounds of a short run altogether."""
    seen: list[tuple[str, int]] = []
    template = '{.status.phase} {.status.round}{"\\n"}'
    proc = subprocess.Popen(
        [str(cluster.bin_dir / "kubectl"), "--kubeconfig", str(cluster.kubeconfig), "get", "federation", name,
         "-n", namespace, "--watch", "-o", f"jsonpath={template}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            phase, _, round_ = line.strip().partition(" ")
            seen.append((phase, int(round_ or 0)))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        yield seen
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        reader.join(timeout=10)
