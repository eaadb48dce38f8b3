"""Smaller parts: the engine's report sink, settings, the RBAC rules, the public names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from red_operator import names, rbac
from red_operator.engine_job import MAX_NODES_IN_REPORT, ConfigMapSink, compact
from red_operator.jobs import JobsClient, dashboard_url
from red_operator.main import _parser, settings_from_args
from red_operator.settings import DEFAULT_DASHBOARD_URL, Settings


class FakeCore:
    """Records ConfigMap patches; fails on demand (the sink must survive API errors)."""

    def __init__(self, fail: int = 0) -> None:
        self.patches: list[dict[str, Any]] = []
        self.fail = fail

    def patch_namespaced_config_map(self, name: str, namespace: str, body: dict[str, Any]) -> None:
        if self.fail:
            self.fail -= 1
            raise RuntimeError("apiserver down")
        self.patches.append(json.loads(body["data"][names.REPORT_KEY]))


def rep(event: str, rnd: int) -> dict[str, Any]:
    return {"event": event, "round": rnd, "nodes": [], "versions": {"client_0": rnd}}


def test_sink_throttles_but_never_drops_the_end() -> None:
    core = FakeCore()
    sink = ConfigMapSink("ns", "fl-report", interval_seconds=3600, core=core)
    sink.emit(rep("start", 0))
    for r in range(1, 5):
        sink.emit(rep("round", r))  # throttled
    sink.emit(rep("done", 5))
    sink.close()
    # The latest report wins: rounds between two writes collapse, the last one is always written.
    assert len(core.patches) <= 3
    assert (core.patches[-1]["event"], core.patches[-1]["round"]) == ("done", 5)
    assert "versions" not in core.patches[-1]


def test_sink_survives_api_errors_and_flushes_on_close() -> None:
    core = FakeCore(fail=1)
    sink = ConfigMapSink("ns", "fl-report", interval_seconds=3600, core=core)
    sink.emit(rep("start", 0))  # fails, kept pending
    sink.close()
    assert [p["event"] for p in core.patches] == ["start"]


def test_compact_keeps_unhealthy_nodes_first() -> None:
    nodes = [{"id": f"c{i}", "health": "Alive"} for i in range(500)] + [{"id": "bad", "health": "Dead"}]
    out = compact({"event": "round", "nodes": nodes})
    assert len(out["nodes"]) == MAX_NODES_IN_REPORT and out["nodesTotal"] == 501
    assert out["nodes"][0]["id"] == "bad"


def test_settings_from_env_and_cli() -> None:
    s = Settings.from_env(
        {
            "RED_OPERATOR_DASHBOARD_URL_TEMPLATE": "http://127.0.0.1:1/",
            "RED_OPERATOR_JOB_POLL_SECONDS": "0.5",
            "RED_OPERATOR_LEADER_ELECTION": "true",
            "RED_OPERATOR_ENGINE_KUBECONFIG_DIR": "/tmp/k",
        }
    )
    assert s.dashboard_url_template == "http://127.0.0.1:1/"
    assert s.job_poll_seconds == 0.5 and s.leader_election and s.engine_kubeconfig_dir == Path("/tmp/k")
    assert Settings.from_env({}).dashboard_url_template == DEFAULT_DASHBOARD_URL
    args = _parser().parse_args(["--dashboard-url-template", "http://x:1", "--ray-token-file", "/t"])
    s2 = settings_from_args(args, env={})
    assert s2.dashboard_url_template == "http://x:1" and s2.ray_token_file == Path("/t")
    # The old flag still sets the only interval left of the old timer's job.
    assert settings_from_args(_parser().parse_args(["--reconcile-seconds", "3"]), env={}).job_poll_seconds == 3


@pytest.mark.parametrize(
    ("template", "service", "want"),
    [
        (DEFAULT_DASHBOARD_URL, "fl-ray-head-svc", "http://fl-ray-head-svc.ns.svc:8265"),
        (DEFAULT_DASHBOARD_URL, None, "http://fl-ray-head-svc.ns.svc:8265"),  # KubeRay's default name
        (DEFAULT_DASHBOARD_URL, "custom-svc", "http://custom-svc.ns.svc:8265"),
        ("http://127.0.0.1:8265", "ignored", "http://127.0.0.1:8265"),
        ("http://{federation}.{namespace}.example:80", None, "http://fl.ns.example:80"),
    ],
)
def test_dashboard_url(template: str, service: str | None, want: str) -> None:
    assert dashboard_url(template, service=service, cluster="fl-ray", namespace="ns", federation="fl") == want


def test_token_never_in_repr() -> None:
    assert "s3cret" not in repr(JobsClient("http://x", "s3cret"))


def _allowed(group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rbac.RULES)


@pytest.mark.parametrize(
    ("group", "resource", "verb"),
    [
        ("red.dev", "federations", "watch"),
        ("red.dev", "federations", "patch"),  # kopf's finalizer
        ("red.dev", "federations/status", "patch"),
        ("ray.io", "rayclusters", "create"),
        ("ray.io", "rayclusters", "delete"),
        ("", "pods", "list"),
        ("", "secrets", "create"),
        ("", "configmaps", "update"),  # held, so the engine's Role may grant it
        ("", "serviceaccounts/token", "create"),
        ("rbac.authorization.k8s.io", "roles", "create"),
        ("rbac.authorization.k8s.io", "rolebindings", "delete"),
        ("", "events", "create"),
    ],
)
def test_rbac_covers_what_the_operator_does(group: str, resource: str, verb: str) -> None:
    assert _allowed(group, resource, verb)


def test_rbac_is_not_a_wildcard() -> None:
    for rule in rbac.RULES:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"] and "*" not in rule["apiGroups"]
    assert not _allowed("", "secrets", "list")  # no reading other people's Secrets wholesale
