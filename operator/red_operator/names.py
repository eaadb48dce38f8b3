"""Names and labels of the objects a Federation owns. Everything derives from the Federation's name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from red._version import __version__
from red.spec.model import API_VERSION, KIND

GROUP_PREFIX = "red.dev"
FINALIZER = f"{GROUP_PREFIX}/finalizer"
LABEL_FEDERATION = f"{GROUP_PREFIX}/federation"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "red-operator"
APP = "red"

# app.kubernetes.io/component of each kind of owned object (the recommended labels' "role in the app").
COMPONENT_RAYCLUSTER = "ray-cluster"
COMPONENT_RAY_HEAD = "ray-head"
COMPONENT_RAY_WORKER = "ray-worker"
COMPONENT_TOKEN = "ray-token"
COMPONENT_REPORT = "report"
COMPONENT_ENGINE = "engine"  # the engine's ServiceAccount, Role and RoleBinding
TOKEN_KEY = "auth_token"  # the key KubeRay's authOptions.secretName expects
REPORT_KEY = "report"


@dataclass(frozen=True)
class FederationRef:
    """Which Federation: everything a reconcile pass or a deletion names derives from these three."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> FederationRef:
        meta = body["metadata"]
        return cls(meta["name"], meta["namespace"], str(meta.get("uid") or ""))

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def raycluster(fed: str) -> str:
    return f"{fed}-ray"


def token_secret(fed: str, uid: str) -> str:
    """Carries the Federation's uid: no object made before the Federation existed can have this name, so
    the operator (which may create Secrets but never read them) can take a Secret of this name as its own."""
    return f"{fed}-ray-token-{uid.replace('-', '')[:8]}"


def report_configmap(fed: str) -> str:
    return f"{fed}-report"


def engine_account(fed: str) -> str:
    """ServiceAccount, Role and RoleBinding of the engine job share this name."""
    return f"{fed}-engine"


def submission_id(fed: str, uid: str, attempt: int) -> str:
    """Deterministic: the same Federation and attempt always give the same id, so a restarted operator
    finds the job it submitted instead of submitting a second one."""
    return f"red-{fed}-{uid.replace('-', '')[:8]}-{attempt}"


def labels(fed: str, component: str) -> dict[str, str]:
    """Kubernetes' recommended `app.kubernetes.io/*` set, plus the Federation's name under red.dev/.

    `instance` is the Federation (one app instance per Federation), `name`/`part-of` the application,
    `component` the object's role in it, `version` the Red release that created it.
    """
    return {
        "app.kubernetes.io/name": APP,
        "app.kubernetes.io/instance": fed,
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": APP,
        LABEL_MANAGED_BY: MANAGER,
        "app.kubernetes.io/version": __version__,
        LABEL_FEDERATION: fed,
    }


def owner_reference(fed: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": fed,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
