"""spec.runtimeEnv and the pod-shaping fields: what is refused at the edge, and with which fix."""

from __future__ import annotations

from typing import Any

import pytest

from red.cli import main
from red.errors import SpecError
from red.spec import spec_from_dict
from red.spec.pods import memory_bytes
from tests.helpers import EXAMPLES, fed_dict, write_yaml

POOL = {"name": "gpu"}


def head(**shape: Any) -> dict[str, Any]:
    return {"cluster": {"head": shape}}


def pool(**shape: Any) -> dict[str, Any]:
    return {"cluster": {"nodePools": [{**POOL, **shape}]}}


def rt(**fields: Any) -> dict[str, Any]:
    return {"runtimeEnv": fields}


BAD: list[tuple[str, dict[str, Any], str]] = [
    # runtimeEnv
    ("ftp working dir", rt(workingDir="ftp://host/code.zip"), "Ray cannot fetch ftp:// URIs"),
    ("working dir not an archive", rt(workingDir="https://host/code"), "must name an archive ending in .zip"),
    ("wheel as working dir", rt(workingDir="https://host/x.whl"), "must name an archive ending in .zip"),
    ("py module not an archive", rt(pyModules=["s3://b/pkg"]), "spec.runtimeEnv.pyModules: [0] 's3://b/pkg' must name"),
    ("reserved RAY_ env", rt(envVars={"RAY_ADDRESS": "x"}), "RAY_*, RED_* and KUBECONFIG are set by Ray and Red"),
    ("reserved RED_ env", rt(envVars={"RED_FEDERATION": "{}"}), "RED_FEDERATION: RAY_*, RED_*"),
    ("KUBECONFIG", rt(envVars={"KUBECONFIG": "/x"}), "KUBECONFIG: RAY_*"),
    ("env name with a dash", rt(envVars={"MY-VAR": "1"}), "letters, digits and '_'"),
    ("pip option", rt(pip=["--index-url=http://evil"]), "pip options and requirement files are not supported"),
    ("requirement file", rt(pip=["-r requirements.txt"]), "pip options"),
    (
        "import not a module name",
        rt(imports=["my-task"]),
        "spec.runtimeEnv.imports: 'my-task': list importable module names",
    ),
    ("unknown runtimeEnv field", rt(workdir="x"), "unknown field; did you mean 'workingDir'?"),
    # pod shaping
    ("mount of an undeclared volume", pool(volumeMounts=[{"name": "data", "mountPath": "/d"}]), "not among this pod"),
    (
        "volume named like Red's shm",
        head(volumes=[{"name": "dshm", "emptyDir": {}}]),
        "'dshm' and names starting with 'red-' are Red's own volumes",
    ),
    ("volume without a source", pool(volumes=[{"name": "data"}]), "needs exactly one source"),
    (
        "volume with two sources",
        pool(volumes=[{"name": "data", "emptyDir": {}, "secret": {"secretName": "s"}}]),
        "needs exactly one source",
    ),
    (
        "misspelt volume source",
        pool(volumes=[{"name": "data", "persistentVolumeClaims": {"claimName": "c"}}]),
        "did you mean 'persistentVolumeClaim'?",
    ),
    (
        "volume name not a DNS label",
        pool(volumes=[{"name": "Data", "emptyDir": {}}]),
        "volumes[0].name: 'Data': a volume name is a DNS label",
    ),
    ("duplicate volume", pool(volumes=[{"name": "d", "emptyDir": {}}] * 2), "each volume name may appear once"),
    ("KubeRay's env", head(env=[{"name": "RAY_ADDRESS", "value": "x"}]), "set by KubeRay or Red on the Ray pods"),
    ("Red's env", pool(env=[{"name": "RED_NAMESPACE", "value": "x"}]), "RED_NAMESPACE: set by KubeRay or Red"),
    ("Red's label", head(labels={"red.dev/federation": "x"}), "are set by Red and KubeRay to find their pods"),
    ("KubeRay's label", pool(labels={"ray.io/node-type": "x"}), "to find their pods"),
    ("bad label key", head(labels={"team name": "a"}), "a label key's name is at most 63"),
    ("bad label value", head(labels={"team": "a b"}), "label values are at most 63"),
    ("Red's annotation", head(annotations={"red.dev/x": "1"}), "belong to Red and KubeRay"),
    ("envFrom with no source", pool(envFrom=[{"prefix": "S3_"}]), "exactly one of configMapRef or secretRef"),
    ("bad memory", head(memory="lots"), "'lots' is not a Kubernetes quantity"),
    ("object store above memory", head(memory="2Gi", objectStoreMemory="3Gi"), "must be below the pod's memory"),
    (
        "two Kueue queues",
        {
            "cluster": {
                "head": {"labels": {"kueue.x-k8s.io/queue-name": "a"}},
                "nodePools": [{**POOL, "labels": {"kueue.x-k8s.io/queue-name": "b"}}],
            }
        },
        "different Kueue queues (a, b)",
    ),
    ("affinity typo", head(affinity={"nodeAfinity": {}}), "did you mean 'nodeAffinity'?"),
    ("service account annotation key", {"cluster": {"serviceAccount": {"annotations": {"a b": "x"}}}}, "a b"),
]


