"""Messages in and out over the last hour, counted by the worker as it logs them.

The daemon shows them in `wactl ps`, the TUI and /v1/metrics; the worker reports them
with each heartbeat, so the daemon never counts rows in the database while workers run.
Sixty one-minute buckets: the figure is exact to the minute, costs nothing per message
but two integer additions, and is seeded from the log when a worker starts. The totals
are the tenant's log, not this process's life: seeded from the log at start
(`seed_totals`), so they survive worker and daemon restarts.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Callable, Iterable

from wactl.enums import Direction

#: The window, in minutes.
WINDOW_MINUTES = 60


def _minute(at: dt.datetime) -> int:
    return int(at.timestamp() // 60)


class HourlyCounts:
    """Inbound and outbound messages in the last `WINDOW_MINUTES` minutes, and in all
    (what `seed_totals` found in the log plus what was counted since; Prometheus
    counters)."""

    def __init__(self, now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)) -> None:
        self._now = now
        #: (minute, inbound, outbound), oldest first, at most one entry per minute.
        self._buckets: deque[list[int]] = deque()
        self.total_in = 0
        self.total_out = 0
        #: Called after each new message is counted (the worker tells the daemon).
        self.on_change: Callable[[], None] | None = None

    def _bucket(self, minute: int) -> list[int] | None:
        if self._buckets and self._buckets[-1][0] == minute:
            return self._buckets[-1]
        if self._buckets and minute < self._buckets[-1][0]:
            # An older timestamp (seeding out of order): find its bucket or insert it.
            for index, bucket in enumerate(self._buckets):
                if bucket[0] == minute:
                    return bucket
                if bucket[0] > minute:
                    self._buckets.insert(index, [minute, 0, 0])
                    return self._buckets[index]
        self._buckets.append([minute, 0, 0])
        self._trim(minute)
        return self._buckets[-1]

    def _trim(self, minute: int) -> None:
        while self._buckets and self._buckets[0][0] <= minute - WINDOW_MINUTES:
            self._buckets.popleft()

    def add(self, direction: str, at: dt.datetime | None = None, *, count: bool = True) -> None:
        """Count one message; ``count=False`` for messages seeded from the log, which are
        in the hourly window but not new since this process started."""
        now = _minute(self._now())
        minute = now if at is None else _minute(at)
        if minute <= now - WINDOW_MINUTES:
            return
        bucket = self._bucket(minute)
        assert bucket is not None
        inbound = direction == Direction.IN
        bucket[1 if inbound else 2] += 1
        if count:
            if inbound:
                self.total_in += 1
            else:
                self.total_out += 1
            if self.on_change is not None:
                self.on_change()

    def seed(self, rows: Iterable[tuple[str, dt.datetime]]) -> None:
        """Add what the log holds for the last hour (at start-up)."""
        for direction, at in rows:
            self.add(direction, at, count=False)

    def seed_totals(self, inbound: int, outbound: int) -> None:
        """Add what the log held before this process counted anything (at start-up)."""
        self.total_in += inbound
        self.total_out += outbound

    def last_hour(self) -> tuple[int, int]:
        """(inbound, outbound) in the last hour."""
        self._trim(_minute(self._now()))
        return sum(b[1] for b in self._buckets), sum(b[2] for b in self._buckets)
