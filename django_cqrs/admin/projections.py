"""The projections dashboard: health of every projection, and the actions that fix it.

    # admin/django_cqrs/projectionstate/                         the dashboard
    # admin/django_cqrs/projectionstate/<name>/change/           one projection, parked events
    # POST admin/django_cqrs/projectionstate/<name>/catch-up/    (and pause, resume, retry,
    #                                                              skip, rebuild)

The dashboard lists every registered projection, with or without a ``ProjectionState``
row, with the figures of ``projection_status()`` (the same as ``cqrs_status``). Viewing
needs ``django_cqrs.view_projectionstate``; catch-up, pause, resume, retry and skip need
``django_cqrs.operate_projection``; rebuild needs ``django_cqrs.rebuild_projection``.
Every action that ran is recorded in the admin log (``LogEntry``) of the projection.

A saga is listed as the projection it is, with its instances and deadlines on its page.
Its parked events belong to parked instances, resolved on the instance's page
(``django_cqrs.admin.sagas``): the projection-wide "Retry parked" is not offered for a
saga that runs (it would mark the events retried and leave the instances parked), and
"Skip this event" is refused for an event an instance holds.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import NoReverseMatch, URLPattern, path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.utils.safestring import SafeString
from django.views.decorators.http import require_http_methods

from ..exceptions import CQRSError
from ..models import ParkedEvent, ProjectionState
from ..projections import ASYNC, Projection, get_projection
from ..projections.catchup import retry, run_catch_up, set_paused, skip
from ..projections.health import degraded, problems
from ..projections.rebuild import rebuild
from ..projections.status import ProjectionStatus, projection_status
from ..sagas.base import Saga, SagaInstance
from ..tasks import catch_up_now, follow_up
from .events import shorten
from .mixins import AnyModelAdmin, ReadOnlyAdminMixin

logger = logging.getLogger("django_cqrs")

OPERATE = "django_cqrs.operate_projection"
REBUILD = "django_cqrs.rebuild_projection"

State = ProjectionState.State


@dataclasses.dataclass(frozen=True)
class ProjectionAction:
    """One button of the dashboard: what it runs, who may run it, and when it applies."""

    slug: str
    label: str
    permission: str
    run: Callable[[type[Projection], HttpRequest], str]
    applies: Callable[[ProjectionStatus], bool]
    #: Ask on a confirmation page first (GET shows it, POST runs the action).
    confirm: bool = False
    #: Shown per parked event (takes its ``position``) rather than per projection.
    per_event: bool = False


def _catch_up(cls: type[Projection], request: HttpRequest) -> str:
    follow_up(cls.name, run_catch_up(cls))
    return "Caught up."


def _pause(cls: type[Projection], request: HttpRequest) -> str:
    set_paused(cls, True)
    return "Paused: no catch-up runs until it is resumed."


def _resume(cls: type[Projection], request: HttpRequest) -> str:
    set_paused(cls, False)
    # The workers catch up at once (not in this request, however long the backlog).
    catch_up_now(cls.name)
    return "Resumed: a catch-up is queued."


def _retry(cls: type[Projection], request: HttpRequest) -> str:
    follow_up(cls.name, retry(cls))
    # Whatever the retry left (events recorded meanwhile, a worker busy) is not left to
    # the periodic schedule.
    catch_up_now(cls.name)
    return "Retried the parked events."


def _skip(cls: type[Projection], request: HttpRequest) -> str:
    position = _position(request)
    holder = _instance_holding(cls, position)
    if holder is not None:
        raise CQRSError(
            f"the event at position {position} is held by the parked instance "
            f"{holder.key}: retry or skip that instance on its page"
        )
    follow_up(cls.name, skip(cls, position))
    if cls.mode != ASYNC:
        return f"Skipped the event at position {position}: rebuild to go on past it."
    catch_up_now(cls.name)
    return f"Skipped the event at position {position}."


def _rebuild(cls: type[Projection], request: HttpRequest) -> str:
    applied = rebuild(cls)
    return f"Rebuilt from the event log: {applied} event{'' if applied == 1 else 's'} applied."


def _position(request: HttpRequest) -> int:
    try:
        return int(request.POST.get("position", ""))
    except ValueError:
        raise CQRSError("Give the position of the event to skip.") from None


def _is_async(row: ProjectionStatus) -> bool:
    return row.mode == ASYNC


def _parked_instances(cls: type[Projection]) -> list[SagaInstance]:
    """A saga's parked instances (none for a projection): few, unless something is wrong."""
    if not issubclass(cls, Saga):
        return []
    return list(cls.instance_model._default_manager.filter(parked=True))


