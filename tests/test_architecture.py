"""The tree is the pipeline: imports point down the rooms, never back, and nothing cycles.

Every import counts, including those inside functions (a lazy import is still an arrow); only
``if TYPE_CHECKING:`` blocks are left out, because they never run and exist for annotations.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "lanepar"

#: room -> the rooms (and top-level modules) it may import; a room always may import itself.
ALLOWED: dict[str, set[str]] = {
    "_exceptions": set(),
    "_inbox": set(),
    "_poolfuture": set(),
    "_relay": set(),
    "_threads": {"_inbox", "_poolfuture", "_relay"},
    "_offloop": {"_threads"},
    "config": {"_exceptions"},
    "tools": {"_exceptions", "_offloop", "config", "trace"},
    "trace": {"_exceptions"},
    "backends": {"_exceptions", "_poolfuture", "_threads", "config", "trace"},
    "run": {"_exceptions", "config", "tools", "trace", "backends", "analysis", "export"},
    "analysis": {"_exceptions", "trace"},
    "policy": {"_exceptions", "config", "tools", "trace", "run", "analysis"},
    "export": {"_exceptions", "trace", "analysis"},
    "integrations": {"_exceptions", "config", "tools", "trace", "run", "analysis", "export"},
}


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    skip.update(id(n) for n in ast.walk(child))
    return skip


def imports_of(path: Path) -> set[str]:
    """Every lanepar module ``path`` imports at run time (absolute names)."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree)
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("lanepar"):
                # ``from . import x`` imports module x; ``from .m import f`` imports module m
                modules = {f"{target}.{a.name}" for a in node.names} & _all_modules()
                out.update(modules or {target})
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("lanepar"))
    out.discard(mod)
    return out


def _all_modules() -> set[str]:
    return {module_name(p) for p in PKG.rglob("*.py")}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in PKG.rglob("*.py")}


def room(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "lanepar"


def test_no_import_cycles() -> None:
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g.get(m, ())):
            if n not in g:
                continue
            if state.get(n) == 1:
                cycle = [*stack[stack.index(n) :], n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)


@pytest.mark.parametrize("src_room", sorted(ALLOWED))
def test_imports_point_down_the_rooms(src_room: str) -> None:
    bad = []
    for mod, deps in graph().items():
        if room(mod) != src_room:
            continue
        for dep in deps:
            dep_room = room(dep)
            if dep_room not in ALLOWED[src_room] | {src_room}:
                bad.append(f"{mod} imports {dep}")
    assert not bad, "\n".join(sorted(bad))


def test_no_module_over_400_lines() -> None:
    long = {
        str(p.relative_to(PKG)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400
    }
    assert not long, long


def test_no_typescript_file_over_400_lines() -> None:
    src = PKG.parent / "extension"
    long = {
        str(p.relative_to(src)): n
        for folder in ("src", "test")
        for p in (src / folder).rglob("*.ts")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400
    }
    assert not long, long
