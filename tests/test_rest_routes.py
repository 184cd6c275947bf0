"""Route declarations live in ``routes``; the HTTP modules import each other without cycles."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from demo_project.orders.commands import CancelOrder
from demo_project.orders.queries import GetOrder
from django_cqrs.rest_framework import routes, viewsets

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "django_cqrs" / "rest_framework"
DECLARATIONS = ["command_action", "command_route", "query_action", "query_route"]


def test_viewsets_re_exports_the_route_declarations() -> None:
    for name in [*DECLARATIONS, "MessageRoute"]:
        assert getattr(viewsets, name) is getattr(routes, name), name
    assert {"CQRSViewSet", *DECLARATIONS} <= set(viewsets.__all__)


def test_declarations_from_routes_become_view_methods() -> None:
    class OrderViewSet(viewsets.CQRSViewSet):
        id_field = "order_id"
        retrieve = routes.query_route(GetOrder)
        cancel = routes.command_action(CancelOrder)

    retrieve = OrderViewSet.retrieve.cqrs_route  # type: ignore[attr-defined]
    cancel = OrderViewSet.cancel.cqrs_route  # type: ignore[attr-defined]
    assert (retrieve.kind, retrieve.detail, retrieve.message) == ("query", True, GetOrder)
    assert (cancel.kind, cancel.detail, cancel.message) == ("command", True, CancelOrder)
    assert OrderViewSet.cancel.url_path == "cancel"  # type: ignore[attr-defined]


# -- imports ---------------------------------------------------------------------------


PREFIX = "django_cqrs.rest_framework"


def modules() -> dict[str, tuple[list[str], ast.Module]]:
    """Each module by dotted name inside the package ("" is its __init__), with its package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
        package = parts[:-1]
        if parts[-1] == "__init__":
            parts = package
        found[".".join(parts)] = (package, ast.parse(path.read_text(), str(path)))
    return found


def internal_imports(package: list[str], tree: ast.Module) -> set[str]:
    """What a module imports from the package: dotted names inside it ("" is __init__)."""
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            module = node.module or ""
            targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.ImportFrom):
            if node.level - 1 > len(package):
                continue  # above django_cqrs.rest_framework: the core
            base = package[: len(package) - (node.level - 1)]
            module = ".".join([PREFIX, *base, *([node.module] if node.module else [])])
            targets = [module, *(f"{module}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            if target == PREFIX or target.startswith(PREFIX + "."):
                imported.add(target.removeprefix(PREFIX).removeprefix("."))
    return imported


def test_no_module_imports_inside_a_function() -> None:
    late = []
    for name, (_, tree) in modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.Import | ast.ImportFrom):
                        late.append(f"{name or '__init__'}:{inner.lineno}")
    assert late == []


def test_the_modules_import_each_other_without_cycles() -> None:
    found = modules()
    graph = {
        name: {target for target in internal_imports(package, tree) if target in found}
        for name, (package, tree) in found.items()
    }
    assert "exceptions" in graph["idempotency"]  # the relative imports are resolved
    cycles = []

    def visit(name: str, path: list[str]) -> None:
        for target in sorted(graph[name]):
            if target in path:
                cycles.append([*path[path.index(target) :], target])
            elif len(path) < len(graph):
                visit(target, [*path, target])

    for name in graph:
        visit(name, [name])
    assert cycles == []


def test_the_schema_module_can_be_imported_first() -> None:
    code = (
        "import sys, django\n"
        "django.setup()\n"
        "from django_cqrs.rest_framework import schema\n"
        "assert 'django_cqrs.rest_framework.viewsets' not in sys.modules, 'schema needs viewsets'\n"
        "from django_cqrs.rest_framework.viewsets import CQRSViewSet\n"
        "assert isinstance(CQRSViewSet().schema, schema.CQRSAutoSchema)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr
