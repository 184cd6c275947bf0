"""WSGI entry point of the HTTP benchmark (gunicorn ``_http_wsgi:application``)."""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "_http_settings")

from django.core.wsgi import get_wsgi_application

application = get_wsgi_application()
