"""URLs of the demo project: a landing page, the API, its OpenAPI schema and docs, the admin,
the Prometheus metrics."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from demo_project.orders import views
from demo_project.orders.api import TokenView, router
from django_cqrs.rest_framework.views import UnknownRouteView
from django_cqrs.views import metrics

urlpatterns = [
    path("", views.home, name="home"),  # links to everything below
    path("admin/", admin.site.urls),
    path("cqrs/", include("django_cqrs.urls")),
    path("metrics", metrics, name="metrics"),  # Prometheus (docs/telemetry.md)
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path(
        "api/docs/",
        # GET only: drf-spectacular would render OPTIONS' metadata with its HTML renderer
        # and no template (a 500).
        SpectacularSwaggerView.as_view(url_name="schema", http_method_names=["get", "head"]),
        name="swagger-ui",
    ),
    path("api/auth/token/", TokenView.as_view(), name="api-token"),  # username, password
    path("api/", include(router.urls)),  # GET /api/ lists the routes
    re_path(r"^api/", UnknownRouteView.as_view()),  # problem details, not an HTML 404
]
