"""The real nodes' plan and configuration (e2e/realnodes.py): pure functions, no root needed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.chart.tools import tool

E2E = Path(__file__).resolve().parents[2] / "e2e"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("realnodes", E2E / "realnodes.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["realnodes"] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


rn = _load()


@pytest.mark.parametrize(("count", "names"), [(1, ["real-cpu-0"]), (2, ["real-cpu-0", "real-gpu-0"])])
def test_plan_has_a_cpu_node_then_a_gpu_node(count: int, names: list[str]) -> None:
    p = rn.plan("c", count)
    assert [n.name for n in p.nodes] == names
    assert [n.gpu for n in p.nodes] == [name.startswith("real-gpu") for name in names]
    # Every address of the plan is distinct, and the pods' subnets never overlap the link's.
    addrs = [p.host_ip, *[n.ip for n in p.nodes]]
    assert len(set(addrs)) == len(addrs)
    assert len({n.pod_cidr for n in p.nodes}) == count
    assert all(n.ip.startswith(p.host_ip.rsplit(".", 1)[0] + ".") for n in p.nodes)
    assert len(p.bridge) <= 15 and all(len(n.netns) <= 15 for n in p.nodes)  # interface-name limit


@pytest.mark.parametrize("count", [0, 3, -1])
def test_plan_refuses_other_node_counts(count: int) -> None:
    with pytest.raises(ValueError, match="RED_REAL_NODES must be 1 or 2"):
        rn.plan("c", count)


def test_plans_of_different_clusters_use_different_bridges() -> None:
    a, b = rn.plan("red-pytest-real", 2), rn.plan("red-e2e", 2)
    assert a.bridge != b.bridge and a.host_ip != b.host_ip and a.nodes[0].pod_cidr != b.nodes[0].pod_cidr


def test_kubelet_config_carries_what_this_machine_needs(tmp_path: Path) -> None:
    n = rn.plan("c", 2).nodes[1]
    conf = json.loads(
        rn.kubelet_config(n, tmp_path / "s.sock", tmp_path / "ca.crt", "10.0.0.1", tmp_path / "r", "/x", tmp_path)
    )
    assert conf["cgroupDriver"] == "cgroupfs" and conf["failCgroupV1"] is False and conf["failSwapOn"] is False
    assert conf["address"] == n.ip and conf["clusterDNS"] == ["10.0.0.1"] and conf["cgroupRoot"] == "/x"
    assert conf["authentication"]["anonymous"]["enabled"] is False


def test_containerd_config_restricts_oom_score_adj(tmp_path: Path) -> None:
    text = rn.containerd_config(tmp_path, tmp_path, tmp_path / "s", tmp_path, "localhost/red-pause:x")
    assert "restrict_oom_score_adj = true" in text
    assert 'sandbox_image = "localhost/red-pause:x"' in text
    assert "netns_mounts_under_state_dir = true" in text


def test_mounts_under_lists_deepest_first_and_only_below_the_prefix() -> None:
    mounts = "a /r/k overlay rw 0 0\na /r/k/pods/x tmpfs rw 0 0\na /other tmpfs rw 0 0\na /r/kx tmpfs rw 0 0\n"
    assert rn.mounts_under(["/r/k"], mounts) == ["/r/k/pods/x", "/r/k"]


@pytest.mark.parametrize("script", ["build", "images"])
def test_e2e_scripts_are_shellcheck_clean(script: str) -> None:
    lint = subprocess.run(
        [tool("shellcheck"), "-x", "--severity=style", str(E2E / script)], capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
