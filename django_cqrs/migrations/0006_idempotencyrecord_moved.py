# IdempotencyRecord moved to the HTTP app (django_cqrs.rest_framework, label
# django_cqrs_rest). This drops its table; the HTTP app's 0001_initial, which depends on
# this migration, creates it again under the same name, empty: the keys stored before the
# upgrade are forgotten (they are a replay cache of IDEMPOTENCY_TTL seconds).

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("django_cqrs", "0005_projectionstate_permissions"),
    ]

    operations = [
        migrations.DeleteModel(
            name="IdempotencyRecord",
        ),
    ]
