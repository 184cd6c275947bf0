# The database refuses UPDATE and DELETE of stored events (django_cqrs.db.appendonly):
# triggers on PostgreSQL and SQLite, none elsewhere. Migrating back drops them.

from typing import Any

from django.db import migrations

from django_cqrs.db import appendonly


def install(apps: Any, schema_editor: Any) -> None:
    appendonly.install(schema_editor, apps.get_model("django_cqrs", "StoredEvent"))


def uninstall(apps: Any, schema_editor: Any) -> None:
    appendonly.uninstall(schema_editor, apps.get_model("django_cqrs", "StoredEvent"))


class Migration(migrations.Migration):
    dependencies = [
        ("django_cqrs", "0007_projectionstate_state"),
    ]

    operations = [
        migrations.RunPython(install, uninstall),
    ]
