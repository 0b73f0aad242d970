"""`wactl db upgrade | downgrade | current | history`: schema migrations."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from wactl.cli.context import JsonFlag, app_context

app = typer.Typer(help="Migrate the database schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Migrate the database up to REVISION (default: the newest)."""
    from wactl.db import audit, migrate
    from wactl.db.engine import display_url, session_scope

    app_ctx = app_context(ctx)
    engine = app_ctx.engine(check_schema=False)
    migrate.ensure_known(engine)
    before = migrate.current_revision(engine)
    migrate.upgrade(engine, revision)
    after = migrate.current_revision(engine)
    where = display_url(engine.url)
    if before == after:
        app_ctx.err_console.print(f"{where} is already at revision {after}; nothing to do")
        return
    with session_scope(engine) as session:
        audit.record(
            session,
            actor=audit.operator_actor(),
            event_type="db.upgraded",
            payload={"from": before, "to": after},
        )
    app_ctx.err_console.print(f"migrated {where} from {before or 'empty'} to {after}")


@app.command("downgrade")
def downgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Target revision, or 'base' for empty.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Migrate the database down to REVISION. Columns and tables it removes lose their data."""
    from wactl.db import audit, migrate
    from wactl.db.engine import display_url, session_scope
    from wactl.db.models import PortalEventLog

    app_ctx = app_context(ctx)
    engine = app_ctx.engine(check_schema=False)
    where = display_url(engine.url)
    before = migrate.current_revision(engine)
    if not yes:
        from wactl.display import printable

        typer.confirm(
            printable(
                f"Downgrade {where} from {before} to {revision}? Data in removed tables is lost"
            ),
            abort=True,
            err=True,
        )
    migrate.downgrade(engine, revision)
    after = migrate.current_revision(engine)
    from sqlalchemy import inspect

    if inspect(engine).has_table(PortalEventLog.__tablename__):
        with session_scope(engine) as session:
            audit.record(
                session,
                actor=audit.operator_actor(),
                event_type="db.downgraded",
                payload={"from": before, "to": after},
            )
    app_ctx.err_console.print(f"downgraded {where} from {before} to {after or 'empty'}")


@app.command("current")
def current(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Print the database's revision and whether it is the newest."""
    from wactl.cli.output import emit_json
    from wactl.db import migrate
    from wactl.db.engine import display_url
    from wactl.display import printable

    engine = app_context(ctx).engine(check_schema=False)
    revision = migrate.current_revision(engine)
    head = migrate.head_revision()
    data = {
        "database": display_url(engine.url),
        "revision": revision,
        "head": head,
        "up_to_date": revision == head,
    }
    if json_output:
        emit_json(data)
        return
    state = "up to date" if revision == head else f"needs `wactl db upgrade` to {head}"
    sys.stdout.write(f"{printable(revision or 'empty')} ({state})\n")


@app.command("history")
def history(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List the migrations this wactl knows, newest first."""
    from wactl.cli.output import emit_json
    from wactl.db import migrate

    revisions = migrate.history()
    if json_output:
        emit_json(
            [
                {
                    "revision": r.revision,
                    "down_revision": r.down_revision,
                    "message": r.message,
                    "head": r.is_head,
                }
                for r in revisions
            ]
        )
        return
    for r in revisions:
        head = " (head)" if r.is_head else ""
        sys.stdout.write(f"{r.down_revision or 'base'} -> {r.revision}{head}: {r.message}\n")
