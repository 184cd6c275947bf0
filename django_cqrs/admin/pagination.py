"""A changelist paginator that never counts a long table in full.

    class StoredEventAdmin(admin.ModelAdmin):
        paginator = EstimatedCountPaginator
        show_full_result_count = False

``count`` is, for the whole table (no filter, no search), PostgreSQL's estimate of its
rows (:func:`django_cqrs.db.estimates.estimated_rows`) when that is above
``COUNT_CAP``; otherwise, and for every filtered queryset, a count of at most
``COUNT_CAP + 1`` rows (``SELECT COUNT(*) FROM (... LIMIT 10001)``): exact below the cap,
"10,000+" above it. Either way any page number stays reachable: past the last page the
count implies, a page is just empty. A deep page reads the primary keys it skips, not
the rows (a "deferred join").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.db.models import QuerySet
from django.utils.functional import cached_property

from ..db.estimates import estimated_rows

#: Most rows a filtered changelist counts; above it the page says "10,000+".
COUNT_CAP = 10_000

#: From this offset on, a page reads its primary keys first, then its rows.
DEFERRED_OFFSET = 1_000


#: The largest offset a page may ask for.
MAX_OFFSET = 2**62


if TYPE_CHECKING:  # django-stubs makes Paginator generic; Django's class is not subscriptable
    AnyPaginator = Paginator[Any]
else:
    AnyPaginator = Paginator


class EstimatedCountPaginator(AnyPaginator):
    """``count`` estimated (whole table) or capped (filtered); ``exact`` says which."""

    count_cap = COUNT_CAP

    #: ``"exact"``, ``"estimate"`` (the table's rows, about) or ``"capped"`` (more than the cap).
    kind = "exact"

    @cached_property
    def count(self) -> int:
        qs = self.object_list
        if not isinstance(qs, QuerySet):
            return super().count
        if _whole_table(qs):
            estimate = estimated_rows(qs.model, qs.db)
            if estimate is not None and estimate > self.count_cap:
                self.kind = "estimate"
                return estimate
        counted = qs.order_by()[: self.count_cap + 1].count()
        if counted > self.count_cap:
            self.kind = "capped"
        return counted

    @property
    def exact(self) -> bool:
        self.count  # noqa: B018 - the count decides the kind
        return self.kind == "exact"

    @property
    def count_text(self) -> str:
        """The count as the page shows it: "42", "about 3,000,000" or "10,000+"."""
        count = self.count
        if self.kind == "estimate":
            return f"about {count:,}"
        if self.kind == "capped":
            return f"{self.count_cap:,}+"
        return f"{count:,}"

    def validate_number(self, number: Any) -> int:
        if self.exact:
            valid: int = super().validate_number(number)
            return valid
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            page = int(number)
        except (TypeError, ValueError) as error:
            raise PageNotAnInteger("That page number is not an integer") from error
        if page < 1:
            raise EmptyPage("That page number is less than 1")
        if (page - 1) * self.per_page > MAX_OFFSET:
            # Past any log there can be, and past what an SQL OFFSET takes (a bigint).
            raise EmptyPage("That page contains no results")
        return page

    def page(self, number: Any) -> Page[Any]:
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        top = bottom + self.per_page
        if self.exact and top + self.orphans >= self.count:
            top = self.count
        rows = self.object_list[bottom:top]
        qs = self.object_list
        if isinstance(qs, QuerySet) and bottom >= DEFERRED_OFFSET:
            # A deep OFFSET walks every row before the page: walk the primary key alone
            # (on PostgreSQL an index-only scan), then fetch just the page's rows.
            keys = list(qs.values_list("pk", flat=True)[bottom:top])
            rows = qs.filter(pk__in=keys)
        return Page(rows, number, self)


def _whole_table(qs: QuerySet[Any]) -> bool:
    """Whether ``qs`` selects every row of its table (ordering aside)."""
    query = qs.query
    return (
        not query.where
        and not query.distinct
        and query.low_mark == 0
        and query.high_mark is None
        and not query.combinator
    )
