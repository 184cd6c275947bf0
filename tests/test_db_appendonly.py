"""The database refuses to change the event log (django_cqrs.db.appendonly).

Every path that used to rewrite a stored event without an error is refused, on SQLite
and PostgreSQL, and leaves the log as it was; emptying the whole database (Django's
flush between ``TransactionTestCase`` tests, ``manage.py flush``) and migrating back to
zero still work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, models, transaction
from django.db.migrations.executor import MigrationExecutor

from django_cqrs.db import appendonly
from django_cqrs.exceptions import AppendOnlyError
from django_cqrs.models import StoredEvent

TABLE = StoredEvent._meta.db_table
REFUSED = "django_cqrs: stored events are append-only"


def stored(version: int = 1, aggregate_id: str = "a-1") -> StoredEvent:
    return StoredEvent.objects.create(
        event_type="testapp.Deposited",
        aggregate_type="testapp.Account",
        aggregate_id=aggregate_id,
        aggregate_version=version,
        payload={"amount": "1.00"},
        metadata={"user": "alice"},
    )


def forged(row: StoredEvent, **fields: Any) -> StoredEvent:
    """A new instance with ``row``'s position and key, and a forged payload."""
    values = {
        "position": row.position,
        "event_type": row.event_type,
        "aggregate_type": row.aggregate_type,
        "aggregate_id": row.aggregate_id,
        "aggregate_version": row.aggregate_version,
        "payload": {"amount": "1000000.00"},
    }
    return StoredEvent(**{**values, **fields})


def log() -> list[dict[str, Any]]:
    return list(StoredEvent.objects.order_by("position").values())


def sql(statement: str, params: Any = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(statement, params)


def upsert_sql(row: StoredEvent) -> None:
    sql(
        f"INSERT INTO {TABLE} (position, event_type, schema_version, aggregate_type, "
        "aggregate_id, aggregate_version, payload, metadata, recorded_at) "
        "VALUES (%s, 'forged', 1, 'x', 'y', 1, '{}', '{}', %s) "
        "ON CONFLICT (position) DO UPDATE SET payload = excluded.payload",
        [row.position, row.recorded_at],
    )


def plain_queryset() -> models.QuerySet[StoredEvent]:
    """Django's own queryset of the log, without the app's append-only overrides."""
    return models.QuerySet(StoredEvent)


# -- every path that rewrote history is refused ----------------------------------------

#: Paths django_cqrs's own model and queryset go through: they raise AppendOnlyError.
MODEL_PATHS: dict[str, Callable[[StoredEvent], Any]] = {
    "save() over a stored position": lambda row: forged(row).save(),
    "save(force_update=True)": lambda row: forged(row).save(force_update=True),
    "save(update_fields=...)": lambda row: forged(row).save(update_fields=["payload"]),
    "bulk_create(update_conflicts=True)": lambda row: StoredEvent.objects.bulk_create(
        [forged(row)],
        update_conflicts=True,
        unique_fields=["position"],
        update_fields=["payload"],
    ),
}

#: Paths around the model: the database's trigger refuses them.
DATABASE_PATHS: dict[str, Callable[[StoredEvent], Any]] = {
    "plain QuerySet.update()": lambda row: (
        plain_queryset().filter(pk=row.pk).update(payload={"forged": True})
    ),
    "plain QuerySet.delete()": lambda row: plain_queryset().filter(pk=row.pk).delete(),
    "plain QuerySet.bulk_create(update_conflicts=True)": lambda row: plain_queryset().bulk_create(
        [forged(row)],
        update_conflicts=True,
        unique_fields=["position"],
        update_fields=["payload"],
    ),
    "raw UPDATE": lambda row: sql(
        f"UPDATE {TABLE} SET event_type = 'forged' WHERE position = %s", [row.position]
    ),
    "raw DELETE ... WHERE": lambda row: sql(
        f"DELETE FROM {TABLE} WHERE position = %s", [row.position]
    ),
    "raw DELETE of the whole table": lambda row: sql(f"DELETE FROM {TABLE}"),
    "raw INSERT ... ON CONFLICT DO UPDATE": upsert_sql,
}


@pytest.fixture
def row() -> StoredEvent:
    stored(version=1, aggregate_id="other")
    return stored()


@pytest.mark.django_db
@pytest.mark.parametrize("change", MODEL_PATHS.values(), ids=MODEL_PATHS.keys())
def test_the_model_paths_raise_append_only_error(row: StoredEvent, change: Callable) -> None:
    before = log()

    with pytest.raises(AppendOnlyError, match="cannot be changed"), transaction.atomic():
        change(row)

    assert log() == before


@pytest.mark.django_db
@pytest.mark.parametrize("change", DATABASE_PATHS.values(), ids=DATABASE_PATHS.keys())
def test_the_database_refuses_every_other_path(row: StoredEvent, change: Callable) -> None:
    before = log()

    with pytest.raises(IntegrityError, match=REFUSED) as refusal, transaction.atomic():
        change(row)

    assert appendonly.refused(refusal.value) in ("UPDATE", "DELETE", "INSERT")
    assert log() == before


@pytest.mark.django_db
def test_the_refusal_reaching_the_model_names_the_database_error(row: StoredEvent) -> None:
    with pytest.raises(AppendOnlyError) as refusal, transaction.atomic():
        forged(row).save()

    assert f"position {row.position} is stored" in str(refusal.value)
    assert isinstance(refusal.value.__cause__, IntegrityError)
    assert REFUSED in str(refusal.value.__cause__)


# -- SQLite: REPLACE deletes without firing delete triggers ------------------------------

REPLACE_PATHS = {
    "INSERT OR REPLACE over a stored position": lambda row: sql(
        f"INSERT OR REPLACE INTO {TABLE} (position, event_type, schema_version, "
        "aggregate_type, aggregate_id, aggregate_version, payload, metadata, recorded_at) "
        "VALUES (%s, 'forged', 1, 'x', 'y', 1, '{}', '{}', %s)",
        [row.position, row.recorded_at],
    ),
    "REPLACE over a stored aggregate version": lambda row: sql(
        f"REPLACE INTO {TABLE} (event_type, schema_version, aggregate_type, aggregate_id, "
        "aggregate_version, payload, metadata, recorded_at) "
        "VALUES ('forged', 1, %s, %s, %s, '{}', '{}', %s)",
        [row.aggregate_type, row.aggregate_id, row.aggregate_version, row.recorded_at],
    ),
}


@pytest.mark.django_db
@pytest.mark.parametrize("change", REPLACE_PATHS.values(), ids=REPLACE_PATHS.keys())
def test_sqlite_refuses_a_replace_over_a_stored_event(
    vendor: str, row: StoredEvent, change: Callable
) -> None:
    if vendor != "sqlite":
        pytest.skip("REPLACE is SQLite's")
    before = log()

    with pytest.raises(IntegrityError, match=REFUSED), transaction.atomic():
        change(row)

    assert log() == before


@pytest.mark.django_db
def test_sqlite_lets_through_only_a_flush(vendor: str, row: StoredEvent) -> None:
    if vendor != "sqlite":
        pytest.skip("SQLite's flush function")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {appendonly.FLUSH_FUNCTION}()")
        assert cursor.fetchone() == (0,)
    with pytest.raises(IntegrityError, match=REFUSED), transaction.atomic():
        sql(f"DELETE FROM {TABLE}")
    assert len(log()) == 2


# -- PostgreSQL ---------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_refuses_with_sqlstate_23000_and_a_hint(row: StoredEvent) -> None:
    with pytest.raises(IntegrityError) as refusal, transaction.atomic():
        sql(f"UPDATE {TABLE} SET payload = '{{}}' WHERE position = %s", [row.position])

    cause = refusal.value.__cause__
    assert cause.sqlstate == "23000"  # type: ignore[union-attr]
    assert str(cause).startswith(f"{REFUSED} (UPDATE of position {row.position} refused)")
    assert "Record a new event instead" in cause.diag.message_hint  # type: ignore[union-attr]


@pytest.mark.postgres
@pytest.mark.django_db
def test_postgres_truncate_empties_the_log(row: StoredEvent) -> None:
    # Row triggers do not fire on TRUNCATE: the trigger is there, and the table empties.
    with pytest.raises(IntegrityError), transaction.atomic():
        sql(f"DELETE FROM {TABLE}")

    sql(f"TRUNCATE {TABLE}")  # rolled back with the test's transaction

    assert log() == []


# -- the triggers are installed by the migrations ----------------------------------------


def installed_triggers() -> set[str]:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal",
                [TABLE],
            )
        else:
            cursor.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s",
                [TABLE],
            )
        return {name for (name,) in cursor.fetchall()}


