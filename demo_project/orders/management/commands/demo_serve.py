"""Run the demo: the web server and the django-q2 cluster, started and stopped together.

    python manage.py demo_serve --port 8000      # what `make demo` runs last

Both run as children of this command (:mod:`demo_project.supervisor`): Ctrl+C, or
SIGTERM to it or to its process group, stops the server and every worker of the
cluster within seconds, and leaves no process behind.

When RabbitMQ answers on 127.0.0.1:5672, the demo's second service starts beside them
(``demo_project.settings_downstream``, its own database): its database is migrated,
its inbox consumer (``cqrs_consume orders``) and its web server (on the next port)
run as children too. Without RabbitMQ it says so and is skipped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo_project.supervisor import Child, Supervisor, rabbitmq_answers
from django_cqrs.relays import all_relays

MANAGE_PY = Path(__file__).resolve().parents[4] / "manage.py"
HOST = "127.0.0.1"
DOWNSTREAM_SETTINGS = "demo_project.settings_downstream"


class Command(BaseCommand):
    downstream_port: int | None = None
    help = "Serve the demo beside the django-q2 cluster (qcluster); Ctrl+C stops both."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--no-cluster", action="store_true", help="Do not start qcluster.")
        parser.add_argument(
            "--no-downstream",
            action="store_true",
            help="Do not start the second service (its inbox consumer and web server).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port = parse_port(str(options["port"]))
        manage = [sys.executable, str(MANAGE_PY)]
        with Supervisor() as supervisor:
            supervisor.start("web server", [*manage, "runserver", "--noreload", f"{HOST}:{port}"])
            if not options["no_cluster"]:
                supervisor.start("django-q2 cluster", [*manage, "qcluster"])
            if not options["no_downstream"]:
                self.start_downstream(supervisor, manage, port + 1)
            stopped_by = supervisor.run(
                ready=lambda: accepts_connections(port), on_ready=lambda: self.banner(port)
            )
            self.stdout.write("Stopping the demo: the web server and the django-q2 cluster ...")
        if isinstance(stopped_by, Child):
            raise CommandError(
                f"The {stopped_by.name} exited with status {stopped_by.exit_status()}; "
                "the demo is stopped (its output above says why)."
            )
        self.stdout.write(f"The demo is stopped ({signal.Signals(stopped_by).name}).")

    def relays_line(self) -> str:
        """Which relays run (the demo relays to each broker that answered)."""
        running = {cls.relay_name: cls.options for cls in all_relays()}
        if not running:
            return (
                "  Relays: none (no broker answered on 127.0.0.1:5672 or 127.0.0.1:4222, or "
                "DEMO_RELAYS=0); the demo runs without them."
            )
        where = []
        for name, options in running.items():
            if options["BACKEND"] == "rabbitmq":
                where.append(f"{name} -> RabbitMQ exchange {options['EXCHANGE']}")
            else:
                where.append(f"{name} -> NATS JetStream stream {options['STREAM']}")
        return "  Relays: " + "; ".join(where) + " (every demo event; cqrs_status shows them)."

    def start_downstream(self, supervisor: Supervisor, manage: list[str], port: int) -> None:
        """The second service, when RabbitMQ answers: migrate, consume, serve."""
        if not rabbitmq_answers():
            self.stdout.write(
                "RabbitMQ does not answer on 127.0.0.1:5672: the downstream service "
                "(demo_project.settings_downstream) is skipped."
            )
            return
        settings = ["--settings", DOWNSTREAM_SETTINGS]
        done = subprocess.run([*manage, "migrate", "--noinput", "-v", "0", *settings], check=False)
        if done.returncode != 0:
            self.stdout.write("The downstream database could not be migrated: skipped.")
            return
        supervisor.start(
            "downstream inbox consumer", [*manage, "cqrs_consume", "orders", *settings]
        )
        if bind_error(port) is not None:
            self.stdout.write(f"Port {port} is in use: the downstream web server is skipped.")
            return
        supervisor.start(
            "downstream web server",
            [*manage, "runserver", "--noreload", f"{HOST}:{port}", *settings],
        )
        self.downstream_port = port

    def banner(self, port: int) -> None:
        self.stdout.write(self.relays_line())
        self.stdout.write(
            self.style.SUCCESS(f"The demo is ready: open http://{HOST}:{port}/") + "\n"
            "  It links to the API (/api/), its docs (/api/docs/), the admin (/admin/, "
            "local-only superuser admin / admin) and the health report (/cqrs/health/).\n"
            "  Ctrl+C stops the server and the django-q2 cluster."
        )
        if self.downstream_port is not None:
            self.stdout.write(
                f"  The downstream service (orders received from RabbitMQ, demo.events) is on "
                f"http://{HOST}:{self.downstream_port}/."
            )


def parse_port(port: str) -> int:
    """The port as a number, if it is one and nothing listens on it yet."""
    if not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise CommandError(f"PORT must be a number from 1 to 65535, not {port!r}.")
    error = bind_error(int(port))
    if error is not None:
        raise CommandError(
            f"Port {port} on {HOST} is in use ({error.strerror}): stop what listens there, "
            "or choose another port (PORT=8001 make demo)."
        )
    return int(port)


def bind_error(port: int) -> OSError | None:
    """Why the development server could not listen on ``port`` now (None: it could)."""
    with socket.socket() as sock:
        # The development server sets SO_REUSEADDR too: only a listening socket is in use.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            return exc
    return None


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False
