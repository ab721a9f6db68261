"""The package's shape: no import cycles between ganlab modules (lazy imports inside functions count:
they hide a cycle, they do not remove it), and no process-wide side effects on import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "ganlab"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the ganlab modules it imports anywhere in its source (module level or in a function)."""
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                while target and target not in modules:  # `from pkg import name`: the module that holds name
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_between_ganlab_modules():
    graph = import_graph()
    assert len(graph) > 40 and "ganlab.training.runner" in graph["ganlab.train"] | {"ganlab.training.runner"}
    assert "ganlab.errors" in graph["ganlab.config.validate"]  # the graph sees real edges
    assert cycles(graph) == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles(graph))


def test_leaf_modules_import_nothing_from_ganlab_but_leaves():
    graph = import_graph()
    leaves = {"ganlab.errors", "ganlab.registry", "ganlab.atomic_files", "ganlab.frames", "ganlab.runtime",
              "ganlab.signals"}
    for leaf in leaves:
        assert graph[leaf] <= leaves, f"{leaf} imports {graph[leaf] - leaves}"


def test_importing_every_module_has_no_process_wide_side_effects():
    """Logger levels, warning filters and matplotlib's backend are set by configure_runtime(), which
    entry points call; importing modules (as a library user or a test does) changes none of them."""
    code = f"""
import logging, os, pkgutil, importlib, sys, warnings
import pytorch_lightning, mlflow, optuna  # libraries set their own loggers on import; ganlab's modules must not
levels = {{n: logging.getLogger(n).level for n in ("pytorch_lightning", "lightning.pytorch", "mlflow", "alembic")}}
filters = list(warnings.filters)
sys.path.insert(0, {str(PACKAGE.parent)!r})
import ganlab
for info in pkgutil.walk_packages(ganlab.__path__, "ganlab."):
    if not info.name.endswith("__main__"):
        importlib.import_module(info.name)
after = {{n: logging.getLogger(n).level for n in levels}}
assert after == levels, (levels, after)
assert warnings.filters == filters, "warning filters changed on import"
import matplotlib
assert "MPLBACKEND" not in os.environ and matplotlib.rcParams._get_backend_or_none() is None, "a backend was picked"
from ganlab.runtime import configure_runtime
configure_runtime()
assert logging.getLogger("pytorch_lightning").level == logging.WARNING
assert matplotlib.get_backend().lower() == "agg"
print("ok")
"""
    env_cmd = [sys.executable, "-c", code]
    out = subprocess.run(env_cmd, capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_composing_a_config_loads_no_tracking_sweeping_or_plotting_library():
    """--cfg, --help and config errors answer without loading MLflow, Optuna, matplotlib or Pillow."""
    code = f"""
import sys
sys.path.insert(0, {str(PACKAGE.parent)!r})
from ganlab.config.compose import compose_config
compose_config([])
compose_config(["data=ring8", "model=vanilla"])
heavy = [m for m in ("mlflow", "optuna", "matplotlib", "PIL", "pytorch_lightning", "sklearn") if m in sys.modules]
print(heavy)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
