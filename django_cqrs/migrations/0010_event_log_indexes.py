# Indexes for the admin's event log at millions of events: an aggregate id without its
# type (filter, search, stream), and the metadata's correlation id and user as text, the
# same expression the filters compare (db/jsontext.KeyText). AddIndex does not rebuild
# the table on SQLite, so the append-only triggers stay. On PostgreSQL each index is
# built under a lock that holds appends back while it builds.

import django_cqrs.db.jsontext
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("django_cqrs", "0009_transaction_ids"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="storedevent",
            index=models.Index(fields=["aggregate_id"], name="django_cqrs_event_agg_id"),
        ),
        migrations.AddIndex(
            model_name="storedevent",
            index=models.Index(
                django_cqrs.db.jsontext.KeyText("metadata", "correlation_id"),
                name="django_cqrs_event_corr",
            ),
        ),
        migrations.AddIndex(
            model_name="storedevent",
            index=models.Index(
                django_cqrs.db.jsontext.KeyText("metadata", "user"), name="django_cqrs_event_user"
            ),
        ),
    ]
