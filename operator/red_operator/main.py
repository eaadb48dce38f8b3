"""The `red-operator` command: run the Federation operator.

    red-operator [--kubeconfig PATH] [--namespace NS ...] [--dashboard-url-template T] [--log-format json] ...

Every option also reads `RED_OPERATOR_<NAME>` from the environment (see `settings.Settings`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.server
import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from red._version import __version__
from red_operator import metrics
from red_operator.settings import Settings

USER_AGENT = "red-operator"
"""Our requests' User-Agent (kopf's say `kopf/...`): the API server's audit log tells them apart."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="red-operator", description="Reconcile red.dev Federations into KubeRay clusters.")
    p.add_argument("--version", action="version", version=f"red-operator {__version__}")
    p.add_argument("--kubeconfig", help="out-of-cluster: this kubeconfig (default: in-cluster, then $KUBECONFIG)")
    p.add_argument("--namespace", "-n", action="append", default=[], help="watch only these namespaces")
    p.add_argument("--dashboard-url-template", help="e.g. http://{service}.{namespace}.svc:8265")
    p.add_argument("--engine-kubeconfig-dir", type=Path, help="out-of-cluster: write engine kubeconfigs here")
    p.add_argument("--token-key-file", type=Path, help="key the Ray tokens are derived from (>= 32 bytes)")
    p.add_argument("--ray-token-file", type=Path, help="development: the stand-in Ray head's token")
    p.add_argument("--job-poll-seconds", type=float, help="ask Ray for a running job's status this often")
    # The name from before reconciles were event-driven: it set the interval of every pass.
    p.add_argument("--reconcile-seconds", dest="job_poll_seconds", type=float, help=argparse.SUPPRESS)
    p.add_argument("--resync-seconds", type=float, help="reconcile every Federation at least this often")
    p.add_argument("--metrics-port", type=int, default=int(os.environ.get("RED_OPERATOR_METRICS_PORT", "8000")))
    p.add_argument("--liveness-port", type=int, default=int(os.environ.get("RED_OPERATOR_LIVENESS_PORT", "8080")))
    p.add_argument("--bind", default=os.environ.get("RED_OPERATOR_BIND", "0.0.0.0"), help="address of both endpoints")
    p.add_argument(
        "--leader-elect",
        action="store_true",
        default=None,
        help="one of several replicas: reconcile only while holding the Lease (RED_OPERATOR_LEADER_ELECTION)",
    )
    p.add_argument("--verbose", "-v", action="store_true")
    p.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=os.environ.get("RED_OPERATOR_LOG_FORMAT", "text"),
        help="text (default), or json: one JSON object per line, with the Federation in `object`",
    )
    return p


LOG_FORMATS = ("text", "json")


