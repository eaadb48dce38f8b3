"""Generate the Federation CustomResourceDefinition from the spec model.

    python -m red.spec.crd > crds/federation.yaml

The spec schema comes from `FederationSpec` (the model `red run` and the operator read), turned into a
*structural* OpenAPI v3 schema: `$ref`s inlined, `anyOf [X, null]` turned into `nullable`, free-form maps
marked `x-kubernetes-preserve-unknown-fields`. What JSON Schema cannot say (cross-field checks, fields
that may not change while a federation runs) becomes CEL `x-kubernetes-validations`, with messages that
name the field and the fix, like the model's own errors.

This module must not import kubernetes or kopf: the engine never does.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import yaml

from red.spec.model import (
    DNS_LABEL_PATTERN,
    GROUP,
    KIND,
    MAX_NAME_LENGTH,
    MAX_POOL_NAME_LENGTH,
    PLURAL,
    VERSION,
    FederationSpec,
)
from red.spec.status import Phase

SHORT_NAMES = ["fed"]
# Phases in which the fields below are frozen. Pending and finished federations may be edited.
ACTIVE_PHASES = (Phase.STARTING.value, Phase.RUNNING.value)
# Spec fields that may not change while a federation runs: the running engine (or its cluster) was
# started with them, so a change could not be applied and `observedGeneration` would lie. What stays
# editable is read by the operator on every pass: suspend, ttlSecondsAfterFinished, backoffLimit,
# stallTimeoutSeconds.
IMMUTABLE_WHILE_ACTIVE = (
    "schema",
    "clients",
    "minClients",
    "rounds",
    "sampleFraction",
    "roundDeadlineSeconds",
    "seed",
    "algorithm",
    "task",
    "topology",
    "resources",
    "checkpoint",
    "faultTolerance",
    "cluster",
)

_DROP_KEYS = {"title", "default"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline `$ref`s and rewrite JSON Schema into the OpenAPI v3 subset Kubernetes accepts."""
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**copy.deepcopy(target), **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        nullable = len(options) < len(node["anyOf"])
        if len(options) == 1:
            rest = {k: v for k, v in node.items() if k != "anyOf"}
            single: dict[str, Any] = _resolve({**options[0], **rest}, defs)
            if nullable:
                single["nullable"] = True
            return single
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP_KEYS or key == "$defs":
            continue
        if key == "exclusiveMinimum" and not isinstance(value, bool):
            out["minimum"] = value
            out["exclusiveMinimum"] = True
        elif key == "exclusiveMaximum" and not isinstance(value, bool):
            out["maximum"] = value
            out["exclusiveMaximum"] = True
        elif key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out["additionalProperties"] = _resolve(value, defs)
            # False: the structural default (unknown fields are rejected by kubectl, pruned otherwise).
        elif key == "properties":
            out["properties"] = {k: _resolve(v, defs) for k, v in value.items()}
        elif key in ("items",):
            out[key] = _resolve(value, defs)
        elif key == "prefixItems":
            continue
        else:
            out[key] = value
    if out.get("type") == "integer":
        out.setdefault("format", "int64")
    return out


def _default(field: str) -> Any:
    info = FederationSpec.model_fields[field]
    return info.default


def _spec_rules() -> list[dict[str, str]]:
    clients = f"(has(self.clients) ? self.clients : {_default('clients')})"
    schema = f"(has(self.schema) ? self.schema : '{_default('schema_')}')"
    degree = "self.topology.degree"
    return [
        {
            "rule": f"!has(self.minClients) || self.minClients <= {clients}",
            "message": "spec.minClients must be <= spec.clients: lower minClients or raise clients",
        },
        {
            "rule": f"{schema} != 'k-regular' || (has(self.topology) && has({degree}))",
            "message": "schema 'k-regular' needs spec.topology.degree (e.g. 4)",
        },
        {
            "rule": f"{schema} != 'k-regular' || !has(self.topology) || !has({degree}) || "
            f"({degree} < {clients} && ({degree} * {clients}) % 2 == 0)",
            "message": "spec.topology.degree is impossible: it must be below clients and degree x clients "
            "must be even",
        },
        {
            "rule": f"{schema} != 'custom' || (has(self.topology) && has(self.topology.edges) && "
            "size(self.topology.edges) > 0)",
            "message": "schema 'custom' needs spec.topology.edges, e.g. [[client_0, client_1]]",
        },
        {
            "rule": f"!has(self.topology) || !has(self.topology.clusterSize) || "
            f"self.topology.clusterSize <= {clients}",
            "message": "spec.topology.clusterSize must be <= spec.clients",
        },
        {
            "rule": "!has(self.topology) || !has(self.topology.edges) || self.topology.edges.all(e, e[0] != e[1])",
            "message": "spec.topology.edges holds a self-loop (a node linked to itself): remove it",
        },
    ]


