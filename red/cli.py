"""The `red` command: run, validate and draw federations.

    red run FILE|- [--rounds N] [--json] [--address ADDR] [--resume] [--plot PNG]
    red validate FILE|DIR|- ...
    red explain [FIELD]
    red topology FILE --output PNG
    red submit FILE --address URL [--working-dir DIR] [--import MODULE] [--wait] [--json]
    red status ID / red logs ID [--follow] / red stop ID        (each with --address, --token-file)

Exit codes: 0 success, 1 the federation failed while running, 2 invalid input (spec, file, flags; for the
job commands also an address, token or job id that does not work).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from red._version import __version__
from red.errors import FederationFailed, RedError, SpecError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="red", description="Federated learning on Ray.")
    p.add_argument("--version", action="version", version=f"red {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run a federation on a local Ray (or the cluster at --address)",
        description="Run a federation on a local Ray, or on the Ray cluster at --address. Ray's token "
        "authentication stays on; RED_LOG_LEVEL=INFO also shows Ray's notice about it.",
    )
    run.add_argument("file", help="Federation YAML (the same file you would kubectl apply), or - for stdin")
    run.add_argument("--rounds", type=int, help="override spec.rounds")
    run.add_argument("--json", action="store_true", help="print one JSON object per line")
    run.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    run.add_argument("--resume", action="store_true", help="continue from spec.checkpoint.path")
    run.add_argument("--plot", metavar="PNG", help="save test accuracy and loss per round to this PNG")
    run.add_argument("--report-file", metavar="PATH", help="also append JSON lines to this file")

    val = sub.add_parser(
        "validate",
        help="check Federation files; exit 0 when all are valid",
        description="Check Federation files and report every problem of each. Exit 0 when all are valid, "
        "2 otherwise. `red explain spec` lists the fields a spec may have.",
    )
    val.add_argument("files", nargs="+", metavar="FILE", help="a YAML file, a folder of them, or - for stdin")

    exp = sub.add_parser(
        "explain",
        help="list the fields of a Federation (like kubectl explain)",
        description="List the fields at a path of a Federation, with type, default and meaning, e.g. "
        "`red explain spec.resources`. The same list, whole: docs/spec-reference.md.",
    )
    exp.add_argument("field", nargs="?", default="spec", help="a dotted path, e.g. spec.cluster.nodePools")

    _job_parsers(sub)

    topo = sub.add_parser("topology", help="draw the federation's graph to a PNG")
    topo.add_argument("file")
    topo.add_argument("--output", "-o", required=True, metavar="PNG")
    return p


def _cluster_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--address",
        help="the Ray head's dashboard, e.g. http://head:8265 (default: $RAY_ADDRESS, as `ray job` uses)",
    )
    p.add_argument(
        "--token-file",
        metavar="PATH",
        help="Ray's auth token (default: $RAY_AUTH_TOKEN, then $RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token)",
    )


def _job_parsers(sub: Any) -> None:
    submit = sub.add_parser(
        "submit",
        help="run a federation as a Ray job on an existing Ray cluster",
        description="Check FILE here (as `red validate` does), then submit it to the Ray cluster at --address "
        "as a Ray job that runs `red run` there. Prints the submission id; with --wait, follows the run and "
        "exits with its status (0 succeeded, 1 failed or stopped, 2 the spec was refused).",
    )
    submit.add_argument("file", help="Federation YAML")
    _cluster_flags(submit)
    submit.add_argument("--working-dir", metavar="DIR", help="upload this folder as the job's working directory")
    submit.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import this module (e.g. from --working-dir) before looking up the task, algorithm and schema "
        "names, so code that registers itself is found by name; repeatable",
    )
    submit.add_argument("--rounds", type=int, help="override spec.rounds")
    submit.add_argument("--wait", action="store_true", help="follow the run and exit with its status")
    submit.add_argument("--json", action="store_true", help="print JSON objects, one per line (as `red run --json`)")

    status = sub.add_parser("status", help="show a submitted job's status", description="Show a Ray job's status.")
    status.add_argument("id", help="the submission id `red submit` printed")
    _cluster_flags(status)
    status.add_argument("--json", action="store_true", help="print one JSON object")

    logs = sub.add_parser("logs", help="print a submitted job's log", description="Print a Ray job's log.")
    logs.add_argument("id", help="the submission id `red submit` printed")
    _cluster_flags(logs)
    logs.add_argument("--follow", "-f", action="store_true", help="follow until the job ends; exit with its status")

    stop = sub.add_parser("stop", help="stop a submitted job", description="Ask Ray to stop a job.")
    stop.add_argument("id", help="the submission id `red submit` printed")
    _cluster_flags(stop)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=os.environ.get("RED_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "validate":
            return _validate(args)
        if args.command == "explain":
            from red.spec.fields import explain

            sys.stdout.write(explain(args.field))
            return 0
        if args.command == "topology":
            return _topology(args)
        if args.command in ("submit", "status", "logs", "stop"):
            from red import job_commands

            return int(getattr(job_commands, args.command)(args))
        return _run(args)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FederationFailed as err:
        print(f"error: federation failed ({err.reason}): {err}", file=sys.stderr)
        return 1
    except RedError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(getattr(err, "exit_code", 1))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _validate_targets(targets: list[str]) -> list[str]:
    """Files to check: each file as given, each folder's *.yaml / *.yml files, `-` for stdin."""
    out: list[str] = []
    for target in targets:
        p = Path(target)
        if target != "-" and p.is_dir():
            found = sorted(str(f) for f in p.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file())
            if not found:
                raise SpecError(f"{p}: the folder has no .yaml or .yml files")
            out += found
        else:
            out.append(target)
    return out


