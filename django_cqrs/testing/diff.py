"""Matchers and readable failures: expected and recorded messages, shown as a diff.

    from django_cqrs.testing import ANY, instance_of

    OrderPlaced(order_id=ANY, customer_id=ada, lines=[...], total=Decimal("5.00"), ...)
    PaymentRequested(payment_id=instance_of(UUID), order_id=order_id, amount=Decimal("5"))

Messages (events, commands) are frozen dataclasses: an expected one equals a recorded one
of the same class when every field does, and ``ANY`` (or ``instance_of(...)``) in a field
equals whatever the recorded field holds, nested lists and dataclasses included.

:func:`assert_messages` fails with an ``AssertionError`` whose text is a diff of the
expected messages and the recorded ones, one field a line. A field a matcher accepted is
shown with the recorded value on both sides, so the diff shows only what differs.
"""

from __future__ import annotations

import dataclasses
import difflib
import pprint
from collections.abc import Iterable, Sequence
from typing import Any

#: How wide a field's value is printed before it is split over lines.
WIDTH = 88


class _Any:
    """Equal to everything: a field whose value the test does not know (an id, a time)."""

    def __eq__(self, other: object) -> bool:
        return True

    def __ne__(self, other: object) -> bool:
        return False

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return "ANY"


#: Matches any value in an expected message's field.
ANY: Any = _Any()


class instance_of:
    """Equal to any instance of ``types``: ``payment_id=instance_of(UUID)``."""

    def __init__(self, *types: type) -> None:
        if not types or not all(isinstance(t, type) for t in types):
            raise TypeError("instance_of() takes one or more types")
        self.types = types

    def __eq__(self, other: object) -> bool:
        return isinstance(other, self.types)

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(self.types)

    def __repr__(self) -> str:
        return f"instance_of({', '.join(t.__name__ for t in self.types)})"


def _fields(value: Any) -> list[tuple[str, Any]] | None:
    """The ``(name, value)`` of a dataclass instance's fields (None: not a dataclass)."""
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return None
    return [(f.name, getattr(value, f.name)) for f in dataclasses.fields(value)]


def describe(value: Any, *, like: Any = None) -> list[str]:
    """Lines showing ``value``: a dataclass one field a line, anything else as ``repr``.

    With ``like`` (a recorded value of the same class), each field that equals ``like``'s
    is shown as ``like`` has it, so that matchers do not show up as differences.
    """
    fields = _fields(value)
    if fields is None:
        return pprint.pformat(value, width=WIDTH).splitlines()
    theirs = dict(_fields(like) or []) if type(like) is type(value) else {}
    lines = [f"{type(value).__name__}("]
    for name, mine in fields:
        shown = theirs[name] if name in theirs and mine == theirs[name] else mine
        text = pprint.pformat(shown, width=WIDTH - len(name) - 5).splitlines()
        lines.append(f"    {name}={text[0]}")
        lines.extend(f"    {' ' * (len(name) + 1)}{line}" for line in text[1:])
        lines[-1] += ","
    lines.append(")")
    return lines


def diff(expected: Sequence[Any], recorded: Sequence[Any]) -> str:
    """A diff of two lists of messages: ``-`` expected only, ``+`` recorded only."""
    left: list[str] = []
    right: list[str] = []
    counterpart = _counterparts(expected, recorded)
    for index, value in enumerate(expected):
        like = recorded[counterpart[index]] if index in counterpart else None
        left.extend(describe(value, like=like))
    for value in recorded:
        right.extend(describe(value))
    lines = [line for line in difflib.ndiff(left, right) if not line.startswith("? ")]
    return "\n".join(["- expected", "+ recorded", *lines])


def _counterparts(expected: Sequence[Any], recorded: Sequence[Any]) -> dict[int, int]:
    """Expected index -> the recorded message it stands for: same classes, in order (an
    extra or missing message does not shift the pairs after it)."""
    matcher = difflib.SequenceMatcher(
        a=[type(m).__qualname__ for m in expected],
        b=[type(m).__qualname__ for m in recorded],
        autojunk=False,
    )
    return {
        block.a + k: block.b + k
        for block in matcher.get_matching_blocks()
        for k in range(block.size)
    }


