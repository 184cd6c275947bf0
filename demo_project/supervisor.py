"""Run the demo's processes as children, and stop every one of them on the way out.

    from demo_project.supervisor import Supervisor

    with Supervisor() as supervisor:  # catches SIGINT, SIGTERM and SIGHUP from here on
        supervisor.start("web server", [sys.executable, "manage.py", "runserver", "--noreload"])
        supervisor.start("django-q2 cluster", [sys.executable, "manage.py", "qcluster"])
        stopped_by = supervisor.run()  # a signal's number, or the child that exited
    # every child has stopped here, and its process group is gone

Each child runs in a process group of its own, so a signal sent to the terminal's
foreground group (Ctrl+C) or to ``make``'s group reaches the supervisor only. It then
asks each child to stop, with SIGTERM to the child itself, not to its group: django-q2's
sentinel and workers die at once on a SIGTERM of their own and leave the cluster's main
process waiting for them for ever. After :data:`STOP_GRACE` seconds (at once on a second
Ctrl+C) it kills what is left of each child's group, then reaps the children. On Linux
a child also gets SIGTERM when the supervisor dies without cleaning up (SIGKILL).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any

#: Seconds the children get to stop on their own before their groups are killed.
STOP_GRACE = 5.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_TICK = 0.1


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def has_exited(self) -> bool:
        """Has it exited? Asked without reaping it, so its group id stays its own."""
        if self.process.returncode is not None:
            return True
        try:
            return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
        except ChildProcessError:
            return True

    def exit_status(self) -> int:
        return self.process.wait()


class Supervisor:
    """Start children, wait for a stop signal or a child's exit, stop them all."""

    def __init__(self, grace: float = STOP_GRACE) -> None:
        self.grace = grace
        self.children: list[Child] = []
        self.signals: list[int] = []  # received, in order
        self._previous: dict[int, Any] = {}
        self._stopped = False

    def __enter__(self) -> Supervisor:
        self._previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop()
        finally:
            for signum, handler in self._previous.items():
                signal.signal(signum, handler)

    def start(self, name: str, argv: Sequence[str], **popen: Any) -> Child:
        process = subprocess.Popen(
            list(argv), start_new_session=True, preexec_fn=_die_with(os.getpid()), **popen
        )
        child = Child(name, process)
        self.children.append(child)
        return child

    def run(
        self, ready: Callable[[], bool] | None = None, on_ready: Callable[[], None] | None = None
    ) -> Child | int:
        """Wait for a stop signal or a child's exit; return the signal or the child.

        ``on_ready`` is called once ``ready()`` is true (``ready`` is polled meanwhile).
        """
        while not self.signals:
            exited = next((child for child in self.children if child.has_exited()), None)
            if exited is not None:
                return exited
            if ready is not None and ready():
                ready = None
                if on_ready is not None:
                    on_ready()
            time.sleep(_TICK)
        return self.signals[0]

    def stop(self) -> None:
        """SIGTERM to each child, the grace period, SIGKILL to each group; reap them all."""
        if self._stopped:
            return  # reaped already: their group ids may belong to others now
        self._stopped = True
        interrupts = self.signals.count(signal.SIGINT)
        for child in self.children:
            if not child.has_exited():
                _send(os.kill, child.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while (
            time.monotonic() < deadline
            # Another Ctrl+C: no more waiting. (Not another SIGTERM: make passes on the one
            # that its group got, so that the supervisor gets two.)
            and self.signals.count(signal.SIGINT) <= interrupts
            and not all(child.has_exited() for child in self.children)
        ):
            time.sleep(_TICK / 2)
        for child in self.children:
            # Not reaped yet, so the group id cannot have been reused: its members only.
            _send(os.killpg, child.pid, signal.SIGKILL)
        for child in self.children:
            child.exit_status()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.signals.append(signum)


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """Does something accept TCP connections at ``host:port`` (a broker, say)?"""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def rabbitmq_answers(host: str = "127.0.0.1", port: int = 5672) -> bool:
    """Does RabbitMQ (or anything) answer where the demo's downstream service expects it?"""
    return answers(host, port)


def _send(kill: Callable[[int, int], None], pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # gone already
        kill(pid, signum)


def _die_with(parent: int) -> Callable[[], None] | None:
    """A child's pre-exec hook: SIGTERM to it when ``parent`` dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded before the fork, called after it

    def hook() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the hook ran
            os._exit(1)

    return hook
