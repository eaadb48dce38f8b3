"""The engine image's Ray is the Ray the operator asks KubeRay for: the Federation's default `rayVersion`,
pyproject's pin (which e2e/images installs into the engine base), the Dockerfile's base image tag and the
version the Dockerfile's engine stage asserts are one version."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from red.spec.model import ClusterSpec

REPO = Path(__file__).resolve().parents[2]


def test_every_ray_version_pin_equals_the_crd_default() -> None:
    default = ClusterSpec.model_fields["ray_version"].default
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["engine"]
    (pin,) = [d.removeprefix("ray[default]==") for d in deps if d.startswith("ray[")]
    dockerfile = (REPO / "Dockerfile").read_text()
    base_tag = re.search(r"^ARG RAY_IMAGE=rayproject/ray:([0-9.]+)-py311$", dockerfile, re.M)
    asserted = re.search(r"ray\.__version__ == '([0-9.]+)'", dockerfile)
    assert base_tag and asserted
    assert {pin, base_tag.group(1), asserted.group(1)} == {default}
