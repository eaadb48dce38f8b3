"""On the real control plane with a real Ray head: a successful Federation's status shows the software
the engine ran on (and the image the operator gave it), and a Federation whose task raises before any
report says why in its Failed condition and a Warning Event, from the end of the Ray job's log."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import ray
import torch

import red
from tests.fixtures.cluster import KubeCluster, kubectl_json
from tests.operator.e2e_helpers import apply, condition, events, federation, status, wait_until
from tests.operator.operator_proc import start_operator
from tests.operator.ray_head import RayHead

pytestmark = [pytest.mark.cluster, pytest.mark.ray]

IMAGE = "registry.example/red-engine:e2e"
ERROR = "ValueError: boom: this task refuses to start"
RAISING_TASK = '''
import red.tasks
from red.tasks.digits import DigitsTask


@red.tasks.register("raises-at-start")
class RaisesAtStart(DigitsTask):
    def __init__(self, *args, **kwargs):
        raise ValueError("boom: this task refuses to start")
'''


@pytest.mark.timeout(1200)  # two Federations, on a machine other work may load
def test_versions_on_success_and_the_error_of_a_raising_task(
    kube_cluster: KubeCluster, kube_namespace: str, federation_crd: str, ray_head: RayHead, tmp_path: Path
) -> None:
    ns = kube_namespace
    code = tmp_path / "code"
    code.mkdir()
    (code / "raising_task.py").write_text(RAISING_TASK)
    # The engine image would carry the task; here the job's environment points at the folder.
    pythonpath = os.pathsep.join([str(code), *filter(None, [os.environ.get("PYTHONPATH")])])
    env = {
        "RED_OPERATOR_EXTRA_ENGINE_ENV": json.dumps({"PYTHONPATH": pythonpath}),
        "RED_OPERATOR_ENGINE_IMAGE": IMAGE,
    }
    op = start_operator(
        kube_cluster.kubeconfig,
        tmp_path / "operator",
        dashboard_url=ray_head.dashboard_url,
        token_file=ray_head.token_file,
        namespaces=[ns],
        env=env,
    )
    try:
        apply(kube_cluster, ns, federation("fine", rounds=2, clients=2))
        apply(
            kube_cluster,
            ns,
            federation(
                "raiser", rounds=2, clients=2, backoffLimit=0, task={"name": "raises-at-start"},
                runtimeEnv={"imports": ["raising_task"]},
            ),
        )

        def finished(name: str) -> bool:
            return status(kube_cluster, ns, name).get("phase") in ("Succeeded", "Failed")

        try:
            wait_until("both federations to finish", lambda: finished("fine") and finished("raiser"), timeout_s=800)
        except AssertionError:
            for name in ("fine", "raiser"):
                st = status(kube_cluster, ns, name)
                print(name, st.get("phase"), json.dumps(st.get("conditions"), indent=1)[:3000])
            raise

        # The chart's engine.image (the operator's default) runs the pods of a Federation that names none.
        rc = kubectl_json(kube_cluster, "get", "raycluster", "fine-ray", "-n", ns)
        assert rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] == IMAGE

        st = status(kube_cluster, ns, "fine")
        assert st["phase"] == "Succeeded", st
        versions = st["versions"]
        assert versions["red"] == red.__version__ and versions["ray"] == ray.__version__
        assert versions["torch"] and versions["python"]
        assert versions.get("cuda") == (torch.version.cuda if torch.cuda.is_available() else None)
        assert versions["image"] == IMAGE

        bad = status(kube_cluster, ns, "raiser")
        assert bad["phase"] == "Failed", bad
        failed = condition(bad, "Failed")
        assert failed["status"] == "True" and ERROR in failed["message"], failed
        assert "last log lines" in failed["message"]
        warnings = [e for e in events(kube_cluster, ns, "raiser") if e["reason"] == "JobFailed"]
        assert warnings and warnings[0]["type"] == "Warning" and ERROR in warnings[0]["message"], warnings
        described = kube_cluster.kubectl("describe", "federation", "raiser", "-n", ns).stdout
        assert ERROR in described
        assert ray_head.token not in json.dumps(bad) + described
    finally:
        kube_cluster.kubectl(
            "delete", "federations", "--all", "-n", ns, "--timeout=120s", check=False, timeout=180
        )
        op.stop()
        print(f"\n--- operator log (tail) ---\n{op.logs()[-6000:]}")
