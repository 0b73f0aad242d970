"""One daemon per database: the claim a daemon holds for its life, and who holds it.

Two daemons on one database would both supervise its tenants: the second re-adopts the
first one's workers or starts copies, and replies go out twice. Daemons started with
different runtime directories (a system service under /run, an operator's shell under
/run/user/UID) do not see each other's socket or lock, so the database itself decides:

- the claim: on SQLite an exclusive ``flock`` on ``<database file>.daemon.lock`` (the
  database is a local file, so the lock is on the same machine); on PostgreSQL a
  session-level advisory lock held on a connection of its own. Both end with the
  process that holds them, however it dies, so a dead daemon's claim is free at once
  (a PostgreSQL session of a daemon whose host died ends when the server notices; a
  daemon starting on the same host ends a session whose daemon is gone by itself);
- the record: the ``serving_daemon`` row (host, pid and start time, socket, user,
  version), written by the claim's holder. The claim says whether anyone serves the
  database; the row says who and where. A row without a held claim is stale.

`DaemonClaim.take` refuses with `ServedElsewhereError`, naming the running daemon;
`serving_daemon` tells the CLI which daemon serves the database, so it can use that
daemon's socket instead of starting a second one. Several daemons on one PostgreSQL
(several hosts) is not supported yet: a second one refuses, as on SQLite.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from sqlalchemy import delete, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

import wactl
from wactl.actor import os_login
from wactl.db.engine import display_url, session_scope, sqlite_path
from wactl.db.models import ServingDaemon
from wactl.errors import ConflictError, DatabaseError

log = logging.getLogger("wactl.db.daemon_claim")

#: The advisory lock's two keys: "wact" and 1 (pg_locks shows them as classid, objid).
LOCK_KEYS = (0x77616374, 1)
#: How long a starting daemon waits for a dead daemon's PostgreSQL session to end.
STALE_SESSION_WAIT = 10.0


@dataclass(frozen=True)
class DaemonIdentity:
    """Who serves the database: what the ``serving_daemon`` row says."""

    host: str
    pid: int
    process_start: float
    socket_path: str
    os_user: str
    version: str
    started_at: dt.datetime
    backend_pid: int | None = None

    @property
    def local(self) -> bool:
        return self.host == socket.gethostname()

    def process_alive(self) -> bool:
        """On this host: that pid runs and is the process that started then."""
        import psutil

        try:
            return abs(psutil.Process(self.pid).create_time() - self.process_start) < 0.05
        except psutil.Error:
            return False

    def describe(self) -> str:
        started = self.started_at.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return (
            f"pid {self.pid} on {self.host} (user {self.os_user}, wactl {self.version}, "
            f"socket {self.socket_path}, since {started})"
        )

    @classmethod
    def of_this_process(cls, socket_path: Path) -> DaemonIdentity:
        import psutil

        return cls(
            host=socket.gethostname(),
            pid=os.getpid(),
            process_start=psutil.Process().create_time(),
            socket_path=str(socket_path),
            os_user=os_login(),
            version=wactl.__version__,
            started_at=dt.datetime.now(dt.UTC),
        )


class ServedElsewhereError(ConflictError):
    """Another daemon holds the database's claim."""

    def __init__(self, where: str, holder: DaemonIdentity | None) -> None:
        if holder is None:
            super().__init__(
                f"another daemon already serves the database {where} (it is starting)",
                hint="see `wactl daemon status`",
            )
        elif holder.local:
            super().__init__(
                f"another daemon already serves the database {where}: {holder.describe()}",
                hint=f"use that one (wactl finds it), or stop it first (`wactl daemon stop`, "
                f"as {holder.os_user})",
            )
        else:
            super().__init__(
                f"a daemon on another host already serves the database {where}: "
                f"{holder.describe()}",
                hint="several daemons on one database are not supported yet (issue 15); "
                f"run wactl on {holder.host}, or stop that daemon first",
            )
        self.holder = holder


def lock_path(database_file: Path) -> Path:
    """The SQLite claim's lock file, beside the database file."""
    return database_file.with_name(database_file.name + ".daemon.lock")


class DaemonClaim:
    """The claim of a running daemon on its database; `release` (or the process's end)
    frees it."""

    def __init__(
        self, engine: Engine, identity: DaemonIdentity, lock: IO[str] | Connection
    ) -> None:
        self.engine = engine
        self.identity = identity
        self._lock: IO[str] | Connection | None = lock

    @classmethod
    def take(cls, engine: Engine, identity: DaemonIdentity) -> DaemonClaim:
        """Claim the database for this daemon and record it, or raise
        `ServedElsewhereError` naming the daemon that serves it."""
        where = display_url(engine.url)
        database_file = sqlite_path(engine.url)
        lock: IO[str] | Connection
        if database_file is not None:
            lock = _take_file_lock(engine, lock_path(database_file.resolve()), where)
        else:
            lock = _take_advisory_lock(engine, where)
            backend = lock.execute(text("SELECT pg_backend_pid()")).scalar_one()
            lock.commit()
            identity = _replace_backend(identity, int(backend))
        claim = cls(engine, identity, lock)
        try:
            with session_scope(engine) as session:
                _write_record(session, identity)
        except BaseException:
            claim.release()
            raise
        return claim

    def alive(self) -> bool:
        """PostgreSQL: whether the session holding the lock still answers (a server
        restart ends it, and with it the claim); SQLite: always."""
        lock = self._lock
        if not isinstance(lock, Connection):
            return lock is not None
        try:
            lock.execute(text("SELECT 1")).scalar_one()
            lock.commit()
        except Exception:
            return False
        return True

    def retake(self) -> None:
        """After the lock's session was lost: take the claim again (or raise
        `ServedElsewhereError` if another daemon took it meanwhile)."""
        lock = self._lock
        if isinstance(lock, Connection):
            with contextlib.suppress(Exception):
                lock.invalidate()
        self._lock = None
        fresh = DaemonClaim.take(self.engine, self.identity)
        self._lock, self.identity = fresh._lock, fresh.identity

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is None:
            return
        with contextlib.suppress(Exception), session_scope(self.engine) as session:
            session.execute(delete(ServingDaemon).where(ServingDaemon.pid == self.identity.pid))
        if isinstance(lock, Connection):
            # Closing the server session frees its advisory lock; returning the
            # connection to the pool would keep it.
            with contextlib.suppress(Exception):
                lock.invalidate()
            with contextlib.suppress(Exception):
                lock.close()
        else:
            lock.close()


