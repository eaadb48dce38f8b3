"""Custom schemas, algorithms and tasks: by decorator, and by entry point of an installed package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from red.registry import Registry
from red.spec import federation_from_dict
from tests.helpers import ROOT, fed_dict


def test_decorator_makes_a_name_valid_in_yaml() -> None:
    import red.schemas
    from red.schemas.star import StarFederatedLearning

    with pytest.raises(Exception, match="unknown schema 'my-star'"):
        federation_from_dict(fed_dict(schema="my-star"))

    @red.schemas.register("my-star")
    class MyStar(StarFederatedLearning):
        pass

    try:
        assert federation_from_dict(fed_dict(schema="my-star")).spec.schema_ == "my-star"
        assert red.schemas.schemas.get("my-star") is MyStar
    finally:
        red.schemas.schemas._objects.pop("my-star", None)


def test_entry_point_of_an_installed_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real (minimal) installed distribution on sys.path: importlib.metadata reads its entry points.
    pkg = tmp_path / "redplugin_demo.py"
    pkg.write_text("class Fancy:\n    name = 'fancy'\n")
    dist = tmp_path / "redplugin_demo-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: redplugin-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[red.algorithms]\nfancy = redplugin_demo:Fancy\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    reg: Registry[object] = Registry("algorithm", "red.algorithms", {"fedavg": "red.algorithms.builtin:FedAvg"})
    assert "fancy" in reg.names()
    assert reg.get("fancy").__name__ == "Fancy"  # type: ignore[attr-defined]
    sys.modules.pop("redplugin_demo", None)


def _lookup(tmp_path: Path, imports: str, name: str) -> subprocess.CompletedProcess[str]:
    code = f"from red.registry import tasks; print(tasks.get({name!r}).__name__)"
    env = {**os.environ, "RED_IMPORTS": imports, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)


def test_red_imports_makes_a_self_registering_task_known_by_name(tmp_path: Path) -> None:
    # A fresh process: what the engine does when a job's environment names the modules.
    (tmp_path / "shipped_tasks.py").write_text(
        "import red.tasks\n\n@red.tasks.register('shipped')\nclass Shipped:\n    pass\n"
    )
    res = _lookup(tmp_path, "shipped_tasks", "shipped")
    assert res.returncode == 0 and res.stdout.strip() == "Shipped", res.stderr
    res = _lookup(tmp_path, "", "shipped")
    assert res.returncode != 0 and "unknown task 'shipped'" in res.stderr


def test_red_imports_names_the_module_that_cannot_be_imported(tmp_path: Path) -> None:
    (tmp_path / "broken_tasks.py").write_text("import not_installed_anywhere\n")
    res = _lookup(tmp_path, "broken_tasks", "digits-x")
    assert res.returncode != 0
    assert "cannot import 'broken_tasks' (named in RED_IMPORTS): ModuleNotFoundError" in res.stderr
