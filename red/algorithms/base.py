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
    # A pre-aggregated update (see `Algorithm.pre_aggregate`) stands for these clients; empty: just node_id.
    members: list[str] = field(default_factory=list)

    @property
    def covers(self) -> list[str]:
        return self.members or [self.node_id]


class Algorithm:
    """Base class. Subclasses set ``name`` and override ``aggregate``.

    ``asynchronous`` algorithms aggregate whenever ``buffer_size`` updates are in; synchronous ones
    once per round.
    """

    name: ClassVar[str] = "base"
    asynchronous: ClassVar[bool] = False
    # True when ``aggregate`` is the sample-weighted mean of the updates' params (FedAvg, FedProx): then
    # a pool host may send one weighted partial mean for all the clients it trained, which aggregates
    # to the same model (`pre_aggregates`). Median and trimmed mean need every update.
    pre_aggregate: ClassVar[bool] = False

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


def pre_aggregates(cls: type[Algorithm]) -> bool:
    """Whether ``cls`` may be given weighted partial means: ``pre_aggregate`` as declared by the class
    that defines its ``aggregate``, so a subclass that overrides ``aggregate`` never inherits it."""
    for klass in cls.__mro__:
        if "aggregate" in vars(klass):
            return bool(vars(klass).get("pre_aggregate", False))
    return False
