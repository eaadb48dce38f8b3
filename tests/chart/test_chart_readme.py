"""charts/red-operator/README.md is generated from values.yaml's helm-docs comments and is current."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from types import ModuleType

import yaml

from tests.chart.tools import CHART, REPO

SCRIPT = REPO / "scripts" / "chart_readme.py"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("chart_readme", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chart_readme_is_current() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_parser_reads_helm_docs_comments() -> None:
    text = """# File header, not a value's doc.

# -- The image.
image:
  # -- Its repository,
  # on two lines.
  repository: x
  tag: ""  # undocumented: not listed
# -- A map documented whole.
resources:
  limits:
    memory: 1Gi
plain: 1
"""
    assert _generator().documented_keys(text) == [
        ("image", "The image."),
        ("image.repository", "Its repository, on two lines."),
        ("resources", "A map documented whole."),
    ]


def test_every_documented_value_is_in_the_readme_with_its_default() -> None:
    readme = (CHART / "README.md").read_text()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key in ("rbac.createAggregateClusterRoles", "operator.logFormat", "metrics.serviceMonitor.honorLabels"):
        assert f"| `{key}` |" in readme
    assert values["rbac"]["createAggregateClusterRoles"] is True
    assert "| `rbac.createAggregateClusterRoles` | bool | `true` |" in readme
