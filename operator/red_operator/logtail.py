"""The end of a failed Ray job's log, fit for a condition or an Event: short, and with secrets blanked.

Ray ends a failed job's `message` with the last lines of its log ("Job entrypoint command failed with
exit code 1, last available logs (truncated to 20,000 chars):" and up to 20,000 characters). The first
kilobyte of that is Ray's start-up chatter; the error is at the end. `summarize` keeps Ray's first line
and the last lines, bounded, so `kubectl describe federation` shows why the job failed.

Logs are user output: anything that looks like a credential (a bearer token, `*TOKEN*=…`, `*SECRET*=…`,
`*PASSWORD*=…`, `*KEY*=…`, a JWT, a long hex or base64 string such as Ray's token) is replaced by `***`
before it leaves the operator. Pure: no I/O.
"""

from __future__ import annotations

import re

MAX_LINES = 20
MAX_BYTES = 2048
REDACTED = "***"
# kopf cuts longer Event messages in the middle; cut here instead, keeping the end.
EVENT_MESSAGE = 1024

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_SECRETS = (
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 " + REDACTED),
    (
        re.compile(
            r"(?i)\b([A-Z0-9_.-]*(?:token|secret|passw(?:or)?d|api[_-]?key|access[_-]?key|private[_-]?key|"
            r"credentials?)[A-Z0-9_.-]*)(\"?\s*[=:]\s*\"?)[^\s\"',;]+"
        ),
        r"\1\2" + REDACTED,
    ),
    (re.compile(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"), REDACTED),  # a JWT (ServiceAccount token)
    (re.compile(r"\b[0-9a-fA-F]{32,}\b"), REDACTED),  # hex keys and tokens (Ray's is 64 hex digits)
    (re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{40,}={0,2}(?![A-Za-z0-9+/_-])"), REDACTED),  # base64 blobs
)
_RAY_LOGS_HEADER = re.compile(r",?\s*last available logs \(truncated to [0-9,]+ chars\):\s*$")


def scrub(text: str) -> str:
    """`text` without terminal colour codes and with credential-like strings replaced by ***."""
    text = _ANSI.sub("", text)
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def tail(text: str, max_lines: int = MAX_LINES, max_bytes: int = MAX_BYTES) -> str:
    """The last non-blank lines of `text`, scrubbed: at most `max_lines` lines and `max_bytes` UTF-8 bytes
    (a line longer than what is left is cut from its start, marked with …)."""
    lines = [ln.rstrip() for ln in scrub(text).splitlines() if ln.strip()]
    out: list[str] = []
    used = 0
    for line in reversed(lines[-max_lines:] if max_lines > 0 else []):
        size = len(line.encode()) + (1 if out else 0)
        if used + size > max_bytes:
            room = max_bytes - used - (1 if out else 0) - len("…".encode())
            if room > 0:
                out.append("…" + line.encode()[-room:].decode("utf-8", "ignore"))
            break
        out.append(line)
        used += size
    return "\n".join(reversed(out))


def summarize(message: str, limit: int) -> str:
    """Ray's job message within `limit` characters: its first line, then as many of the last log lines as
    fit. A message without logs is only scrubbed and cut."""
    first, _, logs = message.partition("\n")
    head = _RAY_LOGS_HEADER.sub("", scrub(first).strip())
    if not logs.strip():
        return head[:limit]
    lead = f"{head}; last log lines:\n"
    if len(lead) >= limit:
        return head[:limit]
    # Characters and bytes differ only for non-ASCII text; bound by both.
    return lead + tail(logs, MAX_LINES, min(MAX_BYTES, limit - len(lead)))


def event_message(submission_id: str, message: str, limit: int = EVENT_MESSAGE) -> str:
    """The Warning Event of a failed attempt: which job, and the end of its log, within `limit`."""
    lead = f"Ray job {submission_id} failed: "
    return lead + summarize(message, max(limit - len(lead), 0))
