"""The docs run as written: the README's tutorial and the code blocks of docs/*.md.

How a Markdown file is read (conventions for whoever writes the docs):

- A ```python block whose first line is ``# todo/<module>.py`` is a module of the tutorial
  app: it must equal ``tests/tutorial/<module>.py`` (the app installed as ``todo``). A
  ``# todo/test_<name>.py`` block is the tutorial's tests: pytest runs that file where it
  is, with the suite.
- A ```python block whose first line starts with ``# settings.py`` holds settings. It runs
  on its own (``BASE_DIR`` is defined, as in a ``startproject`` settings file); a
  ``DJANGO_CQRS`` dict it defines must pass the django_cqrs system checks, and a SQLite
  ``DATABASES`` entry must open with the journal mode and busy timeout it asks for.
- Every other ```python block belongs to the document's shell session: the blocks run in
  order, in one namespace, against an empty test database, with ``todo`` importable.
  Each is pasted line by line into an interactive console, as a reader pastes it into
  ``python manage.py shell``: a compound statement (``try``, ``for``, ``def`` ...) needs a
  blank line after it and none inside it. A block whose first line names a file
  (``# myapp/api.py``) is a file, not pasted: it runs as a whole.
- A ```python block whose first line is ``# tests/<path>.py`` or
  ``# demo_project/<path>.py`` shows that file of this repository, verbatim: it is
  compared with the file (which its own tests run), not run here.
- In a ```console block, each ``$ python manage.py <command> ...`` line runs at its place
  in the session; the lines after it that do not start with ``$`` must appear in its
  output. ``makemigrations`` runs with ``--check --dry-run``: the tutorial's migrations
  must be up to date.
- Other blocks (```bash, ```text, ...) are not run, nor are the docs in ``NOT_RUN_DOCS``.
"""

from __future__ import annotations

import code
import dataclasses
import importlib
import io
import re
import shlex
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.db.utils import ConnectionHandler
from django.test import override_settings

from django_cqrs import command_bus, query_bus
from django_cqrs.conf import DEFAULTS
from django_cqrs.projections import all_projections, unregister
from django_cqrs.signals import event_committed, event_recorded

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "tests" / "tutorial"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TUTORIAL_MODULES = ["events", "commands", "models", "queries", "handlers", "projections"]
#: The tutorial's test modules (collected by pytest under tests/tutorial/, not imported here).
TUTORIAL_TESTS = ["test_tasks"]
#: Docs whose code blocks are illustrations, not yet written to run; say why.
NOT_RUN_DOCS = {
    "async-projections.md": "its blocks use the demo's names without imports, and its "
    "console lines carry comments and placeholders",
}

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
TUTORIAL_FILE = re.compile(r"^# todo/(\w+)\.py\b")
A_FILE = re.compile(r"^# [\w./-]+\.py\b")
REPOSITORY_FILE = re.compile(r"^# ((?:tests|demo_project)/[\w./-]+\.py)\n")
MANAGE = "$ python manage.py "
#: manage.py commands the docs may show in ```console blocks, and what the test runs.
RUNNABLE = {"cqrs_inspect", "cqrs_rebuild", "cqrs_status", "makemigrations", "migrate"}
NOT_RUN = {"startapp", "shell", "runserver"}


@dataclasses.dataclass(frozen=True)
class Block:
    doc: Path
    line: int
    lang: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.doc.relative_to(ROOT)}:{self.line}"

    @property
    def tutorial_module(self) -> str | None:
        match = TUTORIAL_FILE.match(self.code) if self.lang == "python" else None
        return match.group(1) if match else None

    @property
    def is_settings(self) -> bool:
        return self.lang == "python" and self.code.startswith("# settings.py")

    @property
    def is_file(self) -> bool:
        """Does the block name the file it belongs in (``# myapp/api.py``)?"""
        return self.lang == "python" and bool(A_FILE.match(self.code))

    @property
    def repository_file(self) -> Path | None:
        """The repository file the block shows (``# tests/testapp/sagas.py``), if any."""
        match = REPOSITORY_FILE.match(self.code) if self.lang == "python" else None
        return ROOT / match.group(1) if match else None

    @property
    def is_session(self) -> bool:
        if self.lang == "python":
            return not (self.tutorial_module or self.is_settings or self.repository_file)
        return self.lang == "console" and MANAGE in self.code


def blocks(doc: Path) -> list[Block]:
    text = doc.read_text()
    return [
        Block(doc, text.count("\n", 0, m.start()) + 2, m.group(1), m.group(2))
        for m in FENCE.finditer(text)
    ]


# -- the tutorial app is the README's code ------------------------------------------


