"""A handler registered for ``Command[R]`` must return ``R``: mypy says so, and so does the
registration where the annotations make it certain."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from django_cqrs import Command, Query
from django_cqrs.exceptions import ConfigurationError
from django_cqrs.registry import Registry, declared_result
from tests.helpers import REPO_ROOT


@dataclasses.dataclass(frozen=True)
class Place(Command[uuid.UUID]):
    name: str


@dataclasses.dataclass(frozen=True)
class Forget(Command[None]):
    name: str


@dataclasses.dataclass(frozen=True)
class Measure(Query[float]):
    name: str


@dataclasses.dataclass(frozen=True)
class Names(Query[list[str]]):
    prefix: str


@dataclasses.dataclass(frozen=True)
class Untyped(Command):  # type: ignore[type-arg]
    name: str


def commands() -> Registry:
    return Registry("command", Command)


def queries() -> Registry:
    return Registry("query", Query)


def test_the_declared_result_is_read_from_the_generic_base() -> None:
    assert declared_result(Place) is uuid.UUID
    assert declared_result(Forget) is type(None)
    assert declared_result(Names) == list[str]
    assert declared_result(Untyped) is Any


def test_a_handler_returning_another_type_is_refused_at_registration() -> None:
    def place(command: Place) -> str:
        return command.name

    registry = commands()
    with pytest.raises(ConfigurationError, match=r"returns str, but Place is a Command\[UUID\]"):
        registry.register(Place, place)
    assert Place not in registry


def test_a_handler_returning_nothing_for_a_result_is_refused() -> None:
    def place(command: Place) -> None: ...

    with pytest.raises(ConfigurationError, match="its handler must return UUID"):
        commands().register(Place, place)


def test_handlers_the_typing_rules_accept_are_registered() -> None:
    def place(command: Place) -> uuid.UUID:
        return uuid.uuid4()

    def forget(command: Forget) -> None: ...

    def measure(command: Measure) -> int:  # an int where a float is declared
        return 1

    def names(query: Names) -> list[str]:
        return []

    def untyped(command: Untyped) -> str:
        return ""

    registry, reads = commands(), queries()
    registry.register(Place, place)
    registry.register(Forget, forget)
    registry.register(Untyped, untyped)  # the command declares no result: anything goes
    registry.register(Place, place)  # the same handler again: no conflict
    reads.register(Measure, measure)
    reads.register(Names, names)
    reads.register(Names, names)
    unannotated = commands()
    unannotated.register(Place, lambda command: command.name)  # nothing certain: mypy's
    assert registry.handler_for(Forget) is forget
    assert reads.handler_for(Names) is names


def test_mypy_refuses_a_handler_that_returns_the_wrong_type(tmp_path: Path) -> None:
    module = tmp_path / "wrong_handler.py"
    module.write_text(
        textwrap.dedent(
            """
            import dataclasses
            import uuid

            from django_cqrs import Command, command_handler, command_bus


            @dataclasses.dataclass(frozen=True)
            class Place(Command[uuid.UUID]):
                name: str


            @command_handler(Place)
            def wrong(command: Place) -> str:
                return command.name


            @command_handler(Place)
            def right(command: Place) -> uuid.UUID:
                return uuid.uuid4()


            value: uuid.UUID = command_bus.dispatch(Place(name="x")).value
            """
        )
    )
    found = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(module)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    wrong = module.read_text().splitlines().index("@command_handler(Place)") + 1  # 1-based
    lines = [line for line in found.stdout.splitlines() if "wrong_handler.py" in line]
    assert len(lines) == 1, found.stdout + found.stderr  # only the wrong handler
    assert f":{wrong}: error:" in lines[0]  # the decorator line of `wrong`
    assert '"Callable[[Place], str]"; expected "Callable[[Place], UUID]"' in lines[0]
