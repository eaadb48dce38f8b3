"""The real-node cluster (RED_REAL_NODES=2), shared by every test in tests/cluster that needs pods that run.

One cluster per test module, down when the module is done: the rest of the suite runs without its
kubelets, containerd and pods. A second `up` costs about 25 s: the nodes' image stores are kept across
`down`, so only the first `up` after a build imports anything.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.cluster import KubeCluster, cluster_up

NAME = "red-pytest-real"
# On by default (CI runs as root): real nodes need root for network namespaces, containerd and buildah.
REAL_NODES_SKIP = pytest.mark.skipif(
    os.geteuid() != 0 or os.environ.get("RED_E2E_REAL_NODES") == "0",
    reason="real nodes need root (network namespaces, containerd, buildah); RED_E2E_REAL_NODES=0 turns them off",
)


def image_refs(cluster: KubeCluster) -> dict[str, str]:
    """The images `up` imported into the nodes (asking e2e/images again would see a newer checkout)."""
    images: dict[str, str] = json.loads((cluster.state_dir / "realnodes.json").read_text())["images"]
    return images


def node_containers(node: str, namespace: str) -> list[str]:
    """The containers a real node's containerd still holds for pods of `namespace`."""
    sock = Path("/run/red") / NAME / node / "containerd.sock"
    out = subprocess.run(
        ["ctr", "--address", str(sock), "--namespace", "k8s.io", "containers", "ls", "-q",
         f"labels.\"io.kubernetes.pod.namespace\"=={namespace}"],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    return out.stdout.split()


def leftovers(state_dir: Path) -> list[str]:
    """What a real-node cluster makes outside its state dir, if any of it is still there."""
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in netns.splitlines() if line.startswith(("red-", "cni-"))]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"link {line.split(':')[1].strip()}" for line in links.splitlines() if ": redbr" in line]
    marker = str(state_dir)
    for line in Path("/proc/mounts").read_text().splitlines():
        mp = line.split()[1]
        if marker in mp or "/run/red/" in mp or "/containerd/" + NAME in mp:
            found.append(f"mount {mp}")
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if marker in cmd or f"/run/red/{NAME}/" in cmd:
                found.append(f"process {proc.name}: {cmd[:120]}")
    return found


@pytest.fixture(scope="module")
def real_cluster() -> Iterator[KubeCluster]:
    # The audit log shows who made each request: the test checks that the engine in the head pod writes
    # its report as the Federation's ServiceAccount.
    cluster = cluster_up(NAME, real_nodes=2, timeout_s=1800, env={"RED_CLUSTER_AUDIT": "1"})
    try:
        yield cluster
    finally:
        cluster.down()
    left = leftovers(cluster.state_dir)
    assert not left, f"left behind by e2e/cluster down: {left}"