def _instance_holding(cls: type[Projection], position: int) -> SagaInstance | None:
    """The parked saga instance holding the event at ``position``, if any."""
    return next((i for i in _parked_instances(cls) if position in i.parked_positions), None)


ACTIONS: dict[str, ProjectionAction] = {
    action.slug: action
    for action in (
        ProjectionAction(
            "catch-up",
            "Catch up now",
            OPERATE,
            _catch_up,
            lambda row: _is_async(row) and row.state == State.LIVE,
        ),
        ProjectionAction(
            "pause",
            "Pause",
            OPERATE,
            _pause,
            lambda row: _is_async(row) and row.state == State.LIVE,
        ),
        ProjectionAction(
            "resume",
            "Resume",
            OPERATE,
            _resume,
            lambda row: _is_async(row) and row.state == State.PAUSED,
        ),
        ProjectionAction(
            "retry",
            "Retry parked",
            OPERATE,
            _retry,
            # A saga's parked events are retried per instance (admin.sagas).
            lambda row: (
                _is_async(row)
                and (row.state == State.STOPPED or (row.parked > 0 and row.saga is None))
            ),
        ),
        ProjectionAction(
            "skip",
            "Skip this event",
            OPERATE,
            _skip,
            lambda row: row.parked > 0,
            per_event=True,
        ),
        # A saga is never rebuilt: replaying it would send its commands again.
        ProjectionAction(
            "rebuild", "Rebuild", REBUILD, _rebuild, lambda row: row.saga is None, confirm=True
        ),
    )
}


def breakable(dotted: str) -> SafeString:
    """``dotted`` (a projection's or an event type's name) with a line break allowed
    after each dot: ``orders.<wbr>CustomerSummaryProjection``, so that a narrow column
    wraps it between its parts rather than overflowing or breaking a word."""
    return format_html_join(format_html("{}<wbr>", "."), "{}", ((p,) for p in dotted.split(".")))


def _health_url() -> str:
    try:
        return reverse("django_cqrs:health")
    except NoReverseMatch:
        return ""


