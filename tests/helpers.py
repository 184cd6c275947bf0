"""Helpers shared by several test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.db import connections, transaction

from django_cqrs.models import StoredEvent

REPO_ROOT = Path(__file__).resolve().parent.parent

#: The settings of a process with the core apps and the test app only (no DRF, no
#: admin): ``CORE_SETTINGS.format(db=<SQLite database name>)``.
CORE_SETTINGS = """
SECRET_KEY = "core-only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django_q",
    "django_cqrs",
    "tests.testapp",
]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
Q_CLUSTER = {{"name": "core_only", "orm": "default", "timeout": 60, "retry": 120,
              "max_attempts": 3, "sync": True}}
DJANGO_CQRS = {{
    "AUTODISCOVER_MODULES": ["handlers", "projections", "async_projections"],
    "TRIGGER_ON_COMMIT": False,  # the script catches up itself
}}
"""


def run_python(
    code: str, *, settings: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new interpreter from the repository's root.

    ``settings`` is its ``DJANGO_SETTINGS_MODULE`` (None: not set, Django not configured).
    """
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    if settings is not None:
        env["DJANGO_SETTINGS_MODULE"] = settings
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class Holding:
    """Another connection runs ``lock`` in a transaction and keeps it open until exit.

    ``result`` is what ``lock`` returned; an error it raised fails the block.
    """

    def __init__(self, lock: Callable[[], object]) -> None:
        self.lock = lock
        self.result: object = None
        self.error: BaseException | None = None
        self.locked, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, name="lock-holder")

    def _hold(self) -> None:
        try:
            with transaction.atomic():
                self.result = self.lock()
                self.locked.set()
                self.release.wait(20)
        except BaseException as exc:
            self.error = exc
            self.locked.set()
        finally:
            connections.close_all()

    def __enter__(self) -> Holding:
        self.thread.start()
        assert self.locked.wait(10)
        assert self.error is None, self.error
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release.set()
        self.thread.join(20)
        assert not self.thread.is_alive()
        assert self.error is None, self.error


def lock_the_log() -> None:
    """``LOCK TABLE`` the event log ``IN ACCESS EXCLUSIVE MODE`` (inside a transaction)."""
    conn = connections["default"]
    with conn.cursor() as cursor:
        table = conn.ops.quote_name(StoredEvent._meta.db_table)
        cursor.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
