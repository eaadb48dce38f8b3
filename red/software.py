"""The software a run uses, as the engine's driver sees it: Red, Ray, torch, Python, CUDA and the image.

Reported with the engine's reports (`software`) and shown in `Federation.status.versions`, so a result can
be tied to what produced it. The image is what the operator says it started (`RED_ENGINE_IMAGE` in the
job's environment); None elsewhere. CUDA is torch's CUDA version when a GPU is usable here, else None.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

from red._version import __version__
from red.spec.status import IMAGE_ENV


def _dist_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cuda() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return str(torch.version.cuda) if torch.version.cuda and torch.cuda.is_available() else None


def software_versions(env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    env = os.environ if env is None else env
    return {
        "red": __version__,
        "ray": _dist_version("ray"),
        "torch": _dist_version("torch"),
        "python": platform.python_version(),
        "cuda": _cuda(),
        "image": env.get(IMAGE_ENV) or None,
    }
