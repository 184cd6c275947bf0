# The table of django_cqrs' former IdempotencyRecord, created again (empty) under the
# same name after django_cqrs' 0006 dropped it.

import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("django_cqrs", "0006_idempotencyrecord_moved"),
    ]

    operations = [
        migrations.CreateModel(
            name="IdempotencyRecord",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key", models.CharField(max_length=255)),
                ("user", models.CharField(blank=True, default="", max_length=150)),
                ("request_hash", models.CharField(max_length=64)),
                ("lock_token", models.CharField(max_length=32)),
                ("locked_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("response_status", models.PositiveSmallIntegerField(blank=True, null=True)),
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
    ]
