"""Report sinks: where progress goes. A sink is anything with ``emit(dict)`` and ``close()``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Protocol, TextIO

from red.report import compact
from red.spec.health import HEALTHY


class Sink(Protocol):
    def emit(self, report: dict[str, Any]) -> None: ...

    def close(self) -> None: ...


# Nodes listed per line on a JSON-lines stream (the rest are summarised; see `red.report.compact`).
MAX_NODES_PER_LINE = 50


class JsonLinesSink:
    """One JSON object per line (``red run --json``, the operator's job log); flushed each line so pipes
    see progress live. Each line lists at most ``max_nodes`` nodes, unhealthy ones first, with a summary
    of all of them, so a line's size does not grow with the federation."""

    def __init__(self, stream: TextIO | None = None, max_nodes: int = MAX_NODES_PER_LINE) -> None:
        self.stream = stream or sys.stdout
        self.max_nodes = max_nodes

    def emit(self, report: dict[str, Any]) -> None:
        self.stream.write(json.dumps(compact(report, self.max_nodes), separators=(",", ":")) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class FileSink(JsonLinesSink):
    def __init__(self, path: str | Path) -> None:
        super().__init__(Path(path).open("a", encoding="utf-8"))

    def close(self) -> None:
        self.stream.close()


class CallbackSink:
    """Calls a function with each report (tests, the operator's reporter)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def emit(self, report: dict[str, Any]) -> None:
        self.fn(report)

    def close(self) -> None:
        pass


class ConsoleSink:
    """A rich progress bar with the latest metrics and node health, written to stderr."""

    def __init__(self, stream: TextIO | None = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(file=stream or sys.stderr)
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
        )
        self.task: Any = None

    def emit(self, report: dict[str, Any]) -> None:
        event = report["event"]
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task(
                report["federation"], total=report["rounds"], completed=report["round"], status="starting"
            )
        nodes = report.get("nodes", [])
        alive = sum(1 for n in nodes if n["health"] in HEALTHY)
        m = report.get("metrics", {})
        status = " ".join(f"{k}={v:.3f}" for k, v in m.items() if isinstance(v, float)) + (
            f"  nodes {alive}/{len(nodes)}" if nodes else ""
        )
        self.progress.update(self.task, completed=report["round"], status=status)
        if event == "done":
            self.progress.stop()
            self.console.print(f"[green]done[/green] after round {report['round']}: {status}")
        elif event == "failed":
            self.progress.stop()
            self.console.print(f"[red]failed[/red] ({report.get('reason')}): {report.get('message')}")

    def close(self) -> None:
        if self.task is not None:
            self.progress.stop()
