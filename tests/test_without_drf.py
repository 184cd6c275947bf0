"""The core without Django REST framework: it installs, migrates and runs every command.

A fresh process is started in which ``rest_framework``, ``drf_spectacular`` and
``rest_framework_dataclasses`` cannot be imported (as where the ``rest`` extra is not
installed), with a settings module that lists only the core apps and the test app.
CI also installs the package without extras into a new virtualenv and runs the same
script (``.ci/run``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.helpers import CORE_SETTINGS

REPO = Path(__file__).resolve().parent.parent

#: Runs in the child process: blocks DRF, migrates, runs every cqrs_* command.
SCRIPT = """
import importlib.abc, io, json, sys

BLOCKED = ("rest_framework", "drf_spectacular", "rest_framework_dataclasses",
           # the rabbitmq and nats extras: the inbox's core and its commands run without
           "pika", "nats", "cloudevents")

class NoDRF(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, NoDRF())

import django
django.setup()
from decimal import Decimal
from django.core.management import call_command, get_commands
from django.core.management.base import CommandError
from django_cqrs import command_bus
from tests.testapp.commands import Deposit, OpenAccount

TOTALS = "testapp.AccountTotalsProjection"
out = {}

def run(*args):
    text = io.StringIO()
    call_command(*args, stdout=text, stderr=io.StringIO())
    out.setdefault(args[0], []).append(text.getvalue())

run("migrate", "--noinput", "-v", "0")
run("check")
account = command_bus.dispatch(OpenAccount(owner="ada")).value
command_bus.dispatch(Deposit(account_id=account, amount=Decimal("5")))
run("cqrs_status")
run("cqrs_status", "--json")
run("cqrs_catchup", "--all")
run("cqrs_pause", TOTALS)
run("cqrs_pause", TOTALS, "--resume")
run("cqrs_retry", TOTALS)
late = command_bus.dispatch(Deposit(account_id=account, amount=Decimal("7"))).position
run("cqrs_skip", TOTALS, str(late))
run("cqrs_rebuild", "--all", "--no-progress")
run("cqrs_inspect")
run("cqrs_inspect", "--json")
try:  # no relay is configured (the core has no broker client): a clear error
    run("cqrs_replay", "none", "--from", "1")
except CommandError as exc:
    out["cqrs_replay"] = [str(exc)]
run("cqrs_inbox")
try:
    run("cqrs_consume", "nowhere")
except Exception as exc:  # CommandError: no such inbox
    out["cqrs_consume"] = [str(exc)]
ours = sorted(n for n, app in get_commands().items() if app == "django_cqrs")
print(json.dumps({"commands": ours, "ran": out,
                  "drf_loaded": [m for m in sys.modules if m.split(".")[0] in BLOCKED]}))
"""


def run_core_only(tmp_path: Path, python: str = sys.executable) -> dict[str, object]:
    """Run :data:`SCRIPT` in a process with core-only settings; return what it printed."""
    (tmp_path / "core_only_settings.py").write_text(
        textwrap.dedent(CORE_SETTINGS.format(db=str(tmp_path / "core.sqlite3")))
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DATABASE")},
        "DJANGO_SETTINGS_MODULE": "core_only_settings",
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)]),
    }
    result = subprocess.run(
        [python, "-c", SCRIPT],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


def test_the_core_migrates_and_runs_every_cqrs_command_without_drf(tmp_path: Path) -> None:
    report = run_core_only(tmp_path)

    assert report["drf_loaded"] == []
    ran = report["ran"]
    assert isinstance(ran, dict)
    # Every command of the core app ran (a new one must be added to the script).
    assert report["commands"] == sorted(name for name in ran if name.startswith("cqrs_"))
    assert ran["cqrs_replay"] == ["No relay is named 'none'. Relays: none"]
    assert "testapp.AccountTotalsProjection: 2 events read." in ran["cqrs_catchup"][0]
    assert "skipped position" in ran["cqrs_skip"][0]
    assert "Rebuilt testapp.AccountTotalsProjection" in ran["cqrs_rebuild"][0]
    status = {row["name"]: row for row in json.loads(ran["cqrs_status"][1])}
    assert status["testapp.AccountTotalsProjection"]["mode"] == "async"
    assert "  tests.testapp.commands.Deposit -> tests.testapp.handlers.deposit" in (
        ran["cqrs_inspect"][0].splitlines()
    )
    events = {event["name"]: event for event in json.loads(ran["cqrs_inspect"][1])["events"]}
    assert events["testapp.Deposited"]["projections"]
    assert ran["cqrs_inbox"] == ["No inbox messages.\n"]
    assert "No inbox named 'nowhere'" in ran["cqrs_consume"][0]


CORE_ONLY_PYTHON = os.environ.get("CQRS_CORE_ONLY_PYTHON", "")


@pytest.mark.skipif(
    not CORE_ONLY_PYTHON,
    reason="needs a virtualenv with the package installed without extras: set "
    "CQRS_CORE_ONLY_PYTHON=<its python> (.ci/run does)",
)
def test_an_install_without_extras_has_no_drf_and_runs_every_command(tmp_path: Path) -> None:
    probe = subprocess.run(
        [
            CORE_ONLY_PYTHON,
            "-c",
            "import importlib.util as u; print(u.find_spec('rest_framework'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "None"

    report = run_core_only(tmp_path, python=CORE_ONLY_PYTHON)

    assert report["commands"] == sorted(n for n in report["ran"] if n.startswith("cqrs_"))  # type: ignore[union-attr]
