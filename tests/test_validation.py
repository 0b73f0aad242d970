"""Validation of the values people type: slugs, names, phones, zones, choices, hours."""

from __future__ import annotations

import datetime as dt
import tomllib
from typing import Any

import pytest

from wactl import validation
from wactl.enums import EngineName, Language, TemplateType
from wactl.errors import ExitCode, UsageError, ValidationError
from wactl.validation import (
    DAYS,
    hours_document,
    normalize_phone,
    parse_choice,
    validate_holidays,
    validate_name,
    validate_slug,
    validate_timezone,
    validate_weekly_hours,
)

TIME_RANGE_HINT = 'write "HH:MM-HH:MM" in 24-hour time, e.g. "09:00-17:30"'
CLOSED_WEEK: dict[str, list[str]] = {day: [] for day in DAYS}


def week(**days: list[str]) -> dict[str, list[str]]:
    """All seven days, closed unless given."""
    return {day: days.get(day, []) for day in DAYS}


# --- slugs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "slug",
    ["a", "7", "casa-pepe", "a1-b2-c3", "clinica-dental-2", "x" * 40, "a" + "-b" * 19 + "c"],
)
def test_valid_slugs(slug: str) -> None:
    assert validate_slug(slug) == slug


@pytest.mark.parametrize(
    "slug",
    [
        "",
        "x" * 41,
        "-casa",
        "casa-",
        "-",
        "casa--pepe",
        "Casa-Pepe",
        "CASA",
        "café",
        "ａｂｃ",
        "casa_pepe",
        "casa pepe",
        "casa.pepe",
        " casa",
        "casa\n",
        "casa\npepe",
    ],
)
def test_invalid_slugs(slug: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_slug(slug)
    assert caught.value.field == "slug"
    assert caught.value.exit_code == ExitCode.USAGE


def test_slug_error_message() -> None:
    with pytest.raises(ValidationError) as caught:
        validate_slug("Casa")
    assert caught.value.one_line() == (
        "slug: 'Casa' is not a valid slug; use 1-40 lowercase letters, digits and single "
        "hyphens, starting and ending with a letter or digit (e.g. 'casa-pepe')"
    )
    assert isinstance(caught.value, UsageError)


# --- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [("Casa Pepe", "Casa Pepe"), ("  Casa \t\n Pepe  ", "Casa Pepe"), ("Ñandú ☕", "Ñandú ☕")],
)
def test_name_is_collapsed(raw: str, cleaned: str) -> None:
    assert validate_name("name", raw) == cleaned


def test_name_limits() -> None:
    assert validate_name("name", "x" * 200) == "x" * 200
    with pytest.raises(ValidationError) as too_long:
        validate_name("name", "x" * 201)
    assert too_long.value.one_line() == "name: is 201 characters long; the limit is 200"
    with pytest.raises(ValidationError) as empty:
        validate_name("business_name", " \t ")
    assert empty.value.one_line() == "business_name: must not be empty"


