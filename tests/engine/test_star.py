"""The star federation on a real local Ray with real torch training on the digits data."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest

from red.errors import FederationFailed, TopologyError
from red.runner import run_federation
from red.schemas.star import StarFederatedLearning
from red.sinks import CallbackSink
from tests.helpers import make_fed

pytestmark = pytest.mark.ray


def _run(fed: Any, on_report: Any = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    reports: list[dict[str, Any]] = []

    def emit(r: dict[str, Any]) -> None:
        reports.append(r)
        if on_report is not None:
            on_report(r)

    done = run_federation(fed, [CallbackSink(emit)])
    return done, reports


def _pid(fed_name: str, node: str) -> int:
    import ray

    return int(ray.get(ray.get_actor(f"{fed_name}/{node}").ping.remote())["pid"])


def test_star_trains_reports_and_cleans_up(ray_clean: Any) -> None:
    ray = ray_clean
    fed = make_fed("star-basic", rounds=4, clients=3, algorithm={"name": "fedprox", "params": {"mu": 0.01}})
    done, reports = _run(fed)
    events = [r["event"] for r in reports]
    assert events == ["start", "round", "round", "round", "round", "done"]
    assert [r["round"] for r in reports if r["event"] == "round"] == [1, 2, 3, 4]
    assert done["metrics"]["accuracy"] > 0.8
    nodes = {n["id"]: n for n in done["nodes"]}
    assert set(nodes) == {"server", "client_0", "client_1", "client_2"}
    assert all(nodes[f"client_{i}"]["version"] == 4 for i in range(3))
    assert nodes["server"]["version"] == 4
    assert done["versions"]["client_1"] == 4
    for n in done["nodes"]:
        assert n["lastHeartbeat"] and n["restarts"] == 0
    # stop() released every actor: the names are free again.
    with pytest.raises(ValueError):
        ray.get_actor("star-basic/client_0")
    with pytest.raises(ValueError):
        ray.get_actor("star-basic/__topology_manager__")


def test_killed_client_restarts_and_rejoins(ray_clean: Any) -> None:
    killed: dict[str, int] = {}

    def kill_at_round_2(r: dict[str, Any]) -> None:
        if r["event"] == "round" and r["round"] == 2 and not killed:
            killed["pid"] = _pid("star-kill", "client_1")
            os.kill(killed["pid"], signal.SIGKILL)

    fed = make_fed("star-kill", rounds=7, clients=4, minClients=3)
    done, reports = _run(fed, kill_at_round_2)
    assert killed, "the kill hook never ran"
    assert done["event"] == "done" and done["round"] == 7
    c1 = next(n for n in done["nodes"] if n["id"] == "client_1")
    assert c1["restarts"] == 1 and c1["health"] == "Alive"
    # The report shows the restart while the run goes on, not only at the end.
    seen = [n["restarts"] for r in reports if r["event"] == "round" for n in r["nodes"] if n["id"] == "client_1"]
    assert seen[-1] == 1 and seen[0] == 0
    # It rejoined: the version it restarted with plus the rounds it took part in after the restart.
    participated = [r["metrics"]["participants"] for r in reports if r["event"] == "round"]
    assert min(participated) >= 3 and participated[-1] == 4.0
    # Only client_1 was killed, so rounds with 3 participants are the ones left without it. Its version
    # (restored, then advanced) counts the rounds it trained in: those, plus at most one whose update
    # the server had already written off when the restart notice arrived.
    missed = sum(1 for p in participated if p == 3.0)
    assert missed >= 1
    assert 7 - missed <= done["versions"]["client_1"] <= 8 - missed
    assert all(done["versions"][f"client_{i}"] == 7 for i in (0, 2, 3))
    assert done["metrics"]["accuracy"] > 0.8


def test_too_few_clients_fails_with_reason(ray_clean: Any) -> None:
    def kill(r: dict[str, Any]) -> None:
        if r["event"] == "round" and r["round"] == 1:
            os.kill(_pid("star-die", "client_0"), signal.SIGKILL)

    fed = make_fed(
        "star-die", rounds=30, clients=3, minClients=3, faultTolerance={"maxRestarts": 0, "heartbeatSeconds": 1}
    )
    reports: list[dict[str, Any]] = []
    with pytest.raises(FederationFailed) as err:
        run_federation(fed, [CallbackSink(lambda r: (reports.append(r), kill(r)))])
    assert err.value.reason == "TooFewClients"
    assert "only 2 live clients, below minClients 3" in str(err.value)
    assert reports[-1]["event"] == "failed" and reports[-1]["reason"] == "TooFewClients"
    assert reports[-1]["round"] < 30


def test_topology_is_enforced_and_versions_pull_as_values(ray_clean: Any) -> None:
    ray = ray_clean
    fed = StarFederatedLearning(make_fed("star-topo", clients=3))
    with fed:
        fed.build()
        c0 = fed.handle("client_0")
        with pytest.raises(TopologyError, match="cannot send to \\['client_2'\\]"):
            ray.get(c0.send.remote("hello", {"x": 1}, to="client_2"))
        assert ray.get(c0.send.remote("hello", {"x": 1})) == ["server"]  # default: all neighbours
        # The TopologyManager refuses too, even when a node skips its own check.
        from red.runtime.messages import Message

        assert ray.get(fed.tm.publish.remote(Message("x", 1, sender="client_0"), ["client_1"])) == 0
        assert ray.get(fed.tm.stats.remote())["refused"] == 1
        # The driver is the broker: it may reach anyone; a node may pull what it received.
        fed.send("note", {"n": 1}, to="client_2")
        msg = ray.get(fed.handle("client_2").receive.remote(True, 10))
        assert msg.header == "note" and msg.body == {"n": 1} and msg.sender is None
        versions = fed.pull_version(["client_0", "server"], timeout=0.1)
        assert versions == {"client_0": None, "server": None}
        ray.get(c0.update_version.remote(params={"w": 1}))
        got = fed.pull_version(["client_0"], timeout=5)["client_0"]
        assert got is not None and got.version == 1 and got.params == {"w": 1} and got.record is None


def test_virtual_nodes_are_lazy(ray_clean: Any) -> None:
    ray = ray_clean
    import time

    from red.runtime.node import FederatedNode, VirtualNode

    total = ray.cluster_resources()["CPU"]
    deadline = time.monotonic() + 30  # earlier tests' actors release their CPUs asynchronously
    while ray.available_resources().get("CPU") != total and time.monotonic() < deadline:
        time.sleep(0.2)
    nodes = [VirtualNode(FederatedNode, f"n{i}", "train", "lazy") for i in range(10_000)]
    assert not any(n.built for n in nodes)
    time.sleep(0.5)
    assert ray.available_resources().get("CPU") == total
