"""The bot's answer to one customer message, from the tenant's template: pure and deterministic.

Why this module exists: the conversation pipeline (DESIGN.md section 5, step 4) needs one
function from "what the customer wrote, and when" to "what the bot says", which the
sandbox, the tests and an operator's rehearsal can all call without a database. A
`ReplyBook` is built once per tenant from its template type, language, overrides and
business facts, checked completely at build time, and then answers any message.

What it must not do: read the clock (``now`` is passed in), touch the database or the
network, send anything, or keep per-chat state. Whether a message is the first of its
chat, pausing the bot after a handoff and rate limiting belong to the pipeline; this
module only says ``handoff=True`` and provides the rate-limit text.

Matching, in order (see `ReplyBook.reply`):

1. a bare menu number ("2", "2.", " 2 ", "2️⃣") picks that menu item; a number that is
   not on the menu gets the fallback;
2. keywords, compared folded (case and accents ignored) on word boundaries: an urgent
   menu item (emergencies) beats everything, then a request for a person (handoff), then
   the longest matching keyword among the hours, location and contact intents and the
   menu items (on a tie, in that order, then menu order). The tenant's language is tried
   first; the intent words of the other languages only when nothing matched;
3. greetings ("hi", "hola", "olá", "oi", "menu", "start", ...) get the greeting;
4. anything else gets the fallback, except the first message of a chat, which gets the
   greeting (a recognised request in a first message is answered directly).
"""

from __future__ import annotations

import datetime as dt
import difflib
import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from wactl.enums import Language, TemplateType
from wactl.replies.hours import HoursPhrases, describe_now, describe_week, hours_are_set, zone_for
from wactl.replies.templates import (
    INFO_FIELDS,
    MENU_SPECS,
    MENU_TEXT_FIELDS,
    TEXT_SPECS,
    LanguageTexts,
    OverrideError,
    TextProblem,
    check_keywords,
    check_text,
    fold,
    info_values,
    keyword_clash,
    load_template,
    menu_keys,
    placeholder_names,
    render,
    split_keywords,
)


class ReplyKind(enum.StrEnum):
    GREETING = "greeting"
    MENU_ITEM = "menu_item"
    HOURS = "hours"
    LOCATION = "location"
    CONTACT = "contact"
    FALLBACK = "fallback"
    HANDOFF = "handoff"


@dataclass(frozen=True)
class Reply:
    """What to send. ``handoff``: pause the bot in this chat, a person takes over."""

    kind: ReplyKind
    text: str
    handoff: bool


#: Words that ask for one of the built-in answers, per language. Written naturally; they
#: are folded before use, so "horário" also matches "horario" and "HORARIO".
INTENT_WORDS: Mapping[Language, Mapping[ReplyKind, tuple[str, ...]]] = MappingProxyType(
    {
        Language.EN: {
            ReplyKind.HANDOFF: (
                "human", "a person", "real person", "talk to someone", "speak to someone",
                "talk to a person", "speak to a person", "agent", "operator", "staff",
                "representative", "someone real",
            ),
            ReplyKind.HOURS: (
                "hours", "opening hours", "open", "opening", "close", "closing", "closed",
                "what time", "schedule", "timetable",
            ),
            ReplyKind.LOCATION: (
                "where", "address", "location", "located", "directions", "map",
                "find you", "how do i get",
            ),
            ReplyKind.CONTACT: (
                "phone", "phone number", "call", "email", "e-mail", "contact", "website",
                "web",
            ),
            ReplyKind.GREETING: (
                "hi", "hello", "hey", "hiya", "good morning", "good afternoon",
                "good evening", "menu", "start", "options", "help",
            ),
        },
        Language.ES: {
            ReplyKind.HANDOFF: (
                "humano", "una persona", "persona real", "agente", "asesor", "operador",
                "hablar con alguien", "atención personal", "encargado",
            ),
            ReplyKind.HOURS: (
                "horario", "horarios", "hora", "horas", "abierto", "abiertos", "abierta",
                "abren", "abrís", "cierran", "cerrado", "cerrada", "a qué hora",
            ),
            ReplyKind.LOCATION: (
                "dónde", "dirección", "ubicación", "ubicados", "mapa", "cómo llegar",
            ),
            ReplyKind.CONTACT: (
                "teléfono", "llamar", "llamaros", "correo", "email", "contacto", "web",
                "página web",
            ),
            ReplyKind.GREETING: (
                "hola", "buenas", "buenos días", "buenas tardes", "buenas noches", "menú",
                "inicio", "empezar", "opciones", "ayuda",
            ),
        },
        Language.PT: {
            ReplyKind.HANDOFF: (
                "humano", "atendente", "uma pessoa", "pessoa real", "agente", "operador",
                "falar com alguém", "atendimento humano",
            ),
            ReplyKind.HOURS: (
                "horário", "horários", "hora", "horas", "aberto", "aberta", "abertos",
                "abre", "abrem", "fecha", "fecham", "fechado", "fechada", "que horas",
                "funcionamento",
            ),
            ReplyKind.LOCATION: (
                "onde", "endereço", "localização", "mapa", "como chegar",
            ),
            ReplyKind.CONTACT: (
                "telefone", "ligar", "email", "e-mail", "contato", "contacto", "site",
                "website",
            ),
            ReplyKind.GREETING: (
                "olá", "oi", "bom dia", "boa tarde", "boa noite", "menu", "início",
                "começar", "opções", "ajuda",
            ),
        },
    }
)  # fmt: skip