def test_each_tutorial_module_is_the_readme_block_verbatim() -> None:
    shown = {
        block.tutorial_module: block
        for block in blocks(ROOT / "README.md")
        if block.tutorial_module
    }

    assert sorted(shown) == sorted(TUTORIAL_MODULES + TUTORIAL_TESTS)
    for name, block in shown.items():
        module = TUTORIAL / f"{name}.py"
        assert block.code == module.read_text(), f"{block.where} differs from {module}"


@pytest.mark.parametrize(
    "block",
    [b for doc in DOCS for b in blocks(doc) if b.repository_file],
    ids=lambda block: block.where,
)
def test_a_block_showing_a_repository_file_is_that_file(block: Block) -> None:
    shown = block.code.split("\n", 1)[1]
    assert block.repository_file is not None
    assert shown == block.repository_file.read_text(), f"{block.where} differs from the file"


def test_the_tutorial_app_passes_the_system_checks() -> None:
    own = [
        message
        for message in run_checks()
        if getattr(message.obj, "__module__", "").startswith("tests.tutorial")
        or "todo." in message.msg
    ]

    assert own == []


# -- shell sessions ------------------------------------------------------------------


def run_docs() -> list[Path]:
    return [doc for doc in DOCS if doc.name not in NOT_RUN_DOCS]


def session_docs() -> list[Path]:
    return [doc for doc in run_docs() if any(block.is_session for block in blocks(doc))]


@pytest.fixture
def todo_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let ``from todo.models import Task`` find the tutorial app under tests/."""
    monkeypatch.setitem(sys.modules, "todo", importlib.import_module("tests.tutorial"))
    for name in TUTORIAL_MODULES:
        module = importlib.import_module(f"tests.tutorial.{name}")
        monkeypatch.setitem(sys.modules, f"todo.{name}", module)


@pytest.fixture
def isolated_wiring() -> Iterator[None]:
    """Undo the handlers, projections and signal receivers that a session registers."""
    registries = [command_bus.registry, query_bus.registry]
    handlers = [dict(registry.items()) for registry in registries]
    projections = all_projections()
    signals = [(signal, list(signal.receivers)) for signal in (event_recorded, event_committed)]
    yield
    for registry, before in zip(registries, handlers, strict=True):
        for message_type, _ in registry.items():
            if message_type not in before:
                registry.unregister(message_type)
    for projection in all_projections():
        if projection not in projections:
            unregister(projection)
    for signal, receivers in signals:
        with signal.lock:
            signal.receivers = receivers
            signal.sender_receivers_cache.clear()


class Shell(code.InteractiveConsole):
    """``python manage.py shell``, but an error fails the test instead of being printed."""

    def __init__(self, block: Block, namespace: dict[str, Any]) -> None:
        super().__init__(namespace, filename=block.where)
        self.block = block
        self.line = 0

    def paste(self) -> None:
        """Type the block's lines one by one, then the Enter that ends the paste."""
        lines = [*self.block.code.splitlines(), ""]
        for number, text in enumerate(lines, start=1):
            self.line = number
            self.push(text)

    def runcode(self, code: types.CodeType) -> None:
        exec(code, self.locals)  # the console would print the traceback and go on

    def showsyntaxerror(self, filename: str | None = None, **kwargs: Any) -> None:
        error = sys.exc_info()[1]
        where = f"{self.block.doc.relative_to(ROOT)}:{self.block.line + self.line - 1}"
        raise AssertionError(
            f"{where}: pasted into the shell, the block fails here: {error!r} (a compound "
            "statement needs a blank line after it and none inside it)"
        ) from error


def paste(block: Block, namespace: dict[str, Any]) -> None:
    Shell(block, namespace).paste()


def run_console(block: Block) -> None:
    lines = block.code.splitlines()
    commands = [i for i, line in enumerate(lines) if line.startswith("$")]
    for n, start in enumerate(commands):
        end = commands[n + 1] if n + 1 < len(commands) else len(lines)
        expected = [line.strip() for line in lines[start + 1 : end] if line.strip()]
        assert lines[start].startswith(MANAGE), f"{block.where}: not a manage.py command"
        name, *args = shlex.split(lines[start][len(MANAGE) :])
        if name in NOT_RUN:
            continue
        assert name in RUNNABLE, f"{block.where}: teach test_docs.py to run {name!r}"
        if name == "makemigrations":
            args += ["--check", "--dry-run"]
        if name == "cqrs_rebuild":
            args.append("--no-progress")
        out = io.StringIO()
        call_command(name, *args, stdout=out)
        printed = [line.strip() for line in out.getvalue().splitlines()]
        for line in expected:
            assert line in printed, f"{block.where}: {line!r} not in the output of {name}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("todo_importable", "isolated_wiring")
