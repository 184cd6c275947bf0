"""A clock the test controls: ``django.utils.timezone.now()`` stands still until moved.

    from django_cqrs.testing import FrozenClock

    with FrozenClock() as clock:         # or the ``clock`` fixture of the pytest plugin
        command_bus.dispatch(PlaceOrder(...))   # a saga sets a deadline 30 s from now
        clock.advance(seconds=31)
        fire_due(now=clock.now())        # or clock.fire_due(): the deadline fires

While it runs, ``timezone.now()`` returns the clock's time wherever it is called through
the module (``timezone.now()``, as django_cqrs, its sagas and deadlines and Django's
``auto_now`` fields do), and model fields whose default is ``timezone.now`` default to it
too (events' ``recorded_at``, saga instances' ``started_at``). Code that imported the
function itself (``from django.utils.timezone import now``) or reads ``time.time()`` is
not moved.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.apps import apps
from django.utils import timezone

from ..sagas.deadlines import fire_due


class FrozenClock:
    """``timezone.now()`` frozen at ``start`` (default: the real now) until advanced."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        if start is not None and timezone.is_naive(start):
            raise ValueError("FrozenClock needs an aware datetime (USE_TZ time)")
        self._now = start
        self._real: Any = None
        self._defaults: list[Any] = []

    # -- the time ---------------------------------------------------------------------

    def now(self) -> dt.datetime:
        """The clock's time (the real time when it is not running and was never set)."""
        if self._now is None:
            return (self._real or timezone.now)()
        return self._now

    def advance(self, delta: dt.timedelta | None = None, **units: float) -> dt.datetime:
        """Move the clock on by ``delta`` or by ``timedelta(**units)``; return the new time."""
        step = (delta or dt.timedelta()) + dt.timedelta(**units)
        if step < dt.timedelta():
            raise ValueError("a clock does not go back: advance() takes a positive time")
        self._now = self.now() + step
        return self._now

    def set(self, moment: dt.datetime) -> None:
        """Put the clock at ``moment`` (aware), forward or back."""
        if timezone.is_naive(moment):
            raise ValueError("FrozenClock.set() needs an aware datetime")
        self._now = moment

    def fire_due(self, *, saga: str | None = None) -> int:
        """Fire the saga deadlines due at the clock's time; return how many fired."""
        return fire_due(now=self.now(), saga=saga)

    # -- running ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._real is not None

    def start(self) -> FrozenClock:
        """Patch ``timezone.now`` (and the model defaults that are it) with this clock."""
        if self.running:
            raise RuntimeError("this FrozenClock is running already")
        real = timezone.now
        self._now = self.now()
        self._real = real
        frozen = self.now  # one bound method: a clock started inside this one finds it
        timezone.now = frozen
        for model in apps.get_models(include_auto_created=True):
            for field in model._meta.concrete_fields:
                if field.default is real:
                    self._defaults.append(field)
                    field.default = frozen
                    field.__dict__.pop("_get_default", None)  # Django caches the default
        return self

    def stop(self) -> None:
        """Give ``timezone.now`` and the model defaults back."""
        if not self.running:
            return
        real, self._real = self._real, None
        timezone.now = real
        for field in self._defaults:
            field.default = real
            field.__dict__.pop("_get_default", None)
        self._defaults.clear()

    def __enter__(self) -> FrozenClock:
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<FrozenClock {self.now().isoformat()}{'' if self.running else ' (stopped)'}>"
