"""Names and labels of the objects a Federation owns. Everything derives from the Federation's name."""

from __future__ import annotations

from typing import Any

from red.spec.model import API_VERSION, KIND

GROUP_PREFIX = "red.dev"
FINALIZER = f"{GROUP_PREFIX}/finalizer"
LABEL_FEDERATION = f"{GROUP_PREFIX}/federation"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "red-operator"
TOKEN_KEY = "auth_token"  # the key KubeRay's authOptions.secretName expects
REPORT_KEY = "report"


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


def labels(fed: str) -> dict[str, str]:
    return {LABEL_FEDERATION: fed, LABEL_MANAGED_BY: MANAGER}


def owner_reference(fed: str, uid: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": fed,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
