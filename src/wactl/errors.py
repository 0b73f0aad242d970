"""The one exception tree of wactl, and the exit codes it maps to.

Core code raises `WactlError` subclasses carrying a message and a hint (what to run
or change). Only the CLI edge (`wactl.cli.app.main`) turns them into one line on
stderr and an exit code. Third-party exceptions (SQLAlchemy, OSError, tomllib, ...)
are mapped into this tree at the boundary that meets them, with ``raise ... from exc``.

Exit codes are an API: scripts branch on them, and the man page lists them.
"""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Process exit codes of every wactl command (documented in wactl(1))."""

    OK = 0
    #: An unexpected failure; the message says what happened.
    FAILURE = 1
    #: Bad command line or bad input value (slug, phone, timezone, hours, file contents).
    USAGE = 2
    #: The config file is not TOML, holds an unknown key or a bad value, or is missing.
    CONFIG = 3
    #: The database cannot be reached, or its schema is not the one this wactl needs.
    DATABASE = 4
    #: The named tenant, request or revision does not exist.
    NOT_FOUND = 5
    #: The change conflicts with what exists (duplicate slug, request already decided).
    CONFLICT = 6
    #: The daemon cannot be reached or answered with an error.
    DAEMON = 7
    #: The operator declined a confirmation prompt; nothing was changed.
    ABORTED = 8
    #: A wait (`--wait`, `tenant start`) ran out of time before its condition was met.
    TIMEOUT = 9


class WactlError(Exception):
    """Base of every error wactl raises on purpose.

    ``message`` says what went wrong, ``hint`` says what to do about it; both are
    short so that the CLI can print them on one line.
    """

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        """The error as the single stderr line the CLI prints."""
        text = self.message if not self.hint else f"{self.message}; {self.hint}"
        return " ".join(text.split())


class UsageError(WactlError):
    """A value given on the command line or in an input file is not valid."""

    exit_code = ExitCode.USAGE


class ValidationError(UsageError):
    """A field value failed validation; ``field`` names it."""

    def __init__(self, field: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{field}: {message}", hint=hint)
        self.field = field


class ConfigError(WactlError):
    """The configuration file or environment holds something wactl cannot use."""

    exit_code = ExitCode.CONFIG


class DatabaseError(WactlError):
    """The database is unreachable or refused an operation."""

    exit_code = ExitCode.DATABASE


class SchemaOutOfDateError(DatabaseError):
    """The database schema is not at the revision this wactl was built for."""


class NotFoundError(WactlError):
    """A named object does not exist."""

    exit_code = ExitCode.NOT_FOUND


class ConflictError(WactlError):
    """The change conflicts with the current state."""

    exit_code = ExitCode.CONFLICT


class DaemonError(WactlError):
    """The daemon cannot be reached or rejected a request."""

    exit_code = ExitCode.DAEMON


class WaitTimeoutError(WactlError):
    """A wait ran out of time."""

    exit_code = ExitCode.TIMEOUT
