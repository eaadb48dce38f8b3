"""One reconcile pass for one Federation, written as its checklist (KubeRay's `Reconcile()` is the model).

`Reconciler.reconcile()` runs these steps in order, over one `FederationRef` (name, namespace, uid):

1. parse       the spec (`spec_from_dict`); an invalid one is folded into a Failed status and written
2. claim       find the RayCluster and decide whether it may be used (ours, or a borrowable existing one)
3. ensure_owned create the token Secret and ServiceAccount the cluster's pods need (once per process;
               look-alikes block); the report ConfigMap, Role and RoleBinding come in the pass that
               first submits the job (after plan)
4. observe     the cluster and its pods, Ray's word on the job, the engine's report (a `Seen`)
5. plan        what to do next (`decide.plan`, pure); a blocked Federation touches nothing
6. act         create or delete the cluster, stop or submit the job (an `Acted`)
7. fold        the new status (`status.fold`, pure)
8. write       post the Events and patch the status only if it changed

Deciding lives in pure modules (`decide`, `status`, `builders`, `readiness`); this module only gathers
and acts. `cleanup()` is the delete path: stop the job, remove what the Federation owns.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from kubernetes.client.exceptions import ApiException

from red.errors import SpecError
from red.spec.loader import spec_from_dict
from red.spec.model import FederationSpec
from red.spec.status import Event as EngineEvent
from red.spec.status import ReportReading, parse_report
from red_operator import builders, checkpoints, decide, logtail, metrics, names, ownership, tokens
from red_operator.decide import SUSPENDED, TERMINAL_PHASES, Plan, RayJob
from red_operator.events import Event, status_events
from red_operator.failures import Backoff, describe, failure_conditions
from red_operator.jobs import DashboardError, JobsClient, dashboard_url
from red_operator.kube import Kube
from red_operator.names import FederationRef
from red_operator.readiness import ClusterObservation, observe_cluster
from red_operator.settings import Settings
from red_operator.sizing import Sizing, size_cluster
from red_operator.status import Blocked, Observed, fold, recover

# The first KubeRay that honours RayCluster.spec.authOptions (older ones prune the field silently).
MIN_KUBERAY_FOR_AUTH = "v1.6.0"

log = logging.getLogger(__name__)

Stage = Literal["cluster", "job"]
# When each owned object is made (`Reconciler.ensure_owned`): the cluster's pods run as the ServiceAccount
# and read the token, so those come before the RayCluster; the rest serve only the job.
STAGE_OF: dict[str, Stage] = {
    "Secret": "cluster",
    "ServiceAccount": "cluster",
    "ConfigMap": "job",
    "Role": "job",
    "RoleBinding": "job",
}


@dataclass
class Outcome:
    status: dict[str, Any]
    events: list[Event] = field(default_factory=list)
    """To post on the Federation."""
    written: bool = False
    skipped: bool = False
    """True when the pass was not run: the Federation is backing off after a failure."""
    error: str | None = None
    """Why the pass failed (also in the Synced condition and a Warning Event)."""
    error_kind: str | None = None
    """ApiError (the API server answered with an error) or ReconcileError (anything else)."""
    retry_seconds: float | None = None
    """Failed or skipped: when the next try is due (the Federation's backoff)."""


@dataclass(frozen=True)
class Claim:
    """The RayCluster a Federation runs on, and whether it may use it."""

    name: str
    existing: str | None
    """spec.cluster.existingCluster: a borrowed cluster, never created nor deleted."""
    rc: dict[str, Any] | None
    """The object; None when it does not exist or is not ours to use (then `blocked` says why)."""
    blocked: Blocked | None = None


@dataclass(frozen=True)
class Seen:
    """What one pass observed (and, once `act` ran, what acting changed of it)."""

    cluster: ClusterObservation
    dashboard_url: str
    """Computed once per pass: the jobs client calls it and status shows it."""
    jobs: JobsClient | None = None
    submission_id: str | None = None
    """The current submission, as status.job knows it."""
    ray_job: RayJob | None = None
    report: ReportReading | None = None
    blocked: Blocked | None = None
    dashboard_error: str | None = None


@dataclass(frozen=True)
class Acted:
    plan: Plan
    """The plan as carried out: a submission that did not happen is not counted."""
    seen: Seen
    submitted: str | None = None
    """The submission made (or adopted) this pass."""


class Reconciler:
    def __init__(self, kube: Kube, settings: Settings) -> None:
        self.kube = kube
        self.settings = settings
        # Federations (by uid) whose owned objects this process has made sure of; re-checked after a
        # restart. Something deleted by hand meanwhile is recreated by the next operator start.
        self._ensured: set[tuple[str, Stage]] = set()  # (uid, stage)
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
        ref = FederationRef.of(body)
        failure = describe(err)
        wait = self.backoff.failed(ref.uid, now)
        log.warning("%s: pass failed, next try in %g s: %s", ref, wait, failure.message)
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
            new, [Event.warning(kind, failure.message)], error=failure.message, error_kind=kind, retry_seconds=wait
        )
        try:
            self.kube.patch_status(ref.namespace, ref.name, prev, new)
            out.written = True
        except Exception as patch_err:  # the status itself may be what fails (a 403): the Event still goes
            log.warning("%s: could not record the failure in status: %s", ref, describe(patch_err).message)
        return out

    def reconcile(self, body: Mapping[str, Any], *, now: datetime | None = None) -> Outcome:
        """One pass: the checklist in the module docstring."""
        ref = FederationRef.of(body)
        generation = int(body["metadata"].get("generation") or 1)
        stored: dict[str, Any] = dict(body.get("status") or {})
        now = now or datetime.now(UTC)
        events: list[Event] = []
        try:
            # check_registry: an unknown task, algorithm or schema fails here, before a GPU cluster exists.
            spec = spec_from_dict(body.get("spec"), source=f"Federation {ref}", check_registry=True)
        except SpecError as err:
            return self.write(ref, stored, fold(stored, Observed(generation, now, None, spec_error=str(err))), events)
        prev = recover(stored)  # a fixed spec revives a Federation that failed only for its spec
        terminal = prev.get("phase") in TERMINAL_PHASES
        sizing = size_cluster(spec)

        claim = self.claim(ref, spec)
        blocked = claim.blocked or (None if terminal else self.ensure_owned(ref, spec, claim, "cluster"))
        seen = self.observe(ref, prev, claim, blocked, terminal, events)
        p = plan(spec, prev, seen, sizing, now)
        # The job's own objects: before its first submission, and once per process for a job already
        # submitted (so that an operator restart recreates what was deleted by hand meanwhile).
        job_stage = seen.blocked is None and not terminal and (p.job == "submit" or seen.submission_id is not None)
        if job_stage and (late := self.ensure_owned(ref, spec, claim, "job")) is not None:
            seen = replace(seen, blocked=late)
            p = plan(spec, prev, seen, sizing, now)
        acted = self.act(ref, spec, dict(body.get("spec") or {}), sizing, claim, seen, p, prev, events)
        new = fold(prev, observation(generation, now, spec, sizing, claim, acted))
        return self.write(ref, stored, new, events)

    # --- the steps --------------------------------------------------------------------------------
    def claim(self, ref: FederationRef, spec: FederationSpec) -> Claim:
        """Someone else's cluster is never looked at again, never submitted to, never deleted."""
        existing = spec.cluster.existing_cluster
        name = existing or names.raycluster(ref.name)
        rc = self.kube.get_raycluster(ref.namespace, name)
        if rc is None:
            return Claim(name, existing, None)
        refusal = (
            ownership.borrow_refusal(rc, ref.uid)
            if existing
            else None
            if ownership.is_owned(rc, ref.uid)
            else ownership.conflict_message("RayCluster", ref.namespace, name, rc)
        )
        if refusal is not None:
            return Claim(name, existing, None, Blocked("ClusterNotBorrowable" if existing else "NameConflict", refusal))
        return Claim(name, existing, rc)

    def ensure_owned(self, ref: FederationRef, spec: FederationSpec, claim: Claim, stage: Stage) -> Blocked | None:
        """Create the Federation's own objects of ``stage``, once per process. One that exists already is
        ours only with our controller ownerReference: a look-alike is reported and left alone, neither
        used nor ever deleted.

        Two stages (`STAGE_OF`): what the cluster's pods need (the token Secret, the ServiceAccount) before
        the RayCluster; what only the job needs (the report ConfigMap, the Role, the RoleBinding) in the
        pass that first submits it. A new Federation's RayCluster thus comes after two writes, not five:
        at a fleet's scale the API server's write rate is what the first RayClusters wait for.

        Created first, looked at only when the name is taken (409): a new Federation costs one request
        per object, not a GET before each. Creation stops at the first look-alike, so the RoleBinding
        (last) is never made when the ServiceAccount or Role it binds is someone else's, and nothing of
        the job stage is made when the cluster stage found one; the objects after it, of both stages,
        are still looked at, so one message names every look-alike.

        A borrowed cluster's ServiceAccounts go into the engine's RoleBinding, so this waits until it exists."""
        if (ref.uid, stage) in self._ensured or (claim.existing and claim.rc is None):
            return None
        borrowed = builders.pod_accounts(claim.rc) if claim.existing and claim.rc else None
        owned = self._owned(ref, borrowed, spec.cluster.service_account.annotations)
        mine = [obj for obj in owned if STAGE_OF[obj["kind"]] == stage]
        conflicts: list[str] = []
        for obj in mine:
            kind, obj_name = obj["kind"], obj["metadata"]["name"]
            if not conflicts and self.kube.create(obj):
                log.info("%s: created %s %s", ref, kind, obj_name)
            else:  # the name is taken (or creation has stopped): whose is it?
                conflicts += self._look_alikes([obj], ref)
        if conflicts:
            # Found before the RayCluster: the job's names are looked at too, so one message names them all.
            later = [obj for obj in owned if STAGE_OF[obj["kind"]] == "job"] if stage == "cluster" else []
            return Blocked("NameConflict", " ".join(conflicts + self._look_alikes(later, ref)))
        self._ensured.add((ref.uid, stage))
        return None

    def observe(
        self,
        ref: FederationRef,
        prev: dict[str, Any],
        claim: Claim,
        blocked: Blocked | None,
        terminal: bool,
        events: list[Event],
    ) -> Seen:
        """The cluster (its pods only when it is not ready: for the reason), Ray's word on the current
        submission, and the engine's report. A blocked or finished Federation asks Ray nothing."""
        rc, ns = claim.rc, ref.namespace
        cluster = observe_cluster(rc, [])
        if rc is not None and not cluster.ready:
            cluster = observe_cluster(rc, self.kube.ray_pods(ns, claim.name))
        url = self.dashboard_url(ref, claim.name, cluster.service)
        jobs: JobsClient | None = None
        if rc is not None and not terminal and blocked is None:
            jobs, blocked = self._jobs(url, ref, rc)

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
            events.append(Event.warning("JobFailed", logtail.event_message(str(sid), ray_job.message)))
        report: ReportReading | None = None
        # Only a submitted job has a report to read: a Federation still creating costs no read for it.
        if not terminal and blocked is None and sid:
            text = self.kube.read_report(ns, names.report_configmap(ref.name))
            report = parse_report(text, submission_id=sid) if text else None
        return Seen(cluster, url, jobs, sid, ray_job, report, blocked, dashboard_error)

    def act(
        self,
        ref: FederationRef,
        spec: FederationSpec,
        raw_spec: dict[str, Any],
        sizing: Sizing,
        claim: Claim,
        seen: Seen,
        p: Plan,
        prev: dict[str, Any],
        events: list[Event],
    ) -> Acted:
        """Carry out the plan: the cluster first, then the job. `raw_spec` is the spec as the user wrote
        it: the engine gets exactly that (and validates it again)."""
        rc, ns, sid, jobs = claim.rc, ref.namespace, seen.submission_id, seen.jobs
        # create() is False when someone else made it since we looked: the next pass finds out whose it is.
        if (
            p.cluster == "ensure"
            and rc is None
            and self.kube.create(
                builders.build_raycluster(
                    ref.name,
                    ns,
                    ref.uid,
                    spec,
                    sizing,
                    default_image=self.settings.engine_image,
                    checkpoint_mount_path=self.settings.checkpoint_mount_path,
                )
            )
        ):
            events.append(
                Event.normal("ClusterCreated", f"created RayCluster {claim.name} ({_workers(sizing.workers)})")
            )
        if p.cluster == "delete" and rc is not None and not claim.existing:
            # rc is ours here (claimed above); the uid precondition keeps it that way until the delete.
            self.kube.delete("RayCluster", ns, claim.name, uid=rc["metadata"].get("uid"))
            seen = replace(seen, cluster=observe_cluster(None, []))
            events.append(Event.normal("ClusterDeleted", f"deleted RayCluster {claim.name} ({p.why})"))
        if p.job == "stop" and sid and jobs is not None:
            try:
                jobs.stop(sid)
                events.append(Event.normal("JobStopped", f"stopped Ray job {sid} ({p.why})"))
            except DashboardError as err:
                seen = replace(seen, dashboard_error=str(err))
        if p.job != "submit" or jobs is None:
            return Acted(p, seen)
        blocked, dashboard_error = _check_auth(jobs)
        submitted: str | None = None
        if blocked is None and dashboard_error is None:
            own = builders.engine_image(spec, self.settings.engine_image)
            image = builders.head_image(rc) if claim.existing and rc else own
            submitted, dashboard_error = self._submit(jobs, ref, spec, raw_spec, p.attempt, p.resume, events, image)
        seen = replace(seen, blocked=blocked, dashboard_error=dashboard_error)
        if submitted is None:
            # Not submitted: keep the previous attempt's numbers so the next pass tries again.
            attempts = int((prev.get("job") or {}).get("attempts") or 0)
            return Acted(Plan(p.cluster, "none", attempts, False, p.failures, p.terminal_failure, p.why), seen)
        # The previous attempt's report (and Ray's word on it) no longer describe this run.
        return Acted(p, replace(seen, report=None, ray_job=None), submitted)

    def write(self, ref: FederationRef, prev: dict[str, Any], new: dict[str, Any], events: list[Event]) -> Outcome:
        """Post what changed as Events and patch the status, only if it differs from the stored one."""
        out = Outcome(new, events)
        events.extend(status_events(prev, new))
        if new != prev:
            self.kube.patch_status(ref.namespace, ref.name, prev, new)
            out.written = True
        metrics.set_phase(f"{ref}", new.get("phase"))
        return out

    # --- pieces -----------------------------------------------------------------------------------
    def dashboard_url(self, ref: FederationRef, cluster: str, service: str | None) -> str:
        return dashboard_url(
            self.settings.dashboard_url_template,
            service=service,
            cluster=cluster,
            namespace=ref.namespace,
            federation=ref.name,
        )

    def _look_alikes(self, objs: list[dict[str, Any]], ref: FederationRef) -> list[str]:
        out = []
        for obj in objs:
            kind, obj_name = obj["kind"], obj["metadata"]["name"]
            if kind == "Secret":  # unreadable by design; its name carries our uid (names.token_secret)
                continue
            found = self.kube.get(kind, ref.namespace, obj_name)
            if found is not None and not ownership.is_owned(found, ref.uid):
                out.append(ownership.conflict_message(kind, ref.namespace, obj_name, found))
        return out

    def _owned(
        self,
        ref: FederationRef,
        borrowed_accounts: list[str] | None,
        account_annotations: dict[str, str] | None = None,
    ) -> list[dict[str, Any]]:
        """`borrowed_accounts` is None for a cluster of our own; a borrowed one keeps its own token. In
        `ensure_owned`'s order (the cluster's stage, then the job's): it stops at a look-alike, and the
        RoleBinding comes last."""
        name, ns, uid = ref.name, ref.namespace, ref.uid
        secret = [] if borrowed_accounts is not None else [builders.build_token_secret(name, ns, uid, self._token(uid))]
        return [
            *secret,
            builders.build_service_account(name, ns, uid, account_annotations),
            builders.build_report_configmap(name, ns, uid),
            builders.build_role(name, ns, uid),
            builders.build_role_binding(name, ns, uid, borrowed_accounts),
        ]

    def _token(self, uid: str) -> str:
        if self.settings.ray_token_file is not None:
            return Path(self.settings.ray_token_file).read_text().strip()
        if self._key is None:
            raise tokens.TokenKeyError("no token key: set --token-key-file")
        return tokens.derive(self._key, uid)

    def _jobs(self, url: str, ref: FederationRef, rc: Mapping[str, Any]) -> tuple[JobsClient | None, Blocked | None]:
        """A client for the cluster's dashboard. Our own cluster's token is derived; a borrowed cluster's
        is read from the Secret its authOptions name, which needs a grant its owner gives explicitly
        (the operator may read no Secret otherwise; see docs/kubernetes.md, Security model)."""
        timeout = self.settings.http_timeout_seconds
        if ownership.is_owned(rc, ref.uid):
            return JobsClient(url, self._token(ref.uid), timeout), None
        ns = ref.namespace
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
        ref: FederationRef,
        spec: FederationSpec,
        raw_spec: dict[str, Any],
        attempt: int,
        resume: bool,
        events: list[Event],
        image: str | None = None,
    ) -> tuple[str | None, str | None]:
        """Submit (or adopt) the attempt's job: (its submission id, None), or (None, why not)."""
        name, ns = ref.name, ref.namespace
        sid = names.submission_id(name, ref.uid, attempt)
        kubeconfig = None
        if self.settings.engine_kubeconfig_dir is not None:
            kubeconfig = str(
                self.kube.write_engine_kubeconfig(self.settings.engine_kubeconfig_dir, ns, names.engine_account(name))
            )
        request = builders.build_job_request(
            name,
            ns,
            raw_spec,
            sid,
            entrypoint=self.settings.engine_entrypoint,
            resume=resume,
            report_interval_seconds=self.settings.report_interval_seconds,
            kubeconfig_path=kubeconfig,
            extra_env={
                **self.settings.extra_engine_env,
                **checkpoints.engine_env(spec.checkpoint, ref.uid, self.settings.checkpoint_mount_path),
            },
            image=image,
            runtime_env=spec.runtime_env.ray_runtime_env(),
        )
        try:
            got, adopted = jobs.submit(request)
        except DashboardError as err:
            metrics.SUBMISSIONS.labels(outcome="error").inc()
            events.append(Event.warning("SubmitFailed", str(err)))
            return None, str(err)
        metrics.SUBMISSIONS.labels(outcome="adopted" if adopted else "submitted").inc()
        verb = "adopted existing" if adopted else "submitted"
        resuming = ", resuming from checkpoint" if resume else ""
        events.append(Event.normal("JobSubmitted", f"{verb} Ray job {got} (attempt {attempt}{resuming})"))
        return got, None

    # --- deletion ---------------------------------------------------------------------------------
    def cleanup(self, body: Mapping[str, Any]) -> list[str]:
        """Stop the job and remove everything the Federation owns. Returns what was removed.

        Reads the parsed spec; one that no longer parses still gets its Federation cleaned up
        (`cluster_to_clean`)."""
        ref = FederationRef.of(body)
        ns = ref.namespace
        status = body.get("status") or {}
        existing = cluster_to_clean(parse_for_cleanup(body.get("spec"), ref), body.get("spec"))
        cluster_name = existing or names.raycluster(ref.name)
        removed: list[str] = []
        sid = (status.get("job") or {}).get("submissionId")
        rc = self.kube.get_raycluster(ns, cluster_name)
        if rc is not None and (
            ownership.borrow_refusal(rc, ref.uid) if existing else not ownership.is_owned(rc, ref.uid)
        ):
            rc = None  # someone else's: not stopped, not deleted
        if sid and rc is not None:
            # Read from the object itself: a cluster being deleted still names its head Service.
            service = ((rc.get("status") or {}).get("head") or {}).get("serviceName")
            url = self.dashboard_url(ref, cluster_name, service)
            try:
                jobs, _ = self._jobs(url, ref, rc)
                if jobs is not None and jobs.stop(sid):
                    removed.append(f"job {sid} (stopped)")
            except DashboardError as err:
                log.warning("%s: could not stop job %s: %s", ref, sid, err)
        # Only what carries our controller ownerReference, and only that very object (uid precondition).
        # The token Secret is left to the garbage collector (it is owned; the operator cannot read it).
        for kind, obj in owned_for_cleanup(ref, existing):
            found = rc if kind == "RayCluster" else self.kube.get(kind, ns, obj)
            if found is None or not ownership.is_owned(found, ref.uid):
                continue
            if self.kube.delete(kind, ns, obj, uid=found["metadata"].get("uid")):
                removed.append(f"{kind} {obj}")
        if self.settings.engine_kubeconfig_dir is not None:
            path = self.settings.engine_kubeconfig_dir / f"{ns}.{names.engine_account(ref.name)}.kubeconfig"
            path.unlink(missing_ok=True)
        metrics.set_phase(f"{ref}", None)
        self._ensured.difference_update({(ref.uid, "cluster"), (ref.uid, "job")})
        return removed


