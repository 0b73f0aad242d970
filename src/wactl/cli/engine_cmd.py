"""`wactl engine install | status`: the wa-js library the whatsapp-web engine injects.

Thin: parse, call `wactl.wajs`, print. wactl.wajs is stdlib only, so both commands stay
as light as `--help` (no Playwright, no database).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from wactl.cli.context import JsonFlag, app_context

if TYPE_CHECKING:
    from wactl.cli.context import AppContext
    from wactl.wajs import InstalledBundle

app = typer.Typer(
    help="The whatsapp-web engine's wa-js library: install it and check what is installed.",
    no_args_is_help=True,
)


class InstallSource(enum.StrEnum):
    """How `wactl engine install` fetches the tarball."""

    AUTO = "auto"  # npm when it is on PATH, else HTTPS
    NPM = "npm"
    HTTPS = "https"


def bundle_json(app_ctx: AppContext, found: InstalledBundle | None) -> dict[str, Any]:
    """The `engine install --json` / `engine status --json` object (keys in wactl(1))."""
    from wactl import wajs

    config = app_ctx.config
    return {
        "package": wajs.WAJS_PACKAGE,
        "version": wajs.WAJS_VERSION,
        "pinned_integrity": wajs.WAJS_INTEGRITY,
        "path": str(wajs.bundle_path(config)),
        "installed": found is not None,
        "verified": found is not None and found.verified,
        "problem": found.problem if found is not None else None,
        "integrity": found.integrity if found is not None else None,
        "sha256": found.sha256 if found is not None else None,
        "source": found.source if found is not None else None,
        "registry": found.registry if found is not None else None,
        "installed_at": found.installed_at if found is not None else None,
    }


@app.command("install")
def install(
    ctx: typer.Context,
    force: Annotated[
        bool,
        typer.Option("--force", help="Fetch and write it again even when a verified copy exists."),
    ] = False,
    source: Annotated[
        InstallSource,
        typer.Option(
            "--source",
            case_sensitive=False,
            help="How to fetch it: npm pack, a direct HTTPS download of the registry's "
            "tarball, or auto (npm when it is on PATH).",
        ),
    ] = InstallSource.AUTO,
    json_output: JsonFlag = False,
) -> None:
    """Fetch the pinned @wppconnect/wa-js from the npm registry, verify it and store it.

    The tarball must match the integrity hash pinned in wactl before anything is
    written; the bundle goes to <data dir>/wa-js/VERSION/. A failed or mismatching
    download installs nothing and leaves an earlier install as it was. Without
    --force, a verified install is kept and nothing is fetched. The whatsapp-web
    engine also does this on first use.
    """
    from wactl import wajs

    app_ctx = app_context(ctx)
    config = app_ctx.config
    before = wajs.installed(config)
    fetch = force or before is None or not before.verified
    use_npm = {InstallSource.AUTO: None, InstallSource.NPM: True, InstallSource.HTTPS: False}
    if fetch:
        npm = source is InstallSource.NPM or (
            source is InstallSource.AUTO and wajs.npm_executable() is not None
        )
        app_ctx.err_console.print(
            f"fetching {wajs.PINNED.spec} from {wajs.redact(wajs.registry_url(config))} "
            f"({'npm pack' if npm else 'https download'})"
        )
    found = wajs.install(config, use_npm=use_npm[source], force=force)
    if json_output:
        from wactl.cli.output import emit_json

        emit_json(bundle_json(app_ctx, found))
        return
    if not fetch:
        app_ctx.console.print(
            f"{wajs.PINNED.spec} is already installed and verified at {found.path}; "
            "--force fetches it again",
            soft_wrap=True,
        )
        return
    app_ctx.console.print(
        f"installed {wajs.PINNED.spec} ({found.integrity}) from {found.source} at {found.path}",
        soft_wrap=True,
    )


@app.command("status")
def status(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Show which wa-js is installed, where, and whether it still verifies.

    Exits 0 when the pinned version is installed and verified, 5 when it is not
    installed, 1 when the files on disk fail verification (the status is printed
    first in each case).
    """
    from wactl import wajs
    from wactl.errors import NotFoundError

    app_ctx = app_context(ctx)
    config = app_ctx.config
    found = wajs.installed(config)
    if json_output:
        from wactl.cli.output import emit_json

        emit_json(bundle_json(app_ctx, found))
    else:
        _print_status(app_ctx, found)
    if found is None:
        raise NotFoundError(
            f"{wajs.PINNED.spec} is not installed in {wajs.version_dir(config).parent}",
            hint="run `wactl engine install` (the whatsapp-web engine also does on first use)",
        )
    if not found.verified:
        raise wajs.WajsInstallError(
            f"the installed {wajs.PINNED.spec} fails verification: {found.problem}",
            hint="run `wactl engine install --force`",
        )


def _print_status(app_ctx: AppContext, found: InstalledBundle | None) -> None:
    from rich.table import Table

    from wactl.cli.output import or_dash

    row = bundle_json(app_ctx, found)
    if found is None:
        verified = "not installed"
    elif found.verified:
        verified = "yes"
    else:
        verified = f"NO: {found.problem}"
    table = Table(box=None, pad_edge=False, show_header=False)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("package", f"{row['package']} {row['version']} (pinned)")
    table.add_row("pinned integrity", row["pinned_integrity"])
    table.add_row("path", row["path"])
    table.add_row("verified", verified)
    table.add_row("sha256", or_dash(row["sha256"]))
    table.add_row("installed at", or_dash(row["installed_at"]))
    table.add_row("source", or_dash(row["source"] and f"{row['source']} ({row['registry']})"))
    app_ctx.console.print(table)
