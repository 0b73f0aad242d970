"""The engine factory, session scope and the mapping of driver errors into wactl's tree.

No engine is created at import time; callers build one with `engine_for(config)` (or
`make_engine(url)`) and own it (dispose it when done). SQLite connections get WAL,
foreign keys and a busy timeout on every connect, because those pragmas are per
connection.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from wactl.config import redact_url
from wactl.config.model import Config
from wactl.errors import DatabaseError


def normalize_url(url: str) -> URL:
    """Parse a database URL; plain ``postgresql://`` means the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseError(
            f"database.url '{redact_url(url)}' is not a database URL",
            hint='use "sqlite:///PATH" or "postgresql+psycopg://USER@HOST/DB"',
        ) from exc
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def display_url(url: str | URL) -> str:
    """A URL safe to print: the password replaced by ***."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return redact_url(url)


def sqlite_path(url: str | URL) -> Path | None:
    """The file of a file-based SQLite URL, or None for other databases and :memory:."""
    parsed = url if isinstance(url, URL) else normalize_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    return Path(parsed.database)


def make_engine(
    url: str, *, busy_timeout_ms: int = 5000, echo: bool = False, application_name: str = "wactl"
) -> Engine:
    """An engine for ``url``; on PostgreSQL its connections show as ``application_name``
    in ``pg_stat_activity`` (so an administrator sees which worker holds which)."""
    parsed = normalize_url(url)
    kwargs: dict[str, Any] = {"echo": echo, "future": True}
    if parsed.get_backend_name() == "sqlite":
        # Python's sqlite3 waits this long on a locked database before raising.
        kwargs["connect_args"] = {"timeout": busy_timeout_ms / 1000}
    else:
        kwargs["pool_pre_ping"] = True
        kwargs["connect_args"] = {"connect_timeout": 5, "application_name": application_name[:63]}
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError) as exc:
        raise DatabaseError(
            f"no driver for database URL {display_url(parsed)}: {exc}",
            hint="use sqlite:/// or postgresql+psycopg://",
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        _install_sqlite_pragmas(engine, busy_timeout_ms)
    return engine


def engine_for(config: Config, *, application_name: str = "wactl") -> Engine:
    """The engine for ``config``'s database, with its busy timeout and echo setting."""
    return make_engine(
        config.database_url,
        busy_timeout_ms=config.database.busy_timeout_ms,
        echo=config.database.echo,
        application_name=application_name,
    )


def _install_sqlite_pragmas(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            # WAL lets the daemon, workers, CLI and portal read while one of them writes.
            cursor.execute("PRAGMA journal_mode=WAL")
            # Without this SQLite ignores ON DELETE CASCADE.
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            # Safe with WAL (no corruption on power loss, at most the last commits lost).
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()


#: What to do about a database error, by words in the driver's message.
_DB_ERROR_HINTS = (
    (
        ("disk is full", "no space left", "could not extend file", "disk full"),
        "the disk that holds the database is full: free space on it, then try again",
    ),
    (
        ("is locked", "lock timeout", "deadlock"),
        "another process holds the database's lock: try again, or find what holds it",
    ),
    (
        ("connection refused", "could not connect", "server closed", "terminating connection"),
        "check that the database server runs and is reachable (database.url)",
    ),
    (
        ("readonly database", "read-only", "permission denied", "unable to open"),
        "check the permissions of the database file and its directory (database.url)",
    ),
)


def describe_db_error(engine_or_url: Engine | str, exc: DBAPIError) -> DatabaseError:
    """One line naming the URL (password redacted) and the driver's cause, with what
    to do about it when the cause is a known one (a full disk, a lock, no server)."""
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else engine_or_url
    cause = str(exc.orig) if exc.orig is not None else str(exc)
    first = next((line.strip() for line in cause.splitlines() if line.strip()), cause)
    lowered = first.lower()
    hint = next((text for words, text in _DB_ERROR_HINTS if any(w in lowered for w in words)), None)
    missing = _missing_sqlite_directory(url) if "unable to open" in lowered else None
    if missing is not None:
        hint = f"the directory {missing} does not exist: create it, or fix database.url"
    return DatabaseError(f"cannot use database {display_url(url)}: {first}", hint=hint)


def _missing_sqlite_directory(url: URL | str) -> str | None:
    """The directory a SQLite URL's file would be in, when it does not exist."""
    try:
        parsed = url if isinstance(url, URL) else make_url(url)
    except ArgumentError:
        return None
    if not parsed.drivername.startswith("sqlite") or not parsed.database:
        return None
    if parsed.database == ":memory:" or parsed.database.startswith("file:"):
        return None
    directory = Path(parsed.database).parent
    return None if directory.is_dir() else str(directory)


def check_connection(engine: Engine) -> None:
    """Connect once, turning an unreachable database into a one-line DatabaseError."""
    try:
        with engine.connect():
            pass
    except OperationalError as exc:
        raise describe_db_error(engine, exc) from exc


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits when the block succeeds and rolls back when it raises."""
    factory = sessionmaker(engine, expire_on_commit=False)
    session = factory()
    try:
        yield session
        session.commit()
    except OperationalError as exc:
        session.rollback()
        raise describe_db_error(engine, exc) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
