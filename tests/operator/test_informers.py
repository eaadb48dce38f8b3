"""Informers and the cache-backed reader on a real API server: server-side label selection, changes
delivered, deletions seen; RayClusters and Ray pods read from the caches."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from red_operator import names
from red_operator.cached_kube import RAY_CLUSTER_LABEL, CachedKube, Caches
from red_operator.informers import Informer, core_source

from tests.cluster.test_harness_smoke import raycluster_manifest
from tests.fixtures.cluster import KubeCluster
from tests.operator.e2e_helpers import wait_until

pytestmark = [pytest.mark.cluster]


def configmap(name: str, fed: str | None, data: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if fed:
        meta["labels"] = {names.LABEL_FEDERATION: fed}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {}}


def apply(cluster: KubeCluster, namespace: str, obj: dict[str, Any]) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(obj))


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, bool]] = []
        self.lock = threading.Lock()

    def __call__(self, obj: dict[str, Any], deleted: bool) -> None:
        with self.lock:
            self.events.append((obj["metadata"]["name"], deleted))

    def saw(self, name: str, deleted: bool = False) -> bool:
        with self.lock:
            return (name, deleted) in self.events


def test_informer_caches_only_labelled_objects_and_follows_changes(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    ns = kube_namespace
    apply(kube_cluster, ns, configmap("before", "f1", {"k": "1"}))  # exists before the first list
    rec = Recorder()
    with kube_cluster.api_client() as api:
        inf = Informer(
            "cm", core_source(api, "config_map"), namespaces=[ns], label_selector=names.LABEL_FEDERATION,
            on_change=rec,
        )
        inf.start()
        try:
            assert inf.wait_synced(30)
            assert inf.get(ns, "before") is not None and rec.saw("before")
            apply(kube_cluster, ns, configmap("theirs", None))  # not ours: never reaches the cache
            apply(kube_cluster, ns, configmap("ours", "f2", {"k": "1"}))
            wait_until("the new ConfigMap", lambda: inf.get(ns, "ours") is not None, timeout_s=30)
            apply(kube_cluster, ns, configmap("ours", "f2", {"k": "2"}))
            wait_until("the update", lambda: (inf.get(ns, "ours") or {}).get("data") == {"k": "2"}, timeout_s=30)
            kube_cluster.kubectl("delete", "configmap", "before", "-n", ns)
            wait_until("the deletion", lambda: rec.saw("before", deleted=True), timeout_s=30)
            assert inf.get(ns, "before") is None
            assert inf.get(ns, "theirs") is None and not rec.saw("theirs")
            assert [o["metadata"]["name"] for o in inf.select(ns, {names.LABEL_FEDERATION: "f2"})] == ["ours"]
            assert "managedFields" not in inf.get(ns, "ours")["metadata"]  # type: ignore[index]
        finally:
            inf.stop()


def pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeSelector": {"red.dev/pool": "nowhere"}, "containers": [{"name": "c", "image": "none"}]},
    }


def test_cached_reader_reads_rayclusters_and_pods_from_the_caches(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    ns = kube_namespace
    apply(kube_cluster, ns, pod("fed-ray-head", {names.LABEL_FEDERATION: "fed", RAY_CLUSTER_LABEL: "fed-ray"}))
    apply(kube_cluster, ns, pod("theirs", {RAY_CLUSTER_LABEL: "fed-ray"}))  # not labelled ours: never cached
    with kube_cluster.api_client() as api:
        caches = Caches(api, [ns])
        kube = CachedKube(api, caches)
        assert caches.start(30)
        try:
            rc = raycluster_manifest("fed-ray", workers=0)
            rc["metadata"]["labels"] = {names.LABEL_FEDERATION: "fed"}
            apply(kube_cluster, ns, rc)
            wait_until("the RayCluster in the cache", lambda: kube.get_raycluster(ns, "fed-ray"), timeout_s=30)
            assert kube.get("RayCluster", ns, "fed-ray") is not None  # the generic read goes to the cache too
            assert [p["metadata"]["name"] for p in kube.ray_pods(ns, "fed-ray")] == ["fed-ray-head"]
            assert kube.get_raycluster(ns, "missing") is None
            assert kube.ray_pods(ns, "missing") == []
            kube_cluster.kubectl("delete", "raycluster", "fed-ray", "-n", ns, "--wait=false")
            wait_until("the deletion", lambda: kube.get_raycluster(ns, "fed-ray") is None, timeout_s=30)
        finally:
            caches.stop()
