"""The engine's fast paths give the same model as the plain ones, on a real local Ray.

Pool hosts answer a synchronous round with one message (`StarClientProgram.on_batch`): FedAvg and
FedProx get one sample-weighted partial mean per host, median and trimmed mean every update in one
message. `StarFederatedLearning.host_batching = False` is the unbatched path (one message per client),
and one actor per client (no pool) the plainest; all must end at the same parameters.

A pooled run on CPUs has a server without torch (`HostEvalStarServer`): a pool host evaluates for it.
`StarFederatedLearning.host_evaluation = False` is the server that evaluates itself; both must give the
same rounds exactly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import red.tasks
from red.algorithms.base import Accumulator, StreamingMean, Update, pre_aggregates
from red.algorithms.builtin import FedAvg, FedBuff, FedProx, Median, TrimmedMean
from red.errors import FederationFailed
from red.registry import schemas
from red.report import Report
from red.schemas.star import StarFederatedLearning
from red.tasks.digits import DigitsTask
from tests.helpers import make_fed

POOLED = {"perNode": {"cpu": 0.1}, "broker": {"cpu": 0.1}, "maxActors": 3}  # server + 2 pool hosts
OWN = {"perNode": {"cpu": 0.1}, "broker": {"cpu": 0.1}, "maxActors": 7}  # one actor per client
TASK = {"name": "digits", "params": {"partition": "iid", "lr": 0.2, "epochs": 1}}


def _final(
    name: str, algorithm: dict[str, Any], resources: dict[str, Any], on_report: Any = None, *,
    clients: int = 6, rounds: int = 3, task: dict[str, Any] = TASK,
) -> tuple[Any, list[dict[str, Any]]]:
    fed = make_fed(name, clients=clients, rounds=rounds, task=task, algorithm=algorithm, resources=resources)
    sch = schemas.get("star")(fed)
    reports: list[dict[str, Any]] = []

    def emit(r: Report) -> None:
        reports.append(r.to_dict())
        if on_report is not None:
            on_report(sch, reports[-1])

    sch.run(emit)
    assert sch._latest is not None
    return sch, [r for r in reports if r["event"] == "round"]


@pytest.mark.ray
@pytest.mark.parametrize("algorithm", [{"name": "fedavg"}, {"name": "median"}])
def test_batched_pool_gives_the_unbatched_model(ray_clean: Any, monkeypatch: pytest.MonkeyPatch,
                                                algorithm: dict[str, Any]) -> None:
    fast, fast_rounds = _final(f"fast-{algorithm['name']}", algorithm, POOLED)
    assert len(fast.hosts) == 2
    monkeypatch.setattr(StarFederatedLearning, "host_batching", False)
    plain, plain_rounds = _final(f"plain-{algorithm['name']}", algorithm, POOLED)
    own, _ = _final(f"own-{algorithm['name']}", algorithm, OWN)
    assert not own.hosts
    for other in (plain, own):
        for k, v in fast._latest["params"].items():
            np.testing.assert_allclose(v, other._latest["params"][k], rtol=1e-5, atol=1e-6, err_msg=k)
    # Every client is counted as a participant, whether its update travelled alone or in a partial mean.
    assert [r["metrics"]["participants"] for r in fast_rounds] == [6.0] * 3
    assert [r["metrics"]["accuracy"] for r in fast_rounds] == pytest.approx(
        [r["metrics"]["accuracy"] for r in plain_rounds], abs=1e-6)
    assert {c: fast.state[c].rounds for c in fast.client_ids()} == {c: 3 for c in fast.client_ids()}
    assert fast._latest["participation"] == plain._latest["participation"]


@pytest.mark.ray
@pytest.mark.parametrize("algorithm", [{"name": "fedavg"}, {"name": "fedbuff", "params": {"bufferSize": 2}}])
def test_a_server_without_torch_gives_the_same_rounds(ray_clean: Any, monkeypatch: pytest.MonkeyPatch,
                                                      algorithm: dict[str, Any]) -> None:
    import ray

    loaded: dict[str, bool] = {}

    def look(sch: Any, report: dict[str, Any]) -> None:  # while the actors run
        if report["event"] == "round" and not loaded:
            for node in ("server", "pool-0"):
                loaded[node] = ray.get(sch.actors[node].handle.imported.remote("torch"))

    lean, lean_rounds = _final(f"lean-{algorithm['name']}", algorithm, POOLED, look)
    assert lean.nodes["server"].template.__name__ == "HostEvalStarServer"
    assert loaded == {"server": False, "pool-0": True}, loaded
    monkeypatch.setattr(StarFederatedLearning, "host_evaluation", False)
    loaded.clear()
    plain, plain_rounds = _final(f"plain-eval-{algorithm['name']}", algorithm, POOLED, look)
    assert loaded == {"server": True, "pool-0": True}, loaded
    if algorithm["name"] == "fedbuff":  # asynchronous: the order updates arrive in differs run to run
        assert len(lean_rounds) == len(plain_rounds) == 3
        # Evaluated on a host while the others train: above chance (0.1), so the trained model was evaluated.
        assert lean_rounds[-1]["metrics"]["accuracy"] > 0.3, lean_rounds
        return
    assert [r["metrics"] for r in lean_rounds] == [r["metrics"] for r in plain_rounds]
    for k, v in plain._latest["params"].items():
        assert lean._latest["params"][k].dtype == v.dtype, k
        np.testing.assert_array_equal(lean._latest["params"][k], v, err_msg=k)


class EvalRaises(DigitsTask):
    """Digits whose evaluation has a bug: the error must reach the user as it is, from whichever process
    evaluates (a pool host, for a server without torch)."""

    def evaluate(self, model: Any, data: Any) -> dict[str, float]:
        raise ValueError("bad evaluation in the task's own code")


class TrainRaises(DigitsTask):
    """Digits whose training has a bug for one client, the last of a batch in sorted order: with one host
    and three trainers (`ENGINE_POOL`), a forked trainer trains it."""

    def train(self, model: Any, data: Any, **kwargs: Any) -> Any:
        if kwargs.get("node_id") == "client_9":
            raise ValueError("bad batch in the task's own code for client_9")
        return super().train(model, data, **kwargs)


# No maxActors: the engine sizes the pool. 40 clients do not fit one actor each on the test Ray's 4 CPUs
# at 0.1 CPU a node, so the engine pools them on 4 slots: one host with 3 forked trainers, or (with
# spec.resources.forkTrainers: false) 4 hosts, each its own torch process.
ENGINE_POOL = {"perNode": {"cpu": 0.1}, "broker": {"cpu": 0.1}}
ROUNDS = 6


@pytest.mark.ray
@pytest.mark.parametrize(
    ("task_cls", "clients", "resources", "message"),
    [
        (EvalRaises, 6, POOLED, "bad evaluation in the task's own code"),  # in a host, for the server
        (TrainRaises, 40, ENGINE_POOL, "bad batch in the task's own code for client_9"),  # in a forked trainer
    ],
)
def test_an_error_in_the_tasks_code_on_a_host_is_the_tasks_error(
    ray_clean: Any, monkeypatch: pytest.MonkeyPatch, task_cls: type, clients: int, resources: dict[str, Any],
    message: str,
) -> None:
    # Registered for this test only: other tests list the known tasks in their expected messages.
    monkeypatch.setitem(red.tasks.tasks._objects, "digits-raises", task_cls)
    fed = make_fed("raises", clients=clients, rounds=3, task={"name": "digits-raises", "params": TASK["params"]},
                   resources=resources)
    sch = schemas.get("star")(fed)
    assert sch.nodes["server"].template.__name__ == "HostEvalStarServer"
    assert sch.host_config.trainers == (3 if resources is ENGINE_POOL else 0)
    with pytest.raises(FederationFailed) as err:
        sch.run(lambda r: None)
    assert err.value.reason == "NodeError"
    assert message in str(err.value), err.value
    assert "no pool host" not in str(err.value), err.value  # not taken for a dead host


@pytest.mark.parametrize(
    ("cls", "expect"),
    [(FedAvg, True), (FedProx, True), (Median, False), (TrimmedMean, False), (FedBuff, False)],
)
def test_which_algorithms_take_partial_means(cls: type, expect: bool) -> None:
    assert pre_aggregates(cls) is expect


def test_a_fedavg_subclass_with_its_own_aggregate_gets_every_update() -> None:
    class Clipped(FedAvg):
        def aggregate(self, global_params: Any, updates: list[Update], *, version: int) -> Any:
            return super().aggregate(global_params, updates, version=version)

    assert not pre_aggregates(Clipped)


@pytest.mark.parametrize("split", [[1, 5], [3, 3], [2, 2, 2], [6]])
def test_mean_of_weighted_partial_means_is_the_weighted_mean(split: list[int]) -> None:
    rng = np.random.default_rng(0)
    ups = [Update(f"c{i}", {"w": rng.normal(size=(4, 3)).astype(np.float32)}, int(rng.integers(0, 90)))
           for i in range(6)]
    whole = FedAvg().aggregate({}, ups, version=0)
    parts, start = [], 0
    for n in split:
        group = ups[start:start + n]
        start += n
        w = [max(u.num_samples, 1) for u in group]
        mean = FedAvg().aggregate({}, [Update(u.node_id, u.params, x) for u, x in zip(group, w, strict=True)],
                                  version=0)
        parts.append(Update(group[0].node_id, mean, sum(w), members=[u.node_id for u in group]))
    np.testing.assert_allclose(FedAvg().aggregate({}, parts, version=0)["w"], whole["w"], rtol=1e-6)


def test_partial_means_fold_into_the_servers_streaming_mean() -> None:
    # The server's round accumulator takes pool hosts' partial means like single updates: folded with
    # their members' summed weight they give the mean of every client's update, and every member counts.
    rng = np.random.default_rng(2)
    ups = [Update(f"c{i}", {"w": rng.normal(size=(4, 3)).astype(np.float32)}, int(rng.integers(1, 90)))
           for i in range(6)]
    host = FedAvg().aggregate({}, ups[:4], version=0)
    acc = FedAvg().accumulator({}, version=0)
    assert isinstance(acc, StreamingMean)
    acc.add(Update("c0", host, sum(u.num_samples for u in ups[:4]), members=[u.node_id for u in ups[:4]]))
    for u in ups[4:]:
        acc.add(u)
    np.testing.assert_allclose(acc.result()["w"], FedAvg().aggregate({}, ups, version=0)["w"], rtol=1e-6)
    assert len(acc) == 3 and acc.node_ids == [f"c{i}" for i in range(6)]
    assert all(not u.params for u in acc.updates)  # one model held, not one per update


def test_an_algorithm_with_its_own_aggregate_keeps_every_update() -> None:
    class Clipped(FedAvg):
        def aggregate(self, global_params: Any, updates: list[Update], *, version: int) -> Any:
            return {"n": np.array([len(updates)])}

    acc = Clipped().accumulator({}, version=0)
    assert type(acc) is Accumulator
    for i in range(3):
        acc.add(Update(f"c{i}", {"w": np.zeros(2)}, 1))
    assert acc.result()["n"][0] == 3  # its aggregate ran, over every update
    assert type(Median().accumulator({}, version=0)) is Accumulator


@pytest.mark.ray
def test_forked_trainers_give_the_model_of_one_host_per_core(ray_clean: Any) -> None:
    import os
    import signal

    import ray

    seen: dict[str, Any] = {}

    def kill_a_trainer(sch: Any, report: dict[str, Any]) -> None:
        if report["event"] != "round":
            return
        host = sch.actors["pool-0"].handle
        if "killed" not in seen:
            stats = seen["killed"] = ray.get(host.stats.remote())
            os.kill(stats["trainers"][0], signal.SIGKILL)  # its share from now on is trained by the host
        seen["last"] = ray.get(host.stats.remote())

    def run(name: str, hook: Any = None, **resources: Any) -> tuple[Any, list[dict[str, Any]]]:
        return _final(name, {"name": "fedavg"}, {**ENGINE_POOL, **resources}, hook, clients=40, rounds=ROUNDS)

    forked, forked_rounds = run("forked", kill_a_trainer)
    assert list(forked.hosts) == ["pool-0"]
    assert forked.hosts["pool-0"].num_cpus == pytest.approx(0.4)  # the host asks Ray for its trainers' cores
    killed, last = seen["killed"], seen["last"]
    assert len(killed["trainers"]) == 3 and killed["trainerCalls"] >= 3  # round 1 was shared out
    # Batches were trained after the kill (else this test checked nothing about it) ...
    assert killed["served"] < ROUNDS * 40, killed
    # ... by the two trainers left and the host: every client, every round.
    assert last["trainers"] == killed["trainers"][1:]
    assert last["served"] == ROUNDS * 40
    assert last["trainerCalls"] > killed["trainerCalls"]

    plain, plain_rounds = run("one-per-core", forkTrainers=False)
    assert sorted(plain.hosts) == ["pool-0", "pool-1", "pool-2", "pool-3"]
    for k, v in plain._latest["params"].items():
        np.testing.assert_allclose(forked._latest["params"][k], v, rtol=1e-5, atol=1e-6, err_msg=k)
    assert [r["metrics"]["participants"] for r in forked_rounds] == [40.0] * ROUNDS
    assert [r["metrics"]["accuracy"] for r in forked_rounds] == pytest.approx(
        [r["metrics"]["accuracy"] for r in plain_rounds], abs=1e-6)
    assert forked._latest["participation"] == plain._latest["participation"]



class TwoThreads(DigitsTask):
    """Digits whose model asks torch for two threads: GNU OpenMP's pool would not survive a fork."""

    def create_model(self) -> Any:
        import torch

        torch.set_num_threads(2)
        return super().create_model()


@pytest.mark.ray
def test_a_host_whose_torch_has_threads_forks_no_trainers(ray_clean: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setitem(red.tasks.tasks._objects, "digits-two-threads", TwoThreads)
    seen: list[dict[str, Any]] = []

    def look(sch: Any, report: dict[str, Any]) -> None:
        seen.append(ray.get(sch.actors["pool-0"].handle.stats.remote()))

    fed_task = {"name": "digits-two-threads", "params": TASK["params"]}
    sch, rounds = _final("two-threads", {"name": "fedavg"}, ENGINE_POOL, look, clients=40, rounds=2, task=fed_task)
    assert sch.host_config.trainers == 3  # asked for, but not forked: the run is served by the host alone
    assert seen and all(s["trainers"] == [] and s["trainerCalls"] == 0 for s in seen), seen
    assert [r["metrics"]["participants"] for r in rounds] == [40.0, 40.0]
