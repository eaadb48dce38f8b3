"""Wire types: messages between nodes, and what a node records per version for the driver to read."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Bodies at least this large are stored once with ray.put and fanned out by reference; smaller ones
# travel inline, which measured ~3x faster for tiny messages (see FACTS.md / bench/broadcast.py).
INLINE_LIMIT_BYTES = 256 * 1024


@dataclass
class Message:
    header: str
    body: Any
    sender: str | None = None  # None: the driver (the federation's broker)
    timestamp: float = field(default_factory=time.time)
    by_ref: bool = False  # body is an ObjectRef to resolve on receipt


@dataclass(frozen=True)
class RoundRecord:
    """What a node records with a version when it finishes a round; the driver reads it to report the
    round, update its node table and write checkpoints (`red.schemas.base.Schema.run`)."""

    round: int
    metrics: Mapping[str, float] = field(default_factory=dict)
    participants: tuple[str, ...] = ()  # whose updates the round aggregated
    # A server's view of the federation, so a restarted server (or a resumed run) counts on exactly:
    client_versions: Mapping[str, int] = field(default_factory=dict)  # node id → its newest version
    participation: Mapping[str, int] = field(default_factory=dict)  # node id → rounds it took part in
    algorithm_state: Mapping[str, Any] | None = None  # the algorithm's state_dict() (FedBuff's buffer...)


@dataclass(frozen=True)
class VersionEntry:
    """One entry of a node's version buffer: the model's parameters at that version, if recorded, and
    the round it finished, if any (a client records its version without a round's results)."""

    id: str
    version: int
    params: Any  # red.aggregation.Params, or None
    timestamp: float
    record: RoundRecord | None = None

    @property
    def round(self) -> int:
        """The round this entry finished (its version when it carries no record)."""
        return self.record.round if self.record is not None else self.version

    @property
    def metrics(self) -> dict[str, float]:
        return dict(self.record.metrics) if self.record is not None else {}


def payload_bytes(obj: Any, _depth: int = 0) -> int:
    """A cheap estimate of a body's size: arrays and bytes count, containers are walked (shallowly)."""
    if _depth > 4:
        return 0
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, bytes | bytearray | memoryview):
        return len(obj)
    if isinstance(obj, dict):
        return sum(payload_bytes(v, _depth + 1) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(payload_bytes(v, _depth + 1) for v in obj[:10_000])
    nbytes = getattr(obj, "nbytes", None)  # torch tensors and friends
    return int(nbytes) if isinstance(nbytes, int) else 0
