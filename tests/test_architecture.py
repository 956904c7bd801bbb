"""The package's dependency rule (docs/architecture.md): layers, no cycles, no imports hidden in functions."""
import ast
from pathlib import Path

import grimp
import networkx as nx
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parents[1]
# Imports on first use, for start-up time only: the command line answers --help without torch,
# and each file format's reader loads its own optional libraries.
LAZY_ALLOWED = ("spikeviz/cli/", "spikeviz/data/io/__init__.py")


def test_layer_contract_is_kept(monkeypatch):
    monkeypatch.chdir(ROOT)
    assert lint_imports(config_filename="pyproject.toml", no_cache=True) == 0


def test_no_import_cycles():
    graph = grimp.build_graph("spikeviz", cache_dir=None)
    g = nx.DiGraph()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith("spikeviz"):
                g.add_edge(module, imported)
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert cycles == []


def test_no_spikeviz_imports_inside_functions():
    hidden = []
    for path in sorted((ROOT / "spikeviz").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(LAZY_ALLOWED):
            continue
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                hidden += [f"{rel}:{n.lineno}" for n in ast.walk(fn)
                           if isinstance(n, ast.ImportFrom)
                           and (n.level or (n.module or "").startswith("spikeviz"))]
    assert hidden == []
