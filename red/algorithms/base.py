"""The Algorithm interface: what clients are told to do, and how their updates are combined."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from red.aggregation import Params, RunningWeightedMean


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

    def accumulator(self, global_params: Params, *, version: int) -> Accumulator:
        """Where one round's updates go as they arrive: folded one by one into a `StreamingMean` when
        ``aggregate`` is the sample-weighted mean (`pre_aggregates`, the same test that lets pool hosts
        send partial means), else all kept (a median needs them all)."""
        if pre_aggregates(type(self)):
            return StreamingMean(self, global_params, version)
        return Accumulator(self, global_params, version)

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


class Accumulator:
    """One round's updates, gathered as they arrive; `result` is the round's aggregate.

    This one keeps every update (memory: one model per update). ``updates`` lists what arrived (sorted
    by sender in `result`, so aggregation is deterministic whatever the arrival order). An update may be
    a pool host's partial mean standing for several clients (`Update.members`): ``node_ids`` lists the
    clients covered, ``len`` counts the updates.
    """

    def __init__(self, algorithm: Algorithm, global_params: Params, version: int) -> None:
        self.algorithm, self.global_params, self.version = algorithm, global_params, version
        self.updates: list[Update] = []

    def add(self, update: Update) -> None:
        self.updates.append(update)

    def __len__(self) -> int:
        return len(self.updates)

    @property
    def node_ids(self) -> list[str]:
        return sorted(c for u in self.updates for c in u.covers)

    @property
    def num_samples(self) -> int:
        return sum(u.num_samples for u in self.updates)

    def result(self) -> Params:
        return self.algorithm.aggregate(self.global_params, sorted(self.updates, key=lambda u: u.node_id),
                                        version=self.version)


class StreamingMean(Accumulator):
    """The sample-weighted mean (FedAvg), folded update by update: memory is one model however many
    clients answer. ``updates`` keep their sender, samples, metrics and members but not their
    parameters. A pool host's partial mean folds in with its members' summed weight, which gives the
    mean of all their updates (the mean of weighted means is the weighted mean)."""

    def __init__(self, algorithm: Algorithm, global_params: Params, version: int) -> None:
        super().__init__(algorithm, global_params, version)
        self._mean = RunningWeightedMean()

    def add(self, update: Update) -> None:
        self._mean.add(update.params, max(update.num_samples, 1))
        self.updates.append(Update(update.node_id, {}, update.num_samples, update.base_version, update.metrics,
                                   list(update.members)))

    def result(self) -> Params:
        return self._mean.result()
