"""Printing: stable JSON for scripts, ``--since`` and ``--for`` read, a log followed.

Text from outside wactl is shown with `printable` (from `wactl.display`, shared with
the TUI), and times, durations and sizes are worded by `wactl.formatting` (also the
TUI's); tables and details for people are laid out by `wactl.cli.console`.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path
from typing import Any

from wactl.display import json_text, printable
from wactl.errors import NotFoundError, UsageError
from wactl.formatting import duration
from wactl.tail import tail_lines

_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def emit_json(data: Any) -> None:
    """Plain, stable JSON on stdout: two-space indent, keys in their defined order."""
    sys.stdout.write(json_text(data, indent=2) + "\n")


def parse_since(
    text: str, *, now: dt.datetime | None = None, option: str = "--since"
) -> dt.datetime:
    """``--since``: a duration back from now (30m, 12h, 7d, 2w) or an ISO date/time."""
    now = now or dt.datetime.now(dt.UTC)
    hint = "use e.g. 30m, 12h, 7d, 2w, 2026-11-01 or 2026-11-01T09:00"
    match = _DURATION_RE.match(text)
    try:
        if match:
            return now - dt.timedelta(seconds=int(match[1]) * _UNITS[match[2]])
        moment = dt.datetime.fromisoformat(text.strip())
    except OverflowError:
        raise UsageError(f"{option}: '{text}' is too far back", hint=hint) from None
    except ValueError:
        raise UsageError(f"{option}: '{text}' is not a duration or a date", hint=hint) from None
    try:
        if moment.tzinfo is None:
            moment = moment.astimezone()  # a naive time is the operator's local time
        return moment.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        # Near year 1 or 9999 the shift to UTC leaves the range datetime can hold.
        raise UsageError(f"{option}: '{text}' is out of range", hint=hint) from None


def parse_duration(text: str, *, option: str, most: float) -> float:
    """A duration such as 30m, 12h, 7d or 2w, in seconds, above 0 and at most ``most``."""
    match = _DURATION_RE.match(text)
    hint = "use e.g. 30m, 2h, 1d or 2w"
    if not match:
        raise UsageError(f"{option}: '{text}' is not a duration", hint=hint)
    seconds = float(int(match[1]) * _UNITS[match[2]])
    if not 0 < seconds <= most:
        raise UsageError(
            f"{option}: '{text}' is out of range (above 0, at most {duration(most)})", hint=hint
        )
    return seconds


def tail_file(path: Path, *, lines: int, follow: bool) -> None:
    """Print the last ``lines`` lines of ``path``; with ``follow``, keep printing new ones.

    Following notices rotation (the file replaced by a new, smaller one).
    """
    import time

    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise NotFoundError(f"no log file at {path} yet") from None
    with handle:
        # A log holds what workers were told by customers and WhatsApp: data.
        sys.stdout.write(printable("".join(tail_lines(handle, lines)), multiline=True))
        sys.stdout.flush()
        while follow:
            chunk = handle.readline()
            if chunk:
                sys.stdout.write(printable(chunk.decode("utf-8", "replace"), multiline=True))
                sys.stdout.flush()
                continue
            try:
                if path.stat().st_size < handle.tell():
                    handle.close()
                    handle = path.open("rb")
            except FileNotFoundError:
                pass
            time.sleep(0.2)
