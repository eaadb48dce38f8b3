"""The RBAC the operator needs: the single source of truth that the Helm chart is tested against.

Cluster-wide (a ClusterRole) because Federations may live in any namespace. Every rule below is used:
`kube.Kube` makes exactly these calls, plus kopf's own (watching Federations, Events, finalizers and
annotations on Federations, CRD discovery).
"""

from __future__ import annotations

from typing import Any

from red.spec.model import GROUP, PLURAL

PolicyRule = dict[str, Any]

RULES: list[PolicyRule] = [
    # The Federations themselves: kopf watches them and patches finalizers/annotations; status is ours.
    {"apiGroups": [GROUP], "resources": [PLURAL], "verbs": ["get", "list", "watch", "patch", "update"]},
    {"apiGroups": [GROUP], "resources": [f"{PLURAL}/status"], "verbs": ["get", "patch", "update"]},
    # kopf discovers the resources it serves.
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    # The cluster each Federation runs on, and its pods (for readiness reasons).
    {
        "apiGroups": ["ray.io"],
        "resources": ["rayclusters"],
        "verbs": ["get", "list", "watch", "create", "delete"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    # Owned per-Federation objects: the token Secret, the report ConfigMap, the engine's identity.
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "delete"]},
    # (update and patch also because granting the engine's Role requires holding what it grants)
    # list/watch: the operator's informer of report ConfigMaps (label red.dev/federation, server-side).
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "verbs": ["get", "list", "watch", "create", "delete", "patch", "update"],
    },
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "create", "delete"]},
    # Out-of-cluster runs only (--engine-kubeconfig-dir): a token for the engine's ServiceAccount.
    {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
    {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["roles", "rolebindings"],
        "verbs": ["get", "create", "delete"],
    },
    # Events on every transition (kopf posts them).
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]

# Leader election only (chart value leaderElection.enabled): the Lease the replicas compete for, in the
# operator's own namespace (a Role there, not a cluster-wide grant).
LEASE_RULES: list[PolicyRule] = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
]
