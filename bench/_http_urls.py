"""URLs of the HTTP benchmark: the demo's, plus ``/plain/`` (bench-only plain DRF views)."""

from __future__ import annotations

from _http_plain import router
from django.urls import include, path

from demo_project.urls import urlpatterns as demo_urlpatterns

urlpatterns = [path("plain/", include(router.urls)), *demo_urlpatterns]
