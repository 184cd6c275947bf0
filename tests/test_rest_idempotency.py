"""The HTTP app's own table: ``IdempotencyRecord``, its migrations and its purge command.

The replay behaviour of ``Idempotency-Key`` is tested over HTTP in test_rest_consistency.py.
"""

from __future__ import annotations

import datetime as dt
import io
from unittest import mock

import pytest
from django.apps import apps
from django.core.management import call_command, get_commands
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

import django_cqrs.models
from django_cqrs.rest_framework.models import IdempotencyRecord
from tests.helpers import run_python

TABLE = "django_cqrs_idempotency"
HTTP_APP = "django_cqrs.rest_framework"
#: The core's last migration before the table moved to the HTTP app.
CORE_BEFORE_MOVE = ("django_cqrs", "0005_projectionstate_permissions")


def record(key: str, *, expires_in: float = 3600) -> IdempotencyRecord:
    now = timezone.now()
    return IdempotencyRecord.objects.create(
        key=key,
        request_hash="0" * 64,
        lock_token="t",
        response_status=201,
        expires_at=now + dt.timedelta(seconds=expires_in),
    )


# -- the app -------------------------------------------------------------------------


def test_the_record_belongs_to_the_http_app() -> None:
    config = apps.get_app_config("django_cqrs_rest")

    assert config.name == "django_cqrs.rest_framework"
    assert config.verbose_name == "CQRS HTTP API"
    assert IdempotencyRecord._meta.app_label == "django_cqrs_rest"
    assert IdempotencyRecord._meta.db_table == TABLE
    assert [c.name for c in IdempotencyRecord._meta.constraints] == ["django_cqrs_idempotency_key"]
    assert IdempotencyRecord._meta.pk is not None
    assert IdempotencyRecord._meta.pk.get_internal_type() == "BigAutoField"


def test_the_core_app_has_no_http_table() -> None:
    core = apps.get_app_config("django_cqrs")

    assert TABLE not in {model._meta.db_table for model in core.get_models()}
    assert not hasattr(django_cqrs.models, "IdempotencyRecord")


def test_the_http_api_without_its_app_says_what_to_install() -> None:
    # Django would file the model under "django_cqrs", whose migrations dropped the table.
    code = (
        "import django\n"
        "from django.conf import settings\n"
        "settings.configure(INSTALLED_APPS=['django.contrib.auth', 'django.contrib.contenttypes',"
        " 'rest_framework', 'django_cqrs'])\n"
        "django.setup()\n"
        "import django_cqrs.rest_framework.viewsets\n"
    )
    result = run_python(code)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "add 'django_cqrs.rest_framework' to INSTALLED_APPS" in result.stderr


# -- the purge command ---------------------------------------------------------------


def test_the_purge_command_comes_with_the_http_app() -> None:
    assert get_commands()["cqrs_purge_idempotency"] == "django_cqrs.rest_framework"


@pytest.mark.django_db
def test_the_purge_command_deletes_expired_records_only() -> None:
    record("old", expires_in=-1)
    record("fresh")
    out = io.StringIO()

    call_command("cqrs_purge_idempotency", stdout=out)

    assert out.getvalue().strip() == "Deleted 1 expired idempotency record(s)."
    assert list(IdempotencyRecord.objects.values_list("key", flat=True)) == ["fresh"]


# -- the upgrade: the HTTP app's 0001 takes the core's table over, rows and all ----------


@pytest.mark.django_db(transaction=True)
def test_upgrading_keeps_the_stored_keys_in_a_working_table(
    executor: MigrationExecutor,
) -> None:
    executor.migrate([CORE_BEFORE_MOVE, ("django_cqrs_rest", None)])
    old_state = executor.loader.project_state(CORE_BEFORE_MOVE).apps
    OldRecord = old_state.get_model("django_cqrs", "IdempotencyRecord")
    OldRecord.objects.create(
        key="in-flight",
        request_hash="0" * 64,
        lock_token="t",
        response_status=201,
        expires_at=timezone.now() + dt.timedelta(hours=1),
    )
    assert TABLE in connection.introspection.table_names()

    executor.loader.build_graph()  # reload what is applied
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert TABLE in connection.introspection.table_names()
    kept = IdempotencyRecord.objects.get()
    assert (kept.key, kept.response_status) == ("in-flight", 201)  # still replayed
    record("after-upgrade")
    assert sorted(IdempotencyRecord.objects.values_list("key", flat=True)) == [
        "after-upgrade",
        "in-flight",
    ]
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, TABLE)
    assert constraints["django_cqrs_idempotency_key"]["unique"]


@pytest.mark.django_db(transaction=True)
def test_without_the_http_app_the_core_drops_the_table_and_the_app_brings_it_back(
    executor: MigrationExecutor,
) -> None:
    executor.migrate([CORE_BEFORE_MOVE, ("django_cqrs_rest", None)])
    assert TABLE in connection.introspection.table_names()

    real = apps.is_installed
    with mock.patch.object(apps, "is_installed", lambda name: name != HTTP_APP and real(name)):
        executor.loader.build_graph()
        executor.migrate([("django_cqrs", "0006_idempotencyrecord_moved")])
    assert TABLE not in connection.introspection.table_names()

    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())  # the HTTP app installed later
    assert TABLE in connection.introspection.table_names()
    record("after-install")
    assert IdempotencyRecord.objects.get().key == "after-install"


@pytest.mark.django_db(transaction=True)
def test_migrating_back_before_the_move_gives_the_core_its_table_again(
    executor: MigrationExecutor,
) -> None:
    executor.migrate([("django_cqrs_rest", None), CORE_BEFORE_MOVE])

    assert TABLE in connection.introspection.table_names()
    old_state = executor.loader.project_state(CORE_BEFORE_MOVE).apps
    OldRecord = old_state.get_model("django_cqrs", "IdempotencyRecord")
    OldRecord.objects.create(
        key="old", request_hash="0" * 64, lock_token="t", expires_at=timezone.now()
    )
    assert OldRecord.objects.get().key == "old"
