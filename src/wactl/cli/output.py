"""Printing: stable JSON for scripts, text for people, times and durations.

Text from outside wactl is shown with `printable` (from `wactl.display`, shared with
the TUI); tables and details for people are laid out by `wactl.cli.console`.
"""

from __future__ import annotations

import datetime as dt
import re
import sys
from pathlib import Path
from typing import Any, BinaryIO

from wactl.display import json_text, printable
from wactl.errors import NotFoundError, UsageError

_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def emit_json(data: Any) -> None:
    """Plain, stable JSON on stdout: two-space indent, keys in their defined order."""
    sys.stdout.write(json_text(data, indent=2) + "\n")


def local_time(value: dt.datetime | None) -> str:
    """A timestamp for people, in the operator's local time zone."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M")


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


def duration(seconds: float | None) -> str:
    """A short human duration: 42s, 3m05s, 2h07m, 4d3h; "-" for None."""
    if seconds is None:
        return "-"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def human_bytes(value: int | None) -> str:
    """Memory for people, in MiB: 41.3M; "-" for None."""
    if value is None:
        return "-"
    return f"{value / (1024 * 1024):.1f}M"


def last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of ``path`` (decoded, newlines kept), read from its end.

    Only the blocks holding those lines are read, so a dashboard can show the tail of
    a 10 MB log every second. Raises FileNotFoundError when there is no file.
    """
    with path.open("rb") as handle:
        return _tail(handle, count)


def _tail(handle: BinaryIO, count: int, block: int = 65536) -> list[str]:
    """The last ``count`` lines of an open file; leaves it positioned at the end read."""
    end = handle.seek(0, 2)
    if count <= 0:
        return []
    data = b""
    position = end
    while position > 0 and data.count(b"\n") <= count:
        position = max(0, position - block)
        handle.seek(position)
        data = handle.read(end - position)
    lines = data.splitlines(keepends=True)
    if position > 0:
        lines = lines[1:]  # it may have started before the first byte read
    return [line.decode("utf-8", "replace") for line in lines[-count:]]


def or_dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


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
        sys.stdout.write(printable("".join(_tail(handle, lines)), multiline=True))
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
