"""The setup-request form: read the fields, validate each one, collect every error.

Validation reuses `wactl.validation` (phone numbers with phonenumbers, time zones,
hours) field by field, so the page can show each error beside its field at once
instead of one error per attempt. Every field refuses control characters (notes keep
their line breaks and tabs), and in the JSON API a value of another type than text is
an error of its field. Nothing is written unless the whole form is valid;
`wactl.db.requests.submit_request` then stores it (and validates it again).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any

from wactl import validation
from wactl.enums import Language, TemplateType
from wactl.errors import ValidationError

NOTES_LIMIT = 2000

TEMPLATE_LABELS = {
    TemplateType.RESTAURANT: "Restaurant or bar",
    TemplateType.CLINIC: "Clinic or practice",
    TemplateType.SALON: "Hair or beauty salon",
    TemplateType.RETAIL: "Shop",
    TemplateType.GENERIC: "Other business",
}
LANGUAGE_LABELS = {Language.EN: "English", Language.ES: "Español", Language.PT: "Português"}
DAY_LABELS = {
    "mon": "Monday",
    "tue": "Tuesday",
    "wed": "Wednesday",
    "thu": "Thursday",
    "fri": "Friday",
    "sat": "Saturday",
    "sun": "Sunday",
}


@cache
def timezones() -> tuple[str, ...]:
    """IANA zone names for the form's suggestions (~600, read once): exactly the ones
    the form accepts (not "localtime", "Factory" or posix/...)."""
    return tuple(sorted(validation.timezone_names()))


@dataclass
class SetupForm:
    """The fields as typed (to fill the form again) and the errors by field name."""

    values: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    clean: dict[str, Any] = field(default_factory=dict)

    @property
    def valid(self) -> bool:
        return not self.errors


#: What the single-line fields hold, for the hint of a refused control character.
_KINDS = {
    "template_type": "choices",
    "language": "choices",
    "whatsapp_number": "phone numbers",
    "timezone": "time zones",
}


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "null"


def _read_text(form: SetupForm, data: Mapping[str, Any], name: str, *, from_json: bool) -> str:
    """The field as text; a JSON value of another type is an error of that field (a
    form field that is a file, or absent, reads as empty)."""
    value = data.get(name)
    if isinstance(value, str):
        return value
    if from_json and name in data and not (value is None and name == "notes"):
        form.errors[name] = f"must be text, not {_json_kind(value)}"
    return ""


def _check(form: SetupForm, name: str, check: Callable[[], Any]) -> Any:
    """``check()``, or None with its error kept under ``name`` (the first error of a
    field is the one shown)."""
    if name in form.errors:
        return None
    try:
        return check()
    except ValidationError as exc:
        form.errors[name] = exc.message.split(": ", 1)[-1] + (f" ({exc.hint})" if exc.hint else "")
        return None


def _day_ranges(text: str) -> list[str]:
    """ "09:00-14:00, 17:00-22:00" -> ["09:00-14:00", "17:00-22:00"]; "" -> closed."""
    parts = [part.replace(" ", "") for part in text.replace(";", ",").split(",")]
    return [part for part in parts if part]


def read_setup(data: Mapping[str, Any], *, from_json: bool = False) -> SetupForm:
    """Validate the form (or the JSON body, whose ``hours`` is a table of lists).

    Form field names: business_name, template_type, language, whatsapp_number,
    timezone, notes, hours_mon ... hours_sun (ranges separated by commas).
    """
    form = SetupForm()
    for name in ("business_name", "template_type", "language", "whatsapp_number", "timezone"):
        form.values[name] = _read_text(form, data, name, from_json=from_json).strip()
    form.values["notes"] = _read_text(form, data, "notes", from_json=from_json)
    weekly: dict[str, Any] = {}
    if from_json:
        hours = data.get("hours", {})
        if not isinstance(hours, dict):
            form.errors["hours"] = 'must be a table of days, e.g. {"mon": ["09:00-17:00"]}'
        else:
            weekly = dict(hours)
            for day, ranges in weekly.items():
                if isinstance(ranges, list):
                    form.values[f"hours_{day}"] = ", ".join(str(r) for r in ranges)
    else:
        for day in validation.DAYS:
            name = f"hours_{day}"
            typed = _read_text(form, data, name, from_json=False).strip()
            form.values[name] = typed
            _check(
                form,
                name,
                partial(validation.refuse_control_characters, name, typed, kind="opening hours"),
            )
            weekly[day] = _day_ranges(typed)
        if not any(weekly.values()):
            weekly = {}
    for name, kind in _KINDS.items():
        text = form.values[name]
        _check(form, name, partial(validation.refuse_control_characters, name, text, kind=kind))

    values = form.values
    form.clean["business_name"] = _check(
        form,
        "business_name",
        lambda: validation.validate_name("business_name", values["business_name"]),
    )
    form.clean["template"] = _check(
        form,
        "template_type",
        lambda: validation.parse_choice(TemplateType, values["template_type"], "template_type"),
    )
    form.clean["language"] = _check(
        form, "language", lambda: validation.parse_choice(Language, values["language"], "language")
    )
    if values["whatsapp_number"]:
        form.clean["whatsapp_number"] = _check(
            form,
            "whatsapp_number",
            lambda: validation.normalize_phone(values["whatsapp_number"], "whatsapp_number"),
        )
    else:
        form.errors.setdefault("whatsapp_number", "must not be empty (e.g. +34600123456)")
    if values["timezone"]:
        form.clean["timezone"] = _check(
            form, "timezone", lambda: validation.validate_timezone(values["timezone"])
        )
    else:
        form.errors.setdefault("timezone", 'must not be empty (e.g. "Europe/Madrid")')
    if "hours" not in form.errors:
        form.clean["weekly_hours"] = {}
        for day, ranges in weekly.items():
            check = partial(validation.validate_weekly_hours, {day: ranges})
            checked = _check(form, f"hours_{day}", check)
            if checked is not None:
                form.clean["weekly_hours"][day] = checked[day]
    notes = values["notes"].strip()
    _check(
        form, "notes", partial(validation.refuse_control_characters, "notes", notes, kind="notes")
    )
    if len(notes) > NOTES_LIMIT:
        form.errors.setdefault(
            "notes", f"is {len(notes)} characters long; the limit is {NOTES_LIMIT}"
        )
    form.clean["notes"] = notes or None
    return form
