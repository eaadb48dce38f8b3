"""The `red` command: run, validate and draw federations.

    red run FILE [--rounds N] [--json] [--address ADDR] [--resume] [--plot PNG]
    red validate FILE
    red topology FILE --output PNG

Exit codes: 0 success, 1 the federation failed while running, 2 invalid input (spec, file, flags).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from red._version import __version__
from red.errors import FederationFailed, RedError, SpecError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="red", description="Federated learning on Ray.")
    p.add_argument("--version", action="version", version=f"red {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a federation on a local Ray (or the cluster at --address)")
    run.add_argument("file", help="Federation YAML (the same file you would kubectl apply)")
    run.add_argument("--rounds", type=int, help="override spec.rounds")
    run.add_argument("--json", action="store_true", help="print one JSON object per line")
    run.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    run.add_argument("--resume", action="store_true", help="continue from spec.checkpoint.path")
    run.add_argument("--plot", metavar="PNG", help="save accuracy per round to this PNG")
    run.add_argument("--report-file", metavar="PATH", help="also append JSON lines to this file")

    val = sub.add_parser("validate", help="check a Federation file; exit 0 when valid")
    val.add_argument("file")

    topo = sub.add_parser("topology", help="draw the federation's graph to a PNG")
    topo.add_argument("file")
    topo.add_argument("--output", "-o", required=True, metavar="PNG")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=os.environ.get("RED_LOG_LEVEL", "WARNING"), format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "validate":
            return _validate(args)
        if args.command == "topology":
            return _topology(args)
        return _run(args)
    except SpecError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except FederationFailed as err:
        print(f"error: federation failed ({err.reason}): {err}", file=sys.stderr)
        return 1
    except RedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _validate(args: argparse.Namespace) -> int:
    from red.spec import load_federation

    fed = load_federation(args.file)
    s = fed.spec
    print(f"{args.file}: valid Federation {fed.name!r} ({s.schema_}, {s.clients} clients, {s.rounds} rounds)")
    return 0


def _topology(args: argparse.Namespace) -> int:
    from red.plots import draw_topology
    from red.spec import load_federation

    fed = load_federation(args.file)
    draw_topology(fed, args.output)
    print(args.output)
    return 0


def _run(args: argparse.Namespace) -> int:
    from red.runner import run_federation
    from red.sinks import ConsoleSink, FileSink, JsonLinesSink, Sink
    from red.spec import load_federation

    if args.rounds is not None and args.rounds < 1:
        raise SpecError(f"--rounds must be >= 1, got {args.rounds}")
    fed = load_federation(args.file)
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
        run_federation(fed, sinks, rounds=args.rounds, address=args.address, resume=args.resume)
    finally:
        if args.plot and history:
            from red.plots import plot_accuracy

            plot_accuracy(history, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
