"""The Algorithm interface: what clients are told to do, and how their updates are combined."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from red.aggregation import Params


@dataclass
class Update:
    """One client's contribution to a round."""

    node_id: str
    params: Params
    num_samples: int
    base_version: int = 0  # the global version the client trained from (async staleness)
    metrics: dict[str, float] = field(default_factory=dict)


class Algorithm:
    """Base class. Subclasses set ``name`` and override ``aggregate``.

    ``asynchronous`` algorithms aggregate whenever ``buffer_size`` updates are in; synchronous ones
    once per round.
    """

    name: ClassVar[str] = "base"
    asynchronous: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        self.params = params
        self.state: dict[str, Any] = {}

    def client_config(self) -> dict[str, Any]:
        """Extra keyword arguments for the clients' local training (FedProx's μ, say)."""
        return {}

    def aggregate(self, global_params: Params, updates: list[Update], *, version: int) -> Params:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must keep to resume this algorithm exactly."""
        return dict(self.state)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = dict(state)