# --- phone numbers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+34 600 123 456", "+34600123456"),
        ("+34600123456", "+34600123456"),
        ("  +34 600-123-456 \n", "+34600123456"),
        ("+1 (415) 555-2671", "+14155552671"),
        ("+1 415.555.2671", "+14155552671"),
        ("+14155552671", "+14155552671"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+55 11 91234-5678", "+5511912345678"),
        ("+351 912 345 678", "+351912345678"),
    ],
)
def test_phone_is_normalised_to_e164(raw: str, e164: str) -> None:
    assert normalize_phone(raw) == e164


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            "34600123456",
            "phone: '34600123456' has no country code; write it in international form "
            "starting with +, e.g. +34600123456",
        ),
        (
            "600 123 456",
            "phone: '600 123 456' has no country code; write it in international form "
            "starting with +, e.g. +34600123456",
        ),
        (
            "",
            "phone: '' has no country code; write it in international form "
            "starting with +, e.g. +34600123456",
        ),
        ("+999 1234567", "phone: '+999 1234567' is not a phone number; e.g. +34600123456"),
        ("+", "phone: '+' is not a phone number; e.g. +34600123456"),
        ("+34 abc", "phone: '+34 abc' is not a phone number; e.g. +34600123456"),
        # Letters are not keypad digits here, and an extension is not part of the number.
        (
            "+34 600 abc 456",
            "phone: '+34 600 abc 456' is not a phone number; e.g. +34600123456",
        ),
        ("+1 800 FLOWERS", "phone: '+1 800 FLOWERS' is not a phone number; e.g. +34600123456"),
        (
            "+14155552671 ext. 12",
            "phone: '+14155552671 ext. 12' is not a phone number; e.g. +34600123456",
        ),
        (
            "+34 600 12",
            "phone: '+34 600 12' is not a valid phone number; "
            "check the country code and the number of digits",
        ),
        # 555-01xx is reserved for fiction: phonenumbers does not accept it.
        (
            "+1 555 010 1234",
            "phone: '+1 555 010 1234' is not a valid phone number; "
            "check the country code and the number of digits",
        ),
        (
            "+34 600 123 456 789",
            "phone: '+34 600 123 456 789' is not a valid phone number; "
            "check the country code and the number of digits",
        ),
    ],
)
def test_invalid_phone_numbers(raw: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_phone(raw)
    assert caught.value.one_line() == message
    assert caught.value.exit_code == ExitCode.USAGE


def test_phone_error_names_the_given_field() -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_phone("600123456", field="owner_phone")
    assert caught.value.field == "owner_phone"
    assert caught.value.message == "owner_phone: '600123456' has no country code"


# --- time zones ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "UTC",
        "Europe/Madrid",
        "America/Sao_Paulo",
        "America/Argentina/Buenos_Aires",
        "Etc/GMT+5",
        "US/Eastern",
    ],
)
def test_valid_timezones(name: str) -> None:
    assert validate_timezone(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "Mars/X",
        "",
        "Europe",
        "Europe/",
        "europe/madrid ",
        "../../etc/passwd",
        "/etc/localtime",
        # The zone database answers to these, but none is a zone a business is in.
        "localtime",
        "Factory",
        "posixrules",
        "posix/Europe/Madrid",
        "right/UTC",
        "zone.tab",
    ],
)
def test_invalid_timezones(name: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_timezone(name, "defaults.timezone")
    assert caught.value.one_line() == (
        f"defaults.timezone: '{name}' is not a known time zone; "
        'use an IANA name such as "Europe/Madrid", "America/Sao_Paulo" or "UTC"'
    )


# --- choices ------------------------------------------------------------------------------


def test_parse_choice_returns_the_member() -> None:
    assert parse_choice(Language, "es", "language") is Language.ES
    assert parse_choice(TemplateType, "clinic", "template") is TemplateType.CLINIC
    assert parse_choice(EngineName, "whatsapp-web", "engine") is EngineName.WHATSAPP_WEB


@pytest.mark.parametrize(
    ("enum_class", "value", "message"),
    [
        (Language, "ess", "language: 'ess' is not one of en, es, pt; did you mean 'es'?"),
        (
            TemplateType,
            "clinc",
            "language: 'clinc' is not one of restaurant, clinic, salon, retail, generic; "
            "did you mean 'clinic'?",
        ),
        (
            EngineName,
            "whatsapp_web",
            "language: 'whatsapp_web' is not one of sandbox, whatsapp-web; "
            "did you mean 'whatsapp-web'?",
        ),
        (Language, "zz", "language: 'zz' is not one of en, es, pt"),
        (Language, "EN", "language: 'EN' is not one of en, es, pt"),
    ],
)
def test_parse_choice_rejects_with_suggestion(
    enum_class: type[Any], value: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_choice(enum_class, value, "language")
    assert caught.value.one_line() == message


# --- weekly hours -------------------------------------------------------------------------


def test_weekly_hours_fill_every_day() -> None:
    assert validate_weekly_hours(
        {"mon": ["09:00-13:00", "15:00-19:00"], "sat": ["10:00-14:00"]}
    ) == (week(mon=["09:00-13:00", "15:00-19:00"], sat=["10:00-14:00"]))


def test_weekly_hours_days_come_in_week_order() -> None:
    result = validate_weekly_hours({"sun": [], "wed": ["09:00-17:00"], "mon": []})
    assert list(result) == list(DAYS)


def test_weekly_hours_ranges_are_sorted() -> None:
    result = validate_weekly_hours({"tue": ["15:00-19:00", "00:00-02:00", "09:00-13:00"]})
    assert result["tue"] == ["00:00-02:00", "09:00-13:00", "15:00-19:00"]


def test_weekly_hours_adjacent_ranges_are_allowed() -> None:
    result = validate_weekly_hours({"fri": ["12:00-17:00", "09:00-12:00"]})
    assert result["fri"] == ["09:00-12:00", "12:00-17:00"]


@pytest.mark.parametrize(
    "ranges", [["00:00-24:00"], ["20:00-24:00"], ["23:59-24:00"], ["00:00-00:01"]]
)
def test_weekly_hours_edges_of_the_day(ranges: list[str]) -> None:
    assert validate_weekly_hours({"mon": ranges})["mon"] == ranges


def test_empty_table_means_not_set() -> None:
    assert validate_weekly_hours({}) == {}


def test_table_of_closed_days_is_a_closed_week() -> None:
    assert validate_weekly_hours({"sat": []}) == CLOSED_WEEK


def test_weekly_hours_from_toml() -> None:
    document = tomllib.loads('[hours]\nmon = ["09:00-17:00"]\nsun = []\n')
    assert validate_weekly_hours(document["hours"]) == week(mon=["09:00-17:00"])


@pytest.mark.parametrize(
    ("ranges", "message"),
    [
        (["09:00-13:00", "12:00-17:00"], "hours.mon: '09:00-13:00' and '12:00-17:00' overlap"),
        (["12:00-17:00", "09:00-13:00"], "hours.mon: '09:00-13:00' and '12:00-17:00' overlap"),
        (["09:00-17:00", "10:00-11:00"], "hours.mon: '09:00-17:00' and '10:00-11:00' overlap"),
        (["09:00-17:00", "09:00-17:00"], "hours.mon: '09:00-17:00' and '09:00-17:00' overlap"),
    ],
)
def test_weekly_hours_overlap(ranges: list[str], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_weekly_hours({"mon": ranges})
    assert caught.value.one_line() == message
    assert caught.value.field == "hours.mon"


@pytest.mark.parametrize("item", ["17:00-09:00", "09:00-09:00", "13:00-12:59", "00:01-00:00"])
def test_weekly_hours_end_before_start(item: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_weekly_hours({"wed": [item]})
    assert caught.value.one_line() == (
        f"hours.wed: {item!r} ends before it starts; split a range past midnight: "
        '"20:00-24:00" today, "00:00-02:00" tomorrow'
    )


@pytest.mark.parametrize(
    "item",
    [
        "24:00-24:00",  # a day starts at 00:00; 24:00 is only an end
        "24:00-01:00",
        "23:00-24:30",
        "09:60-10:00",
        "09:00-10:75",
        "25:00-26:00",
        "9:00-17:00",
        "09:00 - 17:00",
        "0900-1700",
        "09:00-17:00\n",
        " 09:00-17:00",
        "٠٩:٠٠-١٧:٠٠",
        "",
        900,
        None,
        ["09:00", "17:00"],
    ],
)
def test_weekly_hours_bad_range(item: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_weekly_hours({"thu": [item]})
    assert caught.value.one_line() == f"hours.thu: {item!r} is not a time range; {TIME_RANGE_HINT}"


@pytest.mark.parametrize(
    ("day", "message"),
    [
        ("monday", "hours.monday: is not a day; did you mean 'mon'?"),
        ("thur", "hours.thur: is not a day; did you mean 'thu'?"),
        ("Mon", "hours.Mon: is not a day; did you mean 'mon'?"),
        ("xyz", "hours.xyz: is not a day; use mon, tue, wed, thu, fri, sat, sun"),
    ],
)
def test_weekly_hours_unknown_day(day: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_weekly_hours({"mon": ["09:00-17:00"], day: []})
    assert caught.value.one_line() == message


@pytest.mark.parametrize("value", ["09:00-17:00", None, 9, {"from": "09:00"}])
def test_weekly_hours_day_must_be_a_list(value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_weekly_hours({"sat": value}, "portal.hours")
    assert caught.value.one_line() == (
        'portal.hours.sat: must be a list like ["09:00-17:00"] ([] when closed)'
    )


@pytest.mark.parametrize("value", [["mon"], "mon=09:00-17:00", None, 7])
def test_weekly_hours_must_be_a_table(value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_weekly_hours(value)
    assert caught.value.one_line() == 'hours: must be a table of days, e.g. mon = ["09:00-17:00"]'


# --- holidays -----------------------------------------------------------------------------


def test_holidays_sorted_without_repeats() -> None:
    assert validate_holidays(["2026-12-25", "2026-01-01", "2026-12-25"]) == [
        "2026-01-01",
        "2026-12-25",
    ]


def test_holidays_from_toml_dates() -> None:
    document = tomllib.loads("holidays = [2026-12-25, 2026-01-06, 2026-01-01]\n")
    assert all(isinstance(day, dt.date) for day in document["holidays"])
    assert validate_holidays(document["holidays"]) == ["2026-01-01", "2026-01-06", "2026-12-25"]


def test_holidays_mixed_strings_and_dates_deduplicated() -> None:
    assert validate_holidays([dt.date(2026, 12, 25), "2026-12-25", "2026-05-01"]) == [
        "2026-05-01",
        "2026-12-25",
    ]


def test_no_holidays() -> None:
    assert validate_holidays([]) == []


@pytest.mark.parametrize("value", ["2026-02-30", "25/12/2026", "christmas", "2026-13-01", ""])
def test_bad_holiday_string(value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_holidays(["2026-01-01", value])
    assert caught.value.one_line() == (
        f"holidays: {value!r} is not a date; write YYYY-MM-DD, e.g. 2026-12-25"
    )


@pytest.mark.parametrize("value", [dt.datetime(2026, 12, 25, 9, 0), 20261225, None])
def test_holiday_that_is_not_a_date(value: Any) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_holidays([value])
    assert caught.value.one_line() == f"holidays: {value!r} is not a date; write YYYY-MM-DD"


def test_hours_document() -> None:
    assert hours_document({"mon": ["09:00-17:00"]}, ["2026-12-25"]) == {
        "weekly": week(mon=["09:00-17:00"]),
        "holidays": ["2026-12-25"],
    }
    assert hours_document({}, []) == {"weekly": {}, "holidays": []}


@pytest.mark.parametrize(
    "name",
    [
        "",
        "localtime",
        "Factory",
        "posixrules",
        "posix/Europe/Madrid",
        "right/UTC",
        "Europe",
        "../etc/passwd",
        "/etc/localtime",
        "Europe/Madrid ",
        "europe/madrid",
        "zone.tab",
        "tzdata.zi",
        "leapseconds",
        "Europe/./Madrid",
        "Europe//Madrid",
        "Europe/Madrid\x00",
        "x" * 5000,
    ],
)
def test_a_zone_is_valid_exactly_when_the_zone_list_has_it(name: str) -> None:
    """validate_timezone checks one name without listing the zone directory (every
    command checks defaults.timezone); it agrees with the list both ways."""
    assert name not in validation.timezone_names()
    with pytest.raises(ValidationError, match="is not a known time zone"):
        validation.validate_timezone(name)


def test_every_listed_zone_is_valid() -> None:
    names = validation.timezone_names()
    assert {"UTC", "Europe/Madrid", "America/Sao_Paulo", "Etc/GMT+5"} <= names
    assert all(validation.validate_timezone(name) == name for name in names)
