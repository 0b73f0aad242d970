"""What the dashboard's table shows: every tenant's worker, filtered and sorted.

`Dashboard` keeps the daemon's worker views (the WORKER_SCHEMA of ``/v1/tenants``),
applies the live events of ``/v1/events`` to them, and answers which rows are visible
in which order and what each cell says. Plain Python, no Textual, so that it is
cheap to test and the widgets stay thin.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wactl.formatting import duration, human_bytes
from wactl.ipc.protocol import worker_error_text

#: Shown for a value the daemon does not have (a stopped worker's pid) or does not send.
ABSENT = "–"

#: Sorting by state puts trouble first.
STATE_ORDER = {"FATAL": 0, "BACKOFF": 1, "STARTING": 2, "STOPPING": 3, "RUNNING": 4, "STOPPED": 5}
#: Every state the daemon reports, in the order the status line counts them.
STATES = tuple(STATE_ORDER)

View = dict[str, Any]


def _number(key: str) -> Callable[[View], Any]:
    return lambda view: view.get(key)


def _count_text(key: str) -> Callable[[View], str]:
    def text(view: View) -> str:
        value = view.get(key)
        return ABSENT if value is None else str(value)

    return text


def _duration_text(key: str) -> Callable[[View], str]:
    def text(view: View) -> str:
        value = view.get(key)
        return ABSENT if value is None else duration(value)

    return text


def _cpu_text(view: View) -> str:
    value = view.get("cpu_percent")
    return ABSENT if value is None else f"{value:.1f}"


def _memory_text(view: View) -> str:
    value = view.get("memory_uss_bytes")
    return ABSENT if value is None else human_bytes(value)


def _error_text(view: View) -> str:
    return " ".join(worker_error_text(view).split())


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    text: Callable[[View], str]
    #: What sorting compares (None sorts last in either direction).
    value: Callable[[View], Any]
    right: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("slug", "SLUG", lambda v: str(v["slug"]), lambda v: v["slug"]),
    Column(
        "state",
        "STATE",
        lambda v: str(v["state"]),
        lambda v: (STATE_ORDER.get(v["state"], 9), v["slug"]),
    ),
    Column("pid", "PID", _count_text("pid"), _number("pid"), right=True),
    Column(
        "uptime", "UPTIME", _duration_text("uptime_seconds"), _number("uptime_seconds"), right=True
    ),
    Column("restarts", "RST", _count_text("restarts"), _number("restarts"), right=True),
    Column("cpu", "CPU%", _cpu_text, _number("cpu_percent"), right=True),
    Column("memory", "MEM", _memory_text, _number("memory_uss_bytes"), right=True),
    Column(
        "heartbeat",
        "BEAT",
        _duration_text("heartbeat_age_seconds"),
        _number("heartbeat_age_seconds"),
        right=True,
    ),
    Column("in_1h", "IN/1h", _count_text("messages_in_1h"), _number("messages_in_1h"), right=True),
    Column(
        "out_1h", "OUT/1h", _count_text("messages_out_1h"), _number("messages_out_1h"), right=True
    ),
    Column("engine", "ENGINE", lambda v: str(v.get("engine", "")), _number("engine")),
    Column("last_error", "LAST ERROR", _error_text, _number("last_error")),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)
_BY_KEY = {c.key: c for c in COLUMNS}


def column(key: str) -> Column:
    return _BY_KEY[key]


@dataclass
class Dashboard:
    """Worker views by slug, the tenants' names, and the operator's filter and sort."""

    views: dict[str, View] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    filter_text: str = ""
    sort_key: str = "slug"
    sort_reverse: bool = False

    def load(self, rows: list[View]) -> None:
        """A fresh ``/v1/tenants`` answer: it replaces everything known before."""
        # An event may carry figures a list answer lacks (or the other way round): a
        # row keeps what it knew unless the fresh answer says otherwise.
        fresh = {row["slug"]: {**self.views.get(row["slug"], {}), **row} for row in rows}
        self.views = fresh

    def apply(self, event: dict[str, Any]) -> str | None:
        """Apply one ``/v1/events`` event; the slug whose row changed, if any."""
        kind = event.get("event")
        slug = event.get("slug")
        if not isinstance(slug, str):
            return None
        if kind == "worker":
            data = {k: v for k, v in event.items() if k not in ("event", "id", "at")}
            self.views[slug] = {**self.views.get(slug, {}), **data}
            return slug
        view = self.views.get(slug)
        if view is None:
            return None
        if kind == "qr":
            view["has_qr"] = event.get("qr") is not None
            view["session_state"] = "QR_PENDING"
        elif kind == "session":
            view["session_state"] = event.get("state")
            view["has_qr"] = event.get("state") == "QR_PENDING"
        elif kind == "error":
            message = event.get("message")
            if message:
                view["last_error"] = str(message)
        else:
            return None
        return slug

    def matches(self, slug: str) -> bool:
        """Whether the filter keeps this tenant: every word found in its slug, name or state."""
        words = self.filter_text.lower().split()
        if not words:
            return True
        view = self.views[slug]
        haystack = " ".join((slug, self.names.get(slug, ""), str(view.get("state", "")))).lower()
        return all(word in haystack for word in words)

    def visible(self) -> list[str]:
        """The slugs the table shows, in order."""
        sort = column(self.sort_key)
        shown = [slug for slug in self.views if self.matches(slug)]
        present = [s for s in shown if sort.value(self.views[s]) is not None]
        missing = sorted(s for s in shown if sort.value(self.views[s]) is None)
        present.sort(key=lambda s: (sort.value(self.views[s]), s), reverse=self.sort_reverse)
        return present + missing

    def cells(self, slug: str) -> tuple[str, ...]:
        view = self.views[slug]
        return tuple(c.text(view) for c in COLUMNS)

    def sort_by(self, key: str) -> None:
        """Sort by ``key``; asking for the current column again reverses the order."""
        if key == self.sort_key:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_key, self.sort_reverse = key, False

    def next_sort(self) -> None:
        """Sort by the next column to the right (wrapping round)."""
        index = COLUMN_KEYS.index(self.sort_key)
        self.sort_key = COLUMN_KEYS[(index + 1) % len(COLUMN_KEYS)]
        self.sort_reverse = False

    def counts(self) -> dict[str, int]:
        found: dict[str, int] = {}
        for view in self.views.values():
            found[view["state"]] = found.get(view["state"], 0) + 1
        return {state: found[state] for state in STATES if state in found}
