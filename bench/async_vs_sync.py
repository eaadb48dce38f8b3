"""Asynchronous (FedBuff) against synchronous (FedAvg) star when a third of the clients are 5x slower.

Every client's local epoch is padded to a fixed time so "5x slower" is exact: fast clients take
``--fast`` seconds per epoch, the slow third 5x that (digits param ``slowdown``). Both federations run
on the same local Ray, one actor per client, same data (iid), same learning rate. The clock starts at
the ``start`` report (every actor built) and stops at the first report with test accuracy >= 0.90.

    python bench/async_vs_sync.py [--clients 9] [--fast 0.1] [--target 0.9]
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

import common  # bench/common.py: the scripts run as `python bench/NAME.py`


def run(name: str, algorithm: dict[str, Any], clients: int, fast: float, rounds: int,
        target: float) -> dict[str, Any]:
    from red.runner import run_federation
    from red.sinks import CallbackSink

    slow = {f"client_{i}": 5 * fast for i in range(clients // 3)}
    padding = {f"client_{i}": fast for i in range(clients // 3, clients)}
    fed = common.star(
        name, rounds=rounds, clients=clients, algorithm=algorithm,
        task={"name": "digits", "params": {"partition": "iid", "epochs": 1, "lr": 0.2,
                                            "slowdown": {**padding, **slow}}},
        resources={"perNode": {"cpu": 0.1}, "broker": {"cpu": 0.1}},
    )
    out: dict[str, Any] = {"name": name, "reached": None, "rounds": 0, "accuracy": 0.0}
    t_start: list[float] = []

    def on(r: dict[str, Any]) -> None:
        if r["event"] == "start":
            t_start.append(time.perf_counter())
        elif r["event"] == "round":
            acc = r["metrics"].get("accuracy", 0.0)
            out["rounds"], out["accuracy"] = r["round"], acc
            if out["reached"] is None and acc >= target:
                out["reached"] = time.perf_counter() - t_start[0]
                out["reachedRound"] = r["round"]

    t0 = time.perf_counter()
    run_federation(fed, [CallbackSink(on)])
    out["total"] = time.perf_counter() - (t_start[0] if t_start else t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=9)
    ap.add_argument("--fast", type=float, default=0.1, help="seconds per local epoch of a fast client")
    ap.add_argument("--target", type=float, default=0.90)
    ap.add_argument("--sync-rounds", type=int, default=20)
    ap.add_argument("--async-aggregations", type=int, default=60)
    args = ap.parse_args()

    import ray

    ray.init(num_cpus=4, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    try:
        sync = run("bench-sync", {"name": "fedavg"}, args.clients, args.fast, args.sync_rounds, args.target)
        # K = the number of fast clients: an aggregation every fast cycle, mostly from fresh updates;
        # the slow third's updates still count, discounted by their staleness.
        k = max(1, args.clients - args.clients // 3)
        asyn = run("bench-async", {"name": "fedbuff", "params": {"bufferSize": k}},
                   args.clients, args.fast, args.async_aggregations, args.target)
    finally:
        ray.shutdown()
    print(f"{args.clients} clients, {args.clients // 3} of them 5x slower ({5 * args.fast:g}s vs "
          f"{args.fast:g}s per epoch); seconds from start to test accuracy >= {args.target}:")
    for r in (sync, asyn):
        reached = f"{r['reached']:.2f}s (round/version {r.get('reachedRound')})" if r["reached"] else "never"
        print(f"  {r['name']:12s} reached {reached}; final accuracy {r['accuracy']:.3f} after "
              f"{r['rounds']} rounds/versions in {r['total']:.2f}s")
    if sync["reached"] and asyn["reached"]:
        print(f"  async/sync time to target: {asyn['reached'] / sync['reached']:.2f}")


if __name__ == "__main__":
    main()
