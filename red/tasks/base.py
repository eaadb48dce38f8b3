"""The Task interface: a model factory, per-client data, local training and evaluation.

Write your own by subclassing `Task` and registering it::

    import red.tasks

    @red.tasks.register("my-task")
    class MyTask(red.tasks.Task):
        def create_model(self): ...
        def client_data(self, index): ...
        def test_data(self): ...
        def train(self, model, data, **kwargs): ...
        def evaluate(self, model, data): ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

from red.aggregation import Params


@dataclass
class TrainResult:
    num_samples: int
    metrics: dict[str, float] = field(default_factory=dict)


class Task:
    """Base class of tasks. ``params`` is ``spec.task.params``; data must be deterministic in ``seed``."""

    def __init__(self, params: Mapping[str, Any], *, num_clients: int, seed: int = 0) -> None:
        self.params = dict(params)
        self.num_clients = num_clients
        self.seed = seed

    # --- to implement -------------------------------------------------------------------------
    def create_model(self) -> torch.nn.Module:
        raise NotImplementedError

    def client_data(self, index: int) -> Any:
        raise NotImplementedError

    def test_data(self) -> Any:
        raise NotImplementedError

    def train(self, model: torch.nn.Module, data: Any, **kwargs: Any) -> TrainResult:
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, data: Any) -> dict[str, float]:
        raise NotImplementedError

    # --- shared helpers ------------------------------------------------------------------------
    @staticmethod
    def get_params(model: torch.nn.Module) -> Params:
        return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}

    @staticmethod
    def set_params(model: torch.nn.Module, params: Mapping[str, np.ndarray]) -> None:
        import torch

        device = next(model.parameters()).device
        # torch.tensor copies: arrays from Ray messages are read-only views of its object store.
        model.load_state_dict({k: torch.tensor(np.asarray(v), device=device) for k, v in params.items()})
