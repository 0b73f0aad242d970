"""Business hours: is the tenant open now, when does it close or open next, said in words.

Why this module exists: opening hours are written in the tenant's local wall time
("mon": ["09:00-14:00"]), while messages arrive at instants. Turning one into the other
across DST changes, ranges ending at "24:00", overnight ranges continued the next day
and holidays is subtle enough to live alone and be tested on its own.

How: each local date from yesterday to `SEARCH_DAYS` ahead contributes its ranges
(none on a holiday); each range becomes an interval of instants, and touching intervals
merge, so "20:00-24:00" followed by the next day's "00:00-02:00" is one opening that
closes at 02:00. A wall time maps to the first instant at which the tenant's clock shows
it or a later time: in a skipped hour (spring forward) that is the moment the clock
jumps, so a range starting at 02:30 on 2026-03-29 in Europe/Madrid opens at 03:00;
in a repeated hour (fall back) it is the first pass, so a range ending at 02:30 closes
the first time the clock reads 02:30.

What it must not do: read the clock (callers pass an aware ``now``), touch the database,
or choose words: every sentence comes from `HoursPhrases`, which the reply templates
provide (`wactl.replies.templates`, keys ``hours.*`` and ``days``).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

from wactl import validation
from wactl.errors import ValidationError
from wactl.replies.templates import LanguageTexts, info_values, render

#: How far ahead the next opening (or the closing of an opening) is looked for.
SEARCH_DAYS = 14

_UTC = dt.UTC
_ONE_DAY = dt.timedelta(days=1)


class HoursState(enum.StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    HOLIDAY = "holiday"  # today (local date) is one of the tenant's holidays
    NOT_SET = "not_set"  # the tenant has not entered weekly hours


@dataclass(frozen=True)
class HoursStatus:
    """Where the business stands at one instant; datetimes are in the tenant's zone.

    Compare them with other zones' times after ``.astimezone(UTC)``: in a repeated hour,
    PEP 495 makes ``==`` across zones false.

    ``closes_at`` (OPEN): when this opening ends; None when it lasts past `SEARCH_DAYS`.
    ``opens_at`` (CLOSED, HOLIDAY): the next opening; None when there is none within
    `SEARCH_DAYS` (every day closed, or a long run of holidays).
    """

    state: HoursState
    closes_at: dt.datetime | None = None
    opens_at: dt.datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.state is HoursState.OPEN


@dataclass(frozen=True)
class HoursPhrases:
    """The words `describe_now` and `describe_week` use, in one language.

    ``texts`` holds the ``hours.*`` template texts by their short name ("open_until"),
    ``days`` the seven day names Monday first, ``values`` the business placeholders
    ({business_name}, {phone}, ...) those texts may also use.
    """

    texts: Mapping[str, str]
    days: Sequence[str]
    values: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_texts(cls, texts: LanguageTexts, info: Mapping[str, str]) -> HoursPhrases:
        """Phrases from a template language (overrides applied) and the tenant's facts."""
        short = {
            key.removeprefix("hours."): text
            for key, text in texts.texts.items()
            if key.startswith("hours.")
        }
        return cls(texts=short, days=texts.days, values=info_values(texts, info))

    def say(self, key: str, **values: str) -> str:
        return render(self.texts[key], {**self.values, **values})


@dataclass(frozen=True)
class _Schedule:
    weekly: dict[str, list[str]]  # validated, all seven days
    spans: tuple[tuple[tuple[int, int], ...], ...]  # minutes since local midnight, Monday first
    holidays: frozenset[dt.date]


# --- public API -----------------------------------------------------------------------------


