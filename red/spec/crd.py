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

from red.spec.federation_status import NULLABLE, FederationStatus
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
from red.spec.pods import (
    KUEUE_QUEUE_LABEL,
    RESERVED_LABEL_PREFIXES,
    RESERVED_POD_ENV_NAMES,
    RESERVED_POD_ENV_PREFIXES,
    RESERVED_VOLUME_PREFIX,
    SHM_VOLUME,
    VOLUME_SOURCES,
)
from red.spec.runtime_env import (
    PY_MODULES_EXTENSIONS,
    REMOTE_SCHEMES,
    RESERVED_JOB_ENV_NAMES,
    RESERVED_JOB_ENV_PREFIXES,
    WORKING_DIR_EXTENSIONS,
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
    "runtimeEnv",
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


def _cel_list(items: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{i}'" for i in items) + "]"


def _archive_uri(extensions: tuple[str, ...]) -> str:
    """RE2 for an archive URI Ray can fetch (query and fragment allowed after the extension)."""
    ext = "|".join(e.lstrip(".").replace(".", "[.]") for e in extensions)
    return f"^({'|'.join(REMOTE_SCHEMES)})://[^?#]+[.]({ext})([?#].*)?$"


def _no_reserved_prefix(var: str, prefixes: tuple[str, ...]) -> str:
    return " && ".join(f"!{var}.startsWith('{p}')" for p in prefixes)


def _runtime_env_rules() -> dict[tuple[str, ...], list[dict[str, str]]]:
    schemes = ", ".join(f"{s}://" for s in REMOTE_SCHEMES)
    local = "a local path works only with `red run`: zip it and host it where the cluster can fetch it"
    return {
        ("runtimeEnv", "workingDir"): [
            {
                "rule": f"self.matches('{_archive_uri(WORKING_DIR_EXTENSIONS)}')",
                "message": f"spec.runtimeEnv.workingDir must be an archive URI the cluster can fetch ({schemes}; "
                f"ending in {', '.join(WORKING_DIR_EXTENSIONS)}); {local}",
            }
        ],
        ("runtimeEnv", "pyModules"): [
            {
                "rule": f"self.all(m, m.matches('{_archive_uri(PY_MODULES_EXTENSIONS)}'))",
                "message": f"spec.runtimeEnv.pyModules must be archive or wheel URIs the cluster can fetch ({schemes}; "
                f"ending in {', '.join(PY_MODULES_EXTENSIONS)}); {local}",
            }
        ],
        ("runtimeEnv", "envVars"): [
            {
                "rule": "self.all(k, k.matches('^[A-Za-z_][A-Za-z0-9_]*$'))",
                "message": "spec.runtimeEnv.envVars names are letters, digits and '_', not starting with a digit",
            },
            {
                "rule": f"self.all(k, {_no_reserved_prefix('k', RESERVED_JOB_ENV_PREFIXES)} && "
                f"!(k in {_cel_list(RESERVED_JOB_ENV_NAMES)}))",
                "message": "spec.runtimeEnv.envVars may not set RAY_*, RED_* or KUBECONFIG: Ray and Red set them for "
                "the job. Ray's own settings go in the pods' env (spec.cluster.head.env, nodePools[].env)",
            },
        ],
    }


def _pod_shape_rules(where: str) -> list[dict[str, str]]:
    """Rules on a head or node pool object (PodShape's validators that JSON Schema cannot say)."""
    return [
        {
            "rule": "!has(self.volumeMounts) || self.volumeMounts.all(m, m.name == "
            f"'{SHM_VOLUME}' || (has(self.volumes) && self.volumes.exists(v, v.name == m.name)))",
            "message": f"{where}.volumeMounts names a volume that is not among its volumes: add it to "
            f"{where}.volumes or fix the name",
        },
        {
            "rule": f"!has(self.volumes) || self.volumes.all(v, v.name != '{SHM_VOLUME}' && "
            f"!v.name.startsWith('{RESERVED_VOLUME_PREFIX}'))",
            "message": f"{where}.volumes: '{SHM_VOLUME}' and names starting with '{RESERVED_VOLUME_PREFIX}' are "
            "Red's own volumes; rename yours",
        },
        {
            "rule": f"!has(self.labels) || self.labels.all(k, {_no_reserved_prefix('k', RESERVED_LABEL_PREFIXES)})",
            "message": f"{where}.labels: keys under {', '.join(RESERVED_LABEL_PREFIXES)} are set by Red and KubeRay "
            "to find their pods; choose another key",
        },
        {
            "rule": "!has(self.env) || self.env.all(e, "
            f"{_no_reserved_prefix('e.name', RESERVED_POD_ENV_PREFIXES)} && "
            f"!(e.name in {_cel_list(RESERVED_POD_ENV_NAMES)}))",
            "message": f"{where}.env sets a variable KubeRay or Red sets on the Ray pods (RED_*, KUBERAY_*, "
            "RAY_ADDRESS, RAY_AUTH_TOKEN, ...); remove it. Other RAY_* settings of Ray may be set",
        },
    ]


def _volume_items(items: dict[str, Any]) -> None:
    """Name each volume source, so a misspelt one is an unknown field, and require exactly one."""
    items.pop("x-kubernetes-preserve-unknown-fields", None)
    for source in VOLUME_SOURCES:
        # Kubernetes' own source types, kept as given: the API server checks them when KubeRay makes the pods.
        items["properties"][source] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    has = ", ".join(f"has(self.{source})" for source in VOLUME_SOURCES)
    items["x-kubernetes-validations"] = [
        {
            "rule": f"[{has}].exists_one(x, x)",
            "message": "a volume needs exactly one source (e.g. persistentVolumeClaim, secret, emptyDir)",
        }
    ]


def _cluster_rules() -> list[dict[str, str]]:
    q = KUEUE_QUEUE_LABEL
    head = f"(has(self.head) && has(self.head.labels) && '{q}' in self.head.labels ? [self.head.labels['{q}']] : [])"
    pools = f"(has(self.nodePools) ? self.nodePools.filter(p, has(p.labels) && '{q}' in p.labels)" + (
        f".map(p, p.labels['{q}']) : [])"
    )
    queues = f"({head} + {pools})"
    return [
        {
            "rule": f"size({queues}) == 0 || {queues}.all(x, x == {queues}[0])",
            "message": f"spec.cluster: the head and node pools name different Kueue queues in {q}: Kueue admits "
            "the RayCluster whole, so give them all the same queue",
        }
    ]


def _shape_pods(schema: dict[str, Any]) -> None:
    cluster = schema["properties"]["cluster"]
    head = cluster["properties"]["head"]
    pool = cluster["properties"]["nodePools"]["items"]
    for obj, where in ((head, "spec.cluster.head"), (pool, "spec.cluster.nodePools[]")):
        obj["x-kubernetes-validations"] = _pod_shape_rules(where)
        volumes = obj["properties"]["volumes"]
        volumes["x-kubernetes-list-type"] = "map"
        volumes["x-kubernetes-list-map-keys"] = ["name"]
        _volume_items(volumes["items"])
    cluster["x-kubernetes-validations"] = _cluster_rules()


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
    _shape_pods(schema)
    for path, rules in {**_NESTED_RULES, **_runtime_env_rules()}.items():
        node = schema
        for part in path:
            node = node["properties"][part]
        node["x-kubernetes-validations"] = rules
    schema["x-kubernetes-validations"] = _spec_rules()
    schema["description"] = "What to run: the same spec `red run` reads."
    return schema


def _strip_nullable(node: Any, key: str = "") -> Any:
    """Optional status fields are absent, not null (see `federation_status.NULLABLE`)."""
    if isinstance(node, list):
        return [_strip_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _strip_nullable(v, k) for k, v in node.items() if k != "properties"}
    if "properties" in node:
        out["properties"] = {k: _strip_nullable(v, k) for k, v in node["properties"].items()}
    if key not in NULLABLE:
        out.pop("nullable", None)
    return out


def status_schema() -> dict[str, Any]:
    """Written only by the operator (see red_operator.status), generated from `FederationStatus`."""
    raw = FederationStatus.model_json_schema(by_alias=True)
    schema: dict[str, Any] = _strip_nullable(_resolve(raw, raw.get("$defs", {})))
    schema["description"] = (
        "Observed state, written only by the operator. Conditions are the truth; phase is for display."
    )
    return schema


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
