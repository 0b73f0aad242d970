"""`wactl chats list | pause | resume`: where the bot is quiet, and handing chats over.

A chat is paused when a customer asked for a person, when the business answered by hand
on its phone, or when an operator paused it here; the bot says nothing in it until the
pause ends, or until it is resumed (here, or by the business sending
``pipeline.resume_keyword`` from its phone). Listing reads the database; pausing and
resuming go through the daemon (the tenant's running worker keeps its chats' pauses in
memory) and are audited.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from wactl.cli.context import JsonFlag, Slug, app_context

app = typer.Typer(
    help="A tenant's chats: where the bot is paused; pause it or hand a chat back to it.",
    no_args_is_help=True,
)

Chat = Annotated[
    str,
    typer.Argument(
        help="The customer's number (+E164), or the NNN@lid `wactl chats list` shows.",
        metavar="CHAT",
    ),
]


@app.command("list")
def list_(
    ctx: typer.Context,
    slug: Slug,
    paused: Annotated[
        bool, typer.Option("--paused", help="Only chats where the bot is paused.")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """List a tenant's chats, and where the bot is paused.

    Newest first: how many messages, the last one, and until when (and why) the bot is
    quiet in each paused chat.
    """
    import datetime as dt

    from wactl.cli.console import Column, print_table
    from wactl.cli.output import emit_json
    from wactl.db import chats, tenants
    from wactl.formatting import local_time, pause_reason_text

    app_ctx = app_context(ctx)
    with app_ctx.session() as session:
        tenant = tenants.get_tenant(session, slug)
        rows = chats.list_chats(session, tenant.id, paused_only=paused)
    if json_output:
        emit_json(rows)
        return
    if not rows:
        what = "paused chats" if paused else "chats"
        app_ctx.err_console.print(f"'{slug}' has no {what}", markup=False)
        return

    def when(value: str | None) -> str:
        return local_time(dt.datetime.fromisoformat(value)) if value else "-"

    # At 80 columns LAST goes first; the chat and the pause stay whole.
    columns = (
        Column("CHAT"),
        Column("MESSAGES", right=True),
        Column("LAST", drop=1),
        Column("PAUSED UNTIL"),
        Column("WHY", below="fold"),
    )
    print_table(
        app_ctx.console,
        columns,
        [
            (
                row["chat"],
                row["messages"],
                when(row["last_message_at"]),
                when(row["paused_until"]),
                pause_reason_text(row["pause_reason"]),
            )
            for row in rows
        ],
    )


@app.command("pause")
def pause(
    ctx: typer.Context,
    slug: Slug,
    chat: Chat,
    for_: Annotated[
        str | None,
        typer.Option(
            "--for",
            metavar="DURATION",
            help="How long, e.g. 30m, 2h, 1d (default: pipeline.handoff_pause_minutes).",
        ),
    ] = None,
) -> None:
    """Keep the bot quiet in one chat (a person answers it). Audited."""
    from wactl.cli.output import parse_duration
    from wactl.ipc.protocol import MAX_PAUSE_MINUTES

    body: dict[str, Any] = {"chat": _chat(chat)}
    if for_ is not None:
        body["minutes"] = parse_duration(for_, option="--for", most=MAX_PAUSE_MINUTES * 60) / 60
    answer = _client(ctx).request("POST", f"/v1/tenants/{slug}/chats/pause", body)
    _said(ctx, f"{slug}: the bot is quiet in {body['chat']} until", answer)


@app.command("resume")
def resume(ctx: typer.Context, slug: Slug, chat: Chat) -> None:
    """Hand a chat back to the bot now: it answers the customer's next message. Audited."""
    body = {"chat": _chat(chat)}
    _client(ctx).request("POST", f"/v1/tenants/{slug}/chats/resume", body)
    app_context(ctx).err_console.print(
        f"{slug}: {body['chat']} is the bot's again; it answers the next message", markup=False
    )


def _chat(chat: str) -> str:
    from wactl.validation import normalize_chat

    return normalize_chat(chat, "CHAT")


def _client(ctx: typer.Context) -> Any:
    from wactl.cli.daemon_client import client_for

    return client_for(app_context(ctx))


def _said(ctx: typer.Context, text: str, answer: dict[str, Any]) -> None:
    import datetime as dt

    from wactl.formatting import local_time

    until = answer.get("paused_until")
    shown = local_time(dt.datetime.fromisoformat(until)) if until else "-"
    app_context(ctx).err_console.print(f"{text} {shown}", markup=False)
