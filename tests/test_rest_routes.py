"""Route declarations live in ``routes``; ``schema`` imports without ``viewsets``."""

from __future__ import annotations

from pathlib import Path

from demo_project.orders.commands import CancelOrder
from demo_project.orders.queries import GetOrder
from django_cqrs.rest_framework import routes, viewsets
from tests.helpers import run_python

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
# No function-level imports and no cycles: tests/test_architecture.py checks the whole
# package, this module included.


def test_the_schema_module_can_be_imported_first() -> None:
    code = (
        "import sys, django\n"
        "django.setup()\n"
        "from django_cqrs.rest_framework import schema\n"
        "assert 'django_cqrs.rest_framework.viewsets' not in sys.modules, 'schema needs viewsets'\n"
        "from django_cqrs.rest_framework.viewsets import CQRSViewSet\n"
        "assert isinstance(CQRSViewSet().schema, schema.CQRSAutoSchema)\n"
    )
    result = run_python(code, settings="tests.settings")

    assert result.returncode == 0, result.stderr
