"""Run a Federation on Ray: the glue shared by `red run` and the operator's Ray job."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import ray

from red import user_code
from red.checkpoint import Checkpointer
from red.errors import FederationFailed, RedError
from red.local_ray import start_lean
from red.registry import schemas
from red.report import Report
from red.runtime.resident import release_file_pages
from red.sinks import Sink
from red.spec.model import Federation, FederationSpec

log = logging.getLogger(__name__)

# Ray 2.60 logs this notice (a WARNING) on every local `ray.init()` that turns on its token authentication.
# Nothing is wrong and a user can do nothing about it but switch security off, which it suggests: hide
# only this one record unless Red's log level is INFO or lower (RED_LOG_LEVEL=INFO).
RAY_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
RAY_AUTH_NOTICE = "Token authentication is enabled for this Ray cluster"


class HideTokenAuthNotice(logging.Filter):
    """Drops Ray's token-auth notice; every other record (the "disabled" warning too) passes."""

    def __init__(self, show_at_or_below: int = logging.INFO) -> None:
        super().__init__()
        self.show_at_or_below = show_at_or_below

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.getMessage().startswith(RAY_AUTH_NOTICE):
            return True
        return logging.getLogger("red").getEffectiveLevel() <= self.show_at_or_below


def hide_token_auth_notice() -> None:
    """Install the filter once on Ray's authentication logger (idempotent)."""
    logger = logging.getLogger(RAY_AUTH_LOGGER)
    if not any(isinstance(f, HideTokenAuthNotice) for f in logger.filters):
        logger.addFilter(HideTokenAuthNotice())


def init_ray(
    address: str | None = None, num_cpus: int | None = None, runtime_env: dict[str, Any] | None = None
) -> bool:
    """Connect to ``address`` or start a local Ray. Returns True when this call started Ray.
    ``runtime_env`` is the job's (the user's code, from `red.user_code.for_red_run`)."""
    if ray.is_initialized():
        return False
    hide_token_auth_notice()
    extra: dict[str, Any] = {"runtime_env": runtime_env} if runtime_env else {}
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=True, **extra)
        return True
    # Without the dashboard's API server, the autoscaler monitor and Ray's dashboard agent, and without
    # the raylet's one-second polls (see red.local_ray: none serves a local run; 2 s before the first
    # round and 300 MB).
    start_lean(num_cpus=num_cpus or os.cpu_count() or 2, logging_level=logging.WARNING, log_to_driver=True, **extra)
    return True


def checkpointer_for(spec: FederationSpec, path: str | None = None) -> Checkpointer | None:
    """The run's checkpoint store: at ``path`` (the operator's keyed folder) or ``spec.checkpoint.path``."""
    ck = spec.checkpoint
    where = path or ck.path
    if not where:
        return None
    options = {"endpoint_url": ck.endpoint_url} if ck.endpoint_url else {}
    return Checkpointer(where, ck.every_rounds, storage_options=options)


def run_federation(
    fed: Federation,
    sinks: Sequence[Sink],
    *,
    rounds: int | None = None,
    address: str | None = None,
    resume: bool = False,
    namespace: str | None = None,
    runtime_env: dict[str, Any] | None = None,
    checkpoint_path: str | None = None,
) -> dict[str, Any]:
    """Run ``fed`` to the end and return the final ``done`` report (as a dict).

    ``checkpoint_path`` replaces ``spec.checkpoint.path``: the operator passes the Federation's own
    folder (under the claim's mount or the object-storage prefix, keyed by its uid).

    Raises FederationFailed (after emitting a ``failed`` report) when the run cannot finish, and
    PlacementError / SpecError before anything starts when it cannot begin.
    """
    started = init_ray(address, runtime_env=runtime_env)
    spec = fed.spec
    checkpointer = checkpointer_for(spec, checkpoint_path)
    last_round = 0
    total = rounds or spec.rounds

    def emit(report: Report) -> None:
        nonlocal last_round
        last_round = report.round
        if checkpointer is not None and checkpointer.last is not None:
            report.checkpoint = checkpointer.last.wire()
        d = report.to_dict()
        for s in sinks:
            s.emit(d)

    try:
        if checkpointer is not None:
            checkpointer.check()
        # Code shipped in spec.runtimeEnv registers its names on import: before any name is looked up.
        user_code.load(spec)
        schema_cls = schemas.get(spec.schema_)
        federation = schema_cls(fed, rounds=rounds, namespace=namespace, checkpointer=checkpointer)
        # Everything the driver imports is imported by now; most of those libraries' pages were read
        # once (10 MB of PSS at 10,000 clients, measured; see red.runtime.resident).
        release_file_pages()
        if resume:
            if checkpointer is None:
                raise FederationFailed(
                    "--resume needs spec.checkpoint.path: nothing to resume from", reason="NoCheckpoint"
                )
            state = checkpointer.load_latest()
            if state is not None:
                federation.apply_resume(state)
                last_round = int(state["round"])
        done: Report = federation.run(emit)
        emit(done)
        return done.to_dict()
    except RedError as err:
        reason = getattr(err, "reason", type(err).__name__)
        failed = Report("failed", fed.name, last_round, total, reason=reason, message=str(err))
        for s in sinks:
            s.emit(failed.to_dict())
        raise
    finally:
        for s in sinks:
            s.close()
        if started:
            ray.shutdown()
