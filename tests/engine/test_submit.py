"""`red submit`, `red status`, `red logs`, `red stop` against a real `ray start --head` with token auth on.

The user's task lives only in a temporary folder shipped with --working-dir: the cluster finds it by name
because `--import` names its module.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import ROOT, fed_dict, wait_until, write_yaml
from tests.operator.ray_head import RayHead, start_ray_head

pytestmark = pytest.mark.ray

TASKS = '''
import red.tasks
from red.tasks.digits import DigitsTask


@red.tasks.register("shipped-digits")
class ShippedDigits(DigitsTask):
    """Digits, defined only in the shipped folder."""


@red.tasks.register("shipped-raiser")
class Raiser(DigitsTask):
    def train(self, model, data, **kw):
        raise ValueError("boom from the shipped task")
'''


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    h = start_ray_head(num_cpus=2)
    try:
        yield h
    finally:
        h.stop()


@pytest.fixture
def code(tmp_path: Path) -> Path:
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / "my_tasks.py").write_text(TASKS)
    return folder


def red(*args: str, token: str | None, timeout: float = 400, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    # A private HOME: no ~/.ray/auth_token of the developer's is picked up.
    env["HOME"] = str(cwd)
    if token is not None:
        env["RAY_AUTH_TOKEN"] = token
    return subprocess.run(
        [sys.executable, "-m", "red.cli", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env
    )


def test_submit_working_dir_wait_json_succeeds(head: RayHead, code: Path, tmp_path: Path) -> None:
    spec = write_yaml(
        tmp_path / "f.yaml",
        fed_dict("shipped", rounds=3, clients=2, task={"name": "shipped-digits", "params": {"partition": "iid"}}),
    )
    res = red(
        "submit", str(spec), "--address", head.dashboard_url, "--working-dir", str(code), "--import", "my_tasks",
        "--wait", "--json", token=head.token, cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [json.loads(line) for line in res.stdout.splitlines()]  # stdout: JSON lines only
    assert lines[0]["event"] == "submitted" and lines[0]["submissionId"].startswith("red-shipped-")
    assert [e["event"] for e in lines[1:]] == ["start", "round", "round", "round", "done"]  # streamed
    assert lines[-1]["metrics"]["accuracy"] > 0.8
    assert head.token not in res.stdout + res.stderr

    sid = lines[0]["submissionId"]
    st = red("status", sid, "--address", head.dashboard_url, "--json", token=head.token, cwd=tmp_path)
    assert st.returncode == 0 and json.loads(st.stdout)["status"] == "SUCCEEDED", st.stderr
    logs = red("logs", sid, "--address", head.dashboard_url, token=head.token, cwd=tmp_path)
    assert logs.returncode == 0 and '"event":"done"' in logs.stdout


def test_a_task_that_raises_fails_the_submission_with_its_error(head: RayHead, code: Path, tmp_path: Path) -> None:
    spec = write_yaml(
        tmp_path / "f.yaml",
        fed_dict("raiser", rounds=2, clients=2, task={"name": "shipped-raiser", "params": {"partition": "iid"}}),
    )
    res = red(
        "submit", str(spec), "--address", head.dashboard_url, "--working-dir", str(code), "--import", "my_tasks",
        "--wait", token=head.token, cwd=tmp_path,
    )
    assert res.returncode == 1, res.stderr[-3000:]
    assert "boom from the shipped task" in res.stderr
    sid = res.stdout.split()[0]
    follow = red("logs", sid, "--follow", "--address", head.dashboard_url, token=head.token, cwd=tmp_path)
    assert follow.returncode == 1 and "boom from the shipped task" in follow.stdout


def test_status_logs_and_stop_by_id(head: RayHead, tmp_path: Path) -> None:
    task = {"name": "digits", "params": {"partition": "iid", "slowdown": {"client_0": 5}}}
    slow = fed_dict("slow", rounds=50, clients=2, task=task)
    spec = write_yaml(tmp_path / "f.yaml", slow)
    res = red("submit", str(spec), "--address", head.dashboard_url, token=head.token, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    sid = res.stdout.strip()
    assert f"red logs {sid} --follow" in res.stderr

    def status() -> str:
        st = red("status", sid, "--address", head.dashboard_url, token=head.token, cwd=tmp_path, timeout=60)
        assert st.returncode == 0, st.stderr
        return st.stdout

    wait_until("the job running", lambda: "RUNNING" in status(), timeout_s=300, poll_s=2)
    stop = red("stop", sid, "--address", head.dashboard_url, token=head.token, cwd=tmp_path)
    assert stop.returncode == 0 and f"stopping {sid}" in stop.stdout, stop.stderr
    wait_until("the job stopped", lambda: "STOPPED" in status(), timeout_s=120, poll_s=2)
    again = red("stop", sid, "--address", head.dashboard_url, token=head.token, cwd=tmp_path)
    assert again.returncode == 0 and "had ended already: STOPPED" in again.stdout
    follow = red("logs", sid, "--follow", "--address", head.dashboard_url, token=head.token, cwd=tmp_path)
    assert follow.returncode == 1  # stopped is not success


@pytest.mark.parametrize(
    ("args", "token", "message"),
    [
        (["status", "x"], None, "requires a token: set RAY_AUTH_TOKEN or pass --token-file"),
        (["status", "x"], "wrong", "refused the token from RAY_AUTH_TOKEN"),
        (["status", "no-such-job"], "RIGHT", "has no job 'no-such-job'"),
        (["logs", "no-such-job"], "RIGHT", "has no job 'no-such-job'"),
        (["stop", "no-such-job"], "RIGHT", "has no job 'no-such-job'"),
    ],
)
def test_clear_errors_without_traceback(
    head: RayHead, tmp_path: Path, args: list[str], token: str | None, message: str
) -> None:
    res = red(*args, "--address", head.dashboard_url, token=head.token if token == "RIGHT" else token, cwd=tmp_path,
              timeout=60)
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert res.stderr.startswith("error: ") and message in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_unreachable_head_and_bad_spec_are_clear(tmp_path: Path) -> None:
    from tests.operator.ray_head import free_port

    res = red("status", "x", "--address", f"127.0.0.1:{free_port()}", token=None, cwd=tmp_path, timeout=60)
    assert res.returncode == 2 and "cannot reach the Ray dashboard" in res.stderr, res.stderr
    # The spec is checked here first, as `red validate` does: nothing is sent anywhere.
    bad = write_yaml(tmp_path / "bad.yaml", fed_dict("bad", minClients=9, clients=2))
    res = red("submit", str(bad), "--address", "http://127.0.0.1:1", token=None, cwd=tmp_path, timeout=60)
    assert res.returncode == 2 and "spec.minClients (9) must be <= spec.clients (2)" in res.stderr, res.stderr
    unknown = write_yaml(tmp_path / "unknown.yaml", fed_dict("u", task={"name": "shipped-digits"}))
    res = red("submit", str(unknown), "--address", "http://127.0.0.1:1", token=None, cwd=tmp_path, timeout=60)
    assert res.returncode == 2 and "unknown task 'shipped-digits'" in res.stderr, res.stderr
