"""The built-in `digits` task: scikit-learn's bundled 8x8 digits (offline), a 64-64-10 MLP.

Params (``spec.task.params``): ``partition`` (``iid`` | ``dirichlet`` | ``bootstrap``), ``alpha``
(Dirichlet concentration, default 0.5), ``samplesPerClient`` (``bootstrap``: each client draws this
many training samples with replacement, deterministic in seed and client index, default 50: every
client holds real data at any number of clients), ``epochs`` (1), ``lr`` (0.1), ``batchSize`` (16), ``hidden`` (64),
``testFraction`` (0.2), ``slowdown`` (seconds added per local epoch to chosen clients, for straggler
experiments: ``{"client_3": 0.05}``), ``poison`` (client ids that send garbage, for robustness tests).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from red.errors import SpecError
from red.tasks.base import Task, TrainResult

DigitsData = tuple[Any, Any]  # (features tensor, labels tensor)


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as (features, labels), read from its CSV without importing
    scikit-learn: that import (with SciPy) costs every node actor seconds of start-up and about 50 MB.
    Falls back to ``sklearn.datasets.load_digits`` if the file is not where it has always been."""
    import gzip
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        path = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if path.is_file():
            with gzip.open(path, "rt") as f:
                data = np.loadtxt(f, delimiter=",")
            return data[:, :-1], data[:, -1].astype(int)
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x, y


