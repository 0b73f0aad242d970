"""What the benchmarks share: progress lines, an isolated wactl installation's
environment, and a teardown that leaves no process of the run behind.

Every process a benchmark starts carries ``MARKER`` = the run's base directory in its
environment, so that the teardown can find and kill whatever the orderly stop missed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import psutil

#: Environment variable marking every process of a benchmark run (value: its base dir).
MARKER = "WACTL_BENCH_RUN"

_started = time.monotonic()


class BenchError(Exception):
    """The run could not measure something (not: a target was missed)."""


class Stoppable(Protocol):
    def stop(self) -> None: ...


def say(message: str) -> None:
    """Progress, on stderr, with the time since the start of the run."""
    sys.stderr.write(f"[{run_seconds():6.1f}s] {message}\n")
    sys.stderr.flush()


def run_seconds() -> float:
    """Seconds since the start of the run."""
    return time.monotonic() - _started


def wactl_executable() -> Path:
    """The `wactl` beside this interpreter (the benchmarks run with .venv/bin/python)."""
    wactl = Path(sys.executable).with_name("wactl")
    if not wactl.exists():
        raise BenchError(f"no {wactl}; run `make setup` and use .venv/bin/python")
    return wactl


def isolated_env(base: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without anything that points at a real wactl (WACTL_*,
    XDG_*, the virtualenv), plus the run's `MARKER`, a throwaway HOME and XDG dirs under
    ``base``, and a quiet terminal; ``extra`` (e.g. WACTL_PATHS_*) comes last."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("WACTL_", "XDG_")) and key != "VIRTUAL_ENV"
    }
    env.update(
        {
            MARKER: str(base),
            "HOME": str(base / "home"),
            "XDG_CONFIG_HOME": str(base / "config"),
            "XDG_DATA_HOME": str(base / "data"),
            "XDG_STATE_HOME": str(base / "state"),
            "NO_COLOR": "1",
            **(extra or {}),
        }
    )
    return env


def marked_processes(base: Path) -> Iterator[psutil.Process]:
    """Live processes (other than this one) whose environment carries this run's marker."""
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(MARKER) == str(base) and proc.status() != psutil.STATUS_ZOMBIE:
                yield proc


def teardown(base: Path, cleanup: Sequence[Stoppable]) -> None:
    """Stop what ``cleanup`` lists (last first), then kill whatever carries the marker,
    and remove ``base``."""
    # A second Ctrl-C must not cut the teardown short and leave workers behind.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for side in reversed(cleanup):
        try:
            side.stop()
        except Exception as exc:  # keep tearing down; the sweep below finishes the job
            say(f"teardown: stopping {type(side).__name__} failed: {exc}")
    strays = list(marked_processes(base))
    for proc in strays:
        with contextlib.suppress(psutil.Error):
            say(f"teardown: killing stray pid {proc.pid} ({' '.join(proc.cmdline()[:4])})")
            proc.kill()
    if strays:
        psutil.wait_procs(strays, timeout=10)
    shutil.rmtree(base, ignore_errors=True)


def interrupt(signum: int, frame: Any) -> None:
    """A SIGTERM handler: unwind like Ctrl-C, so that the teardown runs."""
    raise KeyboardInterrupt
