"""Wire types: messages between nodes and entries of a node's version buffer."""

from __future__ import annotations

import time
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


@dataclass
class VersionEntry:
    """One entry of a node's version buffer."""

    id: str
    version: int
    model: Any
    timestamp: float
    meta: dict[str, Any] = field(default_factory=dict)


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
