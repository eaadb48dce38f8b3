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
from red.registry import algorithms, schemas, tasks
from red.spec import Federation, FederationSpec, load_federation

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
    "schemas",
    "tasks",
]
