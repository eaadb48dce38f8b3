"""Which objects are a Federation's own. Pure.

The rule: an object is ours only when it carries this Federation's *controller* ownerReference (the
Federation's uid, `controller: true`). A name alone proves nothing: a ServiceAccount, Role, ConfigMap or
RayCluster that merely has the name the operator would give it belongs to someone else, and the
Federation neither uses nor deletes it. The one exception is `spec.cluster.existingCluster`: the named
RayCluster is used (never deleted) unless another Federation controls it (`borrow_refusal`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from red.spec.model import KIND


def controller(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The object's controller ownerReference, if any."""
    for ref in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def is_owned(obj: Mapping[str, Any], uid: str) -> bool:
    """True when `obj` is controlled by the Federation whose uid is `uid`."""
    ref = controller(obj)
    return ref is not None and ref.get("kind") == KIND and ref.get("uid") == uid


def conflict_message(kind: str, namespace: str, name: str, obj: Mapping[str, Any]) -> str:
    """Why a look-alike is not used, and how to resolve it."""
    ref = controller(obj)
    owner = f"controlled by {ref.get('kind')} {ref.get('name')}" if ref else "with no controller ownerReference"
    return (
        f"{kind} {namespace}/{name} already exists, {owner}: it is not this Federation's, so the "
        f"Federation neither uses nor deletes it. Delete or rename that {kind}, or give the Federation "
        "another name."
    )


def borrow_refusal(rc: Mapping[str, Any], uid: str) -> str | None:
    """Why an `existingCluster` may not be borrowed: a RayCluster controlled by another Federation runs
    with that Federation's token, and borrowing it would hand the token over. None when it may be used."""
    ref = controller(rc)
    if ref is None or ref.get("kind") != KIND or ref.get("uid") == uid:
        return None
    meta = rc.get("metadata") or {}
    return (
        f"RayCluster {meta.get('namespace')}/{meta.get('name')} belongs to Federation {ref.get('name')}: a "
        "Federation's cluster is never lent (its token belongs to that Federation). Name a RayCluster you "
        "created yourself in spec.cluster.existingCluster, or remove the field to get a cluster of its own."
    )
