"""django_cqrs's pytest plugin: the toolkit's fixtures, with nothing to import.

Installing django_cqrs registers this module under the ``pytest11`` entry point
``django_cqrs`` (``pytest -p no:django_cqrs`` turns it off), so every test of a project
that has the package installed gets:

- ``clock``: a running :class:`~django_cqrs.testing.FrozenClock`, stopped after the test;
- ``captured_events``: the events recorded during the test (``capture_events()``);
- ``run_async_projections``: :func:`~django_cqrs.testing.run_async_projections`;

and one check: a test fails when a ``CommandScenario``'s command raised an error that no
``then_error()`` (or ``then_events()``) looked at, so an unexpected error cannot pass
unseen.

pytest imports this module when it starts, before Django is set up (pytest-django sets
it up later): the fixtures import the toolkit when they run.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from django_cqrs.testing.capture import CapturedEvents
    from django_cqrs.testing.clock import FrozenClock

SCENARIOS = "django_cqrs.testing.scenarios"


@pytest.fixture
def clock() -> Iterator[FrozenClock]:
    """``timezone.now()`` frozen at the test's start until ``clock.advance(seconds=...)``."""
    from django_cqrs.testing.clock import FrozenClock

    with FrozenClock() as running:
        yield running


@pytest.fixture
def captured_events() -> Iterator[CapturedEvents]:
    """The events recorded while the test runs (after the fixtures before this one)."""
    from django_cqrs.testing.capture import capture_events

    with capture_events() as captured:
        yield captured


@pytest.fixture
def run_async_projections() -> Callable[..., int]:
    """Catch up every async projection and saga until the log is drained."""
    from django_cqrs.testing.runner import run_async_projections as run

    return run


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, Any, Any]:
    _unexamined()  # forget what an earlier test left
    try:
        result = yield
    except BaseException:
        _unexamined()
        raise
    pending = _unexamined()
    if pending:
        scenarios = sys.modules[SCENARIOS]
        pytest.fail(scenarios.unexamined_text(pending), pytrace=False)
    return result


def _unexamined() -> list[Any]:
    """The scenario outcomes with an error nothing looked at (none if no test of this run
    has used a scenario: the module is then not even imported)."""
    scenarios = sys.modules.get(SCENARIOS)
    return [] if scenarios is None else list(scenarios.take_unexamined())
