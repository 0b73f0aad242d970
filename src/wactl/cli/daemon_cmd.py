"""`wactl daemon run | start | stop | restart | status | logs`."""

from __future__ import annotations

import sys
import time
from typing import Annotated

import typer

from wactl.cli.context import JsonFlag, app_context, rows_option, wait_option

app = typer.Typer(help="Run and control the supervising daemon (wactld).", no_args_is_help=True)


@app.command("run")
def run(ctx: typer.Context) -> None:
    """Run the daemon in the foreground (for systemd), logging to stderr and its log file.

    SIGTERM or Ctrl-C stops the daemon; the workers keep running and the next daemon
    re-adopts them.
    """
    from wactl.daemon.server import run_daemon

    run_daemon(app_context(ctx).config, foreground=True)


@app.command("start")
def start(ctx: typer.Context) -> None:
    """Start the daemon in the background; returns once it answers."""
    from wactl.cli.daemon_client import find_daemon, spawn_daemon
    from wactl.ipc.client import DaemonNotRunning

    app = app_context(ctx)
    try:
        info = find_daemon(app).check_version()
    except DaemonNotRunning:
        pid = spawn_daemon(app)
        app.changed(f"the daemon was started (pid {pid})")
        app.err_console.print(f"daemon started (pid {pid})")
        return
    app.err_console.print(f"the daemon is already running (pid {info['pid']})")


def _stop(ctx: typer.Context, *, with_workers: bool, timeout: float) -> bool:
    """Ask the daemon to exit and wait for it; False when it was not running."""
    from wactl.cli.daemon_client import find_daemon, pid_alive
    from wactl.errors import DaemonError
    from wactl.ipc.client import DaemonNotRunning

    app = app_context(ctx)
    try:
        client = find_daemon(app)
        answer = client.request(
            "POST", "/v1/shutdown", {"stop_workers": with_workers}, timeout=timeout
        )
    except DaemonNotRunning:
        return False
    pid = int(answer["pid"])
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            raise DaemonError(
                f"the daemon (pid {pid}) did not exit within {timeout:g} s",
                hint="see `wactl daemon logs`",
            )
        time.sleep(0.05)
    return True


@app.command("stop")
def stop(
    ctx: typer.Context,
    with_workers: Annotated[
        bool, typer.Option("--with-workers", help="Also stop every worker first.")
    ] = False,
    timeout: Annotated[float, wait_option("Seconds to wait for it to exit.", low=1)] = 60.0,
) -> None:
    """Stop the daemon. Workers keep running (the next daemon re-adopts them) unless
    --with-workers."""
    app = app_context(ctx)
    if _stop(ctx, with_workers=with_workers, timeout=timeout):
        app.changed("the daemon was stopped")
        note = "workers stopped too" if with_workers else "workers keep running"
        app.err_console.print(f"daemon stopped; {note}")
    else:
        app.err_console.print("the daemon was not running")


@app.command("restart")
def restart(ctx: typer.Context) -> None:
    """Restart the daemon without restarting any worker (they are re-adopted)."""
    from wactl.cli.daemon_client import spawn_daemon

    app = app_context(ctx)
    _stop(ctx, with_workers=False, timeout=60.0)
    pid = spawn_daemon(app)
    app.changed(f"the daemon was restarted (pid {pid})")
    app.err_console.print(f"daemon restarted (pid {pid}); workers kept running")


@app.command("status")
def status(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Show the daemon's pid, version, uptime, socket and workers by state.

    Exits with 7 when the daemon is not running.
    """
    from wactl.cli.daemon_client import find_daemon
    from wactl.cli.output import emit_json
    from wactl.display import printable
    from wactl.formatting import duration

    app = app_context(ctx)
    data = find_daemon(app).request("GET", "/v1/status")
    if json_output:
        emit_json(data)
        return
    workers = ", ".join(f"{count} {state}" for state, count in data["workers"].items() if count)
    sys.stdout.write(
        f"running: pid {data['pid']}, wactl {data['version']}, "
        f"up {duration(data['uptime_seconds'])}\n"
        f"socket: {printable(data['socket'])}\n"
        f"workers: {workers or 'none'}\n"
    )


@app.command("logs")
def logs(
    ctx: typer.Context,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines.")
    ] = False,
    lines: Annotated[int, rows_option("--lines", "-n", help_text="Lines to show.", low=0)] = 50,
) -> None:
    """Print the end of the daemon's log file (works while the daemon is down)."""
    from wactl.cli.output import tail_file
    from wactl.ipc.protocol import daemon_log_path

    tail_file(daemon_log_path(app_context(ctx).config.log_dir), lines=lines, follow=follow)


@app.command("install-unit")
def install_unit(
    ctx: typer.Context,
    user: Annotated[
        str, typer.Option("--user", help="The system user the service runs as.", metavar="NAME")
    ] = "wactl",
) -> None:
    """Print a systemd unit that runs this wactl's daemon as a system service.

    It runs `daemon run` as --user with this command's config file (--config), which
    must set paths.data_dir and paths.runtime_dir (a folder of /run): the service and
    every wactl command read them from that file, so the commands find the service's
    socket. Write it to /etc/systemd/system/wactld.service; the README lists every step.
    """
    from wactl.daemon.systemd_unit import render_unit
    from wactl.errors import ConfigError

    config = app_context(ctx).config
    if not config.source.is_file():
        raise ConfigError(
            f"no config file at {config.source}",
            hint=f"write it first, as {user}: `wactl --config {config.source} init`",
        )
    sys.stdout.write(render_unit(config, user=user, python=sys.executable))
