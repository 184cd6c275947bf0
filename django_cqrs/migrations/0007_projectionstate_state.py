# The run state of a projection is called "state" (what is reported about it is its
# status, see django_cqrs.projections.status).

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("django_cqrs", "0006_idempotencyrecord_moved"),
    ]

    operations = [
        migrations.RenameField(model_name="projectionstate", old_name="status", new_name="state"),
    ]
