"""`wactl tenant logs` (the conversation log, or the worker's own log) and
`wactl logs prune` (retention by hand)."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer

from wactl.cli.context import Slug, app_context, rows_option, slug_option

app = typer.Typer(help="Keep the conversation log bounded.", no_args_is_help=True)


def tenant_logs(
    ctx: typer.Context,
    slug: Slug,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new messages.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="WHEN", help="Only newer: 30m, 12h, 7d or a date."),
    ] = None,
    chat: Annotated[
        str | None,
        typer.Option(
            "--chat",
            metavar="NUMBER",
            help="Only this customer's chat: their number, or the NNN@lid the log shows for a "
            "customer whose number WhatsApp does not share.",
        ),
    ] = None,
    limit: Annotated[
        int, rows_option("--limit", "-n", help_text="At most this many (the newest).")
    ] = 200,
    json_output: Annotated[
        bool,
        typer.Option("--json", help="Print JSON (one array; with --follow, one object per line)."),
    ] = False,
    worker: Annotated[
        bool, typer.Option("--worker", help="Show the worker's own log file instead.")
    ] = False,
) -> None:
    """Show a tenant's conversation log, oldest first (or its worker's log with --worker)."""
    from wactl.cli.output import emit_json, parse_since
    from wactl.db import tenants
    from wactl.db.messages import recent_messages
    from wactl.validation import normalize_chat

    app = app_context(ctx)
    if worker:
        from wactl.cli.output import tail_file
        from wactl.ipc.protocol import worker_log_path

        tail_file(worker_log_path(app.config.log_dir, slug), lines=limit, follow=follow)
        return
    since_at = parse_since(since) if since is not None else None
    chat_number = normalize_chat(chat, "--chat") if chat is not None else None
    with app.session() as session:
        tenant_id = tenants.get_tenant(session, slug).id

    def fetch(after_id: int | None) -> list[dict[str, Any]]:
        with app.session() as session:
            return recent_messages(
                session,
                tenant_id,
                slug,
                limit=limit,
                since=since_at,
                chat=chat_number,
                after_id=after_id,
            )

    def show(rows: list[dict[str, Any]]) -> None:
        if json_output:
            from wactl.display import json_text

            for row in rows:
                sys.stdout.write(json_text(row) + "\n")
        else:
            from wactl.cli.console import print_hanging
            from wactl.formatting import message_parts

            print_hanging(app.console, [message_parts(row) for row in rows])
        sys.stdout.flush()

    rows = fetch(None)
    if json_output and not follow:
        emit_json(rows)
        return
    if not rows and not follow:
        app.err_console.print(f"no messages for '{slug}' match")
        return
    show(rows)
    if any(row["chat"].endswith("@lid") for row in rows):
        app.err_console.print(
            "chats shown as NNN@lid: WhatsApp did not share the customer's phone number, "
            "only a LID (a number of its own); `--chat NNN@lid` shows one of them",
            markup=False,
        )
    last = rows[-1]["id"] if rows else 0
    while follow:
        time.sleep(1.0)  # the database at most once a second
        new = fetch(last)
        if new:
            show(new)
            last = new[-1]["id"]


@app.command("prune")
def prune(
    ctx: typer.Context,
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", metavar="AGE", help="Delete entries older than this: 90d, 12w."
        ),
    ],
    tenant: Annotated[str | None, slug_option("Only this tenant.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Count, delete nothing.")] = False,
) -> None:
    """Delete old conversation log entries (unfinished ones are always kept)."""
    from sqlalchemy import delete, func, select

    from wactl.cli.output import parse_since
    from wactl.db import audit, tenants
    from wactl.db.messages import prunable
    from wactl.db.models import MessageLog
    from wactl.errors import UsageError

    app = app_context(ctx)
    if older_than.strip()[-1:] not in ("s", "m", "h", "d", "w"):
        raise UsageError(f"--older-than: '{older_than}' is not an age", hint="use e.g. 90d or 12w")
    cutoff = parse_since(older_than, option="--older-than")
    with app.session() as session:
        target = tenants.get_tenant(session, tenant) if tenant else None
        condition = prunable(cutoff, target.id if target is not None else None)
        count = session.scalar(select(func.count()).select_from(MessageLog).where(condition)) or 0
        if dry_run:
            app.err_console.print(f"{count} log entries older than {older_than} would be deleted")
            return
        # A reply whose question goes keeps its row; reply_to_id becomes NULL (SET NULL).
        session.execute(delete(MessageLog).where(condition))
        audit.record(
            session,
            actor=audit.operator_actor(),
            event_type="logs.pruned",
            tenant=target,
            payload={"older_than": older_than, "deleted": count},
        )
    app.err_console.print(f"deleted {count} log entries older than {older_than}")
