"""Operator settings: one dataclass, one docstring per field, read from the environment or the CLI."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from red.spec.model import ENGINE_IMAGE
from red_operator.checkpoints import DEFAULT_MOUNT_PATH

ENV_PREFIX = "RED_OPERATOR_"
DEFAULT_DASHBOARD_URL = "http://{service}.{namespace}.svc:8265"


@dataclass(frozen=True)
class Settings:
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
                raise ValueError(
                    f"engine_plugins: {item!r} must be kind:name with kind task, algorithm or schema"
                )
            out.append((kind, name))
        return out

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read `RED_OPERATOR_<FIELD>` variables (e.g. RED_OPERATOR_DASHBOARD_URL_TEMPLATE)."""
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            if f.name == "extra_engine_env":
                values[f.name] = _env_map(ENV_PREFIX + f.name.upper(), raw)
            elif f.name.endswith("_dir") or f.name.endswith("_file"):
                values[f.name] = Path(raw) if raw else None
            elif f.name.endswith("_seconds"):
                values[f.name] = float(raw)
            elif f.name == "workers":
                values[f.name] = int(raw)
            elif f.name == "leader_election":
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                values[f.name] = raw
        return cls(**values)  # type: ignore[arg-type]


def _env_map(name: str, raw: str) -> dict[str, str]:
    """A JSON object of strings, e.g. '{"RED_LOG_LEVEL": "DEBUG"}'; empty text is an empty map."""
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError as err:
        raise ValueError(f"{name}: not JSON ({err}); give an object, e.g. '{{\"RED_LOG_LEVEL\": \"DEBUG\"}}'") from None
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"{name}: must be a JSON object of strings, e.g. '{{\"RED_LOG_LEVEL\": \"DEBUG\"}}'")
    return dict(value)
