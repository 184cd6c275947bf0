"""The switch at the end of a rebuild swaps tables: no row copy while events are held back.

The rebuilt tables take the live tables' place with every column, index and constraint
under its old name; commands wait only for the swap itself, whatever the read model's
size; readers see the old rows or the new ones, never an empty table; a table outside the
projection that depends on a read model is refused before anything is written.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from io import StringIO
from typing import Any
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, connections, models, transaction
from django.test.utils import isolate_apps

from django_cqrs import command_bus
from django_cqrs.checks import check_read_model_references
from django_cqrs.db.shadow import create_shadows, shadow_model
from django_cqrs.events import EventEnvelope
from django_cqrs.exceptions import RebuildSwitchError
from django_cqrs.models import ParkedEvent, ProjectionState, StoredEvent
from django_cqrs.projections import Projection, handles, unregister
from django_cqrs.projections import rebuild as rebuild_module
from django_cqrs.projections.rebuild import rebuild
from tests.helpers import Holding
from tests.testapp.commands import Deposit, OpenAccount, Withdraw
from tests.testapp.events import AccountOpened, Deposited, Withdrawn
from tests.testapp.models import Account, AccountCard, AccountView, CardMovement

CARDS = "tests.CardProjection"
VIEW = "testapp.AccountViewProjection"


@pytest.fixture
def cards() -> Iterator[type[Projection]]:
    """A sync projection over two read models joined by a foreign key."""

    class CardProjection(Projection):
        name = CARDS
        read_models = [AccountCard, CardMovement]

        @handles(AccountOpened)
        def opened(self, event: AccountOpened, envelope: EventEnvelope) -> None:
            self.put(
                AccountCard(id=event.account_id, account_id=event.account_id, owner=event.owner)
            )

        @handles(Deposited, Withdrawn)
        def moved(self, event: Deposited | Withdrawn, envelope: EventEnvelope) -> None:
            card = self.get(AccountCard, event.account_id)
            assert card is not None
            card.balance = event.balance
            card.moves += 1
            self.put(card)
            sign = 1 if isinstance(event, Deposited) else -1
            self.put(
                CardMovement(
                    position=envelope.position, card_id=card.pk, amount=sign * event.amount
                )
            )

    yield CardProjection
    unregister(CardProjection)


def history(accounts: int = 6) -> list[int]:
    ids = [command_bus.dispatch(OpenAccount(owner=f"owner {i}")).value for i in range(accounts)]
    for n, account_id in enumerate(ids * 3):
        command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal(10 + n)))
    command_bus.dispatch(Withdraw(account_id=ids[0], amount=Decimal("3.00")))
    return ids


def schema(*models_: type[models.Model]) -> dict[str, Any]:
    """Columns, constraints and indexes (by name), and sequences of the models' tables."""
    described: dict[str, Any] = {}
    with connection.cursor() as cursor:
        for model in models_:
            table = model._meta.db_table
            described[table] = {
                "columns": [
                    (c.name, c.type_code, c.null_ok, c.default)
                    for c in connection.introspection.get_table_description(cursor, table)
                ],
                "constraints": connection.introspection.get_constraints(cursor, table),
                "sequences": connection.introspection.get_sequences(cursor, table),
            }
    return described


def rows() -> dict[str, list[dict[str, Any]]]:
    return {
        model.__name__: list(model.objects.order_by("pk").values())
        for model in (AccountCard, CardMovement)
    }


def tables() -> set[str]:
    with connection.cursor() as cursor:
        return set(connection.introspection.table_names(cursor))


