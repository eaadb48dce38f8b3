"""The operator's API request budget and its behaviour with a fleet, on the real control plane.

    python bench/operator_scale.py budget [--per-state 3] [--window 120] [--states idle-creating running finished]
    python bench/operator_scale.py fleet  [--count 1000] [--window 60]
    python bench/operator_scale.py all    [--per-state 3] [--window 120] [--count 1000] [--fleet-window 60]

`all` runs the budget (every state), then the fleet, and prints both (each on its own cluster).

Both start their own cluster (e2e/cluster with the API server's audit log on: RED_CLUSTER_AUDIT=1), a
real local Ray head and the operator, and stop them all. The operator's requests are the audit log's
lines with its user agents (`red-operator` for its own client, `kopf/...` for kopf's).

budget: one operator watches three namespaces, one per state, `--per-state` Federations each:
  * idle-creating: the head asks for 64 CPUs, more than any node has: the RayCluster exists, its pod
    stays Pending (Unschedulable), the Federation stays Starting;
  * running: real training (digits, 3 clients, many rounds), the engine writing its report ConfigMap
    every 2 s (the operator's default report interval);
  * finished: 1 round, Succeeded before the window opens.
  Once every Federation is in its state, requests are counted for `--window` seconds and reported per
  Federation per minute, watches apart (their cost is per namespace, not per Federation).

fleet: `--count` Federations created at once (8 client threads; each one's own create time is its
  start), heads unschedulable as above so nothing reaches Ray: p50/p99 of create -> RayCluster seen and
  create -> first status seen (watches), the operator's peak RSS, and its steady-state requests per
  second over `--window` seconds once every status is written. Then the same count of KubeRay RayJobs
  (same unschedulable head) on the same cluster: create -> RayCluster seen, KubeRay's operator doing
  the work; the ratio of the two p50s/p99s. Ray job submission is not part of the fleet run (the local
  Ray head carries ~50 jobs: bench/operator_latency.py measures submission at 1 and 50).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.cluster import KubeCluster, cluster_up  # noqa: E402
from tests.operator.operator_proc import start_operator  # noqa: E402
from tests.operator.ray_head import start_ray_head  # noqa: E402

OPERATOR_AGENTS = ("red-operator", "kopf")
UNSCHEDULABLE_HEAD = {"cpu": "64", "memory": "1Gi"}  # the harness's nodes have 16 CPUs


# --- objects -------------------------------------------------------------------------------------------
def federation(name: str, *, rounds: int, clients: int = 2, head: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "red.dev/v1alpha1",
        "kind": "Federation",
        "metadata": {"name": name},
        "spec": {
            "schema": "star",
            "rounds": rounds,
            "clients": clients,
            "task": {"name": "digits", "params": {"epochs": 1, "lr": 0.2}},
            "resources": {"perNode": {"cpu": 0.1}, "broker": {"cpu": 0.1}},
            "cluster": {"head": head or {"cpu": "100m", "memory": "256Mi"}},
        },
    }


def rayjob(name: str) -> dict[str, Any]:
    limits = dict(UNSCHEDULABLE_HEAD)
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": name},
        "spec": {
            "entrypoint": "python -c pass",
            "rayClusterSpec": {
                "headGroupSpec": {
                    "rayStartParams": {},
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "ray-head",
                                    "image": "rayproject/ray:2.49.0",
                                    "resources": {"limits": limits, "requests": limits},
                                }
                            ]
                        }
                    },
                }
            },
        },
    }


# --- measuring -----------------------------------------------------------------------------------------
class FirstSeen:
    """First-seen times (monotonic) from a watch: of RayClusters by owner name, of Federation statuses."""

    def __init__(self, api: Any, namespace: str, group: str, version: str, plural: str, pick: Callable[..., Any]):
        self.api, self.namespace, self.args, self.pick = api, namespace, (group, version, plural), pick
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from kubernetes import client, watch

        custom = client.CustomObjectsApi(self.api)
        while not self._stop.is_set():
            try:
                group, version, plural = self.args
                for ev in watch.Watch().stream(
                    custom.list_namespaced_custom_object, group, version, self.namespace, plural, timeout_seconds=5
                ):
                    now = time.monotonic()
                    key = self.pick(ev["object"])
                    if key:
                        self.seen.setdefault(key, now)
                    if self._stop.is_set():
                        return
            except Exception:  # a bench watch simply restarts
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()


def owner_name(obj: dict[str, Any]) -> str | None:
    refs = obj["metadata"].get("ownerReferences") or []
    return str(refs[0]["name"]) if refs else None


def status_written(obj: dict[str, Any]) -> str | None:
    return str(obj["metadata"]["name"]) if obj.get("status") else None


def create_all(api: Any, namespace: str, objs: list[dict[str, Any]], plural: str) -> dict[str, float]:
    """Create concurrently; each object's start is when its own POST returned (monotonic)."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    done: dict[str, float] = {}

    def one(obj: dict[str, Any]) -> None:
        group, version = obj["apiVersion"].split("/")
        custom.create_namespaced_custom_object(group, version, namespace, plural, obj)
        done[obj["metadata"]["name"]] = time.monotonic()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, objs))
    return done


