"""Name → implementation registries for schemas, algorithms and tasks.

Built-ins are registered by dotted path so that naming them (e.g. while validating a spec in the
operator) never imports Ray or torch. User code adds entries with the decorator::

    from red import schemas

    @schemas.register("lollipop")
    class Lollipop(DecentralizedFederatedLearning):
        @classmethod
        def build_graph(cls, fed, ids):
            return nx.relabel_nodes(nx.lollipop_graph(3, len(ids) - 3), dict(enumerate(ids)))

or through the ``red.schemas`` / ``red.algorithms`` / ``red.tasks`` entry-point groups of an installed
package, so that a YAML file can name them. Code that is not installed (a Ray job's working_dir) is
listed in ``spec.runtimeEnv.imports``; the engine imports it before it looks names up (`red.user_code`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from red.errors import RegistryError

T = TypeVar("T")


class Registry(Generic[T]):
    """A registry of one kind of thing (``kind`` names it in error messages)."""

    def __init__(self, kind: str, group: str, builtins: dict[str, str]) -> None:
        self.kind = kind
        self.group = group
        self._paths: dict[str, str] = dict(builtins)
        self._objects: dict[str, T] = {}
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``obj`` under ``name`` (replacing an earlier one of that name)."""

        def decorator(obj: T) -> T:
            self._objects[name] = obj
            self._paths.pop(name, None)
            return obj

        return decorator

    def add(self, name: str, obj: T) -> None:
        self._objects[name] = obj

    def names(self) -> list[str]:
        self._load_entry_points()
        return sorted(set(self._paths) | set(self._objects))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.names()

    def get(self, name: str) -> T:
        """The implementation registered as ``name``; imports a built-in on first use."""
        if name in self._objects:
            return self._objects[name]
        self._load_entry_points()
        if name in self._objects:
            return self._objects[name]
        path = self._paths.get(name)
        if path is None:
            raise RegistryError(
                f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}. "
                f"Register a custom one with @red.{self.group.split('.')[-1]}.register({name!r}) "
                f"or the {self.group!r} entry point."
            )
        module_name, _, attr = path.partition(":")
        obj: T = getattr(importlib.import_module(module_name), attr)
        self._objects[name] = obj
        return obj

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self.group):
            self._paths.setdefault(ep.name, ep.value)


schemas: Registry[Any] = Registry(
    "schema",
    "red.schemas",
    {
        "star": "red.schemas.star:StarFederatedLearning",
        "ring": "red.schemas.decentralized:RingFederatedLearning",
        "mesh": "red.schemas.decentralized:MeshFederatedLearning",
        "k-regular": "red.schemas.decentralized:KRegularFederatedLearning",
        "custom": "red.schemas.decentralized:CustomFederatedLearning",
        "cluster": "red.schemas.cluster:ClusterFederatedLearning",
    },
)

algorithms: Registry[Any] = Registry(
    "algorithm",
    "red.algorithms",
    {
        "fedavg": "red.algorithms.builtin:FedAvg",
        "fedprox": "red.algorithms.builtin:FedProx",
        "median": "red.algorithms.builtin:Median",
        "trimmed-mean": "red.algorithms.builtin:TrimmedMean",
        "fedbuff": "red.algorithms.builtin:FedBuff",
    },
)

tasks: Registry[Any] = Registry("task", "red.tasks", {"digits": "red.tasks.digits:DigitsTask"})
