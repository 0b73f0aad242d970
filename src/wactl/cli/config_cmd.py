"""`wactl config path | show | validate | set`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from wactl import paths
from wactl.cli.context import JsonFlag, app_context
from wactl.config import apply_setting, write_config
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
    """Check the config file: TOML syntax, known keys, value types and values."""
    source = paths.config_file(app_context(ctx).config_path)
    if not source.exists():
        raise ConfigError(f"config file {source} does not exist", hint="run `wactl init`")
    build_config(read_file_sections(source), source=source, where=f"config file {source}")
    sys.stdout.write(f"{printable(source)}: valid\n")


@app.command("set")
def set_(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="Dotted key, e.g. database.url.")],
    value: Annotated[str, typer.Argument(help="New value (true/false for switches).")],
) -> None:
    """Set one key in the config file, after validating the whole result.

    The file is rewritten with every key documented; nothing is written when the
    new value is not valid.
    """
    app_ctx = app_context(ctx)
    source = paths.config_file(app_ctx.config_path)
    current = build_config(read_file_sections(source), source=source, where=f"config file {source}")
    updated = apply_setting(current, key, value)
    write_config(updated, source)
    app_ctx.changed(f"{source} was written")
    section, _, name = key.partition(".")
    shown = config_as_dict(updated, redact=True)[section][name]
    # A value such as "/srv/[x]" is data: the console reads no markup in it.
    app_ctx.err_console.print(f"{source}: {key} = {shown!r}")
