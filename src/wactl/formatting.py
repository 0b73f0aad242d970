"""Times, durations, sizes and logged rows in words: one wording for the CLI and the TUI.

Why this module exists: `wactl ps` and the dashboard's table say "3m05s" and "41.3M"
alike, and `wactl tenant logs` and the dashboard's conversation show a message alike;
the commands (`wactl.cli`) and the dashboard (`wactl.tui`) both import it, and neither
imports the other.

What it must not do: print, read files, or escape anything (the text a function here
returns may hold data from outside wactl: show it with `wactl.display.printable`).
Stdlib only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any


def local_time(value: dt.datetime | None) -> str:
    """A timestamp for people, in the operator's local time zone."""
    if value is None:
        return "-"
    return value.astimezone().strftime("%Y-%m-%d %H:%M")


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


def or_dash(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def message_parts(row: dict[str, Any]) -> tuple[str, str]:
    """One logged message for people (`wactl.db.messages.message_json` shape): its lead
    (when, chat, direction) and its text (with what kind of reply it is, and its state
    when not the usual one). Both are data: show them with `wactl.display.printable`."""
    when = local_time(dt.datetime.fromisoformat(row["created_at"]))
    arrow = "<-" if row["direction"] == "IN" else "->"
    note = "" if row["state"] in ("ANSWERED", "SENT") else f"[{row['state'].lower()}] "
    kind = f"({row['kind']}) " if row["kind"] and row["kind"] != "owner" else ""
    who = "(business) " if row["kind"] == "owner" else ""
    return f"{when} {row['chat']:>16} {arrow}", f"{who}{kind}{note}{row['text']}"


def pause_reason_text(reason: str | None) -> str:
    """Why the bot is paused in a chat, for people (`wactl chats list`, the dashboard)."""
    return {
        None: "-",
        "handoff": "asked for a person",
        "owner": "business answered",
        "operator": "operator",
    }.get(reason, reason or "-")