def latencies(start: dict[str, float], seen: dict[str, float]) -> list[float]:
    return sorted(seen[k] - t for k, t in start.items() if k in seen)


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]


def fmt(values: list[float], total: int) -> str:
    if not values:
        return "n/a"
    miss = "" if len(values) == total else f" (only {len(values)}/{total})"
    return f"p50 {statistics.median(values):6.2f} s  p99 {pct(values, 0.99):6.2f} s  max {values[-1]:6.2f} s{miss}"


def audit_requests(
    audit: Path, since: datetime, until: datetime, agents: tuple[str, ...] = OPERATOR_AGENTS
) -> list[dict[str, Any]]:
    """One entry per request (audit ID) from `agents` received in [since, until)."""
    out: dict[str, dict[str, Any]] = {}
    with audit.open() as fh:
        for line in fh:
            ev = json.loads(line)
            if not str(ev.get("userAgent", "")).startswith(agents):
                continue
            ts = datetime.fromisoformat(ev["requestReceivedTimestamp"].replace("Z", "+00:00"))
            if since <= ts < until:
                out.setdefault(ev["auditID"], ev)
    return list(out.values())


def describe(ev: dict[str, Any]) -> str:
    ref = ev.get("objectRef") or {}
    sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
    return f"{ev['verb']} {ref.get('resource', ev.get('requestURI', '?'))}{sub}"


def settle(audit: Path, *, quiet_rps: float, timeout_s: float, slice_s: float = 10) -> float:
    """Wait until the operator sends fewer than `quiet_rps` requests per second (watches apart) in two
    slices in a row; the seconds it took (`timeout_s` at most)."""
    t0, quiet = time.monotonic(), 0
    while time.monotonic() - t0 < timeout_s and quiet < 2:
        since = datetime.now(UTC)
        time.sleep(slice_s)
        until = datetime.now(UTC)
        time.sleep(1.5)  # the audit log is written in 1 s batches
        sent = [e for e in audit_requests(audit, since, until) if e["verb"] != "watch"]
        quiet = quiet + 1 if len(sent) / slice_s < quiet_rps else 0
    return time.monotonic() - t0


def wait_for(what: str, check: Callable[[], bool], timeout_s: float, poll_s: float = 2) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(poll_s)
    raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")


def phases(cluster: KubeCluster, namespace: str) -> list[dict[str, Any]]:
    items = json.loads(cluster.kubectl("get", "federations", "-n", namespace, "-o", "json").stdout)["items"]
    return [i.get("status") or {} for i in items]


def start_audited_cluster(name: str) -> tuple[KubeCluster, Path]:
    os.environ["RED_CLUSTER_AUDIT"] = "1"
    cluster = cluster_up(name)
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds" / "federation.yaml"))
    for attempt in range(3):  # `kubectl wait` errors while the new CRD has no conditions yet
        wait = ("wait", "--for=condition=Established", "crd/federations.red.dev", "--timeout=60s")
        if cluster.kubectl(*wait, check=attempt == 2).returncode == 0:
            break
        time.sleep(2)
    return cluster, cluster.state_dir / "audit.log"


