"""Run the demo: the django-q2 cluster in the background and the web server in front."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Start `qcluster` beside the development server; stop both on Ctrl+C."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", default=os.environ.get("PORT", "8000"))
        parser.add_argument("--no-cluster", action="store_true", help="Do not start qcluster.")

    def handle(self, *args: Any, **options: Any) -> None:
        port = str(options["port"])
        if not port.isdigit() or not 0 < int(port) < 65536:
            from django.core.management.base import CommandError

            raise CommandError(f"PORT must be a number from 1 to 65535, not {port!r}.")
        cluster = None
        if not options["no_cluster"]:
            cluster = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"], start_new_session=True
            )
            self.stdout.write(f"django-q2 cluster started (process group {cluster.pid}).")
        self.stdout.write(
            f"Demo on http://127.0.0.1:{port}/ — API /api/, docs /api/docs/, admin /admin/ "
            "(local-only superuser admin / admin)."
        )
        # SIGTERM (kill, CI, a process manager) must stop the cluster too, as Ctrl+C does.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        try:
            call_command("runserver", f"127.0.0.1:{port}", use_reloader=False)
        finally:
            if cluster is not None and cluster.poll() is None:
                os.killpg(cluster.pid, signal.SIGTERM)
                try:
                    cluster.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    os.killpg(cluster.pid, signal.SIGKILL)