# --- pure steps and helpers -------------------------------------------------------------------------
def plan(spec: FederationSpec, prev: dict[str, Any], seen: Seen, sizing: Sizing, now: datetime) -> Plan:
    """What this pass does (`decide.plan`). A blocked Federation touches nothing and counts nothing: the
    job was not asked about, so it did not fail."""
    if seen.blocked is not None:
        job = prev.get("job") or {}
        attempts, failures = int(job.get("attempts") or 0), int(job.get("failures") or 0)
        return Plan("leave", "none", attempts, False, failures, why=seen.blocked.reason)
    latest = seen.report.report if seen.report is not None else None
    return decide.plan(
        spec,
        prev,
        seen.ray_job,
        cluster_ready=seen.cluster.ready,
        fits=sizing.fits,
        now=now,
        engine_reason=latest.reason if latest is not None and latest.event == EngineEvent.FAILED else None,
    )


def observation(
    generation: int, now: datetime, spec: FederationSpec, sizing: Sizing, claim: Claim, acted: Acted
) -> Observed:
    """What `fold` gets: the pass's observations, as acting left them."""
    seen = acted.seen
    return Observed(
        generation,
        now,
        spec,
        sizing=sizing,
        cluster_name=claim.name,
        cluster_existing=claim.existing is not None,
        cluster=seen.cluster,
        plan=acted.plan,
        submission_id=acted.submitted or seen.submission_id,
        ray_job=seen.ray_job,
        report=seen.report,
        dashboard_url=seen.dashboard_url if claim.rc is not None else None,
        dashboard_error=seen.dashboard_error,
        blocked=seen.blocked,
    )


