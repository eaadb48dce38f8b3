"""The Federation model: one typed description read by `red run`, the operator and the CRD generator.

The file a user writes *is* the Kubernetes object, so the same YAML works for `red run` and
`kubectl apply`. Field names are camelCase on the wire (Kubernetes convention) and snake_case in Python.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic.alias_generators import to_camel

API_VERSION = "red.dev/v1alpha1"
KIND = "Federation"
GROUP = "red.dev"
VERSION = "v1alpha1"
PLURAL = "federations"

BUILTIN_SCHEMAS = ("star", "ring", "mesh", "k-regular", "custom", "cluster")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Model(BaseModel):
    """Base: camelCase aliases, unknown fields rejected (a typo must not be silently ignored)."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=False
    )


class NamedParams(Model):
    name: str = Field(description="Registered name.")
    params: dict[str, Any] = Field(default_factory=dict, description="Free-form parameters.")


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


class TopologySpec(Model):
    """Graph parameters for the schemas that need them."""

    degree: int | None = Field(default=None, ge=1, description="k for `k-regular`.")
    edges: list[Annotated[list[str], Field(min_length=2, max_length=2)]] | None = Field(
        default=None, description="Edge list for `custom`, as node-id pairs."
    )
    cluster_size: int | None = Field(default=None, ge=1, description="Clients per head for `cluster`.")


class CheckpointSpec(Model):
    path: str | None = Field(default=None, description="Directory or fsspec URL; unset disables.")
    every_rounds: int = Field(default=5, ge=1, description="Save after every N rounds.")


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


class Toleration(Model):
    key: str | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


class HeadSpec(Model):
    cpu: str = Field(default="1", description="Head container CPU (Kubernetes quantity).")
    memory: str = Field(default="2Gi", description="Head container memory (Kubernetes quantity).")


class NodePool(Model):
    name: str = Field(description="Worker group name (DNS label).")
    gpus_per_worker: int = Field(default=1, ge=0, description="nvidia.com/gpu limit per worker pod.")
    cpus_per_worker: str = Field(default="4", description="CPU per worker pod (Kubernetes quantity).")
    memory_per_worker: str = Field(default="16Gi", description="Memory per worker pod.")
    min_workers: int = Field(default=0, ge=0)
    max_workers: int = Field(default=1, ge=1, description="Upper bound the operator never exceeds.")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _dns(cls, v: str) -> str:
        if not DNS_LABEL.match(v) or len(v) > 30:
            raise ValueError("must be a lowercase DNS label of at most 30 characters, e.g. 'h100'")
        return v


class ClusterSpec(Model):
    """Read only by the operator: the KubeRay cluster to run on."""

    ray_version: str = Field(default="2.60.0", description="Ray version of the image.")
    image: str = Field(default="ghcr.io/red-dev/red-engine:0.1.0", description="Engine image.")
    existing_cluster: str | None = Field(
        default=None, description="Use this RayCluster (same namespace) instead of creating one; never deleted."
    )
    head: HeadSpec = Field(default_factory=HeadSpec)
    node_pools: list[NodePool] = Field(default_factory=list)


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
    seed: int = Field(default=0, description="Seeds data partitioning, sampling and model init.")
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

    @field_validator("schema_")
    @classmethod
    def _schema_name(cls, v: str, info: ValidationInfo) -> str:
        if not v:
            raise ValueError("must name a schema, e.g. 'star'")
        ctx = info.context or {}
        if ctx.get("check_registry", False):
            from red.registry import schemas

            if v not in schemas:
                raise ValueError(
                    f"unknown schema {v!r}; use one of {', '.join(schemas.names())}, or register a "
                    "custom schema with @red.schemas.register"
                )
        return v

    @model_validator(mode="after")
    def _cross_field(self, info: ValidationInfo) -> FederationSpec:
        ctx = info.context or {}
        if self.min_clients is not None and self.min_clients > self.clients:
            raise ValueError(
                f"spec.minClients ({self.min_clients}) must be <= spec.clients ({self.clients}): "
                "lower minClients or raise clients"
            )
        if self.schema_ == "k-regular":
            k = self.topology.degree
            if k is None:
                raise ValueError("schema 'k-regular' needs spec.topology.degree (e.g. 4)")
            if k >= self.clients or (k * self.clients) % 2:
                raise ValueError(
                    f"spec.topology.degree {k} is impossible with {self.clients} clients: it must be "
                    "below clients and degree x clients must be even"
                )
        if self.schema_ == "custom" and not self.topology.edges:
            raise ValueError("schema 'custom' needs spec.topology.edges, e.g. [[client_0, client_1]]")
        if self.schema_ == "custom" and self.topology.edges:
            known = {f"client_{i}" for i in range(self.clients)}
            for a, b in self.topology.edges:
                for n in (a, b):
                    if n not in known:
                        raise ValueError(
                            f"spec.topology.edges names {n!r}, which is not a node; nodes are "
                            f"client_0 .. client_{self.clients - 1}"
                        )
        if (
            self.schema_ == "cluster"
            and self.topology.cluster_size is not None
            and self.topology.cluster_size > self.clients
        ):
                raise ValueError(
                    f"spec.topology.clusterSize ({self.topology.cluster_size}) must be <= clients "
                    f"({self.clients})"
                )
        if ctx.get("check_registry", False):
            from red.registry import algorithms, tasks

            for what, reg, name in (
                ("algorithm", algorithms, self.algorithm.name),
                ("task", tasks, self.task.name),
            ):
                if name not in reg:
                    raise ValueError(
                        f"spec.{what}.name: unknown {what} {name!r}; use one of {', '.join(reg.names())}"
                    )
        return self

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
        if not DNS_LABEL.match(v) or len(v) > 63:
            raise ValueError(
                f"{v!r} is not a valid name: use lowercase letters, digits and '-', at most 63 "
                "characters, starting and ending with a letter or digit (e.g. 'digits-star')"
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
