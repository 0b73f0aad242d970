"""Every long-running command ends cleanly on SIGTERM and on SIGINT, with what it
started: real `wactl` processes, real signals (`wactl.signals`).

A command that undoes its work ends like Ctrl-C: 128 + the signal (130, 143), and no
error line. The servers (`daemon run`, `portal serve`) stop gracefully and exit
0; the dashboard gives the terminal back. Nothing a command started outlives it.
"""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from tests.conftest import CLI
from tests.daemon_support import Daemon
from tests.support import db_session, poll_for

SIGNALS = [signal.SIGTERM, signal.SIGINT]
WAIT = 30.0


@dataclass
class Command:
    """A `wactl` process with its output collected as it comes."""

    process: subprocess.Popen[bytes]
    out: list[bytes] = field(default_factory=list)
    err: list[bytes] = field(default_factory=list)
    #: What it had started when it was signalled (killed at the end if left over).
    started: list[psutil.Process] = field(default_factory=list)

    @property
    def stdout(self) -> str:
        return b"".join(self.out).decode(errors="replace")

    @property
    def stderr(self) -> str:
        return b"".join(self.err).decode(errors="replace")

    def wait_for_output(self, text: str) -> None:
        def shown() -> bool:
            if self.process.poll() is not None:
                pytest.fail(f"exited with {self.process.returncode}: {self.stderr}")
            return text in self.stdout or text in self.stderr

        poll_for(shown, timeout=WAIT)

    def descendants(self) -> list[psutil.Process]:
        return psutil.Process(self.process.pid).children(recursive=True)

    def signal_and_wait(self, signum: int) -> int:
        started = self.descendants()
        self.started.extend(started)
        self.process.send_signal(signum)
        code = self.process.wait(timeout=WAIT)
        # Nothing it started is left (a zombie waiting for init counts as gone).
        poll_for(lambda: not [p for p in started if _alive(p)], timeout=WAIT)
        return code


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _pump(stream: object, sink: list[bytes]) -> None:
    assert hasattr(stream, "read1")
    while chunk := stream.read1(65536):
        sink.append(chunk)


@contextlib.contextmanager
def wactl(*args: str, env: dict[str, str] | None = None) -> Iterator[Command]:
    process = subprocess.Popen(
        [sys.executable, "-m", "wactl", *args],
        stdin=subprocess.PIPE,  # kept open: an interactive command waits on it
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env or dict(os.environ),
    )
    command = Command(process)
    pumps = [
        threading.Thread(target=_pump, args=(process.stdout, command.out), daemon=True),
        threading.Thread(target=_pump, args=(process.stderr, command.err), daemon=True),
    ]
    for pump in pumps:
        pump.start()
    try:
        yield command
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=WAIT)
        for leftover in command.started:  # a failed test leaves nothing running either
            with contextlib.suppress(psutil.Error):
                leftover.kill()
        for pump in pumps:
            pump.join(timeout=WAIT)
        for stream in (process.stdin, process.stdout, process.stderr):
            assert stream is not None
            stream.close()


def interrupted(signum: int) -> int:
    """What an undoing command exits with for ``signum`` (it says nothing more)."""
    return 128 + signum


