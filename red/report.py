"""Progress reports: what each round, the end and a failure look like on the wire.

The same dictionaries feed every sink: the console, JSON lines (`red run --json`), a file, and the
operator's report channel. Keys are camelCase like the Federation's status, which they feed. Their
shape is `red.spec.status.EngineReport`, the contract the operator parses: `to_dict` goes through it.
Non-finite metrics (a diverging model) are written as null: JSON has no NaN.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from red.spec.status import EngineReport, Health, finite_metrics

HealthName = Literal["Pending", "Alive", "Restarting", "Dead", "Finished"]


@dataclass
class NodeState:
    id: str
    role: str
    health: Health | HealthName = Health.PENDING
    version: int = 0
    restarts: int = 0
    last_heartbeat: float | None = None
    incarnation: str | None = None
    rounds: int = 0  # rounds whose aggregate included this node's update

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "health": Health(self.health).value,
            "version": self.version,
            "restarts": self.restarts,
            "lastHeartbeat": _iso(self.last_heartbeat),
        }


@dataclass
class Report:
    event: Literal["start", "round", "done", "failed"]
    federation: str
    round: int
    rounds: int
    metrics: dict[str, float] = field(default_factory=dict)
    nodes: list[NodeState] = field(default_factory=list)
    elapsed_seconds: float = 0.0
    reason: str | None = None
    message: str | None = None
    time: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)
    submission_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        metrics, _ = finite_metrics({k: round(v, 6) for k, v in self.metrics.items()})
        d: dict[str, Any] = {
            "event": self.event,
            "federation": self.federation,
            "round": self.round,
            "rounds": self.rounds,
            "metrics": metrics,
            "nodes": [n.to_dict() for n in self.nodes],
            "elapsedSeconds": round(self.elapsed_seconds, 3),
            "time": _iso(self.time),
        }
        if self.event == "done":
            d["versions"] = {n.id: n.version for n in self.nodes}
        if self.reason is not None:
            d["reason"] = self.reason
        if self.message is not None:
            d["message"] = self.message
        if self.submission_id is not None:
            d["submissionId"] = self.submission_id
        d.update(self.extra)
        # Metrics that are null (non-finite) are the one place the wire may differ from the model's
        # floats: they go out as null so `red run --json` still shows the key.
        checked = EngineReport.model_validate({**d, "metrics": {k: v for k, v in metrics.items() if v is not None}})
        return {**checked.wire(), "metrics": metrics}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1000):03d}Z"
