"""The `red-operator` command: run the Federation operator (one replica, no peering).

    red-operator [--kubeconfig PATH] [--namespace NS ...] [--dashboard-url-template T] [--log-format json] ...

Every option also reads `RED_OPERATOR_<NAME>` from the environment (see `settings.Settings`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from pathlib import Path

from red._version import __version__
from red_operator import metrics
from red_operator.settings import Settings


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="red-operator", description="Reconcile red.dev Federations into KubeRay clusters.")
    p.add_argument("--version", action="version", version=f"red-operator {__version__}")
    p.add_argument("--kubeconfig", help="out-of-cluster: this kubeconfig (default: in-cluster, then $KUBECONFIG)")
    p.add_argument("--namespace", "-n", action="append", default=[], help="watch only these namespaces")
    p.add_argument("--dashboard-url-template", help="e.g. http://{service}.{namespace}.svc:8265")
    p.add_argument("--engine-kubeconfig-dir", type=Path, help="out-of-cluster: write engine kubeconfigs here")
    p.add_argument("--token-key-file", type=Path, help="key the Ray tokens are derived from (>= 32 bytes)")
    p.add_argument("--ray-token-file", type=Path, help="development: the stand-in Ray head's token")
    p.add_argument("--reconcile-seconds", type=float, help="reconcile interval per Federation")
    p.add_argument("--metrics-port", type=int, default=int(os.environ.get("RED_OPERATOR_METRICS_PORT", "8000")))
    p.add_argument("--liveness-port", type=int, default=int(os.environ.get("RED_OPERATOR_LIVENESS_PORT", "8080")))
    p.add_argument("--bind", default=os.environ.get("RED_OPERATOR_BIND", "0.0.0.0"), help="address of both endpoints")
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
    # kopf logs every timer run at INFO ("Timer ... succeeded"): once a second per Federation is noise.
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
    if args.reconcile_seconds:
        overrides["reconcile_interval_seconds"] = args.reconcile_seconds
    return dataclasses.replace(s, **overrides)  # type: ignore[arg-type]


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

    from red_operator.handlers import build_registry
    from red_operator.kube import Kube
    from red_operator.reconcile import Reconciler
    from red_operator.tokens import TokenKeyError

    if os.environ.get("KUBECONFIG"):
        config.load_kube_config(config_file=os.environ["KUBECONFIG"])  # type: ignore[no-untyped-call]
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    cfg = client.Configuration.get_default_copy()
    cfg.connection_pool_maxsize = settings.workers + 4
    try:
        reconciler = Reconciler(Kube(client.ApiClient(cfg), settings.api_timeout_seconds), settings)
    except TokenKeyError as err:
        print(f"red-operator: {err}", file=sys.stderr)
        return 2
    registry = build_registry(reconciler, settings)
    metrics.serve(args.metrics_port, args.bind)
    logging.getLogger(__name__).info(
        "red-operator: dashboard URL template %s, namespaces %s",
        settings.dashboard_url_template,
        args.namespace or "all",
    )
    kopf.run(
        registry=registry,
        standalone=True,
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        liveness_endpoint=f"http://{args.bind}:{args.liveness_port}/healthz",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
