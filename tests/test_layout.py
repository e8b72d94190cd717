"""The package's import graph: no cycles among voiceprint modules, no private imports
(``from voiceprint.x import _name``, or ``x._name`` through a name bound to module x).

Every import counts, those inside functions too: a cycle closed by a deferred import
still means two modules that cannot be understood (or moved) one without the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def modules(src: Path = SRC) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package under ``src``."""
    found = {}
    for path in sorted((src / "voiceprint").rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _owner(name: str, known: dict[str, Path]) -> str | None:
    """The module that defines ``name`` (a module, or a name inside one)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(src: Path = SRC) -> tuple[dict[str, set[str]], list[str]]:
    """The import graph among the package's modules, and every ``from voiceprint.x import
    _name`` (a private name of another module) as ``file:line: text``."""
    known = modules(src)
    graph: dict[str, set[str]] = {name: set() for name in known}
    private = []
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        aliases: dict[str, str] = {}  # local name -> another voiceprint module it is bound to
        for node in ast.walk(tree):
            targets: list[tuple[str, str | None, ast.alias]] = []
            if isinstance(node, ast.Import):
                targets = [(alias.name, None, alias) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*up, base] if base else up)
                targets = [(base, alias.name, alias) for alias in node.names]
            for module, member, alias in targets:
                if not module.startswith("voiceprint"):
                    continue
                full = f"{module}.{member}" if member else module
                owner = full if full in known else _owner(module, known)
                if owner and owner != name:
                    graph[name].add(owner)
                if full in known and full != name and (member or alias.asname):
                    aliases[alias.asname or member] = full  # type: ignore[index]
                private_name = member and member.startswith("_") and not member.startswith("__")
                if private_name and full not in known:
                    where = path.relative_to(src).as_posix()
                    private.append(f"{where}:{node.lineno}: from {module} import {member}")
        for node in ast.walk(tree):  # module._name, through a name bound to another module
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                where = path.relative_to(src).as_posix()
                private.append(f"{where}:{node.lineno}: {node.value.id}.{node.attr}")
    return graph, private


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    graph, _ = imports()
    assert cycles(graph) == []


def test_no_module_imports_another_modules_private_names() -> None:
    _, private = imports()
    assert private == []


def test_the_check_finds_a_cycle_and_a_private_import(tmp_path: Path) -> None:
    package = tmp_path / "voiceprint"
    (package / "data").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "data" / "__init__.py").write_text("")
    (package / "data" / "a.py").write_text("def f():\n    from voiceprint.data.b import g\n")
    (package / "data" / "b.py").write_text("from voiceprint.data import a\n")
    (package / "data" / "c.py").write_text("from .a import _hidden\n")
    (package / "data" / "d.py").write_text(
        "from voiceprint.data import a\nimport voiceprint.data.b as bee\n"
        "def f():\n    return a._hidden, bee._other, a.__name__, a.public\n"
    )
    graph, private = imports(tmp_path)
    assert cycles(graph) == [["voiceprint.data.a", "voiceprint.data.b"]]
    assert private == [
        "voiceprint/data/c.py:1: from voiceprint.data.a import _hidden",
        "voiceprint/data/d.py:4: a._hidden",
        "voiceprint/data/d.py:4: bee._other",
    ]


MAX_LINES = 450  # a file a reader can hold in mind; split a longer one by what it does


def test_no_module_is_longer_than_max_lines() -> None:
    long = {
        path.relative_to(SRC).as_posix(): n
        for path in modules().values()
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert long == {}


README_MAX_LINES = 250  # the README is for users; the dated journal is docs/results.md


def test_the_readme_stays_short() -> None:
    readme = SRC.parent / "README.md"
    assert len(readme.read_text(encoding="utf-8").splitlines()) <= README_MAX_LINES