@pytest.mark.parametrize("doc", session_docs(), ids=lambda doc: doc.name)
def test_the_doc_runs_as_written(doc: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType(f"docs_session_{doc.stem.lower()}")
    monkeypatch.setitem(sys.modules, module.__name__, module)

    for block in blocks(doc):
        if not block.is_session:
            continue
        if block.lang == "console":
            run_console(block)
        elif block.is_file:
            exec(compile(block.code, block.where, "exec"), module.__dict__)
        else:
            paste(block, module.__dict__)


# -- settings ------------------------------------------------------------------------


def settings_blocks() -> list[Block]:
    return [block for doc in run_docs() for block in blocks(doc) if block.is_settings]


def run_settings(block: Block, base_dir: Path) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "settings", "BASE_DIR": base_dir}
    exec(compile(block.code, block.where, "exec"), namespace)
    return namespace


@pytest.mark.parametrize("block", settings_blocks(), ids=lambda block: block.where)
def test_documented_settings_are_valid(
    block: Block, tmp_path: Path, django_db_blocker: Any
) -> None:
    namespace = run_settings(block, tmp_path)

    if "DJANGO_CQRS" in namespace:
        with override_settings(DJANGO_CQRS=namespace["DJANGO_CQRS"]):
            errors = [m for m in run_checks() if (m.id or "").startswith("django_cqrs.E")]
        assert errors == []
    database = namespace.get("DATABASES", {}).get("default", {})
    if database.get("ENGINE") == "django.db.backends.sqlite3":
        with django_db_blocker.unblock():
            assert_sqlite_options(database, tmp_path)
    elif database:
        importlib.import_module(f"{database['ENGINE']}.base")


def assert_sqlite_options(database: dict[str, Any], tmp_path: Path) -> None:
    options = database.get("OPTIONS", {})
    handler = ConnectionHandler({"default": {**database, "NAME": str(tmp_path / "doc.sqlite3")}})
    conn = handler["default"]
    try:
        with conn.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            journal_mode = cursor.fetchone()[0]
            cursor.execute("PRAGMA busy_timeout")
            busy_timeout = cursor.fetchone()[0]
        if "journal_mode=WAL" in options.get("init_command", ""):
            assert journal_mode == "wal"
        if "timeout" in options:
            assert busy_timeout == int(options["timeout"] * 1000)
        assert conn.transaction_mode == options.get("transaction_mode")
    finally:
        conn.close()


def test_settings_doc_lists_every_key_with_its_default(tmp_path: Path) -> None:
    doc = ROOT / "docs" / "settings.md"
    [defaults] = [
        run_settings(block, tmp_path)["DJANGO_CQRS"]
        for block in blocks(doc)
        if block.is_settings and "DJANGO_CQRS" in block.code and "defaults" in block.code
    ]
    headings = re.findall(r"^### `(\w+)`", doc.read_text(), re.MULTILINE)

    assert defaults == DEFAULTS
    assert headings == list(DEFAULTS)


# -- reference tables ----------------------------------------------------------------


def test_checks_doc_lists_every_check_id() -> None:
    source = (ROOT / "django_cqrs" / "checks.py").read_text()
    doc = (ROOT / "docs" / "checks.md").read_text()
    in_code = {
        f"django_cqrs.{i}" for i in re.findall(r"[\"'](?:django_cqrs\.)?([EW]\d{3})[\"']", source)
    }
    table = re.findall(r"^\| `(django_cqrs\.[EW]\d{3})` \|", doc, re.MULTILINE)

    assert len(table) == len(set(table))
    assert set(table) == in_code


# -- links and commands ---------------------------------------------------------------

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(doc: Path) -> set[str]:
    """GitHub's anchors for the headings of ``doc``."""
    text = FENCE.sub("", doc.read_text())
    headings = re.findall(r"^#+ (.+)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: doc.name)
def test_relative_links_point_to_existing_files_and_headings(doc: Path) -> None:
    links = [t for t in LINK.findall(doc.read_text()) if not re.match(r"^[a-z]+:", t)]

    broken = []
    for link in links:
        path, _, anchor = link.partition("#")
        target = doc.parent / path if path else doc
        if not target.exists() or (anchor and anchor not in anchors(target)):
            broken.append(link)
    assert broken == []


def test_make_targets_named_in_the_readme_exist() -> None:
    named = set(re.findall(r"\bmake (\w+)", (ROOT / "README.md").read_text()))
    defined = set(re.findall(r"^(\w+):", (ROOT / "Makefile").read_text(), re.MULTILINE))

    assert {"demo", "test", "lint"} <= named
    assert named <= defined
