"""Business hours in the tenant's wall time: open now, next opening, DST, midnight, holidays."""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from wactl.enums import Language, TemplateType
from wactl.errors import ValidationError
from wactl.replies.hours import (
    SEARCH_DAYS,
    HoursPhrases,
    HoursState,
    describe_now,
    describe_week,
    hours_status,
    is_open,
)
from wactl.replies.templates import load_template
from wactl.validation import DAYS

MADRID = ZoneInfo("Europe/Madrid")
NEW_YORK = ZoneInfo("America/New_York")
SAO_PAULO = ZoneInfo("America/Sao_Paulo")
UTC = dt.UTC


def phrases(language: Language = Language.EN) -> HoursPhrases:
    texts = load_template(TemplateType.GENERIC).languages[language]
    return HoursPhrases.from_texts(texts, {})


EN = phrases()


def hours(holidays: list[str] | None = None, **days: list[str]) -> dict[str, Any]:
    """An hours_json document: all seven days (closed unless given)."""
    return {"weekly": {day: days.get(day, []) for day in DAYS}, "holidays": holidays or []}


def at(
    zone: ZoneInfo,
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    *,
    fold: int = 0,
) -> dt.datetime:
    """A local wall time; ``fold=1`` picks the second pass of a repeated hour."""
    return dt.datetime(year, month, day, hour, minute, tzinfo=zone, fold=fold)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def now_text(doc: dict[str, Any] | None, zone: ZoneInfo, now: dt.datetime) -> str:
    return describe_now(doc, zone, now, EN)


SPLIT_SHIFT = hours(
    mon=["09:00-14:00", "17:00-22:00"],
    tue=["09:00-14:00", "17:00-22:00"],
    thu=["09:00-14:00"],
)

# --- ordinary days (2026-03-23 is a Monday) ---------------------------------------------


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ((2026, 3, 23, 8, 0), "We're closed now; we open today at 09:00."),
        ((2026, 3, 23, 9, 0), "We're open now until 14:00."),
        ((2026, 3, 23, 13, 59), "We're open now until 14:00."),
        ((2026, 3, 23, 14, 0), "We're closed now; we open today at 17:00."),
        ((2026, 3, 23, 21, 30), "We're open now until 22:00."),
        ((2026, 3, 23, 22, 0), "We're closed now; we open tomorrow at 09:00."),
        ((2026, 3, 24, 23, 0), "We're closed now; we open Thursday at 09:00."),
        ((2026, 3, 26, 15, 0), "We're closed now; we open Monday at 09:00."),
        ((2026, 3, 28, 12, 0), "We're closed now; we open Monday at 09:00."),
    ],
)
def test_open_and_next_opening(local: tuple[int, ...], expected: str) -> None:
    assert now_text(SPLIT_SHIFT, MADRID, at(MADRID, *local)) == expected


def test_now_in_any_zone_is_read_in_the_tenant_zone() -> None:
    # 08:30 UTC is 09:30 in Madrid (CET): open; the tenant's zone decides, not now's.
    assert is_open(SPLIT_SHIFT, "Europe/Madrid", utc(2026, 3, 23, 8, 30))
    assert not is_open(SPLIT_SHIFT, "America/New_York", utc(2026, 3, 23, 8, 30))


def test_status_carries_local_times() -> None:
    status = hours_status(SPLIT_SHIFT, MADRID, utc(2026, 3, 23, 8, 30))
    assert status.state is HoursState.OPEN and status.is_open
    assert status.closes_at == at(MADRID, 2026, 3, 23, 14, 0)
    assert status.closes_at is not None and status.closes_at.tzinfo is MADRID
    closed = hours_status(SPLIT_SHIFT, MADRID, at(MADRID, 2026, 3, 23, 15, 0))
    assert closed.state is HoursState.CLOSED
    assert closed.opens_at == at(MADRID, 2026, 3, 23, 17, 0)


