"""``projections.checkpoints``: the state row created once, its lock, and the skipped positions."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from unittest import mock

import pytest
from django.db import IntegrityError, OperationalError, connection, connections, transaction
from django.db.models.query import QuerySet

from django_cqrs.models import ParkedEvent, ProjectionState
from django_cqrs.projections.checkpoints import ensure_state, lock_state, skipped_positions
from django_cqrs.sagas.base import all_sagas

NAME = "tests.CheckpointedProjection"


# -- ensure_state -------------------------------------------------------------------------


def others_than_sagas() -> QuerySet[ProjectionState]:
    """The state rows, but those of the sagas, which ``migrate`` starts at the head."""
    names = [part.name for cls in all_sagas() for part in cls.partition_classes]
    return ProjectionState.objects.exclude(name__in=names)


@pytest.mark.django_db
def test_ensure_state_creates_the_row_on_first_use() -> None:
    assert not ProjectionState.objects.filter(name=NAME).exists()

    state = ensure_state(NAME, "default")

    assert (state.name, state.position, state.state) == (NAME, 0, ProjectionState.State.LIVE)
    assert list(others_than_sagas().values_list("name", flat=True)) == [NAME]


@pytest.mark.django_db
def test_ensure_state_returns_the_existing_row_unchanged() -> None:
    ensure_state(NAME, "default")
    ProjectionState.objects.filter(name=NAME).update(
        position=42, state=ProjectionState.State.PAUSED
    )

    again = ensure_state(NAME)  # the default alias: DJANGO_CQRS["DATABASE"]

    assert (again.position, again.state) == (42, ProjectionState.State.PAUSED)
    assert others_than_sagas().count() == 1


@pytest.mark.django_db
def test_ensure_state_returns_the_row_another_worker_created_meanwhile() -> None:
    def created_by_another_worker(queryset: QuerySet[Any], **kwargs: Any) -> Any:
        # The other worker's INSERT wins the race; ours then fails on the primary key.
        ProjectionState.objects.create(name=kwargs["name"], position=17)
        raise IntegrityError("duplicate key value violates unique constraint")

    with mock.patch.object(
        QuerySet, "get_or_create", autospec=True, side_effect=created_by_another_worker
    ) as get_or_create:
        state = ensure_state(NAME, "default")

    get_or_create.assert_called_once()
    assert (state.name, state.position) == (NAME, 17)
    assert others_than_sagas().count() == 1


# -- lock_state ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_lock_state_returns_the_current_row_and_needs_it_to_exist() -> None:
    ProjectionState.objects.create(name=NAME, position=5)

    with transaction.atomic():
        state = lock_state(NAME, "default")
        assert state.position == 5
        with pytest.raises(ProjectionState.DoesNotExist):
            lock_state("tests.NeverCreated", "default")


def in_thread(target: Callable[[], Any]) -> list[Any]:
    """Run ``target`` in a thread of its own (its own connection); return [result or error]."""
    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append(target())
        except Exception as exc:  # reported by the test
            outcome.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=30)
    assert not thread.is_alive(), "the second connection hung"
    return outcome


def lock_with_timeout() -> int:
    """In a transaction of its own, lock the state row waiting at most 200 ms."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '200ms'")
        return lock_state(NAME, "default").position


def read_without_lock() -> int:
    return ProjectionState.objects.get(name=NAME).position


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_lock_state_holds_the_row_until_the_transaction_ends() -> None:
    ensure_state(NAME, "default")

    with transaction.atomic():
        state = lock_state(NAME, "default")
        [blocked] = in_thread(lock_with_timeout)
        [read] = in_thread(read_without_lock)  # readers are not blocked
        state.position = 10
        state.save(update_fields=["position"])

    assert isinstance(blocked, OperationalError)
    assert "lock timeout" in str(blocked)
    assert read == 0
    # Once the first transaction has committed, the row can be locked, with its update.
    assert in_thread(lock_with_timeout) == [10]


# -- skipped_positions --------------------------------------------------------------------


def park(projection: str, position: int, resolution: str) -> ParkedEvent:
    return ParkedEvent.objects.create(
        projection=projection,
        position=position,
        event_type="testapp.Deposited",
        error="ValueError: poisoned",
        traceback="Traceback ...",
        attempts=3,
        resolution=resolution,
    )


@pytest.mark.django_db
def test_skipped_positions_are_the_skipped_events_after_the_position() -> None:
    skipped, parked, retried = (
        ParkedEvent.Resolution.SKIPPED,
        ParkedEvent.Resolution.PARKED,
        ParkedEvent.Resolution.RETRIED,
    )
    park(NAME, 3, skipped)
    park(NAME, 7, skipped)
    park(NAME, 9, parked)
    park(NAME, 11, retried)
    park(NAME, 12, skipped)
    park("tests.OtherProjection", 8, skipped)

    assert skipped_positions(NAME, 0, "default") == frozenset({3, 7, 12})
    assert skipped_positions(NAME, 3, "default") == frozenset({7, 12})  # 3 is passed already
    assert skipped_positions(NAME, 11, "default") == frozenset({12})
    assert skipped_positions(NAME, 12, "default") == frozenset()
    assert skipped_positions("tests.OtherProjection", 0, "default") == frozenset({8})
    assert skipped_positions("tests.Unknown", 0, "default") == frozenset()
