"""OpenTelemetry spans: commands, queries, catch-up batches and tasks, rebuilds, saga steps.

Spans are collected with opentelemetry-sdk: a tracer provider is installed once for the
session (the global provider can be set only once per process), with an exporter that
keeps the spans of the running test only. The last test runs the library in a process
where neither ``opentelemetry`` nor ``prometheus_client`` can be imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import StatusCode

from django_cqrs import command_bus, query_bus, tasks, telemetry
from django_cqrs.exceptions import InvariantViolationError
from django_cqrs.projections.catchup import catch_up
from django_cqrs.projections.rebuild import rebuild
from tests.helpers import CORE_SETTINGS
from tests.testapp.async_projections import AccountTotalsProjection
from tests.testapp.commands import (
    Deposit,
    GetBalance,
    OpenAccount,
    RequestTransfer,
    Withdraw,
)
from tests.testapp.models import TransferRun

REPO = Path(__file__).resolve().parent.parent
TOTALS = AccountTotalsProjection.name
OPEN = f"cqrs.command {OpenAccount.message_name()}"

pytestmark = pytest.mark.django_db


class Recorder(SpanExporter):
    """Keeps the finished spans while a test is running (``armed``), drops the others."""

    def __init__(self) -> None:
        self.armed = False
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.armed:
            self.spans.extend(spans)
        return SpanExportResult.SUCCESS

    def named(self, name: str) -> list[ReadableSpan]:
        return [span for span in self.spans if span.name == name]

    def one(self, name: str) -> ReadableSpan:
        [span] = self.named(name)
        return span


@pytest.fixture(scope="session")
def recorder() -> Recorder:
    exporter = Recorder()
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):  # not set yet in this process
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


@pytest.fixture
def spans(recorder: Recorder) -> Iterator[Recorder]:
    recorder.spans.clear()
    recorder.armed = True
    yield recorder
    recorder.armed = False
    recorder.spans.clear()


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def parent_id(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


def names_span(traceparent: str, span: ReadableSpan) -> bool:
    """Does the W3C ``traceparent`` header name ``span`` (its trace and span ids)?"""
    version, trace_hex, span_hex, _flags = traceparent.split("-")
    return (version, trace_hex, span_hex) == (
        "00",
        f"{trace_id(span):032x}",
        f"{span_id(span):016x}",
    )


def ancestors(span: ReadableSpan, everything: list[ReadableSpan]) -> list[str]:
    """The names of the span's parents, innermost first."""
    by_id = {span_id(s): s for s in everything}
    names = []
    while (parent := by_id.get(parent_id(span) or 0)) is not None:
        names.append(parent.name)
        span = parent
    return names


# -- the buses ---------------------------------------------------------------------------


@pytest.mark.usefixtures("no_trigger")
def test_a_command_is_a_span_with_its_aggregates_position_and_correlation(spans: Recorder) -> None:
    result = command_bus.dispatch(OpenAccount(owner="ada"), metadata={"correlation_id": "c-1"})

    span = spans.one(OPEN)
    assert span.instrumentation_scope is not None
    assert span.instrumentation_scope.name == "django_cqrs"
    assert attrs(span) == {
        "cqrs.command": OpenAccount.message_name(),
        "cqrs.message_id": result.command_id,
        "cqrs.correlation_id": "c-1",
        "cqrs.aggregate": (f"testapp.Account:{result.value}",),
        "cqrs.events": 1,
        "cqrs.position": result.position,
        "cqrs.outcome": "ok",
    }
    assert span.status.status_code == StatusCode.UNSET
    assert span.parent is None


@pytest.mark.usefixtures("no_trigger")
def test_a_failed_command_is_an_error_span_with_the_exception(spans: Recorder) -> None:
    account = command_bus.dispatch(OpenAccount(owner="ada")).value

    with pytest.raises(InvariantViolationError):
        command_bus.dispatch(Withdraw(account_id=account, amount=Decimal("5")))

    span = spans.one(f"cqrs.command {Withdraw.message_name()}")
    assert attrs(span)["cqrs.outcome"] == "error"
    assert "cqrs.position" not in attrs(span)
    assert span.status.status_code == StatusCode.ERROR
    [event] = span.events
    assert event.name == "exception"
    assert str(dict(event.attributes or {})["exception.type"]).endswith("InvariantViolationError")