@pytest.mark.parametrize(("what", "patch", "expect"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_names_the_fix(what: str, patch: dict[str, Any], expect: str) -> None:
    with pytest.raises(SpecError) as err:
        spec_from_dict(patch)
    assert expect in str(err.value), f"{what}: {err.value}"


GOOD: list[tuple[str, dict[str, Any]]] = [
    ("https zip", rt(workingDir="https://example.com/code.zip?token=x", imports=["my_task"])),
    ("s3 tarball and wheel", rt(pyModules=["s3://b/pkg.tar.gz", "gs://b/pkg-1.0-py3-none-any.whl"])),
    ("local dir for red run", rt(workingDir="./src", pyModules=["./my_pkg"])),
    ("Ray knob in pod env", head(env=[{"name": "RAY_memory_monitor_refresh_ms", "value": "0"}])),
    (
        "a PVC mounted and a secret as env",
        pool(
            volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}],
            volumeMounts=[{"name": "data", "mountPath": "/data", "readOnly": True}],
            envFrom=[{"secretRef": {"name": "s3-credentials"}}],
            env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        ),
    ),
    ("mount of Red's shm elsewhere", head(volumeMounts=[{"name": "dshm", "mountPath": "/shm2"}])),
    (
        "one Kueue queue everywhere",
        {
            "cluster": {
                "head": {"labels": {"kueue.x-k8s.io/queue-name": "team-a"}},
                "nodePools": [{**POOL, "labels": {"kueue.x-k8s.io/queue-name": "team-a"}}],
            }
        },
    ),
]


@pytest.mark.parametrize(("what", "patch"), GOOD, ids=[g[0] for g in GOOD])
def test_good_input_is_accepted(what: str, patch: dict[str, Any]) -> None:
    spec_from_dict(patch)


def test_shipped_code_makes_unknown_names_the_clusters_business() -> None:
    unknown = {"task": {"name": "only-in-the-zip"}, "algorithm": {"name": "also-there"}}
    with pytest.raises(SpecError, match="unknown task 'only-in-the-zip'"):
        spec_from_dict(unknown, check_registry=True)
    s = spec_from_dict({**unknown, **rt(workingDir="https://h/code.zip", imports=["my_task"])}, check_registry=True)
    assert s.runtime_env.ships_code
    assert s.unknown_names() == [
        "spec.algorithm.name: unknown algorithm 'also-there'; use one of fedavg, fedbuff, fedprox, median, "
        "trimmed-mean",
        "spec.task.name: unknown task 'only-in-the-zip'; use one of digits",
    ]


def test_ray_runtime_env_leaves_out_what_is_empty() -> None:
    s = spec_from_dict(rt(workingDir="https://h/c.zip", pip=["scikit-learn>=1.4"], envVars={"A": "1"}, imports=["m"]))
    assert s.runtime_env.ray_runtime_env() == {
        "working_dir": "https://h/c.zip",
        "pip": ["scikit-learn>=1.4"],
        "env_vars": {"A": "1"},
    }
    assert spec_from_dict({}).runtime_env.ray_runtime_env() == {}


@pytest.mark.parametrize(
    ("quantity", "expect"),
    [("16Gi", 16 * 2**30), ("512Mi", 512 * 2**20), ("1G", 10**9), ("1e9", 10**9), ("1.5Gi", 3 * 2**29), ("100", 100)],
)
def test_memory_quantities(quantity: str, expect: int) -> None:
    assert memory_bytes(quantity) == expect


def test_red_validate_says_the_fix(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_yaml(
        tmp_path / "bad.yaml",
        fed_dict(runtimeEnv={"envVars": {"RAY_ADDRESS": "x"}}, cluster={"head": {"volumes": [{"name": "x"}]}}),
    )
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "spec.runtimeEnv.envVars: RAY_ADDRESS: RAY_*, RED_* and KUBECONFIG are set by Ray and Red" in err
    assert "volume 'x' needs exactly one source" in err


def test_the_kubernetes_example_is_valid(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLES / "kubernetes" / "own-code.yaml")]) == 0
    assert "valid Federation 'own-code'" in capsys.readouterr().out