def _root_rules() -> list[dict[str, str]]:
    phases = ", ".join(f"'{p}'" for p in ACTIVE_PHASES)
    active = f"has(oldSelf.status) && has(oldSelf.status.phase) && oldSelf.status.phase in [{phases}]"
    rules = [
        {
            "rule": f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
            "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters: the names of the "
            "RayCluster, Secret and RBAC objects the operator creates are derived from it",
        },
        {
            "rule": f"self.metadata.name.matches('{DNS_LABEL_PATTERN}')",
            "message": "metadata.name must be a DNS label: lowercase letters, digits and '-', starting and "
            "ending with a letter or digit (no dots: it names Ray actors and Kubernetes objects)",
        },
    ]
    for field in IMMUTABLE_WHILE_ACTIVE:
        same = (
            f"(has(self.spec) && has(self.spec.{field})) == (has(oldSelf.spec) && has(oldSelf.spec.{field}))"
            f" && (!has(self.spec) || !has(self.spec.{field}) || self.spec.{field} == oldSelf.spec.{field})"
        )
        rules.append(
            {
                "rule": f"!({active}) || ({same})",
                "message": f"spec.{field} cannot change while the federation is running: set "
                "spec.suspend: true first, or create a new Federation",
            }
        )
    return rules


# Rules on nested objects, where the model has a field validator that JSON Schema cannot express.
_NESTED_RULES: dict[tuple[str, ...], list[dict[str, str]]] = {
    ("resources", "perNode"): [
        {
            "rule": "!has(self.gpu) || self.gpu <= 1.0 || self.gpu == double(int(self.gpu))",
            "message": "spec.resources.perNode.gpu above 1 must be a whole number (fractions share one GPU)",
        }
    ],
    ("checkpoint",): [
        {
            "rule": "!has(self.persistentVolumeClaim) || !has(self.path)",
            "message": "spec.checkpoint.path: leave it unset with persistentVolumeClaim (checkpoints go to the "
            "claim, mounted into the Ray pods); or remove persistentVolumeClaim to use path",
        },
        {
            "rule": "!has(self.endpointUrl) || (has(self.path) && self.path.startsWith('s3://'))",
            "message": "spec.checkpoint.endpointUrl is for object storage: set path: s3://bucket/prefix, or "
            "remove endpointUrl",
        },
        {
            "rule": "!has(self.credentialsSecret) || (has(self.path) && self.path.contains('://'))",
            "message": "spec.checkpoint.credentialsSecret is for object storage: set path to a URL such as "
            "s3://bucket/prefix, or remove credentialsSecret",
        },
    ],
    ("resources", "broker"): [
        {
            "rule": "!has(self.gpu) || self.gpu <= 1.0 || self.gpu == double(int(self.gpu))",
            "message": "spec.resources.broker.gpu above 1 must be a whole number (fractions share one GPU)",
        }
    ],
}


def spec_schema() -> dict[str, Any]:
    """The structural OpenAPI v3 schema of `spec`, with CEL rules."""
    raw = FederationSpec.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    schema: dict[str, Any] = _resolve(raw, defs)
    props = schema["properties"]
    props["schema"]["minLength"] = 1
    pool = props["cluster"]["properties"]["nodePools"]
    pool["items"]["properties"]["name"].update(
        {"pattern": DNS_LABEL_PATTERN, "maxLength": MAX_POOL_NAME_LENGTH}
    )
    pool["x-kubernetes-list-type"] = "map"
    pool["x-kubernetes-list-map-keys"] = ["name"]
    pool["items"]["required"] = ["name"]
    for path, rules in _NESTED_RULES.items():
        node = schema
        for part in path:
            node = node["properties"][part]
        node["x-kubernetes-validations"] = rules
    schema["x-kubernetes-validations"] = _spec_rules()
    schema["description"] = "What to run: the same spec `red run` reads."
    return schema


