"""Does examples/digits-async.yaml converge, every time, and before its synchronous twin finishes?

Runs the example (FedBuff, 9 clients, three of them slow) ``--runs`` times, and the synchronous twin
(the same file with ``algorithm: fedavg`` and ``--sync-rounds`` rounds) ``--sync-runs`` times, on one
local Ray. Seconds count from the ``start`` report (every actor built) to the last round's report.

    python bench/async_example.py [--runs 5] [--sync-runs 2] [--sync-rounds 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits-async.yaml"


def run_once(fed: Any) -> dict[str, float]:
    from red.runner import run_federation
    from red.sinks import CallbackSink

    out: dict[str, float] = {"accuracy": 0.0, "seconds": 0.0}
    t: list[float] = []

    def on(r: dict[str, Any]) -> None:
        if r["event"] == "start":
            t.append(time.perf_counter())
        elif r["event"] == "round":
            out["accuracy"] = r["metrics"]["accuracy"]
            out["seconds"] = time.perf_counter() - t[0]
            out["rounds"] = r["round"]

    run_federation(fed, [CallbackSink(on)])
    print(f"  {fed.spec.algorithm.name}: accuracy {out['accuracy']:.3f} after {out.get('rounds', 0):g} "
          f"rounds/versions, {out['seconds']:.1f}s", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--sync-runs", type=int, default=2)
    ap.add_argument("--sync-rounds", type=int, default=20)
    args = ap.parse_args()

    import ray

    from red.spec import load_federation

    fed = load_federation(str(EXAMPLE))
    twin = fed.model_copy(deep=True)
    twin.spec.algorithm.name, twin.spec.algorithm.params = "fedavg", {}
    twin.spec.rounds = args.sync_rounds
    from red.runner import init_ray

    init_ray()  # what `red run` does: a local Ray with every CPU, no dashboard
    try:
        asyn = [run_once(fed) for _ in range(args.runs)]
        sync = [run_once(twin) for _ in range(args.sync_runs)]
    finally:
        ray.shutdown()
    for label, rows in (("async (FedBuff, example)", asyn), (f"sync twin (FedAvg, {args.sync_rounds} rounds)", sync)):
        accs = [r["accuracy"] for r in rows]
        secs = [r["seconds"] for r in rows]
        print(f"{label}: accuracy {' '.join(f'{a:.3f}' for a in accs)} (min {min(accs):.3f}); "
              f"seconds {' '.join(f'{s:.1f}' for s in secs)} (median {statistics.median(secs):.1f})")
    print(f"every async run >= 0.90: {all(r['accuracy'] >= 0.90 for r in asyn)}; slowest async run before "
          f"the fastest sync run: {max(r['seconds'] for r in asyn) < min(r['seconds'] for r in sync)}")


if __name__ == "__main__":
    main()
