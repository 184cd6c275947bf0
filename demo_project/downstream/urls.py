"""URLs of the downstream service: its page and the admin."""

from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="downstream-home"),
    path("admin/", admin.site.urls),
]