@functools.lru_cache(maxsize=4)
def _dataset(seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    x, y = load_digits_arrays()
    x = (x / 16.0).astype(np.float32)
    y = y.astype(np.int64)
    rng = np.random.default_rng(seed)
    test_idx: list[int] = []
    for c in range(10):  # stratified: each class keeps its share in the held-out set
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test_idx.extend(idx[: round(len(idx) * test_fraction)].tolist())
    mask = np.zeros(len(y), dtype=bool)
    mask[test_idx] = True
    return x[~mask], y[~mask], x[mask], y[mask]


def dirichlet_partition(
    labels: np.ndarray, num_clients: int, alpha: float, seed: int, min_size: int = 2
) -> list[np.ndarray]:
    """Split indices among clients with per-class proportions drawn from Dir(alpha).

    Redraws (bounded) until every client has at least ``min_size`` samples, so that no client is empty.
    """
    if num_clients * min_size > len(labels):
        min_size = max(len(labels) // num_clients, 1) if len(labels) >= num_clients else 0
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    best: list[np.ndarray] = []
    for _ in range(100):
        parts: list[list[int]] = [[] for _ in range(num_clients)]
        for c in classes:
            idx = np.flatnonzero(labels == c)
            rng.shuffle(idx)
            props = rng.dirichlet(np.full(num_clients, alpha))
            cuts = (np.cumsum(props) * len(idx)).astype(int)[:-1]
            for i, chunk in enumerate(np.split(idx, cuts)):
                parts[i].extend(chunk.tolist())
        best = [np.array(sorted(p), dtype=np.int64) for p in parts]
        if min(len(p) for p in best) >= min_size:
            return best
    # Extremely skewed draws: top up the smallest clients from the largest ones.
    for i in range(num_clients):
        while len(best[i]) < min_size:
            donor = max(range(num_clients), key=lambda j: len(best[j]))
            best[i] = np.append(best[i], best[donor][-1])
            best[donor] = best[donor][:-1]
    return best


def iid_partition(n: int, num_clients: int, seed: int) -> list[np.ndarray]:
    idx = np.random.default_rng(seed).permutation(n)
    return [np.sort(p) for p in np.array_split(idx, num_clients)]


class DigitsTask(Task):
    def __init__(self, params: Mapping[str, Any], *, num_clients: int, seed: int = 0) -> None:
        super().__init__(params, num_clients=num_clients, seed=seed)
        p = self.params
        self.partition = str(p.get("partition", "dirichlet"))
        if self.partition not in ("iid", "dirichlet", "bootstrap"):
            raise SpecError(
                "spec.task.params.partition: must be 'iid', 'dirichlet' or 'bootstrap', "
                f"got {self.partition!r}"
            )
        self.samples_per_client = int(p.get("samplesPerClient", 50))
        if self.samples_per_client < 1:
            raise SpecError(f"spec.task.params.samplesPerClient: must be >= 1, got {self.samples_per_client}")
        self.alpha = float(p.get("alpha", 0.5))
        if self.alpha <= 0:
            raise SpecError(f"spec.task.params.alpha: must be > 0, got {self.alpha}")
        self.epochs = int(p.get("epochs", 1))
        self.lr = float(p.get("lr", 0.1))
        self.batch_size = int(p.get("batchSize", 16))
        self.hidden = int(p.get("hidden", 64))
        self.test_fraction = float(p.get("testFraction", 0.2))
        if not 0 < self.test_fraction < 1:
            raise SpecError(f"spec.task.params.testFraction: must be between 0 and 1, got {self.test_fraction}")
        self.slowdown: dict[str, float] = {str(k): float(v) for k, v in dict(p.get("slowdown", {})).items()}
        self.poison: set[str] = {str(x) for x in p.get("poison", [])}
        if self.epochs < 1 or self.lr <= 0 or self.batch_size < 1 or self.hidden < 1:
            raise SpecError("spec.task.params: epochs, lr, batchSize and hidden must all be positive")

    def _parts(self) -> list[np.ndarray]:
        _, y, _, _ = _dataset(self.seed, self.test_fraction)
        if self.partition == "iid":
            return iid_partition(len(y), self.num_clients, self.seed)
        return dirichlet_partition(y, self.num_clients, self.alpha, self.seed)

    def create_model(self) -> Any:
        import torch

        torch.manual_seed(self.seed)  # every node starts from the same weights
        return torch.nn.Sequential(
            torch.nn.Linear(64, self.hidden), torch.nn.ReLU(), torch.nn.Linear(self.hidden, 10)
        )

    def client_indices(self, index: int) -> np.ndarray:
        """Rows of the training set (`train_arrays`) that client ``index`` holds."""
        return _cached_parts(self, index)

    def train_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        x, y, _, _ = _dataset(self.seed, self.test_fraction)
        return x, y

    def client_data(self, index: int) -> DigitsData:
        import torch

        x, y, _, _ = _dataset(self.seed, self.test_fraction)
        idx = _cached_parts(self, index)
        return torch.from_numpy(x[idx]), torch.from_numpy(y[idx])

    def test_data(self) -> DigitsData:
        import torch

        _, _, xt, yt = _dataset(self.seed, self.test_fraction)
        return torch.from_numpy(xt), torch.from_numpy(yt)

    def train(
        self,
        model: Any,
        data: DigitsData,
        *,
        prox_mu: float = 0.0,
        node_id: str = "",
        round: int = 0,
        # The Task plugin interface: keyword arguments from the algorithm's client_config(); another
        # algorithm's extra keys are not this task's business (see red.schemas.star.local_update).
        **_: Any,
    ) -> TrainResult:
        import time

        import torch

        x, y = data
        device = next(model.parameters()).device
        x, y = x.to(device), y.to(device)
        if node_id in self.poison:
            # A Byzantine client: large random weights, claiming many samples.
            with torch.no_grad():
                g = torch.Generator().manual_seed(round)
                for prm in model.parameters():
                    prm.copy_(torch.randn(prm.shape, generator=g) * 50)
            return TrainResult(num_samples=len(y), metrics={})
        anchor = [p.detach().clone() for p in model.parameters()] if prox_mu > 0 else None
        # Plain SGD by hand: the same update as torch.optim.SGD(lr) without momentum or weight decay
        # (param -= lr * grad), but creating a torch optimizer first imports torch._dynamo, seconds
        # of every node actor's first round.
        params = [p for p in model.parameters() if p.requires_grad]
        loss_fn = torch.nn.CrossEntropyLoss()
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + round)
        model.train()
        total = 0.0
        steps = 0
        for _epoch in range(self.epochs):
            perm = torch.randperm(len(y), generator=gen)
            for s in range(0, len(y), self.batch_size):
                b = perm[s : s + self.batch_size]
                for p in params:
                    p.grad = None
                loss = loss_fn(model(x[b]), y[b])
                if anchor is not None:
                    prox = sum(((p - a) ** 2).sum() for p, a in zip(model.parameters(), anchor, strict=True))
                    loss = loss + 0.5 * prox_mu * prox
                loss.backward()
                with torch.no_grad():
                    for p in params:
                        if p.grad is not None:
                            p.add_(p.grad, alpha=-self.lr)
                total += loss.item()
                steps += 1
            if node_id in self.slowdown:
                time.sleep(self.slowdown[node_id])
        return TrainResult(num_samples=len(y), metrics={"train_loss": total / max(steps, 1)})

    def evaluate(self, model: Any, data: DigitsData) -> dict[str, float]:
        import torch

        x, y = data
        device = next(model.parameters()).device
        model.eval()
        with torch.no_grad():
            out = model(x.to(device))
            loss = torch.nn.functional.cross_entropy(out, y.to(device))
            acc = (out.argmax(dim=1) == y.to(device)).float().mean()
        return {"accuracy": float(acc), "loss": float(loss)}


def bootstrap_indices(n: int, samples: int, seed: int, index: int) -> np.ndarray:
    """Client ``index``'s ``samples`` training indices, drawn with replacement from ``n``: computed
    per client from (seed, index) alone, so 10,000 clients cost nothing until each is used."""
    return np.sort(np.random.default_rng([seed, index]).integers(0, n, size=samples))


def _cached_parts(task: DigitsTask, index: int) -> np.ndarray:
    if task.partition == "bootstrap":
        if not 0 <= index < task.num_clients:
            raise IndexError(f"client index {index} out of range for {task.num_clients} clients")
        n = len(_dataset(task.seed, task.test_fraction)[1])
        return bootstrap_indices(n, task.samples_per_client, task.seed, index)
    key = (task.seed, task.test_fraction, task.partition, task.alpha, task.num_clients)
    parts = _PARTS.get(key)
    if parts is None:
        parts = _PARTS[key] = task._parts()
    if not 0 <= index < len(parts):
        raise IndexError(f"client index {index} out of range for {len(parts)} clients")
    return parts[index]


_PARTS: dict[tuple[Any, ...], list[np.ndarray]] = {}
