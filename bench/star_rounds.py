"""Seconds per round of the digits star federation at 20 clients (after the first round).

Workload as Flower's measured set-up (FACTS.md): FedAvg, 20 clients, 64-64-10 MLP, 1 local epoch,
batch 16, central evaluation every round. Baseline in the same run: the same clients trained one after
another in one plain process (no framework). Flower 1.42's simulation engine measured 0.53 s/round on
this machine class; it pins its own Ray, so it is quoted rather than run here.

    python bench/star_rounds.py [--clients 20] [--rounds 15]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from typing import Any

import common  # bench/common.py: the scripts run as `python bench/NAME.py`

FLOWER_SECONDS_PER_ROUND = 0.53  # FACTS.md: Flower 1.42 simulation, same workload, same machine class
FACTS_BASELINE_SECONDS = 0.05  # FACTS.md: the same clients one after another in one process, same day


def red_federation(clients: int, rounds: int, max_actors: int | None = None) -> tuple[list[float], float, float]:
    from red.runner import run_federation
    from red.sinks import CallbackSink

    fed = common.star(
        "bench-star", rounds=rounds, clients=clients,
        task={"name": "digits", "params": {"partition": "iid", "epochs": 1, "batchSize": 16}},
        resources={"perNode": {"cpu": 0.05}, "broker": {"cpu": 0.05}, "maxActors": max_actors},
    )
    stamps: list[float] = []
    t0 = time.perf_counter()
    start: list[float] = []

    def on(r: dict[str, Any]) -> None:
        if r["event"] == "start":
            start.append(time.perf_counter())
        if r["event"] == "round":
            stamps.append(time.perf_counter())

    done = run_federation(fed, [CallbackSink(on)])
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    return gaps, start[0] - t0, done["metrics"]["accuracy"]


def sequential_baseline(clients: int, rounds: int) -> list[float]:
    import torch

    from red.aggregation import weighted_mean
    from red.tasks.digits import DigitsTask

    torch.set_num_threads(1)
    task = DigitsTask({"partition": "iid", "epochs": 1, "batchSize": 16}, num_clients=clients, seed=0)
    data = [task.client_data(i) for i in range(clients)]
    test = task.test_data()
    g = task.create_model()
    m = task.create_model()
    times = []
    for r in range(1, rounds + 1):
        t = time.perf_counter()
        gp = task.get_params(g)
        ups, ws = [], []
        for i in range(clients):
            task.set_params(m, gp)
            ws.append(task.train(m, data[i], round=r).num_samples)
            ups.append(task.get_params(m))
        task.set_params(g, weighted_mean(ups, ws))
        task.evaluate(g, test)
        times.append(time.perf_counter() - t)
    return times[1:]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    seq = sequential_baseline(args.clients, args.rounds)
    seq_med = statistics.median(seq)
    print(f"clients={args.clients} rounds={args.rounds}")
    print(f"baseline (one process, clients one after another): median {seq_med:.4f} s/round")
    # A loaded machine slows everything: scale Flower's figure by how much slower the in-process
    # baseline ran here than when Flower was measured (both are plain CPU work on the same data).
    drift = seq_med / FACTS_BASELINE_SECONDS
    flower = FLOWER_SECONDS_PER_ROUND * drift
    print(f"Flower 1.42 (FACTS.md, {FLOWER_SECONDS_PER_ROUND} s/round) scaled by this run's load factor "
          f"{drift:.2f}: {flower:.3f} s/round")
    # One actor per virtual node (fault isolation per node), then the same clients multiplexed onto a
    # pool of 2 host actors (spec.resources.maxActors: 3 = server + 2 hosts): fewer processes, fewer
    # Ray calls per round, much faster start-up on a small machine.
    for label, max_actors in (("one actor per node", None), ("pooled, maxActors=3", 3)):
        per_round, startup, acc = red_federation(args.clients, args.rounds, max_actors)
        med = statistics.median(per_round)
        print(f"red [{label}]: start-up {startup:.1f} s; s/round after round 1: median {med:.4f} "
              f"mean {statistics.mean(per_round):.4f} min {min(per_round):.4f} max {max(per_round):.4f}; "
              f"accuracy {acc:.3f}")
        print(f"red [{label}]: {med / seq_med:.2f}x the sequential baseline; "
              f"{flower / med:.1f}x faster than Flower (target >= 5x)")


if __name__ == "__main__":
    main()
