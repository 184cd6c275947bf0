"""Stopping ``make demo`` stops every process it started, within 10 seconds.

Each test runs the real ``make demo`` (the Makefile's target, with this interpreter in
place of the virtualenv's) on a free port and a SQLite file of its own, waits until the
server answers and the django-q2 cluster is up, stops it the way a person or a process
manager would (Ctrl+C, SIGTERM to the group, to ``make``, to the server), and then
looks for what is left. The processes are found by a marker in their environment, which
every descendant inherits, so an orphan adopted by init is found too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from demo_project.supervisor import Supervisor

ROOT = Path(__file__).resolve().parent.parent
STOP_WITHIN = 10.0  # seconds, from the signal to the last process gone
START_WITHIN = 60.0
MARKER = "CQRS_DEMO_STOP_TEST"

pytestmark = [
    pytest.mark.skipif(
        not Path("/proc/self/environ").exists() or shutil.which("make") is None,
        reason="needs Linux's /proc (to find every descendant) and make",
    ),
    # Each demo serves on its port and the next (the second service): one demo at a time,
    # with the other tests that run the demo.
    pytest.mark.xdist_group("demo_brokers"),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def marked(token: str) -> dict[int, str]:
    """Live processes (pid: command line) whose environment carries ``token``."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile, or not ours
        if f"{MARKER}={token}".encode() in environ and state != "Z":
            found[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


@pytest.fixture(scope="module")
def demo_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated and seeded demo database: ``make demo`` then skips the seeding."""
    path = tmp_path_factory.mktemp("demo") / "demo.sqlite3"
    env = demo_env(path, "setup")
    for command in (["migrate", "--noinput"], ["seed_demo", "--orders", "3"]):
        subprocess.run(
            [sys.executable, "manage.py", *command],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
    return path


def demo_env(database: Path, token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "DJANGO_"))}
    env.update(DEMO_SQLITE_PATH=str(database), DJANGO_SETTINGS_MODULE="demo_project.settings")
    env[MARKER] = token
    return env


@dataclass
class Demo:
    make: subprocess.Popen[bytes]
    token: str
    port: int
    log: Path

    def processes(self) -> dict[int, str]:
        return marked(self.token)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def pid_of(self, command: str) -> int:
        [pid] = [pid for pid, line in self.processes().items() if command in line]
        return pid

    def serves(self) -> bool:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/admin/login/", timeout=2)
        except urllib.error.HTTPError:
            return True  # an answer all the same
        except OSError:
            return False
        return True

    def wait_until_up(self) -> None:
        """The server answers and the cluster's processes are all there."""
        deadline = time.monotonic() + START_WITHIN
        while not self.serves():
            assert self.make.poll() is None, f"make demo exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"the demo did not serve:\n{self.output()}"
            time.sleep(0.2)
        # django-q2's cluster: its main process, the sentinel, pusher, monitor, workers.
        seen, steady_since = 0, time.monotonic()
        while time.monotonic() - steady_since < 1.5:
            count = sum("qcluster" in line for line in self.processes().values())
            if count != seen:
                seen, steady_since = count, time.monotonic()
            assert time.monotonic() < deadline, f"the cluster did not start:\n{self.output()}"
            time.sleep(0.1)
        assert seen >= 4, self.processes()

    def wait_until_gone(self, within: float = STOP_WITHIN) -> dict[int, str]:
        """What is still running ``within`` seconds from now (nothing, at best)."""
        deadline = time.monotonic() + within
        while (left := self.processes()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return left


@pytest.fixture
def start_demo(demo_database: Path, tmp_path: Path) -> Iterator[Callable[[], Demo]]:
    started: list[Demo] = []

    def start(port: int | None = None) -> Demo:
        token = uuid.uuid4().hex
        log = tmp_path / f"make-demo-{len(started)}.log"
        port = port or free_port()
        with log.open("wb") as out:
            make = subprocess.Popen(
                # STAMP= : the project is installed already (this interpreter runs it).
                ["make", "--no-print-directory", "demo", f"PY={sys.executable}", "STAMP="],
                cwd=ROOT,
                env={**demo_env(demo_database, token), "PORT": str(port)},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, as in a terminal
            )
        demo = Demo(make, token, port, log)
        started.append(demo)
        return demo

    yield start
    for demo in started:  # whatever a failed test left behind
        for pid in demo.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        demo.make.wait(timeout=10)


@pytest.mark.parametrize(
    ("target", "signum"),
    [
        pytest.param("group", signal.SIGINT, id="ctrl-c"),
        pytest.param("group", signal.SIGTERM, id="sigterm-to-the-group"),
        pytest.param("make", signal.SIGTERM, id="sigterm-to-make"),
        pytest.param("demo_serve", signal.SIGTERM, id="sigterm-to-the-server"),
        pytest.param("demo_serve", signal.SIGHUP, id="terminal-closed"),
    ],
)
def test_stopping_the_demo_stops_every_process_it_started(
    start_demo: Callable[[], Demo], target: str, signum: signal.Signals
) -> None:
    demo = start_demo()
    demo.wait_until_up()

    if target == "group":
        os.killpg(demo.make.pid, signum)
    elif target == "make":
        demo.make.send_signal(signum)
    else:
        os.kill(demo.pid_of(target), signum)

    assert demo.wait_until_gone() == {}, demo.output()
    assert demo.make.wait(timeout=5) is not None


def test_a_second_ctrl_c_while_stopping_leaves_nothing_behind(
    start_demo: Callable[[], Demo],
) -> None:
    demo = start_demo()
    demo.wait_until_up()

    os.killpg(demo.make.pid, signal.SIGINT)
    time.sleep(0.3)
    os.killpg(demo.make.pid, signal.SIGINT)  # the impatient second Ctrl+C

    assert demo.wait_until_gone() == {}, demo.output()


def test_the_workers_stop_when_the_server_is_killed_outright(
    start_demo: Callable[[], Demo],
) -> None:
    demo = start_demo()
    demo.wait_until_up()

    os.kill(demo.pid_of("demo_serve"), signal.SIGKILL)  # no clean-up code runs

    assert demo.wait_until_gone() == {}, demo.output()


def test_a_port_in_use_is_reported_and_nothing_is_left_running(
    start_demo: Callable[..., Demo],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        demo = start_demo(port)

        assert demo.make.wait(timeout=START_WITHIN) != 0
        assert demo.wait_until_gone(within=5) == {}, demo.output()
    assert f"port {port}" in demo.output().lower()


# -- the supervisor on its own ----------------------------------------------------------

STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a child that will not stop when asked
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # and its own child
print("up", flush=True)
time.sleep(60)
"""


def test_the_supervisor_kills_a_child_that_ignores_sigterm_and_its_children() -> None:
    token = uuid.uuid4().hex
    env = {**os.environ, MARKER: token}
    started = time.monotonic()

    with Supervisor(grace=0.5) as supervisor:
        child = supervisor.start(
            "stubborn", [sys.executable, "-c", STUBBORN], env=env, stdout=subprocess.PIPE
        )
        assert child.process.stdout is not None
        assert child.process.stdout.readline() == b"up\n"
        assert len(marked(token)) == 2

    # SIGKILL to the group is delivered at once but a loaded machine may take a moment to
    # tear the grandchild down (the supervisor reaps its child only): gone within the bound.
    while marked(token) and time.monotonic() - started < STOP_WITHIN:
        time.sleep(0.02)
    assert marked(token) == {}
    assert time.monotonic() - started < STOP_WITHIN
    assert child.process.returncode == -signal.SIGKILL


def test_the_supervisor_reports_a_child_that_exits_and_stops_the_others() -> None:
    token = uuid.uuid4().hex
    env = {**os.environ, MARKER: token}

    with Supervisor() as supervisor:
        supervisor.start("sleeper", [sys.executable, "-c", "import time; time.sleep(60)"], env=env)
        failing = supervisor.start("failing", [sys.executable, "-c", "raise SystemExit(3)"])
        stopped_by = supervisor.run()

    assert stopped_by is failing
    assert failing.exit_status() == 3
    assert marked(token) == {}
