"""``cqrs_status``: each projection with its mode, position, the head of the log and its lag."""

from __future__ import annotations

import json
from collections.abc import Iterator
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from django_cqrs.events import EventEnvelope
from django_cqrs.models import ProjectionState, StoredEvent
from django_cqrs.projections import Projection, handles, status, unregister
from tests.test_projections_rebuild import LEDGER, VIEW, dispatch_varied_commands
from tests.testapp.events import Deposited


@pytest.fixture
def small_history() -> int:
    """A few commands; returns the head of the log."""
    dispatch_varied_commands(20, accounts=3)
    return StoredEvent.objects.order_by("-position").first().position


@pytest.fixture
def lagging_projection(small_history: int) -> Iterator[type[Projection]]:
    """An async projection (defined after the commands) whose checkpoint is the first event."""

    class LaggingProjection(Projection):
        name = "tests.LaggingProjection"
        mode = "async"

        @handles(Deposited)
        def deposited(self, event: Deposited, envelope: EventEnvelope) -> None:
            pass

    first = StoredEvent.objects.order_by("position").first()
    ProjectionState.objects.create(
        name=LaggingProjection.name, position=first.position, transaction_id=first.transaction_id
    )
    yield LaggingProjection
    unregister(LaggingProjection)


@pytest.mark.django_db
def test_status_lists_each_projection_with_mode_position_head_and_lag(
    small_history: int, lagging_projection: type[Projection]
) -> None:
    head = small_history
    lagging = lagging_projection.name
    first = StoredEvent.objects.order_by("position").first().position
    # Lag counts events, not positions (PostgreSQL sequences leave gaps).
    behind = StoredEvent.objects.count() - 1
    text = StringIO()
    call_command("cqrs_status", stdout=text)
    as_json = StringIO()
    call_command("cqrs_status", "--json", stdout=as_json)

    lines = text.getvalue().splitlines()
    assert lines[0].split()[:5] == ["projection", "mode", "position", "head", "lag"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[VIEW][1:5] == ["sync", str(head), str(head), "0"]
    assert rows[lagging][1:5] == ["async", str(first), str(head), str(behind)]
    status = {row["name"]: row for row in json.loads(as_json.getvalue())}
    assert status[LEDGER]["mode"] == "sync"
    assert (status[LEDGER]["position"], status[LEDGER]["lag_events"]) == (head, 0)
    assert status[lagging]["mode"] == "async"
    assert (status[lagging]["position"], status[lagging]["head"]) == (first, head)
    assert status[lagging]["lag_events"] == behind
    assert status[lagging]["lag_seconds"] > 0


@pytest.mark.django_db
def test_lag_is_counted_up_to_a_cap_not_over_the_whole_log(
    small_history: int, lagging_projection: type[Projection], monkeypatch: pytest.MonkeyPatch
) -> None:
    behind = StoredEvent.objects.count() - 1
    monkeypatch.setattr(status, "LAG_COUNT_CAP", 5)
    with override_settings(DJANGO_CQRS={"HEALTH_MAX_LAG_EVENTS": 3}):
        assert status.lag_cap() == 5
        with CaptureQueriesContext(connection) as queries:
            [row] = [r for r in status.projection_status() if r.name == lagging_projection.name]
        text = StringIO()
        call_command("cqrs_status", stdout=text)

    assert behind > 5
    assert row.lag_events == 5  # at least 5: the count stopped there
    counts = [q["sql"] for q in queries if "COUNT(" in q["sql"].upper()]
    assert counts
    assert all("LIMIT 5" in sql.upper() for sql in counts if "django_cqrs_event" in sql), counts
    assert "5+" in text.getvalue().split(lagging_projection.name, 1)[1].split("\n", 1)[0]
