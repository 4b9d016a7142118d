"""The import direction between ehead_cli's packages, and no import cycles between its modules.

Every module under ``ehead_cli`` is parsed (never imported): each ``import`` and ``from ... import``
anywhere in it -- module level, inside functions, under ``if TYPE_CHECKING:``, relative ones -- is
an edge from that module to the module it names (``from a import b`` names ``a.b`` where that is a
module, else ``a``). A module's package is the first name under ``ehead_cli``: a sub-package
(``io``, ``avatar``, ...) or a top-level module (``errors``, ``devices``, ...); ``ehead_cli``
itself (``__init__``: the version) is base.

``LAYERS`` lists the packages low -> high; a package imports only its own layer or lower, never
the shell (``cli``, module or package, and ``__main__``), and within a layer the packages import
each other in one direction only (no package cycle). ``FORBIDDEN`` spells out the edges the
architecture rules out whatever the layer order says. A new package gets its place in ``LAYERS``
here; an edge this test refuses is fixed in the code (move the shared part down a layer), not by
moving a package up.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = "ehead_cli"
PACKAGE_DIR = Path(__file__).resolve().parents[1] / PACKAGE

# low -> high; a package may import packages of its own layer or of the layers before it
LAYERS: dict[str, tuple[str, ...]] = {
    "base": (PACKAGE, "errors", "layout", "geometry", "checks", "devices", "assets"),
    "face models": ("face",),
    # the rasteriser, shading and the camera types; io stores a clip's camera (render.clip_camera)
    "rendering": ("render",),
    "storage": ("io", "metrics"),
    "network": ("model",),
    "avatars": ("avatar",),
    # one package per command's library; generate labels speech states with prepare's VAD
    "work": ("prepare", "generate", "train", "listener", "eval", "export", "serve", "bench", "sampledata", "info",
             "family"),
    "shell": ("cli", "__main__"),
}
SHELL = frozenset(LAYERS["shell"])
FORBIDDEN: dict[str, frozenset[str]] = {
    "io": frozenset({"avatar", "prepare", "bench"}),
    "metrics": frozenset({"avatar", "prepare", "bench"}),
    "avatar": frozenset({"prepare", "bench"}),
}
LONG_MODULE_LINES = 400
LONG_MODULE_MARK = "Long module:"


@dataclass(frozen=True)
class Edge:
    source: str  # dotted module names
    target: str
    file: str  # the importing file, relative to the package's parent folder
    line: int

    def where(self) -> str:
        return f"{self.file}:{self.line}"


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under ``package_dir`` (a package's __init__.py
    is the package's own module)."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def import_edges(package_dir: Path) -> list[Edge]:
    """Every import of a module of the package by a module of the package (module docstring)."""
    package = package_dir.name
    modules = module_files(package_dir)
    edges = []
    for name, path in modules.items():
        here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        rel = path.relative_to(package_dir.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            for target in dict.fromkeys(targets):
                if target == package or target.startswith(package + "."):
                    edges.append(Edge(name, _known_module(target, modules), rel, node.lineno))
    return edges


def _known_module(target: str, modules: dict[str, Path]) -> str:
    """``target`` or its longest prefix that is a module (``import a.b.C`` of a class names ``a.b``)."""
    parts = target.split(".")
    while len(parts) > 1 and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) if ".".join(parts) in modules else target


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[0] if len(parts) == 1 else parts[1]


def layer_violations(edges: list[Edge], layers: dict[str, tuple[str, ...]] = LAYERS,
                     forbidden: dict[str, frozenset[str]] = FORBIDDEN,
                     shell: frozenset[str] = SHELL) -> list[str]:
    """One line per edge that goes up a layer, into the shell or across a forbidden pair, and per
    package missing from ``layers``."""
    rank = {pkg: i for i, members in enumerate(layers.values()) for pkg in members}
    layer_name = {pkg: name for name, members in layers.items() for pkg in members}
    out = []
    for pkg in sorted({package_of(m) for e in edges for m in (e.source, e.target)} - rank.keys()):
        first = next(e for e in edges if pkg in (package_of(e.source), package_of(e.target)))
        out.append(f"{first.where()}: package {pkg!r} has no layer (add it to LAYERS in tests/test_layering.py)")
    for e in edges:
        a, b = package_of(e.source), package_of(e.target)
        if a == b or a not in rank or b not in rank:
            continue
        if b in shell and a not in shell:
            out.append(f"{e.where()}: {e.source} imports {e.target}: nothing imports the command-line shell")
        elif b in forbidden.get(a, ()):
            out.append(f"{e.where()}: {e.source} imports {e.target}: {a} never imports {b}")
        elif rank[b] > rank[a]:
            out.append(f"{e.where()}: {e.source} imports {e.target}: {a} ({layer_name[a]}) is below "
                       f"{b} ({layer_name[b]})")
    return out


def cycles(edges: list[Edge], node=lambda module: module) -> list[list[Edge]]:
    """One cycle (its edges, in order) per strongly connected group of nodes, where ``node`` maps a
    module to its node (the module itself, or its package)."""
    graph: dict[str, dict[str, Edge]] = {}
    for e in edges:
        a, b = node(e.source), node(e.target)
        if a != b:
            graph.setdefault(a, {}).setdefault(b, e)
            graph.setdefault(b, {})
    # Tarjan's strongly connected components, iteratively
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    group = set()
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        group.add(w)
                        if w == v:
                            break
                    if len(group) > 1:
                        groups.append(group)
    return [_cycle_in(graph, group) for group in groups]


def _cycle_in(graph: dict[str, dict[str, Edge]], group: set[str]) -> list[Edge]:
    """The shortest cycle through the group's first node (by name), as edges."""
    start = min(group)
    came: dict[str, tuple[str, Edge]] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w, e in sorted(graph[v].items()):
                if w not in group or w in came:
                    continue
                came[w] = (v, e)
                if w == start:
                    path, at = [], start
                    while True:
                        v_prev, e_prev = came[at]
                        path.append(e_prev)
                        at = v_prev
                        if at == start:
                            return path[::-1]
                nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle through {start} in {sorted(group)}")


