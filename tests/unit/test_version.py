"""One version: red/_version.py. Everything else is derived from it or checked against it here."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import pytest
import yaml

import red
from red._version import __version__
from red.spec.model import ENGINE_IMAGE, ClusterSpec
from tests.helpers import ROOT


def test_package_version_is_read_from_red_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"], "pyproject.toml must not repeat the version"
    assert "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "red._version.__version__"}
    assert red.__version__ == __version__


def test_default_engine_image_is_tagged_with_the_version() -> None:
    # The spec names none by default: the operator's engine_image setting (chart value engine.image) serves.
    assert ClusterSpec().image is None
    assert ENGINE_IMAGE.endswith(":" + __version__)


def test_chart_app_version_is_the_version() -> None:
    chart = yaml.safe_load((ROOT / "charts" / "red-operator" / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__, "set appVersion in charts/red-operator/Chart.yaml"


def test_dockerfile_arg_is_the_version() -> None:
    m = re.search(r"^ARG RED_VERSION=(\S+)$", (ROOT / "Dockerfile").read_text(), flags=re.M)
    assert m and m.group(1) == __version__, "set ARG RED_VERSION in the Dockerfile"


@pytest.mark.parametrize("command", [["red.cli"], ["red_operator.main"]])
def test_version_flag(command: list[str]) -> None:
    res = subprocess.run([sys.executable, "-m", *command, "--version"], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip().endswith(" " + __version__)
