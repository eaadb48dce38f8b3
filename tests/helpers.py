"""Small helpers shared by tests: build Federation objects from dicts without YAML files, and read the
process table (what a local Ray started)."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from red.spec import Federation, federation_from_dict

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def fed_dict(name: str = "t", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "apiVersion": "red.dev/v1alpha1",
        "kind": "Federation",
        "metadata": {"name": name},
        "spec": {
            "schema": "star",
            "rounds": 3,
            "clients": 3,
            "task": {"name": "digits", "params": {"partition": "iid", "lr": 0.2}},
            "resources": {"perNode": {"cpu": 0.1}, "broker": {"cpu": 0.1}},
            "faultTolerance": {"heartbeatSeconds": 1, "maxRestarts": 2},
        },
    }
    merged = copy.deepcopy(base)
    merged["spec"].update(spec)
    return merged


def make_fed(name: str = "t", **spec: Any) -> Federation:
    return federation_from_dict(fed_dict(name, **spec))


def write_yaml(path: Path, data: Any) -> Path:
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def wait_until(
    what: str,
    check: Callable[[], Any],
    timeout_s: float = 120,
    poll_s: float = 0.5,
    log: Callable[[], str] | None = None,
) -> Any:
    """Poll ``check`` until it returns something truthy and return that; fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(poll_s)
    extra = f"\n--- log ---\n{log()[-6000:]}" if log else ""
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; last seen: {last!r}{extra}")


def cmdline(pid: int) -> str:
    """``pid``'s command line, arguments joined by spaces ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(root: int) -> list[int]:
    """``root`` and every process below it, from the parent pids in /proc (Linux)."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += [c for c, pp in parent.items() if pp == pid]
    return found
