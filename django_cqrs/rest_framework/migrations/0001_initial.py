# IdempotencyRecord, formerly django_cqrs' own: an existing table is taken over as it
# is (django_cqrs' 0006 keeps it when this app is installed); otherwise it is created.

from typing import Any

import django.utils.timezone
from django.db import migrations, models

TABLE = "django_cqrs_idempotency"


def create_unless_taken_over(apps: Any, schema_editor: Any) -> None:
    if TABLE not in schema_editor.connection.introspection.table_names():
        schema_editor.create_model(apps.get_model("django_cqrs_rest", "IdempotencyRecord"))


def drop(apps: Any, schema_editor: Any) -> None:
    schema_editor.delete_model(apps.get_model("django_cqrs_rest", "IdempotencyRecord"))


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("django_cqrs", "0006_idempotencyrecord_moved"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="IdempotencyRecord",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("key", models.CharField(max_length=255)),
                        ("user", models.CharField(blank=True, default="", max_length=150)),
                        ("request_hash", models.CharField(max_length=64)),
                        ("lock_token", models.CharField(max_length=32)),
                        ("locked_at", models.DateTimeField(default=django.utils.timezone.now)),
                        (
                            "response_status",
                            models.PositiveSmallIntegerField(blank=True, null=True),
                        ),
                        ("response_body", models.TextField(blank=True, default="")),
                        ("response_headers", models.JSONField(blank=True, default=dict)),
                        ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                        ("expires_at", models.DateTimeField(db_index=True)),
                    ],
                    options={
                        "verbose_name": "idempotency record",
                        "db_table": "django_cqrs_idempotency",
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("user", "key"), name="django_cqrs_idempotency_key"
                            )
                        ],
                    },
                ),
            ],
        ),
        migrations.RunPython(create_unless_taken_over, drop),
    ]
