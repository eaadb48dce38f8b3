"""The Federation model: one typed description read by `red run`, the operator and the CRD generator.

The file a user writes *is* the Kubernetes object, so the same YAML works for `red run` and
`kubectl apply`. Field names are camelCase on the wire (Kubernetes convention) and snake_case in Python.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

from red._version import __version__
from red.spec.base import Model as Model  # re-exported: the base of every spec model
from red.spec.pods import KUEUE_QUEUE_LABEL, PodShape, ServiceAccountSpec, memory_bytes
from red.spec.pods import Toleration as Toleration  # re-exported: it lived here first
from red.spec.runtime_env import RuntimeEnvSpec

API_VERSION = "red.dev/v1alpha1"
KIND = "Federation"
GROUP = "red.dev"
VERSION = "v1alpha1"
PLURAL = "federations"

BUILTIN_SCHEMAS = ("star", "ring", "mesh", "k-regular", "custom", "cluster")
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_LABEL = re.compile(DNS_LABEL_PATTERN)
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# The engine image of this release: its tag is the package version (red/_version.py).
ENGINE_IMAGE = f"ghcr.io/red-dev/red-engine:{__version__}"
# One limit for the model and the CRD (red.spec.crd reads these): owned objects are named
# `<federation>-<suffix>` and KubeRay adds its own suffixes to pod names.
MAX_NAME_LENGTH = 40
MAX_POOL_NAME_LENGTH = 30
MAX_NODE_POOLS = 16
MAX_EDGES = 20_000
MAX_NODE_ID_LENGTH = 63
MAX_SEED = 2**32 - 1  # numpy's seeds are unsigned 32-bit


def _non_finite(value: Any, path: str) -> str | None:
    """The first parameter that is, or spells, a non-finite number (`lr: "nan"` makes a model diverge)."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, str):
        try:
            return None if math.isfinite(float(value)) else path
        except ValueError:
            return None
    if isinstance(value, dict):
        return next((p for k, v in value.items() if (p := _non_finite(v, f"{path}.{k}"))), None)
    if isinstance(value, list):
        return next((p for i, v in enumerate(value) if (p := _non_finite(v, f"{path}[{i}]"))), None)
    return None




class NamedParams(Model):
    name: str = Field(description="Registered name.")
    params: dict[str, Any] = Field(default_factory=dict, description="Free-form parameters.")

    @field_validator("params")
    @classmethod
    def _finite(cls, v: dict[str, Any]) -> dict[str, Any]:
        bad = _non_finite(v, "params")
        if bad is not None:
            raise ValueError(f"{bad} is not a finite number (NaN or infinity would make training diverge)")
        return v


class AlgorithmSpec(NamedParams):
    """How updates are combined: fedavg | fedprox | median | trimmed-mean | fedbuff | a registered name."""

    name: str = Field(default="fedavg", description="fedavg, fedprox, median, trimmed-mean, fedbuff.")


class TaskSpec(NamedParams):
    """What is learned: model, data partition, local training and evaluation."""

    name: str = Field(default="digits", description="A registered task; `digits` is built in.")