def test_spanish_and_portuguese_sentences() -> None:
    now = at(MADRID, 2026, 3, 24, 23, 0)
    assert describe_now(SPLIT_SHIFT, MADRID, now, phrases(Language.ES)) == (
        "Ahora estamos cerrados; abrimos el jueves a las 09:00."
    )
    assert describe_now(SPLIT_SHIFT, MADRID, now, phrases(Language.PT)) == (
        "Estamos fechados agora; abrimos quinta-feira às 09:00."
    )
    open_now = at(MADRID, 2026, 3, 23, 10, 0)
    assert describe_now(SPLIT_SHIFT, MADRID, open_now, phrases(Language.PT)) == (
        "Estamos abertos agora até às 14:00."
    )


# --- not set, all closed, holidays -------------------------------------------------------


@pytest.mark.parametrize(
    "doc", [None, {}, {"weekly": {}, "holidays": []}, {"weekly": {}, "holidays": ["2026-12-25"]}]
)
def test_hours_not_set(doc: dict[str, Any] | None) -> None:
    now = at(MADRID, 2026, 3, 23, 10, 0)
    assert hours_status(doc, MADRID, now).state is HoursState.NOT_SET
    assert not is_open(doc, MADRID, now)
    expected = "We haven't published our opening hours yet; ask us here and we'll tell you."
    assert now_text(doc, MADRID, now) == expected
    assert describe_week(doc, MADRID, now, EN) == expected


def test_every_day_closed_has_no_next_opening() -> None:
    status = hours_status(hours(), MADRID, at(MADRID, 2026, 3, 23, 10, 0))
    assert status == type(status)(HoursState.CLOSED, closes_at=None, opens_at=None)
    assert now_text(hours(), MADRID, at(MADRID, 2026, 3, 23, 10, 0)) == (
        "We're closed now, and we have no opening hours in the next two weeks."
    )


def test_holiday_today_is_closed_all_day_and_next_opening_skips_holidays() -> None:
    # 2026-12-24 (Thu) to 2026-12-26 (Sat): open every day 09:00-20:00; 25th and 26th off.
    doc = hours(["2026-12-25", "2026-12-26"], **{day: ["09:00-20:00"] for day in DAYS})
    on_holiday = at(MADRID, 2026, 12, 25, 12, 0)  # would be open on an ordinary Friday
    status = hours_status(doc, MADRID, on_holiday)
    assert status.state is HoursState.HOLIDAY
    assert status.opens_at == at(MADRID, 2026, 12, 27, 9, 0)
    assert now_text(doc, MADRID, on_holiday) == (
        "We're closed today for the holiday; we open Sunday at 09:00."
    )
    # The evening before: closed, and "tomorrow" is skipped because it is a holiday.
    assert now_text(doc, MADRID, at(MADRID, 2026, 12, 24, 21, 0)) == (
        "We're closed now; we open Sunday at 09:00."
    )


def test_holiday_is_a_local_date() -> None:
    doc = hours(["2026-12-25"], **{day: ["00:00-24:00"] for day in DAYS})
    # 23:30 UTC on the 24th is already the 25th in Madrid: closed for the holiday.
    assert hours_status(doc, MADRID, utc(2026, 12, 24, 23, 30)).state is HoursState.HOLIDAY
    # ... but still the 24th in New York: open, until the holiday starts at midnight.
    status = hours_status(doc, NEW_YORK, utc(2026, 12, 24, 23, 30))
    assert status.state is HoursState.OPEN
    assert status.closes_at == at(NEW_YORK, 2026, 12, 25, 0, 0)
    assert now_text(doc, NEW_YORK, utc(2026, 12, 24, 23, 30)) == "We're open now until 24:00."


def test_holiday_with_no_opening_in_the_search_window() -> None:
    start = dt.date(2026, 8, 1)
    closed = [(start + dt.timedelta(days=n)).isoformat() for n in range(SEARCH_DAYS + 1)]
    doc = hours(closed, mon=["09:00-17:00"])
    assert now_text(doc, MADRID, at(MADRID, 2026, 8, 1, 10, 0)) == (
        "We're closed today for the holiday, and we have no opening hours in the next two weeks."
    )


