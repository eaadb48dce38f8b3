"""Checkpoint and resume through a real S3-compatible server (SeaweedFS), on a real local Ray with digits:
an interrupted run resumed from its S3 checkpoint ends with exactly the uninterrupted run's model, and the
reports name the checkpoint each round saved (what the operator shows as `status.checkpoint`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from red.checkpoint import Checkpointer
from red.runner import run_federation
from red.sinks import CallbackSink
from red.spec import federation_from_dict
from tests.fixtures.s3 import S3Server
from tests.helpers import fed_dict

pytestmark = [pytest.mark.ray, pytest.mark.s3]

POOLED = {"perNode": {"cpu": 0.1}, "broker": {"cpu": 0.1}, "maxActors": 3}
IID = {"name": "digits", "params": {"partition": "iid", "lr": 0.2, "epochs": 1}}


def test_resume_from_s3_matches_the_uninterrupted_run(
    ray_clean: Any, s3_server: S3Server, s3_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The credentials arrive as environment variables, as `credentialsSecret` puts them on the Ray pods.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    base = f"s3://{s3_prefix}"
    fed = federation_from_dict(fed_dict(
        "s3-resume", clients=4, rounds=6, task=IID, resources=POOLED,
        checkpoint={"path": base, "everyRounds": 2, "endpointUrl": s3_server.endpoint_url},
    ))

    def run(folder: str, **kwargs: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        reports: list[dict[str, Any]] = []
        done = run_federation(fed, [CallbackSink(reports.append)], checkpoint_path=f"{base}/{folder}", **kwargs)
        return done, reports

    straight, _ = run("uid-straight")
    _, first = run("uid-paused", rounds=3)  # interrupted: saved after rounds 2 and 3 (the last round)
    rounds = {r["round"]: r.get("checkpoint") for r in first if r["event"] == "round"}
    assert rounds[1] is None and rounds[2]["path"] == f"{base}/uid-paused/round-000002", rounds
    assert rounds[3]["round"] == 3  # the last round of a run is always saved
    resumed, second = run("uid-paused", resume=True)
    assert second[0]["event"] == "start" and second[0]["checkpoint"]["round"] == 3
    assert [r["round"] for r in second if r["event"] == "round"] == [4, 5, 6]

    assert resumed["metrics"]["accuracy"] == pytest.approx(straight["metrics"]["accuracy"], abs=1e-9)
    options = {"endpoint_url": s3_server.endpoint_url}
    a = Checkpointer(f"{base}/uid-straight", storage_options=options).load_latest()
    b = Checkpointer(f"{base}/uid-paused", storage_options=options).load_latest()
    assert a is not None and b is not None and a["round"] == b["round"] == 6
    for k in a["params"]:
        np.testing.assert_array_equal(a["params"][k], b["params"][k])
    assert a["clientVersions"] == b["clientVersions"] and a["participation"] == b["participation"]
    assert resumed["checkpoint"]["path"] == f"{base}/uid-paused/round-000006"
