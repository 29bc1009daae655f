"""The house's rooms (lru/__init__.py): the library never imports the training harness,
reaches the kernels only through its two entry points, and no module imports one that
imports it back. Read from the sources, so lazy imports inside functions count too."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import lru

ROOT = Path(lru.__file__).parent
#: The library's only ways into lru.kernels.
KERNEL_ENTRIES = {"lru.scan": "lru.kernels.*", "*": "lru.kernels.ops"}
#: The Hydra app, the harness's entry point (``python -m lru.train``), not a library module.
APP = "lru.train"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def import_graph() -> dict[str, set[str]]:
    """``{module: the lru modules it imports}`` for every module of the package."""
    graph = {}
    for path in sorted(ROOT.rglob("*.py")):
        name = _module_name(path)
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:  # `from lru.kernels import ops` imports lru.kernels.ops
                    sub = f"{node.module}.{a.name}"
                    found.add(sub if _is_module(sub) else node.module)
        graph[name] = {m for m in found if m == "lru" or m.startswith("lru.")} - {name}
    return graph


def room(name: str) -> str:
    if name == APP:
        return "app"
    for prefix in ("lru.kernels", "lru.training"):
        if name == prefix or name.startswith(prefix + "."):
            return prefix.split(".")[1]
    return "library"


def test_the_graph_sees_the_rooms():
    graph = import_graph()
    assert "lru.training.loop" in graph["lru.training.registry"] or \
        "lru.training.registry" in graph["lru.training.loop"]
    assert "lru.kernels.ops" in graph["lru.blocks"]
    assert {room(m) for m in graph} == {"app", "library", "kernels", "training"}


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph()
    cycles = []

    def visit(node, stack, on_stack, done):
        on_stack.add(node)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_stack:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt, stack, on_stack, done)
        stack.pop()
        on_stack.discard(node)
        done.add(node)

    done: set[str] = set()
    for m in sorted(graph):
        if m not in done:
            visit(m, [], set(), done)
    # a package's __init__ importing its own submodules is how packages export names
    cycles = [c for c in cycles if not any(b.startswith(a + ".") for a, b in zip(c, c[1:]))]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_library_never_imports_the_harness():
    graph = import_graph()
    bad = [f"{m} imports {d}" for m, deps in graph.items() if room(m) in ("library", "kernels")
           for d in deps if room(d) in ("training", "app")]
    assert not bad, bad


def test_the_library_reaches_kernels_only_through_its_entry_points():
    graph = import_graph()
    bad = []
    for m, deps in graph.items():
        if room(m) != "library":
            continue
        for d in deps:
            if room(d) == "kernels" and d != "lru.kernels.ops" and m != "lru.scan":
                bad.append(f"{m} imports {d}")
    assert not bad, (f"library modules reach lru.kernels through lru.scan and "
                     f"lru.kernels.ops only: {bad}")
