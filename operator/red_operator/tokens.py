"""Each Federation's Ray dashboard token, derived instead of stored, so the operator never reads Secrets.

    token = hex(HMAC-SHA256(key, "red.dev/ray-token/" + federation uid))

The key is the operator's own (the chart mounts it from a Secret it generates once; out of cluster it
comes from `--token-key-file`). The operator writes the token into the Federation's token Secret once
(create only) for KubeRay to hand to Ray, and computes it again whenever it calls the dashboard. A uid is
never reused, so a Federation deleted and created again under the same name gets a new token. Rotating the
key changes every token: clusters created before then no longer accept the operator's calls until they
are recreated (suspend and resume the Federation).
"""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

MIN_KEY_BYTES = 32


class TokenKeyError(ValueError):
    """The operator's token key is missing or too short."""


def derive(key: bytes, uid: str) -> str:
    """The token of the Federation with this uid (64 hex characters)."""
    if len(key) < MIN_KEY_BYTES:
        raise TokenKeyError(f"the token key has {len(key)} bytes; at least {MIN_KEY_BYTES} are needed")
    return hmac.new(key, f"red.dev/ray-token/{uid}".encode(), hashlib.sha256).hexdigest()


def load_key(path: Path) -> bytes:
    """Read the key file (surrounding whitespace ignored); a clear error when it is missing or short."""
    try:
        key = path.read_bytes().strip()
    except OSError as err:
        raise TokenKeyError(f"cannot read the token key file {path}: {err.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise TokenKeyError(
            f"the token key file {path} holds {len(key)} bytes; at least {MIN_KEY_BYTES} are needed "
            "(e.g. `head -c 48 /dev/urandom | base64 > key`)"
        )
    return key
