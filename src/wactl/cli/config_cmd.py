"""`wactl config path | show | validate | set`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from wactl import paths
from wactl.cli.context import JsonFlag, app_context
from wactl.config import apply_settings, write_config
from wactl.config.loader import build_config, config_as_dict, read_file_sections, render_config
from wactl.display import escape_serialised, printable
from wactl.errors import ConfigError

app = typer.Typer(help="Show, check and change the configuration file.", no_args_is_help=True)


@app.command("path")
def path(ctx: typer.Context) -> None:
    """Print the path of the config file in use (it may not exist yet)."""
    app_ctx = app_context(ctx)
    source = paths.config_file(app_ctx.config_path)
    sys.stdout.write(f"{printable(source)}\n")
    if not source.exists():
        app_ctx.err_console.print("(it does not exist yet; `wactl init` writes it)")


@app.command("show")
def show(
    ctx: typer.Context,
    json_output: JsonFlag = False,
) -> None:
    """Print the effective configuration (file, environment and defaults), secrets redacted."""
    from wactl.cli.output import emit_json

    config = app_context(ctx).config
    if json_output:
        emit_json(config_as_dict(config, redact=True))
    else:
        # TOML escapes control characters itself; not the C1 ones and bidi overrides.
        sys.stdout.write(escape_serialised(render_config(config, redact=True)))


@app.command("validate")
def validate(ctx: typer.Context) -> None:
    """Check the config file: TOML syntax, known keys, value types and values, and that
    the portal's sign-in credentials come in pairs (both or neither)."""
    from wactl.config import check_portal_credentials

    source = paths.config_file(app_context(ctx).config_path)
    if not source.exists():
        raise ConfigError(f"config file {source} does not exist", hint="run `wactl init`")
    where = f"config file {source}"
    check_portal_credentials(
        build_config(read_file_sections(source), source=source, where=where), where=where
    )
    sys.stdout.write(f"{printable(source)}: valid\n")


@app.command("set")
def set_(
    ctx: typer.Context,
    pairs: Annotated[
        list[str],
        typer.Argument(
            help="Dotted key and new value, e.g. database.url URL (true/false for "
            "switches); several pairs set several keys at once.",
            metavar="KEY VALUE [KEY VALUE]...",
            show_default=False,
        ),
    ],
) -> None:
    """Set keys in the config file, after validating the whole result.

    The file is rewritten with every key documented; nothing is written when a new
    value is not valid. Keys that only make sense together (the portal's
    google_client_id and google_client_secret) may be set one at a time: `wactl config
    validate` and `wactl portal serve` check that both are set.
    """
    from wactl.errors import UsageError

    if len(pairs) % 2:
        raise UsageError(
            f"'{pairs[-1]}' has no value",
            hint="give KEY VALUE pairs, e.g. `wactl config set database.echo true`",
        )
    settings = list(zip(pairs[::2], pairs[1::2], strict=True))
    app_ctx = app_context(ctx)
    source = paths.config_file(app_ctx.config_path)
    current = build_config(read_file_sections(source), source=source, where=f"config file {source}")
    updated = apply_settings(current, settings)
    write_config(updated, source)
    app_ctx.changed(f"{source} was written")
    shown = config_as_dict(updated, redact=True)
    for key, _ in settings:
        section, _, name = key.partition(".")
        # A value such as "/srv/[x]" is data: the console reads no markup in it.
        app_ctx.err_console.print(f"{source}: {key} = {shown[section][name]!r}")