@pytest.mark.django_db
def test_a_rebuild_keeps_every_column_index_and_constraint_under_its_name(
    cards: type[Projection],
) -> None:
    ids = history()
    before, built_live = schema(AccountCard, CardMovement), rows()
    # The live tables' own indexes and constraints are many, and named.
    names = set(before["testapp_accountcard"]["constraints"])
    assert {"card_owner_balance", "card_upper_owner", "card_balance_floor"} <= names
    assert {"card_owner_account", "card_deep_debt"} <= names
    CardMovement.objects.all().delete()
    AccountCard.objects.filter(pk=ids[1]).update(owner="damaged")

    applied = rebuild(CARDS)

    assert applied == StoredEvent.objects.count()
    assert rows() == built_live
    assert schema(AccountCard, CardMovement) == before
    assert not {t for t in tables() if t.endswith("_rebuild")}


@pytest.mark.django_db
def test_after_a_rebuild_identities_go_on_and_foreign_keys_hold(cards: type[Projection]) -> None:
    ids = history()
    rebuild(CARDS)
    rebuild(CARDS)  # a table put in place by a rebuild is rebuilt the same way

    # The identity hands out ids past every rebuilt row (they were written with ids).
    walk_in = Account.objects.create(owner="walk-in")  # no event: no card yet
    card = AccountCard.objects.create(account=walk_in, owner="walk-in")
    assert card.pk > max(ids)
    # The foreign key to the other read model points at the rebuilt table.
    CardMovement.objects.create(position=10**9, card=card, amount=Decimal("1.00"))
    with transaction.atomic():
        CardMovement.objects.create(position=10**9 + 1, card_id=10**6, amount=Decimal("1.00"))
        with pytest.raises(IntegrityError):
            connection.check_constraints()
        transaction.set_rollback(True)
    # So does the one to the aggregate table, and the constraints still refuse.
    with transaction.atomic():
        AccountCard.objects.create(id=10**6, account_id=10**6, owner="nobody")
        with pytest.raises(IntegrityError):
            connection.check_constraints()
        transaction.set_rollback(True)
    with pytest.raises(IntegrityError), transaction.atomic():
        AccountCard.objects.filter(pk=card.pk).update(moves=-1)  # PositiveIntegerField
    with pytest.raises(IntegrityError), transaction.atomic():
        AccountCard.objects.filter(pk=card.pk).update(account_id=ids[0])  # one-to-one


def statements_of(func: Any) -> list[str]:
    """The SQL that ``func()`` sends on the default connection."""
    sent: list[str] = []

    def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        sent.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        func()
    return sent


@pytest.mark.django_db
def test_the_switch_copies_no_rows_into_the_live_tables(cards: type[Projection]) -> None:
    history()

    sent = statements_of(lambda: rebuild(CARDS))

    live = [connection.ops.quote_name(m._meta.db_table) for m in (AccountCard, CardMovement)]
    copies = [
        sql
        for sql in sent
        for table in live
        if sql.startswith((f"DELETE FROM {table}", f"INSERT INTO {table}"))
    ]
    assert copies == []
    renames = [sql for sql in sent if sql.startswith("ALTER TABLE") and " RENAME TO " in sql]
    assert len(renames) >= 2
    if connection.vendor == "postgresql":
        # Indexes, constraints and statistics were built before new events were held back.
        switch = sent[next(i for i, sql in enumerate(sent) if sql.endswith("IN SHARE MODE")) :]
        slow = ("CREATE", "ANALYZE", "INSERT", "DELETE", "UPDATE")
        # Bookkeeping stays: the checkpoint, and the parked events the rebuild applied.
        books = [
            connection.ops.quote_name(m._meta.db_table) for m in (ProjectionState, ParkedEvent)
        ]
        work = [
            sql
            for sql in switch
            if (sql.startswith(slow) and not any(t in sql for t in books)) or " CONSTRAINT " in sql
        ]
        assert work == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "dependent",
    [
        'CREATE TABLE "ext_card_ref" ("id" integer PRIMARY KEY, '
        '"card_id" bigint REFERENCES "testapp_accountcard" ("id"))',
        'CREATE VIEW "ext_card_owners" AS SELECT "owner" FROM "testapp_accountcard"',
    ],
    ids=["foreign key", "view"],
)
def test_a_table_outside_the_projection_that_depends_on_a_read_model_is_refused(
    cards: type[Projection], dependent: str
) -> None:
    history()
    before = rows()
    name = dependent.split('"')[1]
    kind = dependent.split()[1]
    with connection.cursor() as cursor:
        cursor.execute(dependent)
    try:
        with pytest.raises(CommandError) as excinfo:
            call_command("cqrs_rebuild", CARDS, "--no-progress", stdout=StringIO())
        with pytest.raises(RebuildSwitchError):
            rebuild(CARDS)
        after = tables()
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'DROP {kind} "{name}"')

    message = str(excinfo.value)
    assert name in message
    assert "testapp_accountcard" in message
    if kind == "TABLE":
        assert "db_constraint=False" in message
    # Refused before anything was written.
    assert not {t for t in after if t.endswith("_rebuild")}
    assert not ProjectionState.objects.filter(name=CARDS).exists()
    assert rows() == before
    rebuild(CARDS)  # once it is gone, the rebuild runs
    assert rows() == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_trigger")
