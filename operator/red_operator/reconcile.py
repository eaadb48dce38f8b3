"""One reconcile pass for one Federation: observe everything, decide, act, fold, write status.

Reads like a checklist (KubeRay's `Reconcile()` is the model): parse the spec, make sure the owned
objects exist, observe the RayCluster and its pods, ask Ray about the job, read the engine's report,
plan, act on the plan, fold the new status and write it only if it changed. Deciding lives in pure
modules (`decide`, `status`, `builders`, `readiness`); this module only gathers and acts.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes.client.exceptions import ApiException

from red.errors import SpecError
from red.spec.loader import spec_from_dict
from red.spec.model import FederationSpec
from red.spec.status import Event, ReportReading, parse_report
from red_operator import builders, checkpoints, conditions, logtail, metrics, names, ownership, tokens
from red_operator.decide import SUSPENDED, TERMINAL_PHASES, Plan, RayJob, plan
from red_operator.failures import Backoff, describe, failure_conditions
from red_operator.jobs import DashboardError, JobsClient, dashboard_url
from red_operator.kube import Kube
from red_operator.readiness import observe_cluster
from red_operator.settings import Settings
from red_operator.sizing import size_cluster
from red_operator.status import Blocked, Observed, fold, recover

# The first KubeRay that honours RayCluster.spec.authOptions (older ones prune the field silently).
MIN_KUBERAY_FOR_AUTH = "v1.6.0"

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
    retry_seconds: float | None = None
    """Failed or skipped: when the next try is due (the Federation's backoff)."""


class Reconciler:
    def __init__(self, kube: Kube, settings: Settings) -> None:
        self.kube = kube
        self.settings = settings
        # Federations (by uid) whose owned objects this process has made sure of; re-checked after a
        # restart. Something deleted by hand meanwhile is recreated by the next operator start.
        self._ensured: set[str] = set()
        self.backoff = Backoff(base=settings.backoff_base_seconds, cap=settings.max_backoff_seconds)
        # Names the engine image knows but this process cannot import: known, so specs naming them pass.
        from red import registry

        for kind, plugin in settings.plugins():
            {"task": registry.tasks, "algorithm": registry.algorithms, "schema": registry.schemas}[kind].add(
                plugin, None
            )
        self._key = tokens.load_key(settings.token_key_file) if settings.token_key_file is not None else None

    # --- the pass ---------------------------------------------------------------------------------
    def run(self, body: Mapping[str, Any], *, now: datetime | None = None) -> Outcome:
        """A pass, unless the Federation is backing off after a failed one. A pass that raises becomes
        `Synced=False`, a Warning Event and an exponentially longer wait (`Outcome.retry_seconds`)."""
        uid = body["metadata"]["uid"]
        now = now or datetime.now(UTC)
        wait = self.backoff.remaining(uid, now)
        if wait > 0:
            return Outcome(dict(body.get("status") or {}), skipped=True, retry_seconds=wait)
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
        out = Outcome(
            new, [("Warning", kind, failure.message)], error=failure.message, error_kind=kind, retry_seconds=wait
        )
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
        rc = self.kube.get_raycluster(ns, cluster_name)
        blocked: Blocked | None = None
        if rc is not None:
            refusal = (
                ownership.borrow_refusal(rc, uid)
                if existing
                else None
                if ownership.is_owned(rc, uid)
                else ownership.conflict_message("RayCluster", ns, cluster_name, rc)
            )
            if refusal is not None:
                # Someone else's cluster: never looked at again, never submitted to, never deleted.
                blocked = Blocked("ClusterNotBorrowable" if existing else "NameConflict", refusal)
                rc = None
        # A borrowed cluster's ServiceAccounts go into the engine's RoleBinding, so wait until it exists.
        if blocked is None and not terminal and uid not in self._ensured and not (existing and rc is None):
            borrowed = builders.pod_accounts(rc) if existing and rc else None
            blocked = self._ensure_owned(name, ns, uid, borrowed, spec.cluster.service_account.annotations)

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
        jobs: JobsClient | None = None
        if rc is not None and not terminal and blocked is None:
            jobs, blocked = self._jobs(url, ns, uid, rc)

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
        if ray_job is not None and ray_job.status == "FAILED" and job.get("status") != "FAILED":
            # Each failed attempt once: why it failed, from the end of its log (kubectl describe shows it).
            events.append(("Warning", "JobFailed", logtail.event_message(str(sid), ray_job.message)))
        report: ReportReading | None = None
        # Only a submitted job has a report to read: a Federation still creating costs no read for it.
        if not terminal and blocked is None and sid:
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
        if blocked is not None:
            # Touch nothing, and count nothing: the job was not asked about, so it did not fail.
            attempts, failures = int(job.get("attempts") or 0), int(job.get("failures") or 0)
            p = Plan("leave", "none", attempts, False, failures, why=blocked.reason)

        # --- act
        # create() is False when someone else made it since we looked: the next pass finds out whose it is.
        if (
            p.cluster == "ensure"
            and rc is None
            and self.kube.create(
                builders.build_raycluster(
                    name,
                    ns,
                    uid,
                    spec,
                    sizing,
                    default_image=self.settings.engine_image,
                    checkpoint_mount_path=self.settings.checkpoint_mount_path,
                )
            )
        ):
            events.append(
                (
                    "Normal",
                    "ClusterCreated",
                    f"created RayCluster {cluster_name} ({_workers(sizing.workers)})",
                )
            )
        if p.cluster == "delete" and rc is not None and not existing:
            # rc is ours here (checked above); the uid precondition keeps it that way until the delete.
            self.kube.delete("RayCluster", ns, cluster_name, uid=rc["metadata"].get("uid"))
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
            blocked, dashboard_error = _check_auth(jobs)
            if blocked is None and dashboard_error is None:
                own = builders.engine_image(spec, self.settings.engine_image)
                image = builders.head_image(rc) if existing and rc else own
                new_sid, dashboard_error = self._submit(
                    jobs, name, ns, uid, spec, body, p.attempt, p.resume, events, image=image
                )
            if new_sid is None:
                # Not submitted: keep the previous attempt's numbers so the next pass tries again.
                p = Plan(p.cluster, "none", int(job.get("attempts") or 0), False, p.failures, p.terminal_failure, p.why)
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
                blocked=blocked,
            ),
        )
        return self._finish(name, ns, stored, new, events)

    # --- pieces -----------------------------------------------------------------------------------
    def _ensure_owned(
        self,
        name: str,
        ns: str,
        uid: str,
        borrowed_accounts: list[str] | None,
        account_annotations: dict[str, str] | None = None,
    ) -> Blocked | None:
        """Create the Federation's own objects. One that exists already is ours only with our controller
        ownerReference: a look-alike is reported and left alone, neither used nor ever deleted.

        Created first, looked at only when the name is taken (409): a new Federation costs one request
        per object, not a GET before each. Creation stops at the first look-alike, so the RoleBinding
        (last) is never made when the ServiceAccount or Role it binds is someone else's; the objects
        after it are still looked at, so one message names every look-alike."""
        owned = self._owned(name, ns, uid, borrowed_accounts, account_annotations)
        conflicts: list[str] = []
        for obj in owned:
            kind, obj_name = obj["kind"], obj["metadata"]["name"]
            if not conflicts and self.kube.create(obj):
                log.info("%s/%s: created %s %s", ns, name, kind, obj_name)
            else:  # the name is taken (or creation has stopped): whose is it?
                conflicts += self._look_alikes([obj], ns, uid)
        if conflicts:
            return Blocked("NameConflict", " ".join(conflicts))
        self._ensured.add(uid)
        return None

    def _look_alikes(self, objs: list[dict[str, Any]], ns: str, uid: str) -> list[str]:
        out = []
        for obj in objs:
            kind, obj_name = obj["kind"], obj["metadata"]["name"]
            if kind == "Secret":  # unreadable by design; its name carries our uid (names.token_secret)
                continue
            found = self.kube.get(kind, ns, obj_name)
            if found is not None and not ownership.is_owned(found, uid):
                out.append(ownership.conflict_message(kind, ns, obj_name, found))
        return out

    def _owned(
        self,
        name: str,
        ns: str,
        uid: str,
        borrowed_accounts: list[str] | None,
        account_annotations: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """`borrowed_accounts` is None for a cluster of our own; a borrowed one keeps its own token. The
        RoleBinding comes last: `_ensure_owned` creates in this order and stops at a look-alike."""
        secret = [] if borrowed_accounts is not None else [builders.build_token_secret(name, ns, uid, self._token(uid))]
        return [
            *secret,
            builders.build_report_configmap(name, ns, uid),
            builders.build_service_account(name, ns, uid, account_annotations),
            builders.build_role(name, ns, uid),
            builders.build_role_binding(name, ns, uid, borrowed_accounts),
        ]

    def _token(self, uid: str) -> str:
        if self.settings.ray_token_file is not None:
            return Path(self.settings.ray_token_file).read_text().strip()
        if self._key is None:
            raise tokens.TokenKeyError("no token key: set --token-key-file")
        return tokens.derive(self._key, uid)

    def _jobs(self, url: str, ns: str, uid: str, rc: Mapping[str, Any]) -> tuple[JobsClient | None, Blocked | None]:
        """A client for the cluster's dashboard. Our own cluster's token is derived; a borrowed cluster's
        is read from the Secret its authOptions name, which needs a grant its owner gives explicitly
        (the operator may read no Secret otherwise; see docs/kubernetes.md, Security model)."""
        timeout = self.settings.http_timeout_seconds
        if ownership.is_owned(rc, uid):
            return JobsClient(url, self._token(uid), timeout), None
        rc_name = rc["metadata"]["name"]
        secret = ((rc.get("spec") or {}).get("authOptions") or {}).get("secretName") or rc_name
        try:
            token = self.kube.read_secret_value(ns, secret, names.TOKEN_KEY) or ""
        except ApiException as err:
            if err.status != 403:
                raise
            return None, Blocked(
                "TokenNotReadable",
                f"the token of the borrowed RayCluster {rc_name} is in Secret {ns}/{secret}, which the operator "
                f"may not read. Its owner grants that explicitly: kubectl create role red-read-{secret} -n {ns} "
                f"--verb=get --resource=secrets --resource-name={secret} && kubectl create rolebinding "
                f"red-read-{secret} -n {ns} --role=red-read-{secret} --serviceaccount=<operator namespace>:"
                "<operator ServiceAccount>",
            )
        return JobsClient(url, token, timeout), None

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
        image: str | None = None,
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
            extra_env={
                **self.settings.extra_engine_env,
                **checkpoints.engine_env(spec.checkpoint, uid, self.settings.checkpoint_mount_path),
            },
            image=image,
            runtime_env=spec.runtime_env.ray_runtime_env(),
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
        name, ns, uid = meta["name"], meta["namespace"], meta.get("uid", "")
        status = body.get("status") or {}
        spec = body.get("spec") or {}
        existing = (spec.get("cluster") or {}).get("existingCluster")
        cluster_name = existing or names.raycluster(name)
        removed: list[str] = []
        sid = (status.get("job") or {}).get("submissionId")
        rc = self.kube.get_raycluster(ns, cluster_name)
        if rc is not None and (ownership.borrow_refusal(rc, uid) if existing else not ownership.is_owned(rc, uid)):
            rc = None  # someone else's: not stopped, not deleted
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
                jobs, _ = self._jobs(url, ns, uid, rc)
                if jobs is not None and jobs.stop(sid):
                    removed.append(f"job {sid} (stopped)")
            except DashboardError as err:
                log.warning("%s/%s: could not stop job %s: %s", ns, name, sid, err)
        # Only what carries our controller ownerReference, and only that very object (uid precondition).
        # The token Secret is left to the garbage collector (it is owned; the operator cannot read it).
        for kind, obj in (
            *([] if existing else [("RayCluster", cluster_name)]),
            ("RoleBinding", names.engine_account(name)),
            ("Role", names.engine_account(name)),
            ("ServiceAccount", names.engine_account(name)),
            ("ConfigMap", names.report_configmap(name)),
        ):
            found = rc if kind == "RayCluster" else self.kube.get(kind, ns, obj)
            if found is None or not ownership.is_owned(found, uid):
                continue
            if self.kube.delete(kind, ns, obj, uid=found["metadata"].get("uid")):
                removed.append(f"{kind} {obj}")
        if self.settings.engine_kubeconfig_dir is not None:
            path = self.settings.engine_kubeconfig_dir / f"{ns}.{names.engine_account(name)}.kubeconfig"
            path.unlink(missing_ok=True)
        metrics.set_phase(f"{ns}/{name}", None)
        self._ensured.discard(meta.get("uid", ""))
        return removed


def _check_auth(jobs: JobsClient) -> tuple[Blocked | None, str | None]:
    """Before any submission: the head must refuse a Jobs API call without the token."""
    try:
        if jobs.enforces_auth():
            return None, None
    except DashboardError as err:
        return None, str(err)
    return (
        Blocked(
            "AuthNotEnforced",
            f"the Ray head at {jobs.base_url} accepts Jobs API calls without a token, so anyone who can "
            "reach it could run code there; nothing was submitted. Token authentication needs Ray >= 2.52 "
            f"and KubeRay >= {MIN_KUBERAY_FOR_AUTH} (older KubeRay drops spec.authOptions without a word); "
            "for an existingCluster, set spec.authOptions.mode: token on it.",
        ),
        None,
    )


def _workers(workers: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v} workers" for k, v in workers.items()) or "head only"
