"""What is a Federation's own (controller ownerReference with its uid), and its derived Ray token."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from red_operator import conditions as C
from red_operator import ownership, tokens
from red_operator.decide import Plan
from red_operator.readiness import observe_cluster
from red_operator.sizing import size_cluster
from red_operator.status import Blocked, Observed, fold

from tests.operator.helpers import spec

UID = "0123abcd-4567-89ef-0000-000000000000"
OTHER = "99999999-0000-0000-0000-000000000000"


def obj(*refs: dict[str, Any], name: str = "x") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns", "ownerReferences": list(refs)}}


def ref(uid: str, *, kind: str = "Federation", controller: bool = True, name: str = "fl") -> dict[str, Any]:
    return {"apiVersion": "red.dev/v1alpha1", "kind": kind, "name": name, "uid": uid, "controller": controller}


@pytest.mark.parametrize(
    ("o", "owned"),
    [
        (obj(ref(UID)), True),
        (obj(), False),  # a look-alike: our name, no owner
        (obj(ref(OTHER)), False),  # another Federation's
        (obj(ref(UID, controller=False)), False),  # merely an owner, not the controller
        (obj(ref(UID, kind="RayJob")), False),  # same uid, other kind: not a Federation
        (obj(ref(OTHER, controller=False), ref(UID)), True),
        ({"metadata": {"name": "x"}}, False),
    ],
)
def test_is_owned(o: dict[str, Any], owned: bool) -> None:
    assert ownership.is_owned(o, UID) is owned


def test_conflict_message_names_the_object_and_the_way_out() -> None:
    msg = ownership.conflict_message("ServiceAccount", "ns", "fl-engine", obj())
    assert "ServiceAccount ns/fl-engine" in msg and "no controller ownerReference" in msg
    assert "neither uses nor deletes" in msg
    assert "controlled by Federation other" in ownership.conflict_message(
        "ConfigMap", "ns", "fl-report", obj(ref(OTHER, name="other"))
    )


@pytest.mark.parametrize(
    ("o", "refused"),
    [
        (obj(name="shared"), False),  # created by a person: may be borrowed
        (obj(ref(OTHER, kind="RayService"), name="shared"), False),
        (obj(ref(UID), name="shared"), False),  # our own
        (obj(ref(OTHER, name="victim"), name="victim-ray"), True),  # another Federation's: its token
    ],
)
def test_borrow_refusal(o: dict[str, Any], refused: bool) -> None:
    why = ownership.borrow_refusal(o, UID)
    assert (why is not None) is refused
    if why:
        assert "Federation victim" in why and "existingCluster" in why


def test_token_is_hmac_of_uid_stable_and_distinct() -> None:
    key = b"k" * 32
    t = tokens.derive(key, UID)
    assert t == tokens.derive(key, UID) and len(t) == 64
    assert t != tokens.derive(key, OTHER)
    assert t != tokens.derive(b"j" * 32, UID)
    # Known answer, so the derivation cannot drift silently (running clusters hold these tokens).
    assert t == hmac.new(key, f"red.dev/ray-token/{UID}".encode(), hashlib.sha256).hexdigest()


def test_token_key_must_exist_and_be_long(tmp_path: Path) -> None:
    with pytest.raises(tokens.TokenKeyError, match="cannot read"):
        tokens.load_key(tmp_path / "missing")
    short = tmp_path / "short"
    short.write_text("abc\n")
    with pytest.raises(tokens.TokenKeyError, match="at least 32"):
        tokens.load_key(short)
    good = tmp_path / "good"
    good.write_text("x" * 40 + "\n")
    assert tokens.load_key(good) == b"x" * 40


@pytest.mark.parametrize("reason", ["NameConflict", "ClusterNotBorrowable", "AuthNotEnforced", "TokenNotReadable"])
def test_a_refusal_is_stalled_with_its_reason_and_submits_nothing(reason: str) -> None:
    s = spec(clients=2, rounds=5)
    status = fold(
        {},
        Observed(
            generation=1,
            now=datetime(2026, 1, 1, tzinfo=UTC),
            spec=s,
            sizing=size_cluster(s),
            cluster_name="fl-ray",
            cluster=observe_cluster(None, []),
            plan=Plan("leave", "none", 0, False, 0, why=reason),
            blocked=Blocked(reason, "ConfigMap ns/fl-report already exists"),
        ),
    )
    conds = {c["type"]: c for c in status["conditions"]}
    assert (conds[C.STALLED]["status"], conds[C.STALLED]["reason"]) == ("True", reason)
    assert "ConfigMap ns/fl-report" in conds[C.STALLED]["message"]
    assert (conds[C.JOB_SUBMITTED]["status"], conds[C.JOB_SUBMITTED]["reason"]) == ("False", reason)
    assert (conds[C.CLUSTER_READY]["status"], conds[C.CLUSTER_READY]["reason"]) == ("False", reason)
    assert conds[C.RECONCILING]["status"] == "False" and conds[C.READY]["status"] == "False"
    assert status["phase"] == "Pending" and "job" not in status
    assert C.is_bad_news(conds[C.STALLED])  # posted as a Warning event
