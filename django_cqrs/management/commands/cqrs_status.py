"""Show each projection: mode, checkpoint, head, lag, state, activity (``cqrs_status``).

The activity (live, catching up, stalled, paused, failing, rebuilding) is what the
projection is doing; ``--json`` adds it under ``activity``, next to the run state under
``status``, with ``no_progress_seconds``.

Sagas are listed with the projections (they are async projections), and each has a line
after the table: its instances by state (running, completed, compensated, failed), its
parked instances, its pending and overdue deadlines. ``--json`` has these under ``saga``
in the saga's entry.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_cqrs.projections.status import (
    INSTANCE_BUCKETS,
    Activity,
    ProjectionStatus,
    SagaStatus,
    horizon_status,
    lag_cap,
    projection_status,
)


class Command(BaseCommand):
    help = "Show each projection's mode, checkpoint, head of the log, lag, state and activity."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = projection_status()
        if options["json"]:
            self.stdout.write(json.dumps([row.as_dict() for row in rows], indent=2))
            return
        # The activity before "parked": the last column stays the parked count.
        header = (
            *("projection", "mode", "position", "head", "lag", "lag s", "status"),
            *("activity", "parked"),
        )
        table = [header] + [
            (
                r.name,
                r.mode,
                str(r.position),
                str(r.head),
                f"{r.lag_events}+" if r.lag_events >= lag_cap() else str(r.lag_events),
                f"{r.lag_seconds:.1f}",
                r.state + (" (rebuilding)" if r.rebuilding else ""),
                _activity(r),
                str(r.parked),
            )
            for r in rows
        ]
        widths = [max(len(line[i]) for line in table) for i in range(len(header))]
        for line in table:
            self.stdout.write(
                "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            )
        if not rows:
            self.stdout.write("No projections are registered.")
        # A line per saga after the table (the table's rows stay one per projection).
        for row in rows:
            if row.saga is not None:
                self.stdout.write(_saga_line(row.name, row.saga))
        horizon = horizon_status()
        if horizon.held_back_events:
            self.stdout.write(
                f"{horizon.held_back_events} committed event(s) wait behind a transaction open "
                f"for {horizon.held_back_seconds:.1f} s (pid {horizon.pid}, database "
                f"{horizon.database}): readers reach them when it ends."
            )


def _saga_line(name: str, saga: SagaStatus) -> str:
    """``Saga <name>: instances 2 running, 1 completed, ...; 1 parked; deadlines ...``."""
    instances = ", ".join(f"{saga.instances[bucket]} {bucket}" for bucket in INSTANCE_BUCKETS)
    return (
        f"Saga {name}: instances {instances}; {saga.parked_instances} parked; deadlines "
        f"{saga.pending_deadlines} pending, {saga.overdue_deadlines} overdue."
    )


def _activity(row: ProjectionStatus) -> str:
    if row.activity == Activity.STALLED:
        return f"{row.activity} (no progress for {row.no_progress_seconds:.0f} s)"
    return row.activity
