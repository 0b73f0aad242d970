"""The worker's hourly message counters (what `wactl ps`, the TUI and /v1/metrics show),
on a fake clock. The end-to-end path (heartbeat -> daemon -> API) is in test_api.py."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from wactl.bot.counters import HourlyCounts

START = dt.datetime(2026, 3, 29, 0, 59, 30, tzinfo=dt.UTC)


@dataclass
class Clock:
    now: dt.datetime = field(default=START)

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += dt.timedelta(**delta)


def test_counts_cover_the_last_hour_and_totals_only_grow() -> None:
    clock = Clock()
    counts = HourlyCounts(clock)
    counts.add("IN")
    counts.add("OUT")
    counts.add("IN")
    assert counts.last_hour() == (2, 1)
    clock.advance(minutes=30)
    counts.add("OUT")
    assert counts.last_hour() == (2, 2)
    clock.advance(minutes=30)  # the first three are an hour old now
    assert counts.last_hour() == (0, 1)
    clock.advance(hours=5)
    assert counts.last_hour() == (0, 0)
    assert (counts.total_in, counts.total_out) == (2, 2)


def test_seeding_from_the_log_fills_the_hour_but_not_the_totals() -> None:
    clock = Clock()
    counts = HourlyCounts(clock)
    counts.add("IN")  # arrived while the log was being read
    seeded = [
        ("OUT", START - dt.timedelta(minutes=10)),
        ("IN", START - dt.timedelta(minutes=50)),  # out of order
        ("IN", START - dt.timedelta(minutes=10)),
        ("IN", START - dt.timedelta(minutes=61)),  # older than the window: not counted
    ]
    counts.seed(seeded)
    assert counts.last_hour() == (3, 1)
    assert (counts.total_in, counts.total_out) == (1, 0)
    clock.advance(minutes=11)  # the one from 50 minutes ago drops out
    assert counts.last_hour() == (2, 1)


def test_totals_start_from_the_log_and_grow_from_there() -> None:
    """A worker seeds its totals with what the log held (`logged_totals`), so they are the
    tenant's and not this process's: a restarted worker or daemon reads the same."""
    clock = Clock()
    counts = HourlyCounts(clock)
    counts.add("IN")  # counted before the totals were seeded: kept
    counts.seed_totals(40, 38)
    counts.add("OUT")
    assert (counts.total_in, counts.total_out) == (41, 39)
    assert counts.last_hour() == (1, 1)
