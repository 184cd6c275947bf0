"""Checkout: products get stock (existing rows 100), orders can be confirmed, payments,
the fake payment gateway's row and the checkout saga's instances (orders/sagas.py)."""

import django.utils.timezone
from decimal import Decimal
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0004_order_total_decimal"),
    ]

    operations = [
        migrations.CreateModel(
            name="Checkout",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("key", models.CharField(max_length=200, unique=True)),
                ("steps", models.JSONField(blank=True, default=list)),
                ("error", models.TextField(blank=True, default="")),
                ("parked_positions", models.JSONField(blank=True, default=list)),
                ("last_position", models.BigIntegerField(blank=True, null=True)),
                ("started_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "state",
                    models.CharField(
                        choices=[
                            ("started", "started"),
                            ("awaiting_payment", "awaiting payment"),
                            ("completed", "completed"),
                            ("compensated", "compensated"),
                            ("failed", "failed"),
                        ],
                        db_index=True,
                        default="started",
                        max_length=40,
                    ),
                ),
                (
                    "amount_requested",
                    models.DecimalField(decimal_places=2, default=Decimal("0"), max_digits=14),
                ),
                (
                    "amount_approved",
                    models.DecimalField(decimal_places=2, default=Decimal("0"), max_digits=14),
                ),
                ("added_items", models.PositiveIntegerField(default=0)),
            ],
            options={
                "ordering": ["-started_at", "key"],
            },
        ),
        migrations.CreateModel(
            name="Payment",
            fields=[
                ("version", models.PositiveIntegerField(default=0, editable=False)),
                ("id", models.UUIDField(editable=False, primary_key=True, serialize=False)),
                ("order_id", models.UUIDField(db_index=True)),
                ("amount", models.DecimalField(decimal_places=2, max_digits=14)),
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("requested", "requested"),
                            ("approved", "approved"),
                            ("declined", "declined"),
                            ("refunded", "refunded"),
                            ("voided", "voided"),
                        ],
                        max_length=20,
                    ),
                ),
                ("requested_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "abstract": False,
            },
        ),
        migrations.CreateModel(
            name="PaymentGateway",
            fields=[
                ("version", models.PositiveIntegerField(default=0, editable=False)),
                (
                    "id",
                    models.CharField(
                        default="fake",
                        editable=False,
                        max_length=20,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "mode",
                    models.CharField(
                        choices=[("approve", "approve"), ("decline", "decline"), ("hold", "hold")],
                        default="approve",
                        max_length=20,
                    ),
                ),
            ],
            options={
                "abstract": False,
            },
        ),
        migrations.AddField(
            model_name="product",
            name="stock",
            field=models.PositiveIntegerField(default=100),
        ),
        migrations.AddField(
            model_name="productview",
            name="stock",
            field=models.PositiveIntegerField(default=100),
        ),
        migrations.AlterField(
            model_name="order",
            name="status",
            field=models.CharField(
                choices=[
                    ("placed", "placed"),
                    ("confirmed", "confirmed"),
                    ("cancelled", "cancelled"),
                    ("shipped", "shipped"),
                ],
                default="placed",
                max_length=20,
            ),
        ),
        migrations.AlterField(
            model_name="orderview",
            name="status",
            field=models.CharField(
                choices=[
                    ("placed", "placed"),
                    ("confirmed", "confirmed"),
                    ("cancelled", "cancelled"),
                    ("shipped", "shipped"),
                ],
                db_index=True,
                max_length=20,
            ),
        ),
    ]
