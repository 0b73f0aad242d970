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

    Put it behind a reverse proxy that terminates HTTPS, set portal.public_base_url to
    the https address, and list the proxy's address in portal.trusted_proxies (e.g.
    "127.0.0.1"): X-Forwarded-For and X-Forwarded-Proto are believed only from there,
    so without it every client looks like the proxy to the sign-in rate limit. Without
    sign-in credentials it still starts, and its page and log say what to configure;
    with only one of portal.google_client_id and portal.google_client_secret set it
    refuses to start (exit 3). The portal only reads and writes the database.
    """
    from wactl.config import check_portal_credentials

    config = app_context(ctx).config
    check_portal_credentials(config, where=f"config file {config.source}")
    # Starlette, uvicorn, Jinja2 and SQLAlchemy (~150 ms) are imported here, not at
    # `wactl --help` time; authlib on the first sign-in.
    from wactl.portal.server import serve as run_portal

    run_portal(config, host=host, port=port)


#: The longest email address (RFC 5321: a 64-character local part, 255 for the domain;
#: the user table's column).
MAX_EMAIL_CHARS = 320


@app.command("unbind")
def unbind(
    ctx: typer.Context,
    emails: Annotated[
        list[str] | None,
        typer.Argument(help="The users' emails.", metavar="EMAIL...", show_default=False),
    ] = None,
    everyone: Annotated[bool, typer.Option("--all", help="Every bound user.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Clear users' sign-in binding, so that their next sign-in binds again.

    A user is bound to the account that first signed in as them (the provider's issuer
    and sub); another account with the same email is refused. After moving the portal
    to another sign-in provider (portal.oidc_metadata_url), unbind the users: the next
    account that signs in with the email becomes the user, with its tenant. Their
    portal sessions end. Audited (portal.user_unbound). Exit 5, changing nothing, when
    an email has no user; --all asks for confirmation unless --yes.
    """
    from wactl.db import audit, portal
    from wactl.display import printable
    from wactl.errors import UsageError

    if everyone == bool(emails):
        raise UsageError(
            "name the users' emails, or --all (not both)",
            hint="e.g. `wactl portal unbind owner@casapepe.es`",
        )
    for email in emails or ():
        if not 3 <= len(email) <= MAX_EMAIL_CHARS or "@" not in email or not email.isprintable():
            raise UsageError(
                f"'{printable(email[:MAX_EMAIL_CHARS])}' is not an email address",
                hint="the user's email, as `wactl audit` shows it (portal:EMAIL)",
            )
    app_ctx = app_context(ctx)
    if everyone and not yes:
        typer.confirm(
            "Unbind every portal user (the next account to sign in with each email "
            "becomes that user)?",
            abort=True,
            err=True,
        )
    with app_ctx.session() as session:
        users = portal.unbind_users(session, emails, actor=audit.operator_actor())
        unbound = [user.email for user in users]
    if not unbound:
        app_ctx.err_console.print("no bound portal users")
        return
    for email in unbound:
        app_ctx.err_console.print(f"unbound {email}: its next sign-in binds it again")