def test_next_opening_more_than_a_week_away_names_the_date() -> None:
    doc = hours(["2026-03-30"], mon=["09:00-14:00"])
    assert now_text(doc, MADRID, at(MADRID, 2026, 3, 23, 15, 0)) == (
        "We're closed now; we open Monday 2026-04-06 at 09:00."
    )


def test_opening_beyond_the_search_window_is_not_found() -> None:
    doc = hours(["2026-03-30", "2026-04-06"], mon=["09:00-14:00"])
    status = hours_status(doc, MADRID, at(MADRID, 2026, 3, 23, 15, 0))
    assert status.state is HoursState.CLOSED and status.opens_at is None


# --- midnight -----------------------------------------------------------------------------


LATE_BAR = hours(fri=["20:00-24:00"], sat=["00:00-02:00", "18:00-24:00"])


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        # 24:00 followed by the next day's 00:00-02:00 is one opening until 02:00.
        ((2026, 3, 27, 20, 0), "We're open now until 02:00."),
        ((2026, 3, 27, 23, 59), "We're open now until 02:00."),
        ((2026, 3, 28, 0, 0), "We're open now until 02:00."),
        ((2026, 3, 28, 1, 30), "We're open now until 02:00."),
        ((2026, 3, 28, 2, 0), "We're closed now; we open today at 18:00."),
        # Saturday ends at 24:00 and Sunday has no 00:00 range: "until 24:00".
        ((2026, 3, 28, 23, 0), "We're open now until 24:00."),
        ((2026, 3, 29, 0, 0), "We're closed now; we open Friday at 20:00."),
    ],
)
def test_midnight(local: tuple[int, ...], expected: str) -> None:
    assert now_text(LATE_BAR, SAO_PAULO, at(SAO_PAULO, *local)) == expected


def test_midnight_continuation_stops_at_a_holiday() -> None:
    doc = {**LATE_BAR, "holidays": ["2026-03-28"]}
    assert now_text(doc, SAO_PAULO, at(SAO_PAULO, 2026, 3, 27, 23, 0)) == (
        "We're open now until 24:00."
    )


def test_open_across_several_days_names_the_closing_day() -> None:
    doc = hours(mon=["18:00-24:00"], tue=["00:00-24:00"], wed=["00:00-10:00"])
    assert now_text(doc, MADRID, at(MADRID, 2026, 3, 23, 19, 0)) == (
        "We're open now until Wednesday at 10:00."
    )
    # Closing at midnight more than a day ahead reads as "<the day before> at 24:00".
    doc = hours(mon=["18:00-24:00"], tue=["00:00-24:00"], wed=["00:00-24:00"])
    assert now_text(doc, MADRID, at(MADRID, 2026, 3, 23, 19, 0)) == (
        "We're open now until Wednesday at 24:00."
    )


def test_always_open() -> None:
    doc = hours(**{day: ["00:00-24:00"] for day in DAYS})
    status = hours_status(doc, MADRID, at(MADRID, 2026, 3, 23, 3, 0))
    assert status.state is HoursState.OPEN and status.closes_at is None
    assert now_text(doc, MADRID, at(MADRID, 2026, 3, 23, 3, 0)) == (
        "We're open now, 24 hours a day."
    )
    # A holiday ten days ahead ends the opening; that far away the date is named.
    doc["holidays"] = ["2026-04-02"]
    assert now_text(doc, MADRID, at(MADRID, 2026, 3, 23, 3, 0)) == (
        "We're open now until Wednesday 2026-04-01 at 24:00."
    )


# --- DST: Europe/Madrid 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00 -------------