def parse_for_cleanup(raw: Any, ref: FederationRef) -> FederationSpec | None:
    """The spec, or None when it does not parse (deletion goes on regardless). No registry check: a
    Federation whose task this operator does not know is deleted like any other."""
    try:
        return spec_from_dict(raw, source=f"Federation {ref}", check_registry=False)
    except SpecError:
        return None


def cluster_to_clean(spec: FederationSpec | None, raw: Any) -> str | None:
    """The borrowed cluster (spec.cluster.existingCluster) whose job a deletion stops, or None for a
    cluster of our own. From the parsed spec; from the raw one only when it does not parse, read
    defensively (any shape may be there)."""
    if spec is not None:
        return spec.cluster.existing_cluster
    cluster = raw.get("cluster") if isinstance(raw, Mapping) else None
    existing = cluster.get("existingCluster") if isinstance(cluster, Mapping) else None
    return existing if isinstance(existing, str) and existing else None


def owned_for_cleanup(ref: FederationRef, existing: str | None) -> list[tuple[str, str]]:
    """(kind, name) of what a deletion removes when it is ours; never a borrowed cluster."""
    account = names.engine_account(ref.name)
    return [
        *([] if existing else [("RayCluster", names.raycluster(ref.name))]),
        ("RoleBinding", account),
        ("Role", account),
        ("ServiceAccount", account),
        ("ConfigMap", names.report_configmap(ref.name)),
    ]


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
