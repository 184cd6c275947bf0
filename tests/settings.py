"""Settings for the test suite: SQLite by default, PostgreSQL when DATABASE_URL is set."""

from __future__ import annotations

import os

import dj_database_url

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "demo_project.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# The default hasher is slow on purpose; tests create users and log in all the time.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "django_cqrs",
    "django_cqrs.rest_framework",
    "demo_project.orders",
    "demo_project.downstream",  # the demo's second service (settings_downstream)
    "tests.testapp",
    "tests.tutorial",
]

MIDDLEWARE = [
    "django_cqrs.nul_guard.RejectNulMiddleware",  # a NUL in the URL or a cookie: 400, not 500
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASE_URL = os.environ.get("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    # CQRS_TEST_DB_NAME lets two runs share one server without dropping each other's database.
    DATABASES["default"].setdefault("TEST", {})["NAME"] = os.environ.get(
        "CQRS_TEST_DB_NAME", "test_django_cqrs"
    )
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": ":memory:",
            "TEST": {"NAME": ":memory:"},
        }
    }

# A second alias on the same database (a test mirror: same tables, its own connection),
# for what touches more than one alias, such as the query guard. Tests that use it say
# databases=["default", "second"] and need transaction=True, so each connection sees
# the other's commits.
DATABASES["second"] = {**DATABASES["default"], "TEST": {"MIRROR": "default"}}

STATIC_URL = "/static/"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.BasicAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "EXCEPTION_HANDLER": "django_cqrs.rest_framework.exceptions.problem_exception_handler",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "django_cqrs tests",
    "VERSION": "0.1.0",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "django_cqrs.rest_framework.schema.servers_from_request",
        "django_cqrs.rest_framework.schema.links_from_creates",
    ],
}

Q_CLUSTER = {
    "name": "django_cqrs_tests",
    "orm": "default",
    "sync": True,
    "timeout": 60,
    "retry": 120,
    "max_attempts": 3,
    "catch_up": False,
}

DJANGO_CQRS: dict[str, object] = {}
