"""The CRD on a real kube-apiserver: `kubectl apply` rejects bad input with the schema's or CEL's message."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fixtures.cluster import KubeCluster
from tests.operator.e2e_helpers import REPO, apply, federation

pytestmark = pytest.mark.cluster


def spec_with(**over: Any) -> dict[str, Any]:
    return federation("bad", **over)


def with_pool(**pool: Any) -> dict[str, Any]:
    return spec_with(cluster={"nodePools": [{"name": "gpu", **pool}]})


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("minClients above clients", spec_with(clients=3, minClients=5), "spec.minClients must be <= spec.clients"),
    (
        "zero clients",
        spec_with(clients=0),
        "spec.clients: Invalid value: 0: spec.clients in body should be greater than or equal to 1",
    ),
    ("misspelt field", spec_with(clientz=3), 'unknown field "spec.clientz"'),
    ("empty schema", spec_with(schema=""), "spec.schema in body should be at least 1 chars long"),
    ("sampleFraction above 1", spec_with(sampleFraction=1.5), "should be less than or equal to 1"),
    (
        "wrong type",
        spec_with(rounds="ten"),
        'spec.rounds: Invalid value: "string": spec.rounds in body must be of type integer',
    ),
    (
        "placement strategy not an enum value",
        spec_with(resources={"placementStrategy": "RANDOM"}),
        'Unsupported value: "RANDOM"',
    ),
    ("k-regular without degree", spec_with(schema="k-regular"), "schema 'k-regular' needs spec.topology.degree"),
    (
        "impossible k-regular",
        spec_with(schema="k-regular", clients=5, topology={"degree": 3}),
        "spec.topology.degree is impossible",
    ),
    ("custom without edges", spec_with(schema="custom"), "schema 'custom' needs spec.topology.edges"),
    (
        "edge of three nodes",
        spec_with(schema="custom", topology={"edges": [["client_0", "client_1", "client_2"]]}),
        "must have at most 2 items",
    ),
    ("fractional GPUs above 1", spec_with(resources={"perNode": {"gpu": 1.5}}), "above 1 must be a whole number"),
    (
        "checkpoint claim and path",
        spec_with(checkpoint={"persistentVolumeClaim": "ckpt", "path": "/x"}),
        "spec.checkpoint.path: leave it unset with persistentVolumeClaim",
    ),
    (
        "checkpoint endpoint without s3",
        spec_with(checkpoint={"path": "/x", "endpointUrl": "http://minio:9000"}),
        "spec.checkpoint.endpointUrl is for object storage",
    ),
    (
        "checkpoint credentials without object storage",
        spec_with(checkpoint={"credentialsSecret": "creds"}),
        "spec.checkpoint.credentialsSecret is for object storage",
    ),
    (
        "node pool name not a DNS label",
        with_pool(name="GPU_Pool"),
        "spec.cluster.nodePools[0].name in body should match",
    ),
    (
        "negative backoffLimit",
        spec_with(backoffLimit=-1),
        "spec.backoffLimit in body should be greater than or equal to 0",
    ),
    ("name too long", {**spec_with(), "metadata": {"name": "x" * 41}}, "metadata.name must be at most 40 characters"),
    ("stall timeout too short", spec_with(stallTimeoutSeconds=1), "should be greater than or equal to 10"),
    # The same limits as the model's, checked before any cluster exists (issue 11, item 10)
    ("name with a dot", {**spec_with(), "metadata": {"name": "a.b"}}, "metadata.name must be a DNS label"),
    ("negative seed", spec_with(seed=-1), "spec.seed in body should be greater than or equal to 0"),
    (
        "self-loop",
        spec_with(schema="custom", clients=2, topology={"edges": [["client_0", "client_1"], ["client_1", "client_1"]]}),
        "spec.topology.edges holds a self-loop",
    ),
    (
        "unbounded edge list",
        spec_with(schema="custom", clients=2, topology={"edges": [["client_0", "client_1"]] * 20_001}),
        "must have at most 20000 items",
    ),
    # Used to pass the edge and then hang the Federation (issue 11, item 9).
    (
        "empty existingCluster",
        spec_with(cluster={"existingCluster": ""}),
        "spec.cluster.existingCluster in body should be at least 1 chars long",
    ),
    (
        "existingCluster not a DNS name",
        spec_with(cluster={"existingCluster": "Shared_Cluster"}),
        "spec.cluster.existingCluster in body should match",
    ),
    # spec.runtimeEnv and pod shaping (issue 10, items 1 and 2)
    (
        "local working dir",
        spec_with(runtimeEnv={"workingDir": "./src"}),
        "spec.runtimeEnv.workingDir must be an archive URI the cluster can fetch",
    ),
    (
        "py module not an archive",
        spec_with(runtimeEnv={"pyModules": ["https://h/pkg"]}),
        "spec.runtimeEnv.pyModules must be archive or wheel URIs",
    ),
    (
        "reserved job env",
        spec_with(runtimeEnv={"envVars": {"RAY_ADDRESS": "x"}}),
        "spec.runtimeEnv.envVars may not set RAY_*, RED_* or KUBECONFIG",
    ),
    (
        "import not a module",
        spec_with(runtimeEnv={"imports": ["a/b.py"]}),
        "spec.runtimeEnv.imports[0] in body should match",
    ),
    (
        "mount of an undeclared volume",
        with_pool(volumeMounts=[{"name": "data", "mountPath": "/data"}]),
        "spec.cluster.nodePools[].volumeMounts names a volume that is not among its volumes",
    ),
    (
        "Red's volume name",
        spec_with(cluster={"head": {"volumes": [{"name": "dshm", "emptyDir": {}}]}}),
        "'dshm' and names starting with 'red-' are Red's own volumes",
    ),
    (
        "volume with two sources",
        with_pool(volumes=[{"name": "d", "emptyDir": {}, "secret": {"secretName": "s"}}]),
        "a volume needs exactly one source",
    ),
    (
        "misspelt volume source",
        with_pool(volumes=[{"name": "d", "persistentVolumeClaims": {"claimName": "c"}}]),
        'unknown field "spec.cluster.nodePools[0].volumes[0].persistentVolumeClaims"',
    ),
    (
        "reserved label",
        spec_with(cluster={"head": {"labels": {"ray.io/node-type": "x"}}}),
        "spec.cluster.head.labels: keys under red.dev/, ray.io/, app.kubernetes.io/ are set by Red and KubeRay",
    ),
    (
        "KubeRay's env",
        with_pool(env=[{"name": "RAY_AUTH_TOKEN", "value": "x"}]),
        "spec.cluster.nodePools[].env sets a variable KubeRay or Red sets on the Ray pods",
    ),
    (
        "two Kueue queues",
        spec_with(
            cluster={
                "head": {"labels": {"kueue.x-k8s.io/queue-name": "a"}},
                "nodePools": [{"name": "gpu", "labels": {"kueue.x-k8s.io/queue-name": "b"}}],
            }
        ),
        "the head and node pools name different Kueue queues",
    ),
]


@pytest.mark.parametrize(("what", "obj", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_rejected(
    kube_cluster: KubeCluster, kube_namespace: str, federation_crd: str, what: str, obj: dict[str, Any], message: str
) -> None:
    proc = apply(kube_cluster, kube_namespace, obj, check=False)
    assert proc.returncode != 0, f"{what}: accepted\n{proc.stdout}"
    assert message in proc.stderr, f"{what}: {proc.stderr}"


def test_good_input_is_accepted(kube_cluster: KubeCluster, kube_namespace: str, federation_crd: str) -> None:
    apply(kube_cluster, kube_namespace, federation("good", clients=4, minClients=2))
    kube_cluster.kubectl("delete", "federation", "good", "-n", kube_namespace, "--wait=false")
    # The example file is valid too (nobody reconciles here: no operator runs in this test).
    kube_cluster.kubectl(
        "apply", "-n", kube_namespace, "-f", str(REPO / "examples" / "digits-star.yaml"), "--dry-run=server"
    )


@pytest.mark.parametrize("path", sorted((REPO / "examples").rglob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_accepted(
    kube_cluster: KubeCluster, kube_namespace: str, federation_crd: str, path: Any
) -> None:
    kube_cluster.kubectl("apply", "-n", kube_namespace, "-f", str(path), "--dry-run=server")


def test_fields_are_frozen_while_running(kube_cluster: KubeCluster, kube_namespace: str, federation_crd: str) -> None:
    ns = kube_namespace
    apply(kube_cluster, ns, federation("frozen", clients=4))
    status = json.dumps({"status": {"phase": "Running"}})
    kube_cluster.kubectl(
        "patch", "federation", "frozen", "-n", ns, "--subresource=status", "--type=merge", "-p", status
    )
    proc = kube_cluster.kubectl(
        "patch", "federation", "frozen", "-n", ns, "--type=merge", "-p", '{"spec":{"clients":5}}', check=False
    )
    assert proc.returncode != 0
    assert "spec.clients cannot change while the federation is running" in proc.stderr, proc.stderr
    # What the running engine was started with is frozen too: task, algorithm, seed, checkpoint.
    for field, value in (
        ("task", {"name": "digits", "params": {"lr": 0.5}}),
        ("algorithm", {"name": "median"}),
        ("seed", 7),
        ("checkpoint", {"path": "/tmp/x"}),
    ):
        patch = json.dumps({"spec": {field: value}})
        proc = kube_cluster.kubectl("patch", "federation", "frozen", "-n", ns, "--type=merge", "-p", patch, check=False)
        assert proc.returncode != 0, field
        assert f"spec.{field} cannot change while the federation is running" in proc.stderr, proc.stderr
    # What may change while running still can (suspend, the TTL) ...
    kube_cluster.kubectl("patch", "federation", "frozen", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    # ... and once finished, everything can.
    done = json.dumps({"status": {"phase": "Succeeded"}})
    kube_cluster.kubectl("patch", "federation", "frozen", "-n", ns, "--subresource=status", "--type=merge", "-p", done)
    kube_cluster.kubectl("patch", "federation", "frozen", "-n", ns, "--type=merge", "-p", '{"spec":{"clients":5}}')
