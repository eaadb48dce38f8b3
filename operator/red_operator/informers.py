"""List+watch informers: a local cache of one kind of object, kept current by a watch.

What client-go's reflector does, for the few kinds the reconciler reads (RayClusters and the
Federations' Ray pods):

* one thread per namespace (or one for the whole cluster) lists, then watches from the list's
  resourceVersion; the label selector is sent to the API server, so objects that are not ours never
  reach this process;
* a watch that ends (server timeout) resumes from the last resourceVersion seen, bookmarks included;
  `410 Gone` (the version was compacted away) or any other error relists, and the relist's difference
  with the cache is delivered as changes, so no deletion is missed;
* every change calls `on_change(obj, deleted)` on the watch thread: keep it quick (queue a key).

Objects are plain camelCase dicts without `metadata.managedFields` (the bulk of a pod, and never read).
"""

from __future__ import annotations

import copy
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger(__name__)

Key = tuple[str, str]
"""(namespace, name)"""
OnChange = Callable[[dict[str, Any], bool], None]
# A list/watch call: (namespace or None for all, **query) -> an unread urllib3 response.
Source = Callable[..., Any]

LIST_PAGE = 500


class Gone(Exception):
    """The watch's resourceVersion is too old (HTTP 410): relist."""


def key_of(obj: dict[str, Any]) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace", ""), meta["name"]


def _slim(obj: dict[str, Any]) -> dict[str, Any]:
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


def custom_source(api: client.ApiClient, group: str, version: str, plural: str) -> Source:
    custom = client.CustomObjectsApi(api)

    def call(namespace: str | None, **query: Any) -> Any:
        if namespace is None:
            return custom.list_cluster_custom_object(group, version, plural, _preload_content=False, **query)
        return custom.list_namespaced_custom_object(group, version, namespace, plural, _preload_content=False, **query)

    return call


def core_source(api: client.ApiClient, kind: str) -> Source:
    """`kind` is "pod" or "config_map" (the CoreV1Api method stem)."""
    core = client.CoreV1Api(api)
    everywhere = getattr(core, f"list_{kind}_for_all_namespaces")
    namespaced = getattr(core, f"list_namespaced_{kind}")

    def call(namespace: str | None, **query: Any) -> Any:
        if namespace is None:
            return everywhere(_preload_content=False, **query)
        return namespaced(namespace, _preload_content=False, **query)

    return call


