"""`red` as a user runs it: real processes, real exit codes, one clear message per bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import EXAMPLES, ROOT, fed_dict, write_yaml

RED = [sys.executable, "-m", "red.cli"]


def red(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run([*RED, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


BAD = {
    "unknown-schema": (fed_dict(schema="hexagon"), "spec.schema: unknown schema 'hexagon'"),
    "negative-rounds": (fed_dict(rounds=-3), "spec.rounds: Input should be greater than or equal to 1"),
    "min-over-clients": (fed_dict(minClients=9, clients=4), "spec.minClients (9) must be <= spec.clients (4)"),
    "malformed": ("apiVersion: red.dev/v1alpha1\nkind: Federation\nmetadata: {name: x\n", "malformed YAML at line"),
    "unknown-field": (fed_dict(roundz=3), "spec.roundz: unknown field"),
    "wrong-kind": ({**fed_dict(), "kind": "Deployment"}, "kind: must be 'Federation' (got 'Deployment')"),
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("command", ["validate", "run"])
def test_bad_spec_clear_error(tmp_path: Path, case: str, command: str) -> None:
    data, expect = BAD[case]
    path = write_yaml(tmp_path / f"{case}.yaml", data)
    res = red(command, str(path))
    assert res.returncode == 2, res.stderr
    assert expect in res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.count("error:") == 1


def test_validate_ok() -> None:
    res = red("validate", str(EXAMPLES / "digits-star.yaml"))
    assert res.returncode == 0, res.stderr
    assert "valid Federation 'digits-star'" in res.stdout


@pytest.mark.ray
def test_gpu_request_without_gpus_fails_fast(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "gpu.yaml", fed_dict(resources={"perNode": {"cpu": 0.1, "gpu": 0.5}}))
    res = red("run", str(path), "--json", timeout=90)
    assert res.returncode == 1, res.stderr
    assert "GPU: needs 2, the Ray cluster has 0" in res.stderr
    assert "Traceback" not in res.stderr
    last = json.loads(res.stdout.strip().splitlines()[-1])
    assert last["event"] == "failed" and last["reason"] == "PlacementError"


@pytest.mark.ray
def test_example_reaches_accuracy_and_versions(tmp_path: Path) -> None:
    """The issue's acceptance run: `red run examples/digits-star.yaml --json` on this machine."""
    plot = tmp_path / "acc.png"
    res = red("run", str(EXAMPLES / "digits-star.yaml"), "--json", "--plot", str(plot), timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    rounds = [r for r in lines if r["event"] == "round"]
    assert [r["round"] for r in rounds] == list(range(1, 21))
    done = lines[-1]
    assert done["event"] == "done" and done["round"] == 20
    assert done["metrics"]["accuracy"] >= 0.90
    clients = [n for n in done["nodes"] if n["role"] == "train"]
    assert len(clients) == 10
    # Every client took part in every round (sampleFraction 1, no failures): version == 20.
    assert all(done["versions"][n["id"]] == 20 for n in clients)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 5000


def test_bad_task_and_algorithm_params_fail_before_any_actor(tmp_path: Path) -> None:
    for spec, expect in (
        ({"task": {"name": "digits", "params": {"partition": "weird"}}}, "spec.task.params.partition"),
        ({"algorithm": {"name": "fedprox", "params": {"mu": "lots"}}}, "spec.algorithm.params.mu"),
    ):
        path = write_yaml(tmp_path / "p.yaml", fed_dict(**spec))
        res = red("run", str(path), "--json", timeout=120)
        assert res.returncode == 2, res.stderr
        assert expect in res.stderr and "Traceback" not in res.stderr
        last = json.loads(res.stdout.strip().splitlines()[-1])
        assert last["event"] == "failed" and last["reason"] == "SpecError"
