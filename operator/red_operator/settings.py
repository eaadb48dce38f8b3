"""Operator settings: one dataclass, one docstring per field, and exactly one flag and one variable each.

Every field `some_name` is set by the flag `--some-name` and by the variable `RED_OPERATOR_SOME_NAME`;
a flag wins over the variable, the variable over the default. The parser is generated from the fields
(`parser()`), so a new setting cannot forget either, and a test pins the one-to-one map. A value that
does not convert is a `SettingsError` naming the variable or flag and what it takes.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import os
import typing
from dataclasses import Field, dataclass, field, fields, replace
from functools import cache
from pathlib import Path

from red.spec.model import ENGINE_IMAGE
from red_operator.checkpoints import DEFAULT_MOUNT_PATH

ENV_PREFIX = "RED_OPERATOR_"
DEFAULT_DASHBOARD_URL = "http://{service}.{namespace}.svc:8265"
LOG_FORMATS = ("text", "json")
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")

# Earlier names of flags, kept so existing Deployments and scripts keep working (hidden from --help).
FLAG_ALIASES = {
    "--reconcile-seconds": "job_poll_seconds",  # from before reconciles were event-driven
    "--leader-elect": "leader_election",  # the name controller-runtime operators use
}
SHORT_FLAGS = {"namespace": "-n", "verbose": "-v"}


class SettingsError(ValueError):
    """A setting's value is malformed; the message names the flag or variable and what it takes."""


