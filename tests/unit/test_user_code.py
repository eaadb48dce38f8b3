"""Shipped code: imported before names are looked up, and a clear error when it does not register them."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from red import registry, user_code
from red.errors import SpecError
from red.spec import spec_from_dict

TASK_MODULE = """
import red.tasks
from red.tasks.digits import DigitsTask


@red.tasks.register("{name}")
class ShippedDigits(DigitsTask):
    pass
"""


@pytest.fixture
def shipped(tmp_path: Path) -> Iterator[Path]:
    """A directory holding module `shipped_task_<n>` that registers task `shipped-<n>`; all undone after."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "shipped_task_a.py").write_text(TASK_MODULE.format(name="shipped-a"))
    (src / "broken_task.py").write_text("raise RuntimeError('boom at import')\n")
    path_before = list(sys.path)
    try:
        yield src
    finally:
        sys.path[:] = path_before
        for mod in ("shipped_task_a", "broken_task"):
            sys.modules.pop(mod, None)
        registry.tasks._objects.pop("shipped-a", None)


def test_imports_register_the_name_before_it_is_looked_up(shipped: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = spec_from_dict(
        {"task": {"name": "shipped-a"}, "runtimeEnv": {"workingDir": "https://h/c.zip", "imports": ["shipped_task_a"]}},
        check_registry=True,
    )
    assert "shipped-a" not in registry.tasks
    monkeypatch.syspath_prepend(str(shipped))  # what Ray does with the unpacked working_dir
    user_code.load(s)
    assert registry.tasks.get("shipped-a").__name__ == "ShippedDigits"


def test_a_name_the_shipped_code_does_not_register_fails_naming_the_fix(
    shipped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(shipped))
    s = spec_from_dict(
        {"task": {"name": "shipped-b"}, "runtimeEnv": {"workingDir": "https://h/c.zip", "imports": ["shipped_task_a"]}},
        check_registry=True,
    )
    with pytest.raises(SpecError) as err:
        user_code.load(s)
    msg = str(err.value)
    assert "spec.task.name: unknown task 'shipped-b'" in msg
    assert "The job ships workingDir https://h/c.zip; imports shipped_task_a, and none of it registered" in msg
    assert "list the module that calls @red.tasks.register" in msg


@pytest.mark.parametrize(
    ("module", "expect"),
    [
        ("no_such_module", "spec.runtimeEnv.imports[0]: cannot import 'no_such_module' (ModuleNotFoundError"),
        ("broken_task", "cannot import 'broken_task' (RuntimeError: boom at import)"),
    ],
)
def test_an_import_that_fails_names_the_module(
    shipped: Path, monkeypatch: pytest.MonkeyPatch, module: str, expect: str
) -> None:
    monkeypatch.syspath_prepend(str(shipped))
    s = spec_from_dict({"runtimeEnv": {"imports": [module]}})
    with pytest.raises(SpecError, match="cannot import") as err:
        user_code.load(s)
    assert expect in str(err.value)


def test_red_run_ships_local_directories_and_imports_them_here(
    shipped: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = spec_from_dict({"runtimeEnv": {"workingDir": "src", "envVars": {"SHIPPED_VAR": "1"}}}).runtime_env
    monkeypatch.setenv("SHIPPED_VAR", "before")  # so that monkeypatch removes it after the test
    env = user_code.for_red_run(rt, base=shipped.parent)
    assert env == {"working_dir": str(shipped), "env_vars": {"SHIPPED_VAR": "1"}}
    assert sys.path[0] == str(shipped)
    assert os.environ["SHIPPED_VAR"] == "1"  # the driver's own environment, as on a cluster


@pytest.mark.parametrize(
    ("runtime_env", "expect"),
    [
        ({"workingDir": "https://h/c.zip"}, "https://h/c.zip is a URI, which `red run` cannot import"),
        ({"workingDir": "missing"}, "spec.runtimeEnv.workingDir:"),
        ({"pyModules": ["missing_pkg"]}, "spec.runtimeEnv.pyModules[0]:"),
    ],
)
def test_red_run_refuses_what_it_cannot_ship(tmp_path: Path, runtime_env: dict[str, object], expect: str) -> None:
    rt = spec_from_dict({"runtimeEnv": runtime_env}).runtime_env
    with pytest.raises(SpecError) as err:
        user_code.for_red_run(rt, base=tmp_path)
    assert expect in str(err.value)
