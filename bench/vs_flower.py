"""Red against Flower 1.42 (simulation), pfl-research 0.6 and one plain process, side by side, one run.

The identical workload for all four: scikit-learn digits, a 64-64-10 MLP (same seed-0 initial weights),
plain SGD with lr 0.1, batch 16, 1 local epoch, FedAvg weighted by samples, central evaluation on the
held-out set after every round and no client-side evaluation. The shards are Red's own (`DigitsTask`):
the parent writes them once to a file that every system reads.

* ``--clients 20`` (default): iid shards of the 1,437 training samples, every client every round.
* ``--clients 1000 --sample 0.1`` (or 10,000): every client draws ``--per-client`` samples with
  replacement (digits ``partition: bootstrap``), so no client is empty; 10% train each round.

Each system runs in its own subprocess, one after another: ``floor`` (the same clients trained one after
another in one process, one torch thread, no framework), ``pfl`` (``FederatedAveraging`` over a
``SimulatedBackend``), ``flower`` (``flwr.simulation.run_simulation``, Ray backend, 0.5 CPU per client)
and ``red`` (``red.runner.run_federation``, a fresh local Ray, spec defaults). Flower pins its own Ray
and pfl its own deps, so each gets a venv under ``~/.cache/red/bench-venvs/`` built on first use (pip's
cache is reused; delete the folder to rebuild).

Printed per system: median seconds per round after round 1, seconds from the command's start to the
end of round 1, peak total PSS of every process the system started (``/proc/*/smaps_rollup`` of the
process tree, sampled every 0.25 s), final accuracy; then the ratios issue 14 sets targets for.

    python bench/vs_flower.py [--clients 20] [--sample 1.0] [--rounds 15] [--systems floor pfl flower red]
                              [--repeat 3]   # medians of 3 interleaved runs (a shared machine is noisy)
    python bench/vs_flower.py --clients 10000 --sample 0.1 --rounds 10
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
VENVS = Path(os.environ.get("RED_BENCH_VENVS", Path.home() / ".cache" / "red" / "bench-venvs"))
# What each peer's venv holds. torch is whatever PyPI serves (its CUDA build), as for Red's own venv.
REQUIREMENTS = {
    "flower": ["flwr[simulation]==1.42.0", "torch", "scikit-learn"],
    "pfl": ["pfl[pytorch]==0.6.0", "scikit-learn"],
}
SEED = 0
LR = 0.1
BATCH = 16
EVENT = "BENCH "  # prefix of the children's JSON lines on stdout


# --- venvs -------------------------------------------------------------------------------------------
def venv_python(name: str) -> Path:
    """The peer's interpreter, building its venv first if it is missing or was built for other pins."""
    root = VENVS / name
    marker = root / ".red-bench-requirements"
    want = "\n".join(REQUIREMENTS[name])
    py = root / "bin" / "python"
    if py.exists() and marker.exists() and marker.read_text() == want:
        return py
    print(f"building the {name} venv in {root} (once; torch is a large download) ...", flush=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(root)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *REQUIREMENTS[name]], check=True)
    marker.write_text(want)
    return py


def start_venv_builds(systems: list[str]) -> dict[str, threading.Thread]:
    """Build missing venvs in the background while the systems that need none run."""
    out: dict[str, Path] = {}
    threads = {}
    for name in (s for s in systems if s in REQUIREMENTS):
        t = threading.Thread(target=lambda n=name: out.__setitem__(n, venv_python(n)), daemon=True)
        t.start()
        threads[name] = t
    return threads


# --- the workload file ---------------------------------------------------------------------------------
def task_params(clients: int, per_client: int) -> dict[str, Any]:
    part: dict[str, Any] = ({"partition": "iid"} if clients <= 100 else
                            {"partition": "bootstrap", "samplesPerClient": per_client})
    return {**part, "epochs": 1, "batchSize": BATCH, "lr": LR}


def write_workload(path: Path, clients: int, per_client: int) -> None:
    """Red's digits split and shards as arrays: what every system trains on."""
    import numpy as np

    from red.tasks.digits import DigitsTask

    task = DigitsTask(task_params(clients, per_client), num_clients=clients, seed=SEED)
    x, y = task.train_arrays()
    xt, yt = (t.numpy() for t in task.test_data())
    parts = [task.client_indices(i).astype(np.int32) for i in range(clients)]
    offsets = np.cumsum([0] + [len(p) for p in parts]).astype(np.int64)
    np.savez(path, x=x, y=y, xt=xt, yt=yt, idx=np.concatenate(parts), offsets=offsets)