# --- budget --------------------------------------------------------------------------------------------
def budget(per_state: int, window_s: float, only: list[str]) -> int:
    from kubernetes import config

    cluster, audit = start_audited_cluster(os.environ.get("RED_CLUSTER_NAME", "red-bench") + "-budget")
    head, op = None, None
    work = Path(tempfile.mkdtemp(prefix="red-bench-budget-"))
    try:
        all_states = {
            "idle-creating": [federation(f"idle{i}", rounds=1, head=UNSCHEDULABLE_HEAD) for i in range(per_state)],
            "running": [federation(f"run{i}", rounds=100000, clients=3) for i in range(per_state)],
            "finished": [federation(f"done{i}", rounds=1) for i in range(per_state)],
        }
        states = {k: v for k, v in all_states.items() if k in only}
        if set(states) - {"idle-creating"}:
            head = start_ray_head(num_cpus=4)
            dashboard, token = head.dashboard_url, head.token_file
        else:  # nothing reaches Ray: no head needed (a closed port stands in for its dashboard)
            dashboard, token = "http://127.0.0.1:9", work / "token"
            token.write_text("unused")
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        for ns in states:
            cluster.kubectl("create", "namespace", ns)
        op = start_operator(
            cluster.kubeconfig,
            work,
            dashboard_url=dashboard,
            token_file=token,
            namespaces=list(states),
            # Defaults of the chart: the figures are those of a deployed operator.
            job_poll_seconds=5.0,
        )
        started = datetime.now(UTC)
        for ns, objs in states.items():
            create_all(api, ns, objs, "federations")

        def settled() -> bool:
            ok = True
            if "idle-creating" in states:
                unsched = [
                    c for s in phases(cluster, "idle-creating") for c in s.get("conditions") or []
                    if c["type"] == "ClusterReady" and c.get("reason") == "Unschedulable"
                ]
                ok = ok and len(unsched) == per_state
            if "running" in states:
                run = phases(cluster, "running")
                ok = ok and len(run) == per_state
                ok = ok and all(s.get("phase") == "Running" and (s.get("round") or 0) >= 1 for s in run)
            if "finished" in states:
                done = phases(cluster, "finished")
                ok = ok and len(done) == per_state and all(s.get("phase") == "Succeeded" for s in done)
            return ok

        wait_for("every Federation in its state", settled, timeout_s=900)
        time.sleep(10)  # let the last transitions' writes pass
        since = datetime.now(UTC)
        time.sleep(window_s)
        until = datetime.now(UTC)
        time.sleep(3)  # the audit log is written in 1 s batches
        still_running = "running" not in states or all(
            s.get("phase") == "Running" for s in phases(cluster, "running")
        )
        reqs = audit_requests(audit, since, until)
        minutes = window_s / 60
        print(f"\nOperator API requests over {window_s:.0f} s, {per_state} Federations per state (audit log):")
        print(f"{'state':<15} {'per Federation per minute':>26} {'watches (per namespace)':>24}   what")
        by_ns: dict[str | None, list[dict[str, Any]]] = collections.defaultdict(list)
        for ev in reqs:
            by_ns[(ev.get("objectRef") or {}).get("namespace")].append(ev)
        for ns in states:
            evs = by_ns.get(ns, [])
            watches = [e for e in evs if e["verb"] == "watch"]
            other = [e for e in evs if e["verb"] != "watch"]
            what = collections.Counter(describe(e) for e in other)
            print(
                f"{ns:<15} {len(other) / per_state / minutes:>26.2f} {len(watches):>24d}   "
                + (", ".join(f"{n}x {w}" for w, n in what.most_common()) or "-")
            )
        rest = by_ns.get(None, [])
        what = collections.Counter(describe(e) for e in rest)
        print(
            f"{'(cluster-wide)':<15} {len(rest) / minutes:>20.2f}/min   "
            + (", ".join(f"{n}x {w}" for w, n in what.most_common()) or "-")
        )
        # The filter's sanity: everything the operator sent from the first create to the window's start.
        before = audit_requests(audit, started, since)
        agents = collections.Counter(str(e.get("userAgent", "")).split("/")[0].split(" ")[0] for e in before)
        print(f"before the window (creation and settling): {len(before)} requests by {dict(agents)}")
        if not still_running:
            print("NOTE: a running Federation left Running during the window (raise rounds)")
        return 0
    finally:
        if op is not None:
            for ns in states:
                cluster.kubectl("delete", "federations", "--all", "-n", ns, "--timeout=300s", check=False, timeout=360)
            op.stop()
        if head is not None:
            head.stop()
        cluster.down()


