"""The layering, pinned: who may import whom (an import-linter contract, read from the source with `ast`).

    red            never imports kopf, kubernetes, prometheus_client or red_operator
    red_operator   imports from red only the spec model, the error tree, the report contract and the
                   version — except `red_operator.engine_job`, the Ray job that runs the engine itself
    red.runtime    never imports red.schemas (schemas sit on top of the runtime, not the other way)
    red.schemas    never imports ray: every Ray call a schema needs is a method of the runtime's
                   FederatedBase (red.runtime.federation), the one seam between schemas and Ray
    red's parts    (red.spec, red.runtime, red.schemas, red.algorithms, red.tasks, red.registry, and each
                   top-level module) import each other without a cycle

A module-level import and one inside a function count the same: both are edges of the graph.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import networkx as nx
import pytest

from tests.helpers import ROOT

FORBIDDEN_IN_ENGINE = ("kopf", "kubernetes", "prometheus_client", "red_operator")
# red.registry: names only (built-ins are dotted paths), so the operator can refuse an unknown task or
# algorithm before any GPU is held, without importing Ray or torch.
OPERATOR_MAY_USE = ("red.spec", "red.errors", "red.report", "red.registry", "red._version")
ENGINE_JOB = "red_operator.engine_job"


def _modules(package_dir: Path, package: str) -> Iterator[tuple[str, Path]]:
    for path in sorted(package_dir.rglob("*.py")):
        rel = path.relative_to(package_dir).with_suffix("")
        parts = [package, *rel.parts]
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _imports(module: str, path: Path) -> set[str]:
    """Absolute names of everything `module` imports (relative imports resolved)."""
    out: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                base = base if is_pkg else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            out.add(prefix)
            # `from red import report` imports the module red.report.
            out.update(f"{prefix}.{alias.name}" for alias in node.names)
    return out


def _under(name: str, roots: tuple[str, ...]) -> bool:
    return any(name == r or name.startswith(r + ".") for r in roots)


ENGINE = list(_modules(ROOT / "red", "red"))
OPERATOR = list(_modules(ROOT / "operator" / "red_operator", "red_operator"))


def test_the_graph_is_not_empty() -> None:
    # Guards the walk itself: an empty module list would make every contract below pass.
    assert len(ENGINE) > 20 and len(OPERATOR) > 10
    assert "red.spec.model" in _imports("red_operator.reconcile", ROOT / "operator/red_operator/reconcile.py")


@pytest.mark.parametrize(("module", "path"), ENGINE, ids=[m for m, _ in ENGINE])
def test_engine_never_imports_the_operator_side(module: str, path: Path) -> None:
    bad = sorted(i for i in _imports(module, path) if _under(i, FORBIDDEN_IN_ENGINE))
    assert not bad, f"{module} imports {bad}: the engine runs user code on Ray and must not depend on them"


@pytest.mark.parametrize(("module", "path"), OPERATOR, ids=[m for m, _ in OPERATOR])
def test_operator_uses_only_the_contract(module: str, path: Path) -> None:
    if module == ENGINE_JOB:
        return
    red_imports = {i for i in _imports(module, path) if _under(i, ("red",))}
    bad = sorted(i for i in red_imports if i != "red" and not _under(i, OPERATOR_MAY_USE))
    assert not bad, f"{module} imports {bad}; the operator may use only {OPERATOR_MAY_USE} (or live in {ENGINE_JOB})"


def test_runtime_does_not_reach_up_into_schemas() -> None:
    bad = {
        module: sorted(i for i in _imports(module, path) if _under(i, ("red.schemas",)))
        for module, path in ENGINE
        if _under(module, ("red.runtime",))
    }
    bad = {m: i for m, i in bad.items() if i}
    assert not bad, f"upward imports from red.runtime into red.schemas: {bad}"


@pytest.mark.parametrize(
    ("module", "path"),
    [(m, p) for m, p in ENGINE if _under(m, ("red.schemas",))],
    ids=[m for m, _ in ENGINE if _under(m, ("red.schemas",))],
)
def test_schemas_never_import_ray(module: str, path: Path) -> None:
    bad = sorted(i for i in _imports(module, path) if _under(i, ("ray",)))
    assert not bad, (
        f"{module} imports {bad}: schemas reach Ray only through red.runtime.federation.FederatedBase "
        "(restore_nodes, versions_after, send, final_sync ...); add the verb there"
    )


def _part(module: str) -> str:
    """The part of red a module belongs to: its subpackage (red.spec.model → red.spec) or itself
    (red.cli); ``red`` for the package's own __init__."""
    return ".".join(module.split(".")[:2])


