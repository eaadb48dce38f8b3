"""A virtual node's health: the one piece of the status contract that the runtime's actors use.

Its own module, free of pydantic, so that a Ray worker running Red's actors does not build the spec and
status models it never reads (0.3-0.5 s of start-up CPU in each of them). `red.spec.status` re-exports it.
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
