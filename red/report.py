"""Progress reports: what each round, the end and a failure look like on the wire.

The same dictionaries feed every sink: the console, JSON lines (`red run --json`), a file, and the
operator's report channel. Keys are camelCase like the Federation's status, which they feed. Their
shape is `red.spec.status.EngineReport`, the contract the operator parses: `to_dict` goes through it
(its nodes through `NodeState.to_dict`, which writes a `NodeReport`).
Non-finite metrics (a diverging model) are written as null: JSON has no NaN.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from red.spec.health import HEALTHY, Health

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
    checkpoint: dict[str, Any] | None = None
    """The newest checkpoint saved or resumed from: {round, path, time}."""

    def to_dict(self) -> dict[str, Any]:
        # Here, not at the top: the runtime's actors import this module, and only the driver writes
        # reports (the status model is pydantic; see red.spec.health).
        from red.spec.status import EngineReport, finite_metrics

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
        if self.checkpoint is not None:
            d["checkpoint"] = dict(self.checkpoint)
        d.update(self.extra)
        # Metrics that are null (non-finite) are the one place the wire may differ from the model's
        # floats: they go out as null so `red run --json` still shows the key. The nodes skip the model:
        # `NodeState.to_dict` writes exactly a `NodeReport`'s keys from typed fields (tested), and putting
        # 10,000 of them through pydantic cost 120 ms and 11 MB of the driver's memory every round.
        nodes = d.pop("nodes")
        checked = EngineReport.model_validate({**d, "metrics": {k: v for k, v in metrics.items() if v is not None}})
        return {**checked.wire(), "metrics": metrics, "nodes": nodes}


def compact(report: dict[str, Any], max_nodes: int) -> dict[str, Any]:
    """``report`` (a `Report.to_dict`) with at most ``max_nodes`` nodes listed: a per-round line of a
    10,000-node federation must not be megabytes. Unhealthy nodes are listed first (they are what a
    reader looks for), ``nodesTotal`` and ``nodeHealth`` (nodes per health) summarise all of them, and
    ``nodesOmitted`` says how many were left out. A ``done`` report keeps its ``versions`` map in full:
    those are results, not progress. Returns a new dict; ``report`` is not changed."""
    nodes: list[dict[str, Any]] = list(report.get("nodes") or [])
    out = dict(report)
    health: dict[str, int] = {}
    for n in nodes:
        health[n["health"]] = health.get(n["health"], 0) + 1
    out["nodesTotal"] = len(nodes)
    out["nodeHealth"] = health
    if len(nodes) > max_nodes:
        ranked = sorted(nodes, key=lambda n: n["health"] in HEALTHY)  # stable: keeps order
        out["nodes"] = ranked[:max(max_nodes, 0)]
        out["nodesOmitted"] = len(nodes) - len(out["nodes"])
    return out


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1000):03d}Z"
