"""Red on a Ray cluster someone already runs: submit the engine as a Ray job, then ask about it by id.

    red submit FILE --address http://HEAD:8265 [--working-dir DIR] [--import MODULE] [--wait] [--json]
    red status ID / red logs ID [--follow] / red stop ID

Built on Ray's `JobSubmissionClient` (it uploads `--working-dir` like `ray job submit`). The job runs
`red run - --address auto --json` on the cluster with the Federation's YAML on its stdin, so it behaves
exactly like `red run` there (same checks, same exit codes), and its JSON lines are what `--wait` shows.

Token authentication (Ray >= 2.52): the token comes from `--token-file`, else `RAY_AUTH_TOKEN`, else
`RAY_AUTH_TOKEN_PATH`, else `~/.ray/auth_token` (Ray's own order), and travels as
`Authorization: Bearer <token>`; it is never printed. Every HTTP call has a timeout: a head that does not
answer is an error, never a hang.

    JobError            a job command failed (`exit_code` says how `red` exits: 2 bad input, 1 otherwise)
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from red.errors import RedError

ADDRESS_ENV = "RAY_ADDRESS"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_FILE = Path("~/.ray/auth_token")
# The job's environment: the Federation's YAML (fed to `red run -` on stdin) and the modules to import.
SPEC_ENV = "RED_FEDERATION_YAML"
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
DEFAULT_TIMEOUT_SECONDS = 30.0


class JobError(RedError):
    """A job command could not do its work. `exit_code`: 2 for bad input (address, token, id), 1 else."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- pure pieces ------------------------------------------------------------------------------------
def dashboard_address(address: str | None, env: Mapping[str, str]) -> str:
    """The Jobs API's base URL: `--address`, else RAY_ADDRESS (as `ray job` does); `host:port` gets http://."""
    raw = (address or env.get(ADDRESS_ENV) or "").strip()
    if not raw:
        raise JobError(f"no Ray cluster given: pass --address http://<head>:8265 or set {ADDRESS_ENV}")
    if raw.startswith("ray://") or raw == "auto":
        raise JobError(
            f"{raw!r} is not the Ray dashboard: the Jobs API answers on the head's dashboard, e.g. "
            "--address http://<head>:8265"
        )
    if "://" not in raw:
        raw = "http://" + raw
    if not raw.startswith(("http://", "https://")):
        raise JobError(f"{raw!r}: the address must be http://<head>:8265 (or https://)")
    return raw.rstrip("/")


@dataclass(frozen=True)
class Token:
    value: str
    source: str
    """Where it came from (never the token itself), for error messages."""

    def __repr__(self) -> str:
        return f"Token(source={self.source!r})"


def read_token(token_file: str | None, env: Mapping[str, str], home: Path | None = None) -> Token | None:
    """The token to send, or None when there is none (a head without token auth needs none)."""
    candidates: list[tuple[Path, str, bool]] = []
    if token_file:
        candidates.append((Path(token_file), f"--token-file {token_file}", True))
    elif env.get(TOKEN_ENV, "").strip():
        return Token(env[TOKEN_ENV].strip(), TOKEN_ENV)
    elif env.get(TOKEN_PATH_ENV):
        candidates.append((Path(env[TOKEN_PATH_ENV]), f"{TOKEN_PATH_ENV}={env[TOKEN_PATH_ENV]}", True))
    else:
        default = (home / ".ray" / "auth_token") if home is not None else DEFAULT_TOKEN_FILE.expanduser()
        candidates.append((default, str(default), False))
    for path, source, required in candidates:
        try:
            value = path.read_text().strip()
        except OSError as err:
            if not required:
                return None
            raise JobError(f"cannot read the token file ({source}): {err.strerror}; check the path") from None
        if not value:
            raise JobError(f"the token file ({source}) is empty")
        return Token(value, source)
    return None


def exit_code(status: str, driver_exit_code: int | None = None) -> int:
    """`red run`'s exit codes for a finished job: 0 succeeded; the driver's 1 or 2 when it failed (2: the
    spec was refused there); 1 for anything else that ended it (stopped, killed, lost)."""
    if status == "SUCCEEDED":
        return 0
    if status == "FAILED" and driver_exit_code in (1, 2):
        return int(driver_exit_code)
    return 1


