"""A virtual node's health: the one piece of the status contract that the runtime's actors use.

Its own module, free of pydantic, so that a Ray worker running Red's actors does not build the spec and
status models it never reads (0.1-0.5 s of start-up each, more under load; round 1 came 0.3 s sooner).
`red.spec.status` re-exports it.
"""

from __future__ import annotations

from enum import StrEnum


class Health(StrEnum):
    """A virtual node's health as the engine's supervisor sees it."""

    PENDING = "Pending"
    ALIVE = "Alive"
    RESTARTING = "Restarting"
    DEAD = "Dead"
    FINISHED = "Finished"


HEALTHY = frozenset({Health.ALIVE, Health.FINISHED})
