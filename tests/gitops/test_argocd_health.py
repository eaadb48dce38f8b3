"""The Argo CD health check (gitops/argocd/health.lua), run by a real Lua 5.1 interpreter (Argo CD's
gopher-lua speaks 5.1) against Federation statuses — some written by the operator's own `status.fold`."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import lupa.lua51 as lupa
import pytest
import yaml
from red_operator import status as status_mod

from tests.helpers import make_fed

REPO = Path(__file__).resolve().parents[2]
HEALTH_LUA = REPO / "gitops" / "argocd" / "health.lua"
NOW = datetime(2026, 1, 1, tzinfo=UTC)


def health(obj: dict[str, Any]) -> dict[str, str]:
    """Evaluate the script like Argo CD does: `obj` is the live object, the script returns `hs`."""
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    check = lua.eval("function(obj)\n" + HEALTH_LUA.read_text() + "\nend")
    hs = check(lua.table_from(obj, recursive=True))
    return {"status": hs["status"], "message": hs["message"]}


def cond(type_: str, status: str, reason: str = "R", message: str = "m") -> dict[str, str]:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def fed(status: dict[str, Any] | None, generation: int = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "red.dev/v1alpha1",
        "kind": "Federation",
        "metadata": {"name": "f", "namespace": "ml", "generation": generation},
        "spec": {"schema": "star"},
    }
    if status is not None:
        obj["status"] = status
    return obj


def kstatus(phase: str, **true: bool) -> dict[str, Any]:
    """A status with every condition type the operator writes, True where asked."""
    types = ["Ready", "Succeeded", "Failed", "ClusterReady", "JobSubmitted", "NodesHealthy"]
    types += ["Degraded", "Suspended", "Stalled", "Reconciling"]
    return {
        "observedGeneration": 1,
        "phase": phase,
        "progress": "3/20",
        "conditions": [cond(t, "True" if true.get(t) else "False", reason=f"{t}Reason") for t in types],
    }


@pytest.mark.parametrize(
    ("status", "expected", "in_message"),
    [
        (None, "Progressing", "Waiting for the red-operator"),
        (kstatus("Pending", Reconciling=True), "Progressing", ""),
        (kstatus("Starting", Reconciling=True, JobSubmitted=True), "Progressing", ""),
        (kstatus("Running", Ready=True, ClusterReady=True, JobSubmitted=True), "Progressing", "round 3/20"),
        (kstatus("Running", Ready=True, Degraded=True), "Progressing", "DegradedReason"),
        (kstatus("Succeeded", Ready=True, Succeeded=True), "Healthy", "SucceededReason"),
        (kstatus("Failed", Failed=True), "Degraded", "FailedReason"),
        (kstatus("Running", Stalled=True), "Degraded", "StalledReason"),
        (kstatus("Suspended", Suspended=True), "Suspended", "SuspendedReason"),
        # Suspension wins over anything else the conditions say.
        (kstatus("Suspended", Suspended=True, Stalled=True), "Suspended", ""),
        # No conditions (an older operator): the phase decides.
        ({"phase": "Succeeded"}, "Healthy", "phase Succeeded"),
        ({"phase": "Failed"}, "Degraded", "phase Failed"),
        ({"phase": "Suspended"}, "Suspended", ""),
        ({"phase": "Running"}, "Progressing", "Running"),
        ({}, "Progressing", ""),
    ],
)
def test_health_of_status_samples(status: dict[str, Any] | None, expected: str, in_message: str) -> None:
    hs = health(fed(status))
    assert hs["status"] == expected
    assert in_message in hs["message"]


def test_a_status_of_an_older_generation_is_progressing() -> None:
    hs = health(fed(kstatus("Succeeded", Ready=True, Succeeded=True), generation=2))
    assert hs == {"status": "Progressing", "message": "Waiting for the red-operator to observe generation 2"}


def test_statuses_written_by_the_operators_own_fold() -> None:
    """Real statuses, from status.fold: a brand-new federation and an invalid spec."""
    spec = make_fed("f").spec
    pending = status_mod.fold({}, status_mod.Observed(generation=1, now=NOW, spec=spec))
    assert health(fed(pending))["status"] == "Progressing"
    invalid = status_mod.fold(
        {}, status_mod.Observed(generation=1, now=NOW, spec=None, spec_error="spec.rounds: must be > 0")
    )
    hs = health(fed(invalid))
    assert hs["status"] == "Degraded"
    assert "spec.rounds" in hs["message"]


def test_argocd_cm_snippet_carries_the_same_lua() -> None:
    cm = yaml.safe_load((REPO / "gitops" / "argocd" / "argocd-cm.yaml").read_text())
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["name"] == "argocd-cm"
    # Argo CD's key: resource.customizations.health.<group>_<kind>.
    assert cm["data"]["resource.customizations.health.red.dev_Federation"] == HEALTH_LUA.read_text()


def test_gitops_examples_parse() -> None:
    for path in (REPO / "gitops").rglob("*.yaml"):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert docs and all("apiVersion" in d and "kind" in d for d in docs), path
