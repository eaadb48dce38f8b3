"""Red: federated learning on Ray, run on Kubernetes as a first-class resource.

The engine's public face. Importing ``red`` is cheap (no Ray, no torch); runtime classes load lazily.
"""

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

__version__ = "0.1.0"

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
    "algorithms",
    "load_federation",
    "schemas",
    "tasks",
]
