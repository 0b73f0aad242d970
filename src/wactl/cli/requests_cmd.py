"""`wactl requests list | show | approve | reject`: owners' setup requests."""

from __future__ import annotations

from typing import Annotated

import typer

from wactl.cli.context import MAX_ROW_ID, JsonFlag, app_context
from wactl.enums import RequestStatus

app = typer.Typer(
    help="Decide the setup requests owners send from the portal.", no_args_is_help=True
)

RequestId = Annotated[
    int, typer.Argument(help="The request's number.", metavar="ID", min=1, max=MAX_ROW_ID)
]


@app.command("list")
def list_(
    ctx: typer.Context,
    status: Annotated[
        RequestStatus | None,
        typer.Option(
            "--status",
            case_sensitive=False,
            help="Only requests in this state.",
        ),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """List setup requests, oldest first."""
    from rich.table import Table

    from wactl.cli.output import emit_json, local_time
    from wactl.db import requests

    app_ctx = app_context(ctx)
    with app_ctx.session() as session:
        found = requests.list_requests(session, status)
        rows = [requests.request_json(r) for r in found]
        created = [r.created_at for r in found]
    if json_output:
        emit_json(rows)
        return
    if not rows:
        which = f"{status.value.lower()} " if status else ""
        app_ctx.err_console.print(f"no {which}setup requests")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "TENANT", "STATUS", "BUSINESS", "TEMPLATE", "LANG", "NUMBER", "SENT"):
        table.add_column(column, no_wrap=column != "BUSINESS")
    for row, when in zip(rows, created, strict=True):
        table.add_row(
            str(row["id"]),
            row["tenant"],
            row["status"],
            row["business_name"],
            row["template_type"],
            row["language"],
            row["whatsapp_number"],
            local_time(when),
        )
    app_ctx.console.print(table)


@app.command("show")
def show(ctx: typer.Context, request_id: RequestId, json_output: JsonFlag = False) -> None:
    """Show one setup request in full."""
    from rich.table import Table

    from wactl.cli.output import emit_json, or_dash
    from wactl.db import requests

    app_ctx = app_context(ctx)
    with app_ctx.session() as session:
        data = requests.request_json(requests.get_request(session, request_id))
    if json_output:
        emit_json(data)
        return
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for key in (
        "id",
        "tenant",
        "status",
        "business_name",
        "template_type",
        "language",
        "whatsapp_number",
        "timezone",
    ):
        table.add_row(key.replace("_", " "), str(data[key]))
    for day, ranges in data["hours"].items():
        table.add_row(f"hours {day}", ", ".join(ranges) or "closed")
    table.add_row("holidays", ", ".join(data["holidays"]) or "-")
    for key in ("notes", "decision_reason", "decided_by", "decided_at", "created_at"):
        table.add_row(key.replace("_", " "), or_dash(data[key]))
    app_ctx.console.print(table)


@app.command("approve")
def approve(ctx: typer.Context, request_id: RequestId) -> None:
    """Approve a pending request: its settings and number become the tenant's."""
    from wactl.db import audit, requests

    app_ctx = app_context(ctx)
    with app_ctx.session() as session:
        request = requests.approve_request(session, request_id, actor=audit.operator_actor())
        slug = request.tenant.slug
    app_ctx.err_console.print(
        f"approved request #{request_id}; tenant '{slug}' is configured. "
        f"Next: `wactl tenant show {slug}`."
    )


@app.command("reject")
def reject(
    ctx: typer.Context,
    request_id: RequestId,
    reason: Annotated[str, typer.Option("--reason", help="What the owner should fix.")],
) -> None:
    """Reject a pending request with a reason the owner will see."""
    from wactl.db import audit, requests

    app_ctx = app_context(ctx)
    with app_ctx.session() as session:
        requests.reject_request(session, request_id, reason=reason, actor=audit.operator_actor())
    app_ctx.err_console.print(f"rejected request #{request_id}")
