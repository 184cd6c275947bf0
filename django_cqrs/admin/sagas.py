"""Sagas in the admin: each instance's state, steps, deadlines and parked events; retry, skip.

    # admin/<app>/<instance model>/                  the instances: state, last step, parked
    # admin/<app>/<instance model>/<pk>/change/      one instance: steps, deadlines, parked
    # admin/<app>/<instance model>/<pk>/retry/       GET: confirm; POST: retry_instance()
    # admin/<app>/<instance model>/<pk>/skip/        GET: confirm; POST: skip_instance()
    # admin/django_cqrs/sagadeadline/                every deadline: pending, fired, cancelled

Every concrete ``SagaInstance`` model of the installed apps is registered with
:class:`SagaInstanceAdmin` at start-up (:func:`autoregister_sagas`), unless an
``admin.py`` registered it first; ``SagaDeadline`` is registered with the app's models.
The pages are read-only. Viewing an instance table needs its model's ``view``
permission; retry and skip need ``django_cqrs.operate_projection`` as well (the
permission of the projections dashboard's retry and skip: a saga is a projection), and
each that ran is written to the instance's admin log (``LogEntry``).
"""

from __future__ import annotations

import datetime as dt
import logging
from functools import partial
from typing import Any

from django.apps import apps
from django.contrib import admin, messages
from django.contrib.admin.apps import AdminConfig
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import urlencode
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_http_methods

from ..exceptions import CQRSError
from ..models import ParkedEvent, SagaDeadline
from ..projections.status import overdue_cutoff
from ..sagas.base import (
    COMPENSATED,
    COMPENSATION_FAILED,
    COMPENSATION_SUCCEEDED,
    COMPLETED,
    FAILED,
    STEP_FAILED,
    SUCCEEDED,
    Saga,
    SagaInstance,
    all_sagas,
    retry_instance,
    skip_instance,
)
from .events import breakable, compact_time, shorten
from .filters import ExactFilter
from .mixins import AnyModelAdmin, ReadOnlyAdminMixin
from .pagination import EstimatedCountPaginator
from .projections import OPERATE

logger = logging.getLogger("django_cqrs")

#: The badge of an instance's state and of a step's outcome (styles.html).
_BADGES = {
    COMPLETED: "ok",
    COMPENSATED: "paused",
    FAILED: "failing",
    SUCCEEDED: "ok",
    STEP_FAILED: "failing",
    COMPENSATION_SUCCEEDED: "paused",
    COMPENSATION_FAILED: "failing",
}
#: The keys of a step shown in their own column; the others show as details.
_STEP_COLUMNS = ("step", "command", "outcome", "error", "at", "compensated")


def saga_of(model: type[models.Model]) -> type[Saga] | None:
    """The registered saga whose instances ``model`` holds (None: no such saga)."""
    return next((cls for cls in all_sagas() if cls.instance_model is model), None)


def _when(value: dt.datetime) -> str:
    """``2026-12-01 15:50:33`` that wraps between the date and the time only."""
    day, _, time = compact_time(value).partition(" ")
    return format_html('<span class="cqrs-nowrap">{}</span> {}', day, time)


def last_line(text: str, limit: int = 120) -> str:
    """The last line of an error or traceback (the exception), cut to ``limit``."""
    lines = text.strip().splitlines()
    line = lines[-1] if lines else ""
    return f"{line[: limit - 1]}…" if len(line) > limit else line


