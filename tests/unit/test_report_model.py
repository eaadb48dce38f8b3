"""The engine's report contract (`red.spec.status`): what the engine writes, and how the operator reads
untrusted report text."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

import red
from red.report import NodeState, Report
from red.spec.status import (
    MAX_NODES,
    MAX_REPORT_BYTES,
    MAX_SOFTWARE,
    MAX_SOFTWARE_TEXT,
    EngineReport,
    Health,
    NodeReport,
    parse_report,
)


def wire(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "event": "round",
        "federation": "fl",
        "submissionId": "red-fl-1",
        "round": 2,
        "rounds": 5,
        "metrics": {"accuracy": 0.5},
        "nodes": [{"id": "client_0", "role": "train", "health": "Alive", "version": 2, "restarts": 0}],
        "time": "2026-01-01T12:00:00.000Z",
    }
    base.update(over)
    return base


def test_to_dict_is_exactly_the_model_shape() -> None:
    r = Report(
        "done",
        "fl",
        3,
        3,
        metrics={"accuracy": 0.91234567},
        nodes=[NodeState("client_0", "train", health="Finished", version=3, last_heartbeat=1.25)],
        submission_id="red-fl-1",
    )
    d = r.to_dict()
    assert EngineReport.model_validate(d).wire() == d
    assert set(d) == {
        "event", "federation", "round", "rounds", "metrics", "nodes", "elapsedSeconds", "time", "versions",
        "submissionId",
    }
    assert d["nodes"][0] == {
        "id": "client_0", "role": "train", "health": "Finished", "version": 3, "restarts": 0,
        "lastHeartbeat": "1970-01-01T00:00:01.250Z",
    }
    assert d["metrics"] == {"accuracy": 0.912346}
    # Local runs (`red run --json`) carry no submission id: the key is absent, as before.
    assert "submissionId" not in Report("start", "fl", 0, 3).to_dict()


@pytest.mark.parametrize("health", list(Health))
@pytest.mark.parametrize("heartbeat", [None, 1.25])
def test_node_state_writes_exactly_a_node_report(health: Health, heartbeat: float | None) -> None:
    # Report.to_dict leaves its nodes out of the model (their number makes it costly): each must be a
    # NodeReport as written, with nothing added, dropped or converted.
    d = NodeState("client_0", "train", health=health, version=4, restarts=1, last_heartbeat=heartbeat).to_dict()
    assert NodeReport.model_validate(d).model_dump(mode="json", by_alias=True) == d
    assert Report("round", "fl", 1, 3, nodes=[NodeState("client_0", "train", health=health)]).to_dict()["nodes"] == [
        NodeState("client_0", "train", health=health).to_dict()
    ]


def test_to_dict_writes_non_finite_metrics_as_null() -> None:
    d = Report("round", "fl", 1, 3, metrics={"loss": math.nan, "accuracy": 0.1, "x": math.inf}).to_dict()
    assert d["metrics"] == {"loss": None, "accuracy": 0.1, "x": None}
    json.dumps(d, allow_nan=False)  # valid JSON for any reader


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("[1, 2]", "must be a JSON object, got list"),
        ("not json", "not JSON"),
        (json.dumps(wire(round=1.5)), "round"),
        (json.dumps(wire(round="3")), "round"),
        (json.dumps(wire(round=-1)), "round"),
        (json.dumps(wire(nodes=[{"id": "c", "version": "7"}])), "nodes.0.version"),
        (json.dumps(wire(nodes=[{"id": "c", "version": True}])), "nodes.0.version"),
        (json.dumps(wire(nodes=[{"id": "c", "health": "Zombie"}])), "nodes.0.health"),
        (json.dumps(wire(nodes={"client_0": {}})), "nodes"),
        (json.dumps(wire(event="exploded")), "event"),
        (json.dumps({"event": "round"}), "federation"),
        ("x" * (MAX_REPORT_BYTES + 1), f"at most {MAX_REPORT_BYTES}"),
    ],
)
def test_wrong_shapes_are_a_problem_not_an_exception(text: str, problem: str) -> None:
    reading = parse_report(text)
    assert reading.report is None
    assert reading.problem is not None and problem in reading.problem, reading.problem


@pytest.mark.parametrize(
    ("metrics", "kept", "note"),
    [
        ('{"accuracy": NaN, "loss": 0.5}', {"loss": 0.5}, "accuracy"),
        ('{"loss": Infinity}', {}, "loss"),
        ('{"loss": -Infinity, "a": 1e999}', {}, "a, loss"),
        ('{"accuracy": null, "name": "x", "ok": true}', {}, "accuracy, name, ok"),
    ],
)
def test_non_finite_metrics_are_dropped_with_a_note(metrics: str, kept: dict[str, float], note: str) -> None:
    text = json.dumps(wire(metrics={})).replace('"metrics": {}', f'"metrics": {metrics}')
    reading = parse_report(text)
    assert reading.report is not None, reading.problem
    assert reading.report.metrics == kept
    assert any(note in n for n in reading.notes), reading.notes


def test_non_finite_numbers_elsewhere_are_dropped() -> None:
    reading = parse_report(json.dumps(wire()).replace('"rounds": 5', '"rounds": 5, "elapsedSeconds": NaN'))
    assert reading.report is not None and reading.report.elapsed_seconds is None
    assert any("elapsedSeconds" in n for n in reading.notes)


def test_many_nodes_are_cut_unhealthy_first() -> None:
    nodes = [{"id": f"c{i}", "health": "Alive"} for i in range(MAX_NODES + 50)]
    nodes[-1]["health"] = "Dead"
    reading = parse_report(json.dumps(wire(nodes=nodes)))
    assert reading.report is not None
    assert len(reading.report.nodes) == MAX_NODES
    assert reading.report.nodes[0].health == Health.DEAD
    assert reading.report.nodes_total == MAX_NODES + 50
    assert any(f"{MAX_NODES} of {MAX_NODES + 50}" in n for n in reading.notes)


def test_long_messages_are_cut() -> None:
    reading = parse_report(json.dumps(wire(event="failed", reason="R" * 5000, message="m" * 50_000)))
    assert reading.report is not None
    assert len(reading.report.message or "") < 2000 and len(reading.report.reason or "") < 2000


@pytest.mark.parametrize(("sid", "other"), [("red-fl-1", None), ("red-fl-2", "red-fl-1")])
def test_a_report_of_another_attempt_is_set_aside(sid: str, other: str | None) -> None:
    reading = parse_report(json.dumps(wire()), submission_id=sid)
    assert reading.other_attempt == other
    assert (reading.report is None) == (other is not None)
    assert reading.problem is None


@pytest.mark.parametrize(
    ("software", "kept", "note"),
    [
        ({"red": "0.1.0", "cuda": None}, {"red": "0.1.0", "cuda": None}, None),
        ({"red": "0.1.0", "torch": 2}, {"red": "0.1.0"}, "dropped software version 'torch'"),
        ({"image": "i" * 5000}, {"image": "i" * MAX_SOFTWARE_TEXT + "…"}, None),
        ({f"k{i}": "v" for i in range(40)}, {f"k{i}": "v" for i in range(MAX_SOFTWARE)}, f"kept {MAX_SOFTWARE} of 40"),
        ("2.60", None, "dropped software: not an object"),
        ([1], None, "dropped software: not an object"),
    ],
)
def test_software_versions_are_bounded_and_never_break_the_report(
    software: object, kept: dict[str, str | None] | None, note: str | None
) -> None:
    reading = parse_report(json.dumps(wire(software=software)))
    assert reading.report is not None, reading.problem
    assert reading.report.software == kept
    if note:
        assert any(note in n for n in reading.notes), reading.notes


def test_the_engine_reports_its_software() -> None:
    from red.software import software_versions

    got = software_versions({"RED_ENGINE_IMAGE": "img:1"})
    assert set(got) == {"red", "ray", "torch", "python", "cuda", "image"}
    assert got["red"] == red.__version__ and got["image"] == "img:1"
    assert got["ray"] and got["torch"] and got["python"]
    assert software_versions({})["image"] is None
    reading = parse_report(json.dumps(wire(software=got)))
    assert reading.report is not None and reading.report.software == got and not reading.notes
