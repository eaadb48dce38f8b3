"""`Kube` whose reads come from informers' caches: a pass over a finished Federation sends no request.

The reconciler calls the same methods as on `Kube`; only these differ:

* `get_raycluster` (and `get("RayCluster", ...)`) and `ray_pods` read the caches: all RayClusters, and
  the Ray pods labelled `red.dev/federation`. Pods of a borrowed cluster (`existingCluster`, not
  labelled ours) are listed from the API server, and only while that cluster is not ready.
* `create`/`delete` of a RayCluster write through to the cache, so the pass right after ours does not
  act on a cache the watch has not caught up with yet.
* `patch_status` hands the written Federation to `on_status_written`, whose resourceVersion lets the
  controller ignore the watch event of its own write.

Not cached, on purpose: the report ConfigMap is read with one GET per pass, and only while a job is
submitted and not finished (its watch would need `list`/`watch` on every ConfigMap of the cluster, see
`rbac`); Secrets are never read (tokens are derived, `tokens`), except a borrowed cluster's, whose
owner grants `get` on that one Secret.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client

from red.spec.model import GROUP, PLURAL, VERSION
from red_operator import names
from red_operator.informers import Informer, OnChange, core_source, custom_source
from red_operator.kube import RAY_GROUP, RAY_PLURAL, RAY_VERSION, Kube, merge_patch

RAY_CLUSTER_LABEL = "ray.io/cluster"


class Caches:
    """The informers the reconciler reads from. `on_change(kind, obj, deleted)` hears every change;
    set it before `start`."""

    def __init__(self, api: client.ApiClient, namespaces: list[str] | None) -> None:
        self.on_change: Callable[[str, dict[str, Any], bool], None] | None = None
        # All RayClusters (not only ours): a Federation may borrow one (`existingCluster`). RayClusters
        # are few and small; pods are many, so those are filtered by the API server (label "exists").
        self.rayclusters = Informer(
            "rayclusters",
            custom_source(api, RAY_GROUP, RAY_VERSION, RAY_PLURAL),
            namespaces=namespaces,
            on_change=self._dispatch("RayCluster"),
        )
        self.pods = Informer(
            "pods",
            core_source(api, "pod"),
            namespaces=namespaces,
            label_selector=names.LABEL_FEDERATION,
            on_change=self._dispatch("Pod"),
        )
        self.all = (self.rayclusters, self.pods)

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
        timeout_seconds: float = 30.0,
        on_status_written: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__(api, timeout_seconds)
        self.caches = caches
        self.on_status_written = on_status_written

    # --- reads from the caches --------------------------------------------------------------------
    def get_raycluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self.caches.rayclusters.get(namespace, name)

    def ray_pods(self, namespace: str, cluster: str) -> list[dict[str, Any]]:
        rc = self.caches.rayclusters.get(namespace, cluster)
        if rc is not None and names.LABEL_FEDERATION not in (rc["metadata"].get("labels") or {}):
            return super().ray_pods(namespace, cluster)  # borrowed: its pods are not in our cache
        return self.caches.pods.select(namespace, {RAY_CLUSTER_LABEL: cluster})

    # --- writes that the caches must see at once --------------------------------------------------
    def create(self, obj: dict[str, Any]) -> bool:
        created = super().create(obj)
        if created and obj["kind"] == "RayCluster":
            self.caches.rayclusters.put_if_absent(obj)
        return created

    def delete(self, kind: str, namespace: str, name: str, *, uid: str | None = None) -> bool:
        deleted = super().delete(kind, namespace, name, uid=uid)
        if kind == "RayCluster" and deleted:
            self.caches.rayclusters.forget(namespace, name)
        return deleted

    def patch_status(self, namespace: str, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        body = {"status": merge_patch(old, new)}
        written: dict[str, Any] = self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURAL, name, body
        )
        if self.on_status_written is not None:
            self.on_status_written(written)
