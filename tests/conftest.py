"""Shared test set-up: PostgreSQL-only and Redis-only tests skip with a visible reason."""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

PLUGIN = "django_cqrs.testing.pytest_plugin"

ON_POSTGRES = bool(os.environ.get("DATABASE_URL", "").startswith(("postgres", "postgresql")))
REDIS_URL = os.environ.get("CQRS_TEST_REDIS_URL", "")

requires_postgres = pytest.mark.skipif(
    not ON_POSTGRES,
    reason="needs PostgreSQL: set DATABASE_URL=postgres://... (.ci/run does)",
)
requires_redis = pytest.mark.skipif(
    not REDIS_URL,
    reason="needs Redis: set CQRS_TEST_REDIS_URL=redis://127.0.0.1:6379/0 (.ci/run does)",
)


def pytest_configure(config: pytest.Config) -> None:
    # The toolkit's fixtures come from the package's pytest11 entry point (pyproject.toml),
    # which pytest has loaded by now; an install made before the entry point existed
    # (`pip install -e .` again adds it) gets the plugin here, under the same name, so it
    # never loads twice and `-p no:django_cqrs` still turns it off.
    if not config.pluginmanager.has_plugin("django_cqrs"):
        config.pluginmanager.register(importlib.import_module(PLUGIN), "django_cqrs")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("postgres"):
            item.add_marker(requires_postgres)
        if item.get_closest_marker("redis"):
            item.add_marker(requires_redis)


@pytest.fixture
def vendor() -> str:
    return connection.vendor


@pytest.fixture
def no_trigger(settings: Any) -> None:
    """Commands do not queue async catch-ups: the test drives them itself, or needs none."""
    settings.DJANGO_CQRS = {"TRIGGER_ON_COMMIT": False}


@pytest.fixture
def executor() -> Iterator[MigrationExecutor]:
    """A migration executor; the database is migrated to the latest state afterwards."""
    executor = MigrationExecutor(connection)
    try:
        yield executor
    finally:
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.fixture
def split() -> Iterator[type[Any]]:
    """``TransferSaga`` in three partitions, in place of ``TransferSaga`` for the test.

    They share the instance table, so only one of them is registered at a time.
    """
    from django_cqrs.projections.base import register, unregister
    from tests.testapp.sagas import TransferSaga

    unregister(TransferSaga)

    class SplitTransferSaga(TransferSaga):
        partitions = 3

    try:
        yield SplitTransferSaga
    finally:
        for part in SplitTransferSaga.partition_classes:
            unregister(part)
        register(TransferSaga)
