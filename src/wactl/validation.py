"""Validation of the values operators and owners type: slugs, phones, zones, hours.

Every function returns the normalised value or raises `ValidationError` naming the
field and how to fix it. Stdlib only at import time; phonenumbers (~25 ms) is imported
inside `normalize_phone`.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import itertools
import re
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from wactl.enums import EngineName, Language, TemplateType
from wactl.errors import ValidationError

SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# ASCII digits only: \d would also take "٠٩:٠٠" and store it as the owner typed it.
_INTERVAL_RE = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$", re.ASCII)

E = TypeVar("E", TemplateType, Language, EngineName)


def validate_slug(slug: str) -> str:
    # fullmatch: with match, "$" also matches before a final newline ("abc\n").
    if not SLUG_RE.fullmatch(slug) or "--" in slug:
        raise ValidationError(
            "slug",
            f"'{slug}' is not a valid slug",
            hint="use 1-40 lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit (e.g. 'casa-pepe')",
        )
    return slug


#: The longest name or business name (the columns are 200 characters wide).
NAME_LIMIT = 200

#: Characters a name may not hold: C0 and C1 controls (ESC, NUL, BEL...: they would
#: drive a terminal that shows the name), and the bidirectional overrides and isolates
#: (they reorder what a terminal or page shows around them).
_NOT_IN_NAMES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def refuse_control_characters(field: str, text: str, *, kind: str = "names") -> str:
    """``text`` unchanged, or `ValidationError` naming the first control character (tab
    and line breaks are allowed: multi-line text such as notes keeps them)."""
    bad = _NOT_IN_NAMES.search(text)
    if bad is not None:
        raise ValidationError(
            field,
            f"contains the control character U+{ord(bad.group()):04X} at position "
            f"{bad.start() + 1}",
            hint=f"{kind} are plain text: remove it",
        )
    return text


def validate_name(field: str, name: str) -> str:
    """A name or business name as people read it: runs of spaces, tabs and line breaks
    become one space; control characters are refused (not silently dropped: what the
    owner typed is not what they would see)."""
    refuse_control_characters(field, name)
    cleaned = " ".join(name.split())
    if not cleaned:
        raise ValidationError(field, "must not be empty")
    if len(cleaned) > NAME_LIMIT:
        raise ValidationError(
            field, f"is {len(cleaned)} characters long; the limit is {NAME_LIMIT}"
        )
    return cleaned


def clean_name(text: str) -> str:
    """A name that came from elsewhere (an identity provider's ``name`` claim) made
    plain: where `validate_name` would refuse, this replaces each control character
    with a space, collapses whitespace and cuts at the limit. May return ""."""
    return " ".join(_NOT_IN_NAMES.sub(" ", text).split())[:NAME_LIMIT].rstrip()


def normalize_phone(number: str, field: str = "phone") -> str:
    """A WhatsApp number in E.164 (+CCNNN...), validated with phonenumbers."""
    import phonenumbers

    text = number.strip()
    if not text.startswith("+"):
        raise ValidationError(
            field,
            f"'{number}' has no country code",
            hint="write it in international form starting with +, e.g. +34600123456",
        )
    # phonenumbers reads letters as keypad digits ("+1 800 FLOWERS") and drops an
    # extension ("ext. 12") without a word; a WhatsApp number has neither.
    if any(char.isalpha() for char in text):
        raise ValidationError(field, f"'{number}' is not a phone number", hint="e.g. +34600123456")
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise ValidationError(
            field, f"'{number}' is not a phone number", hint="e.g. +34600123456"
        ) from None
    if not phonenumbers.is_valid_number(parsed):
        raise ValidationError(
            field,
            f"'{number}' is not a valid phone number",
            hint="check the country code and the number of digits",
        )
    formatted: str = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return formatted


_E164_SHAPE = re.compile(r"^\+[1-9]\d{6,14}$", re.ASCII)


def normalize_chat_number(number: str, field: str = "from") -> str:
    """A number in E.164 shape (+ and 7-15 digits), separators removed.

    For the sandbox's simulated customers: it checks the shape only, so fictional
    numbers such as +15551234567 (which `normalize_phone` rightly rejects) work.
    """
    compact = re.sub(r"[\s().-]", "", number)
    if not _E164_SHAPE.fullmatch(compact):
        raise ValidationError(
            field,
            f"'{number}' is not a phone number in international form",
            hint="write + and the country code, e.g. +15551234567",
        )
    return compact


#: A customer WhatsApp identifies only by a LID (a number that is not their phone number).
_LID_SHAPE = re.compile(r"^\d{5,20}@lid$", re.ASCII)


def normalize_chat(chat: str, field: str = "chat") -> str:
    """A chat as the conversation log keys it: a number in E.164 shape, or, for a
    customer whose phone number WhatsApp does not share, their LID ("NNN@lid")."""
    if _LID_SHAPE.fullmatch(chat.strip()):
        return chat.strip()
    try:
        return normalize_chat_number(chat, field)
    except ValidationError:
        raise ValidationError(
            field,
            f"'{chat}' is neither a phone number in international form nor a LID",
            hint="write + and the country code, e.g. +15551234567, or the NNN@lid the log shows",
        ) from None


#: Names the zone database answers to that are not a business's zone: "localtime" (a
#: Debian link to this machine's own zone, whatever that is) and "Factory" (tzdata's
#: placeholder for "zone not set", shown as "-00").
_NOT_ZONES = frozenset({"localtime", "Factory"})


@functools.cache
def timezone_names() -> frozenset[str]:
    """Every IANA time zone name a business may use (~25 ms the first time: the zone
    directory is read once per process). Names outside it that `ZoneInfo` would still
    open (posix/..., right/..., posixrules, localtime, Factory) are not zones to store."""
    import zoneinfo

    return frozenset(zoneinfo.available_timezones() - _NOT_ZONES)


def _is_zone_name(name: str) -> bool:
    """Whether ``name`` is in `timezone_names`, without listing them (that reads the
    whole zone directory, ~25 ms; every command checks defaults.timezone): a key
    `ZoneInfo` loads (a TZif file of the zone path or of tzdata), less what
    `zoneinfo.available_timezones` leaves out (posix/, right/, posixrules) and
    `_NOT_ZONES`."""
    if name in _NOT_ZONES or name == "posixrules" or name.startswith(("posix/", "right/")):
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def validate_timezone(name: str, field: str = "timezone") -> str:
    """The one check of a time zone, wherever one is taken (CLI options, the config's
    defaults.timezone, tenant files, setup requests): an IANA name such as
    "Europe/Madrid", exactly as the zone database spells it."""
    if not _is_zone_name(name):
        raise ValidationError(
            field,
            f"'{name}' is not a known time zone",
            hint='use an IANA name such as "Europe/Madrid", "America/Sao_Paulo" or "UTC"',
        )
    return name


def parse_choice(enum_class: type[E], value: str, field: str) -> E:
    try:
        return enum_class(value)
    except ValueError:
        choices = [m.value for m in enum_class]
        near = difflib.get_close_matches(value, choices, n=1)
        hint = f"did you mean '{near[0]}'?" if near else None
        raise ValidationError(
            field, f"'{value}' is not one of {', '.join(choices)}", hint=hint
        ) from None


def _minutes(hours: str, minutes: str, *, allow_24: bool) -> int | None:
    h, m = int(hours), int(minutes)
    if m > 59 or h > 24 or (h == 24 and (m != 0 or not allow_24)):
        return None
    return h * 60 + m


def _validate_day(day: str, intervals: Any, field: str) -> list[str]:
    if not isinstance(intervals, list):
        raise ValidationError(
            f"{field}.{day}", 'must be a list like ["09:00-17:00"] ([] when closed)'
        )
    spans: list[tuple[int, int, str]] = []
    for item in intervals:
        match = _INTERVAL_RE.fullmatch(item) if isinstance(item, str) else None
        start = _minutes(match[1], match[2], allow_24=False) if match else None
        end = _minutes(match[3], match[4], allow_24=True) if match else None
        if match is None or start is None or end is None:
            raise ValidationError(
                f"{field}.{day}",
                f"{item!r} is not a time range",
                hint='write "HH:MM-HH:MM" in 24-hour time, e.g. "09:00-17:30"',
            )
        if end <= start:
            raise ValidationError(
                f"{field}.{day}",
                f"{item!r} ends before it starts",
                hint='split a range past midnight: "20:00-24:00" today, "00:00-02:00" tomorrow',
            )
        spans.append((start, end, item))
    spans.sort()
    for (_, end_a, a), (start_b, _, b) in itertools.pairwise(spans):
        if start_b < end_a:
            raise ValidationError(f"{field}.{day}", f"{a!r} and {b!r} overlap")
    return [item for _, _, item in spans]


def validate_weekly_hours(weekly: Any, field: str = "hours") -> dict[str, list[str]]:
    """{"mon": ["09:00-17:00"], ...}: known days, valid sorted non-overlapping ranges.

    An empty table means "hours not set" and stays empty; otherwise all seven days are
    returned, a day left out being closed ([]).
    """
    if not isinstance(weekly, Mapping):
        raise ValidationError(field, 'must be a table of days, e.g. mon = ["09:00-17:00"]')
    result: dict[str, list[str]] = {}
    for day, intervals in weekly.items():
        if day not in DAYS:
            near = difflib.get_close_matches(str(day), DAYS, n=1)
            raise ValidationError(
                f"{field}.{day}",
                "is not a day",
                hint=f"did you mean '{near[0]}'?" if near else f"use {', '.join(DAYS)}",
            )
        result[day] = _validate_day(day, intervals, field)
    if not result:
        return {}
    return {day: result.get(day, []) for day in DAYS}


def validate_holidays(dates: Iterable[Any], field: str = "holidays") -> list[str]:
    """ISO dates (YYYY-MM-DD) on which the business is closed, sorted, without repeats."""
    seen: set[str] = set()
    for value in dates:
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
            text = value.isoformat()
        elif isinstance(value, str):
            try:
                text = dt.date.fromisoformat(value).isoformat()
            except ValueError:
                raise ValidationError(
                    field, f"{value!r} is not a date", hint="write YYYY-MM-DD, e.g. 2026-12-25"
                ) from None
        else:
            raise ValidationError(field, f"{value!r} is not a date", hint="write YYYY-MM-DD")
        seen.add(text)
    return sorted(seen)


def hours_document(weekly: Any, holidays: Iterable[Any]) -> dict[str, Any]:
    """The validated value of ``tenant_config.hours_json``."""
    return {"weekly": validate_weekly_hours(weekly), "holidays": validate_holidays(holidays)}
