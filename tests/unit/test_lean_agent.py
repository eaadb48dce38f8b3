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

import pytest

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
    # A flag the raylet appends (as under RAY_enable_metrics_collection=0) is not a file to write.
    proc = subprocess.Popen(
        [sys.executable, "-I", str(AGENT), "--disable-metrics-collection", str(f)], cwd=tmp_path,
        env={**os.environ, "RAY_RAYLET_PID": str(os.getpid())},
    )
    try:
        deadline = time.monotonic() + 10
        while not f.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert f.read_text() == "-1"
        assert sorted(p.name for p in tmp_path.iterdir()) == [f.name]
        assert proc.poll() is None, "it must live as long as its raylet"
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()


def test_without_a_port_file_it_says_how_to_call_it() -> None:
    res = subprocess.run([sys.executable, "-I", str(AGENT)], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "usage: lean_agent.py PORT_FILE" in res.stderr
    res = subprocess.run([sys.executable, "-I", str(AGENT), "--runtime-env", "127.0.0.1"], capture_output=True,
                         text=True, timeout=30)
    assert res.returncode == 2 and "lean_agent.py --runtime-env HOST PORT PORT_FILE" in res.stderr


def test_as_the_runtime_env_agent_it_answers_rays_three_calls_in_rays_messages(tmp_path: Path) -> None:
    """What the raylet's runtime-env client sends and reads: POSTs of protobuf bodies on a kept-alive
    connection. Decoded here with Ray's own generated messages."""
    import http.client

    pb = pytest.importorskip("ray.core.generated.runtime_env_agent_pb2")
    port_file = tmp_path / "runtime_env_agent_port_x"
    proc = subprocess.Popen([sys.executable, "-I", str(AGENT), "--runtime-env", "127.0.0.1", "0", str(port_file)],
                            env={**os.environ, "RAY_RAYLET_PID": str(os.getpid())})
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        port = int(port_file.read_text())
        assert port > 0
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def call(path: str, request: bytes) -> tuple[int, bytes]:
            conn.request("POST", path, body=request, headers={"Content-Type": "application/octet-stream"})
            res = conn.getresponse()
            return res.status, res.read()

        create = pb.GetOrCreateRuntimeEnvRequest(serialized_runtime_env='{"env_vars": {"A": "1"}}', job_id=b"\x01")
        status, body = call("/get_or_create_runtime_env", create.SerializeToString())
        created = pb.GetOrCreateRuntimeEnvReply.FromString(body)
        assert status == 200 and created.status == pb.AGENT_RPC_STATUS_FAILED
        assert "spec.runtimeEnv" in created.error_message and created.serialized_runtime_env_context == ""
        delete = pb.DeleteRuntimeEnvIfPossibleRequest().SerializeToString()
        status, body = call("/delete_runtime_env_if_possible", delete)
        assert status == 200 and pb.DeleteRuntimeEnvIfPossibleReply.FromString(body).status == pb.AGENT_RPC_STATUS_OK
        status, body = call("/get_runtime_envs_info", pb.GetRuntimeEnvsInfoRequest().SerializeToString())
        info = pb.GetRuntimeEnvsInfoReply.FromString(body)
        assert status == 200 and list(info.runtime_env_states) == [] and info.total == 0
        status, _ = call("/no_such_call", b"")
        assert status == 404
        assert proc.poll() is None, "it must live as long as its raylet"
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