class ResourceAmount(Model):
    cpu: float = Field(default=0.1, ge=0, description="Logical CPUs.")
    gpu: float = Field(default=0.0, ge=0, description="GPUs; a fraction (e.g. 0.25) shares one GPU.")

    @field_validator("gpu")
    @classmethod
    def _gpu_fraction_or_whole(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError("a GPU amount above 1 must be a whole number (fractions share one GPU)")
        return v


class ResourcesSpec(Model):
    per_node: ResourceAmount = Field(default_factory=ResourceAmount, description="Per virtual node.")
    broker: ResourceAmount = Field(
        default_factory=lambda: ResourceAmount(cpu=0.1), description="For the TopologyManager."
    )
    placement_strategy: Literal["PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"] = "PACK"
    placement_timeout_seconds: float = Field(default=60.0, gt=0, description="Fail if not placed by then.")
    max_actors: int | None = Field(
        default=None,
        ge=1,
        description="Most node actors to start. More virtual nodes than this are multiplexed onto a "
        "pool of this many actors. Unset: the engine decides from the Ray cluster's CPUs.",
    )
    fork_trainers: bool = Field(
        default=True,
        description="When the engine pools nodes on CPUs (maxActors unset) for synchronous star rounds: one "
        "pool host per Ray node's cores, with trainers forked from it that share its torch, instead of one "
        "torch process per core (about 465 MB each). Set false if the task's code holds something a fork "
        "must not share, such as a connection opened in its constructor.",
    )


class TopologySpec(Model):
    """Graph parameters for the schemas that need them."""

    degree: int | None = Field(default=None, ge=1, description="k for `k-regular`.")
    edges: (
        list[Annotated[list[Annotated[str, Field(max_length=MAX_NODE_ID_LENGTH)]], Field(min_length=2, max_length=2)]]
        | None
    ) = Field(
        default=None,
        max_length=MAX_EDGES,
        description="Edge list for `custom`, as node-id pairs; every node in at least one, no self-loops.",
    )
    cluster_size: int | None = Field(default=None, ge=1, description="Clients per head for `cluster`.")


class CheckpointSpec(Model):
    """Where checkpoints go. On Kubernetes each Federation writes under its own folder, named by its uid,
    so a new Federation with an old one's name never resumes the old run."""

    path: str | None = Field(
        default=None,
        min_length=1,
        description="Directory or fsspec URL (`s3://bucket/prefix` needs red[s3]); unset disables, unless "
        "persistentVolumeClaim is set.",
    )
    every_rounds: int = Field(default=5, ge=1, description="Save after every N rounds.")
    persistent_volume_claim: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN.pattern,
        description="Operator: a PersistentVolumeClaim in the Federation's namespace, mounted into the Ray "
        "head and workers; checkpoints go there (leave path unset). It outlives suspend.",
    )
    credentials_secret: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS_SUBDOMAIN.pattern,
        description="Operator: a Secret whose keys become environment variables of the Ray pods (envFrom), "
        "e.g. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_ENDPOINT_URL) for an s3:// path.",
    )
    endpoint_url: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^https?://[^\s]+$",
        description="The S3-compatible server of an s3:// path (e.g. http://minio.storage:9000); unset: AWS, "
        "or AWS_ENDPOINT_URL from the environment.",
    )

    @property
    def enabled(self) -> bool:
        return self.path is not None or self.persistent_volume_claim is not None

    @field_validator("persistent_volume_claim", "credentials_secret", mode="before")
    @classmethod
    def _object_name(cls, v: Any, info: ValidationInfo) -> Any:
        if isinstance(v, str) and not DNS_SUBDOMAIN.match(v):
            what = "PersistentVolumeClaim" if info.field_name == "persistent_volume_claim" else "Secret"
            raise ValueError(f"must name a {what} in the Federation's namespace (a lowercase DNS name, e.g. 'ckpt')")
        return v

    @field_validator("endpoint_url", mode="before")
    @classmethod
    def _url(cls, v: Any) -> Any:
        if isinstance(v, str) and not re.match(r"^https?://[^\s]+$", v):
            raise ValueError(f"must be an http:// or https:// URL, e.g. http://minio.storage:9000 (got {v!r})")
        return v

    @model_validator(mode="after")
    def _storage(self) -> CheckpointSpec:
        problems = []
        if self.persistent_volume_claim is not None and self.path is not None:
            problems.append(
                "spec.checkpoint.path: leave it unset with persistentVolumeClaim (checkpoints go to the claim, "
                "mounted into the Ray pods); or remove persistentVolumeClaim to use path"
            )
        if self.endpoint_url is not None and not (self.path or "").startswith("s3://"):
            problems.append(
                "spec.checkpoint.endpointUrl is for object storage: set path: s3://bucket/prefix, or remove "
                "endpointUrl"
            )
        if self.credentials_secret is not None and "://" not in (self.path or ""):
            problems.append(
                "spec.checkpoint.credentialsSecret is for object storage: set path to a URL such as "
                "s3://bucket/prefix, or remove credentialsSecret"
            )
        if problems:
            raise ValueError("\n".join(problems))
        return self


