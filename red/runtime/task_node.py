"""Node actors that learn a `Task`: the model, the data, and the torch settings every schema shares."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from red.aggregation import Params
from red.runtime.node import FederatedNode
from red.runtime.resident import releasing_file_pages
from red.tasks.base import Task


@dataclass(frozen=True)
class BuildConfig:
    """What a `TaskNode` builds its task, model and data from. The schema makes one from the spec and
    gives each node a copy with its own ``index`` (``dataclasses.replace``)."""

    task_cls: type[Task]
    task_params: Mapping[str, Any]  # spec.task.params, free-form: the task checks them
    num_clients: int
    seed: int
    index: int = -1  # which client's data split this node trains on; -1: none (servers, heads)
    threads: int = 1  # torch threads per actor

    def make_task(self) -> Task:
        return self.task_cls(self.task_params, num_clients=self.num_clients, seed=self.seed)


class TaskNode(FederatedNode):
    """A FederatedNode holding ``self.task``, ``self.model`` and its data split."""

    task: Task
    model: Any
    data: Any
    test: Any

    def build(self, config: BuildConfig) -> None:
        gpu = assigned_gpu()
        # A CPU process never runs most of what loading torch's CUDA build reads (red.runtime.resident).
        with contextlib.nullcontext() if gpu else releasing_file_pages():
            import torch

        # Many small actors share few cores: one thread each avoids oversubscription (big win).
        torch.set_num_threads(config.threads)
        gpu = gpu and torch.cuda.is_available()
        self.task = config.make_task()
        self.model = self.task.create_model()
        if gpu:
            self.model = self.model.cuda()
        index = config.index
        self.data = self.task.client_data(index) if "train" in self.roles and index >= 0 else None
        self.test = self.task.test_data() if "eval" in self.roles else None

    @property
    def params(self) -> Params:
        return self.task.get_params(self.model)

    def load(self, params: Params) -> None:
        self.task.set_params(self.model, params)


def assigned_gpu() -> bool:
    try:
        return bool(ray.get_gpu_ids())
    except Exception:
        return False


def sample_clients(alive: list[str], fraction: float, seed: int, round: int) -> list[str]:
    """Deterministic per (seed, round): a resumed run samples exactly what the original did."""
    if fraction >= 1.0 or len(alive) <= 1:
        return sorted(alive)
    k = max(1, round_half_up(fraction * len(alive)))
    rng = np.random.default_rng([seed, round])
    return sorted(rng.choice(sorted(alive), size=k, replace=False).tolist())


def round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))
