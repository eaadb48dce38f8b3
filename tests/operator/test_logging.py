"""`red-operator --log-format json`: every line the process logs is one JSON object."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from red_operator import main as operator_main

SCRIPT = """
import logging, sys, warnings
from red_operator.main import configure_logging, parse_settings
s = parse_settings(sys.argv[1:])
configure_logging(verbose=s.verbose, log_format=s.log_format)
logging.getLogger("red_operator.reconcile").info("reconciled %s", "fl")
logging.getLogger("kopf.objects").warning("handler failed", extra={"k8s_ref": {"name": "fl", "namespace": "ns"}})
warnings.warn("a library warning")
"""


def _run(*args: str, env: dict[str, str] | None = None) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()]


@pytest.mark.parametrize(("args", "env"), [(("--log-format", "json"), None), ((), {"RED_OPERATOR_LOG_FORMAT": "json"})])
def test_json_logs_are_one_object_per_line(args: tuple[str, ...], env: dict[str, str] | None) -> None:
    lines = _run(*args, env=env)
    records = [json.loads(ln) for ln in lines]  # fails on any line that is not JSON
    assert [r["message"] for r in records][:2] == ["reconciled fl", "handler failed"]
    assert records[1]["object"] == {"name": "fl", "namespace": "ns"}
    assert [r["severity"] for r in records] == ["info", "warn", "warn"]
    assert "a library warning" in records[2]["message"]
    assert all("timestamp" in r for r in records)


def test_text_is_the_default() -> None:
    lines = _run()
    assert "INFO red_operator.reconcile: reconciled fl" in lines[0]
    assert operator_main.parse_settings([], env={}).log_format == "text"