def test_an_interrupted_rebuild_resumes_with_its_shadow_tables(cards: type[Projection]) -> None:
    history()
    built_live, before = rows(), schema(AccountCard, CardMovement)
    CardMovement.objects.all().delete()

    def interrupt(done: int, total: int) -> None:
        if done > 10:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rebuild(CARDS, batch_size=5, progress=interrupt)
    reached = ProjectionState.objects.get(name=CARDS).rebuild_position
    assert reached

    applied = rebuild(CARDS, batch_size=5)

    assert applied == StoredEvent.objects.filter(position__gt=reached).count()
    assert rows() == built_live
    assert schema(AccountCard, CardMovement) == before
    assert not {t for t in tables() if t.endswith(("_rebuild", "_retired"))}  # all dropped


@pytest.mark.django_db
def test_a_system_check_names_a_foreign_key_into_a_read_model(cards: type[Projection]) -> None:
    with isolate_apps("tests.testapp"):

        class CardNote(models.Model):  # noqa: DJ008
            card = models.ForeignKey(AccountCard, on_delete=models.CASCADE, related_name="+")
            loose = models.ForeignKey(
                AccountCard, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
            )

            class Meta:
                app_label = "testapp"

        found = check_read_model_references([CardNote._meta.apps.get_app_config("testapp")])

    assert [(m.id, m.obj) for m in found] == [
        ("django_cqrs.E013", CardNote._meta.get_field("card"))
    ]
    assert "CardNote.card" in found[0].msg
    assert CARDS in found[0].msg
    assert "db_constraint=False" in (found[0].hint or "")
    # A foreign key between two read models of the projection is swapped with them.
    assert check_read_model_references() == []
    assert CardMovement._meta.get_field("card").db_constraint


# -- PostgreSQL: a large read model, with commands and readers during the switch ----------


