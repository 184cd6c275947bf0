"""HTTP views of django_cqrs: the health endpoint for load balancers and monitoring.

# urls.py
path("cqrs/", include("django_cqrs.urls")),

$ curl -i http://localhost:8000/cqrs/health/
HTTP/1.1 200 OK          (503 Service Unavailable when a projection is unhealthy)
{"status": "ok", "healthy": true}

The verdict (status code, ``status``, ``healthy``) is for everyone; the figures (the
log's head, the horizon, each projection's position, lag and activity) only for users
with the permission ``django_cqrs.view_projectionstate`` (superusers have it), unless
``HEALTH_DETAILS`` is ``"public"``:

{"status": "ok", "healthy": true, "head": 1234, "horizon": {...}, "projections": {...}}
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from .conf import cqrs_settings
from .projections.health import health_report

#: The permission that shows the figures (the admin's "Can view projection state").
DETAILS_PERMISSION = "django_cqrs.view_projectionstate"


@never_cache
@require_safe
def health(request: HttpRequest) -> JsonResponse:
    """200 when all projections are healthy, 503 otherwise; the figures to those allowed."""
    report = health_report()
    if not may_see_details(request):
        report = {"status": report["status"], "healthy": report["healthy"]}
    return JsonResponse(report, status=200 if report["healthy"] else 503)


def may_see_details(request: HttpRequest) -> bool:
    """Whether the caller sees the health figures (``HEALTH_DETAILS``)."""
    if cqrs_settings.HEALTH_DETAILS == "public":
        return True
    user = getattr(request, "user", None)  # no AuthenticationMiddleware: anonymous
    return bool(user is not None and user.has_perm(DETAILS_PERMISSION))
