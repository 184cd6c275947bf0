"""The map in docs/architecture.md holds for the code: layers, rooms, no cycles.

The rules are read from the doc's tables and checked by walking every module's imports
with ``ast`` (imports inside functions included, ``if TYPE_CHECKING:`` blocks left out).
The checker itself is tested on a copy of the package with a forbidden import added, so
these tests can fail.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "architecture.md"

#: Third-party packages and the only part of the package that may import each.
ROOMS = {
    "rest_framework": ("django_cqrs.rest_framework",),
    "drf_spectacular": ("django_cqrs.rest_framework",),
    "rest_framework_dataclasses": ("django_cqrs.rest_framework",),
    "django_q": ("django_cqrs.tasks",),
    # Broker clients and the CloudEvents SDK: the inbox and the relays (docs/architecture.md).
    "pika": ("django_cqrs.inbox", "django_cqrs.relays"),
    "nats": ("django_cqrs.inbox", "django_cqrs.relays"),
    "cloudevents": ("django_cqrs.inbox", "django_cqrs.relays"),
    "django.contrib.admin": ("django_cqrs.admin", "django_cqrs.apps"),
    "opentelemetry": ("django_cqrs.telemetry",),
    "prometheus_client": ("django_cqrs.metrics",),
    # The core does not lean on its own integrations either.
    "django_cqrs.rest_framework": ("django_cqrs.rest_framework",),
    "django_cqrs.admin": ("django_cqrs.admin", "django_cqrs.apps"),
}
VENDOR_IMPORTS = re.compile(
    r"^(psycopg2?|sqlite3|MySQLdb|oracledb)(\.|$)|^django\.db\.backends\.(sqlite3|postgresql|mysql|oracle)"
)


@dataclasses.dataclass(frozen=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # what it imports, dotted (absolute)
    line: int
    in_function: bool


@dataclasses.dataclass(frozen=True)
class Map:
    layers: dict[str, int]  # module path (django_cqrs/...) -> layer
    allowed_local: dict[str, str]  # module path -> dotted prefix it may import in functions


def read_map(text: str) -> Map:
    """The module table and the table of allowed function-level imports of the doc."""
    layers: dict[str, int] = {}
    allowed: dict[str, str] = {}
    section = ""
    for line in text.splitlines():
        if line.startswith("## "):
            section = line[3:].strip().lower()
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if "|" in line else []
        if len(cells) < 3 or not cells[0].startswith("`django_cqrs/"):
            continue
        path = cells[0].strip("`")
        if section == "modules":
            layers[path] = int(cells[1])
        elif section.startswith("function-level imports"):
            allowed[path] = cells[1].strip("`").removesuffix(".*")
    return Map(layers, allowed)


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_files(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        if "migrations" not in path.parts:
            yield path


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(root: Path, path: Path) -> list[Import]:
    """Every import of one module, resolved to absolute dotted names."""
    module = module_name(root, path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: list[Import] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other, in_function)
                continue
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                found.extend(Import(module, a.name, child.lineno, inside) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from .x import y` names y in x (or the module x.y); owners are
                # resolved by walking up the dotted name.
                found.extend(
                    Import(module, f"{base}.{alias.name}", child.lineno, inside)
                    for alias in child.names
                )
            visit(child, inside)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def _owner(root: Path, dotted: str) -> str | None:
    """The package module (as a path like django_cqrs/x.py) that a dotted import names."""
    parts = dotted.split(".")
    while parts and parts[0] == root.name:
        rel = Path(*parts[1:]) if len(parts) > 1 else Path()
        for candidate in (root / rel / "__init__.py", (root / rel).with_suffix(".py")):
            if (rel != Path() or candidate.name == "__init__.py") and candidate.exists():
                return str(candidate.relative_to(root.parent))
        parts.pop()
    return None


def violations(root: Path, doc_text: str) -> list[str]:
    """Every way the package at ``root`` breaks the map; empty when it keeps it."""
    layout = read_map(doc_text)
    problems: list[str] = []
    files = list(package_files(root))
    paths = {str(p.relative_to(root.parent)) for p in files}
    for missing in sorted(paths - set(layout.layers)):
        problems.append(f"{missing} has no row in docs/architecture.md")
    for gone in sorted(set(layout.layers) - paths):
        problems.append(f"docs/architecture.md lists {gone}, which does not exist")
    graph: dict[str, set[str]] = {p: set() for p in paths}
    for path in files:
        rel = str(path.relative_to(root.parent))
        for imp in imports_of(root, path):
            where = f"{rel}:{imp.line}"
            for package, rooms in ROOMS.items():
                if (imp.target == package or imp.target.startswith(package + ".")) and not any(
                    imp.module == room or imp.module.startswith(room + ".") for room in rooms
                ):
                    problems.append(f"{where} imports {imp.target}: only {', '.join(rooms)} may")
            if VENDOR_IMPORTS.match(imp.target) and not imp.module.startswith("django_cqrs.db"):
                problems.append(f"{where} imports the database driver {imp.target} outside db/")
            owner = _owner(root, imp.target)
            if owner is None or owner == rel:
                continue
            if imp.in_function and not imp.target.startswith(layout.allowed_local.get(rel, "\0")):
                problems.append(f"{where} imports {imp.target} inside a function")
            graph[rel].add(owner)
            mine, theirs = layout.layers.get(rel), layout.layers.get(owner)
            if mine is not None and theirs is not None and theirs > mine:
                problems.append(f"{where} imports {imp.target} (layer {theirs}) from layer {mine}")
        problems.extend(_vendor_code(root, path))
    problems.extend(f"import cycle: {' -> '.join(cycle)}" for cycle in _cycles(graph))
    return problems


def _vendor_code(root: Path, path: Path) -> list[str]:
    rel = str(path.relative_to(root.parent))
    if rel.startswith(f"{root.name}/db/"):
        return []
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute) and node.attr == "vendor":
            found.append(f"{rel}:{node.lineno} reads connection.vendor outside db/")
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in ("execute", "executemany")
        ):
            found.append(f"{rel}:{node.lineno} executes SQL outside db/")
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected group of modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return groups


# -- the package keeps the map ---------------------------------------------------------


def test_the_package_keeps_the_map_in_docs_architecture() -> None:
    assert violations(REPO / "django_cqrs", DOC.read_text()) == []


def test_the_doc_gives_every_module_a_layer_of_the_layer_table() -> None:
    layers = read_map(DOC.read_text()).layers
    assert len(layers) > 50
    assert set(layers.values()) <= {0, 1, 2, 3, 4, 5}
    assert layers["django_cqrs/db/upserts.py"] < layers["django_cqrs/store.py"]
    assert layers["django_cqrs/store.py"] < layers["django_cqrs/projections/catchup.py"]


# -- the checker fails where it should ---------------------------------------------------


@pytest.fixture
def package_copy(tmp_path: Path) -> Path:
    root = tmp_path / "django_cqrs"
    shutil.copytree(REPO / "django_cqrs", root, ignore=shutil.ignore_patterns("__pycache__"))
    return root


def _append(path: Path, code: str) -> None:
    path.write_text(path.read_text() + "\n" + code + "\n")


@pytest.mark.parametrize(
    ("module", "code", "expected"),
    [
        ("store.py", "import rest_framework", "only django_cqrs.rest_framework may"),
        (
            "projections/catchup.py",
            "from django_q.tasks import async_task",
            "only django_cqrs.tasks",
        ),
        ("bus.py", "from django.contrib import admin", "only django_cqrs.admin"),
        ("bus.py", "from opentelemetry import trace", "only django_cqrs.telemetry may"),
        ("views.py", "import prometheus_client", "only django_cqrs.metrics may"),
        ("management/commands/cqrs_status.py", "import drf_spectacular", "rest_framework may"),
        (
            "management/commands/cqrs_status.py",
            "from django_cqrs.rest_framework.idempotency import purge_expired",
            "only django_cqrs.rest_framework may",
        ),
        ("bus.py", "import pika", "only django_cqrs.inbox, django_cqrs.relays may"),
        ("management/commands/cqrs_consume.py", "import nats", "django_cqrs.relays may"),
        ("checks.py", "from cloudevents.http import from_json", "django_cqrs.relays may"),
        ("inbox/apply.py", "from .consumer import Consumer", "(layer 5) from layer 4"),
        ("db/log.py", "from ..store import head", "(layer 3) from layer 2"),
        ("conf.py", "def f():\n    from .bus import command_bus", "inside a function"),
        ("conf.py", "from .bus import command_bus", "import cycle"),
        ("projections/status.py", "import psycopg", "database driver psycopg outside db/"),
        ("tasks.py", "def f(conn):\n    return conn.vendor", "connection.vendor outside db/"),
        ("aggregates.py", "def f(c):\n    c.execute('SELECT 1')", "executes SQL outside db/"),
    ],
)
def test_the_checker_finds_a_forbidden_import_added(
    package_copy: Path, module: str, code: str, expected: str
) -> None:
    _append(package_copy / module, code)

    found = violations(package_copy, DOC.read_text())

    assert any(expected in problem for problem in found), found


def test_the_checker_finds_a_module_missing_from_the_map(package_copy: Path) -> None:
    (package_copy / "db" / "extra.py").write_text('"""Extra."""\n')

    assert violations(package_copy, DOC.read_text()) == [
        "django_cqrs/db/extra.py has no row in docs/architecture.md"
    ]


def test_type_checking_imports_are_not_cycles(package_copy: Path) -> None:
    _append(
        package_copy / "conf.py",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .bus import command_bus",
    )

    assert violations(package_copy, DOC.read_text()) == []
