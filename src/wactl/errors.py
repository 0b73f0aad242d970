"""The one exception tree of wactl, and the exit codes it maps to.

Core code raises `WactlError` subclasses carrying a message and a hint (what to run
or change). Only the CLI edge (`wactl.cli.app.main`) turns them into one line on
stderr and an exit code. Third-party exceptions (SQLAlchemy, OSError, tomllib, ...)
are mapped into this tree at the boundary that meets them, with ``raise ... from exc``.

Exit codes are an API: scripts branch on them, and the man page lists them.
"""

from __future__ import annotations

import enum
from typing import NamedTuple


class ExitCode(enum.IntEnum):
    """Process exit codes of every wactl command; what each means is `EXIT_MEANINGS`."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    CONFIG = 3
    DATABASE = 4
    NOT_FOUND = 5
    CONFLICT = 6
    DAEMON = 7
    ABORTED = 8
    TIMEOUT = 9


class ExitMeaning(NamedTuple):
    #: A few words, as the README's list of exit codes says them.
    short: str
    #: The whole meaning, as the man page's EXIT STATUS says it.
    full: str


#: What each exit code means: the one wording, for the man page (generated from it)
#: and the README (tests/test_docs.py checks its list against the short words).
EXIT_MEANINGS: dict[ExitCode, ExitMeaning] = {
    ExitCode.OK: ExitMeaning(
        "success",
        "Success. Also when a command made its change but could not print the result "
        "(a full disk, a closed terminal): a warning on stderr says so.",
    ),
    ExitCode.FAILURE: ExitMeaning(
        "a failure the message describes",
        "A failure the message describes: wa-js could not be fetched, did not match its "
        "integrity or fails verification on disk (`wactl engine install | status | "
        "check`); a wa-js version differs from what wactl uses (`wactl engine check`, and "
        "`engine install`, `engine rollout` and `tenant edit --wa-js` without --force); "
        "or an unexpected failure: rerun with WACTL_DEBUG=1 to see the traceback, and "
        "report it.",
    ),
    ExitCode.USAGE: ExitMeaning(
        "bad input",
        "Bad command line, or a bad input value (slug, phone number, time zone, hours, "
        "file contents, a wa-js version or integrity; a wa-js version that is neither "
        "the pinned one nor installed and verified on this host; a number outside the "
        "range its --help shows, or NaN; a file that is not a regular file, or over "
        "1 MiB). Also returned after printing the help of a command group given without "
        "a subcommand.",
    ),
    ExitCode.CONFIG: ExitMeaning(
        "config",
        "The configuration cannot be used: the file is not TOML, holds an unknown key "
        "or a value of the wrong type or outside its range, or a WACTL_* environment "
        "override is not valid; the file is not a regular file of at most 1 MiB. `wactl "
        "config validate` also returns it when the file does not exist, and it and "
        "`wactl portal serve` when only one of portal.google_client_id and "
        "portal.google_client_secret is set.",
    ),
    ExitCode.DATABASE: ExitMeaning(
        "database",
        "The database cannot be reached, or its schema is not the one this wactl needs "
        "(run `wactl db upgrade`).",
    ),
    ExitCode.NOT_FOUND: ExitMeaning(
        "not found",
        "The named tenant, setup request or revision does not exist; or, from `wactl "
        "engine status | check`, that wa-js version is not installed.",
    ),
    ExitCode.CONFLICT: ExitMeaning(
        "conflict",
        "The change conflicts with what exists: a taken slug or phone number, a setup "
        "request that was already decided, a wa-js version the database records with "
        "another integrity; or a worker that `tenant start | restart` waited for is "
        "quarantined (FATAL), its reason on stderr.",
    ),
    ExitCode.DAEMON: ExitMeaning(
        "daemon unreachable", "The daemon cannot be reached or answered with an error."
    ),
    ExitCode.ABORTED: ExitMeaning(
        "declined at a prompt", "The operator declined a confirmation prompt; nothing was changed."
    ),
    ExitCode.TIMEOUT: ExitMeaning(
        "a wait timed out",
        "A wait ran out of time: `tenant qr --wait` before the phone was linked, or "
        "`tenant start | restart` before the worker was RUNNING (its engine started); "
        "stderr names each tenant still waited for and its state.",
    ),
}


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
