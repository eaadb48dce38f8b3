"""Generated docs match the model; the public API is what we promise."""

from __future__ import annotations

import red
from red.spec.reference import render
from tests.helpers import ROOT


def test_spec_reference_is_current() -> None:
    current = (ROOT / "docs" / "spec-reference.md").read_text()
    fix = "run `python -m red.spec.reference > docs/spec-reference.md`"
    assert current == render(), f"docs/spec-reference.md drifted: {fix}"


def test_public_api() -> None:
    # Equality, not a subset: adding to the public face is a decision this test makes visible.
    assert sorted(red.__all__) == [
        "CheckpointError", "Federation", "FederationFailed", "FederationSpec", "PlacementError", "RedError",
        "RegistryError", "SpecError", "TopologyError", "__version__", "algorithms", "load_federation",
        "run_federation", "schemas", "tasks",
    ]
    assert all(getattr(red, name) is not None for name in red.__all__)
    assert callable(red.run_federation)
    assert issubclass(red.SpecError, red.RedError) and issubclass(red.TopologyError, red.RedError)


def test_importing_red_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, red, red.spec; print(any(m in sys.modules for m in ('ray', 'torch', 'kopf', 'kubernetes')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
