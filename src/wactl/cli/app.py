"""The root of the command tree and the CLI edge where errors become exit codes.

`run` is the only place that turns exceptions into one stderr line and an
`ExitCode`; everything below it raises `WactlError` subclasses.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import click
import typer

import wactl
from wactl.cli import (
    audit_cmd,
    chats_cmd,
    config_cmd,
    daemon_cmd,
    db_cmd,
    doctor_cmd,
    engine_cmd,
    init_cmd,
    logs_cmd,
    portal_cmd,
    proc_cmd,
    quickstart_cmd,
    requests_cmd,
    tenant_cmd,
    tui_cmd,
)
from wactl.cli.context import AppContext
from wactl.display import printable
from wactl.errors import ExitCode, WactlError
from wactl.signals import Terminated, exit_like_interrupt, exit_status

HELP = (
    "Run WhatsApp bots for many small businesses from a terminal.\n\n"
    "Each business is a tenant with its own bot. Configure tenants, decide setup requests "
    "from the portal and read the audit trail. Errors are one line on stderr; the exit "
    "codes are listed in the man page."
)

app = typer.Typer(
    name="wactl",
    help=HELP,
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"wactl {wactl.__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        str | None,
        typer.Option(
            "--config",
            "-c",
            metavar="PATH",
            help="Config file to use (default: $WACTL_CONFIG, else "
            "$XDG_CONFIG_HOME/wactl/config.toml).",
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_version, is_eager=True
        ),
    ] = False,
) -> None:
    # `run` passes its context in, to read afterwards whether the command committed.
    app_ctx = ctx.obj if isinstance(ctx.obj, AppContext) else AppContext(None)
    app_ctx.config_path = config
    ctx.obj = app_ctx
    ctx.call_on_close(app_ctx.close)


app.command("quickstart")(quickstart_cmd.quickstart)
app.command("init")(init_cmd.init)
app.add_typer(config_cmd.app, name="config")
app.add_typer(db_cmd.app, name="db")
app.add_typer(tenant_cmd.app, name="tenant")
app.add_typer(requests_cmd.app, name="requests")
app.add_typer(chats_cmd.app, name="chats")
app.command("audit")(audit_cmd.audit)
app.add_typer(daemon_cmd.app, name="daemon")
app.command("ps")(proc_cmd.ps)
app.command("tui")(tui_cmd.tui)
app.command("doctor")(doctor_cmd.doctor)
for _name in ("start", "stop", "restart", "qr", "logout"):
    tenant_cmd.app.command(_name)(getattr(proc_cmd, _name))
sandbox_app = typer.Typer(
    help="Play WhatsApp's part for sandbox tenants (no phone needed).", no_args_is_help=True
)
sandbox_app.command("scan")(proc_cmd.sandbox_scan)
sandbox_app.command("send")(proc_cmd.sandbox_send)
sandbox_app.command("chat")(proc_cmd.sandbox_chat)
app.add_typer(sandbox_app, name="sandbox")
tenant_cmd.app.command("logs")(logs_cmd.tenant_logs)
app.add_typer(logs_cmd.app, name="logs")
app.add_typer(engine_cmd.app, name="engine")
app.add_typer(portal_cmd.app, name="portal")


def command() -> click.Command:
    """The click command tree (used by `run`, the man page generator and tests)."""
    return typer.main.get_command(app)


def _error(text: str) -> None:
    # The message may quote what was typed or stored (a name, a value): data.
    sys.stderr.write(f"error: {printable(' '.join(text.split()))}\n")


def _done_anyway(app_ctx: AppContext, exc: Exception) -> int:
    """A failure after the command committed its change (writing the result to a full
    disk or a closed terminal, ...): the change stands, so the command succeeded; say
    what could not be shown."""
    try:
        sys.stderr.write(
            f"warning: {printable(app_ctx.committed)}, but showing the result failed: "
            f"{type(exc).__name__}: {printable(' '.join(str(exc).split()))}\n"
        )
        sys.stderr.flush()
    except (OSError, ValueError):
        pass  # stderr is what failed: nothing more can be said
    return int(ExitCode.OK)


def run(args: list[str] | None = None) -> int:
    """Run the CLI with ``args`` and return the exit code; never raises for errors."""
    cli = command()
    app_ctx = AppContext(None)
    try:
        result = cli.main(args=args, prog_name="wactl", standalone_mode=False, obj=app_ctx)
        # Inside the edge: a result that cannot be written fails here, not at exit.
        sys.stdout.flush()
    except WactlError as exc:
        _error(exc.one_line())
        return int(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        # A bare `wactl` or `wactl tenant`: the help is what the person wants to read.
        sys.stdout.write(exc.format_message() + "\n")
        return int(ExitCode.USAGE)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "wactl"
        _error(f"{exc.format_message().rstrip('.')}; see `{where} --help`")
        return int(ExitCode.USAGE)
    except click.ClickException as exc:
        _error(exc.format_message())
        return exc.exit_code
    except click.exceptions.Abort:
        _error("aborted; nothing was changed")
        return int(ExitCode.ABORTED)
    except Terminated as exc:
        # SIGTERM or SIGHUP (`wactl.signals`): what the command started is undone, and
        # like Ctrl-C inside a command (typer: a silent 130) nothing more is said.
        return exit_status(exc)
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `wactl tenant list | head`); that is not an error.
        sys.stderr.close()
        return int(ExitCode.OK)
    except Exception as exc:
        if app_ctx.committed is not None:
            return _done_anyway(app_ctx, exc)
        if os.environ.get("WACTL_DEBUG"):
            raise
        _error(
            f"unexpected {type(exc).__name__}: {exc}; "
            "rerun with WACTL_DEBUG=1 for the traceback and report it"
        )
        return int(ExitCode.FAILURE)
    return int(result) if isinstance(result, int) else int(ExitCode.OK)


def _drop_unwritten_output() -> None:
    """Output that could not be written (a full disk, a closed terminal) is dropped, so
    that the interpreter's own flush at exit cannot fail again and change the exit
    status (to 120) after `run` decided it."""
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass


def main() -> None:
    exit_like_interrupt()
    code = run()
    _drop_unwritten_output()
    sys.exit(code)
