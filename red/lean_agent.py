"""Stands in for Ray's dashboard agent, and for its runtime-env agent, on a local `red run` (see
`red.local_ray`).

The raylet starts a dashboard agent and will not register its node until the agent has written three
port files: its metrics gRPC port, its metrics export port and its HTTP listen port. Ray's own agent
imports the dashboard's seven modules first (1.3-1.5 s here, 125 MB), and serves a local run nothing:
`red run` starts no dashboard and reads no Ray metrics. Ray's minimal install (no dashboard
dependencies) runs its agent with no module and writes -1 ("not served") to all three files; this
script does the same at once, then lives as long as the raylet, which shuts down if its agent exits.

Run by the raylet as ``python -I lean_agent.py PORT_FILE...``: the standard library only, so it starts
in a few tens of milliseconds. `red.local_ray` names the files with Ray's own `get_port_filename`.

``python -I lean_agent.py --runtime-env HOST PORT PORT_FILE`` stands in for the runtime-env agent, for a
run whose Federation has no ``spec.runtimeEnv``. Ray's agent (52 MB, Ray and aiohttp imported) installs
runtime environments; the raylet asks it only for a task or actor that has one, and Red's engine gives
none. This one listens where Ray's would (PORT, or any free port when 0, written to PORT_FILE as Ray's
agent writes it) and answers Ray's three calls: "create" fails with a message that says to put the
environment in spec.runtimeEnv (a user's own ``ray.remote(runtime_env=...)``), "delete" and "list" find
nothing to do. The replies are Ray's protobuf messages, written out by hand (`reply`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

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


# AgentRpcStatus in Ray's runtime_env_agent.proto.
AGENT_RPC_STATUS_FAILED = 1
NO_RUNTIME_ENV_AGENT = (
    "this local run started Ray without its runtime-env agent, because the Federation has no "
    "spec.runtimeEnv: put the runtime environment (pip, env_vars, working_dir, py_modules) in "
    "spec.runtimeEnv and run it again"
)


def reply(status: int = 0, error_message: str = "") -> bytes:
    """A GetOrCreateRuntimeEnvReply / DeleteRuntimeEnvIfPossibleReply (fields 1: status, 2: error_message);
    all defaults encode as no bytes at all, which is also an empty GetRuntimeEnvsInfoReply."""
    out = b""
    if status:
        out += bytes([0x08, status])  # field 1, varint
    if error_message:
        data = error_message.encode()
        out += b"\x12" + _varint(len(data)) + data  # field 2, length-delimited
    return out


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


REPLIES = {
    "/get_or_create_runtime_env": reply(AGENT_RPC_STATUS_FAILED, NO_RUNTIME_ENV_AGENT),
    "/delete_runtime_env_if_possible": reply(),
    "/get_runtime_envs_info": reply(),
}


def serve_runtime_env(host: str, port: int, port_file: str) -> Any:
    """Answer Ray's runtime-env calls on (``host``, ``port``) from a thread; the bound port goes to
    ``port_file``. Returns the listening socket.

    HTTP/1.1 by hand rather than with http.server: the raylet only POSTs to three paths on a kept-alive
    connection, and http.server's imports (email, html, urllib, socketserver) were 5 MB of this process."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server = socket.create_server((host, port), family=family)

    def accept() -> None:
        while True:
            conn, _ = server.accept()
            threading.Thread(target=answer_calls, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    persist(port_file, server.getsockname()[1])
    return server


def answer_calls(conn: Any) -> None:
    """Answer the POSTs on one connection until the caller closes it (or sends something not HTTP)."""
    with conn:
        pending = b""
        while True:
            while b"\r\n\r\n" not in pending:
                data = conn.recv(65536)
                if not data:
                    return
                pending += data
            head, _, pending = pending.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            request = lines[0].split()
            if len(request) < 2:
                return
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    try:
                        length = int(value.strip() or 0)
                    except ValueError:  # not a request the raylet would send: hang up
                        return
            while len(pending) < length:  # the request's body: read, and not needed to answer
                data = conn.recv(65536)
                if not data:
                    return
                pending += data
            pending = pending[length:]
            body = REPLIES.get(request[1].decode("latin-1"))
            status = b"200 OK" if body is not None else b"404 Not Found"
            body = body or b""
            conn.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def main(argv: list[str]) -> int:
    runtime_env = argv[:1] == ["--runtime-env"]
    if (runtime_env and len(argv) != 4) or not argv:
        print("usage: lean_agent.py PORT_FILE...\n       lean_agent.py --runtime-env HOST PORT PORT_FILE",
              file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if runtime_env:
        serve_runtime_env(argv[1], int(argv[2]), argv[3])
    else:
        # The raylet appends flags of its own to the agent's command in some configurations (for one,
        # --disable-metrics-collection under RAY_enable_metrics_collection=0): they are not port files.
        for path in (a for a in argv if not a.startswith("-")):
            persist(path, NOT_SERVED)
    pid = raylet_pid()
    while raylet_alive(pid):
        time.sleep(POLL_S)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
