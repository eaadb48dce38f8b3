"""The Ray job the operator submits: run the engine and publish its report to the Federation's ConfigMap.

    python -m red_operator.engine_job

Reads everything from the environment the operator set on the job (see `builders.build_job_request`):
`RED_FEDERATION` (the Federation as JSON), `RED_NAMESPACE`, `RED_REPORT_CONFIGMAP`, `RED_SUBMISSION_ID`, `RED_RESUME`,
`RED_REPORT_INTERVAL_SECONDS`, `RED_CHECKPOINT_PATH` (see `red_operator.checkpoints`), and `KUBECONFIG` for
out-of-cluster runs (in a pod, the mounted token of the Federation's engine ServiceAccount is used). That
account may patch one ConfigMap and nothing else.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from typing import Any

from red.report import compact as report_compact
from red.software import software_versions
from red.spec.status import MAX_NODES
from red_operator import names

log = logging.getLogger("red_operator.engine_job")
MAX_NODES_IN_REPORT = MAX_NODES


def compact(
    report: dict[str, Any], submission_id: str | None = None, software: dict[str, str | None] | None = None
) -> dict[str, Any]:
    """The report as stored: ConfigMaps (and status) must stay small, so very large federations list
    their unhealthy nodes first and at most MAX_NODES_IN_REPORT nodes in all (`red.report.compact`),
    without the versions map (status has every node's version already). Stamped with the submission
    that wrote it, so the operator can tell this attempt's report from an earlier one's, and with the
    software the run uses (every report: the operator may see any one of them first)."""
    out = {k: v for k, v in report_compact(report, MAX_NODES_IN_REPORT).items() if k != "versions"}
    if submission_id:
        out["submissionId"] = submission_id
    if software is not None:
        out["software"] = software
    return out


class ConfigMapSink:
    """Writes the latest report into the ConfigMap from a background thread, at most every
    `interval_seconds` (the first, the last and a failure without waiting), so a slow API server never
    slows the federation. A write that fails is logged and retried with the next report: the federation
    never stops because its report could not be published."""

    def __init__(
        self,
        namespace: str,
        name: str,
        interval_seconds: float = 2.0,
        core: Any = None,
        submission_id: str | None = None,
    ) -> None:
        self.namespace, self.name, self.interval = namespace, name, interval_seconds
        self.submission_id = submission_id
        self.software = software_versions()
        self.core = core or _core_api()
        self._pending: dict[str, Any] | None = None
        self._urgent = False
        self._closed = False
        self._last_write = float("-inf")
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="report-writer", daemon=True)
        self._thread.start()

    def emit(self, report: dict[str, Any]) -> None:
        with self._cv:
            self._pending = compact(report, self.submission_id, self.software)
            self._urgent = self._urgent or report.get("event") in ("start", "done", "failed")
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while True:
                    if self._pending is not None:
                        wait = self._last_write + self.interval - time.monotonic()
                        if self._urgent or self._closed or wait <= 0:
                            break
                        self._cv.wait(wait)
                    elif self._closed:
                        return
                    else:
                        self._cv.wait()
                report, self._pending, self._urgent = self._pending, None, False
            if not self._write(report):
                with self._cv:  # keep it unless a newer one came meanwhile
                    if self._pending is None:
                        self._pending = report
                    closing = self._closed
                if closing:
                    self._write(self._pending or report)  # one last try
                    return
                time.sleep(min(self.interval, 1.0))

    def _write(self, report: dict[str, Any]) -> bool:
        body = {"data": {names.REPORT_KEY: json.dumps(report, separators=(",", ":"))}}
        try:
            self.core.patch_namespaced_config_map(self.name, self.namespace, body, _request_timeout=30)
        except Exception as err:  # publishing progress must never kill the run
            log.warning("could not write report ConfigMap %s/%s: %s", self.namespace, self.name, err)
            return False
        self._last_write = time.monotonic()
        return True

    def close(self, timeout_seconds: float = 30.0) -> None:
        """Write what is pending (one last try) and stop the writer."""
        with self._cv:
            self._closed = True
            self._cv.notify()
        self._thread.join(timeout_seconds)


def _core_api() -> Any:
    from kubernetes import client, config

    if os.environ.get("KUBECONFIG"):
        config.load_kube_config(config_file=os.environ["KUBECONFIG"])  # type: ignore[no-untyped-call]
    else:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    return client.CoreV1Api()


def main() -> int:
    logging.basicConfig(level=os.environ.get("RED_LOG_LEVEL", "INFO"), format="%(levelname)s %(name)s: %(message)s")
    from red.errors import FederationFailed, RedError
    from red.runner import run_federation
    from red.sinks import JsonLinesSink
    from red.spec.loader import federation_from_dict

    fed = federation_from_dict(json.loads(os.environ["RED_FEDERATION"]), source="RED_FEDERATION")
    sink = ConfigMapSink(
        os.environ["RED_NAMESPACE"],
        os.environ["RED_REPORT_CONFIGMAP"],
        float(os.environ.get("RED_REPORT_INTERVAL_SECONDS", "2")),
        submission_id=os.environ.get("RED_SUBMISSION_ID"),
    )
    resume = os.environ.get("RED_RESUME") == "1"
    try:
        run_federation(
            fed,
            [sink, JsonLinesSink(sys.stdout)],
            address="auto",
            resume=resume,
            # The Federation's own folder (keyed by its uid) under the claim's mount or the bucket prefix.
            checkpoint_path=os.environ.get("RED_CHECKPOINT_PATH") or None,
        )
    except FederationFailed as err:
        print(f"federation failed ({err.reason}): {err}", file=sys.stderr)
        return 1
    except RedError as err:
        print(f"federation failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
