"""Reply templates: one TOML data file per business type, loaded and checked here.

Why this module exists: what a bot says is data, written once per template type and
language (``restaurant.toml``, ``clinic.toml``, ...), and a tenant may replace any text.
This is the one place that knows which texts a template must have, which placeholders
each text may use, and how a text is filled in, so a broken file or override fails at
load time with the file, language and key named, never in the middle of a chat.

What it must not do: read anything but the packaged template files (or a file handed to
`load_template_file`), know about tenants, the database or the clock, or decide which
text answers a message (that is `wactl.replies.book`).

File layout (per language table ``[en]``, ``[es]``, ``[pt]``)::

    greeting, fallback, handoff, rate_limited, location, contact = "text"
    days = ["Monday", ..., "Sunday"]
    [en.hours]    answer, open_until, ..., week_holidays = "text"   (see TEXT_SPECS)
    [en.missing]  business_name, address, phone, email, website, maps_url = "text"
    [[en.menu]]   label = "text", answer = "text", keywords = ["...", ...], urgent = false

Texts are filled with `render`, a ``string.Formatter``-based substitution of plain
``{name}`` fields; ``{{`` and ``}}`` are literal braces.
"""

from __future__ import annotations

import difflib
import re
import string
import tomllib
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import MappingProxyType
from typing import Any

from wactl.enums import Language, TemplateType
from wactl.errors import ConfigError, ValidationError

#: Business facts a tenant may give; each has a per-language "missing" phrase.
INFO_FIELDS = ("business_name", "address", "phone", "email", "website", "maps_url")
#: Placeholders the reply book computes when it answers (need the clock and hours).
COMPUTED_FIELDS = ("hours_today", "hours_week", "menu")
#: A numbered menu has 1 to this many items, so that one digit picks an item.
MENU_MAX = 9
#: The fields of one menu item that are texts (``keywords`` is a list, ``urgent`` a flag).
MENU_TEXT_FIELDS = ("label", "answer")

_INFO = frozenset(INFO_FIELDS)
_REPLY = _INFO | frozenset(COMPUTED_FIELDS)


@dataclass(frozen=True)
class TextSpec:
    """Which placeholders a text may use, and which it must use."""

    allowed: frozenset[str]
    required: frozenset[str] = frozenset()


def _hours_spec(*fields: str, info: bool = True) -> TextSpec:
    return TextSpec(
        allowed=(_INFO if info else frozenset()) | set(fields), required=frozenset(fields)
    )


#: Every text key of a language table, in the order problems are reported.
#: ``hours.*`` phrases are filled by `wactl.replies.hours`; their own fields are required
#: so that a translation cannot silently drop the time it is meant to say.
TEXT_SPECS: Mapping[str, TextSpec] = MappingProxyType(
    {
        "greeting": TextSpec(_REPLY),
        "fallback": TextSpec(_REPLY),
        "handoff": TextSpec(_REPLY),
        # Sent by the rate limiter, which has no clock or hours at hand.
        "rate_limited": TextSpec(_INFO),
        "location": TextSpec(_REPLY),
        "contact": TextSpec(_REPLY),
        "hours.answer": TextSpec(_REPLY),
        "hours.open_until": _hours_spec("time"),
        "hours.open_until_day": _hours_spec("day", "time"),
        "hours.open_nonstop": _hours_spec(),
        "hours.closed_opens": _hours_spec("when"),
        "hours.closed_no_opening": _hours_spec(),
        "hours.holiday_opens": _hours_spec("when"),
        "hours.holiday_no_opening": _hours_spec(),
        "hours.not_set": _hours_spec(),
        "hours.when_today": _hours_spec("time", info=False),
        "hours.when_tomorrow": _hours_spec("time", info=False),
        "hours.when_day": _hours_spec("day", "time", info=False),
        "hours.day_with_date": _hours_spec("day", "date", info=False),
        "hours.week_title": _hours_spec(),
        "hours.week_line": _hours_spec("day", "ranges", info=False),
        "hours.week_closed": _hours_spec(info=False),
        "hours.week_holidays": _hours_spec("dates"),
        # What an info placeholder says when the tenant has not given that fact.
        **{f"missing.{name}": TextSpec(frozenset()) for name in INFO_FIELDS},
    }
)

#: Placeholders of the two text fields of a menu item.
MENU_SPECS: Mapping[str, TextSpec] = MappingProxyType(
    {"label": TextSpec(_INFO), "answer": TextSpec(_REPLY)}
)

_NON_TEXT_KEYS = ("days", "menu")
_MENU_ITEM_KEYS = ("label", "answer", "keywords", "urgent")
_FORMATTER = string.Formatter()
_WORD_RE = re.compile(r"[^\W_]+")


# --- errors -------------------------------------------------------------------------------


