"""The package's shape: the import graph has no cycle, and the torch-free core never imports torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "graphzoo"

# The graph core and everything a user of plain features needs: numpy / scipy / scikit-learn only.
TORCH_FREE = ["graphzoo", "graphzoo.graph", "graphzoo.graph_step", "graphzoo.energies", "graphzoo.classifier",
              "graphzoo.registry", "graphzoo.rundir", "graphzoo.config", "graphzoo.data", "graphzoo.acquisition",
              "graphzoo.calibration", "graphzoo.evidence",
              "graphzoo.knn_device"]  # imports torch inside its functions, only when a device is asked for


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> graphzoo modules it imports (at any level: module top or inside functions)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle between modules (a package importing its own submodules is not one), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str):
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if d.startswith(m + "."):  # a package's __init__ re-exporting its submodules
                continue
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_import_graph_has_no_cycle_between_packages():
    graph = import_graph()
    # Collapse to subpackages (graphzoo.train, graphzoo.experiments, ...): arrows between them must not loop.
    def pkg(m: str) -> str:
        parts = m.split(".")
        return ".".join(parts[:2])

    packages: dict[str, set[str]] = {}
    for m, deps in graph.items():
        if m == "graphzoo":
            continue
        packages.setdefault(pkg(m), set()).update(pkg(d) for d in deps if pkg(d) != pkg(m) and d != "graphzoo")
    for p in packages:
        packages[p] &= set(packages)
    assert _cycle(packages) is None, f"import cycle between packages: {' -> '.join(_cycle(packages))}"


def test_no_library_module_imports_a_cli_module():
    graph = import_graph()
    cli = {m for m in graph if m.endswith(".cli") or m in ("graphzoo.cli", "graphzoo.run", "graphzoo.listing")}
    library = [m for m in graph if m not in cli and m != "graphzoo.__main__"]
    offenders = {m: sorted(graph[m] & cli) for m in library if graph[m] & cli}
    assert not offenders, f"library modules importing command-line modules: {offenders}"


@pytest.mark.parametrize("module", TORCH_FREE)
def test_core_module_does_not_import_torch(module):
    code = f"import sys, {module}; sys.exit(1 if 'torch' in sys.modules else 0)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, f"importing {module} imports torch{done.stderr[-500:]}"
