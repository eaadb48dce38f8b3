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

TYPE_CHECKING = False
if TYPE_CHECKING:
    from red.runner import run_federation

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
    # `run_federation` is the main verb, but importing it eagerly would cost every `import red` the
    # runtime's imports; it loads on first use instead.
    if name == "run_federation":
        from red.runner import run_federation

        return run_federation
    raise AttributeError(f"module 'red' has no attribute {name!r}")
