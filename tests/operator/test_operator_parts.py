"""Smaller parts: the engine's report sink, settings, the RBAC rules, the public names."""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest
from red_operator import main as operator_main
from red_operator import names, rbac
from red_operator.engine_job import MAX_NODES_IN_REPORT, ConfigMapSink, compact
from red_operator.jobs import JobsClient, dashboard_url
from red_operator.main import _parser, settings_from_args
from red_operator.settings import DEFAULT_DASHBOARD_URL, FLAG_ALIASES, SHORT_FLAGS, Settings, env_name, flag_name

from tests.helpers import ROOT


class FakeCore:
    """Records ConfigMap patches; fails on demand (the sink must survive API errors)."""

    def __init__(self, fail: int = 0) -> None:
        self.patches: list[dict[str, Any]] = []
        self.fail = fail

    def patch_namespaced_config_map(
        self, name: str, namespace: str, body: dict[str, Any], _request_timeout: float | None = None
    ) -> None:
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
    # Every stored report says what software the run uses: the operator may see any one of them first.
    assert all(set(p["software"]) == {"red", "ray", "torch", "python", "cuda", "image"} for p in core.patches)


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
    s3 = settings_from_args(_parser().parse_args(["--token-key-file", "/k"]), env={})
    assert s3.token_key_file == Path("/k")
    assert Settings.from_env({"RED_OPERATOR_TOKEN_KEY_FILE": "/k2"}).token_key_file == Path("/k2")
    # The old flag still sets the only interval left of the old timer's job.
    assert settings_from_args(_parser().parse_args(["--reconcile-seconds", "3"]), env={}).job_poll_seconds == 3
    # One backoff for failed passes, whatever the phase (failures.Backoff).
    env = {"RED_OPERATOR_BACKOFF_BASE_SECONDS": "1", "RED_OPERATOR_MAX_BACKOFF_SECONDS": "60"}
    s4 = Settings.from_env(env)
    assert (s4.backoff_base_seconds, s4.max_backoff_seconds) == (1.0, 60.0)


def test_operator_without_a_token_key_exits_with_the_fix(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("RED_OPERATOR_TOKEN_KEY_FILE", "RED_OPERATOR_RAY_TOKEN_FILE", "KUBECONFIG"):
        monkeypatch.delenv(var, raising=False)
    assert operator_main.main([]) == 2
    assert "--token-key-file" in capsys.readouterr().err


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
        ("", "pods", "watch"),  # the Ray pod informer
        ("ray.io", "rayclusters", "watch"),  # the RayCluster informer
        ("", "secrets", "create"),
        ("", "configmaps", "patch"),  # held, so the engine's Role may grant it
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


@pytest.mark.parametrize(
    ("raw", "expect"),
    [
        ('{"RED_LOG_LEVEL": "DEBUG", "B": "2"}', {"RED_LOG_LEVEL": "DEBUG", "B": "2"}),
        ("", {}),
        ("  ", {}),
        ("{}", {}),
    ],
)
def test_extra_engine_env_setting(raw: str, expect: dict[str, str]) -> None:
    assert Settings.from_env({"RED_OPERATOR_EXTRA_ENGINE_ENV": raw}).extra_engine_env == expect


@pytest.mark.parametrize(
    ("raw", "message"),
    [("RED_LOG_LEVEL=DEBUG", "not JSON"), ('["a"]', "JSON object of strings"), ('{"A": 1}', "JSON object of strings")],
)
def test_extra_engine_env_setting_refuses(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match="RED_OPERATOR_EXTRA_ENGINE_ENV") as err:
        Settings.from_env({"RED_OPERATOR_EXTRA_ENGINE_ENV": raw})
    assert message in str(err.value)


def test_engine_plugins_setting() -> None:
    assert Settings(engine_plugins="task:cifar, schema:my-ring").plugins() == [("task", "cifar"), ("schema", "my-ring")]
    assert Settings().plugins() == []
    with pytest.raises(ValueError, match="kind:name"):
        Settings(engine_plugins="cifar").plugins()


@pytest.mark.parametrize(
    ("old", "new", "patch"),
    [
        ({"a": 1, "b": 2}, {"a": 1}, {"b": None, "a": 1}),
        (
            {"metrics": {"accuracy": 0.5, "loss": 1.0}},
            {"metrics": {"loss": 0.9}},
            {"metrics": {"accuracy": None, "loss": 0.9}},
        ),
        ({"nodes": [1, 2]}, {"nodes": [3]}, {"nodes": [3]}),
        ({"job": 1}, {"job": {"a": 1}}, {"job": {"a": 1}}),
    ],
)
def test_status_merge_patch_removes_nested_keys(
    old: dict[str, Any], new: dict[str, Any], patch: dict[str, Any]
) -> None:
    from red_operator.kube import merge_patch

    assert merge_patch(old, new) == patch


@pytest.mark.parametrize(
    ("group", "resource", "verb"),
    [
        ("", "secrets", "get"),  # tokens are derived, never read
        ("", "secrets", "list"),
        ("", "secrets", "delete"),  # the token Secret goes with its Federation (garbage collector)
        ("", "configmaps", "update"),
        ("", "configmaps", "list"),  # no ConfigMap informer: it would read every ConfigMap of the cluster
        ("", "configmaps", "watch"),
        ("", "pods", "create"),
        ("", "pods", "delete"),
        ("coordination.k8s.io", "leases", "update"),  # leader election: rbac.LEASE_RULES, a Role in one namespace
        ("", "serviceaccounts/token", "create"),  # dev-only: rbac.DEV_RULES
        ("rbac.authorization.k8s.io", "roles", "escalate"),
        ("rbac.authorization.k8s.io", "roles", "bind"),
    ],
)
def test_rbac_leaves_out(group: str, resource: str, verb: str) -> None:
    assert not _allowed(group, resource, verb)


def test_lease_rules_are_only_the_lease() -> None:
    assert rbac.LEASE_RULES == [
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]}
    ]


