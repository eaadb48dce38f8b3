"""Operator latency and memory on the real control plane (e2e/cluster) with a real local Ray head.

    python bench/operator_latency.py [--counts 1 50]

For N Federations applied at once (one `kubectl apply`), measures per Federation:
  * apply -> RayCluster created (the RayCluster first seen by a watch on the API server),
  * apply -> Ray job submitted (status.job.submissionId first seen),
and the operator's peak resident memory (VmHWM). The engine entrypoint is replaced by a no-op so the
figures are the operator's (and KubeRay's and the scheduler's), not the training's.
Starts and stops its own cluster, Ray head and operator.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.cluster import cluster_up  # noqa: E402
from tests.operator.operator_proc import start_operator  # noqa: E402
from tests.operator.ray_head import start_ray_head  # noqa: E402


def federation(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "red.dev/v1alpha1",
        "kind": "Federation",
        "metadata": {"name": name},
        "spec": {
            "clients": 2,
            "rounds": 1,
            # Head only, small: 50 of them fit the simulated CPU pool. GPU sizing is not what is measured
            # (the GPU pool holds 16 one-GPU workers: more would wait, correctly, as Unschedulable).
            "cluster": {"head": {"cpu": "100m", "memory": "256Mi"}},
        },
    }


class Watcher:
    """First-seen times of RayClusters and of submitted jobs, from watches (not polling)."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.api, self.namespace = api, namespace
        self.cluster_seen: dict[str, float] = {}
        self.job_seen: dict[str, float] = {}
        self._stop = threading.Event()
        self.threads = [
            threading.Thread(target=self._watch, args=("ray.io", "v1", "rayclusters", self._on_cluster), daemon=True),
            threading.Thread(
                target=self._watch, args=("red.dev", "v1alpha1", "federations", self._on_fed), daemon=True
            ),
        ]
        for t in self.threads:
            t.start()

    def _on_cluster(self, obj: dict[str, Any], now: float) -> None:
        fed = obj["metadata"].get("labels", {}).get("red.dev/federation")
        if fed:
            self.cluster_seen.setdefault(fed, now)

    def _on_fed(self, obj: dict[str, Any], now: float) -> None:
        if ((obj.get("status") or {}).get("job") or {}).get("submissionId"):
            self.job_seen.setdefault(obj["metadata"]["name"], now)

    def _watch(self, group: str, version: str, plural: str, fn: Any) -> None:
        from kubernetes import client, watch

        custom = client.CustomObjectsApi(self.api)
        while not self._stop.is_set():
            w = watch.Watch()
            try:
                for ev in w.stream(
                    custom.list_namespaced_custom_object, group, version, self.namespace, plural, timeout_seconds=5
                ):
                    fn(ev["object"], time.monotonic())
                    if self._stop.is_set():
                        break
            except Exception:
                time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()


def stats(values: list[float]) -> str:
    if not values:
        return "n/a"
    values = sorted(values)
    p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
    return f"p50 {statistics.median(values):6.2f} s  p95 {p95:6.2f} s  max {values[-1]:6.2f} s"


def run(counts: list[int]) -> int:
    from kubernetes import config

    cluster = cluster_up("red-bench")
    head = None
    try:
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds" / "federation.yaml"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/federations.red.dev", "--timeout=60s")
        head = start_ray_head()
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))
        work = Path(tempfile.mkdtemp(prefix="red-bench-"))
        print(f"{'N':>4}  {'apply -> RayCluster created':<44}  {'apply -> job submitted':<44}  operator peak RSS")
        for n in counts:
            ns = f"bench-{n}"
            cluster.kubectl("create", "namespace", ns)
            op = start_operator(
                cluster.kubeconfig,
                work / ns,
                dashboard_url=head.dashboard_url,
                token_file=head.token_file,
                namespaces=[ns],
                env={"RED_OPERATOR_ENGINE_ENTRYPOINT": "python -c pass"},
                job_poll_seconds=1.0,
            )
            watcher = Watcher(api, ns)
            try:
                time.sleep(1)
                items = {"apiVersion": "v1", "kind": "List", "items": [federation(f"b{i}") for i in range(n)]}
                t0 = time.monotonic()
                cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(items), timeout=300)
                deadline = time.monotonic() + 600
                while len(watcher.job_seen) < n and time.monotonic() < deadline:
                    time.sleep(0.2)
                created = [t - t0 for t in watcher.cluster_seen.values()]
                submitted = [t - t0 for t in watcher.job_seen.values()]
                print(
                    f"{n:>4}  {stats(created):<44}  {stats(submitted):<44}  {op.peak_rss_mib():.0f} MiB"
                    + ("" if len(submitted) == n else f"  (only {len(submitted)}/{n} submitted)"),
                    flush=True,
                )
                cluster.kubectl("delete", "federations", "--all", "-n", ns, "--timeout=300s", check=False, timeout=360)
            finally:
                watcher.stop()
                op.stop()
        return 0
    finally:
        if head is not None:
            head.stop()
        cluster.down()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--counts", type=int, nargs="+", default=[1, 50])
    return run(p.parse_args().counts)


if __name__ == "__main__":
    sys.exit(main())
