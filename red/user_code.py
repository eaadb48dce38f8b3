"""The user's own code, shipped with `spec.runtimeEnv`: import it, then find the names the spec gives.

On Kubernetes, Ray fetches `workingDir`/`pyModules` and installs `pip` before the engine's driver starts,
so the driver only has to import `imports` (each module registers its tasks, algorithms or schemas on
import) and check that every name the spec gives is now known. The operator cannot check such names (it
never sees the code), so this is where an unknown one fails, with the fix in the message.

`red run` ships local directories instead: `for_red_run` puts them on this process's path (the driver
imports them too) and hands them to `ray.init`, which uploads them for the actors.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

from red.errors import SpecError
from red.spec.model import FederationSpec
from red.spec.runtime_env import RuntimeEnvSpec, uri_scheme


def _shipped(rt: RuntimeEnvSpec) -> str:
    parts = [
        f"workingDir {rt.working_dir}" if rt.working_dir else "",
        f"pyModules {', '.join(rt.py_modules)}" if rt.py_modules else "",
        f"pip {', '.join(rt.pip)}" if rt.pip else "",
        f"imports {', '.join(rt.imports)}" if rt.imports else "",
    ]
    return "; ".join(p for p in parts if p) or "nothing"


def import_modules(rt: RuntimeEnvSpec) -> None:
    """Import `spec.runtimeEnv.imports`, in order. A module that fails is a SpecError naming it."""
    for i, module in enumerate(rt.imports):
        try:
            importlib.import_module(module)
        except Exception as err:  # user code: anything may go wrong on import
            raise SpecError(
                f"spec.runtimeEnv.imports[{i}]: cannot import {module!r} ({type(err).__name__}: {err}); the job "
                f"ships {_shipped(rt)}: check the module's name and that the archive holds it at its top level"
            ) from None


def load(spec: FederationSpec) -> None:
    """Import the shipped modules, then require every schema, algorithm and task name to be registered."""
    import_modules(spec.runtime_env)
    problems = spec.unknown_names()
    if not problems:
        return
    fix = (
        f" The job ships {_shipped(spec.runtime_env)}, and none of it registered the name: list the module that "
        "calls @red.tasks.register (or red.algorithms / red.schemas) in spec.runtimeEnv.imports."
        if spec.runtime_env.ships_code
        else ""
    )
    raise SpecError("; ".join(problems) + "." + fix, [p + fix for p in problems])


def local_source(path: str, base: Path, field: str, *, folder: bool = False) -> Path:
    """A local `workingDir` or `pyModules` entry as an absolute path (relative ones are read from `base`).
    The one resolver of shipped code: `red run` (for_red_run) and `red submit` (red.jobs.for_submit)."""
    resolved = (base / path).resolve()
    if not resolved.exists():
        raise SpecError(f"{field}: {path}: no such file or folder (read from {base}); name the folder with your code")
    if folder and not resolved.is_dir():
        raise SpecError(f"{field}: {path} is a file; name the folder with your code")
    return resolved


def for_red_run(rt: RuntimeEnvSpec, *, base: Path | None = None) -> dict[str, Any]:
    """Ray's runtime_env for `red run`: local paths made absolute (relative ones are read from `base`, the
    current directory by default) and put on this process's path, so the driver imports them too; the
    env_vars are set in this process as well (the driver), as Ray sets them for a cluster job's driver.

    Remote URIs are refused: Ray would fetch them for the actors, but the driver, which looks the names
    up, runs here and could not import them."""
    remote = [p for p in [rt.working_dir, *rt.py_modules] if p and uri_scheme(p) is not None]
    if remote:
        raise SpecError(
            f"spec.runtimeEnv: {', '.join(remote)} is a URI, which `red run` cannot import in its own process; "
            "give a local directory (Ray uploads it), or run the file on a cluster (kubectl apply)"
        )
    out = rt.ray_runtime_env()
    root = base or Path.cwd()
    if rt.working_dir:
        wd = local_source(rt.working_dir, root, "spec.runtimeEnv.workingDir", folder=True)
        out["working_dir"] = str(wd)
        _on_path(wd)
    modules = []
    for i, m in enumerate(rt.py_modules):
        p = local_source(m, root, f"spec.runtimeEnv.pyModules[{i}]")
        modules.append(str(p))
        # A package directory is imported by its name: its parent goes on the path.
        _on_path(p.parent if p.is_dir() else p)
    if modules:
        out["py_modules"] = modules
    # On a cluster the job's driver gets env_vars too: so does this process, which is `red run`'s driver.
    os.environ.update(rt.env_vars)
    return out


def _on_path(p: Path) -> None:
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