class ProjectionStateAdmin(ReadOnlyAdminMixin, AnyModelAdmin):
    """The projections dashboard (changelist), detail pages (change) and actions.

    The state rows change only through the actions, never through a form.
    """

    # -- URLs -----------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        actions = [
            path(
                f"<str:object_id>/{action.slug}/",
                wrap(partial(self.action_view, action=action.slug)),
                name=f"django_cqrs_projectionstate_{action.slug.replace('-', '_')}",
            )
            for action in ACTIONS.values()
        ]
        return [*actions, *super().get_urls()]

    def _url(self, view: str, *args: Any) -> str:
        return reverse(f"{self.admin_site.name}:django_cqrs_projectionstate_{view}", args=args)

    def action_url(self, name: str, slug: str) -> str:
        return self._url(slug.replace("-", "_"), name)

    def allowed_actions(self, request: HttpRequest, row: ProjectionStatus) -> list[dict[str, Any]]:
        """The projection-wide actions ``request.user`` may run on ``row`` now."""
        return [
            {"slug": a.slug, "label": a.label, "url": self.action_url(row.name, a.slug)}
            for a in ACTIONS.values()
            if not a.per_event and a.applies(row) and request.user.has_perm(a.permission)
        ]

    # -- dashboard ------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        request.current_app = self.admin_site.name
        statuses = projection_status()
        rows = [
            {
                "status": row,
                "label": breakable(row.name),
                "url": self._url("change", row.name),
                "actions": self.allowed_actions(request, row),
                "error": row.last_error.strip().splitlines()[-1] if row.last_error else "",
                "problems": problems(row),
                "degraded": degraded(row),
            }
            for row in statuses
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Projections",
            "rows": rows,
            "head": statuses[0].head if statuses else None,
            "healthy": not any(r["problems"] for r in rows),
            "health_url": _health_url(),
            "parked_url": self._parked_url(),
            **(extra_context or {}),
        }
        return TemplateResponse(
            request, "admin/django_cqrs/projectionstate/dashboard.html", context
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        request.current_app = self.admin_site.name
        cls = self._projection(object_id)
        row = self._status(cls.name)
        state = ProjectionState.objects.filter(name=cls.name).first()
        parked = ParkedEvent.objects.filter(projection=cls.name)
        may_operate = request.user.has_perm(OPERATE)
        holders = {
            position: instance
            for instance in _parked_instances(cls)
            for position in instance.parked_positions
        }
        # A saga records the event that parked an instance as skipped (it goes on with
        # the others); that event waits with the instance all the same.
        open_events = Q(resolution=ParkedEvent.Resolution.PARKED) | Q(position__in=list(holders))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": cls.name,
            "projection": cls,
            "row": row,
            "state": state,
            "actions": self.allowed_actions(request, row),
            "problems": problems(row),
            "parked": [
                {
                    "event": event,
                    "type": breakable(event.event_type),
                    "instance": self._instance_link(holders.get(event.position)),
                }
                for event in parked.filter(open_events)
            ],
            "resolved": [
                {"event": event, "type": breakable(event.event_type)}
                for event in parked.exclude(open_events).order_by("-position")[:20]
            ],
            "skip_url": self.action_url(cls.name, "skip")
            if may_operate and ACTIONS["skip"].applies(row)
            else "",
            "event_types": cls.handled_event_types(),
            "read_models": [self._read_model_link(model) for model in cls.read_models],
            "history_url": self._url("history", cls.name) if state else "",
            "dashboard_url": self._url("changelist"),
            "saga": self._saga_links(cls, row),
        }
        return TemplateResponse(request, "admin/django_cqrs/projectionstate/detail.html", context)

    def _instance_link(self, instance: SagaInstance | None) -> dict[str, str] | None:
        if instance is None:
            return None
        opts = instance._meta
        try:
            url = reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_change",
                args=[instance.pk],
            )
        except NoReverseMatch:
            url = ""
        return {"key": instance.key, "short": shorten(instance.key), "url": url}

    def _saga_links(self, cls: type[Projection], row: ProjectionStatus) -> dict[str, Any] | None:
        """A saga's figures (``row.saga``) with links to its instances and deadlines."""
        if row.saga is None or not issubclass(cls, Saga):
            return None
        opts = cls.instance_model._meta
        try:
            instances = reverse(
                f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist"
            )
        except NoReverseMatch:
            instances = ""
        try:
            deadlines = reverse(f"{self.admin_site.name}:django_cqrs_sagadeadline_changelist")
        except NoReverseMatch:
            deadlines = ""

        def link(base: str, **query: str) -> str:
            return f"{base}?{urlencode(query)}" if base and query else base

        return {
            "status": row.saga,
            "model": opts.label,
            "instances": [
                {
                    "label": bucket,
                    "count": count,
                    "url": link(instances, **({} if bucket == "running" else {"state": bucket})),
                }
                for bucket, count in row.saga.instances.items()
            ],
            "instances_url": instances,
            "parked_url": link(instances, parked="yes"),
            "pending_url": link(deadlines, saga=cls.name, state="pending"),
            "overdue_url": link(deadlines, saga=cls.name, state="overdue"),
        }

    def _parked_url(self) -> str:
        try:
            url = reverse(f"{self.admin_site.name}:django_cqrs_parkedevent_changelist")
        except NoReverseMatch:
            return ""
        return f"{url}?resolution__exact=parked"

    def _read_model_link(self, model: type[Any]) -> dict[str, str]:
        opts = model._meta
        url = ""
        if self.admin_site.is_registered(model):
            url = reverse(f"{self.admin_site.name}:{opts.app_label}_{opts.model_name}_changelist")
        return {"label": opts.label, "url": url}

    @staticmethod
    def _projection(name: str) -> type[Projection]:
        try:
            return get_projection(name)
        except CQRSError:
            raise Http404(f"No projection is named {name!r}") from None

    @staticmethod
    def _status(name: str) -> ProjectionStatus:
        return next(row for row in projection_status() if row.name == name)

    # -- actions --------------------------------------------------------------------

    @staticmethod
    def _next_url(request: HttpRequest, default: str) -> str:
        target = request.POST.get("next", "")
        if target and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return target
        return default

    def action_view(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        """Run ``action`` on the projection (POST); a confirmed action asks first (GET)."""
        return require_http_methods(["GET", "POST"])(self._action)(request, object_id, action)

    def _action(self, request: HttpRequest, object_id: str, action: str) -> HttpResponse:
        spec = ACTIONS[action]
        if not request.user.has_perm(spec.permission):
            raise PermissionDenied
        request.current_app = self.admin_site.name
        cls = self._projection(object_id)
        detail_url = self._url("change", cls.name)
        if request.method != "POST":
            if not spec.confirm:
                return HttpResponseRedirect(detail_url)
            context = {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "title": f"{spec.label} {cls.name}?",
                "projection": cls,
                "action": spec,
                "row": self._status(cls.name),
                "read_models": [model._meta.label for model in cls.read_models],
                "detail_url": detail_url,
            }
            return TemplateResponse(
                request, "admin/django_cqrs/projectionstate/confirm.html", context
            )
        redirect = HttpResponseRedirect(self._next_url(request, detail_url))
        before = self._status(cls.name)
        if not spec.applies(before):
            messages.error(request, f"{spec.label} does not apply to {cls.name} now.")
            return redirect
        try:
            outcome = spec.run(cls, request)
        except CQRSError as exc:
            messages.error(request, f"{spec.label} failed for {cls.name}: {exc}")
            return redirect
        except Exception as exc:
            # An operator's console answers with what went wrong, never a server error;
            # the traceback goes to the log.
            logger.exception("%s failed for %s", spec.label, cls.name)
            messages.error(
                request, f"{spec.label} failed for {cls.name}: {type(exc).__name__}: {exc}"
            )
            return redirect
        after = self._status(cls.name)
        moved = f"Checkpoint {before.position} → {after.position} of {after.head}."
        state = ProjectionState.objects.get(name=cls.name)
        self.log_change(request, state, f"{spec.label}: {outcome} {moved}")
        parked = f"{after.parked} parked event{'' if after.parked == 1 else 's'}"
        # The outcome first: the admin capitalizes the first letter of each message.
        summary = f"{outcome} {moved} {cls.name} is now {after.state}, with {parked}."
        if after.parked:
            messages.warning(request, summary)
        else:
            messages.success(request, summary)
        return redirect


class ParkedEventAdmin(ReadOnlyAdminMixin, AnyModelAdmin):
    """Events a projection gave up on, with their tracebacks (retry or skip: dashboard)."""

    list_display = (
        "projection",
        "position",
        "event_type",
        "error",
        "attempts",
        "parked_at",
        "resolution",
    )
    list_filter = ("resolution", "projection", "event_type")
    search_fields = ("projection", "event_type", "error")
    ordering = ("-parked_at",)
    fields = (*list_display, "resolved_at", "traceback_text")
    readonly_fields = fields

    @admin.display(description="traceback")
    def traceback_text(self, obj: ParkedEvent) -> Any:
        return format_html('<pre class="cqrs-traceback">{}</pre>', obj.traceback or "-")
