"""Custom schemas, algorithms and tasks: by decorator, and by entry point of an installed package."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from red.registry import Registry
from red.spec import federation_from_dict
from tests.helpers import fed_dict


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
