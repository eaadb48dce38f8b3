"""Report sinks render what the engine emits."""

from __future__ import annotations

import io
import json

from red.report import NodeState, Report
from red.sinks import ConsoleSink, JsonLinesSink


def _reports() -> list[dict[str, object]]:
    nodes = [NodeState("server", "eval", "Alive", 2, 0, 1.0e9), NodeState("client_0", "train", "Dead", 1, 3, None)]
    return [
        Report("start", "f", 0, 2, nodes=nodes).to_dict(),
        Report("round", "f", 1, 2, metrics={"accuracy": 0.5}, nodes=nodes).to_dict(),
        Report("done", "f", 2, 2, metrics={"accuracy": 0.93}, nodes=nodes).to_dict(),
    ]


def test_json_lines_one_object_per_line() -> None:
    out = io.StringIO()
    sink = JsonLinesSink(out)
    for r in _reports():
        sink.emit(r)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["event"] for r in lines] == ["start", "round", "done"]
    assert lines[-1]["versions"] == {"server": 2, "client_0": 1}
    assert lines[1]["nodes"][0] == {
        "id": "server", "role": "eval", "health": "Alive", "version": 2, "restarts": 0,
        "lastHeartbeat": "2001-09-09T01:46:40.000Z",
    }


def test_console_progress() -> None:
    out = io.StringIO()
    sink = ConsoleSink(out)
    for r in _reports():
        sink.emit(r)
    sink.close()
    text = out.getvalue()
    assert "done" in text and "accuracy=0.930" in text and "nodes 1/2" in text


def test_failed_report_carries_reason() -> None:
    d = Report("failed", "f", 3, 9, reason="TooFewClients", message="only 1 live").to_dict()
    assert d["reason"] == "TooFewClients" and d["message"] == "only 1 live" and "versions" not in d