def describe(cycle: list[Edge], node=lambda module: module) -> str:
    """``a (file:line) -> b (file:line) -> a``: each node and where it imports the next."""
    return " -> ".join(f"{node(e.source)} ({e.where()})" for e in cycle) + f" -> {node(cycle[0].source)}"


def long_modules_without_reason(package_dir: Path, limit: int = LONG_MODULE_LINES) -> list[str]:
    """Modules over ``limit`` lines whose docstring has no line starting with ``LONG_MODULE_MARK``."""
    out = []
    for path in module_files(package_dir).values():
        text = path.read_text(encoding="utf-8")
        n = len(text.splitlines())
        if n <= limit:
            continue
        doc = ast.get_docstring(ast.parse(text)) or ""
        if not any(line.strip().startswith(LONG_MODULE_MARK) for line in doc.splitlines()):
            out.append(f"{path.relative_to(package_dir.parent).as_posix()}: {n} lines and no docstring line "
                       f"starting {LONG_MODULE_MARK!r} saying which one concept needs the length")
    return out


# --- the real tree ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return import_edges(PACKAGE_DIR)


def test_the_checker_sees_the_tree(edges):
    """A parse that found nothing would pass every check below."""
    assert len(module_files(PACKAGE_DIR)) > 100
    assert len(edges) > 500
    sources = {e.source for e in edges}
    assert {"ehead_cli.prepare.pipeline", "ehead_cli.io.motionfile"} <= sources


def test_packages_import_only_their_own_layer_or_lower(edges):
    assert layer_violations(edges) == []


def test_no_import_cycle_between_modules(edges):
    assert [describe(c) for c in cycles(edges)] == []


def test_no_import_cycle_between_packages(edges):
    assert [describe(c, package_of) for c in cycles(edges, package_of)] == []


def test_long_modules_say_why():
    assert long_modules_without_reason(PACKAGE_DIR) == []


# --- the checker itself, on a small package with known faults ----------------------------------------
def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root / "toy"


