"""docs/consistency.md names only tests that exist, and says which run only on PostgreSQL.

Each row of its tables is a guarantee, and names the tests that show it as
``tests/<file>.py::<test>`` (or ``tests/<file>.py::<Class>::<test>``), in backticks,
followed by ``(PostgreSQL)`` when the test skips on SQLite.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "consistency.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)((?:::\w+)+)`( \(PostgreSQL\))?")
SEPARATOR = re.compile(r"^\|(\s*:?-+:?\s*\|)+$")


def table_rows(text: str) -> list[str]:
    """The body rows of the page's tables (not their header or separator lines)."""
    lines = text.splitlines()
    rows = []
    for i, line in enumerate(lines):
        if not line.startswith("|") or SEPARATOR.match(line):
            continue
        if i + 1 < len(lines) and SEPARATOR.match(lines[i + 1]):
            continue  # a header
        rows.append(line)
    return rows


def marks_postgres(decorators: list[ast.expr]) -> bool:
    """Do these decorators (or a module's ``pytestmark``) make the test PostgreSQL-only?"""
    return any("postgres" in ast.unparse(d).lower() for d in decorators)


def find_test(path: Path, names: list[str]) -> tuple[bool, bool]:
    """(is the test defined, does it run on PostgreSQL only) for ``Class::test`` names."""
    tree = ast.parse(path.read_text())
    body, postgres = tree.body, False
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets
        ):
            postgres = marks_postgres([node.value])
    *classes, function = names
    for name in classes:
        found = [n for n in body if isinstance(n, ast.ClassDef) and n.name == name]
        if not found:
            return False, False
        body, postgres = found[0].body, postgres or marks_postgres(found[0].decorator_list)
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
            return True, postgres or marks_postgres(node.decorator_list)
    return False, False


def problems(text: str) -> list[str]:
    found = []
    rows = table_rows(text)
    if not rows:
        found.append("the page has no guarantees")
    for row in rows:
        references = REFERENCE.findall(row)
        if not references:
            found.append(f"a row names no test: {row[:80]}")
        for file, names, marked in references:
            reference = file + names
            path = ROOT / file
            if not path.is_file():
                found.append(f"{reference}: no such file")
                continue
            defined, postgres = find_test(path, names.split("::")[1:])
            if not defined:
                found.append(f"{reference}: no such test")
            elif postgres and not marked:
                found.append(f"{reference}: runs on PostgreSQL only; mark it (PostgreSQL)")
            elif marked and not postgres:
                found.append(f"{reference}: runs on SQLite too; it is not (PostgreSQL) only")
    return found


def test_every_test_the_page_names_exists_and_every_row_names_one() -> None:
    assert problems(PAGE.read_text()) == []


def test_a_wrong_name_a_bare_row_or_a_wrong_mark_is_found() -> None:
    header = "| guarantee | mechanism | tests |\n|---|---|---|\n"
    real = "tests/test_bus.py::test_dispatch_runs_the_handler_and_returns_its_value"
    postgres = (
        "tests/test_store.py::test_an_open_transaction_holds_readers_back_without_blocking_writers"
    )
    page = header + "".join(
        f"| {guarantee} | how | {tests} |\n"
        for guarantee, tests in [
            ("fine", f"`{real}`; `{postgres}` (PostgreSQL)"),
            ("misspelt", "`tests/test_bus.py::test_no_such_test`"),
            ("no file", "`tests/test_nowhere.py::test_x`"),
            ("no class", "`tests/test_bus.py::TestNothing::test_x`"),
            ("bare", "none yet"),
            ("unmarked", f"`{postgres}`"),
            ("marked", f"`{real}` (PostgreSQL)"),
        ]
    )

    assert problems(page) == [
        "tests/test_bus.py::test_no_such_test: no such test",
        "tests/test_nowhere.py::test_x: no such file",
        "tests/test_bus.py::TestNothing::test_x: no such test",
        "a row names no test: | bare | how | none yet |",
        f"{postgres}: runs on PostgreSQL only; mark it (PostgreSQL)",
        f"{real}: runs on SQLite too; it is not (PostgreSQL) only",
    ]
    assert problems(header) == ["the page has no guarantees"]


def test_a_test_in_a_class_is_found(tmp_path: Path) -> None:
    module = tmp_path / "test_x.py"
    module.write_text(
        "import pytest\n\n\n@pytest.mark.postgres\nclass TestX:\n    def test_y(self):\n"
        "        pass\n"
    )

    assert find_test(module, ["TestX", "test_y"]) == (True, True)
    assert find_test(module, ["TestX", "test_z"]) == (False, False)
    assert find_test(module, ["test_y"]) == (False, False)
