"""Peak memory and seconds per round of a star federation at 100, 1,000 and 10,000 virtual clients.

Each size runs in a fresh process with its own local Ray (``num_cpus=2``, like the development
machine): FedAvg on digits, 10% of the clients sampled per round, 5 rounds. ``maxActors`` is left unset,
so the engine decides the pool (`red.runtime.pool.decide_pool_size`): as many host actors as CPUs
(2 here) serve every client, whose state lives in the federation's TopologyManager between uses.

Peak RSS is sampled every 0.2 s over the driver and all of its descendants (GCS, raylet, Ray workers
and actors): shared pages are counted once per process, so it overstates, evenly at every size.

    python bench/scale.py [--sizes 100 1000 10000] [--rounds 5] [--fraction 0.1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import common  # bench/common.py: the scripts run as `python bench/NAME.py`


def _tree_rss() -> tuple[int, int]:
    """(driver RSS, RSS of every descendant process) in bytes, read from /proc (Linux)."""
    import os

    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/statm") as f:
                rss[int(entry)] = int(f.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue  # the process ended while we looked
        parent[int(entry)] = int(fields[1])
    me = os.getpid()
    kids, frontier = 0, [me]
    while frontier:
        p = frontier.pop()
        for child in (c for c, pp in parent.items() if pp == p):
            kids += rss.get(child, 0)
            frontier.append(child)
    return rss.get(me, 0), kids


def one(clients: int, rounds: int, fraction: float) -> dict[str, Any]:
    import ray

    from red.runner import run_federation
    from red.sinks import CallbackSink

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    peak = {"total": 0, "driver": 0, "ray": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            d, k = _tree_rss()
            peak["driver"] = max(peak["driver"], d)
            peak["ray"] = max(peak["ray"], k)
            peak["total"] = max(peak["total"], d + k)
            stop.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    fed = common.star(
        f"scale-{clients}", rounds=rounds, clients=clients, sampleFraction=fraction,
        task={"name": "digits", "params": {"partition": "iid", "epochs": 1}},
        resources={"perNode": {"cpu": 0.1}, "broker": {"cpu": 0.1}},
        fault_tolerance={"roundTimeoutSeconds": 600},
    )
    stamps: list[float] = []
    acc: list[float] = []
    hosts: list[int] = []

    def on(r: dict[str, Any]) -> None:
        if r["event"] == "start":
            hosts.append(sum(1 for n in r["nodes"] if n["role"] == "host"))
        if r["event"] in ("start", "round"):
            stamps.append(time.perf_counter())
        if r["event"] == "round":
            acc.append(r["metrics"]["accuracy"])

    t0 = time.perf_counter()
    try:
        run_federation(fed, [CallbackSink(on)])
    finally:
        stop.set()
        sampler.join()
        ray.shutdown()
    per_round = [b - a for a, b in itertools.pairwise(stamps)]
    return {
        "clients": clients,
        "sampledPerRound": max(1, round(fraction * clients)),
        "hosts": hosts[0] if hosts else 0,
        "startSeconds": stamps[0] - t0 if stamps else None,
        "firstRoundSeconds": per_round[0] if per_round else None,
        "medianRoundSeconds": statistics.median(per_round[1:] or per_round) if per_round else None,
        "peakRssMiB": peak["total"] / 2**20,
        "peakDriverMiB": peak["driver"] / 2**20,
        "peakRayMiB": peak["ray"] / 2**20,
        "finalAccuracy": acc[-1] if acc else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--fraction", type=float, default=0.1)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child mode: one size, JSON out
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(one(args.one, args.rounds, args.fraction)), flush=True)
        return
    rows = []
    for n in args.sizes:
        # A fresh process (and Ray) per size, so one size's peak never leaks into the next.
        proc = subprocess.run(
            [sys.executable, __file__, "--one", str(n), "--rounds", str(args.rounds),
             "--fraction", str(args.fraction)],
            capture_output=True, text=True, check=False,
        )
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            print(f"{n} clients: failed (exit {proc.returncode})\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        rows.append(json.loads(line[len("RESULT "):]))
        r = rows[-1]
        print(f"{r['clients']:>6} clients ({r['sampledPerRound']} per round, {r['hosts']} hosts): "
              f"peak RSS {r['peakRssMiB']:.0f} MiB (driver {r['peakDriverMiB']:.0f}, Ray "
              f"{r['peakRayMiB']:.0f}); start {r['startSeconds']:.1f}s, first round "
              f"{r['firstRoundSeconds']:.2f}s, median round {r['medianRoundSeconds']:.2f}s, "
              f"accuracy {r['finalAccuracy']:.3f}", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
