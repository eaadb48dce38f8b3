"""Operator settings: one dataclass, one docstring per field, read from the environment or the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

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

    engine_entrypoint: str = "python -m red_operator.engine_job"
    """The Ray job's entrypoint; it reads the Federation from the job's environment."""

    reconcile_interval_seconds: float = 2.0
    """How often each Federation is reconciled (level-based: observe everything, act, write status)."""

    report_interval_seconds: float = 2.0
    """The engine writes its report ConfigMap at most this often (the first and last report always)."""

    http_timeout_seconds: float = 30.0
    """Timeout of each call to the Ray dashboard."""

    api_timeout_seconds: float = 30.0
    """Timeout of each call to the Kubernetes API server: no call may hang a reconcile."""

    max_backoff_seconds: float = 300.0
    """A Federation whose passes fail (an API error) is retried after the reconcile interval, then
    twice that, and so on up to this."""

    stuck_after_seconds: float = 300.0
    """The liveness probe fails when a pass has run this long, or when Federations exist and no pass
    finished for this long."""

    workers: int = 16
    """Threads for handlers: Federations reconcile concurrently, each one by one."""

    engine_plugins: str = ""
    """Task, algorithm and schema names the engine image adds to the built-ins, as `kind:name` pairs
    (e.g. `task:cifar,schema:my-ring`). The operator refuses unknown names before it creates a cluster;
    plugins installed in the operator's own environment (entry points) are known without this."""

    checkpoint_mount_path: str = DEFAULT_MOUNT_PATH
    """Where a Federation's `spec.checkpoint.persistentVolumeClaim` is mounted in its Ray pods; the engine
    checkpoints under `<this>/<Federation uid>`. Out of cluster, with a Ray head on the host standing in for
    the RayCluster's, point it at a host directory."""

    extra_engine_env: dict[str, str] = field(default_factory=dict)
    """Extra environment for the engine job (e.g. RED_LOG_LEVEL)."""

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
            if raw is None or f.name == "extra_engine_env":
                continue
            if f.name.endswith("_dir") or f.name.endswith("_file"):
                values[f.name] = Path(raw) if raw else None
            elif f.name.endswith("_seconds"):
                values[f.name] = float(raw)
            elif f.name == "workers":
                values[f.name] = int(raw)
            else:
                values[f.name] = raw
        return cls(**values)  # type: ignore[arg-type]
