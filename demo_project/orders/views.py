"""The demo's landing page at ``/``: where the API, its docs, the admin and health are.

path("", views.home, name="home"),   # demo_project/urls.py
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_safe

from .sagas import payment_timeout

#: (title, URL name, what it is), in the order the page lists them.
LINKS = [
    ("API", "api-root", "GET lists every route: resources, commands and queries (JSON)."),
    ("API docs", "swagger-ui", "Swagger UI: try every route from the browser."),
    ("OpenAPI schema", "schema", "The schema (YAML) for client generators."),
    ("Admin", "admin:index", "Read models, aggregates, the event log and the projections."),
    ("Health", "django_cqrs:health", "The projections' health (JSON; 503 when unhealthy)."),
]


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    links = [{"title": title, "url": reverse(name), "about": about} for title, name, about in LINKS]
    api = request.build_absolute_uri(reverse("api-root"))
    context = {"links": links, "api": api, "payment_timeout": f"{payment_timeout():g}"}
    return render(request, "orders/home.html", context)