@dataclass(frozen=True)
class Settings:
    kubeconfig: Path | None = None
    """Out of cluster: the kubeconfig to use (default: in cluster, then $KUBECONFIG)."""

    namespace: tuple[str, ...] = ()
    """Watch only these namespaces (the flag repeats; the variable is comma-separated); empty: all."""

    metrics_port: int = 8000
    """Port of the Prometheus metrics endpoint (/metrics)."""

    liveness_port: int = 8080
    """Port of the liveness endpoint (/healthz)."""

    bind: str = "0.0.0.0"
    """Address both endpoints listen on."""

    log_format: str = "text"
    """text, or json: one JSON object per line, with the Federation in `object`."""

    verbose: bool = False
    """Log at DEBUG, and every kopf handler run."""

    dashboard_url_template: str = DEFAULT_DASHBOARD_URL
    """Where the Ray dashboard of a Federation's cluster answers. Placeholders: {service} (the head
    service, from RayCluster.status.head.serviceName), {cluster}, {namespace}, {federation}.
    Operators running outside the cluster override it (the e2e tests point it at a local Ray head)."""

    engine_kubeconfig_dir: Path | None = None
    """Out-of-cluster runs only: write a kubeconfig for each Federation's engine ServiceAccount (a
    short-lived token from the TokenRequest API) into this directory and pass its *path* to the job.
    Unset (in cluster), the engine pods use their mounted ServiceAccount token."""

    token_key_file: Path | None = None
    """The operator's key (at least 32 bytes): each Federation's Ray token is HMAC-SHA256(key, its uid),
    so the operator computes tokens and never reads Secrets (see red_operator.tokens). The chart mounts
    it from a Secret it generates once; out of cluster pass a file of your own."""

    ray_token_file: Path | None = None
    """Development only: use this file's token for every Federation instead of a derived one, so a Ray
    head started by hand (the stand-in for the RayCluster's head) accepts it."""

    engine_image: str = ENGINE_IMAGE
    """The Ray pods' image for a Federation whose `spec.cluster.image` is unset (Helm value `engine.image`;
    by default this release's engine image)."""

    engine_entrypoint: str = "python -m red_operator.engine_job"
    """The Ray job's entrypoint; it reads the Federation from the job's environment."""

    starting_poll_seconds: float = 3.0
    """While a Federation is Pending or Starting, reconcile it at least this often (watch events on its
    RayCluster and pods wake it sooner; Ray's PENDING -> RUNNING is only seen by asking the dashboard)."""

    job_poll_seconds: float = 5.0
    """While a Federation is Running, ask the Ray dashboard for the job's status and read its report
    ConfigMap this often (the rounds, the job's end, a stalled engine)."""

    resync_seconds: float = 300.0
    """Every Federation is reconciled at least this often, whatever its phase: the safety net under the
    watches. A pass of a finished Federation reads only caches and costs no API request."""

    backoff_base_seconds: float = 2.0
    """A pass that failed (an API error, a timeout) is retried after this, then twice that, and so on
    up to `max_backoff_seconds`; meanwhile watch events on it wait too (failures.Backoff)."""

    report_interval_seconds: float = 2.0
    """The engine writes its report ConfigMap at most this often (the first and last report always)."""

    http_timeout_seconds: float = 30.0
    """Timeout of each call to the Ray dashboard."""

    api_timeout_seconds: float = 30.0
    """Timeout of each call to the Kubernetes API server: no call may hang a reconcile."""

    max_backoff_seconds: float = 300.0
    """The longest wait between two tries of a Federation whose passes keep failing."""

    stuck_after_seconds: float = 300.0
    """The liveness probe fails when a pass has run this long, or when Federations exist and no worker
    finished a pass or came back to the queue for this long."""

    workers: int = 16
    """Reconcile worker threads: Federations reconcile concurrently, each one by one."""

    leader_election: bool = False
    """Run as one of several replicas: only the holder of the Lease reconciles; the others wait."""

    lease_name: str = "red-operator"
    """The coordination.k8s.io Lease the replicas compete for."""

    lease_namespace: str = ""
    """Its namespace; empty: the operator pod's own namespace (in cluster), else `default`."""

    lease_duration_seconds: float = 15.0
    """A standby takes over this long after the leader's last renewal."""

    lease_renew_deadline_seconds: float = 10.0
    """A leader that could not renew for this long stops (and restarts as a standby)."""

    lease_retry_seconds: float = 2.0
    """How often the leader renews and a standby tries to acquire."""

    engine_plugins: str = ""
    """Task, algorithm and schema names the engine image adds to the built-ins, as `kind:name` pairs
    (e.g. `task:cifar,schema:my-ring`). The operator refuses unknown names before it creates a cluster;
    plugins installed in the operator's own environment (entry points) are known without this."""

    checkpoint_mount_path: str = DEFAULT_MOUNT_PATH
    """Where a Federation's `spec.checkpoint.persistentVolumeClaim` is mounted in its Ray pods; the engine
    checkpoints under `<this>/<Federation uid>`. Out of cluster, with a Ray head on the host standing in for
    the RayCluster's, point it at a host directory."""

    extra_engine_env: dict[str, str] = field(default_factory=dict)
    """Extra environment for the engine job (e.g. RED_LOG_LEVEL), from the environment as a JSON object:
    RED_OPERATOR_EXTRA_ENGINE_ENV='{"RED_LOG_LEVEL": "DEBUG"}'."""

    def plugins(self) -> list[tuple[str, str]]:
        """`engine_plugins` as (kind, name) pairs; kind is task, algorithm or schema."""
        out = []
        for item in filter(None, (p.strip() for p in self.engine_plugins.split(","))):
            kind, sep, name = item.partition(":")
            if not sep or kind not in ("task", "algorithm", "schema") or not name:
                raise SettingsError(
                    f"engine_plugins: {item!r} must be kind:name with kind task, algorithm or schema"
                )
            out.append((kind, name))
        return out

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise SettingsError(f"log_format: {self.log_format!r} is not one of {', '.join(LOG_FORMATS)}")

    @classmethod
    def from_env(cls, env: typing.Mapping[str, str] | None = None) -> Settings:
        """Read `RED_OPERATOR_<FIELD>` variables (e.g. RED_OPERATOR_DASHBOARD_URL_TEMPLATE)."""
        env = os.environ if env is None else env
        values = {}
        for f in fields(cls):
            raw = env.get(env_name(f.name))
            if raw is not None:
                values[f.name] = _convert(f, raw, env_name(f.name))
        return cls(**values)  # type: ignore[arg-type]

    @classmethod
    def from_args(cls, args: argparse.Namespace, env: typing.Mapping[str, str] | None = None) -> Settings:
        """The environment's settings, overridden by the flags that were given (`parser()`)."""
        given = {k: v for k, v in vars(args).items() if k in _FIELD_NAMES}
        return replace(cls.from_env(env), **given)


def env_name(name: str) -> str:
    """The variable that sets field `name`."""
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    """The flag that sets field `name`."""
    return "--" + name.replace("_", "-")


