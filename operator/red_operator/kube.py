"""Thin helpers over the Kubernetes API client. Objects go in and come out as plain camelCase dicts."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from red.spec.model import GROUP, PLURAL, VERSION
from red_operator import names

RAY_GROUP, RAY_VERSION, RAY_PLURAL = "ray.io", "v1", "rayclusters"


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) turning `old` into `new`: removed keys become null, nested maps are
    patched key by key (so a metric that was dropped really goes), lists are replaced whole."""
    out: dict[str, Any] = {k: None for k in old if k not in new}
    for k, v in new.items():
        before = old.get(k)
        out[k] = merge_patch(before, v) if isinstance(before, dict) and isinstance(v, dict) else v
    return out


class _Timed:
    """An API class whose every call has a timeout (no call may hang a reconcile) and whose errors
    name the call (`err.red_call`), so a condition can say which one the API server refused."""

    def __init__(self, api: Any, timeout_seconds: float) -> None:
        self._api, self._timeout = api, timeout_seconds

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._api, name)
        if not callable(fn):
            return fn

        def call(*args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("_request_timeout", self._timeout)
            try:
                return fn(*args, **kwargs)
            except Exception as err:  # an API error, a timeout: say which call it was, then re-raise
                with contextlib.suppress(AttributeError):
                    err.red_call = name  # type: ignore[attr-defined]
                raise

        return call


class Kube:
    """The calls the reconciler makes, nothing more (see red_operator.rbac for the matching rules)."""

    def __init__(self, api: client.ApiClient, timeout_seconds: float = 30.0) -> None:
        self.api = api
        # Typed as Any: we pass and get plain dicts, not the client's model classes.
        self.core: Any = _Timed(client.CoreV1Api(api), timeout_seconds)
        self.rbac: Any = _Timed(client.RbacAuthorizationV1Api(api), timeout_seconds)
        self.custom: Any = _Timed(client.CustomObjectsApi(api), timeout_seconds)

    # --- generic ----------------------------------------------------------------------------------
    def create(self, obj: dict[str, Any]) -> bool:
        """Create `obj` unless it exists. True when this call created it."""
        kind, ns = obj["kind"], obj["metadata"]["namespace"]
        try:
            if kind == "Secret":
                self.core.create_namespaced_secret(ns, obj)
            elif kind == "ConfigMap":
                self.core.create_namespaced_config_map(ns, obj)
            elif kind == "ServiceAccount":
                self.core.create_namespaced_service_account(ns, obj)
            elif kind == "Role":
                self.rbac.create_namespaced_role(ns, obj)
            elif kind == "RoleBinding":
                self.rbac.create_namespaced_role_binding(ns, obj)
            elif kind == "RayCluster":
                self.custom.create_namespaced_custom_object(RAY_GROUP, RAY_VERSION, ns, RAY_PLURAL, obj)
            else:
                raise ValueError(f"kube.create does not handle kind {kind}")
        except ApiException as err:
            if err.status == 409:
                return False
            raise
        return True

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object as a plain dict, or None when absent. Not for Secrets: the operator reads none."""
        calls = {
            "ConfigMap": self.core.read_namespaced_config_map,
            "ServiceAccount": self.core.read_namespaced_service_account,
            "Role": self.rbac.read_namespaced_role,
            "RoleBinding": self.rbac.read_namespaced_role_binding,
        }
        if kind == "RayCluster":
            return self.get_raycluster(namespace, name)
        try:
            obj: dict[str, Any] = self._raw(calls[kind], name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        return obj

    def delete(self, kind: str, namespace: str, name: str, *, uid: str | None = None) -> bool:
        """Delete, ignoring absence. True when something was deleted. With `uid`, only that very object
        (a precondition): one that was replaced meanwhile by someone else's is left alone."""
        calls = {
            "Secret": self.core.delete_namespaced_secret,
            "ConfigMap": self.core.delete_namespaced_config_map,
            "ServiceAccount": self.core.delete_namespaced_service_account,
            "Role": self.rbac.delete_namespaced_role,
            "RoleBinding": self.rbac.delete_namespaced_role_binding,
        }
        body = {"preconditions": {"uid": uid}} if uid else None
        try:
            if kind == "RayCluster":
                self.custom.delete_namespaced_custom_object(
                    RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL, name, propagation_policy="Background", body=body
                )
            else:
                calls[kind](name, namespace, body=body)
        except ApiException as err:
            if err.status == 404 or (uid and err.status == 409):
                return False
            raise
        return True

    def _raw(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """Call with `_preload_content=False` and parse JSON: plain camelCase dicts, no model classes."""
        resp = method(*args, _preload_content=False, **kwargs)
        return json.loads(resp.data)

    # --- reads ------------------------------------------------------------------------------------
    def get_raycluster(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
                RAY_GROUP, RAY_VERSION, namespace, RAY_PLURAL, name
            )
            return obj
        except ApiException as err:
            if err.status == 404:
                return None
            raise

    def ray_pods(self, namespace: str, cluster: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self._raw(
            self.core.list_namespaced_pod, namespace, label_selector=f"ray.io/cluster={cluster}"
        )["items"]
        return items

    def read_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        import base64

        try:
            secret = self.core.read_namespaced_secret(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        raw = (secret.data or {}).get(key)
        return base64.b64decode(raw).decode() if raw else None

    def read_report(self, namespace: str, name: str) -> str | None:
        """The report ConfigMap's raw text: untrusted, parsed by `red.spec.status.parse_report`."""
        try:
            cm = self.core.read_namespaced_config_map(name, namespace)
        except ApiException as err:
            if err.status == 404:
                return None
            raise
        text = (cm.data or {}).get(names.REPORT_KEY)
        return str(text) if text else None

    # --- Federation status ------------------------------------------------------------------------
    def patch_status(self, namespace: str, name: str, old: dict[str, Any], new: dict[str, Any]) -> None:
        """Merge-patch the status subresource; keys that disappeared, at any depth, are removed."""
        body = {"status": merge_patch(old, new)}
        self.custom.patch_namespaced_custom_object_status(GROUP, VERSION, namespace, PLURAL, name, body)

    # --- engine credentials for out-of-cluster runs -----------------------------------------------
    def write_engine_kubeconfig(self, directory: Path, namespace: str, account: str, *, seconds: int = 86400) -> Path:
        """A kubeconfig for `account` (token from the TokenRequest API), readable by this user only.
        Only its path is handed to the job; the token never leaves the file."""
        tr = self.core.create_namespaced_service_account_token(
            account,
            namespace,
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "spec": {"expirationSeconds": seconds},
            },
        )
        cfg = self.api.configuration
        cluster: dict[str, Any] = {"server": cfg.host}
        if cfg.ssl_ca_cert:
            cluster["certificate-authority"] = str(Path(cfg.ssl_ca_cert).resolve())
        elif not cfg.verify_ssl:
            cluster["insecure-skip-tls-verify"] = True
        kubeconfig = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "red", "cluster": cluster}],
            "users": [{"name": account, "user": {"token": tr.status.token}}],
            "contexts": [{"name": "red", "context": {"cluster": "red", "user": account, "namespace": namespace}}],
            "current-context": "red",
        }
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{namespace}.{account}.kubeconfig"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(kubeconfig, fh)
        tmp.replace(path)
        return path
