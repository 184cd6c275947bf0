"""The event log's changelist at scale: no full count, indexed filters, exact search."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection
from django.db.models.lookups import Exact
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_cqrs.admin import pagination
from django_cqrs.db.estimates import estimated_rows
from django_cqrs.models import StoredEvent

pytestmark = pytest.mark.django_db

TABLE = StoredEvent._meta.db_table


def changelist(query: str = "") -> str:
    return reverse("admin:django_cqrs_storedevent_changelist") + query


def seed(count: int, **fields: Any) -> list[StoredEvent]:
    """``count`` events of one aggregate (or of the ``fields`` given), stored in one go."""
    events = [
        StoredEvent(
            event_type=fields.get("event_type", "tests.Seeded"),
            aggregate_type=fields.get("aggregate_type", "tests.Seed"),
            aggregate_id=fields.get("aggregate_id", "seed"),
            aggregate_version=fields.get("first_version", 1) + i,
            payload={"i": i},
            metadata=fields.get(
                "metadata", {"correlation_id": f"corr-{i % 50}", "user": f"user-{i % 7}"}
            ),
        )
        for i in range(count)
    ]
    return StoredEvent.objects.bulk_create(events)


def counts_of_the_log(queries: list[dict[str, Any]]) -> list[str]:
    """The SQL of every COUNT over the event table."""
    return [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and TABLE in q["sql"]]


def assert_counts_are_capped(queries: list[dict[str, Any]]) -> None:
    for sql in counts_of_the_log(queries):
        # A count over a LIMITed subquery: SELECT COUNT(*) FROM (SELECT ... LIMIT 10001)
        assert re.search(rf"LIMIT\s+{pagination.COUNT_CAP + 1}\b", sql), sql
        assert re.match(r"\s*SELECT\s+COUNT\(\*\)\s+FROM\s+\(SELECT", sql, re.I), sql


# -- no full count -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    ["", "?p=3", "?user=user-1", "?correlation_id=corr-2", "?aggregate_id=seed", "?q=seed"],
)
def test_the_changelist_never_counts_the_whole_log(admin_client: Client, query: str) -> None:
    seed(300)

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(changelist(query))

    assert response.status_code == 200
    assert response.context["cl"].result_list
    assert counts_of_the_log(captured.captured_queries)  # counted, but capped
    assert_counts_are_capped(captured.captured_queries)


def test_a_filtered_count_stops_at_the_cap_and_says_so(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pagination.EstimatedCountPaginator, "count_cap", 100)
    seed(130)

    response = admin_client.get(changelist("?aggregate_id=seed"))

    assert response.context["cl"].result_count == 101
    page = response.content.decode()
    assert '<span class="cqrs-count">100+</span>' in page
    # A page past the ones the capped count implies is still reachable by its number.
    late = admin_client.get(changelist("?aggregate_id=seed&p=3"))
    assert late.status_code == 200
    assert [e.aggregate_version for e in late.context["cl"].result_list] == list(range(30, 0, -1))


def test_the_whole_log_shows_the_estimate_without_counting(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(60)
    monkeypatch.setattr(pagination, "estimated_rows", lambda model, using: 3_000_000)

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(changelist())
        late = admin_client.get(changelist("?p=59000"))

    assert counts_of_the_log(captured.captured_queries) == []
    assert '<span class="cqrs-count">about 3,000,000</span>' in response.content.decode()
    assert len(response.context["cl"].result_list) == 50
    assert late.status_code == 200
    assert list(late.context["cl"].result_list) == []
    # A page past any offset SQL takes: no database error, an empty page.
    huge = admin_client.get(changelist("?p=99999999999999999999"))
    assert huge.status_code in (200, 302), huge.status_code


def test_the_estimate_is_none_off_postgresql() -> None:
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL estimates")
    seed(10)
    assert estimated_rows(StoredEvent, "default") is None


@pytest.mark.postgres
def test_the_estimate_follows_analyze_on_postgresql() -> None:
    seed(3000)
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TABLE}")
    estimate = estimated_rows(StoredEvent, "default")
    assert estimate is not None
    assert 2700 <= estimate <= 3300


# -- indexed filters -----------------------------------------------------------------------


def plan_of(qs: Any) -> str:
    """The database's plan for ``qs``, as text (PostgreSQL: JSON, after ANALYZE)."""
    sql, params = qs.query.get_compiler(using=qs.db).as_sql()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ANALYZE {TABLE}")
            cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
            return str(cursor.fetchone()[0])
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params)
        return " / ".join(str(row[-1]) for row in cursor.fetchall())


def spread(count: int) -> None:
    """``count`` events, each correlation id, user and aggregate id on only a few."""
    StoredEvent.objects.bulk_create(
        StoredEvent(
            event_type="tests.Varied",
            aggregate_type="tests.Seed",
            aggregate_id=f"varied-{i % 300}",
            aggregate_version=i,
            payload={},
            metadata={"correlation_id": f"corr-{i % 600}", "user": f"user-{i % 600}"},
        )
        for i in range(1, count + 1)
    )


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("?correlation_id=corr-7", "django_cqrs_event_corr"),
        ("?user=user-7", "django_cqrs_event_user"),
        ("?aggregate_id=varied-7", "django_cqrs_event_agg_id"),
    ],
)
def test_the_text_filters_read_their_index(admin_client: Client, query: str, index: str) -> None:
    spread(3000)

    response = admin_client.get(changelist(query))

    cl = response.context["cl"]
    assert len(cl.result_list) >= 5
    assert index in plan_of(cl.queryset)