TOY = {
    "toy/__init__.py": "",
    "toy/errors.py": "",
    "toy/cli.py": "from toy.avatar import fit\n",  # the shell imports anything
    "toy/io/__init__.py": "",
    "toy/io/reader.py": "import numpy\n\ndef read():\n    from ..avatar import fit\n    return fit\n",
    "toy/avatar/__init__.py": "",
    "toy/avatar/fit.py": "from toy.io.reader import read\nfrom . import shape\n",
    "toy/avatar/shape.py": "from toy.errors import *\n",
    "toy/metrics/__init__.py": "from .score import score\n",
    "toy/metrics/shell_user.py": "import toy.cli as app\n",
    "toy/metrics/score.py": "def score():\n    from toy import errors, metrics\n",  # its own package's __init__
    "toy/extra/thing.py": "from toy.io import reader\n",
}
TOY_LAYERS = {"base": ("toy", "errors"), "storage": ("io", "metrics"), "avatars": ("avatar",), "shell": ("cli",)}
TOY_FORBIDDEN = {"io": frozenset({"avatar"})}


def test_checker_resolves_every_kind_of_import(tmp_path):
    got = {(e.source, e.target, e.where()) for e in import_edges(_write(tmp_path, TOY))}
    assert got == {
        ("toy.cli", "toy.avatar.fit", "toy/cli.py:1"),
        ("toy.io.reader", "toy.avatar.fit", "toy/io/reader.py:4"),  # function-local, relative
        ("toy.avatar.fit", "toy.io.reader", "toy/avatar/fit.py:1"),
        ("toy.avatar.fit", "toy.avatar.shape", "toy/avatar/fit.py:2"),  # from . import
        ("toy.avatar.shape", "toy.errors", "toy/avatar/shape.py:1"),
        ("toy.metrics.shell_user", "toy.cli", "toy/metrics/shell_user.py:1"),
        ("toy.metrics", "toy.metrics.score", "toy/metrics/__init__.py:1"),  # relative in an __init__
        ("toy.metrics.score", "toy.errors", "toy/metrics/score.py:2"),  # from package import module
        ("toy.metrics.score", "toy.metrics", "toy/metrics/score.py:2"),
        ("toy.extra.thing", "toy.io.reader", "toy/extra/thing.py:1"),
    }


def test_checker_reports_each_bad_edge_with_file_and_line(tmp_path):
    found = layer_violations(import_edges(_write(tmp_path, TOY)), TOY_LAYERS, TOY_FORBIDDEN, frozenset({"cli"}))
    assert found == [
        "toy/extra/thing.py:1: package 'extra' has no layer (add it to LAYERS in tests/test_layering.py)",
        "toy/io/reader.py:4: toy.io.reader imports toy.avatar.fit: io never imports avatar",
        "toy/metrics/shell_user.py:1: toy.metrics.shell_user imports toy.cli: nothing imports the command-line shell",
    ]
    # without the forbidden pair, the layer order alone refuses the upward edge
    assert layer_violations(import_edges(tmp_path / "toy"), TOY_LAYERS, {}, frozenset({"cli"}))[1] == (
        "toy/io/reader.py:4: toy.io.reader imports toy.avatar.fit: io (storage) is below avatar (avatars)")


def test_checker_reports_cycles_through_function_local_imports(tmp_path):
    edges = import_edges(_write(tmp_path, TOY))
    assert sorted(describe(c) for c in cycles(edges)) == [
        "toy.avatar.fit (toy/avatar/fit.py:1) -> toy.io.reader (toy/io/reader.py:4) -> toy.avatar.fit",
        "toy.metrics (toy/metrics/__init__.py:1) -> toy.metrics.score (toy/metrics/score.py:2) -> toy.metrics",
    ]
    assert [describe(c, package_of) for c in cycles(edges, package_of)] == [
        "avatar (toy/avatar/fit.py:1) -> io (toy/io/reader.py:4) -> avatar"]


def test_long_module_check(tmp_path):
    pkg = _write(tmp_path, {
        "toy/__init__.py": "",
        "toy/short.py": '"""Short."""\n',
        "toy/long.py": '"""Long."""\n' + "x = 1\n" * 400,
        "toy/reasoned.py": '"""Long.\n\nLong module: one concept, the whole rasteriser.\n"""\n' + "x = 1\n" * 400,
    })
    assert long_modules_without_reason(pkg) == [
        f"toy/long.py: 401 lines and no docstring line starting {LONG_MODULE_MARK!r} saying which one concept "
        f"needs the length"]
