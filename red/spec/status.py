"""The engine's report on the wire: one typed contract between the engine and the operator.

The engine builds a `red.report.Report` and writes `EngineReport`'s shape (`Report.to_dict`) to every
sink: the console, `red run --json`, and the Federation's report ConfigMap. The operator reads that
ConfigMap with `parse_report`, which treats the text as untrusted input (the engine's ServiceAccount can
write it, so any user code can): it is size-bounded, non-finite numbers are dropped with a note, and a
wrong shape becomes a `problem` to report as a condition, never an exception.

    reading = parse_report(text, submission_id="red-fl-1234abcd-2")
    reading.report      # EngineReport, or None when the text is unusable
    reading.problem     # why it is unusable (a message for a condition)
    reading.notes       # what was dropped or cut, though the report was used
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

# Re-exported: Health lives in its own pydantic-free module for the runtime's actors (see there).
from red.spec.health import HEALTHY as HEALTHY
from red.spec.health import Health as Health


class Phase(StrEnum):
    """`Federation.status.phase`. Conditions are the truth; the phase is for display."""

    PENDING = "Pending"
    STARTING = "Starting"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


TERMINAL_PHASES = frozenset({Phase.SUCCEEDED, Phase.FAILED})


class Event(StrEnum):
    START = "start"
    ROUND = "round"
    DONE = "done"
    FAILED = "failed"


# Bounds on what the operator reads (a ConfigMap holds at most 1 MiB; status must stay far smaller).
MAX_REPORT_BYTES = 512 * 1024
MAX_NODES = 200
MAX_METRICS = 32
MAX_TEXT = 1024
MAX_ID = 253
# The operator tells the engine which image it started (the engine reports it in `software`).
IMAGE_ENV = "RED_ENGINE_IMAGE"
MAX_SOFTWARE = 16
MAX_SOFTWARE_TEXT = 256

Count = Annotated[int, Field(strict=True, ge=0)]


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="allow", allow_inf_nan=False
    )


class NodeReport(_Wire):
    """One virtual node in a report (and in `Federation.status.nodes`)."""

    id: Annotated[str, Field(min_length=1, max_length=MAX_ID)]
    role: Annotated[str, Field(max_length=63)] = ""
    health: Health = Health.PENDING
    version: Count = 0
    restarts: Count = 0
    last_heartbeat: Annotated[str, Field(max_length=64)] | None = None

    def status_entry(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "role": self.role,
            "health": self.health.value,
            "version": self.version,
            "restarts": self.restarts,
            "lastHeartbeat": self.last_heartbeat,
        }


class CheckpointReport(_Wire):
    """The newest checkpoint of a run (`Federation.status.checkpoint`)."""

    round: Count
    path: Annotated[str, Field(max_length=MAX_TEXT)]
    time: Annotated[str, Field(max_length=64)] = ""

    def status_entry(self) -> dict[str, Any]:
        return {"round": self.round, "path": self.path, "time": self.time}


class EngineReport(_Wire):
    """The engine's latest word on a run. Keys are camelCase like the status they feed."""

    event: Event
    federation: Annotated[str, Field(max_length=MAX_ID)]
    submission_id: Annotated[str, Field(max_length=MAX_ID)] | None = None
    """The Ray job submission that wrote it; the operator ignores reports of other attempts."""
    round: Count
    rounds: Count
    metrics: dict[str, float] = Field(default_factory=dict)
    nodes: list[NodeReport] = Field(default_factory=list)
    nodes_total: Count | None = None
    """How many nodes the federation has when `nodes` lists only some of them."""
    elapsed_seconds: float | None = None
    time: Annotated[str, Field(max_length=64)] | None = None
    versions: dict[str, Count] | None = None
    software: dict[str, str | None] | None = None
    """What the run uses (`red.software`): red, ray, torch, python, cuda, image; None where unknown."""
    # Unbounded here so the engine never fails to write a long message; `parse_report` cuts both.
    reason: str | None = None
    message: str | None = None
    checkpoint: CheckpointReport | None = None
    """The newest checkpoint saved (or resumed from) by this attempt."""

    def wire(self) -> dict[str, Any]:
        """The JSON-ready dict, with exactly the keys it was built from."""
        out: dict[str, Any] = self.model_dump(mode="json", by_alias=True, exclude_unset=True)
        return out


@dataclass(frozen=True)
class ReportReading:
    """The outcome of reading a report: usable (`report`), maybe with `notes`, or unusable (`problem`)."""

    report: EngineReport | None
    problem: str | None = None
    notes: tuple[str, ...] = ()
    other_attempt: str | None = None
    """Set (to that report's submission id) when the report was valid but written by another attempt."""