def serving_daemon(engine: Engine) -> DaemonIdentity | None:
    """The daemon that serves ``engine``'s database now, or None when none does (a
    record whose claim is free is stale and ignored)."""
    database_file = sqlite_path(engine.url)
    if database_file is not None:
        held = _file_lock_held(lock_path(database_file.resolve()))
    else:
        with engine.connect() as connection:
            held = bool(
                connection.execute(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND classid = :k1 AND objid = :k2 AND objsubid = 2 AND granted "
                        "AND database = (SELECT oid FROM pg_database "
                        "WHERE datname = current_database())"
                    ),
                    {"k1": LOCK_KEYS[0], "k2": LOCK_KEYS[1]},
                ).scalar_one()
            )
    if held is False:
        return None
    record = _read_record(engine)
    if record is not None and record.local and not record.process_alive():
        # Its daemon is gone: a lock file this user cannot read, or a PostgreSQL session
        # the server has not ended yet (the next daemon ends it, `_take_advisory_lock`).
        return None
    return record


# --- SQLite: a lock file beside the database -----------------------------------------


def _take_file_lock(engine: Engine, path: Path, where: str) -> IO[str]:
    old_umask = os.umask(0o077)
    try:
        lock = path.open("a+")
    except OSError as exc:
        raise DatabaseError(f"cannot open the daemon's lock file {path}: {exc.strerror}") from None
    finally:
        os.umask(old_umask)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ServedElsewhereError(where, _read_record(engine)) from None
    return lock


def _file_lock_held(path: Path) -> bool | None:
    """True when a daemon holds the lock file, False when nobody does, None when this
    user cannot tell (no permission to open it)."""
    try:
        handle = path.open("r")
    except FileNotFoundError:
        return False
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


# --- PostgreSQL: a session-level advisory lock ---------------------------------------


def _try_advisory_lock(connection: Connection) -> bool:
    taken = connection.execute(
        text("SELECT pg_try_advisory_lock(:k1, :k2)"), {"k1": LOCK_KEYS[0], "k2": LOCK_KEYS[1]}
    ).scalar_one()
    connection.commit()
    return bool(taken)


def _take_advisory_lock(engine: Engine, where: str) -> Connection:
    connection = engine.connect()
    try:
        if _try_advisory_lock(connection):
            return connection
        holder = _read_record(engine)
        if (
            holder is not None
            and holder.local
            and holder.backend_pid is not None
            and not holder.process_alive()
        ):
            # Its daemon is gone but the server has not noticed yet (a session lingers
            # until the server sees the connection closed): end it ourselves.
            log.info("ending the session of daemon pid %d, which is gone", holder.pid)
            connection.execute(text("SELECT pg_terminate_backend(:p)"), {"p": holder.backend_pid})
            connection.commit()
            deadline = time.monotonic() + STALE_SESSION_WAIT
            while time.monotonic() < deadline:
                if _try_advisory_lock(connection):
                    return connection
                time.sleep(0.1)
        raise ServedElsewhereError(where, holder)
    except BaseException:
        connection.close()
        raise


# --- the record ------------------------------------------------------------------------


def _write_record(session: Session, identity: DaemonIdentity) -> None:
    row = session.get(ServingDaemon, 1) or ServingDaemon(id=1)
    row.host = identity.host
    row.pid = identity.pid
    row.process_start = identity.process_start
    row.socket_path = identity.socket_path
    row.os_user = identity.os_user
    row.version = identity.version
    row.backend_pid = identity.backend_pid
    row.started_at = identity.started_at
    session.merge(row)


def _read_record(engine: Engine) -> DaemonIdentity | None:
    with session_scope(engine) as session:
        row = session.scalar(select(ServingDaemon).where(ServingDaemon.id == 1))
        if row is None:
            return None
        return DaemonIdentity(
            host=row.host,
            pid=row.pid,
            process_start=row.process_start,
            socket_path=row.socket_path,
            os_user=row.os_user,
            version=row.version,
            started_at=row.started_at,
            backend_pid=row.backend_pid,
        )


def _replace_backend(identity: DaemonIdentity, backend_pid: int) -> DaemonIdentity:
    import dataclasses

    return dataclasses.replace(identity, backend_pid=backend_pid)