def _add_message(db_url: str, slug: str, text: str) -> None:
    from sqlalchemy import select

    from wactl.db.models import MessageLog, Tenant
    from wactl.enums import Direction, MessageState

    with db_session(db_url) as session:
        tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
        assert tenant is not None
        session.add(
            MessageLog(
                tenant_id=tenant.id,
                direction=Direction.IN,
                from_number="+15550001111",
                to_number="+15550002222",
                chat="+15550001111",
                message_text=text,
                wa_message_id="m1",
                state=MessageState.ANSWERED,
            )
        )


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_portal_serve_stops_and_frees_its_port(db_url: str, signum: int) -> None:
    env = {**os.environ, "WACTL_PORTAL_SESSION_SECRET": "s" * 64}
    with wactl("portal", "serve", "--port", "0", env=env) as portal:
        portal.wait_for_output("listening on http://127.0.0.1:")
        match = re.search(r"listening on http://127\.0\.0\.1:(\d+)", portal.stderr)
        assert match is not None
        port = int(match.group(1))
        assert portal.signal_and_wait(signum) == 0, portal.stderr
    assert portal.stderr.endswith("INFO wactl.portal: stopped\n")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_daemon_run_shuts_down_its_supervisor(
    cli: CLI, db_url: str, isolated_env: Path, signum: int
) -> None:
    runtime = isolated_env / "run" / "wactl"
    with wactl("daemon", "run") as daemon:
        daemon.wait_for_output("listening on")
        assert (runtime / "wactld.sock").exists() and (runtime / "wactld.pid").exists()
        assert daemon.signal_and_wait(signum) == 0, daemon.stderr
    # It went through its shutdown, not around it (a re-raised SIGTERM skipped it).
    assert "shutting down (workers keep running)" in daemon.stderr
    assert "daemon stopped" in daemon.stderr
    assert not (runtime / "wactld.sock").exists() and not (runtime / "wactld.pid").exists()


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_daemon_logs_follow(db_url: str, isolated_env: Path, signum: int) -> None:
    log = isolated_env / ".local/share/wactl/logs/wactld.log"
    log.parent.mkdir(parents=True)
    log.write_text("2026-01-01 00:00:00,000 INFO wactl.daemon: a line to follow\n")
    with wactl("daemon", "logs", "-f") as follow:
        follow.wait_for_output("a line to follow")
        code = follow.signal_and_wait(signum)
    assert (code, follow.stderr) == (interrupted(signum), "")


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_tenant_logs_follow(cli: CLI, db_url: str, signum: int) -> None:
    assert cli("tenant", "create", "alpha", "--name", "Alpha").code == 0
    _add_message(db_url, "alpha", "a message to follow")
    with wactl("tenant", "logs", "alpha", "--follow") as follow:
        follow.wait_for_output("a message to follow")
        code = follow.signal_and_wait(signum)
    assert (code, follow.stderr) == (interrupted(signum), "")


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_qr_wait_and_sandbox_chat(cli: CLI, daemon: Daemon, signum: int) -> None:
    assert cli("tenant", "create", "alpha", "--name", "Alpha").code == 0
    assert cli("tenant", "start", "alpha").code == 0
    with wactl("tenant", "qr", "alpha", "--wait") as qr:
        qr.wait_for_output("scan")
        code = qr.signal_and_wait(signum)
    assert code == interrupted(signum)
    assert cli("sandbox", "scan", "alpha").code == 0
    with wactl("sandbox", "chat", "alpha") as chat:
        chat.wait_for_output("chatting with 'alpha'")
        code = chat.signal_and_wait(signum)
    assert (code, chat.stderr) == (
        interrupted(signum),
        "chatting with 'alpha' as +15551234567; Ctrl-D ends\n",
    )
    assert daemon.ps()["alpha"]["state"] == "RUNNING"  # the worker is the daemon's


@pytest.mark.parametrize("signum", SIGNALS, ids=lambda s: s.name)
def test_engine_install_stops_npm_too(db_url: str, tmp_path: Path, signum: int) -> None:
    """`npm pack` is the command's child: it must not go on alone (it did, re-parented
    to init, when SIGTERM ended wactl at once)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text("#!/bin/sh\necho fetching >&2\nexec sleep 600\n")
    npm.chmod(0o755)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": str(scratch)}
    with wactl("engine", "install", "--source", "npm", env=env) as install:

        def npm_runs() -> bool:
            return any(p.name() == "sleep" for p in install.descendants())

        poll_for(npm_runs, timeout=WAIT)
        code = install.signal_and_wait(signum)
    assert code == interrupted(signum)
    assert list(scratch.iterdir()) == []  # npm's scratch directory was removed too


@pytest.mark.parametrize(
    "signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name
)
def test_the_dashboard_gives_the_terminal_back(daemon: Daemon, signum: int) -> None:
    """In a terminal (a pty): the dashboard quits as `q` does, leaving the alternate
    screen and restoring the cursor, whichever signal ends it."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: become `wactl tui` on the pty
        os.execve(  # noqa: S606 - the test's own interpreter, no shell wanted
            sys.executable,
            [sys.executable, "-m", "wactl", "tui"],
            {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "LINES": "24"},
        )
    output = bytearray()

    def read(until: Callable[[], bool]) -> None:
        def more() -> bool:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                with contextlib.suppress(OSError):  # EIO: the child closed the pty
                    output.extend(os.read(fd, 65536))
            return until()

        try:
            poll_for(more, timeout=WAIT)
        except BaseException:
            print(bytes(output)[-3000:])
            raise

    ended: list[int] = []

    def exited() -> bool:
        if not ended:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                ended.append(status)
        return bool(ended)

    try:
        read(lambda: b"Filter" in output)  # the footer: mounted, handlers installed
        os.kill(pid, signum)
        read(exited)
        status = ended[0]
    finally:
        if not ended:
            with contextlib.suppress(ChildProcessError, ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 128 + signum
    assert b"\x1b[?1049l" in output  # left the alternate screen
