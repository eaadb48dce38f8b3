"""The Federation spec model and its loader (no Ray, no Kubernetes: safe to import anywhere).

The names below load on first use: importing a submodule (`red.spec.health`, which the runtime's actors
use) runs this file, and must not build the pydantic models with it.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from red.spec.loader import (
        federation_from_dict,
        federation_from_yaml,
        format_validation_error,
        load_federation,
        spec_from_dict,
    )
    from red.spec.model import (
        API_VERSION,
        GROUP,
        KIND,
        PLURAL,
        VERSION,
        Federation,
        FederationSpec,
    )

_FROM = {
    **dict.fromkeys(
        (
            "federation_from_dict",
            "federation_from_yaml",
            "format_validation_error",
            "load_federation",
            "spec_from_dict",
        ),
        "red.spec.loader",
    ),
    **dict.fromkeys(
        ("API_VERSION", "GROUP", "KIND", "PLURAL", "VERSION", "Federation", "FederationSpec"), "red.spec.model"
    ),
}

__all__ = [
    "API_VERSION",
    "GROUP",
    "KIND",
    "PLURAL",
    "VERSION",
    "Federation",
    "FederationSpec",
    "federation_from_dict",
    "federation_from_yaml",
    "format_validation_error",
    "load_federation",
    "spec_from_dict",
]


def __getattr__(name: str) -> object:
    if name in _FROM:
        return getattr(importlib.import_module(_FROM[name]), name)
    raise AttributeError(f"module 'red.spec' has no attribute {name!r}")
