"""The failed job's log tail in conditions and Events: bounded, and without credentials."""

from __future__ import annotations

import pytest
from red_operator.logtail import EVENT_MESSAGE, MAX_LINES, REDACTED, event_message, scrub, summarize, tail

RAY_TOKEN = "ed51ef8a3c3f9506e0c83d6323aaaa5f73ed8c15f059996f56e46dfa964cc448"
JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        (f"Authorization: Bearer {RAY_TOKEN}", RAY_TOKEN),
        ("curl -H 'Authorization: Bearer abc.def-ghi'", "abc.def-ghi"),
        ("RAY_AUTH_TOKEN=hunter2", "hunter2"),
        ('{"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG"}', "wJalrXUtnFEMI/K7MDENG"),
        ("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),  # the safe side
        ("INFO accuracy=0.9", None),
        ("password: sw0rdfish", "sw0rdfish"),
        ("api_key=k-123", "k-123"),
        (f"token {JWT} used", JWT),
        (f"key {RAY_TOKEN}", RAY_TOKEN),
        ("blob " + "QUJD" * 12, "QUJD" * 12),
    ],
)
def test_scrub_blanks_credentials(line: str, secret: str | None) -> None:
    out = scrub(line)
    if secret is None:
        assert out == line
    else:
        assert secret not in out and REDACTED in out, out


@pytest.mark.parametrize(
    "line",
    [
        'File "/home/ray/anaconda3/lib/python3.11/site-packages/red/schemas/base.py", line 40, in __init__',
        "ValueError: boom from the raising task",
        "INFO worker.py:1 -- Connecting to existing Ray cluster at address: 10.0.0.1:6379...",
        "accuracy=0.942 loss=0.211 participants=10.000",
    ],
)
def test_scrub_keeps_what_explains_the_failure(line: str) -> None:
    assert scrub(line) == line


def test_scrub_removes_terminal_colours() -> None:
    assert scrub("\x1b[36m(Node pid=12)\x1b[0m ValueError: x") == "(Node pid=12) ValueError: x"


@pytest.mark.parametrize(
    ("text", "max_lines", "max_bytes", "expect"),
    [
        ("a\nb\nc\n", 2, 100, "b\nc"),
        ("a\n\n  \nb\n", 5, 100, "a\nb"),  # blank lines do not count
        ("", 5, 100, ""),
        ("aaaa\nbbbb\ncccc", 5, 9, "bbbb\ncccc"),  # bytes bound: whole lines from the end
        ("x " * 25, 5, 10, "…x x x x"),  # one long line: its end, marked
        ("a\nb", 0, 100, ""),
    ],
)
def test_tail_is_bounded(text: str, max_lines: int, max_bytes: int, expect: str) -> None:
    out = tail(text, max_lines, max_bytes)
    assert out == expect
    assert len(out.encode()) <= max_bytes


def _ray_failure(log: str) -> str:
    return (
        "Job entrypoint command failed with exit code 1, last available logs (truncated to 20,000 chars):\n" + log
    )


def test_summarize_keeps_rays_first_line_and_the_end_of_the_log() -> None:
    chatter = "\n".join(f"INFO start-up line {i}" for i in range(500))
    log = chatter + f"\nRAY_AUTH_TOKEN={RAY_TOKEN}\nTraceback (most recent call last):\nValueError: boom\n"
    out = summarize(_ray_failure(log), 1000)
    assert out.startswith("Job entrypoint command failed with exit code 1; last log lines:\n")
    assert out.endswith("ValueError: boom")
    assert RAY_TOKEN not in out and "truncated to 20,000" not in out
    assert len(out) <= 1000 and len(out.splitlines()) <= MAX_LINES + 1


@pytest.mark.parametrize(
    ("message", "limit", "expect"),
    [
        ("Job was stopped", 100, "Job was stopped"),
        (f"runtime env setup failed: token={RAY_TOKEN}", 200, f"runtime env setup failed: token={REDACTED}"),
        ("x " * 25, 10, "x x x x x "),
        (_ray_failure("only\n"), 30, "Job entrypoint command failed "),  # no room for lines: the head, cut
    ],
)
def test_summarize_table(message: str, limit: int, expect: str) -> None:
    assert summarize(message, limit) == expect


def test_event_message_names_the_job_and_stays_bounded() -> None:
    out = event_message("red-fl-1234abcd-1", _ray_failure("y\n" * 5000 + "ValueError: boom\n"))
    assert out.startswith("Ray job red-fl-1234abcd-1 failed: Job entrypoint command failed with exit code 1")
    assert out.endswith("ValueError: boom") and len(out) <= EVENT_MESSAGE  # kopf would cut more in the middle