@pytest.mark.usefixtures("no_trigger")
def test_a_query_is_a_span_and_a_command_inside_a_span_is_its_child(spans: Recorder) -> None:
    with telemetry.span("request", {"cqrs.correlation_id": "c-2"}):
        account = command_bus.dispatch(OpenAccount(owner="ada")).value
        query_bus.dispatch(GetBalance(account_id=account))

    request = spans.one("request")
    command = spans.one(OPEN)
    query = spans.one(f"cqrs.query {GetBalance.message_name()}")
    assert parent_id(command) == parent_id(query) == span_id(request)
    assert attrs(query)["cqrs.query"] == GetBalance.message_name()
    assert attrs(query)["cqrs.outcome"] == "ok"
    # The command's own correlation id (none was given: its message id) is on its span.
    assert attrs(command)["cqrs.correlation_id"] == attrs(command)["cqrs.message_id"]


def test_spans_inherit_the_correlation_id_of_the_span_around_them(spans: Recorder) -> None:
    with telemetry.span("outer", {"cqrs.correlation_id": "c-3"}), telemetry.span("inner"):
        pass
    with telemetry.span("alone"):
        pass

    assert attrs(spans.one("inner"))["cqrs.correlation_id"] == "c-3"
    assert "cqrs.correlation_id" not in attrs(spans.one("alone"))


def test_the_span_api_records_errors_sets_outcomes_and_links(spans: Recorder) -> None:
    with telemetry.span("first", {"skipped": None, "ids": [1, 2], "odd": uuid.UUID(int=1)}) as s:
        headers = telemetry.trace_headers()
        s.set_attribute("cqrs.outcome", "partial")
    with pytest.raises(ValueError, match="boom"), telemetry.span("failing"):
        raise ValueError("boom")
    with telemetry.span("handled") as s:
        s.record_exception(KeyError("k"))
    with telemetry.span("linked", links_from=headers):
        pass

    first = spans.one("first")
    assert attrs(first) == {"ids": (1, 2), "odd": str(uuid.UUID(int=1)), "cqrs.outcome": "partial"}
    assert names_span(headers["traceparent"], first)
    for name in ("failing", "handled"):
        assert attrs(spans.one(name))["cqrs.outcome"] == "error"
        assert spans.one(name).status.status_code == StatusCode.ERROR
    linked = spans.one("linked")
    assert linked.parent is None
    assert [link.context.span_id for link in linked.links] == [span_id(first)]


def test_trace_headers_are_empty_without_a_span_and_use_trace_headers_adopts_a_parent(
    spans: Recorder,
) -> None:
    assert telemetry.trace_headers() == {}
    with telemetry.span("remote"):
        headers = telemetry.trace_headers()

    with telemetry.use_trace_headers(headers), telemetry.span("local"):
        pass
    with telemetry.use_trace_headers({}), telemetry.span("root"):
        pass

    assert parent_id(spans.one("local")) == span_id(spans.one("remote"))
    assert trace_id(spans.one("local")) == trace_id(spans.one("remote"))
    assert spans.one("root").parent is None


@pytest.mark.usefixtures("no_trigger")
def test_tracing_off_records_no_span(spans: Recorder, settings: Any) -> None:
    settings.DJANGO_CQRS = {"TRACING": False, "TRIGGER_ON_COMMIT": False}

    with telemetry.span("outer") as span:
        span.set_attribute("a", 1)
        assert telemetry.trace_headers() == {}
        command_bus.dispatch(OpenAccount(owner="ada"))

    assert spans.spans == []


# -- catch-up, tasks, rebuilds ---------------------------------------------------------------