class FaultToleranceSpec(Model):
    max_restarts: int = Field(default=3, ge=0, description="Ray restarts of each node actor.")
    heartbeat_seconds: float = Field(default=5.0, gt=0, description="Supervisor ping interval.")
    round_timeout_seconds: float = Field(
        default=300.0, gt=0, description="A round with no progress for this long fails the run."
    )
    restart_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long a failed node actor may take to come back before it counts as dead "
        "(failed nodes are waited for together, not one after another).",
    )


class _HeadResources(Model):
    cpu: str = Field(default="1", description="Head container CPU (Kubernetes quantity).")
    memory: str = Field(default="2Gi", description="Head container memory (Kubernetes quantity).")

    @field_validator("memory")
    @classmethod
    def _memory(cls, v: str) -> str:
        memory_bytes(v)
        return v


# PodShape first among the bases, so that its fields come after the resources in docs and `red explain`.
class HeadSpec(PodShape, _HeadResources):
    """The Ray head pod."""

    @model_validator(mode="after")
    def _store_fits(self) -> HeadSpec:
        _check_store(self, self.memory)
        return self


def _check_store(pod: PodShape, memory: str) -> None:
    store, _ = pod.shm_bytes(memory)
    if store >= memory_bytes(memory):
        raise ValueError(
            f"objectStoreMemory ({pod.object_store_memory}) must be below the pod's memory ({memory}): Ray's "
            "object store lives in /dev/shm, which counts against it"
        )


class _PoolResources(Model):
    name: str = Field(description="Worker group name (DNS label).")
    gpus_per_worker: int = Field(default=1, ge=0, description="nvidia.com/gpu limit per worker pod.")
    cpus_per_worker: str = Field(default="4", description="CPU per worker pod (Kubernetes quantity).")
    memory_per_worker: str = Field(default="16Gi", description="Memory per worker pod.")
    min_workers: int = Field(default=0, ge=0)
    max_workers: int = Field(default=1, ge=1, description="Upper bound the operator never exceeds.")

    @field_validator("name")
    @classmethod
    def _dns(cls, v: str) -> str:
        if not DNS_LABEL.match(v) or len(v) > MAX_POOL_NAME_LENGTH:
            raise ValueError(
                f"must be a lowercase DNS label of at most {MAX_POOL_NAME_LENGTH} characters, e.g. 'h100'"
            )
        return v

    @field_validator("memory_per_worker")
    @classmethod
    def _memory(cls, v: str) -> str:
        memory_bytes(v)
        return v


class NodePool(PodShape, _PoolResources):
    """A worker group: one per kind of node (e.g. a GPU pool)."""

    @model_validator(mode="after")
    def _store_fits(self) -> NodePool:
        _check_store(self, self.memory_per_worker)
        return self


