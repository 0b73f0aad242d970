"""`wactl portal serve`: the owners' web portal."""

from __future__ import annotations

from typing import Annotated

import typer

from wactl.cli.context import app_context

app = typer.Typer(
    help="The web portal where business owners sign in, request setup and link their phone.",
    no_args_is_help=True,
)


@app.command("serve")
def serve(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="Address to listen on (0.0.0.0 for every interface).", metavar="ADDRESS"
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int,
        typer.Option("--port", min=0, max=65535, help="TCP port to listen on (0: any free port)."),
    ] = 8080,
) -> None:
    """Serve the portal over HTTP until interrupted (Ctrl-C or SIGTERM).

    Put it behind a reverse proxy that terminates HTTPS and set portal.public_base_url
    to the https address. Without sign-in credentials it still starts, and its page and
    log say what to configure; with only one of portal.google_client_id and
    portal.google_client_secret set it refuses to start (exit 3). The portal only reads
    and writes the database.
    """
    from wactl.config import check_portal_credentials

    config = app_context(ctx).config
    check_portal_credentials(config, where=f"config file {config.source}")
    # Starlette, uvicorn, Jinja2 and SQLAlchemy (~150 ms) are imported here, not at
    # `wactl --help` time; authlib on the first sign-in.
    from wactl.portal.server import serve as run_portal

    run_portal(config, host=host, port=port)
