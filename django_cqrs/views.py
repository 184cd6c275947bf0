"""HTTP views of django_cqrs: the health endpoint for load balancers and monitoring.

# urls.py
path("cqrs/", include("django_cqrs.urls")),

$ curl -i http://localhost:8000/cqrs/health/
HTTP/1.1 200 OK          (503 Service Unavailable when a projection is unhealthy)
{"status": "ok", "healthy": true, "head": 1234, "projections": {...}}
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from .projections.health import health_report


@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    """200 with per-projection figures when all are healthy, 503 otherwise."""
    report = health_report()
    return JsonResponse(report, status=200 if report["healthy"] else 503)