class ParkedFilter(admin.SimpleListFilter):
    """Parked (held at an event that failed) or not."""

    title = "parked"
    parameter_name = "parked"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "parked"), ("no", "not parked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        if self.value() == "yes":
            return queryset.filter(parked=True)
        if self.value() == "no":
            return queryset.filter(parked=False)
        return queryset


class SagaInstanceAdmin(ReadOnlyAdminMixin, AnyModelAdmin):
    """Read-only admin of a saga's instances, with retry and skip for a parked one.

    The list fits a 1280-px screen beside the navigation sidebar and the filters: short
    keys (the whole key in the link's title), the last step with its outcome under it,
    compact times.
    """

    # Five columns, each with a second figure under the first, so that the list fits a
    # 1280-px screen beside the navigation sidebar and the filters.
    list_display = ("instance_key", "instance_state", "last_step", "short_error", "times")
    list_display_links = ("instance_key",)
    list_filter = ("state", ParkedFilter)
    search_fields = ("key",)
    search_help_text = "The instance's key, or its beginning."
    ordering = ("-pk",)
    list_per_page = 50
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    change_form_template = "admin/django_cqrs/sagainstance/change_form.html"
    change_list_template = "admin/django_cqrs/sagainstance/change_list.html"

    # -- the list -------------------------------------------------------------------

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Any], search_term: str
    ) -> tuple[QuerySet[Any], bool]:
        """Instances whose key starts with the term (the key's unique index: no scan)."""
        term = search_term.strip()
        if not term:
            return queryset, False
        return queryset.filter(key__startswith=term), False

    @admin.display(description="key", ordering="key")
    def instance_key(self, obj: SagaInstance) -> str:
        return format_html('<span title="{}">{}</span>', obj.key, shorten(obj.key))

    @admin.display(description="state", ordering="state")
    def instance_state(self, obj: SagaInstance) -> str:
        """The state; a red "parked" under it, or when it finished."""
        under: str
        if obj.parked:
            n = len(obj.parked_positions)
            under = format_html(
                '<span class="cqrs-sub"><span class="cqrs-badge failing" title="{}">parked</span>'
                "</span>",
                f"held at {n} event{'' if n == 1 else 's'}: retry or skip it on its page",
            )
        elif obj.finished_at:
            under = format_html('<span class="cqrs-sub">finished {}</span>', _when(obj.finished_at))
        else:
            under = ""
        return format_html("{}{}", _badge(obj.state), under)

    @admin.display(description="last step")
    def last_step(self, obj: SagaInstance) -> str:
        """The step recorded last, its outcome and how many steps ran."""
        steps = obj.steps or []
        if not steps:
            return format_html('-<span class="cqrs-sub">{}</span>', "no step yet")
        step = steps[-1]
        n = len(steps)
        return format_html(
            '{}<span class="cqrs-sub">{} · {}\u00a0step{}</span>',
            step.get("step", "?"),
            step.get("outcome", ""),
            n,
            "" if n == 1 else "s",
        )

    @admin.display(description="error")
    def short_error(self, obj: SagaInstance) -> str:
        text = last_line(obj.error or "", 80)
        return format_html('<span class="cqrs-error-text">{}</span>', text) if text else "-"

    @admin.display(description="started / updated", ordering="started_at")
    def times(self, obj: SagaInstance) -> str:
        return format_html(
            '{}<span class="cqrs-sub">updated {}</span>',
            _when(obj.started_at),
            _when(obj.updated_at),
        )

    # -- one instance ---------------------------------------------------------------

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        base = {f.name for f in SagaInstance._meta.get_fields()}
        own = [
            f.name
            for f in self.model._meta.concrete_fields
            if f.name not in base and not f.primary_key
        ]
        return [
            "saga_name",
            "key",
            "instance_state",
            *own,
            "error_text",
            "started_at",
            "updated_at",
            "finished_at",
            "last_position",
        ]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

    @admin.display(description="saga")
    def saga_name(self, obj: SagaInstance) -> str:
        saga = saga_of(type(obj))
        if saga is None:
            return "-"
        name = saga.partition_for(obj.key).name  # the partition whose checkpoint it is on
        try:
            url = reverse(f"{self.admin_site.name}:django_cqrs_projectionstate_change", args=[name])
        except NoReverseMatch:
            return name
        return format_html('<a href="{}">{}</a>', url, breakable(name))

    @admin.display(description="error")
    def error_text(self, obj: SagaInstance) -> str:
        if not obj.error:
            return "-"
        return format_html('<pre class="cqrs-traceback">{}</pre>', obj.error)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        obj = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if obj is not None:
            context.update(self.instance_context(request, obj))
        return super().change_view(request, object_id, form_url, context)

    def instance_context(self, request: HttpRequest, obj: SagaInstance) -> dict[str, Any]:
        """What the change page shows beside the fields: steps, deadlines, parked events."""
        saga = saga_of(type(obj))
        may_operate = saga is not None and obj.parked and request.user.has_perm(OPERATE)
        return {
            "saga": saga,
            "steps": [_step_row(i, step) for i, step in enumerate(obj.steps or [], start=1)],
            "deadlines": self._deadlines(saga, obj),
            "deadlines_url": self._deadlines_url(saga, obj),
            "parked_events": self._parked_events(saga, obj),
            "retry_url": self._action_url("retry", obj) if may_operate else "",
            "skip_url": self._action_url("skip", obj) if may_operate else "",
        }

    def _deadlines(self, saga: type[Saga] | None, obj: SagaInstance) -> list[dict[str, Any]]:
        if saga is None:
            return []
        cutoff = overdue_cutoff()
        rows = []
        for deadline in SagaDeadline.objects.filter(saga=saga.name, instance_key=obj.key):
            if deadline.fired_at is not None:
                state, when = "fired", deadline.fired_at
            elif deadline.cancelled_at is not None:
                state, when = "cancelled", deadline.cancelled_at
            elif cutoff is not None and deadline.due_at < cutoff:
                state, when = "overdue", None
            else:
                state, when = "pending", None
            rows.append(
                {
                    "deadline": deadline,
                    "state": state,
                    "badge": {"fired": "ok", "overdue": "failing", "pending": ""}.get(state, ""),
                    "when": when,
                    "error": last_line(deadline.last_error),
                }
            )
        return rows

    def _deadlines_url(self, saga: type[Saga] | None, obj: SagaInstance) -> str:
        if saga is None:
            return ""
        try:
            url = reverse(f"{self.admin_site.name}:django_cqrs_sagadeadline_changelist")
        except NoReverseMatch:
            return ""
        return f"{url}?{urlencode({'saga': saga.name, 'instance_key': obj.key})}"

    def _parked_events(self, saga: type[Saga] | None, obj: SagaInstance) -> list[dict[str, Any]]:
        positions = list(obj.parked_positions or [])
        if not positions:
            return []
        found = {}
        if saga is not None:
            found = {
                event.position: event
                for event in ParkedEvent.objects.filter(
                    projection=saga.partition_for(obj.key).name, position__in=positions
                )
            }
        rows = []
        for i, position in enumerate(positions):
            try:
                url = reverse(
                    f"{self.admin_site.name}:django_cqrs_storedevent_change", args=[position]
                )
            except NoReverseMatch:
                url = ""
            event = found.get(position)
            rows.append(
                {
                    "position": position,
                    "url": url,
                    "role": "failed" if i == 0 else "held",
                    "event": event,
                    "type": breakable(event.event_type) if event else "",
                }
            )
        return rows

    # -- retry and skip ---------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        prefix = f"{self.opts.app_label}_{self.opts.model_name}"
        actions = [
            path(
                f"<path:object_id>/{action}/",
                wrap(partial(self.action_view, action=action)),
                name=f"{prefix}_{action}",
            )
            for action in ("retry", "skip")
        ]
        by_key = path("by-key/", wrap(self.by_key_view), name=f"{prefix}_by_key")
        return [by_key, *actions, *super().get_urls()]

    def by_key_view(self, request: HttpRequest) -> HttpResponse:
        """``by-key/?key=<key>``: redirect to the page of the instance with that key."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        key = request.GET.get("key", "")
        obj = self.model._default_manager.filter(key=key).first()
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} has the key {key!r}")
        return HttpResponseRedirect(self._change_url(obj))

    def _url(self, view: str, *args: Any) -> str:
        name = f"{self.opts.app_label}_{self.opts.model_name}_{view}"
        return reverse(f"{self.admin_site.name}:{name}", args=args)

    def _action_url(self, action: str, obj: SagaInstance) -> str:
        return self._url(action, obj.pk)

    def _change_url(self, obj: SagaInstance) -> str:
        return self._url("change", obj.pk)

    def action_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        """GET (or a POST without ``confirm``): the confirmation page; POST: run it."""
        return require_http_methods(["GET", "POST"])(self._action)(request, object_id, action)

    def _action(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        if not (self.has_view_permission(request) and request.user.has_perm(OPERATE)):
            raise PermissionDenied
        request.current_app = self.admin_site.name
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} has the id {object_id!r}")
        saga = saga_of(type(obj))
        change_url = self._change_url(obj)
        label = "Retry" if action == "retry" else "Skip"
        if saga is None or not obj.parked:
            messages.error(request, f"{label} does not apply: instance {obj.key} is not parked.")
            return HttpResponseRedirect(change_url)
        if request.method != "POST" or request.POST.get("confirm") != "yes":
            return self._confirm(request, obj, saga, action, change_url)
        positions = list(obj.parked_positions)
        run = retry_instance if action == "retry" else skip_instance
        try:
            applied = run(saga, obj.key)
        except CQRSError as exc:
            messages.error(request, f"{label} failed for instance {obj.key}: {exc}")
            return HttpResponseRedirect(change_url)
        except Exception as exc:
            # As on the projections dashboard: what went wrong, never a server error; the
            # traceback goes to the log. Nothing changed (one transaction).
            logger.exception("%s of %s instance %s failed", label, saga.name, obj.key)
            messages.error(
                request,
                f"{label} failed for instance {obj.key}: {type(exc).__name__}: {exc} "
                "(nothing changed: it is still parked).",
            )
            return HttpResponseRedirect(change_url)
        obj.refresh_from_db()
        events = f"{applied} event{'' if applied == 1 else 's'} applied"
        if action == "retry":
            outcome = f"Retried the parked events of instance {obj.key}: {events}."
        else:
            outcome = (
                f"Skipped the event at position {positions[0]} of instance {obj.key}: "
                f"{events} (held after it)."
            )
        summary = f"{outcome} It is now {obj.state}{', parked again' if obj.parked else ''}."
        self.log_change(request, obj, f"{label}: {summary}")
        (messages.warning if obj.parked else messages.success)(request, summary)
        return HttpResponseRedirect(change_url)

    def _confirm(
        self,
        request: HttpRequest,
        obj: SagaInstance,
        saga: type[Saga],
        action: str,
        change_url: str,
    ) -> HttpResponse:
        positions = list(obj.parked_positions)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{'Retry' if action == 'retry' else 'Skip'} instance {obj.key}?",
            "object": obj,
            "saga": saga,
            "action": action,
            "failing": positions[0],
            "held": positions[1:],
            "parked_events": self._parked_events(saga, obj),
            "change_url": change_url,
            "changelist_url": self._url("changelist"),
        }
        return TemplateResponse(request, "admin/django_cqrs/sagainstance/confirm.html", context)


def _badge(value: str) -> str:
    """A state or an outcome as a badge; ``awaiting_confirmation`` may wrap after ``_``."""
    words = format_html_join(mark_safe("_<wbr>"), "{}", ((part,) for part in value.split("_")))
    return format_html('<span class="cqrs-badge {}">{}</span>', _BADGES.get(value, ""), words)


def _step_row(number: int, step: dict[str, Any]) -> dict[str, Any]:
    """One row of the step history: its figures, and the keys a handler recorded besides."""
    at = step.get("at")
    try:
        when = compact_time(dt.datetime.fromisoformat(at)) if isinstance(at, str) else ""
    except ValueError:
        when = str(at)
    details = {k: v for k, v in step.items() if k not in _STEP_COLUMNS}
    compensation = details.pop("compensation", None)
    return {
        "number": number,
        "step": step.get("step", ""),
        "command": step.get("command", ""),
        "compensation": compensation.get("command", "") if isinstance(compensation, dict) else "",
        "compensated": bool(step.get("compensated")),
        "outcome": step.get("outcome", ""),
        "badge": _BADGES.get(step.get("outcome", ""), ""),
        "error": step.get("error", ""),
        "at": when,
        "details": ", ".join(f"{k}: {v}" for k, v in details.items()),
    }


class SagaDeadlineAdmin(ReadOnlyAdminMixin, AnyModelAdmin):
    """Every saga deadline: pending (and overdue), fired or cancelled, with its last error.

    The choices of the saga and name filters come from the registered sagas, not from a
    ``SELECT DISTINCT`` over the table; five columns, each with a second figure under
    the first, fit a 1280-px screen beside the sidebar and the filters.
    """

    list_display = ("deadline", "instance", "due", "deadline_state", "short_error")
    list_display_links = ("deadline",)
    search_fields = ("=instance_key",)
    search_help_text = "Exact match: an instance's key."
    ordering = ("-due_at", "-id")
    list_per_page = 50
    paginator = EstimatedCountPaginator
    show_full_result_count = False
    fields = (
        "saga",
        "instance_key",
        "instance",
        "name",
        "due_at",
        "deadline_state",
        "fired_at",
        "cancelled_at",
        "attempts",
        "created_at",
        "error_text",
    )
    readonly_fields = fields

    def get_list_filter(self, request: HttpRequest) -> Any:
        return (
            DeadlineStateFilter,
            SagaFilter,
            DeadlineNameFilter,
            ("due_at", admin.DateFieldListFilter),
        )

    @admin.display(description="deadline", ordering="name")
    def deadline(self, obj: SagaDeadline) -> str:
        return format_html('{}<span class="cqrs-sub">{}</span>', obj.name, breakable(obj.saga))

    @admin.display(description="instance", ordering="instance_key")
    def instance(self, obj: SagaDeadline) -> str:
        url = _instance_url(self.admin_site, obj.saga, obj.instance_key)
        text = shorten(obj.instance_key)
        if not url:
            return format_html('<span title="{}">{}</span>', obj.instance_key, text)
        return format_html('<a href="{}" title="{}">{}</a>', url, obj.instance_key, text)

    @admin.display(description="due", ordering="due_at")
    def due(self, obj: SagaDeadline) -> str:
        return _when(obj.due_at)

    @admin.display(description="state")
    def deadline_state(self, obj: SagaDeadline) -> str:
        """Pending, overdue, fired or cancelled (and when), and the attempts to fire it."""
        when: dt.datetime | None
        if obj.fired_at is not None:
            state, badge, when = "fired", "ok", obj.fired_at
        elif obj.cancelled_at is not None:
            state, badge, when = "cancelled", "paused", obj.cancelled_at
        else:
            cutoff = overdue_cutoff()
            overdue = cutoff is not None and obj.due_at < cutoff
            state, badge, when = ("overdue", "failing", None) if overdue else ("pending", "", None)
        n = obj.attempts
        return format_html(
            '<span class="cqrs-badge {}">{}</span>{}<span class="cqrs-sub">{}</span>',
            badge,
            state,
            format_html('<span class="cqrs-sub">{}</span>', _when(when)) if when else "",
            f"{n}\u00a0attempt{'' if n == 1 else 's'}",
        )

    @admin.display(description="error")
    def short_error(self, obj: SagaDeadline) -> str:
        text = last_line(obj.last_error, 80)
        return format_html('<span class="cqrs-error-text">{}</span>', text) if text else "-"

    @admin.display(description="last error")
    def error_text(self, obj: SagaDeadline) -> str:
        if not obj.last_error:
            return "-"
        return format_html('<pre class="cqrs-traceback">{}</pre>', obj.last_error)


class SagaFilter(ExactFilter):
    """The deadlines of one saga; the choices are the registered sagas."""

    title = "saga"
    parameter_name = "saga"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(cls.name, cls.name) for cls in all_sagas()]


class DeadlineNameFilter(ExactFilter):
    """The deadlines of one name; the choices are the sagas' ``@on_deadline`` names."""

    title = "name"
    parameter_name = "name"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        names = sorted({name for cls in all_sagas() for name in cls.deadline_handlers})
        return [(name, name) for name in names]