def test_spring_forward_range_spanning_the_skipped_hour() -> None:
    doc = hours(sun=["01:00-04:00"])
    # 00:00 UTC = 01:00 CET: open until 04:00 CEST (02:00 UTC): two real hours, not three.
    status = hours_status(doc, MADRID, utc(2026, 3, 29, 0, 0))
    assert status.closes_at == utc(2026, 3, 29, 2, 0)
    assert now_text(doc, MADRID, utc(2026, 3, 29, 0, 0)) == "We're open now until 04:00."
    assert is_open(doc, MADRID, utc(2026, 3, 29, 0, 59, 59))  # 01:59:59 CET
    assert is_open(doc, MADRID, utc(2026, 3, 29, 1, 0))  # 03:00 CEST
    assert not is_open(doc, MADRID, utc(2026, 3, 29, 2, 0))  # 04:00 CEST


def test_spring_forward_range_starting_in_the_skipped_hour_opens_at_the_jump() -> None:
    doc = hours(sun=["02:30-05:00"])
    before = utc(2026, 3, 29, 0, 30)  # 01:30 CET
    assert hours_status(doc, MADRID, before).opens_at == at(MADRID, 2026, 3, 29, 3, 0)
    assert now_text(doc, MADRID, before) == "We're closed now; we open today at 03:00."
    assert now_text(doc, MADRID, utc(2026, 3, 29, 1, 0)) == "We're open now until 05:00."


def test_spring_forward_range_inside_the_skipped_hour_does_not_open() -> None:
    doc = hours(sun=["02:10-02:50"])
    status = hours_status(doc, MADRID, utc(2026, 3, 28, 23, 0))  # Sunday 00:00 CET
    assert status.opens_at == at(MADRID, 2026, 4, 5, 2, 10)  # next Sunday, a normal day


def test_fall_back_range_spanning_the_repeated_hour() -> None:
    doc = hours(sun=["01:00-04:00"])
    # 01:00 CEST (23:00 UTC) to 04:00 CET (03:00 UTC): four real hours.
    status = hours_status(doc, MADRID, utc(2026, 10, 24, 23, 0))
    assert status.closes_at == utc(2026, 10, 25, 3, 0)
    for minute in range(0, 240, 15):
        assert is_open(doc, MADRID, utc(2026, 10, 24, 23, 0) + dt.timedelta(minutes=minute))
    assert now_text(doc, MADRID, utc(2026, 10, 25, 1, 30)) == "We're open now until 04:00."


def test_fall_back_range_ending_in_the_repeated_hour_closes_on_the_first_pass() -> None:
    doc = hours(sun=["00:00-02:30"])
    assert now_text(doc, MADRID, utc(2026, 10, 25, 0, 15)) == "We're open now until 02:30."
    assert not is_open(doc, MADRID, utc(2026, 10, 25, 0, 45))  # 02:45 CEST, first pass
    assert not is_open(doc, MADRID, utc(2026, 10, 25, 1, 15))  # 02:15 CET, second pass
    opening = hours(sun=["02:30-05:00"])
    first_pass = utc(2026, 10, 25, 0, 30)  # 02:30 CEST
    opens_at = hours_status(opening, MADRID, first_pass - dt.timedelta(seconds=1)).opens_at
    assert opens_at is not None and opens_at.astimezone(UTC) == first_pass
    assert now_text(opening, MADRID, first_pass) == "We're open now until 05:00."


# --- DST: America/New_York 2026-03-08 02:00 -> 03:00, 2026-11-01 02:00 -> 01:00 ----------


def test_new_york_late_night_across_spring_forward() -> None:
    doc = hours(sat=["20:00-24:00"], sun=["00:00-03:00"])
    saturday_night = at(NEW_YORK, 2026, 3, 7, 22, 0)  # 03:00 UTC (EST)
    status = hours_status(doc, NEW_YORK, saturday_night)
    assert status.closes_at == utc(2026, 3, 8, 7, 0)  # 03:00 EDT: 4 h later, not 5
    assert now_text(doc, NEW_YORK, saturday_night) == "We're open now until 03:00."


