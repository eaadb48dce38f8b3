"""The typed run configuration: the spec becomes frozen config objects once, in the driver, and each
node's ``build``/``train`` gets one of them. No Ray needed: a schema is built without a cluster (its
pool is sized only when Ray is up), and what a node would be started with is asked of the schema."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from red.algorithms.builtin import FedAvg, FedBuff, FedProx
from red.runtime.task_node import BuildConfig
from red.schemas.cluster import ClusterFederatedLearning, HeadConfig
from red.schemas.decentralized import GossipConfig, RingFederatedLearning
from red.schemas.star import SERVER, ClientConfig, ServerConfig, StarFederatedLearning
from red.tasks.digits import DigitsTask
from tests.helpers import make_fed

DIGITS = {"name": "digits", "params": {"lr": 0.2}}


def test_a_misspelt_field_fails_where_the_config_is_made() -> None:
    # With keyword dicts a typo was dropped by the receiver's `**_`; a dataclass refuses it at once.
    with pytest.raises(TypeError, match="sample_fracton"):
        ServerConfig(rounds=3, algorithm_cls=FedAvg, algorithm_params={}, sample_fracton=0.5)  # type: ignore[call-arg]
    cfg = ClientConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.asynchronous = True  # type: ignore[misc]


@pytest.mark.parametrize(
    ("algorithm", "asynchronous"),
    [({"name": "fedavg"}, False), ({"name": "fedprox", "params": {"mu": 0.1}}, False), ({"name": "fedbuff"}, True)],
)
def test_star_configs_come_from_the_spec(algorithm: dict[str, Any], asynchronous: bool) -> None:
    fed = make_fed("cfg-star", clients=3, rounds=7, seed=5, task=DIGITS, algorithm=algorithm,
                   sampleFraction=0.5, roundDeadlineSeconds=30)
    sch = StarFederatedLearning(fed)
    server = sch.train_config(SERVER)
    assert isinstance(server, ServerConfig)
    assert (server.rounds, server.start_round, server.sample_fraction, server.deadline_seconds, server.seed) == (
        7, 0, 0.5, 30, 5)
    assert server.algorithm_cls in (FedAvg, FedProx, FedBuff) and dict(server.algorithm_params) == algorithm.get(
        "params", {})
    assert sch.train_config("client_2") == ClientConfig(asynchronous=asynchronous)
    built = {nid: vn.config for nid, vn in sch.nodes.items()}
    assert built["client_2"] == BuildConfig(task_cls=DigitsTask, task_params={"lr": 0.2}, num_clients=3, seed=5,
                                            index=2)
    assert built[SERVER].index == -1


def test_a_restored_server_starts_from_the_newest_known_round() -> None:
    fed = make_fed("cfg-resume", clients=2, rounds=9, task=DIGITS)
    sch = StarFederatedLearning(fed)
    sch.apply_resume({"round": 4, "params": None, "clientVersions": {}, "participation": {}, "algorithmState": {}})
    assert sch.train_config(SERVER).start_round == 4  # type: ignore[union-attr]
    sch._latest = {"round": 6}  # a later round recorded by the running server wins
    assert sch.train_config(SERVER).start_round == 6  # type: ignore[union-attr]
    assert sch.server_config.start_round == 0  # the made-once config is not changed, only copied


def test_cluster_heads_sample_and_the_server_waits_for_every_head() -> None:
    fed = make_fed("cfg-cluster", schema="cluster", clients=6, task=DIGITS, sampleFraction=0.5,
                   roundDeadlineSeconds=20, topology={"clusterSize": 3})
    sch = ClusterFederatedLearning(fed)
    server = sch.train_config(SERVER)
    assert (server.sample_fraction, server.deadline_seconds) == (1.0, None)
    heads = {h: sch.train_config(h) for h in ("head_0", "head_1")}
    assert all(isinstance(c, HeadConfig) and c.sample_fraction == 0.5 and c.deadline_seconds == 20
               for c in heads.values())
    assert [c.group for c in heads.values()] == [0, 1]
    assert sch.train_config("client_0") == ClientConfig(asynchronous=False)


def test_gossip_peers_resume_from_their_own_round() -> None:
    fed = make_fed("cfg-ring", schema="ring", clients=3, rounds=5, task=DIGITS)
    sch = RingFederatedLearning(fed)
    assert sch.train_config("client_1") == GossipConfig(rounds=5, start_round=0)
    sch.apply_resume({"round": 2, "params": {"client_1": {}}})
    assert sch.train_config("client_1") == GossipConfig(rounds=5, start_round=2)
