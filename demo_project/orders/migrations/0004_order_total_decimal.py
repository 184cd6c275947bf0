"""``OrderView.total`` becomes a decimal: "$1,203.47" (display text) is stored as 1203.47.

The text is turned into a plain decimal first, so that the column's new type can read it
on every database (PostgreSQL casts the text; SQLite copies it into a numeric column).
"""

from decimal import Decimal
from typing import Any

from django.db import migrations, models

BATCH = 1000


def _rewrite(apps: Any, schema_editor: Any, change: Any) -> None:
    order_view = apps.get_model("orders", "OrderView")
    rows = order_view.objects.using(schema_editor.connection.alias)
    batch = []
    for view in rows.only("id", "total").iterator(chunk_size=BATCH):
        view.total = change(view.total)
        batch.append(view)
        if len(batch) == BATCH:
            rows.bulk_update(batch, ["total"])
            batch = []
    rows.bulk_update(batch, ["total"])


def display_to_decimal(apps: Any, schema_editor: Any) -> None:
    _rewrite(apps, schema_editor, lambda text: str(Decimal(text.replace("$", "").replace(",", ""))))


def decimal_to_display(apps: Any, schema_editor: Any) -> None:
    _rewrite(apps, schema_editor, lambda text: f"${Decimal(text):,.2f}")


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0003_customer_and_product_views"),
    ]

    operations = [
        migrations.AlterField(
            model_name="orderview",
            name="status",
            field=models.CharField(
                choices=[("placed", "placed"), ("cancelled", "cancelled"), ("shipped", "shipped")],
                db_index=True,
                max_length=20,
            ),
        ),
        migrations.RunPython(display_to_decimal, decimal_to_display, elidable=True),
        migrations.AlterField(
            model_name="orderview",
            name="total",
            field=models.DecimalField(decimal_places=2, max_digits=14),
        ),
    ]