class TemplateError(ConfigError):
    """A template file cannot be used; names the file, the language and the key."""

    def __init__(
        self,
        source: str,
        problem: str,
        *,
        language: str | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = ".".join(part for part in (language, key) if part)
        super().__init__(
            f"{source}: {where}: {problem}" if where else f"{source}: {problem}", hint=hint
        )
        self.source = source
        self.language = language
        self.key = key


class OverrideError(ValidationError):
    """A tenant's override or business fact is not usable; ``field`` names it."""


class TextProblem(Exception):
    """What is wrong with one text; callers turn it into a TemplateError or OverrideError."""

    def __init__(self, problem: str, hint: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.hint = hint


# --- texts --------------------------------------------------------------------------------


def placeholder_names(text: str) -> list[str]:
    """The field names of ``text`` in order of appearance (``ValueError`` if malformed)."""
    return [field for _, field, _, _ in _FORMATTER.parse(text) if field is not None]


def check_text(value: Any, spec: TextSpec) -> str:
    """``value`` if it is a usable text under ``spec``; raises `TextProblem` otherwise."""
    if not isinstance(value, str):
        raise TextProblem(f"must be text, not {type(value).__name__}")
    if not value.strip():
        raise TextProblem("is empty")
    try:
        parsed = list(_FORMATTER.parse(value))
    except ValueError:
        raise TextProblem("has a lone { or }", hint="write {{ or }} for a literal brace") from None
    seen: set[str] = set()
    for _, field, format_spec, conversion in parsed:
        if field is None:
            continue
        if field not in spec.allowed:
            raise TextProblem(
                f"unknown placeholder {{{field}}}", hint=_placeholder_hint(field, spec)
            )
        if format_spec or conversion:
            raise TextProblem(
                f"placeholder {{{field}}} must not have a format or conversion",
                hint=f"write {{{field}}}",
            )
        seen.add(field)
    missing = sorted(spec.required - seen)
    if missing:
        raise TextProblem(f"must contain {{{missing[0]}}}")
    return value


def _placeholder_hint(field: str, spec: TextSpec) -> str:
    known = sorted(spec.allowed)
    if not known:
        return "this text takes no placeholders"
    near = difflib.get_close_matches(field, known, n=1)
    if near:
        return f"did you mean {{{near[0]}}}?"
    return "use " + ", ".join(f"{{{name}}}" for name in known)


def render(text: str, values: Mapping[str, str]) -> str:
    """Fill the ``{name}`` fields of a checked text; values are inserted verbatim.

    Unlike ``str.format`` this never interprets the inserted values, so a business name
    holding braces is safe. Every field of ``text`` must be in ``values`` (``KeyError``
    otherwise: the caller forgot a field, which is a bug, not bad input).
    """
    parts: list[str] = []
    for literal, field, _, _ in _FORMATTER.parse(text):
        parts.append(literal)
        if field is not None:
            parts.append(values[field])
    return "".join(parts)


def fold(text: str) -> str:
    """Words of ``text`` for matching: accents and case removed, punctuation as spaces.

    "¿Horário?" and "horario" both fold to "horario"; "Olá!" to "ola". NFKD splits accents
    off their letters and also turns "２" or a keycap "2️⃣" into "2"; marks are dropped.
    """
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(char for char in decomposed if not unicodedata.category(char).startswith("M"))
    return " ".join(_WORD_RE.findall(bare.casefold()))


def split_keywords(text: str) -> tuple[str, ...]:
    """Keywords from an override value: comma-separated, blanks dropped."""
    return tuple(part.strip() for part in text.split(",") if part.strip())


# --- the template model ----------------------------------------------------------------------


@dataclass(frozen=True)
class MenuItem:
    """One numbered menu entry. ``urgent`` items win over every other match (emergencies)."""

    label: str
    answer: str
    keywords: tuple[str, ...]
    urgent: bool = False


@dataclass(frozen=True)
class LanguageTexts:
    """All texts of one template in one language."""

    texts: Mapping[str, str]  # dotted key ("greeting", "hours.open_until") -> text
    days: tuple[str, ...]  # Monday first
    menu: tuple[MenuItem, ...]


@dataclass(frozen=True)
class Template:
    name: str
    source: str
    languages: Mapping[Language, LanguageTexts]


def info_values(texts: LanguageTexts, info: Mapping[str, str]) -> dict[str, str]:
    """Every info field: the tenant's value, or the language's "missing" phrase."""
    values: dict[str, str] = {}
    for name in INFO_FIELDS:
        given = " ".join(info.get(name, "").split())
        values[name] = given or texts.texts[f"missing.{name}"]
    return values


def menu_keys(count: int) -> list[str]:
    """Override keys of a menu of ``count`` items: menu.N.label / .answer / .keywords."""
    return [
        f"menu.{number}.{field}"
        for number in range(1, count + 1)
        for field in (*MENU_TEXT_FIELDS, "keywords")
    ]


# --- loading ----------------------------------------------------------------------------------


def load_template(template: TemplateType) -> Template:
    """The packaged template of one business type, checked (cached after the first load)."""
    return _load_packaged(template.value)


@cache
def _load_packaged(name: str) -> Template:
    resource = resources.files(__name__).joinpath(f"{name}.toml")
    return load_template_file(resource, name=name)


def load_template_file(path: Path | Traversable, *, name: str | None = None) -> Template:
    """Read and check one template file; `TemplateError` names what is wrong and where."""
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(source, f"cannot be read: {exc}") from exc
    return parse_template(text, source=source, name=name or Path(path.name).stem)


def parse_template(text: str, *, source: str, name: str) -> Template:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TemplateError(source, f"is not valid TOML: {exc}") from exc
    codes = [language.value for language in Language]
    for code in raw:
        if code not in codes:
            near = difflib.get_close_matches(code, codes, n=1)
            raise TemplateError(
                source,
                "is not a language",
                language=code,
                hint=f"did you mean '{near[0]}'?" if near else f"use {', '.join(codes)}",
            )
    languages: dict[Language, LanguageTexts] = {}
    for language in Language:
        if language.value not in raw:
            raise TemplateError(source, f"has no [{language.value}] table", language=language.value)
        languages[language] = _parse_language(raw[language.value], source, language.value)
    return Template(name=name, source=source, languages=MappingProxyType(languages))


def _parse_language(raw: Any, source: str, language: str) -> LanguageTexts:
    if not isinstance(raw, dict):
        raise TemplateError(source, "must be a table", language=language)

    def fail(key: str, problem: str, hint: str | None = None) -> TemplateError:
        return TemplateError(source, problem, language=language, key=key, hint=hint)

    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{sub}": subvalue for sub, subvalue in value.items()})
        else:
            flat[key] = value
    known = [*TEXT_SPECS, *_NON_TEXT_KEYS]
    for key in flat:
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1)
            raise fail(key, "is not a template key", f"did you mean '{near[0]}'?" if near else None)

    texts: dict[str, str] = {}
    for key, spec in TEXT_SPECS.items():
        if key not in flat:
            raise fail(key, "is missing")
        try:
            texts[key] = check_text(flat[key], spec)
        except TextProblem as problem:
            raise fail(key, problem.problem, problem.hint) from None

    if "days" not in flat:
        raise fail("days", "is missing")
    days = flat["days"]
    if (
        not isinstance(days, list)
        or len(days) != 7
        or not all(isinstance(day, str) and day.strip() for day in days)
    ):
        raise fail("days", "must list the seven day names, Monday first")

    if "menu" not in flat:
        raise fail("menu", "is missing")
    menu = flat["menu"]
    if not isinstance(menu, list) or not all(isinstance(item, dict) for item in menu):
        raise fail("menu", "must be a list of [[menu]] tables")
    if not 1 <= len(menu) <= MENU_MAX:
        raise fail("menu", f"has {len(menu)} items; a numbered menu has 1 to {MENU_MAX}")
    items: list[MenuItem] = []
    for number, item in enumerate(menu, start=1):
        for key in item:
            if key not in _MENU_ITEM_KEYS:
                near = difflib.get_close_matches(key, _MENU_ITEM_KEYS, n=1)
                hint = f"did you mean '{near[0]}'?" if near else None
                raise fail(f"menu.{number}.{key}", "is not a menu item key", hint)
        fields: dict[str, str] = {}
        for field, spec in MENU_SPECS.items():
            if field not in item:
                raise fail(f"menu.{number}.{field}", "is missing")
            try:
                fields[field] = check_text(item[field], spec)
            except TextProblem as problem:
                raise fail(f"menu.{number}.{field}", problem.problem, problem.hint) from None
        if "keywords" not in item:
            raise fail(f"menu.{number}.keywords", "is missing")
        try:
            keywords = check_keywords(item["keywords"])
        except TextProblem as problem:
            raise fail(f"menu.{number}.keywords", problem.problem, problem.hint) from None
        urgent = item.get("urgent", False)
        if not isinstance(urgent, bool):
            raise fail(f"menu.{number}.urgent", "must be true or false")
        items.append(MenuItem(fields["label"], fields["answer"], keywords, urgent))
    clash = keyword_clash(items)
    if clash is not None:
        clash_number, clash_problem = clash
        raise fail(f"menu.{clash_number}.keywords", clash_problem)
    return LanguageTexts(texts=MappingProxyType(texts), days=tuple(days), menu=tuple(items))


def check_keywords(value: Any) -> tuple[str, ...]:
    """A non-empty list of keywords, each with at least one letter or digit."""
    if not isinstance(value, list | tuple) or not value:
        raise TextProblem('must be a non-empty list of words, e.g. ["book", "table"]')
    for word in value:
        if not isinstance(word, str) or not fold(word):
            raise TextProblem(f"{word!r} is not a keyword")
    return tuple(value)


def keyword_clash(items: tuple[MenuItem, ...] | list[MenuItem]) -> tuple[int, str] | None:
    """The first item (number, problem) that repeats a keyword of an earlier item, if any.

    Keywords are compared folded, so "menú" and "menu" clash: a customer's word must pick
    exactly one item.
    """
    owner: dict[str, int] = {}
    for number, item in enumerate(items, start=1):
        for word in item.keywords:
            first = owner.setdefault(fold(word), number)
            if first != number:
                return number, f"keyword '{word}' is also a keyword of menu.{first}"
    return None