# --- children (run inside each system's own interpreter; no red import except in `red`) --------------
def emit(**kw: Any) -> None:
    print(EVENT + json.dumps({"t": time.time(), **kw}), flush=True)


class Workload:
    def __init__(self, path: str) -> None:
        import numpy as np

        z = np.load(path)
        self.x, self.y, self.xt, self.yt = z["x"], z["y"], z["xt"], z["yt"]
        self.idx, self.offsets = z["idx"], z["offsets"]
        self.clients = len(self.offsets) - 1

    def client(self, i: int) -> tuple[Any, Any]:
        import torch

        rows = self.idx[self.offsets[i]: self.offsets[i + 1]]
        return torch.from_numpy(self.x[rows]), torch.from_numpy(self.y[rows])

    def test(self) -> tuple[Any, Any]:
        import torch

        return torch.from_numpy(self.xt), torch.from_numpy(self.yt)


def mlp() -> Any:
    import torch

    torch.manual_seed(SEED)  # as red.tasks.digits: every system starts from the same weights
    return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))


def local_sgd(model: Any, x: Any, y: Any, rnd: int) -> None:
    """One epoch of plain SGD, batch 16, lr 0.1, shuffled as Red's digits task shuffles."""
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=LR)
    loss_fn = torch.nn.CrossEntropyLoss()
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(SEED * 1_000_003 + rnd))
    model.train()
    for s in range(0, len(y), BATCH):
        b = perm[s: s + BATCH]
        opt.zero_grad()
        loss_fn(model(x[b]), y[b]).backward()
        opt.step()


def accuracy(model: Any, test: tuple[Any, Any]) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        return float((model(test[0]).argmax(1) == test[1]).float().mean())


def sampled(clients: int, fraction: float, rnd: int) -> list[int]:
    import numpy as np

    if fraction >= 1.0:
        return list(range(clients))
    k = max(1, int(np.floor(fraction * clients + 0.5)))
    return sorted(np.random.default_rng([SEED, rnd]).choice(clients, size=k, replace=False).tolist())


def child_floor(wl: Workload, rounds: int, fraction: float) -> None:
    import torch

    torch.set_num_threads(1)
    test = wl.test()
    g, m = mlp(), mlp()
    for r in range(1, rounds + 1):
        gs = {k: v.clone() for k, v in g.state_dict().items()}
        acc_sum: dict[str, Any] = {k: torch.zeros_like(v) for k, v in gs.items()}
        n = 0
        for i in sampled(wl.clients, fraction, r):
            x, y = wl.client(i)
            m.load_state_dict(gs)
            local_sgd(m, x, y, r)
            for k, v in m.state_dict().items():
                acc_sum[k] += v * len(y)
            n += len(y)
        g.load_state_dict({k: v / n for k, v in acc_sum.items()})
        emit(round=r, accuracy=accuracy(g, test))


