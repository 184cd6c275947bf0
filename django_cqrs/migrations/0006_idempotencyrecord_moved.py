# IdempotencyRecord moved to the HTTP app (django_cqrs.rest_framework, label
# django_cqrs_rest). Where that app is installed, its 0001_initial takes the table over
# as it is (stored answers keep being replayed across the upgrade); where it is not, the
# table is dropped here.

from typing import Any

from django.apps import apps as global_apps
from django.db import migrations

HTTP_APP = "django_cqrs.rest_framework"
TABLE = "django_cqrs_idempotency"


def drop_unless_the_http_app_takes_it_over(apps: Any, schema_editor: Any) -> None:
    if global_apps.is_installed(HTTP_APP):
        return
    if TABLE in schema_editor.connection.introspection.table_names():
        schema_editor.delete_model(apps.get_model("django_cqrs", "IdempotencyRecord"))


def create_if_missing(apps: Any, schema_editor: Any) -> None:
    if TABLE not in schema_editor.connection.introspection.table_names():
        schema_editor.create_model(apps.get_model("django_cqrs", "IdempotencyRecord"))


class Migration(migrations.Migration):
    dependencies = [
        ("django_cqrs", "0005_projectionstate_permissions"),
    ]

    operations = [
        migrations.RunPython(drop_unless_the_http_app_takes_it_over, create_if_missing),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="IdempotencyRecord")],
        ),
    ]
