"""Red's Kubernetes operator: reconciles `Federation` objects into KubeRay clusters and Ray jobs.

Layout (pure modules first, the cluster-facing ones after):

* `names`      — `FederationRef` (name, namespace, uid), and the names and labels of everything it owns
* `sizing`     — how many workers each node pool needs, or the shortfall
* `builders`   — desired objects (RayCluster, Secret, ConfigMap, RBAC) as plain dicts
* `readiness`  — is the RayCluster ready? what do its pods say?
* `conditions` — metav1.Condition helpers
* `status`     — fold observations into `Federation.status`: one pure function per section and condition
* `decide`     — what the reconciler should do next, from the observations
* `jobs`       — the Ray Jobs REST client
* `requeue`    — when to reconcile again without an event: the phase, or a failed pass's backoff
* `kube`       — thin Kubernetes API helpers
* `informers`  — list+watch caches of RayClusters and Ray pods (410 Gone: relist)
* `cached_kube`— `Kube` whose reads come from those caches
* `workqueue`  — deduplicating, delaying queue of Federation keys
* `events`     — the `Event` record, the Events a status change makes, posting them from any thread
* `reconcile`  — one reconcile pass as its checklist: claim, ensure_owned, observe, plan, act, fold,
                 write; and `cleanup`, the delete path
* `controller` — watch events in, one pass per Federation at a time on worker threads, requeues
* `leader`     — leader election on a Lease (several replicas, one reconciles)
* `handlers`   — the kopf handlers (thin): Federation events and deletion
* `engine_job` — the Ray job entrypoint that runs the engine and writes its report
* `rbac`       — the rules the operator needs (the Helm chart is tested against them)
* `settings`   — operator settings (env `RED_OPERATOR_*` or CLI flags)
* `metrics`    — Prometheus metrics (reconciles, errors, submissions, Federations by phase)
* `main`       — the `red-operator` command
"""

__all__: list[str] = []
