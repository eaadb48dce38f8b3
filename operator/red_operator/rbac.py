"""The RBAC the operator needs: the single source of truth that the Helm chart is tested against.

Cluster-wide (a ClusterRole) because Federations may live in any namespace. Every rule below is used:
`kube.Kube` makes exactly these calls, plus kopf's own (watching Federations, Events, finalizers and
annotations on Federations, CRD discovery).

What the operator may NOT do, on purpose (the chart's cluster test checks each with `kubectl auth can-i`,
in kube-system too):

* read, list or watch Secrets. Each Federation's Ray token is derived (`red_operator.tokens`: HMAC of
  the Federation's uid under the operator's key), so the operator only *creates* the token Secret for
  KubeRay. Borrowing an `existingCluster` means using that cluster's token: its owner grants the
  operator `get` on that one Secret (docs/kubernetes.md, Security model).
* mint ServiceAccount tokens (`serviceaccounts/token`). Only an operator run *out of cluster* with
  `--engine-kubeconfig-dir` needs that (the engine then runs outside any pod); it is `DEV_RULES`, an
  opt-in chart value (`rbac.engineTokenRequests`), off by default.
* list or watch ConfigMaps (the informers cache RayClusters and Ray pods only; the report ConfigMap is
  read with a GET while its job runs), update ConfigMaps, delete Secrets, escalate or bind roles, change
  pods, or create anything cluster-wide.

Leader election (chart value `leaderElection.enabled`) adds `LEASE_RULES`, a Role in the operator's own
namespace only.

One right stays although the operator itself never uses it: `patch` on ConfigMaps. The engine writes
its report into one ConfigMap through a per-Federation Role (`resourceNames: [<fed>-report]`), and the
API server lets a subject create a Role, or bind one, only when it holds every right the Role grants
(RBAC escalation prevention). The alternatives are worse: `escalate`/`bind` on roles would let the
operator grant anything to anyone; a chart-wide ClusterRole bound per Federation would let each engine
patch every ConfigMap of its namespace.
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
    # The cluster each Federation runs on, and its pods (for readiness reasons): list/watch for the
    # operator's informers (pods selected by the red.dev/federation label on the API server).
    {
        "apiGroups": ["ray.io"],
        "resources": ["rayclusters"],
        "verbs": ["get", "list", "watch", "create", "delete"],
    },
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    # The token Secret: created once, never read (the token is derived), removed by the garbage collector
    # with its Federation (it carries the ownerReference).
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    # The report ConfigMap: one GET per pass while a job runs. No list/watch: that would be every
    # ConfigMap of the cluster (a label selector is no boundary). `patch` only because the engine's Role
    # grants it (see above).
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "delete", "patch"]},
    # The engine's identity; `get` checks that an existing one is ours before it is used or deleted.
    {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["get", "create", "delete"]},
    {
        "apiGroups": ["rbac.authorization.k8s.io"],
        "resources": ["roles", "rolebindings"],
        "verbs": ["get", "create", "delete"],
    },
    # Events on every transition (kopf posts them).
    {"apiGroups": ["", "events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]

DEV_RULES: list[PolicyRule] = [
    # Out-of-cluster runs only (--engine-kubeconfig-dir): a short-lived token for each engine's
    # ServiceAccount. In every namespace this is the power to act as any ServiceAccount there (kube-system
    # included), so the chart grants it only with rbac.engineTokenRequests=true.
    {"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]},
]

# Leader election only (chart value leaderElection.enabled): the Lease the replicas compete for, in the
# operator's own namespace (a Role there, not a cluster-wide grant).
LEASE_RULES: list[PolicyRule] = [
    {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
]
