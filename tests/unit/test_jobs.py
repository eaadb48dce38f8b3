"""`red.jobs`' pure pieces: the address, the token, exit codes, the job's command and its log lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from red.errors import SpecError
from red.jobs import (
    JobError,
    Token,
    as_event,
    dashboard_address,
    entrypoint,
    exit_code,
    for_submit,
    read_token,
    split_events,
    submission_id,
)
from tests.helpers import ROOT


@pytest.mark.parametrize(
    ("flag", "env", "expect"),
    [
        ("http://head:8265", {}, "http://head:8265"),
        ("http://head:8265/", {}, "http://head:8265"),
        ("head:8265", {}, "http://head:8265"),
        ("https://ray.example.com", {}, "https://ray.example.com"),
        (None, {"RAY_ADDRESS": "http://from-env:8265"}, "http://from-env:8265"),
        ("http://flag:8265", {"RAY_ADDRESS": "http://from-env:8265"}, "http://flag:8265"),  # the flag wins
    ],
)
def test_dashboard_address(flag: str | None, env: dict[str, str], expect: str) -> None:
    assert dashboard_address(flag, env) == expect


@pytest.mark.parametrize(
    ("flag", "env", "message"),
    [
        (None, {}, "pass --address http://<head>:8265 or set RAY_ADDRESS"),
        ("  ", {}, "pass --address"),
        ("ray://head:10001", {}, "not the Ray dashboard"),
        ("auto", {}, "not the Ray dashboard"),
        ("ftp://head", {}, "must be http://<head>:8265"),
    ],
)
def test_dashboard_address_refuses(flag: str | None, env: dict[str, str], message: str) -> None:
    with pytest.raises(JobError) as err:
        dashboard_address(flag, env)
    assert message in str(err.value) and err.value.exit_code == 2


def test_token_sources_in_rays_order(tmp_path: Path) -> None:
    flag_file, path_file = tmp_path / "flag", tmp_path / "path"
    flag_file.write_text("from-flag\n")
    path_file.write_text("from-path")
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home")
    env = {"RAY_AUTH_TOKEN": "from-env", "RAY_AUTH_TOKEN_PATH": str(path_file)}
    cases: list[tuple[str | None, dict[str, str], str | None]] = [
        (str(flag_file), env, "from-flag"),
        (None, env, "from-env"),
        (None, {"RAY_AUTH_TOKEN_PATH": str(path_file)}, "from-path"),
        (None, {}, "from-home"),
    ]
    for flag, e, expect in cases:
        token = read_token(flag, e, home=tmp_path)
        assert token is not None and token.value == expect, (flag, e)
    assert read_token(None, {}, home=tmp_path / "nowhere") is None  # no token: a head without auth needs none


@pytest.mark.parametrize(
    ("flag", "env", "message"),
    [
        ("/nonexistent/token", {}, "cannot read the token file (--token-file /nonexistent/token)"),
        (None, {"RAY_AUTH_TOKEN_PATH": "/nonexistent/t"}, "RAY_AUTH_TOKEN_PATH=/nonexistent/t"),
    ],
)
def test_token_file_that_cannot_be_read(flag: str | None, env: dict[str, str], message: str) -> None:
    with pytest.raises(JobError) as err:
        read_token(flag, env)
    assert message in str(err.value)


def test_token_never_shows_in_its_repr() -> None:
    assert "s3cret" not in repr(Token("s3cret", "RAY_AUTH_TOKEN"))


@pytest.mark.parametrize(
    ("status", "driver", "code"),
    [
        ("SUCCEEDED", 0, 0),
        ("FAILED", 1, 1),  # the federation failed while running
        ("FAILED", 2, 2),  # the cluster refused the spec (`red run`'s 2)
        ("FAILED", 137, 1),  # killed
        ("FAILED", None, 1),  # e.g. the runtime env could not be set up
        ("STOPPED", None, 1),
    ],
)
def test_exit_code_matches_red_run(status: str, driver: int | None, code: int) -> None:
    assert exit_code(status, driver) == code


def test_entrypoint_runs_red_run_on_the_yaml_from_the_environment(tmp_path: Path) -> None:
    """The command the job runs, run here by the same shell: `red run -` reads the YAML the env carries."""
    doc = {"apiVersion": "red.dev/v1alpha1", "kind": "Federation", "metadata": {"name": "e"}, "spec": {"rounds": 0}}
    env = {**os.environ, **for_submit(doc, tmp_path, None, [])["env_vars"]}
    cmd = entrypoint(rounds=3).replace("python", sys.executable, 1)
    res = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert res.returncode == 2, res.stderr  # invalid: the spec reached `red run` intact
    assert "<stdin>: spec.rounds" in res.stderr
    assert "--rounds 3" in cmd and "--json" in cmd and "--address auto" in cmd


def test_for_submit_moves_the_code_to_the_job_and_keeps_imports_in_the_spec(tmp_path: Path) -> None:
    """One mechanism for shipped code: the job's runtime_env carries the code (local paths resolved from
    the spec's folder), the spec the job's `red run` reads keeps only imports (plus --import) and envVars."""
    (tmp_path / "code").mkdir()
    (tmp_path / "lib").mkdir()
    rt = {"workingDir": "code", "pyModules": ["lib", "https://example.com/m.zip"], "pip": ["tqdm"],
          "envVars": {"A": "1"}, "imports": ["my_tasks"]}
    doc = {"kind": "Federation", "spec": {"rounds": 2, "runtimeEnv": rt}}
    env = for_submit(doc, tmp_path, None, ["more", "my_tasks"])
    assert env["working_dir"] == str(tmp_path / "code")
    assert env["py_modules"] == [str(tmp_path / "lib"), "https://example.com/m.zip"]
    assert env["pip"] == ["tqdm"]
    sent = yaml.safe_load(env["env_vars"]["RED_FEDERATION_YAML"])
    assert sent["spec"]["runtimeEnv"] == {"envVars": {"A": "1"}, "imports": ["my_tasks", "more"]}
    # --working-dir wins; a spec without runtimeEnv gets one only for --import.
    doc = {"kind": "Federation", "spec": {"rounds": 2}}
    env = for_submit(doc, tmp_path, str(tmp_path / "lib"), ["m"])
    assert env["working_dir"] == str(tmp_path / "lib")
    assert yaml.safe_load(env["env_vars"]["RED_FEDERATION_YAML"])["spec"]["runtimeEnv"] == {"imports": ["m"]}
    assert "runtimeEnv" not in yaml.safe_load(
        for_submit({"spec": {}}, tmp_path, None, [])["env_vars"]["RED_FEDERATION_YAML"]
    )["spec"]
    # The same resolver and words as `red run` (red.user_code.local_source).
    with pytest.raises(SpecError, match=r"spec.runtimeEnv.workingDir: missing: no such file or folder"):
        for_submit({"spec": {"runtimeEnv": {"workingDir": "missing"}}}, tmp_path, None, [])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SpecError, match=r"spec.runtimeEnv.workingDir: notes.txt is a file"):
        for_submit({"spec": {"runtimeEnv": {"workingDir": "notes.txt"}}}, tmp_path, None, [])
    with pytest.raises(SpecError, match=r"spec.runtimeEnv.pyModules\[1\]: gone.py: no such file"):
        for_submit({"spec": {"runtimeEnv": {"pyModules": ["lib", "gone.py"]}}}, tmp_path, None, [])


def test_submission_ids_are_readable_and_unique() -> None:
    a, b = submission_id("digits"), submission_id("digits")
    assert a.startswith("red-digits-") and a != b


def test_log_chunks_become_lines_whatever_the_cuts() -> None:
    text = '{"event":"start","round":0}\nhello\n{"event":"done","round":2}\n'
    for cut in range(len(text)):
        lines, rest = split_events(text[:cut], "")
        more, rest = split_events(text[cut:], rest)
        assert lines + more == ['{"event":"start","round":0}', "hello", '{"event":"done","round":2}']
        assert rest == ""


@pytest.mark.parametrize(
    ("line", "event"),
    [
        ('{"event":"round","round":1}', "round"),
        ('  {"event":"failed","reason":"X"}  ', "failed"),
        ('{"event":"submitted"}', None),  # not the engine's
        ('{"no":"event"}', None),
        ("{not json}", None),
        ("INFO something {x}", None),
        ("[1, 2]", None),
    ],
)
def test_engine_lines_are_told_from_other_output(line: str, event: str | None) -> None:
    got = as_event(line)
    assert (got or {}).get("event") == event


def test_a_failed_jobs_summary_is_its_first_line() -> None:
    from red.jobs import JobState

    message = "Job entrypoint command failed with exit code 1, last available logs:\n" + "log line\n" * 1000
    state = JobState("red-x-1", "FAILED", message, 1, "e")
    assert state.summary == "Job entrypoint command failed with exit code 1, last available logs:"
    assert JobState("red-x-1", "RUNNING", "", None, "e").summary == ""