# -- exact search --------------------------------------------------------------------------


def test_search_matches_a_position_aggregate_id_event_type_or_correlation_id_exactly(
    admin_client: Client,
) -> None:
    seed(5, aggregate_id="first-aggregate", metadata={"correlation_id": "corr-abc"})
    [other] = seed(1, aggregate_id="other", event_type="tests.Other", metadata={})

    def found(term: str) -> tuple[list[int], list[str]]:
        with CaptureQueriesContext(connection) as captured:
            response = admin_client.get(changelist("?" + f"q={term}"))
        assert response.status_code == 200
        sql = [q["sql"] for q in captured.captured_queries if TABLE in q["sql"]]
        return sorted(e.position for e in response.context["cl"].result_list), sql

    first_five = sorted(
        StoredEvent.objects.filter(aggregate_id="first-aggregate").values_list("pk", flat=True)
    )
    assert found(str(other.position))[0] == [other.position]
    assert found("first-aggregate")[0] == first_five
    assert found("corr-abc")[0] == first_five
    assert found("tests.Other")[0] == [other.position]
    positions, sql = found("aggregate")  # a part of an id finds nothing, and scans nothing
    assert positions == []
    assert sql
    assert not any("LIKE" in statement.upper() for statement in sql)
    assert found("99999999999999999999999")[0] == []  # past a bigint: no error
    page = admin_client.get(changelist()).content.decode()
    assert "Exact match: a position, an aggregate id" in page


def test_key_text_takes_a_plain_key_and_survives_a_migration_round_trip() -> None:
    from django_cqrs.db.jsontext import KeyText

    with pytest.raises(ValueError, match="plain identifier"):
        KeyText("metadata", "user'); DROP TABLE x; --")
    path, args, kwargs = KeyText("metadata", "user").deconstruct()
    assert (path, args, kwargs) == ("django_cqrs.db.jsontext.KeyText", ("metadata", "user"), {})
    assert KeyText(*args) == KeyText("metadata", "user")
    assert (
        StoredEvent.objects.filter(position__in=[e.pk for e in seed(3, metadata={"user": "ann"})])
        .filter(Exact(KeyText("metadata", "user"), "ann"))
        .count()
        == 3
    )


def test_a_deep_page_skips_primary_keys_not_rows(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pagination, "DEFERRED_OFFSET", 100)
    seed(260)
    expected = list(StoredEvent.objects.order_by("-position").values_list("pk", flat=True))

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(changelist("?p=3"))

    assert [e.pk for e in response.context["cl"].result_list] == expected[100:150]
    offsets = [q["sql"] for q in captured.captured_queries if "OFFSET" in q["sql"].upper()]
    assert offsets
    for sql in offsets:  # the OFFSET query selects the primary key alone
        assert re.match(r'\s*SELECT\s+"django_cqrs_event"\."position"( AS "pk")?\s+FROM', sql), sql


@pytest.mark.postgres  # SQLite's index of a column already ends with the rowid (position)
def test_a_deep_page_of_an_event_type_walks_the_event_type_index(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The keys of a deep ?event_type= page come from the (event_type, position) index
    # alone, in the changelist's order; with the event type indexed on its own, the
    # database walks the log (or sorts every match) to find the page.
    monkeypatch.setattr(pagination, "DEFERRED_OFFSET", 100)
    StoredEvent.objects.bulk_create(
        StoredEvent(
            event_type=f"tests.Type{i % 12}",
            aggregate_type="tests.Seed",
            aggregate_id=f"typed-{i % 300}",
            aggregate_version=i,
            payload={},
            metadata={},
        )
        for i in range(1, 3601)
    )
    expected = list(
        StoredEvent.objects.filter(event_type="tests.Type5")
        .order_by("-position")
        .values_list("pk", flat=True)
    )

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(changelist("?event_type=tests.Type5&p=3"))

    assert [e.pk for e in response.context["cl"].result_list] == expected[100:150]
    [keys] = [q["sql"] for q in captured.captured_queries if "OFFSET" in q["sql"].upper()]
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {TABLE}")
        # A small table: rule out what only pays at this size.
        for method in ("seqscan", "bitmapscan", "sort"):
            cursor.execute(f"SET LOCAL enable_{method} = off")
        cursor.execute("SET LOCAL random_page_cost = 1.1")  # an SSD, as in production
        cursor.execute(f"EXPLAIN (FORMAT JSON) {keys}")
        plan = str(cursor.fetchone()[0])
    assert "'Sort'" not in plan, plan
    assert "'Index Name': 'django_cqrs_event_type'" in plan, plan