def hours_status(
    hours_json: Mapping[str, Any] | None, timezone: str | ZoneInfo, now: dt.datetime
) -> HoursStatus:
    """Open or closed at ``now``, and until when or from when."""
    _require_aware(now)
    schedule = _parse(hours_json)
    if schedule is None:
        return HoursStatus(HoursState.NOT_SET)
    zone = _zone(timezone)
    # Compare in UTC only: an aware time in a repeated hour never equals one in another
    # zone (PEP 495), so mixed-zone comparisons would be wrong right at a fall-back.
    now = now.astimezone(_UTC)
    today = now.astimezone(zone).date()
    horizon = now + dt.timedelta(days=SEARCH_DAYS)
    runs = list(_openings(schedule, zone, today - _ONE_DAY, today + (SEARCH_DAYS + 1) * _ONE_DAY))
    if today not in schedule.holidays:
        for start, end in runs:
            if start <= now < end:
                return HoursStatus(
                    HoursState.OPEN, closes_at=end.astimezone(zone) if end <= horizon else None
                )
    following = next((start for start, _ in runs if now < start <= horizon), None)
    return HoursStatus(
        HoursState.HOLIDAY if today in schedule.holidays else HoursState.CLOSED,
        opens_at=following.astimezone(zone) if following else None,
    )


def is_open(
    hours_json: Mapping[str, Any] | None, timezone: str | ZoneInfo, now: dt.datetime
) -> bool:
    return hours_status(hours_json, timezone, now).is_open


def describe_now(
    hours_json: Mapping[str, Any] | None,
    timezone: str | ZoneInfo,
    now: dt.datetime,
    phrases: HoursPhrases,
) -> str:
    """One sentence: "We're open now until 22:00.", "We're closed now; we open today at
    17:00.", "...we open Monday at 09:00.", a holiday, no opening soon, or hours not set."""
    status = hours_status(hours_json, timezone, now)
    if status.state is HoursState.NOT_SET:
        return phrases.say("not_set")
    today = now.astimezone(_zone(timezone)).date()
    if status.state is HoursState.OPEN:
        if status.closes_at is None:
            return phrases.say("open_nonstop")
        day, clock = _closing_clock(status.closes_at)
        # In UTC: a difference of two times in one zone ignores a DST change between them.
        if status.closes_at.astimezone(_UTC) - now.astimezone(_UTC) < _ONE_DAY:
            return phrases.say("open_until", time=clock)
        return phrases.say("open_until_day", day=_day_name(day, today, phrases), time=clock)
    holiday = status.state is HoursState.HOLIDAY
    if status.opens_at is None:
        return phrases.say("holiday_no_opening" if holiday else "closed_no_opening")
    when = _when(status.opens_at, today, phrases)
    return phrases.say("holiday_opens" if holiday else "closed_opens", when=when)


def describe_week(
    hours_json: Mapping[str, Any] | None,
    timezone: str | ZoneInfo,
    now: dt.datetime,
    phrases: HoursPhrases,
) -> str:
    """A title, one line per day Monday to Sunday, and the holidays of the next
    `SEARCH_DAYS` days (local dates from today), if any."""
    _require_aware(now)
    schedule = _parse(hours_json)
    if schedule is None:
        return phrases.say("not_set")
    lines = [phrases.say("week_title")]
    for name, day in zip(phrases.days, validation.DAYS, strict=True):
        ranges = schedule.weekly[day]
        shown = ", ".join(r.replace("-", "–") for r in ranges) or phrases.say("week_closed")
        lines.append(phrases.say("week_line", day=name, ranges=shown))
    today = now.astimezone(_zone(timezone)).date()
    coming = sorted(d for d in schedule.holidays if today <= d < today + SEARCH_DAYS * _ONE_DAY)
    if coming:
        dates = ", ".join(
            phrases.say("day_with_date", day=phrases.days[d.weekday()], date=d.isoformat())
            for d in coming
        )
        lines.append(phrases.say("week_holidays", dates=dates))
    return "\n".join(lines)


def hours_are_set(hours_json: Mapping[str, Any] | None) -> bool:
    """Check ``hours_json`` (raises `ValidationError`); True when weekly hours are set."""
    return _parse(hours_json) is not None


def zone_for(timezone: str | ZoneInfo) -> ZoneInfo:
    """The zone, or `ValidationError` naming the bad time zone."""
    return _zone(timezone)


# --- internals --------------------------------------------------------------------------------


