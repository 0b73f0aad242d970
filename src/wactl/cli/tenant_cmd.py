"""`wactl tenant create | list | show | edit | delete | config export | config apply`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from wactl.cli.context import JsonFlag, Slug, app_context
from wactl.enums import EngineName, Language, TemplateType

if TYPE_CHECKING:
    from wactl.cli.context import AppContext

app = typer.Typer(help="Create, list, change and delete tenants.", no_args_is_help=True)
config_app = typer.Typer(help="Tenant configuration as a TOML file.", no_args_is_help=True)
app.add_typer(config_app, name="config")

TemplateOpt = Annotated[
    TemplateType | None,
    typer.Option("--template", help="Reply template (default: the config's defaults.template)."),
]
LanguageOpt = Annotated[
    Language | None,
    typer.Option("--language", help="Reply language (default: the config's defaults.language)."),
]
PhoneOpt = Annotated[
    str | None,
    typer.Option("--phone", metavar="+E164", help="WhatsApp number, e.g. +34600123456."),
]
TimezoneOpt = Annotated[
    str | None,
    typer.Option(
        "--timezone",
        metavar="Area/City",
        help="IANA time zone (default: the config's defaults.timezone).",
    ),
]
EngineOpt = Annotated[
    EngineName | None,
    typer.Option(
        "--engine", help="How the bot reaches WhatsApp (default: the config's defaults.engine)."
    ),
]


@app.command("create")
def create(
    ctx: typer.Context,
    slug: Slug,
    name: Annotated[str, typer.Option("--name", help="The business's name.")],
    template: TemplateOpt = None,
    language: LanguageOpt = None,
    phone: PhoneOpt = None,
    timezone: TimezoneOpt = None,
    engine: EngineOpt = None,
    json_output: JsonFlag = False,
) -> None:
    """Create a tenant, ready to start. Options left out take the config's defaults section.

    A new tenant has no opening hours: until they are set (`tenant config export`,
    the [hours] table, `tenant config apply`), the bot tells customers its hours are
    not published yet, and this command says so on stderr.
    """
    from wactl.cli.output import emit_json
    from wactl.db import audit, tenants

    app_ctx = app_context(ctx)
    defaults = app_ctx.config.defaults
    with app_ctx.session() as session:
        tenant = tenants.create_tenant(
            session,
            slug=slug,
            name=name,
            template=template or TemplateType(defaults.template),
            language=language or Language(defaults.language),
            timezone=defaults.timezone if timezone is None else timezone,
            engine=engine or EngineName(defaults.engine),
            phone_number=phone,
            actor=audit.operator_actor(),
        )
        data = tenants.tenant_json(tenant)
    if json_output:
        emit_json(data)
    else:
        app_ctx.err_console.print(f"created tenant '{slug}' ({data['status']})")
    app_ctx.err_console.print(
        f"{slug}: no opening hours yet (the bot tells customers they are not published); "
        f"set them in the [hours] table of `wactl tenant config export {slug} > {slug}.toml`, "
        f"then `wactl tenant config apply {slug} {slug}.toml`",
        markup=False,
    )


@app.command("list")
def list_(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """List every tenant."""
    from wactl.cli.console import Column, print_table
    from wactl.cli.output import emit_json
    from wactl.db import tenants
    from wactl.formatting import local_time, or_dash

    app_ctx = app_context(ctx)
    with app_ctx.session() as session:
        found = tenants.list_tenants(session)
        rows = [tenants.tenant_json(t) for t in found]
        created = {t.slug: t.created_at for t in found}
    if json_output:
        emit_json(rows)
        return
    if not rows:
        app_ctx.err_console.print("no tenants yet; create one with `wactl tenant create`")
        return
    columns = (
        Column("SLUG"),
        Column("NAME", wrap=True),
        Column("STATUS"),
        Column("ENGINE", drop=1),
        Column("PHONE", drop=2),
        Column("TEMPLATE", drop=3),
        Column("LANG", drop=4),
        Column("CREATED", drop=5),
    )
    print_table(
        app_ctx.console,
        columns,
        [
            (
                row["slug"],
                row["name"],
                row["status"],
                row["engine"],
                or_dash(row["phone_number"]),
                or_dash(row["template_type"]),
                or_dash(row["language"]),
                local_time(created[row["slug"]]),
            )
            for row in rows
        ],
    )


@app.command("show")
def show(ctx: typer.Context, slug: Slug, json_output: JsonFlag = False) -> None:
    """Show one tenant: settings, hours, WhatsApp link and worker."""
    from wactl.cli.output import emit_json
    from wactl.db import tenants, wajs_releases

    app_ctx = app_context(ctx)
    with app_ctx.session() as session:
        tenant = tenants.get_tenant(session, slug)
        wa_js = wajs_releases.tenant_effective(session, tenant.id)
        if json_output:
            emit_json(tenants.tenant_detail_json(tenant, wa_js))
        else:
            from wactl.cli.console import print_fields

            print_fields(app_ctx.console, tenants.tenant_detail_fields(tenant, wa_js))


@app.command("edit")
def edit(
    ctx: typer.Context,
    slug: Slug,
    name: Annotated[str | None, typer.Option("--name", help="The business's name.")] = None,
    template: TemplateOpt = None,
    language: LanguageOpt = None,
    phone: Annotated[
        str | None,
        typer.Option("--phone", metavar="+E164", help='WhatsApp number; "" removes it.'),
    ] = None,
    timezone: TimezoneOpt = None,
    engine: EngineOpt = None,
    wa_js: Annotated[
        str | None,
        typer.Option(
            "--wa-js",
            metavar="VERSION",
            help="Run this wa-js version instead of the fleet's (a canary); "
            '"default" follows the fleet again. It must be the pinned version, or one '
            "installed and verified on this host (`wactl engine install --version`) that "
            "passes `wactl engine check`. Used by whatsapp-web tenants; a tenant on "
            "another engine keeps it for when it moves. Takes effect at the worker's "
            "next start.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="With --wa-js: use the version even if `engine check` fails."),
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Change a tenant's settings; only the options given change.

    Exit status 2 for a bad value, including a --wa-js version that is neither the
    pinned one nor installed and verified on this host; 1 when that version fails
    `wactl engine check` (see --force).
    """
    from wactl.cli.output import emit_json
    from wactl.db import audit, tenants, wajs_releases
    from wactl.errors import UsageError

    if all(v is None for v in (name, template, language, phone, timezone, engine, wa_js)):
        raise UsageError(
            "nothing to change",
            hint="give at least one of --name, --template, --language, --phone, "
            "--timezone, --engine, --wa-js",
        )
    app_ctx = app_context(ctx)
    with app_ctx.session() as session:
        if wa_js is not None and wa_js != wajs_releases.DEFAULT:
            from wactl import wajs

            wajs.check_version(wa_js, option="--wa-js")
            wajs_releases.vet(app_ctx.config, session, wa_js, force=force)
        changed = tenants.edit_tenant(
            session,
            slug,
            tenants.TenantChanges(
                name=name,
                business_name=name,
                template=template,
                language=language,
                phone_number=phone,
                timezone=timezone,
                engine=engine,
                wa_js=wa_js,
            ),
            actor=audit.operator_actor(),
        )
        tenant = tenants.get_tenant(session, slug)
        engine_now = tenant.engine
    if json_output:
        emit_json(changed)
    elif changed:
        for key, diff in changed.items():
            old, new = diff["old"], diff["new"]
            if key == "wa_js":
                old, new = old or wajs_releases.DEFAULT, new or wajs_releases.DEFAULT
            app_ctx.err_console.print(f"{slug}: {key}: {old} -> {new}", markup=False)
    else:
        app_ctx.err_console.print(f"{slug}: already like that; nothing changed")
    if "wa_js" in changed and not json_output:
        from wactl.enums import EngineName

        if engine_now == EngineName.WHATSAPP_WEB:
            app_ctx.err_console.print(
                f"{slug}: the worker runs it from its next start (`wactl tenant restart {slug}`)"
            )
        else:
            app_ctx.err_console.print(
                f"{slug}: the {engine_now.value} engine runs no wa-js; the version applies "
                "once the tenant uses whatsapp-web"
            )


