"""`Kube` whose reads come from informers' caches: a reconcile pass that changes nothing costs no request.

The reconciler calls the same methods as on `Kube`; only these differ:

* `get_raycluster`, `ray_pods`, `read_report` read the caches (RayClusters, and the report ConfigMaps and
  Ray pods labelled `red.dev/federation`). Pods of a borrowed cluster (`existingCluster`, not labelled
  ours) are listed from the API server, and only while that cluster is not ready.
* `read_secret_value` remembers what it read: the token Secret never changes.
* `create`/`delete` of a RayCluster write through to the cache, so the pass right after ours does not
  act on a cache the watch has not caught up with yet.
* `patch_status` hands the written Federation to `on_status_written`, whose resourceVersion lets the
  controller ignore the watch event of its own write.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import client

from red.spec.model import GROUP, PLURAL, VERSION
from red_operator import names
from red_operator.informers import Informer, OnChange, core_source, custom_source
from red_operator.kube import RAY_GROUP, RAY_PLURAL, RAY_VERSION, Kube

RAY_CLUSTER_LABEL = "ray.io/cluster"


class Caches:
    """The three informers the reconciler reads from. `on_change(kind, obj, deleted)` hears every change;
    set it before `start`."""

    def __init__(self, api: client.ApiClient, namespaces: list[str] | None) -> None:
        self.on_change: Callable[[str, dict[str, Any], bool], None] | None = None
        ours = names.LABEL_FEDERATION  # an "exists" selector: only objects a Federation owns
        # All RayClusters (not only ours): a Federation may borrow one (`existingCluster`). RayClusters
        # are few and small; pods and ConfigMaps are many, so those are filtered by the API server.
        self.rayclusters = Informer(
            "rayclusters",
            custom_source(api, RAY_GROUP, RAY_VERSION, RAY_PLURAL),
            namespaces=namespaces,
            on_change=self._dispatch("RayCluster"),
        )
        self.configmaps = Informer(
            "configmaps",
            core_source(api, "config_map"),
            namespaces=namespaces,
            label_selector=ours,
            on_change=self._dispatch("ConfigMap"),
        )
        self.pods = Informer(
            "pods",
            core_source(api, "pod"),
            namespaces=namespaces,
            label_selector=ours,
            on_change=self._dispatch("Pod"),
        )
        self.all = (self.rayclusters, self.configmaps, self.pods)

    def _dispatch(self, kind: str) -> OnChange:
        def call(obj: dict[str, Any], deleted: bool) -> None:
            if self.on_change is not None:
                self.on_change(kind, obj, deleted)

        return call

    def start(self, timeout: float) -> bool:
        for inf in self.all:
            inf.start()
        return all(inf.wait_synced(timeout) for inf in self.all)

    def stop(self) -> None:
        for inf in self.all:
            inf.stop()


class CachedKube(Kube):
    def __init__(
        self,
        api: client.ApiClient,
        caches: Caches,
        on_status_written: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__(api)
        self.caches = caches
        self.on_status_written = on_status_written
        self._secrets: dict[tuple[str, str, str], str] = {}
        self._secrets_lock = threading.Lock()

    # --- reads from the caches --------------------------------------------------------------------
    def get_raycluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.caches.rayclusters.get(namespace, name)

    def ray_pods(self, namespace: str, cluster: str) -> list[dict[str, Any]]:
        rc = self.caches.rayclusters.get(namespace, cluster)
        if rc is not None and names.LABEL_FEDERATION not in (rc["metadata"].get("labels") or {}):
            return super().ray_pods(namespace, cluster)  # borrowed: its pods are not in our cache
        return self.caches.pods.select(namespace, {RAY_CLUSTER_LABEL: cluster})

    def read_report(self, namespace: str, name: str) -> dict[str, Any] | None:
        cm = self.caches.configmaps.get(namespace, name)
        text = ((cm or {}).get("data") or {}).get(names.REPORT_KEY)
        if not text:
            return None
        try:
            report: dict[str, Any] = json.loads(text)
        except ValueError:
            return None
        return report

    def read_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        with self._secrets_lock:
            if (namespace, name, key) in self._secrets:
                return self._secrets[(namespace, name, key)]
        value = super().read_secret_value(namespace, name, key)
        if value is not None:
            with self._secrets_lock:
                self._secrets[(namespace, name, key)] = value
        return value

    def forget_secrets(self, namespace: str, prefix: str) -> None:
        with self._secrets_lock:
            for k in [k for k in self._secrets if k[0] == namespace and k[1].startswith(prefix)]:
                del self._secrets[k]

    # --- writes that the caches must see at once --------------------------------------------------
    def create(self, obj: dict[str, Any]) -> bool:
        created = super().create(obj)
        if created and obj["kind"] == "RayCluster":
            self.caches.rayclusters.put_if_absent(obj)
        return created

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        deleted = super().delete(kind, namespace, name)
        if kind == "RayCluster":
            self.caches.rayclusters.forget(namespace, name)
        return deleted

    def patch_status(self, namespace: str, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        body = {"status": {**{k: None for k in old if k not in new}, **new}}
        written: dict[str, Any] = self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, body
        )
        if self.on_status_written is not None:
            self.on_status_written(written)
