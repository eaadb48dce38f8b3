"""Real nodes for the e2e harness: a kubelet, containerd + runc, CNI, kube-proxy and CoreDNS per node.

Used by `e2e/cluster` when RED_REAL_NODES is set (see e2e/README.md, "Real nodes"). Each node runs
inside a network namespace made here (`red-<k>-<i>`), joined to a host bridge (`redbr<k>`) that carries
no route off the machine: the namespaces have no default route, the host does not forward, and
nothing is NATed. The control plane stays on 127.0.0.1; a socat forwarder on the bridge address lets
the nodes and the pods (through the `kubernetes` Service) reach the API server.

Processes join only the node's network namespace (nsenter --net), not a mount namespace of their own:
the kubelet's volume mounts must be visible to containerd, and `down` can then see and remove every
mount they leave. Everything made is recorded in <state>/realnodes.json, so `down` undoes it even
when RED_REAL_NODES is no longer set.

Only the standard library is used.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

# The GPU pool's shape on the real GPU node: like the kwok GPU nodes (e2e/manifests/nodes.yaml).
GPU_LABELS = {
    "nvidia.com/gpu.present": "true",
    "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3",
    "red.dev/pool": "gpu",
}
GPU_TAINT = "nvidia.com/gpu=present:NoSchedule"
GPU_COUNT = int(os.environ.get("RED_REAL_NODE_GPUS", "4"))
CLUSTER_DOMAIN = "cluster.local"
SERVICE_CIDR = "10.96.0.0/16"
CNI_BIN = "/usr/lib/cni"
APT_PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "socat": "socat",
    "iptables": "iptables",
    "conntrack": "conntrack",
    CNI_BIN + "/bridge": "containernetworking-plugins",
}


@dataclass(frozen=True)
class Node:
    name: str
    netns: str
    ip: str  # on the host bridge
    pod_cidr: str
    gpu: bool


@dataclass(frozen=True)
class Plan:
    """Every name and address of one cluster's real nodes, derived from the cluster name alone."""

    bridge: str
    host_ip: str
    prefix: int
    nodes: tuple[Node, ...]

    @property
    def cluster_cidr(self) -> str:
        first = self.nodes[0].pod_cidr.split(".")
        return f"{first[0]}.{first[1]}.0.0/16"


def plan(cluster: str, count: int) -> Plan:
    """Addresses for `count` nodes (1: a CPU node; 2: a CPU and a GPU node) of cluster `cluster`.

    k (0..63) comes from the name, so clusters with different names get different bridges and
    subnets: link 172.31.k.0/24 (host .1, node i .10+i) and pods 10.(128+k).i.0/24.
    """
    if count not in (1, 2):
        raise ValueError(f"RED_REAL_NODES must be 1 or 2, not {count}")
    k = zlib.crc32(cluster.encode()) % 64
    nodes = []
    for i in range(count):
        gpu = i == 1
        nodes.append(
            Node(
                name=f"real-{'gpu' if gpu else 'cpu'}-0",
                netns=f"red-{k}-{i}",
                ip=f"172.31.{k}.{10 + i}",
                pod_cidr=f"10.{128 + k}.{i}.0/24",
                gpu=gpu,
            )
        )
    return Plan(bridge=f"redbr{k}", host_ip=f"172.31.{k}.1", prefix=24, nodes=tuple(nodes))


def run(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), check=check, capture_output=True, text=True, timeout=timeout)