class ClusterSpec(Model):
    """Read only by the operator: the KubeRay cluster to run on."""

    ray_version: str = Field(default="2.60.0", description="Ray version of the image.")
    image: str | None = Field(
        default=None,
        min_length=1,
        description="Engine image of the Ray pods. Unset: the operator's default (Helm value `engine.image`; "
        f"out of the box {ENGINE_IMAGE}).",
    )
    existing_cluster: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN.pattern,
        description="Use this RayCluster (same namespace) instead of creating one; never deleted. It may not "
        "be another Federation's cluster.",
    )
    head: HeadSpec = Field(default_factory=HeadSpec)
    # Bounded so that the CRD's CEL rules on each pool have a cost the API server accepts.
    node_pools: list[NodePool] = Field(default_factory=list, max_length=MAX_NODE_POOLS)
    service_account: ServiceAccountSpec = Field(default_factory=ServiceAccountSpec)

    @model_validator(mode="after")
    def _one_queue(self) -> ClusterSpec:
        # Kueue admits the RayCluster as one workload: its pods cannot sit in different queues.
        queues = {p.labels[KUEUE_QUEUE_LABEL] for p in (self.head, *self.node_pools) if KUEUE_QUEUE_LABEL in p.labels}
        if len(queues) > 1:
            raise ValueError(
                f"the head and node pools name different Kueue queues ({', '.join(sorted(queues))}) in "
                f"{KUEUE_QUEUE_LABEL}: Kueue admits the RayCluster whole, so give them all the same queue"
            )
        return self

    @property
    def queue_name(self) -> str | None:
        """The Kueue queue any of the pods names (one at most), carried on the RayCluster."""
        pods = (self.head, *self.node_pools)
        return next((p.labels[KUEUE_QUEUE_LABEL] for p in pods if KUEUE_QUEUE_LABEL in p.labels), None)

    @field_validator("existing_cluster", mode="before")
    @classmethod
    def _cluster_name(cls, v: Any) -> Any:
        # Before the length check, so that "" gets this message too (it used to hang the Federation).
        if isinstance(v, str) and not DNS_SUBDOMAIN.match(v):
            raise ValueError(
                "must name a RayCluster in the Federation's namespace (a lowercase DNS name, e.g. 'shared'); "
                "remove the field to get a cluster of the Federation's own"
            )
        return v