def child_pfl(wl: Workload, rounds: int, fraction: float) -> None:
    import dataclasses

    import torch
    from pfl.aggregate.simulate import SimulatedBackend
    from pfl.aggregate.weighting import WeightByDatapoints
    from pfl.algorithm import FederatedAveraging, NNAlgorithmParams
    from pfl.callback.base import TrainingProcessCallback
    from pfl.data.federated_dataset import FederatedDataset
    from pfl.data.pytorch import PyTorchTensorDataset
    from pfl.data.sampling import MinimizeReuseUserSampler
    from pfl.hyperparam import NNTrainHyperParams
    from pfl.metrics import Metrics, Weighted
    from pfl.model.pytorch import PyTorchModel

    torch.set_num_threads(1)  # as the floor: threads only add overhead at this size

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp()

        def forward(self, x: Any) -> Any:
            return self.net(x)

        def loss(self, x: Any, y: Any, eval: bool = False) -> Any:
            self.train(not eval)
            return torch.nn.functional.cross_entropy(self(x), y)

        def metrics(self, x: Any, y: Any, eval: bool = True) -> dict[str, Any]:
            with torch.no_grad():
                out = self(x)
                loss = torch.nn.functional.cross_entropy(out, y, reduction="sum")
                correct = (out.argmax(1) == y).sum()
            return {"loss": Weighted(float(loss), len(y)), "accuracy": Weighted(float(correct), len(y))}

    class NoLocalEval(FederatedAveraging):  # type: ignore[misc]
        """pfl evaluates every sampled user before and after training by default: switch it off."""

        def get_next_central_contexts(self, *a: Any, **kw: Any) -> Any:
            ctxs, model, metrics = super().get_next_central_contexts(*a, **kw)
            if ctxs is not None:
                ctxs = tuple(dataclasses.replace(c, do_evaluation=False) for c in ctxs)
            return ctxs, model, metrics

    test = wl.test()

    class CentralEvalEveryRound(TrainingProcessCallback):  # type: ignore[misc]
        def after_central_iteration(self, aggregate_metrics: Any, model: Any, *,
                                    central_iteration: int) -> tuple[bool, Any]:
            emit(round=central_iteration + 1, accuracy=accuracy(model.pytorch_model, test))
            return False, Metrics()

    def make(uid: int) -> Any:
        x, y = wl.client(uid)
        return PyTorchTensorDataset(tensors=(x, y), user_id=str(uid))

    ids = list(range(wl.clients))
    data = FederatedDataset(make, MinimizeReuseUserSampler(ids),
                            user_id_to_weight={i: int(wl.offsets[i + 1] - wl.offsets[i]) for i in ids})
    net = Net()
    model = PyTorchModel(net, local_optimizer_create=torch.optim.SGD,
                         central_optimizer=torch.optim.SGD(net.parameters(), lr=1.0))
    cohort = len(sampled(wl.clients, fraction, 1))
    NoLocalEval().run(
        algorithm_params=NNAlgorithmParams(central_num_iterations=rounds, evaluation_frequency=1,
                                           train_cohort_size=cohort, val_cohort_size=0),
        backend=SimulatedBackend(training_data=data, val_data=data, postprocessors=[WeightByDatapoints()]),
        model=model,
        model_train_params=NNTrainHyperParams(local_learning_rate=LR, local_num_epochs=1,
                                              local_batch_size=BATCH),
        callbacks=[CentralEvalEveryRound()],
    )


def child_flower(wl_path: str, clients: int, rounds: int, fraction: float) -> None:
    import logging

    import numpy as np
    import torch
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation

    cache: dict[str, Workload] = {}

    def workload() -> Workload:  # loaded once per Ray worker process, then cached
        if "wl" not in cache:
            torch.set_num_threads(1)
            cache["wl"] = Workload(wl_path)
        return cache["wl"]

    def get(m: Any) -> list[Any]:
        return [v.detach().cpu().numpy() for v in m.state_dict().values()]

    def put(m: Any, arrays: list[Any]) -> None:
        m.load_state_dict({k: torch.tensor(a) for k, a in zip(m.state_dict(), arrays, strict=True)})

    class Client(NumPyClient):  # type: ignore[misc]
        def __init__(self, cid: int) -> None:
            self.cid = cid

        def fit(self, parameters: Any, config: dict[str, Any]) -> Any:
            x, y = workload().client(self.cid)
            m = mlp()
            put(m, parameters)
            local_sgd(m, x, y, int(config["round"]))
            return get(m), len(y), {}

    def client_fn(context: Context) -> Any:
        return Client(int(context.node_config["partition-id"])).to_client()

    test_model = mlp()

    def evaluate(server_round: int, parameters: Any, config: dict[str, Any]) -> Any:
        if server_round == 0:
            return None
        put(test_model, parameters)
        emit(round=server_round, accuracy=accuracy(test_model, workload().test()))
        return 0.0, {}

    def server_fn(context: Context) -> Any:
        strategy = FedAvg(
            fraction_fit=fraction, fraction_evaluate=0.0, min_fit_clients=max(1, int(fraction * clients)),
            min_evaluate_clients=0, min_available_clients=clients, evaluate_fn=evaluate,
            on_fit_config_fn=lambda r: {"round": r},
            initial_parameters=ndarrays_to_parameters(get(mlp())),
        )
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=rounds))

    _ = np
    run_simulation(
        server_app=ServerApp(server_fn=server_fn), client_app=ClientApp(client_fn=client_fn),
        num_supernodes=clients, backend_config={"client_resources": {"num_cpus": 0.5, "num_gpus": 0.0}},
        verbose_logging=False,
    )
    logging.shutdown()


