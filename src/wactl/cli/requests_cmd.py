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
    from wactl.cli.console import Column, print_table
    from wactl.cli.output import emit_json
    from wactl.db import requests
    from wactl.formatting import local_time

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
    columns = (
        Column("ID", right=True),
        Column("TENANT"),
        Column("STATUS"),
        Column("BUSINESS", wrap=True),
        Column("TEMPLATE", drop=2),
        Column("LANG", drop=3),
        Column("NUMBER", drop=1),
        Column("SENT", drop=4),
    )
    print_table(
        app_ctx.console,
        columns,
        [
            (
                row["id"],
                row["tenant"],
                row["status"],
                row["business_name"],
                row["template_type"],
                row["language"],
                row["whatsapp_number"],
                local_time(when),
            )
            for row, when in zip(rows, created, strict=True)
        ],
    )


@app.command("show")
def show(ctx: typer.Context, request_id: RequestId, json_output: JsonFlag = False) -> None:
    """Show one setup request in full."""
    from wactl.cli.console import print_fields
    from wactl.cli.output import emit_json
    from wactl.db import requests
    from wactl.formatting import or_dash

    app_ctx = app_context(ctx)
    with app_ctx.session() as session:
        data = requests.request_json(requests.get_request(session, request_id))
    if json_output:
        emit_json(data)
        return
    fields: list[tuple[str, object]] = []
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
        fields.append((key.replace("_", " "), data[key]))
    for day, ranges in data["hours"].items():
        fields.append((f"hours {day}", ", ".join(ranges) or "closed"))
    fields.append(("holidays", ", ".join(data["holidays"]) or "-"))
    for key in ("notes", "decision_reason", "decided_by", "decided_at", "created_at"):
        fields.append((key.replace("_", " "), or_dash(data[key])))
    print_fields(app_ctx.console, fields)


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