def seed_rows(table: str, first: int, count: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{table}" (account_id, owner, balance, movements) '
            "SELECT n, 'seeded ' || n, '1.00', 1 FROM generate_series(%s, %s) n",
            [first, first + count - 1],
        )


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_trigger")
def test_a_command_waits_only_for_the_swap_and_readers_never_see_an_empty_table() -> None:
    size = 200_000
    account_id = command_bus.dispatch(OpenAccount(owner="busy")).value
    # An interrupted rebuild whose shadow is filled up to the head of the log.
    shadow, live = shadow_model(AccountView, "default"), AccountView._meta.db_table
    create_shadows({AccountView: shadow}, "default")
    seed_rows(AccountView._meta.db_table, 10**6, size + 500)  # 500 stale rows go away
    seed_rows(shadow._meta.db_table, 10**6, size)
    with connection.cursor() as cursor:
        cursor.execute(
            f'INSERT INTO "{shadow._meta.db_table}" SELECT * FROM "{AccountView._meta.db_table}" '
            "WHERE account_id = %s",
            [account_id],
        )
        cursor.execute(f'ANALYZE "{AccountView._meta.db_table}"')
    xid, head = StoredEvent.objects.order_by("-transaction_id", "-position").values_list(
        "transaction_id", "position"
    )[0]
    ProjectionState.objects.update_or_create(
        name=VIEW, defaults={"rebuild_position": head, "rebuild_transaction_id": xid}
    )
    old, new = size + 501, size + 1
    # What copying the rows into a table like the live one costs here and now: the old
    # switch did that and more (it deleted the old rows first).
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f'CREATE TABLE copied (LIKE "{live}" INCLUDING ALL)')
        started = time.perf_counter()
        cursor.execute(f'INSERT INTO copied SELECT * FROM "{shadow._meta.db_table}"')
        copy_seconds = time.perf_counter() - started
        transaction.set_rollback(True)

    counts: list[int] = []
    errors: list[BaseException] = []
    stop = threading.Event()
    waited: list[float] = []

    def read() -> None:
        try:
            while not stop.is_set():
                counts.append(AccountView.objects.count())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    def deposit() -> None:
        try:
            command_bus.dispatch(Deposit(account_id=account_id, amount=Decimal("5.00")))
            waited.append(time.perf_counter() - seen_waiting[0])
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    commander = threading.Thread(target=deposit)
    original = rebuild_module.store.lock_against_appends
    seen_waiting: list[float] = []

    def hold_back(using: str) -> None:
        """The switch holds appends back: a command arrives and waits."""
        original(using)
        commander.start()
        deadline = time.monotonic() + 10
        while not _an_append_waits():
            assert time.monotonic() < deadline, "the command never waited for the switch"
            time.sleep(0.005)
        seen_waiting.append(time.perf_counter())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        while len(counts) < 3:
            time.sleep(0.01)
        with mock.patch.object(rebuild_module.store, "lock_against_appends", hold_back):
            rebuild(VIEW)
        commander.join(30)
        time.sleep(0.1)
    finally:
        stop.set()
        reader.join(30)
    assert not errors, errors

    # Readers saw the old rows, then the new ones: never an empty or half-filled table.
    assert set(counts) <= {old, new}
    assert counts[0] == old
    assert counts[-1] == new
    # Once the switch found the command waiting, the command waited for the swap (and its
    # own work), not for a copy of the rows.
    assert len(waited) == 1
    assert waited[0] < copy_seconds, (waited, copy_seconds)
    # and its event is in the rebuilt table.
    assert AccountView.objects.get(pk=account_id).balance == "5.00"


def _an_append_waits() -> bool:
    """Does another session wait for a lock on the event log (pg_locks is not cached)?"""
    with connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = %s::regclass",
            [StoredEvent._meta.db_table],
        )
        return bool(cursor.fetchone()[0])


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("no_trigger")
def test_a_reader_that_keeps_the_live_table_locked_fails_the_switch_with_its_pid(
    cards: type[Projection],
) -> None:
    history()
    built_live = rows()
    CardMovement.objects.all().delete()
    damaged = rows()

    def read_in_a_transaction() -> int:
        list(AccountCard.objects.all()[:1])
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return int(cursor.fetchone()[0])

    with (
        mock.patch.object(rebuild_module, "SWITCH_ATTEMPTS", 2),
        mock.patch.object(rebuild_module, "SWITCH_PAUSE", 0.05),
        Holding(read_in_a_transaction) as reader,
    ):
        started = time.perf_counter()
        with pytest.raises(RebuildSwitchError) as excinfo:
            rebuild(CARDS)
        assert time.perf_counter() - started < 10  # two lock timeouts, not the reader's time

    message = str(excinfo.value)
    assert f"pid {reader.result}" in message
    assert "run the rebuild again" in message
    assert rows()["CardMovement"] == damaged["CardMovement"]  # nothing switched

    rebuild(CARDS)  # resumes, and switches once the reader is gone
    assert rows() == built_live