@pytest.mark.django_db
def test_the_triggers_exist_after_migrate() -> None:
    expected = {
        "postgresql": {"django_cqrs_event_append_only"},
        "sqlite": {
            "django_cqrs_event_no_update",
            "django_cqrs_event_no_delete",
            "django_cqrs_event_no_overwrite",
        },
    }[connection.vendor]

    assert installed_triggers() == expected
    assert set(appendonly.trigger_names(connection.vendor, StoredEvent)) == expected


# -- emptying the database and migrating back still work ---------------------------------


@pytest.mark.django_db(transaction=True)
def test_flush_empties_the_log_and_appending_goes_on() -> None:
    row = stored()
    with pytest.raises(IntegrityError, match=REFUSED):
        sql(f"DELETE FROM {TABLE} WHERE position = %s", [row.position])

    call_command("flush", interactive=False, verbosity=0)

    assert log() == []
    again = stored()
    assert StoredEvent.objects.get().pk == again.pk
    # The flush is over: the log is append-only again (this row is left for the flush
    # that ends this test, as between TransactionTestCase tests).
    with pytest.raises(IntegrityError, match=REFUSED):
        sql(f"DELETE FROM {TABLE}")
    assert log() != []


@pytest.mark.django_db(transaction=True)
def test_the_next_transactional_test_finds_an_empty_log_and_appends() -> None:
    assert installed_triggers()
    assert log() == []
    stored()
    assert len(log()) == 1


@pytest.mark.django_db(transaction=True)
def test_migrating_to_zero_and_back(executor: MigrationExecutor) -> None:
    stored()
    assert installed_triggers()

    executor.migrate([("django_cqrs", "0007_projectionstate_state")])
    assert installed_triggers() == set()
    executor.loader.build_graph()
    executor.migrate([("django_cqrs", None)])
    assert TABLE not in connection.introspection.table_names()

    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert installed_triggers() == set(appendonly.trigger_names(connection.vendor, StoredEvent))
    row = stored()
    with pytest.raises(IntegrityError, match=REFUSED):
        sql(f"DELETE FROM {TABLE} WHERE position = %s", [row.position])
