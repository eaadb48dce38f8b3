"""The Ray Jobs REST client against a real local Ray head with token auth on (and one with it off)."""

from __future__ import annotations

import time

import pytest
from red_operator.jobs import DashboardUnreachable, JobsClient

from tests.operator.ray_head import RayHead, free_port

pytestmark = pytest.mark.ray


def wait_status(client: JobsClient, sid: str, want: set[str], timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    status = ""
    while time.monotonic() < deadline:
        info = client.get(sid)
        status = str((info or {}).get("status", ""))
        if status in want:
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {sid} stayed {status}, wanted {want}")


def test_token_is_required(ray_head: RayHead) -> None:
    from red_operator.jobs import DashboardError

    with pytest.raises(DashboardError) as err:
        JobsClient(ray_head.dashboard_url, "wrong").get("nope")
    assert "wrong" not in str(err.value)  # never echo a token


def test_submit_adopt_get_stop(ray_head: RayHead) -> None:
    client = JobsClient(ray_head.dashboard_url, ray_head.token)
    assert "ray_version" in client.version()
    sid = f"red-test-{free_port()}-1"
    request = {"entrypoint": "python -c 'import time; time.sleep(60)'", "submission_id": sid}
    got, adopted = client.submit(request)
    assert (got, adopted) == (sid, False)
    # The same id again (an operator restarted between submitting and writing status): adopted.
    assert client.submit(request) == (sid, True)
    wait_status(client, sid, {"RUNNING"})
    assert client.stop(sid) is True
    assert wait_status(client, sid, {"STOPPED"}) == "STOPPED"
    assert client.get("red-never-submitted") is None


def test_failed_job_carries_rays_reason(ray_head: RayHead) -> None:
    client = JobsClient(ray_head.dashboard_url, ray_head.token)
    sid = f"red-test-{free_port()}-fail"
    client.submit({"entrypoint": "python -c 'raise SystemExit(3)'", "submission_id": sid})
    assert wait_status(client, sid, {"FAILED", "SUCCEEDED"}) == "FAILED"
    info = client.get(sid) or {}
    assert info.get("error_type") == "JOB_ENTRYPOINT_COMMAND_ERROR"
    assert "exit code 3" in info.get("message", "")


def test_a_token_head_refuses_callers_without_the_token(ray_head: RayHead) -> None:
    assert JobsClient(ray_head.dashboard_url, ray_head.token).enforces_auth() is True


def test_an_open_head_is_noticed(open_ray_head: RayHead) -> None:
    # What a KubeRay without authOptions support leaves running: anyone may submit code.
    assert JobsClient(open_ray_head.dashboard_url, open_ray_head.token).enforces_auth() is False


def test_unreachable_dashboard() -> None:
    with pytest.raises(DashboardUnreachable):
        JobsClient(f"http://127.0.0.1:{free_port()}", "t", timeout_seconds=2).version()
