"""The pytest plugin: installing django_cqrs is enough for the toolkit's fixtures.

A pytest run in a directory of its own, with no conftest and no ``pytest_plugins``,
gets ``clock``, ``captured_events`` and ``run_async_projections`` from the plugin alone,
and fails a test whose scenario's error nothing looked at. The run loads the plugin with
``-p`` and autoloading off, so it does not depend on how this checkout was installed;
the last test checks the entry point that loads it everywhere else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import tomllib
from importlib.metadata import distributions
from pathlib import Path

from tests.helpers import CORE_SETTINGS, REPO_ROOT, run_python

PLUGIN = "django_cqrs.testing.pytest_plugin"
QUIET = ["-p", "no:cacheprovider", "-q", "-rf"]


FIXTURES = """
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from django_cqrs import command_bus
from django_cqrs.testing import CommandScenario
from tests.testapp.commands import Deposit, OpenAccount
from tests.testapp.events import AccountOpened, Deposited
from tests.testapp.models import AccountTotals

pytestmark = pytest.mark.django_db


def test_the_fixtures_come_from_the_plugin(clock, captured_events, run_async_projections):
    frozen = timezone.now()
    clock.advance(seconds=60)
    assert timezone.now() == frozen + timedelta(seconds=60)
    alice = command_bus.dispatch(OpenAccount(owner="alice")).value
    command_bus.dispatch(Deposit(account_id=alice, amount=Decimal(10)))
    assert run_async_projections() > 0
    assert AccountTotals.objects.get(pk=alice).deposits == 1
    assert captured_events.types == [AccountOpened, Deposited]


def test_a_scenario_error_that_is_looked_at_passes():
    CommandScenario().when(Deposit(account_id=404, amount=Decimal(1))).then_error(Exception)


def test_a_scenario_error_nothing_looked_at_fails_the_test():
    CommandScenario().when(Deposit(account_id=404, amount=Decimal(1)))
"""


def run_pytest(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "plugin_settings.py").write_text(CORE_SETTINGS.format(db=":memory:"))
    (tmp_path / "test_with_the_plugin.py").write_text(textwrap.dedent(FIXTURES))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "plugin_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)]),
        # Only the plugins named below: pytest-django, and this one as the entry point
        # names it (after `pip install`, autoloading would load it by itself).
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "django", "-p", PLUGIN, *QUIET, str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_a_project_without_a_conftest_gets_the_fixtures_and_the_unexamined_error_check(
    tmp_path: Path,
) -> None:
    run = run_pytest(tmp_path)

    out = run.stdout + run.stderr
    assert run.returncode == 1, out
    assert "1 failed, 2 passed" in out, out
    assert "FAILED test_with_the_plugin.py::test_a_scenario_error_nothing_looked_at_fails" in out
    assert (
        "A scenario's command raised an error that no then_error() or then_events() looked "
        "at:\n- Deposit raised DoesNotExist: Account matching query does not exist."
    ) in out


def test_the_plugin_and_the_toolkit_import_without_django_set_up() -> None:
    # pytest imports the plugin when it starts, before pytest-django configures Django.
    run = run_python(
        f"import {PLUGIN}, django_cqrs.testing as t; print(sorted(t.__all__)[:2])", settings=None
    )

    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['ANY', 'CapturedCommands']"


def test_pyproject_registers_the_plugin_under_the_pytest11_entry_point() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]

    assert project["entry-points"]["pytest11"] == {"django_cqrs": PLUGIN}


def test_the_installed_package_has_the_entry_point() -> None:
    # True once the package is installed from this pyproject (`pip install -e .`). Every
    # distribution on the path is read, as pytest reads them to load plugins.
    installed = {
        entry.value
        for distribution in distributions()
        for entry in distribution.entry_points
        if entry.group == "pytest11" and entry.name == "django_cqrs"
    }

    assert installed == {PLUGIN}
