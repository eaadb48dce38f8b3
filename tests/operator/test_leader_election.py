"""Leader election on a real API server: the Lease protocol alone, then two real operator processes
with a real Ray head, the leader killed (a crash) or stopped (a rolling update) mid-run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from red_operator.leader import LeaderElector

from tests.fixtures.cluster import KubeCluster, kubectl_json
from tests.operator.e2e_helpers import apply, federation, get_fed, status, wait_until
from tests.operator.operator_proc import OperatorProcess, start_operator
from tests.operator.ray_head import RayHead
from tests.operator.test_operator_cluster import jobs_of, submission_prefix

pytestmark = [pytest.mark.cluster]

LEASE = "red-operator"
# Short, so that the tests are quick; the ordering rule (retry < renew deadline < duration) is the same.
FAST = {"duration_seconds": 4.0, "renew_deadline_seconds": 3.0, "retry_seconds": 0.5}


def elector(cluster: KubeCluster, namespace: str, identity: str) -> LeaderElector:
    return LeaderElector(cluster.api_client(), namespace=namespace, name=LEASE, identity=identity, **FAST)


def holder(cluster: KubeCluster, namespace: str, name: str = LEASE) -> str:
    lease = kubectl_json(cluster, "get", "lease", name, "-n", namespace)
    return str(lease["spec"].get("holderIdentity") or "")


def test_one_leader_a_standby_takes_over_after_the_lease_runs_out(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    a, b = elector(kube_cluster, kube_namespace, "a"), elector(kube_cluster, kube_namespace, "b")
    assert a.try_acquire_or_renew() is True  # creates the Lease
    assert b.try_acquire_or_renew() is False
    assert a.try_acquire_or_renew() is True  # renews
    assert holder(kube_cluster, kube_namespace) == "a"
    # `a` stops renewing (as a hung or partitioned leader would): `b` waits out the duration, then wins.
    t0 = time.monotonic()
    assert b.wait_until_leader()
    waited = time.monotonic() - t0
    assert waited >= FAST["duration_seconds"] - FAST["retry_seconds"], waited
    assert holder(kube_cluster, kube_namespace) == "b"
    lease = kubectl_json(kube_cluster, "get", "lease", LEASE, "-n", kube_namespace)
    assert lease["spec"]["leaseTransitions"] == 1
    # The old leader notices at its next renewal and gives up: `on_lost` is called.
    lost = threading.Event()
    a.keep_renewing(on_lost=lost.set)
    assert lost.wait(FAST["renew_deadline_seconds"] + 5)
    a.stop()
    # A clean stop releases the Lease: the next one takes it at once, not after the duration.
    b.release()
    c = elector(kube_cluster, kube_namespace, "c")
    assert c.try_acquire_or_renew() is True


def test_elector_refuses_settings_that_allow_two_leaders(kube_cluster: KubeCluster) -> None:
    with pytest.raises(ValueError, match="renew deadline"):
        LeaderElector(
            kube_cluster.api_client(), namespace="default", name=LEASE, identity="x",
            duration_seconds=5, renew_deadline_seconds=10, retry_seconds=1,
        )


# --- two operator processes --------------------------------------------------------------------------
OPERATOR_LEASE = {
    "RED_OPERATOR_LEADER_ELECTION": "true",
    "RED_OPERATOR_LEASE_DURATION_SECONDS": "6",
    "RED_OPERATOR_LEASE_RENEW_DEADLINE_SECONDS": "4",
    "RED_OPERATOR_LEASE_RETRY_SECONDS": "1",
}
# client_0 sleeps 1 s a round: the run is still going when the leader goes (a fast engine can finish 10
# rounds within a few report intervals, and the handover would then happen after the end).
SLOW_TASK = {"name": "digits", "params": {"epochs": 1, "lr": 0.2, "slowdown": {"client_0": 1.0}}}


@pytest.fixture
def two_operators(
    kube_cluster: KubeCluster, kube_namespace: str, federation_crd: str, ray_head: RayHead, tmp_path: Path
) -> Iterator[list[OperatorProcess]]:
    env = {**OPERATOR_LEASE, "RED_OPERATOR_LEASE_NAMESPACE": kube_namespace}
    ops: list[OperatorProcess] = []
    try:
        for who in ("a", "b"):
            ops.append(
                start_operator(
                    kube_cluster.kubeconfig,
                    tmp_path / who,
                    dashboard_url=ray_head.dashboard_url,
                    token_file=ray_head.token_file,
                    namespaces=[kube_namespace],
                    env=env,
                    log_name=f"operator-{who}.log",
                )
            )
        yield ops
    finally:
        # Clean up with a live leader (the finalizers need one), then stop everything.
        if all(op.proc.poll() is not None for op in ops):
            ops.append(
                start_operator(
                    kube_cluster.kubeconfig, tmp_path / "c", dashboard_url=ray_head.dashboard_url,
                    token_file=ray_head.token_file, namespaces=[kube_namespace], env=env, log_name="operator-c.log",
                )
            )
        kube_cluster.kubectl(
            "delete", "federations", "--all", "-n", kube_namespace, "--timeout=120s", check=False, timeout=180
        )
        for op in ops:
            op.stop()
            print(f"\n--- {op.log.name} (tail) ---\n{op.logs()[-4000:]}")


def leader_of(cluster: KubeCluster, namespace: str, ops: list[OperatorProcess]) -> OperatorProcess | None:
    """The process whose pid the Lease's holderIdentity (`<host>_<pid>_<random>`) names."""
    try:
        who = holder(cluster, namespace)
    except AssertionError:
        return None
    pid = int(who.split("_")[-2]) if who.count("_") >= 2 else -1
    return next((op for op in ops if op.proc.pid == pid and op.proc.poll() is None), None)