def same(expected: Sequence[Any], recorded: Sequence[Any]) -> bool:
    """Do the two lists hold equal messages, class for class, in the same order? (A
    matcher in place of a message, ``ANY``, matches whatever is recorded there.)"""
    return len(expected) == len(recorded) and all(
        (type(e) is type(r) or _fields(e) is None) and e == r
        for e, r in zip(expected, recorded, strict=True)
    )


def assert_messages(expected: Iterable[Any], recorded: Iterable[Any], *, title: str) -> None:
    """Fail with ``title`` and a diff unless ``recorded`` equals ``expected``, in order."""
    wanted, got = list(expected), list(recorded)
    if not same(wanted, got):
        counts = f"expected {len(wanted)}, recorded {len(got)}"
        raise AssertionError(f"{title} ({counts}):\n{diff(wanted, got)}")


def names(messages: Iterable[Any]) -> str:
    """``OrderPlaced, StockReserved`` (or ``nothing``): the classes of ``messages``."""
    listed = [type(message).__name__ for message in messages]
    return ", ".join(listed) if listed else "nothing"


def is_matcher(value: Any) -> bool:
    return isinstance(value, _Any | instance_of)


def row_matches(wanted: dict[str, Any], row: dict[str, Any]) -> bool:
    """Does ``row`` hold ``wanted``'s values in the fields ``wanted`` names?"""
    return all(key in row and value == row[key] for key, value in wanted.items())


def match_rows(
    wanted: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]
) -> list[int] | None:
    """For each wanted row (the fields a test names), the index of the row it matches,
    each row used once; None when they do not pair up. Rows with fewer matchers choose
    first, so that an ``ANY`` does not take the row a more specific one needs."""
    if len(wanted) != len(rows):
        return None
    order = sorted(range(len(wanted)), key=lambda i: sum(map(is_matcher, wanted[i].values())))
    taken: dict[int, int] = {}
    for i in order:
        used = set(taken.values())
        found = next(
            (j for j, row in enumerate(rows) if j not in used and row_matches(wanted[i], row)),
            None,
        )
        if found is None:
            return None
        taken[i] = found
    return [taken[i] for i in range(len(wanted))]


def aligned_rows(
    wanted: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``rows`` to show facing ``wanted``: each row a wanted one matches at its place,
    with the fields it names; then the others, with every field named anywhere."""
    left = list(rows)
    named = list(dict.fromkeys(key for row in wanted for key in row))
    shown: list[dict[str, Any]] = []
    for want in wanted:
        index = next((j for j, row in enumerate(left) if row_matches(want, row)), None)
        if index is not None:
            row = left.pop(index)
            shown.append({key: row[key] for key in want})
    return shown + [{key: row[key] for key in named if key in row} for row in left]


def rows_diff(
    left: Sequence[dict[str, Any]],
    right: Sequence[dict[str, Any]],
    *,
    names: tuple[str, str] = ("expected", "found"),
) -> str:
    """A diff of two lists of rows (dicts), one row a block; ``left``'s values that equal
    ``right``'s row at the same place are shown as ``right`` has them."""

    def lines(rows: Sequence[dict[str, Any]], like: Sequence[dict[str, Any]]) -> list[str]:
        out = []
        for index, row in enumerate(rows):
            other = like[index] if index < len(like) else {}
            shown = {k: other[k] if k in other and v == other[k] else v for k, v in row.items()}
            out.extend(pprint.pformat(shown, width=WIDTH, sort_dicts=False).splitlines())
        return out

    body = difflib.ndiff(lines(left, right), lines(right, []))
    kept = [line for line in body if not line.startswith("? ")]
    return "\n".join([f"- {names[0]}", f"+ {names[1]}", *kept])
