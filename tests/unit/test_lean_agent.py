"""`red.lean_agent`, the raylet's dashboard agent on a local run: its port files, and its end with the raylet.

Ray-free: a shell plays the raylet. The full start (a real raylet reading the files) is
tests/engine/test_local_ray.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import ROOT, cmdline

AGENT = ROOT / "red" / "lean_agent.py"


def test_it_writes_not_served_to_every_port_file_and_ends_when_its_raylet_does(tmp_path: Path) -> None:
    files = [tmp_path / "metrics_agent_port_x", tmp_path / "dashboard_agent_listen_port_x"]
    # The "raylet" starts the agent, waits for its files, prints the agent's pid and exits.
    script = (
        'export RAY_RAYLET_PID=$$; "$0" -I "$1" "$2" "$3" & agent=$!; '
        'while [ ! -f "$3" ]; do sleep 0.05; done; echo $agent'
    )
    res = subprocess.run(
        ["sh", "-c", script, sys.executable, str(AGENT), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert res.returncode == 0, res.stderr
    agent = int(res.stdout.split()[-1])
    assert [f.read_text() for f in files] == ["-1", "-1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files), "no temporary file left"
    deadline = time.monotonic() + 10
    while "lean_agent.py" in cmdline(agent) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "lean_agent.py" not in cmdline(agent), "the agent outlived its raylet"


def test_it_ends_on_sigterm_as_the_raylet_stops_it(tmp_path: Path) -> None:
    f = tmp_path / "metrics_export_port_x"
    proc = subprocess.Popen(
        [sys.executable, "-I", str(AGENT), str(f)], env={**os.environ, "RAY_RAYLET_PID": str(os.getpid())}
    )
    try:
        deadline = time.monotonic() + 10
        while not f.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f.read_text() == "-1"
        assert proc.poll() is None, "it must live as long as its raylet"
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def test_without_a_port_file_it_says_how_to_call_it() -> None:
    res = subprocess.run([sys.executable, "-I", str(AGENT)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "usage: lean_agent.py PORT_FILE" in res.stderr
