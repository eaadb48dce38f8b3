"""The spec model: defaults, validation, and one clear message per kind of bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from red.errors import SpecError
from red.registry import algorithms
from red.spec import load_federation, spec_from_dict
from tests.helpers import EXAMPLES, fed_dict, make_fed, write_yaml


def test_example_loads_with_defaults() -> None:
    fed = load_federation(EXAMPLES / "digits-star.yaml")
    assert fed.name == "digits-star"
    s = fed.spec
    assert (s.schema_, s.clients, s.rounds, s.min_clients) == ("star", 10, 20, 8)
    assert s.task.params["alpha"] == 0.5
    assert s.resources.placement_strategy == "PACK"
    assert s.fault_tolerance.max_restarts == 3


def test_camel_case_round_trip() -> None:
    fed = make_fed(minClients=2, sampleFraction=0.5)
    dumped = fed.model_dump(by_alias=True, exclude_none=True)
    assert dumped["spec"]["minClients"] == 2
    assert dumped["spec"]["sampleFraction"] == 0.5
    assert dumped["spec"]["schema"] == "star"


@pytest.mark.parametrize(
    ("patch", "expect"),
    [
        ({"schema": "hexagon"}, "spec.schema: unknown schema 'hexagon'"),
        ({"rounds": -1}, "spec.rounds: Input should be greater than or equal to 1"),
        ({"clients": 0}, "spec.clients"),
        ({"minClients": 5, "clients": 3}, "spec.minClients (5) must be <= spec.clients (3)"),
        ({"sampleFraction": 1.5}, "spec.sampleFraction"),
        ({"colour": "red"}, "spec.colour: unknown field"),
        ({"algorithm": {"name": "fedmagic"}}, "spec.algorithm.name: unknown algorithm 'fedmagic'"),
        ({"task": {"name": "imagenet"}}, "unknown task 'imagenet'"),
        ({"schema": "k-regular", "clients": 5}, "needs spec.topology.degree"),
        ({"schema": "k-regular", "clients": 5, "topology": {"degree": 3}}, "is impossible with 5 clients"),
        ({"schema": "custom", "topology": {"edges": [["client_0", "client_9"]]}}, "names 'client_9'"),
        ({"resources": {"perNode": {"gpu": 1.5}}}, "a GPU amount above 1 must be a whole number"),
        ({"resources": {"placementStrategy": "RANDOM"}}, "spec.resources.placementStrategy"),
        # Caught at the edge, before a GPU cluster exists (issue 11, item 10)
        ({"seed": -1}, "spec.seed: Input should be greater than or equal to 0"),
        ({"task": {"name": "digits", "params": {"lr": "nan"}}}, "params.lr is not a finite number"),
        ({"task": {"name": "digits", "params": {"lr": float("inf")}}}, "params.lr is not a finite number"),
        ({"algorithm": {"name": "fedprox", "params": {"mu": "-Infinity"}}}, "params.mu is not a finite number"),
        (
            {"schema": "custom", "topology": {"edges": [["client_0", "client_1"], ["client_2", "client_2"]]}},
            "spec.topology.edges[1] is a self-loop (client_2 to itself)",
        ),
        (
            {"schema": "custom", "topology": {"edges": [["client_0", "client_1"]]}},
            "leaves 1 node(s) without a neighbour (client_2)",
        ),
        (
            {"schema": "custom", "topology": {"edges": [["client_0", "client_1"]] * 20_001}},
            "spec.topology.edges: List should have at most 20000 items",
        ),
        ({"cluster": {"existingCluster": ""}}, "spec.cluster.existingCluster: must name a RayCluster"),
        ({"cluster": {"existingCluster": "My_Cluster"}}, "remove the field to get a cluster of the Federation's"),
    ],
)
def test_bad_spec_gets_one_clear_message(patch: dict[str, object], expect: str) -> None:
    with pytest.raises(SpecError) as err:
        make_fed(**patch)
    assert expect in str(err.value)
    assert len(err.value.problems) == 1


def test_wrong_kind_and_api_version() -> None:
    d = fed_dict()
    d["kind"] = "Pod"
    with pytest.raises(SpecError, match="kind: must be 'Federation' \\(got 'Pod'\\)"):
        from red.spec import federation_from_dict

        federation_from_dict(d)
    d = fed_dict()
    d["apiVersion"] = "v1"
    with pytest.raises(SpecError, match="apiVersion: must be 'red.dev/v1alpha1'"):
        from red.spec import federation_from_dict

        federation_from_dict(d)


@pytest.mark.parametrize("name", ["Digits_Star", "a.b", "x" * 41])
def test_bad_name(name: str) -> None:
    # The same limits as the CRD's (one constant): a name the CRD accepts is one the model accepts.
    with pytest.raises(SpecError, match=f"metadata.name: '{name}' is not a valid name.*at most 40"):
        from red.spec import federation_from_dict

        federation_from_dict(fed_dict(name=name))
    assert make_fed(name="x" * 40).name == "x" * 40


def test_malformed_yaml_names_line(tmp_path: Path) -> None:
    p = write_yaml(tmp_path / "bad.yaml", "apiVersion: red.dev/v1alpha1\nkind: Federation\nspec: {rounds: [1,\n")
    with pytest.raises(SpecError, match=r"malformed YAML at line \d+, column \d+"):
        load_federation(p)


def test_empty_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="the file is empty"):
        load_federation(write_yaml(tmp_path / "e.yaml", ""))
    with pytest.raises(SpecError, match="cannot read the file"):
        load_federation(tmp_path / "nope.yaml")


def test_operator_reads_spec_without_registry() -> None:
    # The operator cannot know schemas registered in user code: it defers that check to the engine.
    s = spec_from_dict({"schema": "my-custom", "clients": 4}, check_registry=False)
    assert s.schema_ == "my-custom"
    with pytest.raises(SpecError, match="spec.clients"):
        spec_from_dict({"clients": -4})


def test_status_from_kubectl_is_ignored() -> None:
    d = fed_dict()
    d["status"] = {"phase": "Running"}
    d["metadata"]["uid"] = "abc"
    from red.spec import federation_from_dict

    assert federation_from_dict(d).name == "t"


def test_every_cross_field_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as err:
        make_fed(
            schema="custom",
            clients=3,
            minClients=5,
            topology={"edges": [["client_0", "client_9"]]},
            algorithm={"name": "fedmagic"},
        )
    assert err.value.problems == [
        "spec.minClients (5) must be <= spec.clients (3): lower minClients or raise clients",
        "spec.topology.edges names 'client_9', which is not a node; nodes are client_0 .. client_2",
        "spec.algorithm.name: unknown algorithm 'fedmagic'; use one of "
        + ", ".join(algorithms.names()),
    ]


@pytest.mark.parametrize(
    ("patch", "expect"),
    [
        ({"roundz": 3}, "spec.roundz: unknown field; did you mean 'rounds'? (`red explain spec` lists"),
        ({"minclients": 3}, "did you mean 'minClients'?"),
        ({"resources": {"perNode": {"gpus": 1}}}, "spec.resources.perNode.gpus: unknown field; did you mean 'gpu'?"),
        (
            {"cluster": {"nodePools": [{"name": "a", "gpuPerWorker": 1}]}},
            "did you mean 'gpusPerWorker'? (`red explain spec.cluster.nodePools` lists the fields)",
        ),
        ({"colour": "red"}, "spec.colour: unknown field; `red explain spec` lists the fields"),
    ],
)
def test_unknown_field_suggests_the_closest_field(patch: dict[str, object], expect: str) -> None:
    with pytest.raises(SpecError) as err:
        make_fed(**patch)
    assert expect in str(err.value)


def test_explain_walks_the_model() -> None:
    from red.spec.fields import explain

    assert "FIELD: spec.rounds (int), default 20" in explain("federation.spec.rounds")
    listing = explain("spec.cluster.nodePools")
    assert "gpusPerWorker" in listing and "(required)" in listing.splitlines()[1]
    with pytest.raises(SpecError, match="did you mean 'nodePools'"):
        explain("spec.cluster.nodepool")


def test_a_typo_does_not_hide_the_cross_field_problems() -> None:
    # Pydantic skips cross-field checks on invalid input; unknown fields alone must not hide them.
    with pytest.raises(SpecError) as err:
        make_fed(roundz=3, minClients=9, clients=4, resources={"perNode": {"cpus": 1}})
    assert sorted(err.value.problems) == [
        "spec.minClients (9) must be <= spec.clients (4): lower minClients or raise clients",
        "spec.resources.perNode.cpus: unknown field; did you mean 'cpu'? "
        "(`red explain spec.resources.perNode` lists the fields)",
        "spec.roundz: unknown field; did you mean 'rounds'? (`red explain spec` lists the fields)",
    ]
    with pytest.raises(SpecError) as err:
        spec_from_dict({"clientz": 3, "minClients": 20})
    assert [p.split(":")[0] for p in err.value.problems] == [
        "spec.clientz",
        "spec.minClients (20) must be <= spec.clients (10)",
    ]