# --- fleet ---------------------------------------------------------------------------------------------
def fleet(count: int, window_s: float) -> int:
    from kubernetes import config

    cluster, audit = start_audited_cluster(os.environ.get("RED_CLUSTER_NAME", "red-bench") + "-fleet")
    head, op = None, None
    ns_fed, ns_job = "fleet", "kuberay"
    try:
        head = start_ray_head(num_cpus=1)
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        for ns in (ns_fed, ns_job):
            cluster.kubectl("create", "namespace", ns)
        op = start_operator(
            cluster.kubeconfig,
            Path(tempfile.mkdtemp(prefix="red-bench-fleet-")),
            dashboard_url=head.dashboard_url,
            token_file=head.token_file,
            namespaces=[ns_fed],
            job_poll_seconds=5.0,
        )
        rc_seen = FirstSeen(api, ns_fed, "ray.io", "v1", "rayclusters", owner_name)
        st_seen = FirstSeen(api, ns_fed, "red.dev", "v1alpha1", "federations", status_written)
        time.sleep(2)
        created = create_all(
            api, ns_fed, [federation(f"f{i:04d}", rounds=1, head=UNSCHEDULABLE_HEAD) for i in range(count)],
            "federations",
        )
        wait_for(
            "every RayCluster and status",
            lambda: len(rc_seen.seen) >= count and len(st_seen.seen) >= count,
            timeout_s=1800,
        )
        to_rc, to_status = latencies(created, rc_seen.seen), latencies(created, st_seen.seen)
        # The fleet settles (the pods' Unschedulable conditions reach every Federation: one more pass,
        # status patch and Event each) before the steady state is counted.
        settle_s = settle(audit, quiet_rps=1.0, timeout_s=900)
        since = datetime.now(UTC)
        time.sleep(window_s)
        until = datetime.now(UTC)
        time.sleep(3)
        steady = [e for e in audit_requests(audit, since, until) if e["verb"] != "watch"]
        rss = op.peak_rss_mib()
        rc_seen.stop()
        st_seen.stop()

        # KubeRay's own operator, the same count, the same cluster. Ours is stopped first: KubeRay's work
        # is measured alone, as ours was (KubeRay's operator idle meanwhile).
        op.stop()
        op = None
        kr_seen = FirstSeen(api, ns_job, "ray.io", "v1", "rayclusters", owner_name)
        time.sleep(2)
        kr_created = create_all(api, ns_job, [rayjob(f"j{i:04d}") for i in range(count)], "rayjobs")
        wait_for("KubeRay's RayClusters", lambda: len(kr_seen.seen) >= count, timeout_s=1800)
        kr_to_rc = latencies(kr_created, kr_seen.seen)
        kr_seen.stop()

        print(f"\nFleet: {count} Federations created at once (8 client threads), heads unschedulable")
        print(f"  create -> RayCluster    {fmt(to_rc, count)}")
        print(f"  create -> first status  {fmt(to_status, count)}")
        print(f"  operator peak RSS       {rss:.0f} MiB")
        print(f"  settled                 {settle_s:.0f} s after the last first status (< 1 request/s for 20 s)")
        what = collections.Counter(describe(e) for e in steady)
        print(
            f"  steady state            {len(steady) / window_s:.2f} requests/s over {window_s:.0f} s (watches apart)"
            + (f": {', '.join(f'{n}x {w}' for w, n in what.most_common(5))}" if steady else "")
        )
        print(f"KubeRay: {count} RayJobs created at once, same cluster")
        print(f"  create -> RayCluster    {fmt(kr_to_rc, count)}")
        if to_rc and kr_to_rc:
            print(
                f"  ratio ours/KubeRay      p50 {statistics.median(to_rc) / statistics.median(kr_to_rc):.2f}x"
                f"  p99 {pct(to_rc, 0.99) / pct(kr_to_rc, 0.99):.2f}x"
            )
        return 0
    finally:
        if op is not None:
            op.stop()  # no graceful deletion: the cluster goes as a whole
        if head is not None:
            head.stop()
        cluster.down()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    b = sub.add_parser("budget")
    b.add_argument("--per-state", type=int, default=3)
    b.add_argument("--window", type=float, default=120)
    b.add_argument(
        "--states", nargs="+", default=["idle-creating", "running", "finished"],
        choices=["idle-creating", "running", "finished"], help="idle-creating alone needs no Ray head",
    )
    f = sub.add_parser("fleet")
    f.add_argument("--count", type=int, default=1000)
    f.add_argument("--window", type=float, default=60)
    a = sub.add_parser("all")
    a.add_argument("--per-state", type=int, default=3)
    a.add_argument("--window", type=float, default=120)
    a.add_argument("--count", type=int, default=1000)
    a.add_argument("--fleet-window", type=float, default=60)
    args = p.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.what == "budget":
        return budget(args.per_state, args.window, args.states)
    if args.what == "fleet":
        return fleet(args.count, args.window)
    return budget(args.per_state, args.window, ["idle-creating", "running", "finished"]) or fleet(
        args.count, args.fleet_window
    )


if __name__ == "__main__":
    sys.exit(main())
