"""`red submit`, `red status`, `red logs`, `red stop`: the CLI side of `red.jobs` (argparse in, exit code out).

`red submit --wait` shows the run as `red run` does: the job prints the engine's JSON lines, which become
the progress bar here (or pass through unchanged with --json); anything else the job prints (the user's
own output, Ray's warnings, a traceback) goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from red.errors import SpecError
from red.jobs import (
    TERMINAL,
    Cluster,
    JobError,
    JobState,
    as_event,
    connect,
    entrypoint,
    exit_code,
    for_submit,
    split_events,
    submission_id,
)

POLL_SECONDS = 1.0


def submit(args: argparse.Namespace) -> int:
    from red.spec import federation_from_yaml, load_federation

    if args.rounds is not None and args.rounds < 1:
        raise SpecError(f"--rounds must be >= 1, got {args.rounds}")
    working_dir: str | None = None
    if args.working_dir:
        wd = Path(args.working_dir)
        if not wd.is_dir():
            raise JobError(f"--working-dir {args.working_dir}: not a folder; name the folder with your code")
        working_dir = str(wd.resolve())
    import yaml

    if args.file == "-":
        text, base = sys.stdin.read(), Path.cwd()
        fed = federation_from_yaml(text, check_registry=False)
    else:
        fed = load_federation(args.file, check_registry=False)  # a missing or bad file: `red validate`'s error
        text, base = Path(args.file).read_text(), Path(args.file).resolve().parent
    doc = yaml.safe_load(text)
    local_dir = working_dir or next(iter(fed.spec.runtime_env.local_paths()), None)
    imports = [*fed.spec.runtime_env.imports, *args.imports]
    check_registry = _import_here(imports, str(base / local_dir) if local_dir else None)
    if check_registry:
        federation_from_yaml(text, source=args.file)  # the names, now that the shipped modules are imported here
    job_env = for_submit(doc, base, working_dir, list(args.imports))

    cluster = connect(args.address, args.token_file)
    sid = cluster.submit(
        entrypoint=entrypoint(args.rounds),
        submission_id=submission_id(fed.name),
        runtime_env=job_env,
        metadata={"red.dev/federation": fed.name},
    )
    if args.json:
        _print_json({"event": "submitted", "submissionId": sid, "federation": fed.name, "address": cluster.address})
    else:
        print(sid)
    if not args.wait:
        if not args.json:
            print(f"follow it: red logs {sid} --follow   (stop it: red stop {sid})", file=sys.stderr)
        return 0
    return _watch(cluster, sid, as_json=args.json)


def _import_here(imports: list[str], working_dir: str | None) -> bool:
    """Import the shipped modules here too (from the working dir), so the spec's names are checked before
    anything is submitted. Code that imports only on the cluster (packages installed there) is checked
    there instead: returns False then, with a warning."""
    if not imports:
        return True
    from red.spec.runtime_env import RuntimeEnvSpec
    from red.user_code import import_modules

    sys.path.insert(0, working_dir or str(Path.cwd()))
    try:
        import_modules(RuntimeEnvSpec(imports=imports))
    except SpecError as err:
        print(f"warning: {err}. The cluster checks the names instead.", file=sys.stderr)
        return False
    return True


def _watch(cluster: Cluster, sid: str, *, as_json: bool) -> int:
    """Follow the job to its end; exit as `red run` would have."""
    from red.sinks import ConsoleSink

    # Ray logs each websocket close at INFO; the job's end is what matters here.
    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)
    console = None if as_json else ConsoleSink()
    last: dict[str, Any] | None = None
    pending = ""

    def show(line: str) -> None:
        nonlocal last
        event = as_event(line)
        if event is None:
            print(line, file=sys.stderr, flush=True)
        elif console is None:
            print(line.strip(), flush=True)
        else:
            console.emit(event)
        if event is not None:
            last = event

    try:
        for chunk in cluster.follow(sid):
            lines, pending = split_events(chunk, pending)
            for line in lines:
                show(line)
        if pending:
            show(pending)
        state = _until_done(cluster, sid)
    except KeyboardInterrupt:
        print(f"\nstopped following; the job goes on (red stop {sid} ends it)", file=sys.stderr)
        return 130
    finally:
        if console is not None:
            console.close()
    code = exit_code(state.status, state.driver_exit_code)
    if code != 0:
        _report_failure(state, last, as_json=as_json)
    return code


def _until_done(cluster: Cluster, sid: str) -> JobState:
    # The log stream can end a moment before Ray records the job's end.
    state = cluster.state(sid)
    while state.status not in TERMINAL:
        time.sleep(POLL_SECONDS)
        state = cluster.state(sid)
    return state


def _report_failure(state: JobState, last: dict[str, Any] | None, *, as_json: bool) -> None:
    if last is not None and last.get("event") == "failed":
        return  # the engine said why: its failed line, and `red run`'s own error line in the log
    reason = f"Job{state.status.capitalize()}"
    message = state.summary or f"the Ray job ended {state.status}"  # its log was shown already
    if as_json:  # the last line is always done or failed, as with `red run --json`
        _print_json({"event": "failed", "reason": reason, "message": message, "submissionId": state.submission_id})
    print(f"error: job {state.submission_id} {state.status}: {message}", file=sys.stderr)


def status(args: argparse.Namespace) -> int:
    state = connect(args.address, args.token_file).state(args.id)
    if args.json:
        _print_json(state.to_dict())
    else:
        print(f"{state.submission_id}: {state.status}" + (f" ({state.summary})" if state.summary else ""))
    return 0


def logs(args: argparse.Namespace) -> int:
    cluster = connect(args.address, args.token_file)
    if not args.follow:
        sys.stdout.write(cluster.logs(args.id))
        return 0
    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)
    try:
        for chunk in cluster.follow(args.id):
            sys.stdout.write(chunk)
            sys.stdout.flush()
        state = _until_done(cluster, args.id)
    except KeyboardInterrupt:
        return 130
    return exit_code(state.status, state.driver_exit_code)


def stop(args: argparse.Namespace) -> int:
    cluster = connect(args.address, args.token_file)
    if cluster.stop(args.id):
        print(f"stopping {args.id}")
    else:
        print(f"{args.id} had ended already: {cluster.state(args.id).status}")
    return 0


def _print_json(obj: dict[str, Any]) -> None:
    print(json.dumps(obj, separators=(",", ":")), flush=True)