def child_red(clients: int, rounds: int, fraction: float, per_client: int) -> None:
    sys.path.insert(0, str(HERE))
    import common  # bench/common.py

    from red.runner import run_federation
    from red.sinks import CallbackSink

    fed = common.star("bench-vs", rounds=rounds, clients=clients, sampleFraction=fraction,
                      task={"name": "digits", "params": task_params(clients, per_client)},
                      resources={}, fault_tolerance={"roundTimeoutSeconds": 900})

    def on(r: dict[str, Any]) -> None:
        if r["event"] == "round":
            emit(round=r["round"], accuracy=r["metrics"]["accuracy"])
        elif r["event"] == "start":
            emit(started=sum(1 for n in r["nodes"] if n["role"] == "host"))

    run_federation(fed, [CallbackSink(on)])


# --- the parent --------------------------------------------------------------------------------------
def tree_pss(root: int) -> int:
    """Total PSS in bytes of ``root`` and every descendant (Linux /proc)."""
    parent: dict[int, int] = {}
    for e in os.listdir("/proc"):
        if e.isdigit():
            try:
                with open(f"/proc/{e}/stat") as f:
                    parent[int(e)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    kids: dict[int, list[int]] = {}
    for p, pp in parent.items():
        kids.setdefault(pp, []).append(p)
    total, frontier = 0, [root]
    while frontier:
        p = frontier.pop()
        frontier.extend(kids.get(p, []))
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
    return total


def run_system(name: str, cmd: list[str], env: dict[str, str], timeout: float) -> dict[str, Any]:
    load = os.getloadavg()[0]  # the systems run one after another: a busier machine shows here
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], tree_pss(proc.pid))
            stop.wait(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
    stop.set()
    sampler.join()
    events = [json.loads(x[len(EVENT):]) for x in out.splitlines() if x.startswith(EVENT)]
    rounds = [e for e in events if "round" in e]
    if proc.returncode != 0 or not rounds:
        print(f"{name}: failed (exit {proc.returncode}) after {len(rounds)} rounds\n{err[-3000:]}",
              file=sys.stderr, flush=True)
        if not rounds:
            return {"name": name, "failed": True}
        name += f" (stopped after {len(rounds)} rounds)"  # what it did before the timeout still counts
    gaps = [b["t"] - a["t"] for a, b in itertools.pairwise(rounds)]
    return {
        "name": name,
        "system": name.split(" ")[0],
        "perRound": statistics.median(gaps) if gaps else float("nan"),
        "perRoundMin": min(gaps) if gaps else float("nan"),
        "perRoundMax": max(gaps) if gaps else float("nan"),
        "toRound1": rounds[0]["t"] - t0,
        "total": time.time() - t0,
        "pssMiB": peak[0] / 2**20,
        "accuracy": rounds[-1]["accuracy"],
        "rounds": len(rounds),
        "load": load,
    }


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One system's row over ``--repeat`` runs: the median of each figure, and the spread of the time to
    round 1 (the figure the host's noise moves most). This machine is shared, so one run is one sample."""
    ok = [r for r in runs if not r.get("failed")]
    if not ok:
        return runs[0]
    med = {k: statistics.median(r[k] for r in ok) for k in ("perRound", "toRound1", "pssMiB", "accuracy", "load")}
    return {
        **ok[0], **med,
        "perRoundMin": min(r["perRoundMin"] for r in ok), "perRoundMax": max(r["perRoundMax"] for r in ok),
        "toRound1Min": min(r["toRound1"] for r in ok), "toRound1Max": max(r["toRound1"] for r in ok),
        "runs": len(ok),
    }


def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    ok = {r["name"]: r for r in rows if not r.get("failed")}
    shards = "iid shards" if args.clients <= 100 else f"{args.per_client} samples each, bootstrap"
    lines = [f"workload: digits, {args.clients} clients ({shards}), "
             f"{args.sample:.0%} sampled per round, {args.rounds} rounds, 64-64-10 MLP, 1 epoch, batch {BATCH}, "
             f"lr {LR}, FedAvg, central eval every round; {os.cpu_count()} CPUs"
             + (f"; median of {args.repeat} runs per system, interleaved" if args.repeat > 1 else ""),
             "",
             "| measure | " + " | ".join(ok) + " |",
             "|---|" + "---|" * len(ok)]
    fmt = [
        ("s/round, median after round 1 (min–max)",
         lambda r: f"{r['perRound']:.4f} ({r['perRoundMin']:.3f}–{r['perRoundMax']:.3f})"),
        ("start to end of round 1 (s)", lambda r: f"{r['toRound1']:.1f}" + (
            f" ({r['toRound1Min']:.1f}–{r['toRound1Max']:.1f})" if r.get("runs", 1) > 1 else "")),
        ("peak PSS, all processes (MiB)", lambda r: f"{r['pssMiB']:.0f}"),
        ("final accuracy", lambda r: f"{r['accuracy']:.3f}"),
        ("machine load average when started", lambda r: f"{r['load']:.1f}"),
    ]
    for label, f in fmt:
        lines.append(f"| {label} | " + " | ".join(f(r) for r in ok.values()) + " |")
    by_system = {r["system"]: r for r in ok.values()}
    red, fl, pf, fo = (by_system.get(k) for k in ("red", "flower", "pfl", "floor"))
    if red:
        lines.append("")
        checks: list[tuple[str, float, str]] = []
        if pf:
            checks += [("Red/pfl per round", red["perRound"] / pf["perRound"], "<= 1"),
                       ("Red/pfl to round 1", red["toRound1"] / pf["toRound1"], "<= 1.5"),
                       ("Red/pfl PSS", red["pssMiB"] / pf["pssMiB"], "")]
        if fl:
            checks += [("Flower/Red per round", fl["perRound"] / red["perRound"], ">= 10"),
                       ("Red/Flower to round 1", red["toRound1"] / fl["toRound1"], "<= 0.33"),
                       ("Red/Flower PSS", red["pssMiB"] / fl["pssMiB"], "<= 0.5")]
        if fo:
            checks += [("Red/floor per round", red["perRound"] / fo["perRound"], "<= 1")]
        for label, v, target in checks:
            lines.append(f"{label}: {v:.2f}" + (f" (target {target})" if target else ""))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--sample", type=float, default=1.0, help="fraction of clients trained per round")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--per-client", type=int, default=50, help="samples per client above 100 clients")
    ap.add_argument("--systems", nargs="+", default=["floor", "pfl", "flower", "red"],
                    choices=["floor", "pfl", "flower", "red"])
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per system")
    ap.add_argument("--repeat", type=int, default=1,
                    help="run every system this many times, in turn, and print the medians")
    ap.add_argument("--json", help="also write the rows to this file")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--workload", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        if args.child == "workload":
            write_workload(Path(args.workload), args.clients, args.per_client)
        elif args.child == "floor":
            child_floor(Workload(args.workload), args.rounds, args.sample)
        elif args.child == "pfl":
            child_pfl(Workload(args.workload), args.rounds, args.sample)
        elif args.child == "flower":
            child_flower(args.workload, args.clients, args.rounds, args.sample)
        else:
            child_red(args.clients, args.rounds, args.sample, args.per_client)
        return

    builds = start_venv_builds(args.systems)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.systems}
    with tempfile.TemporaryDirectory(prefix="red-vs-") as tmp:
        wl = Path(tmp) / "workload.npz"
        # In a process of its own: the parent must not map torch, or the systems' torch pages would be
        # shared with a process outside the tree measured (PSS halves them, and the kernel keeps pages
        # another process maps resident: see red/runtime/resident.py).
        subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", "workload", "--workload", str(wl),
                        "--clients", str(args.clients), "--per-client", str(args.per_client)], check=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "operator"), env.get("PYTHONPATH", "")])
        common_args = ["--clients", str(args.clients), "--sample", str(args.sample), "--rounds",
                       str(args.rounds), "--per-client", str(args.per_client), "--workload", str(wl)]
        for name in [n for _ in range(args.repeat) for n in args.systems]:
            if name in builds:
                builds[name].join()
                py = str(venv_python(name))
                child_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            else:
                py, child_env = sys.executable, env
            print(f"running {name} ...", flush=True)
            r = run_system(name, [py, str(Path(__file__).resolve()), "--child", name, *common_args],
                           child_env, args.timeout)
            runs[name].append(r)
            if not r.get("failed"):
                print(f"  {name}: {r['perRound']:.4f} s/round, round 1 after {r['toRound1']:.1f} s, "
                      f"PSS {r['pssMiB']:.0f} MiB, accuracy {r['accuracy']:.3f}", flush=True)
    rows = [combine(rs) for rs in runs.values()]
    print()
    print(table(rows, args))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
