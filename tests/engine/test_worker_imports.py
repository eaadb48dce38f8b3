"""What a Ray worker running Red's actors imports: not the spec and status models.

Every actor's worker imports its class's module (a schema's server, a pool host, the TopologyManager,
a task, an algorithm). Building the pydantic spec and status models there cost each worker 0.3-0.5 s of
CPU on the way to round 1, for models only the driver and the operator read. A module-level import of
`red.spec.model`, `red.spec.status` or `red.spec.loader` anywhere under these brings that back.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT

ACTOR_MODULES = (
    "red.schemas.star",
    "red.schemas.decentralized",
    "red.schemas.cluster",
    "red.runtime.pool",
    "red.runtime.topology_manager",
    "red.runtime.node",
    "red.tasks.digits",
    "red.algorithms",
    "red.report",
)
SPEC_MODELS = ("red.spec.model", "red.spec.status", "red.spec.loader")

SCRIPT = """
import importlib, json, sys
for m in sys.argv[1:]:
    importlib.import_module(m)
print(json.dumps(sorted(m for m in sys.modules if m.startswith("red.spec"))))
"""


def test_the_actors_modules_import_no_spec_model() -> None:
    res = subprocess.run(
        [sys.executable, "-c", SCRIPT, *ACTOR_MODULES], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert res.returncode == 0, res.stderr[-3000:]
    loaded = json.loads(res.stdout.splitlines()[-1])
    assert "red.spec.health" in loaded, loaded  # the check sees what it should
    assert not set(SPEC_MODELS) & set(loaded), loaded


def test_the_lazy_names_of_red_and_red_spec_still_resolve() -> None:
    import red
    import red.spec
    from red.spec.model import Federation
    from red.spec.status import HEALTHY, Health

    assert red.Federation is Federation and red.spec.Federation is Federation
    assert red.load_federation is red.spec.load_federation
    from red.spec.health import HEALTHY as H2
    from red.spec.health import Health as Health2

    assert Health is Health2 and HEALTHY is H2
    for name in red.spec.__all__:
        assert getattr(red.spec, name) is not None
    for name in red.__all__:
        assert getattr(red, name) is not None
