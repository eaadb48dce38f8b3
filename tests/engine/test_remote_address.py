"""`red run --address`: the engine joins an existing Ray cluster (a real `ray start --head`, token auth on)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT, fed_dict, write_yaml
from tests.operator.ray_head import start_ray_head

pytestmark = pytest.mark.ray


def test_run_against_running_head(tmp_path: Path) -> None:
    head = start_ray_head(num_cpus=2)
    try:
        path = write_yaml(tmp_path / "f.yaml", fed_dict("remote", rounds=2, clients=2))
        env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": head.token, "HOME": str(head.home)}
        res = subprocess.run(
            [sys.executable, "-m", "red.cli", "run", str(path), "--json", "--address", head.gcs_address],
            capture_output=True, text=True, timeout=400, cwd=ROOT, env=env,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        done = json.loads(res.stdout.strip().splitlines()[-1])
        assert done["event"] == "done" and done["round"] == 2
        assert head.proc.poll() is None, "red run must not stop a cluster it did not start"
    finally:
        head.stop()