def configure_logging(*, verbose: bool = False, log_format: str = "text") -> None:
    """Root logging for the operator process; `json` uses kopf's JSON formatter (one object per line)."""
    if log_format == "json":
        import kopf

        # kopf.configure replaces the root handler with its own; it adds `object` (the k8s ref) and
        # `severity` to every record of a Federation's logger.
        kopf.configure(verbose=verbose, log_format=kopf.LogFormat.JSON, log_refkey="object")
        logging.captureWarnings(True)  # Python warnings become JSON lines too, not bare text
    else:
        logging.basicConfig(
            level=logging.DEBUG if verbose else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
    logging.getLogger("kubernetes").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    # kopf logs every handler run at INFO ("Handler ... succeeded"): once per watch event is noise.
    logging.getLogger("kopf.objects").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def settings_from_args(args: argparse.Namespace, env: dict[str, str] | None = None) -> Settings:
    s = Settings.from_env(env)
    overrides: dict[str, object] = {}
    if args.dashboard_url_template:
        overrides["dashboard_url_template"] = args.dashboard_url_template
    if args.engine_kubeconfig_dir:
        overrides["engine_kubeconfig_dir"] = args.engine_kubeconfig_dir
    if args.token_key_file:
        overrides["token_key_file"] = args.token_key_file
    if args.ray_token_file:
        overrides["ray_token_file"] = args.ray_token_file
    if args.job_poll_seconds:
        overrides["job_poll_seconds"] = args.job_poll_seconds
    if args.leader_elect:
        overrides["leader_election"] = True
    if args.resync_seconds:
        overrides["resync_seconds"] = args.resync_seconds
    return dataclasses.replace(s, **overrides)  # type: ignore[arg-type]


LOST_LEASE_EXIT_CODE = 3


def _lost_lease() -> None:
    """Another replica may reconcile now: stop at once, mid-pass or not. The pod restarts as a standby;
    everything a pass did is in the cluster, and job submission ids are deterministic."""
    logging.getLogger(__name__).error("lost the leader Lease: exiting")
    logging.shutdown()
    os._exit(LOST_LEASE_EXIT_CODE)


@contextlib.contextmanager
def standby_health(host: str, port: int) -> Iterator[None]:
    """Answer /healthz with 200 on the liveness port while waiting for the Lease (kopf serves it after)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"standby")

        def log_message(self, *_: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    thread = threading.Thread(target=server.serve_forever, name="standby-health", daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Before anything imports kopf/kubernetes: the kubernetes client reads $KUBECONFIG at import time.
    if args.kubeconfig:
        os.environ["KUBECONFIG"] = str(Path(args.kubeconfig).resolve())  # kopf logs in from it too
    configure_logging(verbose=args.verbose, log_format=args.log_format)
    try:
        settings = settings_from_args(args)
    except ValueError as err:
        print(f"red-operator: {err}", file=sys.stderr)
        return 2
    if settings.token_key_file is None and settings.ray_token_file is None:
        print(
            "red-operator: no token key: pass --token-key-file (or RED_OPERATOR_TOKEN_KEY_FILE); the Helm "
            "chart mounts one. Each Federation's Ray token is derived from it.",
            file=sys.stderr,
        )
        return 2

    import kopf
    from kubernetes import client, config

    from red_operator.cached_kube import CachedKube, Caches
    from red_operator.controller import Controller
    from red_operator.events import EventPoster
    from red_operator.handlers import build_registry
    from red_operator.reconcile import Reconciler
    from red_operator.tokens import TokenKeyError

    if os.environ.get("KUBECONFIG"):
        config.load_kube_config(config_file=os.environ["KUBECONFIG"])  # type: ignore[no-untyped-call]
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    namespaces = args.namespace or None
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = settings.workers + 4
    api = client.ApiClient(cfg)
    api.user_agent = USER_AGENT
    # The informers' long-running watches get their own connection pool: they never starve the workers.
    watch_cfg = client.Configuration.get_default_copy()
    watch_cfg.connection_pool_maxsize = 2 * len(namespaces or [None]) + 2
    watch_api = client.ApiClient(watch_cfg)
    watch_api.user_agent = USER_AGENT
    caches = Caches(watch_api, namespaces)
    kube = CachedKube(api, caches, settings.api_timeout_seconds)
    try:
        reconciler = Reconciler(kube, settings)
    except TokenKeyError as err:
        print(f"red-operator: {err}", file=sys.stderr)
        return 2
    controller = Controller(reconciler, kube, EventPoster(api, settings.api_timeout_seconds), settings)
    caches.on_change = controller.on_owned
    registry = build_registry(controller, settings)
    metrics.serve(args.metrics_port, args.bind)
    log = logging.getLogger(__name__)
    log.info(
        "red-operator: dashboard URL template %s, namespaces %s",
        settings.dashboard_url_template,
        args.namespace or "all",
    )
    elector = None
    if settings.leader_election:
        from red_operator.leader import LeaderElector, default_identity, default_namespace

        elector = LeaderElector(
            api,
            namespace=default_namespace(settings.lease_namespace),
            name=settings.lease_name,
            identity=default_identity(),
            duration_seconds=settings.lease_duration_seconds,
            renew_deadline_seconds=settings.lease_renew_deadline_seconds,
            retry_seconds=settings.lease_retry_seconds,
        )
        metrics.LEADER.set(0)
        # A standby is alive (its liveness probe passes) but does nothing else: no watches, no caches.
        with standby_health(args.bind, args.liveness_port):
            if not elector.wait_until_leader():
                return 0
            metrics.LEADER.set(1)
        elector.keep_renewing(on_lost=_lost_lease)
    metrics.LEADER.set(1)
    try:
        kopf.run(
            registry=registry,
            standalone=True,
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            liveness_endpoint=f"http://{args.bind}:{args.liveness_port}/healthz",
        )
    finally:
        if elector is not None:
            elector.release()  # a clean stop (rolling update): the next replica takes over at once
    return 0


if __name__ == "__main__":
    sys.exit(main())
