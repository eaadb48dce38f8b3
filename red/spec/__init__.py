"""The Federation spec model and its loader (no Ray, no Kubernetes: safe to import anywhere)."""

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
