"""`Federation.status` as a model: the CRD's status schema is generated from it.

The operator's `fold()` builds the status as a dict (it is written as a merge patch); this model is
the contract that dict must meet. The CRD's status schema comes from here (`red.spec.crd`), and the
operator's tests validate what `fold()` writes against it with unknown fields forbidden: a field the
operator writes but the schema lacks would otherwise be pruned by the API server without a word.

Every field may be absent (a new Federation has no status yet), so each has a default; defaults are
not written into the CRD.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from red.spec.status import Health, Phase


class _Status(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class Condition(_Status):
    type: str
    status: Literal["True", "False", "Unknown"]
    reason: str = ""
    message: str = ""
    observed_generation: int = 0
    last_transition_time: datetime | None = None


class RayClusterStatus(_Status):
    name: str = ""
    ready: bool = False
    existing: bool = False
    desired_workers: int = 0
    ready_workers: int = 0
    dashboard_url: str = Field(default="", alias="dashboardURL")


class JobStatus(_Status):
    submission_id: str = ""
    status: str = ""
    message: str = ""
    attempts: int = 0
    failures: int = 0
    counted_failure: str = ""
    submit_time: datetime | None = None


class NodeStatus(_Status):
    id: str = ""
    role: str = ""
    health: Health = Health.PENDING
    version: int = 0
    restarts: int = 0
    last_heartbeat: str | None = None


class CheckpointStatus(_Status):
    round: int = 0
    path: str = ""
    time: str = ""


class FederationStatus(_Status):
    observed_generation: int = 0
    phase: Phase = Phase.PENDING
    reason: str = ""
    message: str = ""
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    ray_cluster: RayClusterStatus = Field(default_factory=RayClusterStatus)
    job: JobStatus = Field(default_factory=JobStatus)
    round: int = 0
    progress: str = Field(default="", description="round/rounds, for display.")
    healthy_nodes: str = Field(default="", description="healthy/total, for display.")
    nodes: list[NodeStatus] = Field(default_factory=list)
    metrics: dict[str, float] = Field(default_factory=dict)
    checkpoint: CheckpointStatus | None = Field(
        default=None,
        description="The newest checkpoint: where a resumed run (after suspend or a retry) starts.",
    )
    versions: dict[str, str] = Field(
        default_factory=dict,
        description="The software the engine ran on, as it saw it: red, ray, torch, python, cuda "
        "(absent without a usable GPU) and image (absent when unknown).",
    )
    last_report_time: datetime | None = None
    report_time: str = Field(default="", description="The engine's timestamp of the last report.")
    start_time: datetime | None = None
    completion_time: datetime | None = None


# Fields that are nullable in the CRD: everything else is absent rather than null (status is written
# as a merge patch, where null deletes the key).
NULLABLE = frozenset({"lastHeartbeat"})