def entrypoint(rounds: int | None = None) -> str:
    """The job's command: `red run` on the cluster, the YAML on its stdin, JSON lines out."""
    extra = f" --rounds {int(rounds)}" if rounds is not None else ""
    return f'printf "%s" "${SPEC_ENV}" | python -m red.cli run - --address auto --json{extra}'


def submission_id(federation: str) -> str:
    """`red-<federation>-<8 hex>`: readable in `ray job list`, unique per submission."""
    return f"red-{federation}-{secrets.token_hex(4)}"


def for_submit(spec: dict[str, Any], base: Path, working_dir: str | None, imports: list[str]) -> dict[str, Any]:
    """The job's Ray `runtime_env` for a Federation document (`spec` is its parsed YAML, changed in place).

    `spec.runtimeEnv` speaks for the code, as on Kubernetes: its workingDir, pyModules and pip become the
    job's (local paths, read from `base`, are uploaded by Ray; `--working-dir` wins over workingDir), and
    leave the spec the job's `red run` reads, which on the cluster only imports `imports` (plus `--import`)
    and sets envVars. One mechanism for shipped code everywhere: `spec.runtimeEnv.imports`."""
    body = spec.setdefault("spec", {})
    rt = dict(body.get("runtimeEnv") or {})
    out: dict[str, Any] = {}
    wd = working_dir or rt.pop("workingDir", None)
    rt.pop("workingDir", None)
    if wd:
        out["working_dir"] = _local_or_uri(str(wd), base, "spec.runtimeEnv.workingDir", folder=True)
    modules = [_local_or_uri(str(m), base, f"spec.runtimeEnv.pyModules[{i}]")
               for i, m in enumerate(rt.pop("pyModules", None) or [])]
    if modules:
        out["py_modules"] = modules
    pip = rt.pop("pip", None)
    if pip:
        out["pip"] = list(pip)
    rt["imports"] = [*(rt.get("imports") or []), *(m for m in imports if m not in (rt.get("imports") or []))]
    if not rt["imports"]:
        rt.pop("imports")
    if rt:
        body["runtimeEnv"] = rt
    else:
        body.pop("runtimeEnv", None)
    out["env_vars"] = {SPEC_ENV: yaml.safe_dump(spec, sort_keys=False)}
    return out


def _local_or_uri(path: str, base: Path, field: str, *, folder: bool = False) -> str:
    """A URI as it is (Ray fetches it on the cluster); a local path resolved as `red run` does."""
    from red.spec.runtime_env import uri_scheme
    from red.user_code import local_source

    return path if uri_scheme(path) is not None else str(local_source(path, base, field, folder=folder))


def split_events(chunk: str, pending: str) -> tuple[list[str], str]:
    """Complete lines of a log stream (chunks may cut lines anywhere) and the unfinished rest."""
    text = pending + chunk
    *lines, rest = text.split("\n")
    return lines, rest


def as_event(line: str) -> dict[str, Any] | None:
    """The engine's report when `line` is one of its JSON lines (`{"event": ...}`), else None."""
    s = line.strip()
    if not (s.startswith("{") and s.endswith("}")):
        return None
    try:
        obj = json.loads(s)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and obj.get("event") in ("start", "round", "done", "failed") else None


# --- the cluster ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobState:
    submission_id: str
    status: str
    message: str
    driver_exit_code: int | None
    entrypoint: str
    start_time: int | None = None
    end_time: int | None = None

    @property
    def summary(self) -> str:
        """The message's first line: a failed job's message goes on with up to 20,000 characters of log."""
        return self.message.strip().split("\n", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "submissionId": self.submission_id,
            "status": self.status,
            "message": self.message,
            "driverExitCode": self.driver_exit_code,
            "startTime": self.start_time,
            "endTime": self.end_time,
        }


