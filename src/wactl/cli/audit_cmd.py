"""`wactl audit`: the trail of portal and operator actions."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from wactl.cli.context import JsonFlag, app_context, rows_option, slug_option


def audit(
    ctx: typer.Context,
    tenant: Annotated[str | None, slug_option("Only this tenant's events.")] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="WHEN", help="Only newer events: 30m, 12h, 7d or a date."),
    ] = None,
    limit: Annotated[
        int, rows_option("--limit", help_text="Show at most this many (the newest).")
    ] = 200,
    json_output: JsonFlag = False,
) -> None:
    """Show who did what and when, oldest first."""
    from wactl.cli.console import Column, print_table
    from wactl.cli.output import emit_json, parse_since
    from wactl.db import audit as audit_log
    from wactl.formatting import local_time, or_dash

    app_ctx = app_context(ctx)
    since_at = parse_since(since) if since is not None else None
    with app_ctx.session() as session:
        events = audit_log.list_events(session, tenant_slug=tenant, since=since_at, limit=limit)
        rows = [(audit_log.event_json(e), e.created_at) for e in events]
    if json_output:
        emit_json([row for row, _ in rows])
        return
    if not rows:
        app_ctx.err_console.print("no audit events match")
        return
    columns = (
        Column("TIME"),
        Column("TENANT"),
        Column("EVENT"),
        # Beside the row when there is room, else folded on lines of their own.
        Column("ACTOR", below="fold"),
        Column("DETAILS", below="fold"),
    )
    print_table(
        app_ctx.console,
        columns,
        [
            (
                local_time(when),
                or_dash(row["tenant"]),
                row["event_type"],
                row["actor"],
                json.dumps(row["payload"], ensure_ascii=False, separators=(", ", ": ")),
            )
            for row, when in rows
        ],
    )
