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

The Prometheus metrics (the ``prometheus`` extra; see docs/telemetry.md) are served by
:func:`metrics`, at a path of your choice:

# urls.py
from django_cqrs.views import metrics
path("metrics", metrics),
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from . import metrics as cqrs_metrics
from .conf import SETTING_NAME, cqrs_settings
from .projections.base import get_projection
from .projections.health import health_report
from .projections.status import projection_status

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


@never_cache
@require_safe
def metrics(request: HttpRequest) -> HttpResponse:
    """The Prometheus metrics: 404 with ``METRICS`` off, 501 without ``prometheus_client``,
    403 to a caller ``METRICS_ACCESS`` does not let in."""
    if not cqrs_settings.METRICS:
        return _text(f"Metrics are off ({SETTING_NAME}['METRICS'] is False).", 404)
    if not cqrs_metrics.AVAILABLE:
        return _text(
            "prometheus_client is not installed: pip install 'django-cqrs-toolkit[prometheus]'.",
            501,
        )
    if cqrs_settings.METRICS_ACCESS != "public":
        user = getattr(request, "user", None)
        if user is None or not user.has_perm(DETAILS_PERMISSION):
            return _text(f"The metrics need the permission {DETAILS_PERMISSION}.", 403)
    body, content_type = cqrs_metrics.render(consumer_lags)
    return HttpResponse(body, content_type=content_type)


def consumer_lags() -> list[cqrs_metrics.ConsumerLag]:
    """The lag and parked events of every projection, saga and relay, for the metrics."""
    return [
        cqrs_metrics.ConsumerLag(
            name=row.name,
            kind=get_projection(row.name).kind,
            lag_events=row.lag_events,
            lag_seconds=row.lag_seconds,
            parked=row.parked,
        )
        for row in projection_status()
    ]


def _text(message: str, status: int) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")
