"""CQRSRouter's root: ``GET <prefix>/`` lists the routes, in a namespace too, or not at all."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator

import pytest
from django.test import override_settings
from django.urls import clear_url_caches, include, path
from rest_framework.test import APIClient

from demo_project.orders.api import OrderViewSet, ProductViewSet
from demo_project.orders.queries import GetOrder
from django_cqrs.rest_framework.routers import CQRSRouter

pytestmark = pytest.mark.django_db


@pytest.fixture
def urlconf() -> Iterator[types.ModuleType]:
    """A URLconf module of the test's own (``module.urlpatterns`` is set by the test)."""
    module = types.ModuleType("tests_rest_root_urls")
    sys.modules[module.__name__] = module
    try:
        with override_settings(ROOT_URLCONF=module.__name__):
            yield module
    finally:
        del sys.modules[module.__name__]
        clear_url_caches()


def test_the_root_of_a_namespaced_api_lists_its_own_urls(urlconf: types.ModuleType) -> None:
    router = CQRSRouter(root_links={"elsewhere": "docs-home"})
    router.register("shop/orders", OrderViewSet, basename="order")
    router.register("shop/products", ProductViewSet, basename="product")
    router.expose_query(GetOrder, name="order")
    urlconf.urlpatterns = [
        path("v2/", include((router.urls, "v2"), namespace="v2")),
        path("docs/", lambda request: None, name="docs-home"),
    ]

    root = APIClient().get("/v2/").json()

    assert root == {
        "resources": {
            "shop/orders": "http://testserver/v2/shop/orders/",
            "shop/products": "http://testserver/v2/shop/products/",
        },
        "commands": {},
        "queries": {"order": "http://testserver/v2/queries/order/"},
        "links": {"elsewhere": "http://testserver/docs/"},
    }


def test_a_link_to_an_unknown_url_name_is_left_out(urlconf: types.ModuleType) -> None:
    router = CQRSRouter(root_links={"docs": "no-such-url"})
    urlconf.urlpatterns = [path("api/", include(router.urls))]

    assert APIClient().get("/api/").json()["links"] == {}


def test_the_root_can_be_left_out(urlconf: types.ModuleType) -> None:
    router = CQRSRouter(include_root_view=False)
    router.register("orders", OrderViewSet, basename="order")
    urlconf.urlpatterns = [path("api/", include(router.urls))]

    assert APIClient().get("/api/").status_code == 404
    assert APIClient().get("/api/orders/").status_code == 200