def _condition_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string"},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
            "reason": {"type": "string"},
            "message": {"type": "string"},
            "observedGeneration": {"type": "integer", "format": "int64"},
            "lastTransitionTime": {"type": "string", "format": "date-time"},
        },
    }


def status_schema() -> dict[str, Any]:
    """Written only by the operator (see red_operator.status)."""
    string = {"type": "string"}
    integer = {"type": "integer", "format": "int64"}
    return {
        "type": "object",
        "description": "Observed state, written only by the operator. Conditions are the truth; phase is "
        "for display.",
        "properties": {
            "observedGeneration": integer,
            "phase": {
                "type": "string",
                "enum": [p.value for p in Phase],
            },
            "reason": string,
            "message": string,
            "conditions": {
                "type": "array",
                "items": _condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "rayCluster": {
                "type": "object",
                "properties": {
                    "name": string,
                    "ready": {"type": "boolean"},
                    "existing": {"type": "boolean"},
                    "desiredWorkers": integer,
                    "readyWorkers": integer,
                    "dashboardURL": string,
                },
            },
            "job": {
                "type": "object",
                "properties": {
                    "submissionId": string,
                    "status": string,
                    "message": string,
                    "attempts": integer,
                    "failures": integer,
                    "countedFailure": string,
                    "submitTime": {"type": "string", "format": "date-time"},
                },
            },
            "round": integer,
            "progress": {"type": "string", "description": "round/rounds, for display."},
            "healthyNodes": {"type": "string", "description": "healthy/total, for display."},
            "nodes": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": string,
                        "role": string,
                        "health": string,
                        "version": integer,
                        "restarts": integer,
                        "lastHeartbeat": {**string, "nullable": True},
                    },
                },
            },
            "metrics": {"type": "object", "additionalProperties": {"type": "number"}},
            "checkpoint": {
                "type": "object",
                "description": "The newest checkpoint: where a resumed run (after suspend or a retry) starts.",
                "properties": {"round": integer, "path": string, "time": string},
            },
            "lastReportTime": {"type": "string", "format": "date-time"},
            "reportTime": {**string, "description": "The engine's timestamp of the last report."},
            "startTime": {"type": "string", "format": "date-time"},
            "completionTime": {"type": "string", "format": "date-time"},
        },
    }


# `kubectl get fed` shows priority 0; `-o wide` adds priority 1 (after Age, as `kubectl get pods -o wide`).
PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {
        "name": "Ready",
        "type": "string",
        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        "description": "condition Ready: True while running healthy and once succeeded",
    },
    {"name": "Round", "type": "string", "jsonPath": ".status.progress", "description": "round/rounds"},
    {"name": "Nodes", "type": "string", "jsonPath": ".status.healthyNodes", "description": "healthy/total"},
    {"name": "Accuracy", "type": "number", "jsonPath": ".status.metrics.accuracy"},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    {
        "name": "Reason",
        "type": "string",
        "priority": 1,
        "jsonPath": ".status.reason",
        "description": "why the federation failed (empty unless Failed)",
    },
    {
        "name": "RayCluster",
        "type": "string",
        "priority": 1,
        "jsonPath": ".status.rayCluster.name",
        "description": "the KubeRay RayCluster it runs on",
    },
    {
        "name": "Job",
        "type": "string",
        "priority": 1,
        "jsonPath": ".status.job.submissionId",
        "description": "the Ray job's submission id",
    },
    {
        "name": "Checkpoint",
        "type": "integer",
        "priority": 1,
        "jsonPath": ".status.checkpoint.round",
        "description": "the round of the newest checkpoint",
    },
]


def build_crd() -> dict[str, Any]:
    """The whole CRD as a dict (apiextensions.k8s.io/v1)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": SHORT_NAMES,
                "categories": ["red"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A federated-learning run on Ray: `kubectl apply` it, or "
                            "`red run` the same file locally.",
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                            "x-kubernetes-validations": _root_rules(),
                        }
                    },
                }
            ],
        },
    }


HEADER = "# Generated by `python -m red.spec.crd` from red/spec/model.py. Do not edit by hand.\n"


class _NoAliases(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def render() -> str:
    return HEADER + yaml.dump(build_crd(), Dumper=_NoAliases, sort_keys=False, width=110)


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