def run_to_the_end(cluster: KubeCluster, ns: str, name: str) -> list[int]:
    rounds: list[int] = []

    def done() -> bool:
        st = status(cluster, ns, name)
        rounds.append(int(st.get("round") or 0))
        return st.get("phase") in ("Succeeded", "Failed")

    wait_until("the federation to finish", done, timeout_s=600, poll_s=1)
    return rounds


def check_one_job_and_continuity(
    cluster: KubeCluster, ns: str, name: str, head: RayHead, before: dict[str, Any], rounds: list[int]
) -> None:
    st = status(cluster, ns, name)
    assert st["phase"] == "Succeeded", st
    assert rounds == sorted(rounds), f"status went backwards: {rounds}"
    assert min(rounds) >= before["round"]
    assert st["job"]["attempts"] == 1 and st["job"]["submissionId"] == before["job"]["submissionId"]
    assert st["startTime"] == before["startTime"]
    # No double submission: Ray knows exactly one job of this Federation.
    assert len(jobs_of(head, submission_prefix(get_fed(cluster, ns, name)))) == 1


@pytest.mark.ray
def test_killing_the_leader_hands_over_without_double_submission_or_lost_status(
    kube_cluster: KubeCluster, kube_namespace: str, two_operators: list[OperatorProcess], ray_head: RayHead
) -> None:
    ns, name = kube_namespace, "failover"
    leader = wait_until("a leader", lambda: leader_of(kube_cluster, ns, two_operators), timeout_s=60)
    standby = next(op for op in two_operators if op is not leader)
    # The gauge follows the Lease within moments (set right after the Lease is won).
    wait_until("the leader's gauge", lambda: "red_operator_leader 1.0" in leader.metrics(), timeout_s=30)
    assert "red_operator_leader 0.0" in standby.metrics()

    apply(kube_cluster, ns, federation(name, rounds=10, task=SLOW_TASK))
    wait_until("a round reported", lambda: (status(kube_cluster, ns, name).get("round") or 0) >= 1, timeout_s=300)
    before = status(kube_cluster, ns, name)
    assert before["phase"] == "Running", before
    t0 = time.monotonic()
    leader.kill()  # a crash: no chance to release the Lease
    wait_until("the standby to lead", lambda: leader_of(kube_cluster, ns, [standby]), timeout_s=60)
    print(f"takeover after the leader's death: {time.monotonic() - t0:.1f} s (lease duration 6 s)")
    wait_until("the new leader's gauge", lambda: "red_operator_leader 1.0" in standby.metrics(), timeout_s=30)

    rounds = run_to_the_end(kube_cluster, ns, name)
    check_one_job_and_continuity(kube_cluster, ns, name, ray_head, before, rounds)


@pytest.mark.ray
def test_a_rolling_update_hands_over_at_once_without_interrupting_the_federation(
    kube_cluster: KubeCluster, kube_namespace: str, two_operators: list[OperatorProcess], ray_head: RayHead
) -> None:
    ns, name = kube_namespace, "rolling"
    leader = wait_until("a leader", lambda: leader_of(kube_cluster, ns, two_operators), timeout_s=60)
    standby = next(op for op in two_operators if op is not leader)
    apply(kube_cluster, ns, federation(name, rounds=10, task=SLOW_TASK))
    wait_until("a round reported", lambda: (status(kube_cluster, ns, name).get("round") or 0) >= 1, timeout_s=300)
    before = status(kube_cluster, ns, name)
    assert before["phase"] == "Running", before
    leader.stop()  # SIGTERM, as the Deployment's rolling update sends: the leader releases the Lease
    assert leader.proc.returncode == 0, leader.logs()[-3000:]
    assert "released the Lease" in leader.logs()
    wait_until("the standby to lead", lambda: leader_of(kube_cluster, ns, [standby]), timeout_s=30)
    rounds = run_to_the_end(kube_cluster, ns, name)
    check_one_job_and_continuity(kube_cluster, ns, name, ray_head, before, rounds)
