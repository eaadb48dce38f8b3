"""The `red-operator` command: run the Federation operator.

    red-operator [--kubeconfig PATH] [--namespace NS ...] [--dashboard-url-template T] [--log-format json] ...

Every flag `--some-name` has exactly one variable, `RED_OPERATOR_SOME_NAME` (see `settings.Settings`).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import logging
import os
import sys
import threading
from collections.abc import Iterator

from red._version import __version__
from red_operator import metrics
from red_operator.settings import LOG_FORMATS as LOG_FORMATS
from red_operator.settings import Settings, SettingsError
from red_operator.settings import parser as settings_parser

USER_AGENT = "red-operator"
"""Our requests' User-Agent (kopf's say `kopf/...`): the API server's audit log tells them apart."""


def _parser() -> argparse.ArgumentParser:
    p = settings_parser(description="Reconcile red.dev Federations into KubeRay clusters.")
    p.add_argument("--version", action="version", version=f"red-operator {__version__}")
    return p


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
    return Settings.from_args(args, env)


def parse_settings(argv: list[str] | None = None, env: dict[str, str] | None = None) -> Settings:
    """The settings of a command line (`argv`) and an environment: what `main` runs with."""
    return settings_from_args(_parser().parse_args(argv), env)


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
    try:
        settings = parse_settings(argv)
    except SettingsError as err:
        print(f"red-operator: {err}", file=sys.stderr)
        return 2
    # Before anything imports kopf/kubernetes: the kubernetes client reads $KUBECONFIG at import time.
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = str(settings.kubeconfig.resolve())  # kopf logs in from it too
    configure_logging(verbose=settings.verbose, log_format=settings.log_format)
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
    namespaces = list(settings.namespace) or None
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
    metrics.serve(settings.metrics_port, settings.bind)
    log = logging.getLogger(__name__)
    log.info(
        "red-operator: dashboard URL template %s, namespaces %s",
        settings.dashboard_url_template,
        ", ".join(settings.namespace) or "all",
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
        with standby_health(settings.bind, settings.liveness_port):
            if not elector.wait_until_leader():
                return 0
            metrics.LEADER.set(1)
        elector.keep_renewing(on_lost=_lost_lease)
    metrics.LEADER.set(1)
    try:
        kopf.run(
            registry=registry,
            standalone=True,
            clusterwide=not settings.namespace,
            namespaces=list(settings.namespace),
            liveness_endpoint=f"http://{settings.bind}:{settings.liveness_port}/healthz",
        )
    finally:
        if elector is not None:
            elector.release()  # a clean stop (rolling update): the next replica takes over at once
    return 0


if __name__ == "__main__":
    sys.exit(main())