class DeadlineStateFilter(admin.SimpleListFilter):
    """Pending (and overdue among them), fired or cancelled."""

    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("pending", "pending"),
            ("overdue", "overdue"),
            ("fired", "fired"),
            ("cancelled", "cancelled"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any] | None:
        value = self.value()
        pending = queryset.filter(fired_at__isnull=True, cancelled_at__isnull=True)
        if value == "pending":
            return pending
        if value == "overdue":
            cutoff = overdue_cutoff()
            return pending.filter(due_at__lt=cutoff) if cutoff is not None else pending.none()
        if value == "fired":
            return queryset.filter(fired_at__isnull=False)
        if value == "cancelled":
            return queryset.filter(cancelled_at__isnull=False)
        return queryset


def _instance_url(site: admin.AdminSite, saga_name: str, key: str) -> str:
    """The admin page of the instance ``key`` of the saga ``saga_name`` ("" if none)."""
    saga = next((cls for cls in all_sagas() if cls.name == saga_name), None)
    if saga is None:
        return ""
    opts = saga.instance_model._meta
    try:
        url = reverse(f"{site.name}:{opts.app_label}_{opts.model_name}_by_key")
    except NoReverseMatch:
        return ""
    return f"{url}?{urlencode({'key': key})}"


def saga_instance_models() -> list[type[models.Model]]:
    """Every concrete ``SagaInstance`` model of the installed apps."""
    return [model for model in apps.get_models() if issubclass(model, SagaInstance)]


def autoregister_sagas(site: admin.AdminSite | None = None) -> list[type[models.Model]]:
    """Register every saga instance model without an admin on ``site`` with SagaInstanceAdmin.

    Runs after the apps' ``admin`` modules are imported (``admin.autodiscover()``), so an
    instance model registered there keeps its own admin. Returns the models registered.
    """
    site = site or admin.site
    found = saga_instance_models()
    if not found:
        return []
    if site is admin.site and _admin_autodiscovers():
        admin.autodiscover()
    added = [model for model in found if not site.is_registered(model)]
    for model in added:
        site.register(model, SagaInstanceAdmin)
    return added


def _admin_autodiscovers() -> bool:
    return any(isinstance(config, AdminConfig) for config in apps.get_app_configs())
