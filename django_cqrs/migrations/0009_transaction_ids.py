# Events carry the id of the transaction that appended them, and readers order the log by
# (transaction_id, position) below the horizon of open transactions, so appends no longer
# take a table lock (see django_cqrs.db.log). Events already stored get 0: they were
# appended under the table lock, so their positions are already in commit order, and
# (0, position) keeps that order ahead of every new event. Checkpoints get 0 likewise.

from typing import Any

from django.db import migrations, models

from django_cqrs.db import appendonly
from django_cqrs.db.log import stamp_transaction_ids, unstamp_transaction_ids


def stamp(apps: Any, schema_editor: Any) -> None:
    stamp_transaction_ids(apps.get_model("django_cqrs", "StoredEvent"), schema_editor)


def unstamp(apps: Any, schema_editor: Any) -> None:
    unstamp_transaction_ids(apps.get_model("django_cqrs", "StoredEvent"), schema_editor)


def guard(apps: Any, schema_editor: Any) -> None:
    # SQLite rebuilds the table to add or remove a column, which drops its triggers.
    appendonly.install(schema_editor, apps.get_model("django_cqrs", "StoredEvent"))


class Migration(migrations.Migration):
    dependencies = [
        ("django_cqrs", "0008_append_only"),
    ]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, guard),
        migrations.AddField(
            model_name="storedevent",
            name="transaction_id",
            field=models.BigIntegerField(db_default=0, editable=False),
        ),
        migrations.AddIndex(
            model_name="storedevent",
            index=models.Index(
                fields=["transaction_id", "position"], name="django_cqrs_event_order"
            ),
        ),
        migrations.AddField(
            model_name="projectionstate",
            name="transaction_id",
            field=models.BigIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="projectionstate",
            name="rebuild_transaction_id",
            field=models.BigIntegerField(blank=True, null=True),
        ),
        migrations.RunPython(stamp, unstamp),
        migrations.RunPython(guard, migrations.RunPython.noop),
    ]
