"""Reaching the daemon from the CLI: connect, and start it on demand (like pm2).

Stdlib only (plus wactl.ipc) until no daemon answers on our socket: this is on the path
of `wactl ps`. Only then is the database asked which daemon serves it (SQLAlchemy).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from wactl.cli.context import AppContext
from wactl.errors import DaemonError, WactlError
from wactl.ipc.client import DaemonClient, DaemonNotRunning
from wactl.ipc.protocol import daemon_log_path, socket_path

if TYPE_CHECKING:
    from wactl.db.daemon_claim import DaemonIdentity

#: How long `daemon start` (or an automatic start) waits for the new daemon to answer.
START_WAIT_SECONDS = 20.0


def client_for(app: AppContext, *, autostart: bool = True) -> DaemonClient:
    """A client whose daemon answered and speaks our protocol, starting one if needed
    (only when no daemon serves this database: `find_daemon`)."""
    config = app.config
    try:
        return find_daemon(app)
    except DaemonNotRunning:
        if not autostart:
            raise
    pid = spawn_daemon(app)
    app.err_console.print(
        f"wactl: the daemon was not running; started it (pid {pid}, "
        f"log {daemon_log_path(config.log_dir)})"
    )
    return DaemonClient(socket_path(config.runtime_dir))


def find_daemon(app: AppContext) -> DaemonClient:
    """A client of the daemon that serves this configuration's database, checked.

    First the socket in our runtime directory. When nothing answers there, the database
    says which daemon serves it (`wactl.db.daemon_claim`): one started with another
    runtime directory (a system service under /run) is used through its own socket.
    Raises `DaemonNotRunning` when no daemon serves the database (starting one is
    right), `DaemonError` when one does but cannot be reached from here (starting a
    second one would be wrong), saying which one and how to reach it.
    """
    ours = socket_path(app.config.runtime_dir)
    client = DaemonClient(ours)
    try:
        client.check_version()
        return client
    except DaemonNotRunning as not_here:
        holder = _serving_daemon(app)
        if holder is None:
            raise
        return _client_of(holder, ours, not_here)


def _serving_daemon(app: AppContext) -> DaemonIdentity | None:
    """The daemon the database names as serving it, or None (also when the database
    cannot tell: then a daemon started now refuses by itself if it must)."""
    from sqlalchemy.exc import SQLAlchemyError

    from wactl.db.daemon_claim import serving_daemon

    try:
        return serving_daemon(app.engine())
    except (WactlError, SQLAlchemyError, OSError):
        return None


def _client_of(holder: DaemonIdentity, ours: Path, not_here: DaemonNotRunning) -> DaemonClient:
    serving = f"the daemon serving this database is {holder.describe()}"
    if not holder.local:
        raise DaemonError(
            f"{serving}, another host",
            hint=f"run this on {holder.host}; several daemons on one database are not "
            "supported yet (issue 15)",
        )
    path = Path(holder.socket_path)
    if path == ours:
        raise DaemonError(
            f"{serving}, but it does not answer: {not_here.message}",
            hint="see `wactl daemon logs`",
        )
    client = DaemonClient(path)
    try:
        client.check_version()
    except DaemonError as exc:
        raise DaemonError(
            f"{serving}; its socket cannot be used from here: {exc.message}",
            hint=f"run wactl as {holder.os_user} with paths.runtime_dir = {str(path.parent)!r}"
            " in its config (README: Running the daemon as a system service)",
        ) from None
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