def _validate(args: argparse.Namespace) -> int:
    from red.spec import federation_from_yaml, load_federation

    targets = _validate_targets(args.files)
    invalid = 0
    for target in targets:
        try:
            fed = federation_from_yaml(sys.stdin.read()) if target == "-" else load_federation(target)
        except SpecError as err:
            invalid += 1
            print(f"error: {err}", file=sys.stderr)
            continue
        s = fed.spec
        name = "<stdin>" if target == "-" else target
        print(f"{name}: valid Federation {fed.name!r} ({s.schema_}, {s.clients} clients, {s.rounds} rounds)")
    if len(targets) > 1 and invalid:
        print(f"{invalid} of {len(targets)} files are invalid", file=sys.stderr)
    return 2 if invalid else 0


def _topology(args: argparse.Namespace) -> int:
    from red.plots import draw_topology
    from red.spec import load_federation

    fed = load_federation(args.file)
    draw_topology(fed, args.output)
    print(args.output)
    return 0


def _run(args: argparse.Namespace) -> int:
    # The one place the CLI reaches the Ray runtime (red.runner and red.runtime import Ray at their
    # top): imported here, so that `red validate`, `red explain` and the job commands never load Ray.
    from red.runner import run_federation
    from red.sinks import ConsoleSink, FileSink, JsonLinesSink, Sink
    from red.spec import federation_from_yaml, load_federation
    from red.user_code import for_red_run

    if args.rounds is not None and args.rounds < 1:
        raise SpecError(f"--rounds must be >= 1, got {args.rounds}")
    fed = federation_from_yaml(sys.stdin.read()) if args.file == "-" else load_federation(args.file)
    sinks: list[Sink] = [JsonLinesSink(sys.stdout) if args.json else ConsoleSink()]
    if args.report_file:
        sinks.append(FileSink(args.report_file))
    history: list[dict[str, Any]] = []

    class _History:
        def emit(self, r: dict[str, Any]) -> None:
            history.append(r)

        def close(self) -> None:
            pass

    sinks.append(_History())
    try:
        run_federation(
            fed,
            sinks,
            rounds=args.rounds,
            address=args.address,
            resume=args.resume,
            runtime_env=for_red_run(fed.spec.runtime_env),
        )
    finally:
        if args.plot and history:
            from red.plots import plot_progress

            plot_progress(history, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
