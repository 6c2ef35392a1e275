"""The house's layers: no import cycle, no import from a lower layer up, ``policies`` above ``codistill``.

Imports are read from the source (``ast``), including those inside functions (an import at call
time is still an arrow) and those under ``if TYPE_CHECKING:`` (a type hint names the module it
needs). A registry of :mod:`codistill.registry` imports its built-ins (and its base class) on the
first lookup, so a module that asks a registry has an arrow to each of those modules, unless it is
one of them (it registers itself). Each layer is also imported alone in a fresh interpreter, which
must not load a module of a layer above.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from codistill import registry

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [*sorted((ROOT / "platform").rglob("codistill/**/*.py")), *sorted((ROOT / "policies").glob("*.py"))]

#: Lowest first; a module may import its own layer and those below. Names match a module or a package;
#: the longest name that matches gives a module its layer (``codistill.cohort`` spans two layers).
LAYERS: list[tuple[str, ...]] = [
    ("codistill.errors", "codistill.arguments", "codistill.checks", "codistill.progress", "codistill.registry",
     "codistill.metrics", "codistill.safe_io", "codistill.evaluation", "codistill.private_apis", "codistill.evidence",
     "codistill.shapes"),
    ("codistill.saved_network",),
    ("codistill.config",),
    ("codistill.data", "codistill.models", "codistill.methods", "codistill.policy", "codistill.pruning",
     "codistill.optimizers", "codistill.curriculum", "codistill.schedules"),
    ("codistill.validation",),
    ("codistill.peer",),
    ("codistill.cohort", "codistill.checkpoint", "codistill.monitoring", "codistill.records"),
    ("codistill.runner",),
    ("codistill.cohort.ray_runtime", "codistill.cohort.ray_actors", "codistill.cohort.ray_cohort",
     "codistill.cohort.workers", "codistill.cohort.sample_payloads", "codistill.cohort.process_cohort",
     "codistill.tuning", "codistill.benchmarks"),
    ("codistill.preflight", "codistill.cli", "codistill.commands"),
    ("policies",),
]


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT / "platform" if "platform" in path.parts else ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int | None:
    if module == "codistill":  # the package's own __init__ (imports nothing)
        return 0
    matches = [(len(name), index) for index, names in enumerate(LAYERS) for name in names
               if module == name or module.startswith(name + ".")]
    return max(matches)[1] if matches else None


#: Each registry's name in :mod:`codistill.registry` → the modules its first lookup imports.
REGISTRY_LOADS = {name: {*value.builtins, *([value.base.partition(":")[0]] if value.base else [])}
                  for name, value in vars(registry).items() if isinstance(value, registry.Registry)}


def imports(path: Path) -> set[str]:
    """The ``codistill``/``policies`` modules ``path`` imports (``TYPE_CHECKING`` ones too) or loads
    through a registry it asks."""
    module = module_name(path)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            if node.module == "codistill.registry":
                found |= {loaded for alias in node.names for loaded in registry_loads(alias.name, module)}
    return {name for name in found if name != module and layer_of(name) is not None and _is_module(name)}


def registry_loads(name: str, module: str) -> set[str]:
    """What asking the registry ``name`` loads, for ``module``: nothing if it is a built-in of it."""
    loads = REGISTRY_LOADS.get(name, set())
    builtins = getattr(registry, name).builtins if name in REGISTRY_LOADS else ()
    if any(module == builtin or module.startswith(builtin + ".") for builtin in builtins):
        return set()
    return loads


def _is_module(name: str) -> bool:
    base = (ROOT / "platform" if name.startswith("codistill") else ROOT) / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


GRAPH = {module_name(path): imports(path) for path in SOURCES}


def test_every_module_has_a_layer():
    assert [name for name in GRAPH if layer_of(name) is None] == []


def test_no_import_runs_from_a_lower_layer_up():
    upward = sorted(f"{module} → {target}" for module, targets in GRAPH.items() for target in targets
                    if layer_of(target) > layer_of(module))
    assert upward == []


def test_no_import_cycle():
    """Tarjan's strongly connected components over the module graph (a package's ``__init__``
    importing its own submodules to register them is not a cycle unless they import it back)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in GRAPH.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(GRAPH):
        if node not in index:
            visit(node)
    assert cycles == []


@pytest.mark.parametrize("layer", range(len(LAYERS) - 1))
def test_a_layer_imported_alone_loads_nothing_above_it(layer):
    modules = [name for name in GRAPH if layer_of(name) == layer]
    code = ("import sys\n" + "".join(f"import {name}\n" for name in modules)
            + "print('\\n'.join(sorted(m for m in sys.modules if m.startswith(('codistill', 'policies')))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": f"{ROOT / 'platform'}:{ROOT}", "PATH": "/usr/bin:/bin"}).stdout.split()
    above = [name for name in loaded if (layer_of(name) or 0) > layer]
    assert above == []