#: Words that ask for a person only when they are the whole message: inside a sentence
#: they are too common ("price per person", "mesa para dos personas").
HANDOFF_ALONE = ("person", "persona", "pessoa", "people", "personas", "pessoas")

#: Among equally long keyword matches, the earlier kind wins; menu items come after these.
_INTENT_ORDER = (ReplyKind.HOURS, ReplyKind.LOCATION, ReplyKind.CONTACT)

_NUMBER_RE = re.compile(r"[0-9]{1,3}")
_BLANK_LINES_RE = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class _Rule:
    """Folded keywords that lead to one answer."""

    kind: ReplyKind
    keywords: tuple[str, ...]
    order: int  # tie-break: lower wins
    urgent: bool = False
    item: int | None = None  # 0-based menu index for MENU_ITEM


class ReplyBook:
    """Everything one tenant's bot says, ready to answer messages.

    Build it with `ReplyBook.build`; the constructor takes already-checked parts.
    """

    def __init__(
        self,
        *,
        language: Language,
        texts: LanguageTexts,
        info: Mapping[str, str],
        hours_json: Mapping[str, Any] | None,
        zone: ZoneInfo,
    ) -> None:
        self.language = language
        self._texts = texts
        self._info = info_values(texts, info)
        self._hours_json = hours_json
        self._hours_set = hours_are_set(hours_json)
        self._zone = zone
        self.hours_phrases = HoursPhrases.from_texts(texts, info)
        self._primary = self._rules_for(language, with_menu=True)
        self._secondary = [
            rule
            for other in Language
            if other is not language
            for rule in self._rules_for(other, with_menu=False)
        ]
        self._greetings = frozenset(
            fold(word) for words in INTENT_WORDS.values() for word in words[ReplyKind.GREETING]
        )
        self._handoff_alone = frozenset(fold(word) for word in HANDOFF_ALONE)

    @classmethod
    def build(
        cls,
        template: TemplateType,
        language: Language,
        overrides: Mapping[str, str],
        info: Mapping[str, str],
        *,
        hours_json: Mapping[str, Any] | None = None,
        timezone: str = "UTC",
    ) -> ReplyBook:
        """The tenant's reply book; raises `OverrideError` (a `ValidationError`) for a bad
        override or business fact, `ValidationError` for bad hours or time zone, and
        `TemplateError` (a `ConfigError`) if the packaged template itself is broken.

        ``overrides`` maps a dotted text key to its replacement: any key of
        `wactl.replies.templates.TEXT_SPECS` ("greeting", "location", "hours.answer",
        "missing.phone", ...) or ``menu.N.label`` / ``menu.N.answer`` /
        ``menu.N.keywords`` (comma-separated) for item N (1-based) of the numbered menu.
        ``info`` holds business facts: business_name, address, phone, email, website,
        maps_url; a fact left out or blank reads as the template's ``missing.*`` phrase.
        """
        base = load_template(template).languages[language]
        checked_info = _check_info(info)
        texts = _apply_overrides(base, overrides)
        zone = zone_for(timezone)
        return cls(
            language=language, texts=texts, info=checked_info, hours_json=hours_json, zone=zone
        )

    # --- answering -----------------------------------------------------------------------

    def reply(self, text: str, now: dt.datetime, *, first_message: bool) -> Reply:
        """The answer to ``text`` received at ``now`` (aware). Same input, same output."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be an aware datetime (with a time zone)")
        kind, item = self._classify(text)
        if kind is ReplyKind.FALLBACK and first_message:
            kind = ReplyKind.GREETING
        if kind is ReplyKind.MENU_ITEM:
            assert item is not None
            body = self._texts.menu[item].answer
        else:
            body = self._texts.texts[_TEXT_OF[kind]]
        return Reply(
            kind=kind,
            text=self._render_text(body, now, {}),
            handoff=kind is ReplyKind.HANDOFF,
        )

    def rate_limited_text(self) -> str:
        """The one polite warning a customer gets when sending too fast."""
        return _tidy(render(self._texts.texts["rate_limited"], self._info))

    def menu_text(self) -> str:
        """The numbered menu as shown by {menu}: "1. Label" lines."""
        return "\n".join(
            f"{number}. {render(item.label, self._info)}"
            for number, item in enumerate(self._texts.menu, start=1)
        )

    def text_keys(self) -> tuple[str, ...]:
        """Every text this book can render: template keys and menu.N.label / .answer."""
        menu = [
            f"menu.{number}.{field}"
            for number in range(1, len(self._texts.menu) + 1)
            for field in MENU_TEXT_FIELDS
        ]
        return (*TEXT_SPECS, *menu)

    def render(self, key: str, now: dt.datetime, extra: Mapping[str, str] | None = None) -> str:
        """One text filled in at ``now``, for previews and tests. ``extra`` supplies the
        fields of ``hours.*`` phrases ({time}, {day}, ...) that only hours.py knows."""
        if key.startswith("menu."):
            _, number, field = key.split(".")
            item = self._texts.menu[int(number) - 1]
            text = item.label if field == "label" else item.answer
        else:
            text = self._texts.texts[key]
        return self._render_text(text, now, extra or {})

    def _render_text(self, text: str, now: dt.datetime, extra: Mapping[str, str]) -> str:
        fields = set(placeholder_names(text))
        values: dict[str, str] = dict(self._info)
        if "menu" in fields:
            values["menu"] = self.menu_text()
        if "hours_today" in fields:
            values["hours_today"] = describe_now(
                self._hours_json, self._zone, now, self.hours_phrases
            )
        if "hours_week" in fields:
            # Unset hours: {hours_today} already says so; say it once, not twice.
            values["hours_week"] = (
                ""
                if not self._hours_set and "hours_today" in fields
                else describe_week(self._hours_json, self._zone, now, self.hours_phrases)
            )
        values.update(extra)
        unfilled = sorted(fields - values.keys())
        if unfilled:
            raise ValueError(f"no value for {{{unfilled[0]}}}; pass it in extra")
        return _tidy(render(text, values))

    # --- matching ------------------------------------------------------------------------

    def _rules_for(self, language: Language, *, with_menu: bool) -> list[_Rule]:
        words = INTENT_WORDS[language]
        rules = [_Rule(ReplyKind.HANDOFF, _folded(words[ReplyKind.HANDOFF]), order=0)]
        rules += [
            _Rule(kind, _folded(words[kind]), order=rank)
            for rank, kind in enumerate(_INTENT_ORDER, start=1)
        ]
        if with_menu:
            rules += [
                _Rule(
                    ReplyKind.MENU_ITEM,
                    _folded(item.keywords),
                    order=len(_INTENT_ORDER) + 1 + index,
                    urgent=item.urgent,
                    item=index,
                )
                for index, item in enumerate(self._texts.menu)
            ]
        return rules

    def _classify(self, text: str) -> tuple[ReplyKind, int | None]:
        words = fold(text)
        if _NUMBER_RE.fullmatch(words):
            number = int(words)
            if 1 <= number <= len(self._texts.menu):
                return ReplyKind.MENU_ITEM, number - 1
            return ReplyKind.FALLBACK, None
        if words in self._handoff_alone:
            return ReplyKind.HANDOFF, None
        padded = f" {words} "
        for rules in (self._primary, self._secondary):
            best = _best_rule(rules, padded)
            if best is not None:
                return best.kind, best.item
        if any(f" {word} " in padded for word in self._greetings):
            return ReplyKind.GREETING, None
        return ReplyKind.FALLBACK, None


_TEXT_OF = {
    ReplyKind.GREETING: "greeting",
    ReplyKind.HOURS: "hours.answer",
    ReplyKind.LOCATION: "location",
    ReplyKind.CONTACT: "contact",
    ReplyKind.FALLBACK: "fallback",
    ReplyKind.HANDOFF: "handoff",
}


def _folded(words: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(fold(word) for word in words))


def _best_rule(rules: list[_Rule], padded: str) -> _Rule | None:
    """The rule with the strongest keyword found in ``padded`` (" folded words ")."""
    best: tuple[tuple[bool, bool, int, int], _Rule] | None = None
    for rule in rules:
        for keyword in rule.keywords:
            if f" {keyword} " not in padded:
                continue
            score = (rule.urgent, rule.kind is ReplyKind.HANDOFF, len(keyword), -rule.order)
            if best is None or score > best[0]:
                best = (score, rule)
    return best[1] if best else None


def _tidy(text: str) -> str:
    """No trailing spaces, at most one blank line in a row (an empty field leaves gaps)."""
    lines = "\n".join(line.rstrip() for line in text.strip().splitlines())
    return _BLANK_LINES_RE.sub("\n\n", lines)


# --- building -----------------------------------------------------------------------------


def _check_info(info: Mapping[str, str]) -> dict[str, str]:
    """Known facts only; None (a JSON null) counts as not given, like a blank value."""
    checked: dict[str, str] = {}
    for key in info:
        value: Any = info[key]
        if key not in INFO_FIELDS:
            near = difflib.get_close_matches(key, INFO_FIELDS, n=1)
            hint = f"did you mean '{near[0]}'?" if near else f"use {', '.join(INFO_FIELDS)}"
            raise OverrideError(f"info.{key}", "is not a business fact", hint=hint)
        if value is None:
            continue
        if not isinstance(value, str):
            raise OverrideError(f"info.{key}", f"must be text, not {type(value).__name__}")
        checked[key] = value
    return checked


def _apply_overrides(base: LanguageTexts, overrides: Mapping[str, str]) -> LanguageTexts:
    """The template's texts with the tenant's replacements, each checked like the file."""
    valid = [*TEXT_SPECS, *menu_keys(len(base.menu))]
    texts = dict(base.texts)
    menu = list(base.menu)
    for key in sorted(overrides):
        value: Any = overrides[key]
        field = f"overrides.{key}"
        if key not in valid:
            raise OverrideError(field, "is not a reply text", hint=_key_hint(key, valid, len(menu)))
        if not isinstance(value, str):
            raise OverrideError(field, f"must be text, not {type(value).__name__}")
        try:
            if not key.startswith("menu."):
                texts[key] = check_text(value, TEXT_SPECS[key])
                continue
            _, number, part = key.split(".")
            index = int(number) - 1
            if part == "keywords":
                if not split_keywords(value):
                    raise TextProblem("must list at least one keyword, separated by commas")
                keywords = check_keywords(list(split_keywords(value)))
                menu[index] = replace(menu[index], keywords=keywords)
            elif part == "label":
                menu[index] = replace(menu[index], label=check_text(value, MENU_SPECS[part]))
            else:
                menu[index] = replace(menu[index], answer=check_text(value, MENU_SPECS[part]))
        except TextProblem as problem:
            raise OverrideError(field, problem.problem, hint=problem.hint) from None
    clash = keyword_clash(menu)
    if clash is not None:
        clash_number, clash_problem = clash
        raise OverrideError(f"overrides.menu.{clash_number}.keywords", clash_problem)
    return LanguageTexts(texts=MappingProxyType(texts), days=base.days, menu=tuple(menu))


def _key_hint(key: str, valid: list[str], menu_size: int) -> str:
    match = re.fullmatch(r"menu\.([0-9]+)\.(label|answer|keywords)", key)
    if match:
        part = match[2]
        return f"the menu has {menu_size} items: use menu.1.{part} to menu.{menu_size}.{part}"
    near = difflib.get_close_matches(key, valid, n=1)
    if near:
        return f"did you mean '{near[0]}'?"
    return "use a template text key such as 'greeting', 'hours.answer' or 'menu.1.answer'"
