"""A small client for Ray's Jobs REST API on a cluster's dashboard (port 8265).

Calls: `POST /api/jobs/`, `GET /api/jobs/{id}`, `POST /api/jobs/{id}/stop`, `GET /api/version`. Every
call sends `Authorization: Bearer <token>` (Ray >= 2.52 token auth stays on), except the one probe that
checks the head refuses callers without it (`enforces_auth`). The token is never logged:
errors carry the URL path and Ray's answer only.

    DashboardError            the dashboard answered with an error
     └── DashboardUnreachable the dashboard could not be reached (not up yet, network)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from red.errors import RedError


class DashboardError(RedError):
    """The Ray dashboard answered with an error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class DashboardUnreachable(DashboardError):
    """The Ray dashboard could not be reached."""


@dataclass(frozen=True)
class JobsClient:
    base_url: str
    token: str = field(repr=False)  # never in logs or tracebacks
    timeout_seconds: float = 30.0

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None = None, *, authenticated: bool = True
    ) -> tuple[int, str]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base_url.rstrip("/") + path, data=data, method=method)
        if authenticated:
            req.add_header("Authorization", f"Bearer {self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_seconds) as resp:
                return int(resp.status), resp.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as err:
            return int(err.code), err.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError, TimeoutError) as err:
            reason = getattr(err, "reason", err)
            raise DashboardUnreachable(
                f"{method} {path}: cannot reach the Ray dashboard at {self.base_url}: {reason}"
            ) from None

    def version(self) -> dict[str, Any]:
        code, text = self._call("GET", "/api/version")
        if code != 200:
            raise DashboardError(f"GET /api/version: HTTP {code}: {text[:300]}", code)
        result: dict[str, Any] = json.loads(text)
        return result

    def enforces_auth(self) -> bool:
        """Whether the head refuses a Jobs API call that carries no token (401/403). False means anyone
        who reaches the dashboard can run code on the cluster: token auth is off (e.g. a KubeRay older
        than v1.6.0 pruned `authOptions`). Other answers raise DashboardError: nothing is known yet."""
        code, text = self._call("GET", "/api/jobs/", authenticated=False)
        if code in (401, 403):
            return True
        if code == 200:
            return False
        raise DashboardError(f"GET /api/jobs/ (without a token): HTTP {code}: {text[:300]}", code)

    def submit(self, request: dict[str, Any]) -> tuple[str, bool]:
        """Submit a job. Returns (submission_id, adopted): an id Ray already has is adopted, not an error."""
        sid = str(request["submission_id"])
        code, text = self._call("POST", "/api/jobs/", request)
        if code == 200:
            return str(json.loads(text).get("submission_id", sid)), False
        if "already exists" in text and self.get(sid) is not None:
            return sid, True
        raise DashboardError(f"POST /api/jobs/ ({sid}): HTTP {code}: {text[:500]}", code)

    def get(self, submission_id: str) -> dict[str, Any] | None:
        """The job's info (status, message, error_type, ...), or None when Ray does not know the id."""
        code, text = self._call("GET", f"/api/jobs/{submission_id}")
        if code == 404:
            return None
        if code != 200:
            raise DashboardError(f"GET /api/jobs/{submission_id}: HTTP {code}: {text[:300]}", code)
        result: dict[str, Any] = json.loads(text)
        return result

    def stop(self, submission_id: str) -> bool:
        """Ask Ray to stop the job. True when it was running; False when unknown or already finished."""
        code, text = self._call("POST", f"/api/jobs/{submission_id}/stop")
        if code == 404:
            return False
        if code != 200:
            raise DashboardError(f"POST /api/jobs/{submission_id}/stop: HTTP {code}: {text[:300]}", code)
        return bool(json.loads(text).get("stopped", False))

    def logs(self, submission_id: str) -> str:
        code, text = self._call("GET", f"/api/jobs/{submission_id}/logs")
        if code != 200:
            return ""
        return str(json.loads(text).get("logs", ""))


def dashboard_url(template: str, *, service: str | None, cluster: str, namespace: str, federation: str) -> str:
    """Fill the URL template; the service falls back to KubeRay's default `<cluster>-head-svc`."""
    return template.format(
        service=service or f"{cluster}-head-svc", cluster=cluster, namespace=namespace, federation=federation
    )
