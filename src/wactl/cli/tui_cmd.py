"""`wactl tui`: the live dashboard. Textual is imported here, inside the command only."""

from __future__ import annotations

import sys

import typer

from wactl.cli.context import app_context


def tui(ctx: typer.Context) -> None:
    """Live dashboard: every tenant's worker, its detail and QR; act on them.

    A table of every tenant (state, pid, uptime, restarts, CPU, memory,
    heartbeat age, messages in/out in the last hour, last error), updated from
    the daemon's events; below it the selected tenant's configuration,
    conversation, chats (paused ones first) and worker log.

    Keys: s start, x stop, r restart, u logout, c QR, l worker log, p / b pause
    the chat chosen in the Chats tab / hand it back to the bot, / filter, o sort
    (or click a header), ? help, q quit; ctrl+p offers the same actions.

    Starts the daemon if it is not running. If the daemon goes away later, a
    banner says so and the dashboard reconnects by itself. Respects NO_COLOR;
    the mouse is optional; fits 80x24. Needs a terminal (exit 2 without one).
    """
    from wactl.errors import DaemonError, UsageError

    app = app_context(ctx)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UsageError("wactl tui needs a terminal", hint="for scripts, use `wactl ps --json`")
    from wactl.cli.daemon_client import client_for

    socket = None
    try:
        socket = client_for(app).path  # the daemon serving this database, wherever it is
    except DaemonError as exc:
        # The dashboard opens anyway: its banner says what is wrong and it keeps trying.
        app.err_console.print(f"wactl: {exc.one_line()}")
    from wactl.tui.app import build_app  # Textual: ~180 ms, only on this path

    dashboard = build_app(app, socket=socket)
    dashboard.run()
    if dashboard.return_code:
        raise typer.Exit(dashboard.return_code)  # Textual printed what went wrong