@app.command("delete")
def delete(
    ctx: typer.Context,
    slug: Slug,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a tenant and everything it owns (config, session, messages, requests).

    The audit trail keeps its events. Asks for confirmation unless --yes.
    """
    from wactl.db import audit, tenants

    app_ctx = app_context(ctx)
    with app_ctx.session() as session:
        tenant = tenants.get_tenant(session, slug)
        if not yes:
            from wactl.display import printable

            typer.confirm(
                f"Delete tenant '{slug}' ({printable(tenant.name)}) with its messages and "
                "requests?",
                abort=True,
                err=True,
            )
        _stop_worker_if_running(app_ctx, slug)
        tenants.delete_tenant(session, slug, actor=audit.operator_actor())
    app_ctx.err_console.print(f"deleted tenant '{slug}'")


def _stop_worker_if_running(app_ctx: AppContext, slug: str) -> None:
    """Before a tenant's rows go, its worker goes: through the daemon, if one runs."""
    from wactl.cli.daemon_client import client_for
    from wactl.errors import NotFoundError
    from wactl.ipc.client import DaemonNotRunning

    try:
        client = client_for(app_ctx, autostart=False)
        view = client.request("GET", f"/v1/tenants/{slug}")
    except (DaemonNotRunning, NotFoundError):
        return
    if view["pid"] is not None or view["state"] in ("STARTING", "BACKOFF"):
        client.request("POST", "/v1/stop", {"tenants": [slug]}, timeout=120)
        app_ctx.err_console.print(f"stopped the worker of '{slug}'")


@config_app.command("export")
def config_export(ctx: typer.Context, slug: Slug) -> None:
    """Print the tenant's configuration as TOML (edit it, then `config apply`)."""
    from wactl.db import tenants
    from wactl.display import escape_serialised

    with app_context(ctx).session() as session:
        tenant = tenants.get_tenant(session, slug)
        document = tenants.render_document(slug, tenants.export_document(tenant))
    # TOML escapes control characters itself; not the C1 ones and bidi overrides.
    sys.stdout.write(escape_serialised(document))


@config_app.command("apply")
def config_apply(
    ctx: typer.Context,
    slug: Slug,
    file: Annotated[
        Path,
        typer.Argument(
            help="TOML file, as written by `config export`, of at most 1 MiB; - reads stdin."
        ),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the diff and validate; write nothing.")
    ] = False,
) -> None:
    """Validate FILE completely, print the diff, then write all of it or nothing.

    FILE must be a regular file (not a pipe or a device) of at most 1 MiB, or - for
    stdin (at most 1 MiB too); exit status 2 otherwise.
    """
    from wactl.db import audit, tenants
    from wactl.display import escape_serialised
    from wactl.errors import UsageError
    from wactl.inputs import InputFileError, read_stdin_text, read_text_file

    app_ctx = app_context(ctx)
    source = "stdin" if str(file) == "-" else str(file)
    try:
        text = read_stdin_text() if str(file) == "-" else read_text_file(file)
    except FileNotFoundError:
        raise UsageError(f"cannot read {source}: No such file or directory") from None
    except InputFileError as exc:
        raise UsageError(f"{source} {exc}") from None
    with app_ctx.session() as session:
        tenant = tenants.get_tenant(session, slug)
        doc = tenants.parse_document(text, source=source, slug=slug)
        diff = tenants.document_diff(slug, tenants.export_document(tenant), doc)
        sys.stdout.write(escape_serialised(diff))
        if not diff:
            app_ctx.err_console.print(f"{slug}: no changes")
            return
        if dry_run:
            app_ctx.err_console.print(f"{slug}: dry run; valid, nothing written")
            session.rollback()
            return
        tenants.apply_document(session, tenant, doc, actor=audit.operator_actor())
    app_ctx.err_console.print(f"{slug}: configuration applied")
