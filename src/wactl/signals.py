"""SIGTERM and SIGHUP end a wactl command the way Ctrl-C (SIGINT) does (stdlib only).

Python's default for SIGTERM is to die on the spot: no ``finally`` block, no context
manager, no cleanup of what the command started (``npm pack`` under `wactl engine
install` went on running, re-parented to init; `wactl daemon run` left its socket and
pid file and did not shut its supervisor down). `exit_like_interrupt` makes SIGTERM and
SIGHUP raise `Terminated`, which unwinds like Ctrl-C's KeyboardInterrupt:
``subprocess.run`` kills its child, temporary directories are removed, and the CLI
exits with 128 + the signal number (typer turns Ctrl-C into a silent 130; so is this).
It is a `BaseException`, like KeyboardInterrupt, so no ``except Exception`` swallows
it, and not a KeyboardInterrupt, which typer would turn into 130. Servers (the daemon,
the portal) turn these signals into their graceful shutdown instead, and the dashboard
into its quit.

A second signal while the first is being handled ends the process at once (the
default action is restored when the first arrives), so a stuck cleanup cannot keep
it alive.
"""

from __future__ import annotations

import signal
from types import FrameType

#: Signals that end a command like Ctrl-C, besides SIGINT itself.
TERMINATING = (signal.SIGTERM, signal.SIGHUP)


class Terminated(BaseException):
    """A SIGTERM or SIGHUP arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise(signum: int, frame: FrameType | None) -> None:
    signal.signal(signum, signal.SIG_DFL)
    raise Terminated(signum)


def exit_like_interrupt() -> None:
    """Install the handlers (main thread only, at the start of a command)."""
    for signum in TERMINATING:
        signal.signal(signum, _raise)


def exit_status(interrupt: Terminated | KeyboardInterrupt) -> int:
    """The conventional exit status for ``interrupt``: 128 + its signal number."""
    signum = interrupt.signum if isinstance(interrupt, Terminated) else signal.SIGINT
    return 128 + int(signum)