class Informer:
    def __init__(
        self,
        name: str,
        source: Source,
        *,
        namespaces: list[str] | None = None,
        label_selector: str | None = None,
        on_change: OnChange | None = None,
        watch_timeout_seconds: int = 300,
        retry_seconds: float = 1.0,
    ) -> None:
        self.name = name
        self._source = source
        self._scopes: list[str | None] = list(namespaces) if namespaces else [None]
        self._selector = label_selector
        self._on_change = on_change
        self._watch_timeout = watch_timeout_seconds
        self._retry = retry_seconds
        self._lock = threading.Lock()
        self._store: dict[Key, dict[str, Any]] = {}
        self._synced = {scope: threading.Event() for scope in self._scopes}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: dict[str | None, Any] = {}
        self.relists = 0
        """Lists made (the first ones included): a 410 or an error adds one."""

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        for scope in self._scopes:
            t = threading.Thread(target=self._run, args=(scope,), name=f"informer-{self.name}-{scope}", daemon=True)
            t.start()
            self._threads.append(t)

    def wait_synced(self, timeout: float) -> bool:
        return all(ev.wait(timeout) for ev in self._synced.values())

    def synced(self) -> bool:
        return all(ev.is_set() for ev in self._synced.values())

    def stop(self) -> None:
        self._stop.set()
        # Closing a watch stream unblocks the thread reading it, but the close itself can wait for that
        # read to return (the buffered reader's lock is held while it blocks in recv: up to the watch's
        # timeout), and a shutdown that hangs here never releases the leader Lease. So close on the side.
        for resp in list(self._responses.values()):
            threading.Thread(target=_close_quietly, args=(resp,), name="watch-close", daemon=True).start()
        deadline = time.monotonic() + 2  # all together (daemons): shutdown must end in time to release the Lease
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))

    # --- the cache --------------------------------------------------------------------------------
    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            obj = self._store.get((namespace, name))
            return copy.deepcopy(obj) if obj is not None else None

    def select(self, namespace: str, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Objects in `namespace` whose labels include `labels`."""
        want = (labels or {}).items()
        with self._lock:
            return [
                copy.deepcopy(o)
                for (ns, _), o in self._store.items()
                if ns == namespace and want <= (o["metadata"].get("labels") or {}).items()
            ]

    def keys(self) -> list[Key]:
        with self._lock:
            return list(self._store)

    def put_if_absent(self, obj: dict[str, Any]) -> None:
        """Write-through after our own create: the next pass must not create it again before the watch
        delivers it. The watch's copy (with a resourceVersion) replaces this one."""
        with self._lock:
            self._store.setdefault(key_of(obj), _slim(copy.deepcopy(obj)))

    def forget(self, namespace: str, name: str) -> None:
        """Write-through after our own delete."""
        with self._lock:
            self._store.pop((namespace, name), None)

    # --- list and watch ---------------------------------------------------------------------------
    def _run(self, scope: str | None) -> None:
        rv: str | None = None
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._relist(scope)
                    self._synced[scope].set()
                rv = self._watch(scope, rv)
            except Exception as err:  # the loop must survive anything the API says
                if self._stop.is_set():
                    return
                rv = None
                if isinstance(err, Gone) or (isinstance(err, ApiException) and err.status == 410):
                    log.info("informer %s (%s): resourceVersion too old, relisting", self.name, scope or "all")
                    continue
                log.warning("informer %s (%s): %s; relisting in %.0f s", self.name, scope or "all", err, self._retry)
                self._stop.wait(self._retry)

    def _query(self) -> dict[str, Any]:
        return {"label_selector": self._selector} if self._selector else {}

    def _relist(self, scope: str | None) -> str:
        items: dict[Key, dict[str, Any]] = {}
        token: str | None = None
        while True:
            query = {**self._query(), "limit": LIST_PAGE}
            if token:
                query["_continue"] = token
            page = json.loads(self._source(scope, **query).data)
            for obj in page.get("items") or []:
                items[key_of(obj)] = _slim(obj)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
        self.relists += 1
        changed: list[tuple[dict[str, Any], bool]] = []
        with self._lock:
            for k, gone in list(self._store.items()):
                if (scope is None or k[0] == scope) and k not in items:
                    del self._store[k]
                    changed.append((gone, True))
            for k, obj in items.items():
                old = self._store.get(k)
                if old is None or old["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                    changed.append((obj, False))
                self._store[k] = obj
        for obj, deleted in changed:
            self._notify(obj, deleted)
        return str(page["metadata"]["resourceVersion"])

    def _watch(self, scope: str | None, rv: str) -> str:
        resp = self._source(
            scope,
            watch=True,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=self._watch_timeout,
            _request_timeout=self._watch_timeout + 30,
            **self._query(),
        )
        self._responses[scope] = resp
        try:
            for event in self._events(resp):
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone()
                    raise RuntimeError(f"watch error: {obj.get('message') or obj}")
                rv = obj["metadata"]["resourceVersion"]
                if kind == "BOOKMARK":
                    continue
                deleted = kind == "DELETED"
                with self._lock:
                    if deleted:
                        self._store.pop(key_of(obj), None)
                    else:
                        self._store[key_of(obj)] = _slim(obj)
                self._notify(obj, deleted)
        finally:
            self._responses.pop(scope, None)
            resp.release_conn()
        return rv

    def _events(self, resp: Any) -> Iterator[dict[str, Any]]:
        for line in iter_resp_lines(resp):
            if self._stop.is_set():
                return
            yield json.loads(line)

    def _notify(self, obj: dict[str, Any], deleted: bool) -> None:
        if self._on_change is None:
            return
        try:
            self._on_change(obj, deleted)
        except Exception:  # a bad handler must not stop the watch
            log.exception("informer %s: on_change failed", self.name)


def _close_quietly(resp: Any) -> None:
    try:
        resp.close()
    except Exception:  # closing is best effort: the thread is a daemon and the process is ending
        pass
