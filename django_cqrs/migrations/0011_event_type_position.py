# The event type is indexed with the position, in place of the index of the event type
# alone: `?event_type=` pages in the admin, however deep, and readers that select event
# types then walk the index alone, and appends keep the same number of indexes. On SQLite
# AlterField rebuilds the table, which drops the append-only triggers: they are installed
# again after it (and before it, backwards, for the same reason).

from typing import Any

from django.db import migrations, models

from django_cqrs.db import appendonly


def guard(apps: Any, schema_editor: Any) -> None:
    appendonly.install(schema_editor, apps.get_model("django_cqrs", "StoredEvent"))


class Migration(migrations.Migration):
    dependencies = [
        ("django_cqrs", "0010_event_log_indexes"),
    ]

    operations = [
        migrations.RunPython(migrations.RunPython.noop, guard),
        migrations.AlterField(
            model_name="storedevent",
            name="event_type",
            field=models.CharField(max_length=255),
        ),
        migrations.AddIndex(
            model_name="storedevent",
            index=models.Index(fields=["event_type", "position"], name="django_cqrs_event_type"),
        ),
        migrations.RunPython(guard, migrations.RunPython.noop),
    ]