class FederationSpec(Model):
    schema_: str = Field(
        default="star",
        alias="schema",
        description="star, ring, mesh, k-regular, custom, cluster, or a registered name.",
    )
    rounds: int = Field(default=20, ge=1, description="Global rounds.")
    clients: int = Field(default=10, ge=1, le=100_000, description="Training nodes.")
    min_clients: int | None = Field(
        default=None,
        ge=1,
        description="Fewer live clients than this fails the federation. Default: 1.",
    )
    sample_fraction: float = Field(default=1.0, gt=0, le=1, description="Clients sampled per round.")
    round_deadline_seconds: float | None = Field(
        default=None, gt=0, description="Stragglers later than this are left out of the round."
    )
    seed: int = Field(
        default=0, ge=0, le=MAX_SEED, description="Seeds data partitioning, sampling and model init."
    )
    algorithm: AlgorithmSpec = Field(default_factory=AlgorithmSpec)
    task: TaskSpec = Field(default_factory=TaskSpec)
    topology: TopologySpec = Field(default_factory=TopologySpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec)
    fault_tolerance: FaultToleranceSpec = Field(default_factory=FaultToleranceSpec)
    suspend: bool = Field(default=False, description="Operator: stop the job and delete the cluster.")
    ttl_seconds_after_finished: int | None = Field(
        default=None, ge=0, description="Operator: delete the cluster this long after completion."
    )
    backoff_limit: int = Field(default=2, ge=0, description="Operator: job retries before Failed.")
    stall_timeout_seconds: int = Field(
        default=300, ge=10, description="Operator: no engine report for this long sets Stalled."
    )
    cluster: ClusterSpec = Field(default_factory=ClusterSpec)
    runtime_env: RuntimeEnvSpec = Field(
        default_factory=RuntimeEnvSpec,
        description="Your own code and settings for the Ray job (Ray's runtime_env, plus modules to import).",
    )

    @field_validator("schema_")
    @classmethod
    def _schema_name(cls, v: str) -> str:
        if not v:
            raise ValueError("must name a schema, e.g. 'star'")
        return v

    @model_validator(mode="after")
    def _cross_field(self, info: ValidationInfo) -> FederationSpec:
        # Every problem at once (one per line), so a user fixes a file in one go, not one error per run.
        problems = self._cross_field_problems(info.context or {})
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def _cross_field_problems(self, ctx: dict[str, Any]) -> list[str]:
        problems: list[str] = []
        if self.min_clients is not None and self.min_clients > self.clients:
            problems.append(
                f"spec.minClients ({self.min_clients}) must be <= spec.clients ({self.clients}): "
                "lower minClients or raise clients"
            )
        if self.schema_ == "k-regular":
            k = self.topology.degree
            if k is None:
                problems.append("schema 'k-regular' needs spec.topology.degree (e.g. 4)")
            elif k >= self.clients or (k * self.clients) % 2:
                problems.append(
                    f"spec.topology.degree {k} is impossible with {self.clients} clients: it must be "
                    "below clients and degree x clients must be even"
                )
        if self.schema_ == "custom" and not self.topology.edges:
            problems.append("schema 'custom' needs spec.topology.edges, e.g. [[client_0, client_1]]")
        if self.schema_ == "custom" and self.topology.edges:
            known = {f"client_{i}" for i in range(self.clients)}
            linked: set[str] = set()
            unknown: set[str] = set()
            for i, (a, b) in enumerate(self.topology.edges):
                unknown.update(n for n in (a, b) if n not in known)
                if a == b:
                    problems.append(f"spec.topology.edges[{i}] is a self-loop ({a} to itself): remove it")
                linked.update((a, b))
            problems.extend(
                f"spec.topology.edges names {n!r}, which is not a node; nodes are "
                f"client_0 .. client_{self.clients - 1}"
                for n in sorted(unknown)
            )
            alone = sorted(known - linked, key=lambda n: int(n.rsplit("_", 1)[1]))
            if alone and not unknown:  # a misspelt node name explains the loners: one problem, not two
                problems.append(
                    f"spec.topology.edges leaves {len(alone)} node(s) without a neighbour "
                    f"({', '.join(alone[:5])}{', ...' if len(alone) > 5 else ''}): connect each one or lower "
                    "spec.clients"
                )
        if (
            self.schema_ == "cluster"
            and self.topology.cluster_size is not None
            and self.topology.cluster_size > self.clients
        ):
            problems.append(
                f"spec.topology.clusterSize ({self.topology.cluster_size}) must be <= clients "
                f"({self.clients})"
            )
        # Code shipped in runtimeEnv registers its names on the cluster only: the engine checks them there.
        if ctx.get("check_registry", False) and not self.runtime_env.ships_code:
            problems.extend(self.unknown_names())
        return problems

    def unknown_names(self) -> list[str]:
        """One problem per schema, algorithm or task name that nothing registered (imports the registry)."""
        from red.registry import algorithms, schemas, tasks

        problems = []
        if self.schema_ not in schemas:
            problems.append(
                f"spec.schema: unknown schema {self.schema_!r}; use one of {', '.join(schemas.names())}, or "
                "register a custom schema with @red.schemas.register"
            )
        for what, reg, name in (
            ("algorithm", algorithms, self.algorithm.name),
            ("task", tasks, self.task.name),
        ):
            if name not in reg:
                problems.append(f"spec.{what}.name: unknown {what} {name!r}; use one of {', '.join(reg.names())}")
        return problems

    @property
    def effective_min_clients(self) -> int:
        return self.min_clients if self.min_clients is not None else 1


class ObjectMeta(Model):
    """The part of Kubernetes metadata Red reads; the rest (uid, labels, ...) is kept as given."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")

    name: str = Field(description="DNS label; names the Ray actors and, in Kubernetes, everything owned.")
    namespace: str | None = None

    @field_validator("name")
    @classmethod
    def _dns(cls, v: str) -> str:
        if not DNS_LABEL.match(v) or len(v) > MAX_NAME_LENGTH:
            raise ValueError(
                f"{v!r} is not a valid name: use lowercase letters, digits and '-', at most "
                f"{MAX_NAME_LENGTH} characters, starting and ending with a letter or digit (e.g. 'digits-star')"
            )
        return v


class Federation(Model):
    """A whole Federation object as written in YAML (`apiVersion`, `kind`, `metadata`, `spec`)."""

    api_version: Literal["red.dev/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Federation"]
    metadata: ObjectMeta
    spec: FederationSpec = Field(default_factory=FederationSpec)
    # `kubectl get -o yaml` output carries a status; it is the operator's and is ignored here.
    status: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return self.metadata.name