@pytest.mark.usefixtures("no_trigger")
def test_each_catch_up_batch_is_a_span_with_the_events_read_and_the_checkpoints(
    spans: Recorder,
) -> None:
    opened = command_bus.dispatch(OpenAccount(owner="ada"))
    last = command_bus.dispatch(Deposit(account_id=opened.value, amount=Decimal("5"))).position
    spans.spans.clear()

    assert catch_up(TOTALS, batch_size=1) == 2

    batches = [attrs(span) for span in spans.named("cqrs.projection.batch")]
    assert [
        (b["cqrs.events_read"], b["cqrs.checkpoint.from"], b["cqrs.checkpoint.to"]) for b in batches
    ] == [(1, 0, opened.position), (1, opened.position, last), (0, last, last)]
    assert {b["cqrs.projection"] for b in batches} == {TOTALS}
    assert {b["cqrs.projection.kind"] for b in batches} == {"projection"}
    assert [b.get("cqrs.batch.reason") for b in batches] == [None, None, "caught up"]


def test_a_queued_catch_up_carries_the_trace_context_of_the_command_into_its_task(
    spans: Recorder, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    queued: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr("django_q.tasks.async_task", lambda *a, **kw: queued.append((a, kw)))

    with django_capture_on_commit_callbacks(execute=True):
        result = command_bus.dispatch(OpenAccount(owner="ada"))

    command = spans.one(OPEN)
    [trace_kwarg] = [kw["trace"] for args, kw in queued if args[1] == TOTALS]
    assert names_span(trace_kwarg["traceparent"], command)
    assert trace_kwarg[tasks.TRACE_CORRELATION] == result.correlation_id

    spans.spans.clear()
    # The worker: no span is current there; the task's span continues the command's trace.
    assert tasks.catch_up_task(TOTALS, trace=trace_kwarg) == 1

    task = spans.one("cqrs.catch_up")
    assert (trace_id(task), parent_id(task)) == (trace_id(command), span_id(command))
    assert attrs(task)["cqrs.projection"] == TOTALS
    assert attrs(task)["cqrs.events_read"] == 1
    batches = spans.named("cqrs.projection.batch")
    assert {parent_id(batch) for batch in batches} == {span_id(task)}
    every = [task, *batches]
    assert {attrs(span)["cqrs.correlation_id"] for span in every} == {result.correlation_id}


@pytest.mark.usefixtures("no_trigger")
def test_a_task_queued_outside_any_span_starts_a_trace_of_its_own(spans: Recorder) -> None:
    command_bus.dispatch(OpenAccount(owner="ada"))
    spans.spans.clear()

    tasks.catch_up_task(TOTALS)

    assert spans.one("cqrs.catch_up").parent is None
    assert "cqrs.correlation_id" not in attrs(spans.one("cqrs.catch_up"))


@pytest.mark.usefixtures("no_trigger")
def test_a_rebuild_is_a_span(spans: Recorder) -> None:
    account = command_bus.dispatch(OpenAccount(owner="ada")).value
    command_bus.dispatch(Deposit(account_id=account, amount=Decimal("5")))

    applied = rebuild("testapp.AccountViewProjection")

    span = spans.one("cqrs.rebuild")
    assert attrs(span) == {
        "cqrs.projection": "testapp.AccountViewProjection",
        "cqrs.events_applied": applied,
        "cqrs.outcome": "ok",
    }
    assert applied == 2


# -- sagas -------------------------------------------------------------------------------


def _transfer(amount: str) -> tuple[Any, uuid.UUID]:
    alice = command_bus.dispatch(OpenAccount(owner="alice")).value
    bob = command_bus.dispatch(OpenAccount(owner="bob")).value
    command_bus.dispatch(Deposit(account_id=alice, amount=Decimal("100")))
    transfer_id = uuid.uuid4()
    result = command_bus.dispatch(
        RequestTransfer(
            transfer_id=transfer_id, source_id=alice, target_id=bob, amount=Decimal(amount)
        )
    )
    return result, transfer_id


@pytest.mark.django_db(transaction=True)
def test_saga_steps_are_spans_in_the_trace_and_correlation_of_the_command_that_started_them(
    spans: Recorder,
) -> None:
    result, transfer_id = _transfer("30")

    assert TransferRun.objects.get(key=str(transfer_id)).state == "awaiting_confirmation"
    requested = spans.one(f"cqrs.command {RequestTransfer.message_name()}")
    steps = spans.named("cqrs.saga.step")
    assert [
        (attrs(s)["cqrs.saga.step"], attrs(s)["cqrs.command"], attrs(s)["cqrs.outcome"])
        for s in steps
    ] == [
        ("withdraw", Withdraw.message_name(), "ok"),
        ("deposit", Deposit.message_name(), "ok"),
    ]
    for step in steps:
        assert attrs(step)["cqrs.saga"] == "testapp.TransferSaga"
        assert attrs(step)["cqrs.saga.instance"] == str(transfer_id)
        # Queued by the request's commit (run inline here), caught up, then the step.
        assert ancestors(step, spans.spans)[:3] == [
            "cqrs.projection.batch",
            "cqrs.catch_up",
            requested.name,
        ]
        [sent] = [s for s in spans.spans if parent_id(s) == span_id(step)]
        assert sent.name == f"cqrs.command {attrs(step)['cqrs.command']}"
    in_trace = [s for s in spans.spans if trace_id(s) == trace_id(requested)]
    assert {attrs(s)["cqrs.correlation_id"] for s in in_trace} == {result.correlation_id}


@pytest.mark.django_db(transaction=True)
def test_a_refused_saga_step_is_an_error_span(spans: Recorder) -> None:
    _, transfer_id = _transfer("500")  # more than alice has: the withdrawal is refused

    assert TransferRun.objects.get(key=str(transfer_id)).state == "compensated"
    [step] = spans.named("cqrs.saga.step")
    assert attrs(step)["cqrs.saga.step"] == "withdraw"
    assert attrs(step)["cqrs.outcome"] == "error"
    assert step.status.status_code == StatusCode.ERROR
    assert [event.name for event in step.events] == ["exception"]


# -- without the extras ------------------------------------------------------------------

#: Runs in the child process: opentelemetry and prometheus_client cannot be imported.
SCRIPT = """
import importlib.abc, json, sys

BLOCKED = ("opentelemetry", "prometheus_client")

class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, Blocked())

import django
django.setup()
from decimal import Decimal
from django.core.management import call_command
from django.test import RequestFactory
from django_cqrs import bus, command_bus, metrics, query_bus, telemetry, views
from django_cqrs.projections.catchup import catch_up
from django_cqrs.projections.rebuild import rebuild
from tests.testapp.commands import Deposit, GetBalance, OpenAccount, Withdraw

call_command("migrate", "--noinput", "-v", "0")
account = command_bus.dispatch(OpenAccount(owner="ada")).value
command_bus.dispatch(Deposit(account_id=account, amount=Decimal("5")))
try:
    command_bus.dispatch(Withdraw(account_id=account, amount=Decimal("50")))
except Exception as exc:
    refused = type(exc).__name__
balance = query_bus.dispatch(GetBalance(account_id=account))
with telemetry.span("relay", {"a": 1}) as span:
    span.set_attribute("b", 2)
    span.record_exception(ValueError("x"))
    headers = telemetry.trace_headers()
with telemetry.use_trace_headers({"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}):
    pass
metrics.relay_published("bus", 3)
metrics.observe_relay_batch("bus", 3, 0.5)
response = views.metrics(RequestFactory().get("/metrics"))
print(json.dumps({
    "available": [telemetry.AVAILABLE, metrics.AVAILABLE, bus.OBSERVED],
    "refused": refused,
    "balance": str(balance),
    "caught_up": catch_up("testapp.AccountTotalsProjection"),
    "rebuilt": rebuild("testapp.AccountViewProjection"),
    "headers": headers,
    "metrics": [response.status_code, response.content.decode()],
    "loaded": [m for m in sys.modules if m.split(".")[0] in BLOCKED],
}))
"""


def test_the_library_works_without_opentelemetry_and_prometheus_client(tmp_path: Path) -> None:
    (tmp_path / "bare_settings.py").write_text(
        textwrap.dedent(CORE_SETTINGS.format(db=str(tmp_path / "bare.sqlite3")))
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DATABASE")},
        "DJANGO_SETTINGS_MODULE": "bare_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["available"] == [False, False, False]
    assert report["loaded"] == []
    assert report["refused"] == "InvariantViolationError"
    assert (report["caught_up"], report["rebuilt"]) == (2, 2)
    assert report["headers"] == {}
    status, body = report["metrics"]
    assert status == 501
    assert "prometheus_client is not installed" in body
