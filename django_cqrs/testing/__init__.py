"""The test toolkit: scenarios for handlers, projections and sagas, and what they need.

    from django_cqrs.testing import ANY, CommandScenario, ProjectionScenario, SagaScenario
    from django_cqrs.testing import FrozenClock, capture_events, run_async_projections

- :class:`CommandScenario`: given commands (or prepared aggregates), when a command,
  then exactly these events — or this error, with nothing written to any table.
- :class:`ProjectionScenario`: given events (or commands), then these read-model rows,
  and the same rows again after a rebuild from the log.
- :class:`SagaScenario`: given events, when an event or time passing, then these
  commands dispatched; deadlines on a :class:`FrozenClock`.
- :func:`capture_events`, :func:`capture_commands`: what a block recorded and dispatched.
- :func:`run_async_projections`: async projections and sagas run until the log is
  drained, in the test's process, without a cluster.
- :data:`ANY`, :func:`instance_of`: matchers for the fields a test cannot know.

Installing django_cqrs installs a pytest plugin too (the ``pytest11`` entry point
``django_cqrs``: ``django_cqrs.testing.pytest_plugin``), with the fixtures ``clock``,
``captured_events`` and ``run_async_projections``. See docs/testing.md.

Names load on first access (as ``django_cqrs``'s own do): the plugin imports this
package when pytest starts, before Django is set up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import lazy_namespace

_LAZY = {
    "ANY": "django_cqrs.testing.diff",
    "instance_of": "django_cqrs.testing.diff",
    "assert_messages": "django_cqrs.testing.diff",
    "CapturedCommands": "django_cqrs.testing.capture",
    "CapturedEvents": "django_cqrs.testing.capture",
    "DispatchedCommand": "django_cqrs.testing.capture",
    "capture_commands": "django_cqrs.testing.capture",
    "capture_events": "django_cqrs.testing.capture",
    "FrozenClock": "django_cqrs.testing.clock",
    "Snapshot": "django_cqrs.testing.snapshot",
    "run_async_projections": "django_cqrs.testing.runner",
    "CommandOutcome": "django_cqrs.testing.scenarios",
    "CommandScenario": "django_cqrs.testing.scenarios",
    "ProjectionScenario": "django_cqrs.testing.scenarios",
    "SagaOutcome": "django_cqrs.testing.scenarios",
    "SagaScenario": "django_cqrs.testing.scenarios",
    "append_events": "django_cqrs.testing.scenarios",
    "events_of": "django_cqrs.testing.scenarios",
    # Run an upcaster chain on a stored payload: what an old event reads as today.
    "upcast_payload": "django_cqrs.events",
}

#: Spelled out for mypy, which reads a literal ``__all__`` (tests/test_package.py keeps it
#: equal to the names loaded).
__all__ = [
    "ANY",
    "CapturedCommands",
    "CapturedEvents",
    "CommandOutcome",
    "CommandScenario",
    "DispatchedCommand",
    "FrozenClock",
    "ProjectionScenario",
    "SagaOutcome",
    "SagaScenario",
    "Snapshot",
    "append_events",
    "assert_messages",
    "capture_commands",
    "capture_events",
    "events_of",
    "instance_of",
    "run_async_projections",
    "upcast_payload",
]

if TYPE_CHECKING:
    from ..events import upcast_payload
    from .capture import (
        CapturedCommands,
        CapturedEvents,
        DispatchedCommand,
        capture_commands,
        capture_events,
    )
    from .clock import FrozenClock
    from .diff import ANY, assert_messages, instance_of
    from .runner import run_async_projections
    from .scenarios import (
        CommandOutcome,
        CommandScenario,
        ProjectionScenario,
        SagaOutcome,
        SagaScenario,
        append_events,
        events_of,
    )
    from .snapshot import Snapshot


__getattr__, __dir__ = lazy_namespace(__name__, _LAZY, globals())