def parser(prog: str = "red-operator", description: str = "") -> argparse.ArgumentParser:
    """Flags for every field; an absent flag leaves the attribute unset (the variable or default holds)."""
    p = argparse.ArgumentParser(prog=prog, description=description, argument_default=argparse.SUPPRESS)
    docs = field_docs()
    for f in fields(Settings):
        names = [flag_name(f.name), *([SHORT_FLAGS[f.name]] if f.name in SHORT_FLAGS else [])]
        help_text = f"{docs.get(f.name, '')} [{env_name(f.name)}]".replace("%", "%%")
        hint = _hints()[f.name]
        if hint is bool:
            p.add_argument(*names, dest=f.name, action=argparse.BooleanOptionalAction, help=help_text)
        elif f.name == "namespace":
            p.add_argument(*names, dest=f.name, action=_Append, metavar="NS", help=help_text)
        else:
            p.add_argument(*names, dest=f.name, type=_flag_converter(f), metavar=f.name.upper(), help=help_text)
    for alias, dest in FLAG_ALIASES.items():
        if _hints()[dest] is bool:
            p.add_argument(alias, dest=dest, action="store_true", help=argparse.SUPPRESS)
        else:
            f = next(f for f in fields(Settings) if f.name == dest)
            p.add_argument(alias, dest=dest, type=_flag_converter(f), help=argparse.SUPPRESS)
    return p


class _Append(argparse.Action):
    """`--namespace a --namespace b` → ("a", "b"); each value may also be comma-separated."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        before = tuple(getattr(namespace, self.dest, ()))
        setattr(namespace, self.dest, before + _names(str(values)))


def _names(raw: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in raw.split(",") if n.strip())


@cache
def _hints() -> dict[str, object]:
    return typing.get_type_hints(Settings)


_FIELD_NAMES = frozenset(f.name for f in fields(Settings))


def _flag_converter(f: Field[object]) -> typing.Callable[[str], object]:
    def convert(raw: str) -> object:
        try:
            return _convert(f, raw, flag_name(f.name))
        except SettingsError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    convert.__name__ = f.name  # argparse names the type in its error message
    return convert


def _convert(f: Field[object], raw: str, source: str) -> object:
    """`raw` (a variable's or a flag's text) as field `f`'s type."""
    hint = _hints()[f.name]
    if f.name == "extra_engine_env":
        return _env_map(source, raw)
    if f.name == "namespace":
        return _names(raw)
    if f.name == "log_format" and raw not in LOG_FORMATS:
        raise SettingsError(f"{source}: {raw!r} is not one of {', '.join(LOG_FORMATS)}")
    if hint == Path | None:
        return Path(raw) if raw else None
    if hint is bool:
        low = raw.strip().lower()
        if low not in TRUE + FALSE:
            raise SettingsError(f"{source}: {raw!r} is not a boolean; use true or false")
        return low in TRUE
    for typ, what in ((int, "a whole number"), (float, "a number")):
        if hint is typ:
            try:
                value = typ(raw)
            except ValueError:
                raise SettingsError(f"{source}: {raw!r} is not {what} (e.g. {f.default})") from None
            if value < 0:
                raise SettingsError(f"{source}: {raw!r} must not be negative")
            return value
    return raw


@cache
def field_docs() -> dict[str, str]:
    """Each field's docstring (the string under it in the class body), whitespace folded."""
    out: dict[str, str] = {}
    try:
        source = inspect.getsource(Settings)
    except (OSError, TypeError):  # installed without sources (bytecode only): --help without the docs
        return out
    body = ast.parse(source).body[0]
    assert isinstance(body, ast.ClassDef)
    for prev, node in zip(body.body, body.body[1:], strict=False):
        if (isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name) and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            out[prev.target.id] = " ".join(node.value.value.split())
    return out


def _env_map(name: str, raw: str) -> dict[str, str]:
    """A JSON object of strings, e.g. '{"RED_LOG_LEVEL": "DEBUG"}'; empty text is an empty map."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as err:
        raise SettingsError(
            f"{name}: not JSON ({err}); give an object, e.g. '{{\"RED_LOG_LEVEL\": \"DEBUG\"}}'"
        ) from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise SettingsError(f"{name}: must be a JSON object of strings, e.g. '{{\"RED_LOG_LEVEL\": \"DEBUG\"}}'")
    return dict(value)