def _require_aware(now: dt.datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be an aware datetime (with a time zone)")


def _zone(timezone: str | ZoneInfo) -> ZoneInfo:
    if isinstance(timezone, ZoneInfo):
        return timezone
    return ZoneInfo(validation.validate_timezone(timezone))


def _parse(hours_json: Mapping[str, Any] | None) -> _Schedule | None:
    """The schedule, or None when weekly hours are not set. Re-validates: the row may
    predate a validation rule, and a bad row must fail loudly, not answer wrongly."""
    if hours_json is None:
        return None
    if not isinstance(hours_json, Mapping):
        raise ValidationError("hours", 'must be a table like {"weekly": {...}, "holidays": [...]}')
    weekly = validation.validate_weekly_hours(hours_json.get("weekly") or {})
    if not weekly:
        return None
    holidays = validation.validate_holidays(hours_json.get("holidays") or [])
    spans = tuple(tuple(_span(text) for text in weekly[day]) for day in validation.DAYS)
    return _Schedule(
        weekly=weekly,
        spans=spans,
        holidays=frozenset(dt.date.fromisoformat(text) for text in holidays),
    )


def _span(text: str) -> tuple[int, int]:
    start, end = text.split("-")
    return _minutes(start), _minutes(end)


def _minutes(clock: str) -> int:
    hours, minutes = clock.split(":")
    return int(hours) * 60 + int(minutes)


def _openings(
    schedule: _Schedule, zone: ZoneInfo, first: dt.date, last: dt.date
) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Merged openings (UTC instants) of the local dates ``first`` to ``last``, in order."""
    current: tuple[dt.datetime, dt.datetime] | None = None
    day = first
    while day <= last:
        if day not in schedule.holidays:
            for start_minute, end_minute in schedule.spans[day.weekday()]:
                start = _instant(day, start_minute, zone)
                end = _instant(day, end_minute, zone)
                if end <= start:  # the whole range lies in a skipped hour
                    continue
                if current is not None and start <= current[1]:
                    current = (current[0], max(current[1], end))
                    continue
                if current is not None:
                    yield current
                current = (start, end)
        day += _ONE_DAY
    if current is not None:
        yield current


def _instant(day: dt.date, minute: int, zone: ZoneInfo) -> dt.datetime:
    """The first instant at which the local clock shows ``day`` + ``minute`` or later."""
    wall = dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=minute)  # 24:00 -> +1 day
    # fold=0 is the first pass of a repeated hour; for a skipped time it uses the offset
    # from before the jump, landing after the gap, which the round trip below detects.
    guess = wall.replace(tzinfo=zone).astimezone(_UTC)
    if _wall_at(guess, zone) == wall:
        return guess
    # In a gap: wall time rises monotonically between these two instants; find, to the
    # second, the first one whose clock has reached ``wall`` (the moment of the jump).
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(guess.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if _wall_at(dt.datetime.fromtimestamp(middle, _UTC), zone) >= wall:
            high = middle
        else:
            low = middle
    return dt.datetime.fromtimestamp(high, _UTC)


def _wall_at(instant: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _closing_clock(local: dt.datetime) -> tuple[dt.date, str]:
    """A closing time as people say it: midnight closes the day before at "24:00"."""
    if local.hour == 0 and local.minute == 0:
        return local.date() - _ONE_DAY, "24:00"
    return local.date(), local.strftime("%H:%M")


def _day_name(day: dt.date, today: dt.date, phrases: HoursPhrases) -> str:
    """The weekday's name; a week or more away the date is added, so it is unambiguous."""
    name = phrases.days[day.weekday()]
    if (day - today).days > 6:
        return phrases.say("day_with_date", day=name, date=day.isoformat())
    return name


def _when(local: dt.datetime, today: dt.date, phrases: HoursPhrases) -> str:
    clock = local.strftime("%H:%M")
    ahead = (local.date() - today).days
    if ahead == 0:
        return phrases.say("when_today", time=clock)
    if ahead == 1:
        return phrases.say("when_tomorrow", time=clock)
    return phrases.say("when_day", day=_day_name(local.date(), today, phrases), time=clock)
