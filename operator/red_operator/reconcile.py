"""One reconcile pass for one Federation: observe everything, decide, act, fold, write status.

Reads like a checklist (KubeRay's `Reconcile()` is the model): parse the spec, make sure the owned
objects exist, observe the RayCluster and its pods, ask Ray about the job, read the engine's report,
plan, act on the plan, fold the new status and write it only if it changed. Deciding lives in pure
modules (`decide`, `status`, `builders`, `readiness`); this module only gathers and acts.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from red.errors import SpecError
from red.spec.loader import spec_from_dict
from red.spec.model import FederationSpec
from red.spec.status import Event, ReportReading, parse_report
from red_operator import builders, conditions, metrics, names
from red_operator.decide import SUSPENDED, TERMINAL_PHASES, RayJob, plan
from red_operator.failures import Backoff, describe, failure_conditions
from red_operator.jobs import DashboardError, JobsClient, dashboard_url
from red_operator.kube import Kube
from red_operator.readiness import observe_cluster
from red_operator.settings import Settings
from red_operator.sizing import size_cluster
from red_operator.status import Observed, fold, recover

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    status: dict[str, Any]
    events: list[tuple[str, str, str]] = field(default_factory=list)
    """(type Normal|Warning, reason, message) to post on the Federation."""
    written: bool = False
    skipped: bool = False
    """True when the pass was not run: the Federation is backing off after a failure."""
    error: str | None = None
    """Why the pass failed (also in the Synced condition and a Warning Event)."""
    error_kind: str | None = None
    """ApiError (the API server answered with an error) or ReconcileError (anything else)."""


class Reconciler:
    def __init__(self, kube: Kube, settings: Settings) -> None:
        self.kube = kube
        self.settings = settings
        # Federations (by uid) whose owned objects this process has made sure of; re-checked after a
        # restart. Something deleted by hand meanwhile is recreated by the next operator start.
        self._ensured: set[str] = set()
        self.backoff = Backoff(base=settings.reconcile_interval_seconds, cap=settings.max_backoff_seconds)
        # Names the engine image knows but this process cannot import: known, so specs naming them pass.
        from red import registry

        for kind, plugin in settings.plugins():
            {"task": registry.tasks, "algorithm": registry.algorithms, "schema": registry.schemas}[kind].add(
                plugin, None
            )

    # --- the pass ---------------------------------------------------------------------------------
    def run(self, body: Mapping[str, Any], *, now: datetime | None = None) -> Outcome:
        """One timer tick: a pass, unless the Federation is backing off after a failed one. A pass that
        raises becomes `Synced=False`, a Warning Event and an exponentially longer wait."""
        uid = body["metadata"]["uid"]
        now = now or datetime.now(UTC)
        if not self.backoff.due(uid, now):
            return Outcome(dict(body.get("status") or {}), skipped=True)
        try:
            out = self.reconcile(body, now=now)
        except Exception as err:
            return self._failed(body, err, now)
        self.backoff.succeeded(uid)
        return out

    def _failed(self, body: Mapping[str, Any], err: Exception, now: datetime) -> Outcome:
        meta = body["metadata"]
        name, ns = meta["name"], meta["namespace"]
        failure = describe(err)
        wait = self.backoff.failed(meta["uid"], now)
        log.warning("%s/%s: pass failed, next try in %g s: %s", ns, name, wait, failure.message)
        prev: dict[str, Any] = dict(body.get("status") or {})
        new = {
            **prev,
            "conditions": failure_conditions(
                list(prev.get("conditions") or []),
                failure,
                wait,
                generation=int(prev.get("observedGeneration") or 0),
                now=now.strftime("%Y-%m-%dT%H:%M:%SZ"),
            ),
        }
        kind = "ApiError" if failure.code else "ReconcileError"
        out = Outcome(new, [("Warning", kind, failure.message)], error=failure.message, error_kind=kind)
        try:
            self.kube.patch_status(ns, name, prev, new)
            out.written = True
        except Exception as patch_err:  # the status itself may be what fails (a 403): the Event still goes
            log.warning("%s/%s: could not record the failure in status: %s", ns, name, describe(patch_err).message)
        return out

    def reconcile(self, body: Mapping[str, Any], *, now: datetime | None = None) -> Outcome:
        meta = body["metadata"]
        name, ns, uid = meta["name"], meta["namespace"], meta["uid"]
        generation = int(meta.get("generation") or 1)
        prev: dict[str, Any] = dict(body.get("status") or {})
        now = now or datetime.now(UTC)
        events: list[tuple[str, str, str]] = []

        try:
            # check_registry: an unknown task, algorithm or schema fails here, before a GPU cluster exists.
            spec = spec_from_dict(body.get("spec"), source=f"Federation {ns}/{name}", check_registry=True)
        except SpecError as err:
            return self._finish(
                name, ns, prev, fold(prev, Observed(generation, now, None, spec_error=str(err))), events
            )
        stored = prev
        prev = recover(stored)  # a fixed spec revives a Federation that failed only for its spec

        sizing = size_cluster(spec)
        existing = spec.cluster.existing_cluster
        cluster_name = existing or names.raycluster(name)
        terminal = prev.get("phase") in TERMINAL_PHASES
        if not terminal and uid not in self._ensured:
            for obj in self._owned(name, ns, uid):
                if self.kube.create(obj):
                    log.info("%s/%s: created %s %s", ns, name, obj["kind"], obj["metadata"]["name"])
            self._ensured.add(uid)

        rc = self.kube.get_raycluster(ns, cluster_name)
        cluster = observe_cluster(rc, [])
        if rc is not None and not cluster.ready:
            # Only a cluster that is not ready needs its pods read, for the reason.
            cluster = observe_cluster(rc, self.kube.ray_pods(ns, cluster_name))
        url = dashboard_url(
            self.settings.dashboard_url_template,
            service=cluster.service,
            cluster=cluster_name,
            namespace=ns,
            federation=name,
        )
        jobs = self._jobs(url, ns, name, rc) if rc is not None and not terminal else None

        job = prev.get("job") or {}
        sid: str | None = job.get("submissionId")
        ray_job: RayJob | None = None
        dashboard_error: str | None = None
        if sid and jobs is not None and job.get("status") != SUSPENDED:
            try:
                info = jobs.get(sid)
                ray_job = RayJob(
                    info.get("status") if info else None,
                    str((info or {}).get("message") or ""),
                    (info or {}).get("error_type"),
                )
            except DashboardError as err:
                ray_job = RayJob(job.get("status"), reachable=False)
                dashboard_error = str(err)
        report: ReportReading | None = None
        if not terminal:
            text = self.kube.read_report(ns, names.report_configmap(name))
            report = parse_report(text, submission_id=sid) if text else None
        latest = report.report if report is not None else None
        engine_reason = latest.reason if latest is not None and latest.event == Event.FAILED else None

        p = plan(
            spec,
            prev,
            ray_job,
            cluster_ready=cluster.ready,
            fits=sizing.fits,
            now=now,
            engine_reason=engine_reason,
        )

        # --- act
        if p.cluster == "ensure" and rc is None:
            self.kube.create(builders.build_raycluster(name, ns, uid, spec, sizing))
            events.append(
                (
                    "Normal",
                    "ClusterCreated",
                    f"created RayCluster {cluster_name} ({_workers(sizing.workers)})",
                )
            )
        if p.cluster == "delete" and rc is not None and not existing:
            self.kube.delete("RayCluster", ns, cluster_name)
            cluster = observe_cluster(None, [])
            events.append(("Normal", "ClusterDeleted", f"deleted RayCluster {cluster_name} ({p.why})"))
        if p.job == "stop" and sid and jobs is not None:
            try:
                jobs.stop(sid)
                events.append(("Normal", "JobStopped", f"stopped Ray job {sid} ({p.why})"))
            except DashboardError as err:
                dashboard_error = str(err)
        new_sid: str | None = None
        if p.job == "submit" and jobs is not None:
            new_sid, dashboard_error = self._submit(jobs, name, ns, uid, spec, body, p.attempt, p.resume, events)
            if new_sid is None:
                # Not submitted: keep the previous attempt's numbers so the next pass tries again.
                p = type(p)(
                    p.cluster,
                    "none",
                    int(job.get("attempts") or 0),
                    False,
                    p.failures,
                    p.terminal_failure,
                    p.why,
                )
            else:
                report = None  # the previous attempt's report no longer describes this run

        new = fold(
            prev,
            Observed(
                generation,
                now,
                spec,
                sizing=sizing,
                cluster_name=cluster_name,
                cluster_existing=existing is not None,
                cluster=cluster,
                plan=p,
                submission_id=new_sid or sid,
                ray_job=ray_job if new_sid is None else None,
                report=report,
                dashboard_url=url if rc is not None else None,
                dashboard_error=dashboard_error,
            ),
        )
        return self._finish(name, ns, stored, new, events)

    # --- pieces -----------------------------------------------------------------------------------
    def _owned(self, name: str, ns: str, uid: str) -> list[dict[str, Any]]:
        token = self._new_token()
        return [
            builders.build_token_secret(name, ns, uid, token),
            builders.build_report_configmap(name, ns, uid),
            builders.build_service_account(name, ns, uid),
            builders.build_role(name, ns, uid),
            builders.build_role_binding(name, ns, uid),
        ]

    def _new_token(self) -> str:
        if self.settings.ray_token_file is not None:
            return Path(self.settings.ray_token_file).read_text().strip()
        return secrets.token_hex(32)

    def _jobs(self, url: str, ns: str, name: str, rc: Mapping[str, Any]) -> JobsClient:
        auth = (rc.get("spec") or {}).get("authOptions") or {}
        secret = auth.get("secretName") or (
            names.token_secret(name) if rc["metadata"]["name"] == names.raycluster(name) else rc["metadata"]["name"]
        )
        token = self.kube.read_secret_value(ns, secret, names.TOKEN_KEY) or ""
        return JobsClient(url, token, self.settings.http_timeout_seconds)

    def _submit(
        self,
        jobs: JobsClient,
        name: str,
        ns: str,
        uid: str,
        spec: FederationSpec,
        body: Mapping[str, Any],
        attempt: int,
        resume: bool,
        events: list[tuple[str, str, str]],
    ) -> tuple[str | None, str | None]:
        sid = names.submission_id(name, uid, attempt)
        kubeconfig = None
        if self.settings.engine_kubeconfig_dir is not None:
            kubeconfig = str(
                self.kube.write_engine_kubeconfig(self.settings.engine_kubeconfig_dir, ns, names.engine_account(name))
            )
        request = builders.build_job_request(
            name,
            ns,
            dict(body.get("spec") or {}),
            sid,
            entrypoint=self.settings.engine_entrypoint,
            resume=resume,
            report_interval_seconds=self.settings.report_interval_seconds,
            kubeconfig_path=kubeconfig,
            extra_env=self.settings.extra_engine_env,
        )
        try:
            got, adopted = jobs.submit(request)
        except DashboardError as err:
            metrics.SUBMISSIONS.labels(outcome="error").inc()
            events.append(("Warning", "SubmitFailed", str(err)))
            return None, str(err)
        metrics.SUBMISSIONS.labels(outcome="adopted" if adopted else "submitted").inc()
        verb = "adopted existing" if adopted else "submitted"
        events.append(
            (
                "Normal",
                "JobSubmitted",
                f"{verb} Ray job {got} (attempt {attempt}{', resuming from checkpoint' if resume else ''})",
            )
        )
        return got, None

    def _finish(
        self,
        name: str,
        ns: str,
        prev: dict[str, Any],
        new: dict[str, Any],
        events: list[tuple[str, str, str]],
    ) -> Outcome:
        out = Outcome(new, events)
        for c in conditions.transitions(prev.get("conditions") or [], new.get("conditions") or []):
            kind = "Warning" if conditions.is_bad_news(c) else "Normal"
            events.append(
                (
                    kind,
                    f"{c['type']}{c['status']}",
                    f"{c['type']}={c['status']} ({c['reason']}): {c['message']}",
                )
            )
        if prev.get("phase") != new.get("phase"):
            events.append(("Normal", "Phase", f"phase {prev.get('phase') or '-'} -> {new.get('phase')}"))
        if new != prev:
            self.kube.patch_status(ns, name, prev, new)
            out.written = True
        metrics.set_phase(f"{ns}/{name}", new.get("phase"))
        return out

    # --- deletion ---------------------------------------------------------------------------------
    def cleanup(self, body: Mapping[str, Any]) -> list[str]:
        """Stop the job and remove everything the Federation owns. Returns what was removed."""
        meta = body["metadata"]
        name, ns = meta["name"], meta["namespace"]
        status = body.get("status") or {}
        spec = body.get("spec") or {}
        existing = (spec.get("cluster") or {}).get("existingCluster")
        cluster_name = existing or names.raycluster(name)
        removed: list[str] = []
        sid = (status.get("job") or {}).get("submissionId")
        rc = self.kube.get_raycluster(ns, cluster_name)
        if sid and rc is not None:
            service = ((rc.get("status") or {}).get("head") or {}).get("serviceName")
            url = dashboard_url(
                self.settings.dashboard_url_template,
                service=service,
                cluster=cluster_name,
                namespace=ns,
                federation=name,
            )
            try:
                if self._jobs(url, ns, name, rc).stop(sid):
                    removed.append(f"job {sid} (stopped)")
            except DashboardError as err:
                log.warning("%s/%s: could not stop job %s: %s", ns, name, sid, err)
        if not existing and self.kube.delete("RayCluster", ns, cluster_name):
            removed.append(f"RayCluster {cluster_name}")
        for kind, obj in (
            ("RoleBinding", names.engine_account(name)),
            ("Role", names.engine_account(name)),
            ("ServiceAccount", names.engine_account(name)),
            ("ConfigMap", names.report_configmap(name)),
            ("Secret", names.token_secret(name)),
        ):
            if self.kube.delete(kind, ns, obj):
                removed.append(f"{kind} {obj}")
        if self.settings.engine_kubeconfig_dir is not None:
            path = self.settings.engine_kubeconfig_dir / f"{ns}.{names.engine_account(name)}.kubeconfig"
            path.unlink(missing_ok=True)
        metrics.set_phase(f"{ns}/{name}", None)
        self._ensured.discard(meta.get("uid", ""))
        return removed


def _workers(workers: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v} workers" for k, v in workers.items()) or "head only"