def test_new_york_late_night_across_fall_back() -> None:
    doc = hours(sat=["20:00-24:00"], sun=["00:00-03:00"])
    saturday_night = at(NEW_YORK, 2026, 10, 31, 22, 0)  # 02:00 UTC (EDT)
    status = hours_status(doc, NEW_YORK, saturday_night)
    assert status.closes_at == utc(2026, 11, 1, 8, 0)  # 03:00 EST: 6 h later, not 5
    # 01:30 happens twice; open both times.
    assert is_open(doc, NEW_YORK, at(NEW_YORK, 2026, 11, 1, 1, 30, fold=0))
    assert is_open(doc, NEW_YORK, at(NEW_YORK, 2026, 11, 1, 1, 30, fold=1))


# --- America/Sao_Paulo: no DST since 2019 ------------------------------------------------


def test_sao_paulo_is_utc_minus_3_all_year() -> None:
    doc = hours(mon=["09:00-18:00"])
    assert now_text(doc, SAO_PAULO, utc(2026, 1, 12, 12, 0)) == "We're open now until 18:00."
    assert now_text(doc, SAO_PAULO, utc(2026, 7, 13, 11, 59)) == (
        "We're closed now; we open today at 09:00."
    )
    assert is_open(doc, SAO_PAULO, utc(2026, 11, 16, 20, 59))  # 17:59, November
    assert not is_open(doc, SAO_PAULO, utc(2026, 11, 16, 21, 0))


def test_sao_paulo_2018_gap_at_midnight_joins_the_two_days() -> None:
    # On 2018-11-04 São Paulo's clocks jumped from 00:00 to 01:00: "24:00" on Saturday
    # and "00:00" on Sunday are the same instant, so the night is one opening.
    doc = hours(sat=["20:00-24:00"], sun=["00:00-02:00"])
    status = hours_status(doc, SAO_PAULO, at(SAO_PAULO, 2018, 11, 3, 23, 0))
    assert status.closes_at == at(SAO_PAULO, 2018, 11, 4, 2, 0)
    assert status.closes_at == utc(2018, 11, 4, 4, 0)


# --- the week table -----------------------------------------------------------------------


def test_week_table_in_english_with_coming_holidays() -> None:
    doc = {**SPLIT_SHIFT, "holidays": ["2026-03-20", "2026-03-26", "2026-04-30"]}
    assert describe_week(doc, MADRID, at(MADRID, 2026, 3, 23, 10, 0), EN) == (
        "Our opening hours:\n"
        "Monday: 09:00–14:00, 17:00–22:00\n"
        "Tuesday: 09:00–14:00, 17:00–22:00\n"
        "Wednesday: closed\n"
        "Thursday: 09:00–14:00\n"
        "Friday: closed\n"
        "Saturday: closed\n"
        "Sunday: closed\n"
        "Closed for holidays: Thursday 2026-03-26"
    )


def test_week_table_in_spanish_and_portuguese() -> None:
    now = at(MADRID, 2026, 3, 23, 10, 0)
    spanish = describe_week(LATE_BAR, MADRID, now, phrases(Language.ES)).splitlines()
    assert spanish[0] == "Nuestro horario:"
    assert spanish[5] == "viernes: 20:00–24:00"
    assert spanish[6] == "sábado: 00:00–02:00, 18:00–24:00"
    portuguese = describe_week(LATE_BAR, MADRID, now, phrases(Language.PT)).splitlines()
    assert portuguese[1] == "segunda-feira: fechado"
    assert len(portuguese) == 8


# --- bad input ----------------------------------------------------------------------------


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        hours_status(SPLIT_SHIFT, MADRID, dt.datetime(2026, 3, 23, 10, 0))


def test_unknown_time_zone_is_a_validation_error() -> None:
    with pytest.raises(ValidationError) as caught:
        is_open(SPLIT_SHIFT, "Europe/Madird", utc(2026, 3, 23, 10, 0))
    assert caught.value.one_line().startswith("timezone: 'Europe/Madird' is not a known time zone")


def test_corrupt_hours_are_a_validation_error() -> None:
    with pytest.raises(ValidationError) as caught:
        is_open({"weekly": {"mon": ["9-5"]}}, MADRID, utc(2026, 3, 23, 10, 0))
    assert caught.value.one_line().startswith("hours.mon: '9-5' is not a time range")
