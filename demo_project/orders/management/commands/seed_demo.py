"""Seed the demo through the command bus: customers, products (100 units each) and orders.

Each order's checkout (orders/sagas.py) runs later, in the django-q2 cluster: the
catch-up tasks the commands queued wait in the database until it starts.
"""

from __future__ import annotations

import logging
import random
from decimal import Decimal
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_cqrs import command_bus
from django_cqrs.exceptions import InvariantViolationError
from django_cqrs.models import StoredEvent
from django_cqrs.projections import all_projections
from django_cqrs.projections.rebuild import rebuild

from ...commands import (
    AddItem,
    AddProduct,
    CancelOrder,
    OrderItem,
    PlaceOrder,
    RegisterCustomer,
    ShipOrder,
)
from ...models import Customer

CUSTOMERS = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Edsger Dijkstra", "Barbara Liskov"]
PRODUCTS = [
    "Keyboard",
    "Mouse",
    "Monitor",
    "Laptop stand",
    "USB-C hub",
    "Webcam",
    "Headset",
    "Desk lamp",
    "Notebook",
    "Pen set",
    "Cable kit",
    "SSD 1 TB",
    "Router",
    "Speaker",
    "Microphone",
    "Chair mat",
    "Monitor arm",
    "Dock",
    "Charger",
    "Backpack",
]


class Command(BaseCommand):
    help = "Seed customers, products and orders through the command bus (skips if seeded)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--orders", type=int, default=200, help="Orders to place.")
        parser.add_argument("--seed", type=int, default=42, help="Random seed.")
        parser.add_argument("--force", action="store_true", help="Seed even if demo data exists.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["orders"] < 0:
            raise CommandError("--orders cannot be negative.")
        self._ensure_admin()
        # Customers come first, so they mark a seeded database even when no order was placed.
        if Customer.objects.exists() and not options["force"]:
            self.stdout.write("Demo data already present; skipping (use --force to add more).")
            self._fill_new_read_models()
            return
        rng = random.Random(options["seed"])
        meta = {"user": "seed_demo"}
        customers = [
            command_bus.dispatch(
                RegisterCustomer(name=name, credit_limit=Decimal(rng.choice([500, 2000, 10000]))),
                metadata=meta,
            ).value
            for name in CUSTOMERS
        ]
        products = [
            command_bus.dispatch(
                AddProduct(name=name, price=Decimal(rng.randint(500, 25000)) / 100),
                metadata=meta,
            ).value
            for name in PRODUCTS
        ]
        placed = rejected = 0
        # The credit-limit invariant rejects some random orders; keep going until enough
        # orders are placed (rejections are reported, and nothing of them is written).
        # Rejections are expected here; keep the log quiet while placing orders.
        logger = logging.getLogger("django_cqrs")
        old_level = logger.level
        logger.setLevel(logging.WARNING)
        try:
            while placed < options["orders"]:
                items = [
                    OrderItem(product_id=pid, quantity=rng.randint(1, 3))
                    for pid in rng.sample(products, rng.randint(1, 4))
                ]
                try:
                    order_id = command_bus.dispatch(
                        PlaceOrder(customer_id=rng.choice(customers), items=items), metadata=meta
                    ).value
                except InvariantViolationError:
                    rejected += 1  # over the credit limit: the demo shows the invariant at work
                    continue
                placed += 1
                roll = rng.random()
                try:
                    if roll < 0.2:
                        command_bus.dispatch(
                            AddItem(order_id=order_id, product_id=rng.choice(products), quantity=1),
                            metadata=meta,
                        )
                    if roll < 0.1:
                        command_bus.dispatch(CancelOrder(order_id=order_id), metadata=meta)
                    elif roll > 0.6:
                        command_bus.dispatch(ShipOrder(order_id=order_id), metadata=meta)
                except InvariantViolationError:
                    pass
        finally:
            logger.setLevel(old_level)
        self.stdout.write(
            self.style.SUCCESS(
                f"Seeded {len(customers)} customers, {len(products)} products and {placed} "
                f"orders through the command bus ({rejected} rejected by the credit limit); "
                "the django-q2 cluster runs their checkouts."
            )
        )

    def _fill_new_read_models(self) -> None:
        """Rebuild the demo's sync projections whose read models are new to this database.

        A database seeded by an older demo has the events but not the rows of a read
        model added since (a migration makes its table empty): a rebuild fills it. (An
        async projection catches up from its own checkpoint, which starts at 0.)
        """
        for projection in all_projections():
            if not projection.name.startswith("orders.") or projection.mode != "sync":
                continue
            empty = not any(model._default_manager.exists() for model in projection.read_models)
            events = StoredEvent.objects.filter(event_type__in=projection.handled_event_types())
            if empty and events.exists():
                applied = rebuild(projection)
                self.stdout.write(f"Filled {projection.name} from the log: {applied} events.")

    def _ensure_admin(self) -> None:
        User = get_user_model()
        if not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@localhost", "admin")
            self.stdout.write(
                self.style.WARNING(
                    "Created the local-only superuser admin / admin (for this demo database "
                    "only; never use it anywhere else)."
                )
            )
