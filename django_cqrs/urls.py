"""URLs of django_cqrs; include them under a prefix of your choice.

path("cqrs/", include("django_cqrs.urls")),   # /cqrs/health/
"""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "django_cqrs"

urlpatterns = [
    path("health/", views.health, name="health"),
]
