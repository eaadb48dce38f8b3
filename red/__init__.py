"""Red: federated learning on Ray, run on Kubernetes as a first-class resource.

The engine's public face. Importing ``red`` is cheap (no Ray, no torch); runtime classes load lazily.
"""

from red._version import __version__
from red.errors import (
    CheckpointError,
    FederationFailed,
    PlacementError,
    RedError,
    RegistryError,
    SpecError,
    TopologyError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from red.registry import algorithms, schemas, tasks
    from red.runner import run_federation
    from red.spec import Federation, FederationSpec, load_federation

# Loaded on first use: every Ray worker that runs Red's actors imports this package, and none of them
# needs the spec model (pydantic) or the registries (see red.spec.health).
_FROM = {
    **dict.fromkeys(("algorithms", "schemas", "tasks"), "red.registry"),
    **dict.fromkeys(("Federation", "FederationSpec", "load_federation"), "red.spec"),
    "run_federation": "red.runner",
}

__all__ = [
    "CheckpointError",
    "Federation",
    "FederationFailed",
    "FederationSpec",
    "PlacementError",
    "RedError",
    "RegistryError",
    "SpecError",
    "TopologyError",
    "__version__",
    "algorithms",
    "load_federation",
    "run_federation",
    "schemas",
    "tasks",
]


def __getattr__(name: str) -> object:
    if name in _FROM:
        import importlib

        return getattr(importlib.import_module(_FROM[name]), name)
    raise AttributeError(f"module 'red' has no attribute {name!r}")
