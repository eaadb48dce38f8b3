"""`red run` ships a local directory: the driver imports it, Ray uploads it for the actors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.engine.test_cli import red
from tests.helpers import fed_dict, write_yaml

pytestmark = pytest.mark.ray

TASK_MODULE = '''
import os

import red.tasks
from red.tasks.digits import DigitsTask


@red.tasks.register("local-digits")
class LocalDigits(DigitsTask):
    def __init__(self, *args, **kwargs):
        if os.environ.get("LOCAL_TASK_MARK") != "set":
            raise RuntimeError("LOCAL_TASK_MARK is not set: spec.runtimeEnv.envVars did not reach this process")
        super().__init__(*args, **kwargs)
'''


def test_red_run_finds_a_task_shipped_in_a_local_working_dir(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "local_task.py").write_text(TASK_MODULE)
    spec = fed_dict(
        "own",
        rounds=2,
        clients=2,
        task={"name": "local-digits", "params": {"epochs": 1, "lr": 0.2}},
        runtimeEnv={"workingDir": str(project), "imports": ["local_task"], "envVars": {"LOCAL_TASK_MARK": "set"}},
    )
    path = write_yaml(tmp_path / "own.yaml", spec)
    # Nothing registered "local-digits" where `red validate` runs; the file ships code, so it is not refused.
    assert red("validate", str(path)).returncode == 0
    res = red("run", str(path), "--json", timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    last = json.loads(res.stdout.strip().splitlines()[-1])
    assert last["event"] == "done" and last["round"] == 2, last
