"""The CRD is generated from the spec model; the checked-in file must match the generator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from red.spec import crd

REPO = Path(__file__).resolve().parents[2]


def test_checked_in_crd_matches_the_generator() -> None:
    on_disk = (REPO / "crds" / "federation.yaml").read_text()
    assert on_disk == crd.render(), "crds/federation.yaml drifted: run `python -m red.spec.crd > crds/federation.yaml`"


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(node, dict):
        out.append((path, node))
        for k, v in node.get("properties", {}).items():
            out.extend(_walk(v, f"{path}.{k}"))
        if isinstance(node.get("items"), dict):
            out.extend(_walk(node["items"], f"{path}[]"))
        if isinstance(node.get("additionalProperties"), dict):
            out.extend(_walk(node["additionalProperties"], f"{path}{{}}"))
    return out


def test_schema_is_structural() -> None:
    schema = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
        assert "type" in node, f"{path} has no type (not structural)"
        if node["type"] == "object" and "properties" not in node and "additionalProperties" not in node:
            assert node.get("x-kubernetes-preserve-unknown-fields") or path == ".metadata", path
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True, path


def test_names_columns_and_subresource() -> None:
    spec = crd.build_crd()["spec"]
    assert spec["group"] == "red.dev"
    assert spec["names"]["plural"] == "federations"
    assert spec["names"]["shortNames"] == ["fed"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c.get("priority", 0) for c in version["additionalPrinterColumns"]}
    default = ["Phase", "Ready", "Round", "Nodes", "Accuracy", "Age"]
    assert [name for name, prio in columns.items() if prio == 0] == default
    # `kubectl get fed -o wide` adds these.
    assert [name for name, prio in columns.items() if prio == 1] == ["Reason", "RayCluster", "Job", "Checkpoint"]


def test_cel_rules_cover_cross_field_and_immutable_fields() -> None:
    schema = crd.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    spec_rules = " ".join(r["rule"] for r in schema["properties"]["spec"]["x-kubernetes-validations"])
    assert "self.minClients <=" in spec_rules
    assert "k-regular" in spec_rules and "custom" in spec_rules
    root = schema["x-kubernetes-validations"]
    immutable = [r for r in root if "oldSelf" in r["rule"]]
    assert {r["message"].split()[0] for r in immutable} == {f"spec.{f}" for f in crd.IMMUTABLE_WHILE_ACTIVE}


def test_no_embedded_pod_template() -> None:
    text = crd.render()
    assert "containers" not in text and "PodTemplateSpec" not in text
    # Pod shaping (head and pools) names Kubernetes' volume sources and keeps their bodies as given; the
    # whole stays far below client-side apply's 262,144-byte annotation limit (KubeRay's CRD is ~930 KB).
    assert len(text) < 100_000


def test_generator_does_not_import_kubernetes() -> None:
    import subprocess
    import sys

    code = "import sys, red.spec.crd; print('kubernetes' in sys.modules or 'kopf' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_status_schema_is_generated_from_the_status_model() -> None:
    """One source for the status shape: every model field is in the CRD, nothing else, and only the
    fields the model declares nullable may be null (null deletes a key in a merge patch)."""
    from red.spec.federation_status import NULLABLE, FederationStatus

    schema = crd.status_schema()
    assert set(schema["properties"]) == {f.alias or n for n, f in FederationStatus.model_fields.items()}
    assert schema["properties"]["rayCluster"]["properties"]["dashboardURL"] == {"type": "string"}
    assert schema["properties"]["conditions"]["x-kubernetes-list-map-keys"] == ["type"]
    nullable = {p.rsplit(".", 1)[-1].rstrip("[]") for p, n in _walk(schema) if n.get("nullable")}
    assert nullable == set(NULLABLE)
