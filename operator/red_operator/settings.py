"""Operator settings: one dataclass, one docstring per field, read from the environment or the CLI."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

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

    ray_token_file: Path | None = None
    """Development only: put this file's token into each Federation's token Secret instead of a random
    one, so a Ray head started by hand (the stand-in for the RayCluster's head) accepts it."""

    engine_entrypoint: str = "python -m red_operator.engine_job"
    """The Ray job's entrypoint; it reads the Federation from the job's environment."""

    starting_poll_seconds: float = 3.0
    """While a Federation is Pending or Starting, reconcile it at least this often (watch events on its
    RayCluster and pods wake it sooner; Ray's PENDING -> RUNNING is only seen by asking the dashboard)."""

    job_poll_seconds: float = 5.0
    """While a Federation is Running, ask the Ray dashboard for the job's status this often (its report
    ConfigMap's watch events carry the rounds; this catches the job's end and a stalled engine)."""

    resync_seconds: float = 300.0
    """Every Federation is reconciled at least this often, whatever its phase: the safety net under the
    watches. A pass that changes nothing reads only caches and costs no API request."""

    error_backoff_base_seconds: float = 0.5
    """A pass that raised is retried after this, doubling per consecutive failure ..."""

    error_backoff_cap_seconds: float = 60.0
    """... up to this."""

    report_interval_seconds: float = 2.0
    """The engine writes its report ConfigMap at most this often (the first and last report always)."""

    http_timeout_seconds: float = 30.0
    """Timeout of each call to the Ray dashboard."""

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

    extra_engine_env: dict[str, str] = field(default_factory=dict)
    """Extra environment for the engine job (e.g. RED_LOG_LEVEL)."""

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
            elif f.name == "leader_election":
                values[f.name] = raw.strip().lower() in ("1", "true", "yes", "on")
            else:
                values[f.name] = raw
        return cls(**values)  # type: ignore[arg-type]
