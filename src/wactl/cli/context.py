"""The one context object passed down to every command as ``ctx.obj``.

It holds the ``--config`` flag and creates, on first use only, the configuration,
the consoles and the database engine; `close` disposes of what was created.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from wactl.config import Config


#: The ``--json`` flag every list and show command takes (shapes documented in wactl(1)).
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON.")]

# --- what every command's numbers and slugs may be ---------------------------------------
# One definition each: a number past these is bad input (exit 2, one line) before it
# reaches a database (PostgreSQL's integer holds 2**31 - 1; SQLite's LIMIT 2**63 - 1)
# or a timer.

#: The largest id a command takes (a setup request's number): PostgreSQL's integer.
MAX_ROW_ID = 2**31 - 1
#: The most rows or lines a command prints at once (--limit, --lines).
MAX_ROWS = 1_000_000
#: The longest wait a command accepts (--timeout), in seconds: a day.
MAX_WAIT_SECONDS = 86_400


def check_slug(value: Any) -> Any:
    """A typer callback: the tenant slug(s) given, validated before any use (a file
    path, a daemon URL, a query). Raises `ValidationError` (exit 2)."""
    from wactl.validation import validate_slug

    if value is None:
        return None
    if isinstance(value, str):
        return validate_slug(value)
    return [validate_slug(slug) for slug in value]


def check_finite(value: float | None) -> float | None:
    """A typer callback for a float option: click's range check lets NaN through."""
    if value is not None and value != value:
        raise typer.BadParameter("nan is not a number")
    return value


#: A tenant's slug as a command's argument.
Slug = Annotated[
    str,
    typer.Argument(help="The tenant's slug, e.g. casa-pepe.", metavar="SLUG", callback=check_slug),
]
#: Several tenants' slugs.
Slugs = Annotated[
    list[str] | None,
    typer.Argument(
        help="Tenants (slugs).", metavar="SLUG...", show_default=False, callback=check_slug
    ),
]


def slug_option(help_text: str) -> Any:
    """``--tenant SLUG``: only this tenant."""
    return typer.Option("--tenant", metavar="SLUG", help=help_text, callback=check_slug)


def rows_option(*names: str, help_text: str, low: int = 1) -> Any:
    """``--limit N`` / ``--lines N``: at most this many, ``low`` to `MAX_ROWS`."""
    return typer.Option(*names, min=low, max=MAX_ROWS, help=help_text)


def wait_option(help_text: str, *, low: float = 0) -> Any:
    """``--timeout SECONDS``: a finite wait from ``low`` to a day."""
    return typer.Option(
        "--timeout", min=low, max=MAX_WAIT_SECONDS, callback=check_finite, help=help_text
    )


class AppContext:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: Config | None = None
        self._engine: Engine | None = None
        self._console: Console | None = None
        self._err_console: Console | None = None
        #: What the command changed for good, once it did (a database commit that
        #: wrote, a file written, an action the daemon took): from then on, a failure
        #: to show the result cannot make the command fail (`wactl.cli.app.run`).
        self.committed: str | None = None

    def changed(self, what: str) -> None:
        """Record that the command changed something for good (see ``committed``)."""
        self.committed = self.committed or what

    @property
    def config(self) -> Config:
        if self._config is None:
            from wactl.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    def reload_config(self) -> None:
        """Read the configuration again on next use (after a command rewrote the file)."""
        self._config = None

    @property
    def console(self) -> Console:
        """Data for people goes to stdout. Strings printed on it are data: no markup,
        control characters shown as escapes (`wactl.cli.console.DataConsole`)."""
        if self._console is None:
            from wactl.cli.console import DataConsole

            self._console = DataConsole(highlight=False, soft_wrap=False)
        return self._console

    @property
    def err_console(self) -> Console:
        """Diagnostics and progress go to stderr (strings are data, as on `console`)."""
        if self._err_console is None:
            from wactl.cli.console import DataConsole

            # soft_wrap: a diagnostic is one line, however narrow the terminal.
            self._err_console = DataConsole(stderr=True, highlight=False, soft_wrap=True)
        return self._err_console

    def engine(self, *, check_schema: bool = True) -> Engine:
        """The database engine, connected once and (by default) schema-checked."""
        if self._engine is None:
            from wactl.db.engine import check_connection, engine_for

            config = self.config
            engine = engine_for(config)
            try:
                check_connection(engine)
            except BaseException:
                engine.dispose()
                raise
            self._watch_commits(engine)
            self._engine = engine
        if check_schema:
            from wactl.db.schema import ensure_current  # no Alembic import (~40 ms)

            ensure_current(self._engine)
        return self._engine

    def _watch_commits(self, engine: Engine) -> None:
        """Set ``committed`` when a transaction that wrote (INSERT, UPDATE, DELETE, a
        migration) commits: every command's changes, however it makes them."""
        from sqlalchemy import event

        def executed(connection: Any, *args: Any) -> None:
            context = args[3]
            if context is not None and (
                context.isinsert or context.isupdate or context.isdelete or context.isddl
            ):
                connection.info["wrote"] = True

        def committed(connection: Any) -> None:
            if connection.info.pop("wrote", False):
                self.changed("the change was committed")

        def rolled_back(connection: Any) -> None:
            connection.info.pop("wrote", None)

        event.listen(engine, "after_cursor_execute", executed)
        event.listen(engine, "commit", committed)
        event.listen(engine, "rollback", rolled_back)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A database session on a current schema; commits on success."""
        from wactl.db.engine import session_scope

        with session_scope(self.engine()) as session:
            yield session

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def app_context(ctx: typer.Context) -> AppContext:
    obj: Any = ctx.find_root().obj
    assert isinstance(obj, AppContext), "the root callback sets ctx.obj"
    return obj