def ensure_packages(log: Callable[[str], None]) -> None:
    """apt-get install what a real node needs and this machine lacks (a fresh machine has none)."""
    import shutil

    missing = sorted({pkg for tool, pkg in APT_PACKAGES.items() if not (shutil.which(tool) or Path(tool).exists())})
    if not missing:
        return
    log(f"installing {' '.join(missing)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing]
    if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        subprocess.run(cmd, env=env, check=True, capture_output=True)


# ---------------------------------------------------------------- network


def setup_network(p: Plan) -> None:
    run("ip", "link", "add", p.bridge, "type", "bridge")
    run("ip", "addr", "add", f"{p.host_ip}/{p.prefix}", "dev", p.bridge)
    run("ip", "link", "set", p.bridge, "up")
    for i, n in enumerate(p.nodes):
        run("ip", "netns", "add", n.netns)
        host_end = f"{p.bridge}n{i}"
        run("ip", "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns", n.netns)
        run("ip", "link", "set", host_end, "master", p.bridge, "up")
        ns = ("ip", "netns", "exec", n.netns)
        run(*ns, "ip", "link", "set", "lo", "up")
        run(*ns, "ip", "addr", "add", f"{n.ip}/{p.prefix}", "dev", "eth0")
        run(*ns, "ip", "link", "set", "eth0", "up")
        # Pods reach other nodes' pods through those nodes; the host replies to pods the same way.
        # No default route: nothing leaves the machine.
        for other in p.nodes:
            if other is not n:
                run(*ns, "ip", "route", "add", other.pod_cidr, "via", other.ip)
        run("ip", "route", "add", n.pod_cidr, "via", n.ip, "dev", p.bridge)
        run(*ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
        # A kubelet or kube-proxy wants these; they are per network namespace.
        run(*ns, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1", check=False)


def teardown_network(p: Plan) -> None:
    for i, n in enumerate(p.nodes):
        # The veth pair first, by its host end: deleting a namespace frees its interfaces only when
        # the kernel gets round to it (CI once saw the host end still listed after `down`), while
        # deleting a link is done when the command returns.
        run("ip", "link", "delete", f"{p.bridge}n{i}", check=False)
        # Deleting the namespace also drops its routes and the iptables rules that the kubelet,
        # kube-proxy and the CNI plugins made in it.
        run("ip", "netns", "delete", n.netns, check=False)
    run("ip", "link", "delete", p.bridge, check=False)


# ---------------------------------------------------------------- per-node files


def containerd_config(root: Path, state: Path, sock: Path, cni_conf: Path, pause_image: str) -> str:
    return f"""version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  # The kubelet asks for oom_score_adj -998 on sandboxes; lowering it needs CAP_SYS_RESOURCE, which
  # this VM does not grant, and runc then fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # The pods' network namespaces live under the state dir, not in /var/run/netns: `down` removes them
  # with everything else it mounted there, and `ip netns list` shows only what people made.
  netns_mounts_under_state_dir = true
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN}"
    conf_dir = "{cni_conf}"
"""


def cni_config(n: Node, ipam_dir: Path) -> str:
    conf = {
        "cniVersion": "1.0.0",
        "name": "red",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "cni0",
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": n.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    # Per node: two nodes on one machine must not share host-local's allocation files.
                    "dataDir": str(ipam_dir),
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    return json.dumps(conf, indent=2) + "\n"


def kubelet_config(n: Node, sock: Path, ca: Path, dns_ip: str, resolv: Path, cgroup_root: str, pod_logs: Path) -> str:
    conf = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cgroupDriver": "cgroupfs",
        # Our machines have cgroup v1 (hybrid); Kubernetes 1.31+ refuses it unless told.
        "failCgroupV1": False,
        "failSwapOn": False,
        # Its own cgroup subtree per node: a kubelet removes pod cgroups it does not know, and two
        # kubelets on one machine under the default /kubepods would kill each other's pods.
        "cgroupRoot": cgroup_root,
        "containerRuntimeEndpoint": f"unix://{sock}",
        "address": n.ip,
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "clusterDNS": [dns_ip],
        "clusterDomain": CLUSTER_DOMAIN,
        "resolvConf": str(resolv),
        # Per node: a kubelet removes the logs of pods it does not know.
        "podLogsDir": str(pod_logs),
        # The images were imported by hand and cannot be pulled again: never garbage-collect them,
        # and never evict for a full disk on a shared development machine.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "serializeImagePulls": False,
        "podPidsLimit": -1,
        "oomScoreAdj": 0,
        "registerNode": True,
    }
    return json.dumps(conf, indent=2) + "\n"


def kube_proxy_config(n: Node, kubeconfig: Path, cluster_cidr: str) -> str:
    conf = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "mode": "iptables",
        "clusterCIDR": cluster_cidr,
        "hostnameOverride": n.name,
        "bindAddress": n.ip,
        "healthzBindAddress": "127.0.0.1:10256",
        "metricsBindAddress": "127.0.0.1:10249",
        # 0: leave the machine-wide conntrack table size alone (a sysctl outside the namespace).
        "conntrack": {"maxPerCore": 0, "min": 0},
    }
    return json.dumps(conf, indent=2) + "\n"


def corefile(ip: str, kubeconfig: Path) -> str:
    # Only the cluster's names: with no route off the machine there is nothing to forward to.
    return f""".:53 {{
    bind {ip}
    errors
    health 127.0.0.1:8080
    ready 127.0.0.1:8181
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} red
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 30
}}
"""


def node_kubeconfig(admin_kubeconfig: Path, server: str, out: Path) -> Path:
    """The admin kubeconfig pointed at the bridge forwarder (a test harness: one identity for all)."""
    conf = json.loads(admin_kubeconfig.read_text())
    for c in conf["clusters"]:
        c["cluster"]["server"] = server
        c["name"] = "red"
    conf["contexts"] = [{"name": "red", "context": {"cluster": "red", "user": conf["users"][0]["name"]}}]
    conf["current-context"] = "red"
    out.write_text(json.dumps(conf, indent=2) + "\n")
    out.chmod(0o600)
    return out


def save_plan(state: Path, p: Plan, extra: dict[str, object]) -> None:
    (state / "realnodes.json").write_text(json.dumps({"plan": asdict(p), **extra}, indent=2) + "\n")


def load_plan(state: Path) -> tuple[Plan, dict[str, object]] | None:
    try:
        raw = json.loads((state / "realnodes.json").read_text())
    except (OSError, ValueError):
        return None
    d = raw.pop("plan")
    nodes = tuple(Node(**n) for n in d["nodes"])
    return Plan(bridge=d["bridge"], host_ip=d["host_ip"], prefix=d["prefix"], nodes=nodes), raw


def mounts_under(prefixes: list[str], mounts: str | None = None) -> list[str]:
    """Mount points (deepest first) at or below any of `prefixes`, from /proc/mounts (or `mounts`)."""
    found = []
    for line in (Path("/proc/mounts").read_text() if mounts is None else mounts).splitlines():
        mp = line.split()[1].replace("\\040", " ")
        if any(mp == p or mp.startswith(p.rstrip("/") + "/") for p in prefixes):
            found.append(mp)
    return sorted(set(found), key=lambda m: (-m.count("/"), m))


def unmount_all(prefixes: list[str], log: Callable[[str], None]) -> None:
    for _ in range(5):
        left = mounts_under(prefixes)
        if not left:
            return
        for mp in left:
            run("umount", mp, check=False)
        time.sleep(0.2)
    for mp in mounts_under(prefixes):
        log(f"lazy-unmounting {mp}")
        run("umount", "-l", mp, check=False)
