"""``python -m wactl.daemon [--detach] [--config PATH]``: the daemon as `wactl daemon start`
runs it.

Logs go to the daemon's log file only; `wactl daemon run` is the foreground form (logs
on stderr too) for systemd and debugging. With ``--detach`` the process forks: the
parent prints the daemon's pid on stdout and exits at once, and the daemon, in a new
session, is nobody's child but init's, so whoever started it never has to reap it.
"""

from __future__ import annotations

import os
import sys


def _detach() -> None:
    pid = os.fork()
    if pid:
        sys.stdout.write(f"{pid}\n")
        sys.stdout.flush()
        os._exit(0)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)  # closes the pipe the starter reads the pid from
    os.close(devnull)


def main(argv: list[str]) -> int:
    args = list(argv)
    detach = "--detach" in args
    if detach:
        args.remove("--detach")
    config_path = None
    if len(args) == 2 and args[0] == "--config":
        config_path = args[1]
    elif args:
        sys.stderr.write("usage: python -m wactl.daemon [--detach] [--config PATH]\n")
        return 2
    if detach:
        _detach()

    from wactl.signals import Terminated, exit_like_interrupt, exit_status

    exit_like_interrupt()  # until the daemon's own handlers take over
    from wactl.config import load_config
    from wactl.daemon.server import run_daemon
    from wactl.errors import WactlError

    try:
        run_daemon(load_config(config_path), foreground=False)
    except WactlError as exc:
        sys.stderr.write(f"error: {exc.one_line()}\n")
        return int(exc.exit_code)
    except (Terminated, KeyboardInterrupt) as exc:
        return exit_status(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
