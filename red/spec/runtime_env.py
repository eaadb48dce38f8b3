"""`spec.runtimeEnv`: the user's own code, packages and settings, handed to the Ray job.

It maps one to one onto Ray's `runtime_env` (working_dir, py_modules, pip, env_vars), plus `imports`:
modules the engine imports before it looks up the task, algorithm and schema names, so that code which
registers itself (`@red.tasks.register("my-task")`) is found by the name the YAML gives.

On Kubernetes the code must come from a URI the cluster can reach (`https://…/code.zip`, `s3://…`,
`gs://…`); a local directory works only with `red run` (Ray uploads it from the machine that runs it).
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import Field, field_validator

from red.spec.base import Model

# Ray's remote protocols for packages (ray._common.runtime_env_uri), and the archive formats its
# runtime_env accepts for each field (ray._common.runtime_env_package).
REMOTE_SCHEMES = ("https", "http", "s3", "gs", "azure", "abfss", "file")
WORKING_DIR_EXTENSIONS = (".zip", ".tar.gz", ".tgz", ".tar.xz")
PY_MODULES_EXTENSIONS = (".zip", ".whl", ".tar.gz", ".tgz", ".tar.xz")
# The job's environment carries Red's own settings (RED_FEDERATION, ...) and Ray's (RAY_*): a user value
# would silently replace them. Ray's knobs belong in the pods' env (spec.cluster.head.env, nodePools[].env).
RESERVED_JOB_ENV_PREFIXES = ("RAY_", "RED_")
RESERVED_JOB_ENV_NAMES = ("KUBECONFIG",)
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
MODULE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
MAX_URI_LENGTH = 2048
MAX_ITEMS = 64
MAX_ENV_VARS = 128
MAX_ENV_VALUE_LENGTH = 32_768
# One pattern for the model and the CRD's CEL rule (RE2 and Python agree on this subset).
REMOTE_URI_PATTERN = r"^(" + "|".join(REMOTE_SCHEMES) + r")://[^?#]+"
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

Uri = Annotated[str, Field(min_length=1, max_length=MAX_URI_LENGTH)]


def uri_scheme(value: str) -> str | None:
    """`https` for `https://host/x.zip`; None for a local path."""
    m = _SCHEME.match(value)
    return m.group(1).lower() if m else None


def _package_problem(value: str, extensions: tuple[str, ...]) -> str | None:
    """Why `value` cannot be fetched by Ray as a package, or None (local paths are `red run`'s business)."""
    scheme = uri_scheme(value)
    if scheme is None:
        return None
    if scheme not in REMOTE_SCHEMES:
        return (
            f"{value!r}: Ray cannot fetch {scheme}:// URIs; use one of "
            f"{', '.join(s + '://' for s in REMOTE_SCHEMES)} (or a local path with `red run`)"
        )
    path = re.split(r"[?#]", value, maxsplit=1)[0]
    if not path.endswith(extensions):
        return f"{value!r} must name an archive ending in {', '.join(extensions)}: Ray downloads and unpacks it"
    return None


class RuntimeEnvSpec(Model):
    """The user's code and settings for the Ray job: Ray's runtime_env, plus modules to import."""

    working_dir: Uri | None = Field(
        default=None,
        description="An archive of the job's working directory (https://…/code.zip, s3://…, gs://…), unpacked "
        "on every Ray node and put on the Python path. A local directory works with `red run` only.",
    )
    py_modules: list[Uri] = Field(
        default_factory=list,
        max_length=MAX_ITEMS,
        description="Python packages as archives or wheels (https://…/pkg.zip with the package folder inside, "
        "…/pkg.whl), put on the Python path of the job and every actor. Local paths: `red run` only.",
    )
    pip: list[Annotated[str, Field(min_length=1, max_length=512)]] = Field(
        default_factory=list,
        max_length=MAX_ITEMS * 2,
        description="Requirement specifiers Ray installs for the job (e.g. 'scikit-learn>=1.4'); the cluster "
        "must reach a package index.",
    )
    env_vars: dict[str, Annotated[str, Field(max_length=MAX_ENV_VALUE_LENGTH)]] = Field(
        default_factory=dict,
        max_length=MAX_ENV_VARS,
        description="Environment of the job and its actors. RAY_*, RED_* and KUBECONFIG are set by Ray and Red "
        "and are refused; Ray's own settings go in the pods' env (spec.cluster.head.env).",
    )
    imports: list[Annotated[str, Field(min_length=1, max_length=253, pattern=MODULE_PATTERN)]] = Field(
        default_factory=list,
        max_length=MAX_ITEMS,
        description="Modules the engine imports before it looks up spec.task, spec.algorithm and spec.schema "
        "by name: code that registers itself (@red.tasks.register) is found this way.",
    )

    @field_validator("imports", mode="before")
    @classmethod
    def _module_names(cls, v: Any) -> Any:
        # Before the pattern check, whose message would not say what a module name is.
        bad = [m for m in v if isinstance(m, str) and not re.match(MODULE_PATTERN, m)] if isinstance(v, list) else []
        if bad:
            raise ValueError(
                f"{', '.join(map(repr, bad))}: list importable module names, dotted (e.g. my_tasks or "
                "my_pkg.tasks), not files or paths"
            )
        return v

    @field_validator("working_dir")
    @classmethod
    def _working_dir(cls, v: str | None) -> str | None:
        problem = _package_problem(v, WORKING_DIR_EXTENSIONS) if v else None
        if problem:
            raise ValueError(problem)
        return v

    @field_validator("py_modules")
    @classmethod
    def _py_modules(cls, v: list[str]) -> list[str]:
        problems = [f"[{i}] {p}" for i, m in enumerate(v) if (p := _package_problem(m, PY_MODULES_EXTENSIONS))]
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @field_validator("pip")
    @classmethod
    def _pip(cls, v: list[str]) -> list[str]:
        for i, req in enumerate(v):
            if req.strip().startswith("-") or "\n" in req:
                raise ValueError(
                    f"[{i}] {req!r} is not a requirement: pip options and requirement files are not supported; "
                    "list specifiers such as 'scikit-learn>=1.4'"
                )
        return v

    @field_validator("env_vars")
    @classmethod
    def _env_vars(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not re.match(ENV_NAME_PATTERN, k)]
        if bad:
            raise ValueError(
                f"{', '.join(map(repr, bad))}: an environment variable name is letters, digits and '_', "
                "not starting with a digit"
            )
        reserved = [k for k in v if k.startswith(RESERVED_JOB_ENV_PREFIXES) or k in RESERVED_JOB_ENV_NAMES]
        if reserved:
            raise ValueError(
                f"{', '.join(reserved)}: RAY_*, RED_* and KUBECONFIG are set by Ray and Red for the job; remove "
                "them (Ray's own settings go in the pods' env: spec.cluster.head.env, nodePools[].env)"
            )
        return v

    @property
    def ships_code(self) -> bool:
        """True when the job brings code the operator cannot see: names it registers are known only there."""
        return bool(self.working_dir or self.py_modules or self.pip or self.imports)

    def local_paths(self) -> list[str]:
        """The working_dir and py_modules that are local paths (usable by `red run` only)."""
        return [p for p in [self.working_dir, *self.py_modules] if p and uri_scheme(p) is None]

    def ray_runtime_env(self) -> dict[str, Any]:
        """Ray's `runtime_env` for these settings (empty fields left out)."""
        out: dict[str, Any] = {}
        if self.working_dir:
            out["working_dir"] = self.working_dir
        if self.py_modules:
            out["py_modules"] = list(self.py_modules)
        if self.pip:
            out["pip"] = list(self.pip)
        if self.env_vars:
            out["env_vars"] = dict(self.env_vars)
        return out
