"""The systemd unit that runs the daemon as a system service (`wactl daemon
install-unit`), and the layout it assumes. Stdlib only.

Everything that must agree between the service and the operators' `wactl` commands
lives in one config file, never in the unit's environment: a daemon started with
``XDG_RUNTIME_DIR=/run`` while the operators' shells had their own runtime directory
was invisible to them, and their next command started a second daemon on the same
database. So the config names the data directory and the runtime directory, the unit
only names the config, and any command run with that config finds the daemon's socket.
(A command with another config but the same database still finds it, through the
database's record of the daemon that serves it: `wactl.db.daemon_claim`.)
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from wactl.config.model import Config
from wactl.errors import ConfigError

#: Where systemd keeps runtime (RuntimeDirectory=) and state (StateDirectory=) folders.
RUN = PurePosixPath("/run")
VAR_LIB = PurePosixPath("/var/lib")


def _systemd_name(path: str, parent: PurePosixPath) -> str | None:
    """``NAME`` when ``path`` is ``parent/NAME`` (systemd then creates it for the user)."""
    pure = PurePosixPath(path)
    return pure.name if pure.parent == parent and pure.name not in ("", ".", "..") else None


def render_unit(config: Config, *, user: str, python: str) -> str:
    """The unit for ``config``'s file, running ``python -m wactl`` as ``user``.

    Raises `ConfigError` when the config does not pin the paths the service and the CLI
    must share."""
    source = config.source
    problems = []
    runtime = config.paths.runtime_dir
    if not runtime or _systemd_name(runtime, RUN) is None:
        problems.append(f"paths.runtime_dir must be a folder of /run, such as /run/{user}")
    data = config.paths.data_dir
    if not data or not Path(data).is_absolute():
        problems.append(f"paths.data_dir must be an absolute path, such as /var/lib/{user}")
    if problems:
        raise ConfigError(
            f"{source}: {'; '.join(problems)} (the service and every wactl command must "
            "agree on them, so they belong in the config file)",
            hint=f"`wactl --config {source} config set paths.runtime_dir /run/{user}` "
            f"(and paths.data_dir /var/lib/{user})",
        )
    runtime_name = _systemd_name(runtime, RUN)
    state_name = _systemd_name(data, VAR_LIB)
    state_lines = (
        f"StateDirectory={state_name}\nStateDirectoryMode=0700\n" if state_name is not None else ""
    )
    return f"""\
# wactld.service: the wactl daemon as a system service, written by
# `wactl daemon install-unit`. Install it as
# /etc/systemd/system/wactld.service, then: systemctl daemon-reload && systemctl enable --now wactld
#
# Runs as user {user}. Everything it uses comes from one config file, {source}:
#   data (SQLite database, logs, browser profiles): {data}
#   runtime (the socket wactld.sock, the workers' sockets): {runtime}
# Operators reach it with that config, as {user} (the socket is theirs alone, mode 0600):
#   sudo -u {user} wactl --config {source} ps
# A command with another config but the same database finds this daemon through the
# database, and never starts a second one on it.
#
# Workers run in their own sessions and outlive the daemon on purpose: restarting or
# upgrading it never drops a linked WhatsApp session, because the next daemon re-adopts
# every live worker. Hence KillMode=process (only the daemon gets the stop signal) and a
# preserved runtime directory (the workers' control sockets live there). To stop the
# workers too: `wactl daemon stop --with-workers` (or `wactl tenant stop --all`) first.

[Unit]
Description=wactl daemon: supervises one WhatsApp bot worker per tenant
After=network-online.target postgresql.service
Wants=network-online.target

[Service]
Type=simple
User={user}
Group={user}
ExecStart={python} -m wactl --config {source} daemon run
KillMode=process
Restart=on-failure
RestartSec=2
RuntimeDirectory={runtime_name}
RuntimeDirectoryMode=0700
RuntimeDirectoryPreserve=yes
{state_lines}# Chromium tenants need memory; the daemon restarts any worker tree over
# daemon.memory_limit_mb, so no MemoryMax is set here.
LimitNOFILE=65536

[Install]
WantedBy=multi-user.target
"""
