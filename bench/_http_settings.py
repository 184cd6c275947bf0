"""Settings of the HTTP benchmark: the demo project's, plus the plain-DRF comparison URLs.

The database comes from the environment exactly as in the demo (``DATABASE_URL`` for
PostgreSQL, ``DEMO_SQLITE_PATH`` for SQLite). Differences from the demo, for both the
django_cqrs routes and the plain ones alike:

- ``DEBUG = False`` (no query log);
- a cheap password hasher, so that HTTP Basic authentication of every command request
  does not spend ~0.3 s in PBKDF2 (a real deployment would use sessions or tokens);
- django_cqrs' INFO log of every command goes to the worker's stderr as in the demo.
"""

from __future__ import annotations

from demo_project.settings import *  # noqa: F403

DEBUG = False
ROOT_URLCONF = "_http_urls"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