def test_dev_rules_are_only_token_requests() -> None:
    assert rbac.DEV_RULES == [{"apiGroups": [""], "resources": ["serviceaccounts/token"], "verbs": ["create"]}]


def _sample(name: str) -> tuple[str, list[str]]:
    """A non-default value for setting `name`: as a variable's text, and as the flag arguments."""
    special = {
        "namespace": "team-a,team-b",
        "log_format": "json",
        "extra_engine_env": '{"RED_LOG_LEVEL": "DEBUG"}',
        "engine_plugins": "task:cifar",
    }
    hint = typing.get_type_hints(Settings)[name]
    if hint is bool:
        return "true", [flag_name(name)]
    raw = special.get(name) or {int: "7", float: "2.5"}.get(hint, "/some/value")  # type: ignore[call-overload]
    return raw, [f"{flag_name(name)}={raw}"]


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(Settings)])
def test_every_setting_has_one_flag_and_one_variable_that_set_it_alone(name: str) -> None:
    raw, argv = _sample(name)
    from_env = Settings.from_env({env_name(name): raw})
    from_flag = operator_main.parse_settings(argv, env={})
    assert from_env == from_flag
    default = Settings()
    changed = {f.name for f in dataclasses.fields(Settings) if getattr(from_env, f.name) != getattr(default, f.name)}
    assert changed == {name}
    # The flag wins over the variable.
    assert operator_main.parse_settings(argv, env={env_name(name): raw}) == from_env


def test_the_parser_has_no_flag_without_a_setting() -> None:
    options = {o for action in operator_main._parser()._actions for o in action.option_strings}
    names = [f.name for f in dataclasses.fields(Settings)]
    bools = [n for n in names if typing.get_type_hints(Settings)[n] is bool]
    expected = {flag_name(n) for n in names} | {"--no-" + flag_name(n)[2:] for n in bools}
    assert options == expected | set(SHORT_FLAGS.values()) | set(FLAG_ALIASES) | {"-h", "--help", "--version"}
    assert set(FLAG_ALIASES.values()) <= set(names)


def test_every_variable_the_repo_mentions_is_a_setting() -> None:
    known = {env_name(f.name) for f in dataclasses.fields(Settings)}
    texts = [ROOT / "README.md", *(ROOT / "charts").rglob("*.yaml"), *(ROOT / "charts").rglob("*.md"),
             *(ROOT / "docs").rglob("*.md")]
    mentioned = {m for path in texts for m in re.findall(r"RED_OPERATOR_[A-Z_]*[A-Z]", path.read_text())}
    assert mentioned and mentioned <= known, sorted(mentioned - known)


@pytest.mark.parametrize(
    ("env", "argv", "says"),
    [
        ({"RED_OPERATOR_WORKERS": "many"}, [], "RED_OPERATOR_WORKERS: 'many' is not a whole number"),
        ({"RED_OPERATOR_JOB_POLL_SECONDS": "-1"}, [], "RED_OPERATOR_JOB_POLL_SECONDS: '-1' must not be negative"),
        ({"RED_OPERATOR_LEADER_ELECTION": "maybe"}, [], "'maybe' is not a boolean; use true or false"),
        ({"RED_OPERATOR_LOG_FORMAT": "xml"}, [], "'xml' is not one of text, json"),
        ({}, ["--workers", "many"], "--workers: 'many' is not a whole number"),
    ],
)
def test_a_malformed_setting_exits_2_naming_it(
    env: dict[str, str], argv: list[str], says: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    try:
        code = operator_main.main(argv)
    except SystemExit as exited:  # argparse exits itself on a malformed flag
        code = int(exited.code or 0)
    assert code == 2
    assert says in capsys.readouterr().err
