"""Red's one exception tree. Every message says what was wrong and how to fix it.

    RedError
     ├── SpecError            a Federation file or object is invalid (names the field)
     ├── RegistryError        an unknown schema, algorithm or task name
     ├── TopologyError        a send to a node that is not a neighbour; an impossible graph
     ├── PlacementError       the placement group cannot be placed (names the missing resources)
     ├── FederationFailed     the run stopped: too few live nodes, a node raised, a stalled round
     └── CheckpointError      a checkpoint cannot be written or read

Callers catch `RedError` to handle everything Red raises on purpose; anything else is a bug.
"""

from __future__ import annotations


class RedError(Exception):
    """Base of every error Red raises on purpose."""


class SpecError(RedError, ValueError):
    """A Federation spec is invalid. `problems` holds one line per problem, each naming its field."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems: list[str] = problems if problems is not None else [message]


class RegistryError(RedError, KeyError):
    """A name (schema, algorithm, task) that nothing registered."""

    def __str__(self) -> str:  # KeyError would quote the message; we want it plain.
        return str(self.args[0]) if self.args else ""


class TopologyError(RedError):
    """A message was sent to a node that is not a neighbour, or a graph cannot be built."""


class PlacementError(RedError):
    """The federation's placement group cannot be placed on the Ray cluster."""


class FederationFailed(RedError):
    """A federation stopped before its last round. `reason` is a short CamelCase code."""

    def __init__(self, message: str, reason: str = "Failed") -> None:
        super().__init__(message)
        self.reason = reason


class CheckpointError(RedError):
    """A checkpoint could not be saved or loaded."""
