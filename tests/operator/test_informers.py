"""Informers and the cache-backed reader on a real API server: server-side label selection, changes
delivered, deletions seen."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from red_operator import names
from red_operator.cached_kube import CachedKube, Caches
from red_operator.informers import Informer, core_source

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


def test_cached_reader_reads_reports_and_pods_from_the_caches(kube_cluster: KubeCluster, kube_namespace: str) -> None:
    ns = kube_namespace
    report = {"round": 3, "nodes": []}
    apply(kube_cluster, ns, configmap(names.report_configmap("fed"), "fed", {names.REPORT_KEY: json.dumps(report)}))
    apply(kube_cluster, ns, configmap(names.report_configmap("bad"), "bad", {names.REPORT_KEY: "{not json"}))
    with kube_cluster.api_client() as api:
        caches = Caches(api, [ns])
        kube = CachedKube(api, caches)
        assert caches.start(30)
        try:
            assert kube.read_report(ns, names.report_configmap("fed")) == report
            assert kube.read_report(ns, names.report_configmap("bad")) is None  # half-written: no report
            assert kube.read_report(ns, "missing") is None
            assert kube.get_raycluster(ns, "missing") is None
            assert kube.ray_pods(ns, "missing") == []
        finally:
            caches.stop()