def finite_metrics(metrics: dict[str, Any]) -> tuple[dict[str, float | None], list[str]]:
    """Metrics as storable JSON: non-finite numbers become null (JSON has no NaN). Returns the names
    that were non-finite."""
    out: dict[str, float | None] = {}
    bad: list[str] = []
    for k, v in metrics.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None
            bad.append(k)
        else:
            out[k] = v
    return out, bad


def _scrub(value: Any, path: str, notes: list[str]) -> Any:
    """Replace non-finite floats anywhere by None, noting where."""
    if isinstance(value, float) and not math.isfinite(value):
        notes.append(f"{path} was {value}")
        return None
    if isinstance(value, dict):
        return {k: _scrub(v, f"{path}.{k}", notes) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, f"{path}[{i}]", notes) for i, v in enumerate(value)]
    return value


def _clean_metrics(raw: Any, notes: list[str]) -> Any:
    if not isinstance(raw, dict):
        return raw  # the model names the wrong shape
    kept: dict[str, float] = {}
    dropped: list[str] = []
    for k, v in raw.items():
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and len(str(k)) <= 63:
            kept[str(k)] = float(v)
        else:
            dropped.append(str(k)[:63])
    if dropped:
        notes.append(f"dropped metric(s) that are not finite numbers: {', '.join(sorted(dropped)[:10])}")
    if len(kept) > MAX_METRICS:
        notes.append(f"kept {MAX_METRICS} of {len(kept)} metrics")
        kept = dict(sorted(kept.items())[:MAX_METRICS])
    return kept


def _clean_software(raw: Any, notes: list[str]) -> Any:
    """At most MAX_SOFTWARE names, each a short string or None; anything else is dropped with a note."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        notes.append(f"dropped software: not an object ({type(raw).__name__})")
        return None
    kept: dict[str, str | None] = {}
    for k, v in raw.items():
        if len(kept) >= MAX_SOFTWARE:
            notes.append(f"kept {MAX_SOFTWARE} of {len(raw)} software versions")
            break
        if not isinstance(k, str) or len(k) > 63 or not (v is None or isinstance(v, str)):
            notes.append(f"dropped software version {str(k)[:63]!r}: not a name and a string")
            continue
        kept[k] = v if v is None or len(v) <= MAX_SOFTWARE_TEXT else v[:MAX_SOFTWARE_TEXT] + "…"
    return kept


def _bound_nodes(raw: Any, notes: list[str]) -> tuple[Any, int | None]:
    """At most MAX_NODES nodes, the unhealthy ones first (they are the news)."""
    if not isinstance(raw, list) or len(raw) <= MAX_NODES:
        return raw, None
    healthy = {h.value for h in HEALTHY}
    ordered = sorted(raw, key=lambda n: isinstance(n, dict) and n.get("health") in healthy)
    notes.append(f"listing {MAX_NODES} of {len(raw)} nodes (unhealthy first)")
    return ordered[:MAX_NODES], len(raw)


def _problem(err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:5]:
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        parts.append(f"{loc}: {e['msg']}")
    more = len(err.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def parse_report(raw: str | bytes | Any, *, submission_id: str | None = None) -> ReportReading:
    """Validate a report: the ConfigMap's text, or an already decoded object. Never raises.

    `submission_id`, when given, must match the report's: a report of another attempt is not this
    attempt's news (it becomes a `problem` with `report=None`)."""
    notes: list[str] = []
    if isinstance(raw, str | bytes):
        size = len(raw)
        if size > MAX_REPORT_BYTES:
            return ReportReading(None, f"the report is {size} bytes; at most {MAX_REPORT_BYTES} are read")
        try:
            raw = json.loads(raw)
        except ValueError as err:
            return ReportReading(None, f"the report is not JSON: {err}")
    if not isinstance(raw, dict):
        return ReportReading(None, f"the report must be a JSON object, got {type(raw).__name__}")
    data = _scrub(dict(raw), "report", notes)
    data["metrics"] = _clean_metrics(data.get("metrics") or {}, notes)
    data["nodes"], total = _bound_nodes(data.get("nodes") or [], notes)
    if "software" in data:
        data["software"] = _clean_software(data["software"], notes)
    if total is not None and not isinstance(data.get("nodesTotal"), int):
        data["nodesTotal"] = total
    for key in ("reason", "message"):
        if isinstance(data.get(key), str) and len(data[key]) > MAX_TEXT:
            data[key] = data[key][:MAX_TEXT] + "…"
    # Scrubbed metrics were noted by _clean_metrics already; keep one note per problem.
    notes = [n for n in notes if not n.startswith("report.metrics.")]
    try:
        report = EngineReport.model_validate(data)
    except ValidationError as err:
        return ReportReading(None, f"the report does not match the engine's report schema: {_problem(err)}")
    if submission_id is not None and report.submission_id != submission_id:
        return ReportReading(None, other_attempt=report.submission_id or "(none)")
    return ReportReading(report, None, tuple(notes))