def _package_graph(modules: list[tuple[str, Path]]) -> nx.DiGraph:
    """Part → part edges of red's imports. An imported name is resolved to the module that holds it
    (``from red.runtime import placement`` → red.runtime.placement); ``red`` itself is no target,
    since importing any module runs the package's __init__ first and that would loop everything."""
    known = {m for m, _ in modules}
    g = nx.DiGraph()
    g.add_nodes_from(_part(m) for m, _ in modules)
    for module, path in modules:
        for name in _imports(module, path):
            if not _under(name, ("red",)):
                continue
            while name not in known and "." in name:
                name = name.rsplit(".", 1)[0]  # a class or function: the module that defines it
            a, b = _part(module), _part(name)
            if b != "red" and a != b:
                g.add_edge(a, b)
    return g


def _cycle(g: nx.DiGraph) -> list[str]:
    """One import cycle, as its parts in order, or []."""
    try:
        return [a for a, _ in nx.find_cycle(g)]
    except nx.NetworkXNoCycle:
        return []


def test_the_parts_of_red_import_each_other_without_a_cycle() -> None:
    g = _package_graph(ENGINE)
    # Guards the walk: the parts the layering is about are there, with the edges everybody knows of.
    assert {"red.spec", "red.runtime", "red.schemas", "red.algorithms", "red.tasks", "red.registry"} <= set(g)
    assert g.has_edge("red.schemas", "red.runtime") and g.has_edge("red.runtime", "red.tasks")
    loop = _cycle(g)
    assert not loop, f"import cycle between red's parts: {' -> '.join([*loop, loop[0]])}"


def test_the_cycle_check_sees_a_cycle(tmp_path: Path) -> None:
    # A runtime module that imports a schema closes runtime → schemas → runtime.
    root = tmp_path / "red"
    for pkg in ("runtime", "schemas"):
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
    (root / "__init__.py").write_text("from red.runtime import node\n")
    (root / "runtime" / "node.py").write_text("def f():\n    from red.schemas.star import Star\n")
    (root / "schemas" / "star.py").write_text("from ..runtime.node import f\nimport ray\n")
    modules = list(_modules(root, "red"))
    loop = _cycle(_package_graph(modules))
    assert sorted(loop) == ["red.runtime", "red.schemas"]
    assert "ray" in _imports("red.schemas.star", root / "schemas" / "star.py")
    (root / "runtime" / "node.py").write_text("")
    assert _cycle(_package_graph(list(_modules(root, "red")))) == []


def test_the_checker_sees_a_violation(tmp_path: Path) -> None:
    # The walk resolves relative imports and function-local ones: prove it on a file that breaks a rule.
    pkg = tmp_path / "red" / "runtime"
    pkg.mkdir(parents=True)
    (pkg / "x.py").write_text("def f():\n    from ..schemas import star\n    import kopf\n")
    found = _imports("red.runtime.x", pkg / "x.py")
    assert "red.schemas.star" in found and "kopf" in found


def test_engine_job_needs_only_the_kubernetes_client() -> None:
    # The engine image installs red[engine,kube]: importing the job's entry module (and its report
    # writer's client) must work with kopf and prometheus_client absent.
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('kopf', 'prometheus_client'):\n"
        "            raise ImportError(f'{name} is not installed in the engine image')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import red_operator.engine_job as job, kubernetes.client\n"
        "assert callable(job.main) and callable(job._core_api)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


# The modules Ray builds the default run's actors from: the pool hosts, the star server and the
# TopologyManager. Every import is a process's memory, paid again in each actor (networkx: 12 MB).
ACTOR_MODULES = ("red.runtime.pool", "red.runtime.topology_manager", "red.schemas.star", "red.algorithms")


@pytest.mark.parametrize("heavy", ["networkx", "torch", "pydantic"])
def test_the_actors_modules_import_no_networkx_torch_or_pydantic(heavy: str) -> None:
    import subprocess
    import sys

    code = (f"import sys\nimport {', '.join(ACTOR_MODULES)}\n"
            f"print(sorted(m for m in sys.modules if m.split('.')[0] == {heavy!r}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"importing the actors' modules loads {heavy}: {done.stdout.strip()[:300]}"


def test_a_star_federations_driver_imports_no_networkx() -> None:
    # The star is the topology that grows to 10,000 clients; its graph is red.star_graph's, and networkx
    # (10 MB of the driver's memory) stays for the topologies that need its generators.
    import subprocess
    import sys

    code = ("import sys\n"
            "from red.registry import schemas\n"
            "from red.spec.loader import load_federation\n"
            "fed = load_federation('examples/digits-star.yaml')\n"
            "sch = schemas.get(fed.spec.schema_)(fed)\n"
            "assert sch.graph.number_of_edges() == fed.spec.clients, sch.graph.number_of_edges()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'networkx'))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", f"a star's driver loads networkx: {done.stdout.strip()[:300]}"
