"""The top-level namespace follows its stated rule: the tutorial's imports, lazily."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import django_cqrs
import django_cqrs.testing

README = Path(__file__).resolve().parent.parent / "README.md"


def tutorial_imports() -> set[tuple[str, str]]:
    """``(module, name)`` for every ``from django_cqrs... import name`` in the README's code."""
    found: set[tuple[str, str]] = set()
    for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL):
        for node in ast.walk(ast.parse(block)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("django_cqrs"):
                found.update((node.module or "", alias.name) for alias in node.names)
    return found


def test_every_name_the_tutorial_imports_from_a_django_cqrs_module_is_exported() -> None:
    imported = tutorial_imports()
    assert ("django_cqrs.aggregates", "Aggregate") in imported  # the README was read

    for module, name in imported:
        value = getattr(importlib.import_module(module), name)
        if isinstance(value, type(django_cqrs)):
            continue  # a module (``from django_cqrs import store``), not an export
        # The test toolkit is a namespace of its own; the rest is the top-level one's.
        toolkit = module == "django_cqrs.testing" or module.startswith("django_cqrs.testing.")
        namespace = django_cqrs.testing if toolkit else django_cqrs
        assert name in namespace.__all__, f"{module}.{name} is not exported by {namespace.__name__}"
        assert getattr(namespace, name) is value


def test_every_error_is_exported() -> None:
    from django_cqrs import exceptions

    errors = {
        name
        for name, value in vars(exceptions).items()
        if isinstance(value, type) and issubclass(value, exceptions.CQRSError)
    }

    assert errors <= set(django_cqrs.__all__)


def test_the_spelled_out_all_is_exactly_what_the_namespace_loads() -> None:
    # mypy reads the literal list (what `mypy --strict` users may import from here);
    # the namespace loads from _LAZY: the two must not drift apart.
    assert django_cqrs.__all__ == sorted(django_cqrs._LAZY)


def test_the_testing_namespace_spells_out_what_it_loads() -> None:
    from django_cqrs import events

    assert django_cqrs.testing.__all__ == sorted(django_cqrs.testing._LAZY)
    assert django_cqrs.testing.upcast_payload is events.upcast_payload
