"""Stands in for Ray's dashboard agent on a local `red run` (see `red.local_ray`).

The raylet starts a dashboard agent and will not register its node until the agent has written three
port files: its metrics gRPC port, its metrics export port and its HTTP listen port. Ray's own agent
imports the dashboard's seven modules first (1.3-1.5 s here, 125 MB), and serves a local run nothing:
`red run` starts no dashboard and reads no Ray metrics. Ray's minimal install (no dashboard
dependencies) runs its agent with no module and writes -1 ("not served") to all three files; this
script does the same at once, then lives as long as the raylet, which shuts down if its agent exits.

Run by the raylet as ``python -I lean_agent.py PORT_FILE...``: the standard library only, so it starts
in a few tens of milliseconds. `red.local_ray` names the files with Ray's own `get_port_filename`.
"""

from __future__ import annotations

import os
import signal
import sys
import time

NOT_SERVED = -1  # what Ray's minimal agent writes, and what the raylet and workers read as "off"
POLL_S = 0.5


def persist(path: str, port: int) -> None:
    """Write ``port`` to ``path`` atomically: the raylet polls for the file and must never read half."""
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.replace(tmp, path)


def raylet_pid() -> int:
    # The raylet exports its pid to its agents (Ray's agent reads the same variable).
    try:
        return int(os.environ["RAY_RAYLET_PID"])
    except (KeyError, ValueError):
        return os.getppid()


def raylet_alive(pid: int) -> bool:
    # Reparented (to init or a subreaper) means the raylet is gone even if its pid was reused.
    return os.getppid() == pid


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: lean_agent.py PORT_FILE...", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    for path in argv:
        persist(path, NOT_SERVED)
    pid = raylet_pid()
    while raylet_alive(pid):
        time.sleep(POLL_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