class Cluster:
    """One Ray cluster's Jobs API, with every failure turned into a one-line `JobError`."""

    def __init__(self, address: str, token: Token | None, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        self.address, self.token, self.timeout_seconds = address, token, timeout_seconds
        self.client = self._call("connect", lambda: _client(address, token, timeout_seconds))

    def _call(self, what: str, fn: Callable[[], Any], submission: str | None = None) -> Any:
        import aiohttp
        import requests
        from ray.exceptions import AuthenticationError

        try:
            return fn()
        except AuthenticationError:
            if self.token is None:
                raise JobError(
                    f"the Ray head at {self.address} requires a token: set {TOKEN_ENV} or pass --token-file"
                ) from None
            raise JobError(
                f"the Ray head at {self.address} refused the token from {self.token.source}: use that cluster's token"
            ) from None
        except (requests.exceptions.Timeout, TimeoutError):
            raise JobError(
                f"the Ray dashboard at {self.address} did not answer within {self.timeout_seconds:g} s ({what})"
            ) from None
        except (requests.exceptions.ConnectionError, ConnectionError, OSError) as err:
            raise JobError(
                f"cannot reach the Ray dashboard at {self.address} ({_first_line(err)}): check --address (the "
                "head's dashboard, port 8265) and that the head is up"
            ) from None
        except aiohttp.ClientError as err:  # the log stream (a websocket) broke off
            raise JobError(
                f"{what}: lost the connection to the Ray dashboard at {self.address} ({_first_line(err)}); "
                f"the job goes on: red status {submission or ''}".rstrip(),
                exit_code=1,
            ) from None
        except ValueError as err:  # e.g. a --working-dir Ray will not upload (too large)
            raise JobError(f"{what}: {_first_line(err)}") from None
        except RuntimeError as err:
            text = str(err)
            if submission is not None and "404" in text:
                raise JobError(f"the Ray cluster at {self.address} has no job {submission!r}") from None
            raise JobError(f"{what}: {_first_line(err)}", exit_code=1) from None

    def submit(
        self, *, entrypoint: str, submission_id: str, runtime_env: dict[str, Any], metadata: dict[str, str]
    ) -> str:
        sid = self._call(
            "submit",
            lambda: self.client.submit_job(
                entrypoint=entrypoint, submission_id=submission_id, runtime_env=runtime_env, metadata=metadata
            ),
        )
        return str(sid)

    def state(self, submission_id: str) -> JobState:
        info = self._call("status", lambda: self.client.get_job_info(submission_id), submission_id)
        status = getattr(info.status, "value", str(info.status))
        return JobState(
            submission_id,
            str(status),
            str(info.message or ""),
            info.driver_exit_code,
            str(info.entrypoint or ""),
            info.start_time,
            info.end_time,
        )

    def logs(self, submission_id: str) -> str:
        return str(self._call("logs", lambda: self.client.get_job_logs(submission_id), submission_id))

    def stop(self, submission_id: str) -> bool:
        return bool(self._call("stop", lambda: self.client.stop_job(submission_id), submission_id))

    def follow(self, submission_id: str) -> Iterator[str]:
        """The job's log as it grows, until the job ends (Ray's websocket tail, as `ray job logs -f`)."""
        self.state(submission_id)  # an unknown id is a clear error, not a closed socket
        loop = asyncio.new_event_loop()
        stream = self.client.tail_job_logs(submission_id)
        try:
            while True:
                try:
                    chunk = self._call(
                        "logs", lambda: loop.run_until_complete(stream.__anext__()), submission_id
                    )
                except StopAsyncIteration:
                    return
                yield str(chunk)
        finally:
            loop.run_until_complete(stream.aclose())
            loop.close()


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:300]


def _client(address: str, token: Token | None, timeout_seconds: float) -> Any:
    from ray.job_submission import JobSubmissionClient

    class _TimedClient(JobSubmissionClient):
        # Ray's client sends its HTTP requests without a timeout; an unresponsive head would hang us.
        def _do_request(self, method: str, endpoint: str, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", timeout_seconds)
            return super()._do_request(method, endpoint, **kwargs)

    headers = {"Authorization": f"Bearer {token.value}"} if token is not None else None
    return _TimedClient(address, headers=headers)


def connect(address: str | None, token_file: str | None, env: Mapping[str, str] | None = None) -> Cluster:
    """The cluster at `address` (or RAY_ADDRESS), with the token from `token_file` or the environment."""
    env = os.environ if env is None else env
    return Cluster(dashboard_address(address, env), read_token(token_file, env))
