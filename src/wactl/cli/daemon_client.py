"""Reaching the daemon from the CLI: connect, and start it on demand (like pm2).

Stdlib only (plus wactl.ipc): this is on the path of `wactl ps`.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from wactl.cli.context import AppContext
from wactl.errors import DaemonError
from wactl.ipc.client import DaemonClient, DaemonNotRunning
from wactl.ipc.protocol import daemon_log_path, socket_path

#: How long `daemon start` (or an automatic start) waits for the new daemon to answer.
START_WAIT_SECONDS = 20.0


def client_for(app: AppContext, *, autostart: bool = True) -> DaemonClient:
    """A client whose daemon answered and speaks our protocol, starting one if needed."""
    config = app.config
    client = DaemonClient(socket_path(config.runtime_dir))
    try:
        client.check_version()
        return client
    except DaemonNotRunning:
        if not autostart:
            raise
    pid = spawn_daemon(app)
    app.err_console.print(
        f"wactl: the daemon was not running; started it (pid {pid}, "
        f"log {daemon_log_path(config.log_dir)})"
    )
    return client


def spawn_daemon(app: AppContext) -> int:
    """Start ``python -m wactl.daemon`` detached and wait until it answers; returns its pid."""
    config = app.config
    log_path = daemon_log_path(config.log_dir)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    start_of_log = log_path.stat().st_size if log_path.exists() else 0
    with log_path.open("ab") as log_file:
        starter = subprocess.run(
            [sys.executable, "-m", "wactl.daemon", "--detach", "--config", str(config.source)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log_file,
            check=False,
            timeout=START_WAIT_SECONDS,
        )
    if starter.returncode != 0 or not starter.stdout.strip().isdigit():
        raise DaemonError(
            f"could not start the daemon: {_last_error(log_path, start_of_log)}",
            hint=f"see {log_path}",
        )
    pid = int(starter.stdout)
    client = DaemonClient(socket_path(config.runtime_dir), timeout=2.0)
    deadline = time.monotonic() + START_WAIT_SECONDS
    while True:
        try:
            client.check_version()
            return pid
        except DaemonNotRunning:
            pass
        if not pid_alive(pid):
            raise DaemonError(
                f"the daemon exited at start: {_last_error(log_path, start_of_log)}",
                hint=f"see {log_path}",
            )
        if time.monotonic() > deadline:
            raise DaemonError(
                f"the daemon (pid {pid}) did not answer within {START_WAIT_SECONDS:g} s",
                hint=f"see {log_path}",
            )
        time.sleep(0.05)


def _last_error(log_path: Path, offset: int) -> str:
    try:
        with log_path.open("rb") as handle:
            handle.seek(offset)
            lines = handle.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return "no output"
    for line in reversed(lines):
        if line.startswith("error: "):
            return line[len("error: ") :]
    return lines[-1] if lines else "no output"


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by its parent) is dead."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        return True
    # The state letter follows the command name, which is in parentheses and may hold
    # spaces or parentheses itself, so look after the last ")".
    return stat[stat.rfind(")") + 2 :][:1] not in ("Z", "X")
