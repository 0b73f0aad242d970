"""Reply templates and the reply book: every text renders, overrides are checked, messages
are matched by number and keyword in each language, broken template files are named."""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import tomli_w

from wactl.enums import Language, TemplateType
from wactl.errors import ConfigError, ExitCode, ValidationError
from wactl.replies.book import INTENT_WORDS, Reply, ReplyBook, ReplyKind
from wactl.replies.templates import (
    COMPUTED_FIELDS,
    INFO_FIELDS,
    MENU_MAX,
    TEXT_SPECS,
    OverrideError,
    TemplateError,
    fold,
    load_template,
    load_template_file,
)
from wactl.validation import DAYS

MADRID = ZoneInfo("Europe/Madrid")
MONDAY_10 = dt.datetime(2026, 3, 23, 10, 0, tzinfo=MADRID)  # a Monday
PLACEHOLDER_RE = re.compile(r"\{[^{}]*\}")

INFO = {
    "business_name": "Casa Pepe",
    "address": "Calle Mayor 1, Madrid",
    "phone": "+34600123456",
    "email": "hola@casapepe.example",
    "website": "https://casapepe.example",
    "maps_url": "https://maps.example/casa-pepe",
}
HOURS: dict[str, Any] = {
    "weekly": {
        **{day: ["09:00-14:00", "17:00-22:00"] for day in DAYS},
        "sun": [],
    },
    "holidays": ["2026-03-26"],
}
#: Sample values for the fields only hours.py fills, to render ``hours.*`` phrases alone.
PHRASE_FIELDS = {
    "time": "09:00",
    "day": "Monday",
    "when": "today at 09:00",
    "date": "2026-03-30",
    "ranges": "09:00–14:00",
    "dates": "Thursday 2026-03-26",
}
ALL_BOOKS = [(template, language) for template in TemplateType for language in Language]


def book(
    template: TemplateType = TemplateType.RESTAURANT,
    language: Language = Language.EN,
    overrides: dict[str, str] | None = None,
    info: dict[str, str] | None = None,
    hours: dict[str, Any] | None = HOURS,
) -> ReplyBook:
    return ReplyBook.build(
        template,
        language,
        overrides or {},
        INFO if info is None else info,
        hours_json=hours,
        timezone="Europe/Madrid",
    )


def reply(text: str, reply_book: ReplyBook | None = None, *, first: bool = False) -> Reply:
    return (reply_book or book()).reply(text, MONDAY_10, first_message=first)


# --- every template renders --------------------------------------------------------------


@pytest.mark.parametrize(("template", "language"), ALL_BOOKS)
@pytest.mark.parametrize("with_info", [True, False], ids=["info", "no-info"])
@pytest.mark.parametrize("hours", [HOURS, None], ids=["hours", "no-hours"])
def test_every_text_renders_without_placeholders(
    template: TemplateType, language: Language, with_info: bool, hours: dict[str, Any] | None
) -> None:
    reply_book = book(template, language, info=INFO if with_info else {}, hours=hours)
    texts = load_template(template).languages[language]
    keys = reply_book.text_keys()
    assert len(keys) == len(TEXT_SPECS) + 2 * len(texts.menu)
    for key in keys:
        for now in (MONDAY_10, MONDAY_10.replace(hour=15), MONDAY_10.replace(day=26)):
            rendered = reply_book.render(key, now, PHRASE_FIELDS)
            assert rendered.strip(), key
            assert not PLACEHOLDER_RE.search(rendered), (key, rendered)
            assert "{" not in rendered and "}" not in rendered, (key, rendered)
    location = reply_book.render("location", MONDAY_10)
    if with_info:
        assert INFO["address"] in location and INFO["maps_url"] in location
    else:
        assert texts.texts["missing.address"] in location
        assert texts.texts["missing.maps_url"] in location


@pytest.mark.parametrize(("template", "language"), ALL_BOOKS)
def test_every_reply_kind_renders(template: TemplateType, language: Language) -> None:
    reply_book = book(template, language, info={})
    words = INTENT_WORDS[language]
    texts = load_template(template).languages[language]
    cases = {
        ReplyKind.GREETING: words[ReplyKind.GREETING][0],
        ReplyKind.HOURS: words[ReplyKind.HOURS][0],
        ReplyKind.LOCATION: words[ReplyKind.LOCATION][1],
        ReplyKind.CONTACT: words[ReplyKind.CONTACT][0],
        ReplyKind.HANDOFF: words[ReplyKind.HANDOFF][0],
        ReplyKind.FALLBACK: "xyzzy",
    }
    for kind, text in cases.items():
        answer = reply_book.reply(text, MONDAY_10, first_message=False)
        assert answer.kind is kind, (text, answer.kind)
        assert answer.handoff is (kind is ReplyKind.HANDOFF)
        assert not PLACEHOLDER_RE.search(answer.text)
    for number, item in enumerate(texts.menu, start=1):
        by_number = reply_book.reply(str(number), MONDAY_10, first_message=False)
        assert by_number == Reply(ReplyKind.MENU_ITEM, by_number.text, False)
        assert not PLACEHOLDER_RE.search(by_number.text)
        by_keyword = reply_book.reply(item.keywords[0], MONDAY_10, first_message=False)
        assert by_keyword.text == by_number.text, (number, item.keywords[0])
    assert not PLACEHOLDER_RE.search(reply_book.rate_limited_text())


@pytest.mark.parametrize("template", list(TemplateType))
def test_languages_have_the_same_menu_shape(template: TemplateType) -> None:
    languages = load_template(template).languages
    sizes = {len(texts.menu) for texts in languages.values()}
    assert len(sizes) == 1 and 1 <= sizes.pop() <= MENU_MAX
    urgent = {tuple(item.urgent for item in texts.menu) for texts in languages.values()}
    assert len(urgent) == 1


def test_greeting_shows_the_numbered_menu_and_hours_today() -> None:
    text = reply("hello").text
    assert text.startswith("Hi! 👋 Welcome to Casa Pepe.\nWe're open now until 14:00.\n")
    assert "\n1. Our menu\n2. Book a table\n3. Takeaway and delivery\n" in text


def test_hours_answer_in_each_language() -> None:
    assert reply("hours").text == (
        "🕒 We're open now until 14:00.\n\n"
        "Our opening hours:\n"
        "Monday: 09:00–14:00, 17:00–22:00\n"
        "Tuesday: 09:00–14:00, 17:00–22:00\n"
        "Wednesday: 09:00–14:00, 17:00–22:00\n"
        "Thursday: 09:00–14:00, 17:00–22:00\n"
        "Friday: 09:00–14:00, 17:00–22:00\n"
        "Saturday: 09:00–14:00, 17:00–22:00\n"
        "Sunday: closed\n"
        "Closed for holidays: Thursday 2026-03-26"
    )
    spanish = book(language=Language.ES).reply("horario", MONDAY_10, first_message=False)
    assert spanish.text.startswith("🕒 Ahora estamos abiertos hasta las 14:00.\n\nNuestro horario:")
    saturday_night = dt.datetime(2026, 3, 28, 23, 0, tzinfo=MADRID)
    portuguese = book(language=Language.PT).reply("horário", saturday_night, first_message=False)
    assert portuguese.text.startswith(
        "🕒 Estamos fechados agora; abrimos segunda-feira às 09:00.\n\nNosso horário:"
    )


def test_hours_not_set_are_said_once() -> None:
    text = book(hours=None).reply("hours", MONDAY_10, first_message=False).text
    assert text == "🕒 We haven't published our opening hours yet; ask us here and we'll tell you."
    item = book(hours={"weekly": {}, "holidays": []}).reply("4", MONDAY_10, first_message=False)
    assert item.text == text


def test_missing_info_reads_as_a_phrase() -> None:
    text = book(info={"business_name": "Casa Pepe"}).reply(
        "contact", MONDAY_10, first_message=False
    )
    assert text.text == (
        "You can reach Casa Pepe here:\n"
        "📞 Phone: write to us right here on WhatsApp\n"
        "✉️ Email: not available yet, write to us here\n"
        "🌐 Website: ask us here and we'll send you the link"
    )
    nameless = book(info={"business_name": "  ", "phone": ""}).reply(
        "hi", MONDAY_10, first_message=False
    )
    assert nameless.text.startswith("Hi! 👋 Welcome to our restaurant.")


def test_info_values_are_inserted_verbatim() -> None:
    odd = book(info={"business_name": "Bar {phone} 100%"})
    assert reply("hi", odd).text.startswith("Hi! 👋 Welcome to Bar {phone} 100%.")


# --- matching -----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["2", "2.", " 2 ", "2)", "#2", "２", "2️⃣", "02"])
def test_a_bare_number_picks_the_menu_item(text: str) -> None:
    answer = reply(text)
    assert answer.kind is ReplyKind.MENU_ITEM
    assert answer.text.startswith("We'd love to have you!")


@pytest.mark.parametrize("text", ["0", "7", "99", "2.5", "2 3"])
def test_a_number_off_the_menu_gets_the_fallback(text: str) -> None:
    assert reply(text).kind is ReplyKind.FALLBACK


@pytest.mark.parametrize(
    ("language", "text", "kind"),
    [
        (Language.EN, "Hello!", ReplyKind.GREETING),
        (Language.EN, "MENU", ReplyKind.GREETING),
        (Language.EN, "start", ReplyKind.GREETING),
        (Language.EN, "What time do you open?", ReplyKind.HOURS),
        (Language.EN, "Where are you?", ReplyKind.LOCATION),
        (Language.EN, "phone number please", ReplyKind.CONTACT),
        (Language.EN, "Can I talk to a person?", ReplyKind.HANDOFF),
        (Language.EN, "human", ReplyKind.HANDOFF),
        (Language.EN, "person", ReplyKind.HANDOFF),
        (Language.ES, "hola", ReplyKind.GREETING),
        (Language.ES, "Buenas tardes", ReplyKind.GREETING),
        (Language.ES, "menú", ReplyKind.GREETING),
        (Language.ES, "MENÚ", ReplyKind.GREETING),
        (Language.ES, "¿Cuál es el horario?", ReplyKind.HOURS),
        (Language.ES, "¿a qué hora abrís?", ReplyKind.HOURS),
        (Language.ES, "¿Dónde estáis?", ReplyKind.LOCATION),
        (Language.ES, "direccion", ReplyKind.LOCATION),
        (Language.ES, "Teléfono", ReplyKind.CONTACT),
        (Language.ES, "quiero hablar con una persona", ReplyKind.HANDOFF),
        (Language.ES, "agente", ReplyKind.HANDOFF),
        (Language.PT, "olá", ReplyKind.GREETING),
        (Language.PT, "Oi!", ReplyKind.GREETING),
        (Language.PT, "ola", ReplyKind.GREETING),
        (Language.PT, "Qual o horário?", ReplyKind.HOURS),
        (Language.PT, "HORARIO", ReplyKind.HOURS),
        (Language.PT, "endereço", ReplyKind.LOCATION),
        (Language.PT, "onde fica?", ReplyKind.LOCATION),
        (Language.PT, "e-mail", ReplyKind.CONTACT),
        (Language.PT, "atendente", ReplyKind.HANDOFF),
        (Language.PT, "pessoa", ReplyKind.HANDOFF),
        (Language.PT, "quero falar com uma pessoa", ReplyKind.HANDOFF),
    ],
)
def test_intents_in_each_language(language: Language, text: str, kind: ReplyKind) -> None:
    answer = reply(text, book(language=language))
    assert answer.kind is kind
    assert answer.handoff is (kind is ReplyKind.HANDOFF)


@pytest.mark.parametrize(
    ("language", "text", "number"),
    [
        (Language.EN, "Do you have vegan dishes?", 1),
        (Language.EN, "I'd like to book a table for 4", 2),
        (Language.EN, "do you deliver?", 3),
        (Language.EN, "where do you deliver", 3),  # the longer keyword wins over "where"
        (Language.ES, "¿Tenéis carta de alergias?", 1),
        (Language.ES, "Quiero RESERVAR", 2),
        (Language.ES, "¿hacéis envíos a domicilio?", 3),
        (Language.ES, "horario de cocina", 4),  # longer than the hours word "horario"
        (Language.ES, "¿Hay aparcamiento?", 5),
        (Language.ES, "Es mi cumpleaños", 6),
        (Language.PT, "Qual o cardápio?", 1),
        (Language.PT, "cardapio", 1),
        (Language.PT, "reserva para sábado", 2),
        (Language.PT, "vocês fazem entrega?", 3),
        (Language.PT, "confraternização de empresa", 6),
    ],
)
def test_menu_keywords_in_each_language(language: Language, text: str, number: int) -> None:
    reply_book = book(language=language)
    answer = reply(text, reply_book)
    assert answer.kind is ReplyKind.MENU_ITEM
    assert answer == reply(str(number), reply_book)


@pytest.mark.parametrize(
    "text", ["how much per person?", "mesa para dos personas", "quanto custa por pessoa?"]
)
def test_person_inside_a_sentence_is_not_a_handoff(text: str) -> None:
    language = {"h": Language.EN, "m": Language.ES, "q": Language.PT}[text[0]]
    assert reply(text, book(language=language)).kind is not ReplyKind.HANDOFF


def test_keywords_match_whole_words_only() -> None:
    # "eat" is a keyword of item 1, "open" an hours word: neither is found inside a word.
    assert reply("great, reopened").kind is ReplyKind.FALLBACK
    assert reply("hithere").kind is ReplyKind.FALLBACK


def test_a_request_for_a_person_beats_other_keywords() -> None:
    answer = reply("I want to book a table, can I speak to a person?")
    assert answer.kind is ReplyKind.HANDOFF and answer.handoff


def test_a_greeting_with_a_question_answers_the_question() -> None:
    assert reply("hola, ¿a qué hora abren?", book(language=Language.ES)).kind is ReplyKind.HOURS


def test_urgent_items_win_over_everything() -> None:
    clinic = book(TemplateType.CLINIC)
    answer = reply("urgent!! chest pain, I need to talk to a person", clinic)
    assert answer.kind is ReplyKind.MENU_ITEM and not answer.handoff
    assert answer.text.startswith("🚨 If this is an emergency, call your local emergency number")
    spanish = reply("Es urgente, me duele", book(TemplateType.CLINIC, Language.ES))
    assert spanish.text.startswith("🚨 Si es una emergencia, llama ahora mismo al 112")
    portuguese = reply("emergencia!", book(TemplateType.CLINIC, Language.PT))
    assert portuguese.text.startswith("🚨 Em caso de emergência, ligue agora mesmo para o 192")


def test_other_languages_intent_words_are_understood() -> None:
    portuguese = book(language=Language.PT)
    assert reply("hello", portuguese).kind is ReplyKind.GREETING
    assert reply("opening hours?", portuguese).kind is ReplyKind.HOURS
    assert reply("hola", book()).kind is ReplyKind.GREETING
    # ... but the tenant's own language decides first: "hora" is Spanish and Portuguese.
    assert reply("que hora", portuguese).text.startswith("🕒 Estamos abertos agora")


def test_first_message() -> None:
    # Not understood: the greeting, not the fallback.
    assert reply("good evening!!", first=True).kind is ReplyKind.GREETING
    assert reply("asdf", first=True).kind is ReplyKind.GREETING
    assert reply("asdf", first=False).kind is ReplyKind.FALLBACK
    # Understood: answered directly.
    assert reply("where are you", first=True).kind is ReplyKind.LOCATION
    assert reply("3", first=True).kind is ReplyKind.MENU_ITEM
    assert reply("human", first=True).handoff


def test_empty_and_symbol_messages() -> None:
    assert reply("").kind is ReplyKind.FALLBACK
    assert reply("👍").kind is ReplyKind.FALLBACK
    assert reply("?!", first=True).kind is ReplyKind.GREETING


def test_replies_are_deterministic() -> None:
    first = [reply(text) for text in ("hi", "2", "hours", "xyz", "human")]
    second = [reply(text, book()) for text in ("hi", "2", "hours", "xyz", "human")]
    assert first == second


def test_fallback_and_handoff_texts() -> None:
    assert reply("xyz").text.startswith("Sorry, I didn't quite get that 🙏 Reply with one of these")
    assert reply("xyz").text.endswith(
        "6. Groups and events\n\nOr write *human* to talk to a person."
    )
    assert reply("human").text.startswith("Of course! I've passed your message on to our team")


def test_rate_limited_text() -> None:
    assert book().rate_limited_text() == (
        "You're sending a lot of messages at once 😅 Please wait a moment before writing again."
    )
    assert book(language=Language.PT).rate_limited_text().startswith("Você está enviando muitas")


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="aware"):
        book().reply("hi", dt.datetime(2026, 3, 23, 10, 0), first_message=False)


def test_fold_removes_case_accents_and_punctuation() -> None:
    assert fold("¿Horário?") == "horario"
    assert fold("  Olá,   MENÚ!! ") == "ola menu"
    assert fold("Ça va") == "ca va"
    assert fold("2️⃣") == "2"


# --- overrides ----------------------------------------------------------------------------


def test_overrides_replace_texts_labels_answers_and_keywords() -> None:
    reply_book = book(
        overrides={
            "greeting": "Welcome to {business_name}! {menu}",
            "menu.2.label": "Reservations",
            "menu.2.answer": "Call {phone} to book.",
            "menu.2.keywords": "reservations, mesa,  ",
            "location": "We are at {address}.",
            "hours.open_until": "Open till {time}!",
        }
    )
    assert reply("hi", reply_book).text.startswith(
        "Welcome to Casa Pepe! 1. Our menu\n2. Reservations"
    )
    assert reply("2", reply_book).text == "Call +34600123456 to book."
    assert reply("mesa", reply_book).text == "Call +34600123456 to book."
    assert reply("table", reply_book).kind is ReplyKind.FALLBACK  # old keywords are gone
    assert reply("where", reply_book).text == "We are at Calle Mayor 1, Madrid."
    assert reply("hours", reply_book).text.startswith("🕒 Open till 14:00!")


def test_an_override_of_missing_phrases() -> None:
    reply_book = book(info={}, overrides={"missing.business_name": "Casa Pepe"})
    assert reply("hi", reply_book).text.startswith("Hi! 👋 Welcome to Casa Pepe.")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"greting": "Hi"}, "overrides.greting: is not a reply text; did you mean 'greeting'?"),
        (
            {"hours.open_untill": "Open till {time}"},
            "overrides.hours.open_untill: is not a reply text; did you mean 'hours.open_until'?",
        ),
        (
            {"menu.7.answer": "x"},
            "overrides.menu.7.answer: is not a reply text; "
            "the menu has 6 items: use menu.1.answer to menu.6.answer",
        ),
        (
            {"menu.2.anwser": "x"},
            "overrides.menu.2.anwser: is not a reply text; did you mean 'menu.2.answer'?",
        ),
        (
            {"zzz": "x"},
            "overrides.zzz: is not a reply text; use a template text key such as "
            "'greeting', 'hours.answer' or 'menu.1.answer'",
        ),
        (
            {"location": "At {adress}"},
            "overrides.location: unknown placeholder {adress}; did you mean {address}?",
        ),
        (
            {"greeting": "Hi {0}"},
            "overrides.greeting: unknown placeholder {0}; use {address}, {business_name}, "
            "{email}, {hours_today}, {hours_week}, {maps_url}, {menu}, {phone}, {website}",
        ),
        (
            {"rate_limited": "Slow down {menu}"},
            "overrides.rate_limited: unknown placeholder {menu}; use {address}, "
            "{business_name}, {email}, {maps_url}, {phone}, {website}",
        ),
        (
            {"menu.1.label": "Menu {hours_today}"},
            "overrides.menu.1.label: unknown placeholder {hours_today}; use {address}, "
            "{business_name}, {email}, {maps_url}, {phone}, {website}",
        ),
        (
            {"hours.week_closed": "closed {phone}"},
            "overrides.hours.week_closed: unknown placeholder {phone}; "
            "this text takes no placeholders",
        ),
        ({"hours.open_until": "Open now."}, "overrides.hours.open_until: must contain {time}"),
        (
            {"hours.when_day": "on {day}"},
            "overrides.hours.when_day: must contain {time}",
        ),
        (
            {"contact": "Call {phone!r}"},
            "overrides.contact: placeholder {phone} must not have a format or conversion; "
            "write {phone}",
        ),
        (
            {"contact": "Call {phone:>20}"},
            "overrides.contact: placeholder {phone} must not have a format or conversion; "
            "write {phone}",
        ),
        (
            {"fallback": "Oops { try again"},
            "overrides.fallback: has a lone { or }; write {{ or }} for a literal brace",
        ),
        ({"handoff": "   "}, "overrides.handoff: is empty"),
        (
            {"menu.3.keywords": " , "},
            "overrides.menu.3.keywords: must list at least one keyword, separated by commas",
        ),
        (
            {"menu.3.keywords": "table, takeaway"},
            "overrides.menu.3.keywords: keyword 'table' is also a keyword of menu.2",
        ),
        (
            {"menu.1.keywords": "Reservation"},
            "overrides.menu.2.keywords: keyword 'reservation' is also a keyword of menu.1",
        ),
    ],
)
def test_override_errors(overrides: dict[str, str], message: str) -> None:
    with pytest.raises(OverrideError) as caught:
        book(overrides=overrides)
    assert caught.value.one_line() == message
    assert isinstance(caught.value, ValidationError)
    assert caught.value.exit_code is ExitCode.USAGE


def test_override_values_must_be_text() -> None:
    with pytest.raises(OverrideError) as caught:
        book(overrides={"greeting": 3})  # type: ignore[dict-item]
    assert caught.value.one_line() == "overrides.greeting: must be text, not int"


def test_override_errors_are_reported_in_key_order() -> None:
    with pytest.raises(OverrideError) as caught:
        book(overrides={"zeta": "x", "alpha": "y"})
    assert caught.value.field == "overrides.alpha"


def test_info_errors() -> None:
    with pytest.raises(OverrideError) as caught:
        book(info={"adress": "Calle Mayor 1"})
    assert caught.value.one_line() == "info.adress: is not a business fact; did you mean 'address'?"
    with pytest.raises(OverrideError) as caught:
        book(info={"phone": 34600123456})  # type: ignore[dict-item]
    assert caught.value.one_line() == "info.phone: must be text, not int"
    # A JSON null is "not given", like a blank.
    assert reply("hi", book(info={"phone": None})).kind is ReplyKind.GREETING  # type: ignore[dict-item]


def test_bad_hours_and_zone_fail_at_build_time() -> None:
    with pytest.raises(ValidationError, match=r"hours\.mon"):
        book(hours={"weekly": {"mon": ["25:00-26:00"]}})
    with pytest.raises(ValidationError, match="timezone"):
        ReplyBook.build(TemplateType.GENERIC, Language.EN, {}, {}, timezone="Mars/Olympus")


# --- template files -----------------------------------------------------------------------


def packaged(template: TemplateType = TemplateType.GENERIC) -> dict[str, Any]:
    return tomllib.loads(Path(load_template(template).source).read_text(encoding="utf-8"))


def write(tmp_path: Path, document: dict[str, Any], name: str = "broken.toml") -> Path:
    path = tmp_path / name
    path.write_text(tomli_w.dumps(document, multiline_strings=True), encoding="utf-8")
    return path


def load_error(path: Path) -> TemplateError:
    with pytest.raises(TemplateError) as caught:
        load_template_file(path)
    assert isinstance(caught.value, ConfigError)
    assert caught.value.exit_code is ExitCode.CONFIG
    return caught.value


def test_packaged_templates_ship_every_type() -> None:
    for template in TemplateType:
        loaded = load_template(template)
        assert loaded.name == template.value
        assert Path(loaded.source).name == f"{template.value}.toml"
        assert set(loaded.languages) == set(Language)


def test_a_copy_of_a_packaged_template_loads(tmp_path: Path) -> None:
    loaded = load_template_file(write(tmp_path, packaged(), "copy.toml"))
    assert loaded.name == "copy"
    assert loaded.languages == load_template(TemplateType.GENERIC).languages


def test_missing_key(tmp_path: Path) -> None:
    document = packaged()
    del document["es"]["fallback"]
    path = write(tmp_path, document)
    error = load_error(path)
    assert error.one_line() == f"{path}: es.fallback: is missing"
    assert (error.source, error.language, error.key) == (str(path), "es", "fallback")


def test_missing_hours_phrase(tmp_path: Path) -> None:
    document = packaged()
    del document["pt"]["hours"]["week_line"]
    path = write(tmp_path, document)
    assert load_error(path).one_line() == f"{path}: pt.hours.week_line: is missing"


def test_unknown_key_names_the_closest(tmp_path: Path) -> None:
    document = packaged()
    document["en"]["greting"] = document["en"].pop("greeting")
    path = write(tmp_path, document)
    assert load_error(path).one_line() == (
        f"{path}: en.greting: is not a template key; did you mean 'greeting'?"
    )


def test_unknown_placeholder(tmp_path: Path) -> None:
    document = packaged()
    document["pt"]["menu"][1]["answer"] = "Veja {site}"
    path = write(tmp_path, document)
    error = load_error(path)
    assert error.one_line() == (
        f"{path}: pt.menu.2.answer: unknown placeholder {{site}}; did you mean {{website}}?"
    )
    assert error.key == "menu.2.answer"


def test_phrase_without_its_field(tmp_path: Path) -> None:
    document = packaged()
    document["es"]["hours"]["when_today"] = "hoy"
    path = write(tmp_path, document)
    assert load_error(path).one_line() == f"{path}: es.hours.when_today: must contain {{time}}"


@pytest.mark.parametrize("field", ["label", "answer", "keywords"])
def test_menu_item_without_a_field(tmp_path: Path, field: str) -> None:
    document = packaged()
    del document["en"]["menu"][2][field]
    path = write(tmp_path, document)
    assert load_error(path).one_line() == f"{path}: en.menu.3.{field}: is missing"


@pytest.mark.parametrize(
    ("keywords", "problem"),
    [
        ([], 'must be a non-empty list of words, e.g. ["book", "table"]'),
        ("about", 'must be a non-empty list of words, e.g. ["book", "table"]'),
        (["about", "?!"], "'?!' is not a keyword"),
    ],
)
def test_bad_keywords(tmp_path: Path, keywords: Any, problem: str) -> None:
    document = packaged()
    document["en"]["menu"][0]["keywords"] = keywords
    path = write(tmp_path, document)
    assert load_error(path).one_line() == f"{path}: en.menu.1.keywords: {problem}"


def test_keyword_shared_by_two_items(tmp_path: Path) -> None:
    document = packaged()
    document["es"]["menu"][3]["keywords"].append("Empresa")
    path = write(tmp_path, document)
    assert load_error(path).one_line() == (
        f"{path}: es.menu.4.keywords: keyword 'Empresa' is also a keyword of menu.1"
    )


@pytest.mark.parametrize("size", [0, MENU_MAX + 1])
def test_menu_length(tmp_path: Path, size: int) -> None:
    document = packaged()
    item = document["en"]["menu"][0]
    document["en"]["menu"] = [{**item, "keywords": [f"word{number}"]} for number in range(size)]
    path = write(tmp_path, document)
    assert load_error(path).one_line() == (
        f"{path}: en.menu: has {size} items; a numbered menu has 1 to {MENU_MAX}"
    )


def test_unknown_menu_item_key_and_bad_urgent(tmp_path: Path) -> None:
    document = packaged()
    document["en"]["menu"][0]["keyword"] = ["x"]
    path = write(tmp_path, document)
    assert load_error(path).one_line() == (
        f"{path}: en.menu.1.keyword: is not a menu item key; did you mean 'keywords'?"
    )
    document = packaged()
    document["en"]["menu"][0]["urgent"] = "yes"
    path = write(tmp_path, document)
    assert load_error(path).one_line() == f"{path}: en.menu.1.urgent: must be true or false"


def test_days(tmp_path: Path) -> None:
    document = packaged()
    document["pt"]["days"] = document["pt"]["days"][:6]
    path = write(tmp_path, document)
    assert load_error(path).one_line() == (
        f"{path}: pt.days: must list the seven day names, Monday first"
    )


def test_missing_and_unknown_language(tmp_path: Path) -> None:
    document = packaged()
    del document["pt"]
    path = write(tmp_path, document)
    assert load_error(path).one_line() == f"{path}: pt: has no [pt] table"
    document = packaged()
    document["fr"] = document["en"]
    path = write(tmp_path, document)
    assert load_error(path).one_line() == f"{path}: fr: is not a language; use en, es, pt"
    document = packaged()
    document["eng"] = document["en"]
    path = write(tmp_path, document)
    assert load_error(path).one_line() == f"{path}: eng: is not a language; did you mean 'en'?"


def test_text_of_the_wrong_type(tmp_path: Path) -> None:
    document = packaged()
    document["es"]["handoff"] = ["not", "a", "text"]
    path = write(tmp_path, document)
    assert load_error(path).one_line() == f"{path}: es.handoff: must be text, not list"


def test_not_toml_and_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[en]\ngreeting = "unterminated\n', encoding="utf-8")
    assert load_error(path).one_line().startswith(f"{path}: is not valid TOML: ")
    missing = tmp_path / "absent.toml"
    assert load_error(missing).one_line().startswith(f"{missing}: cannot be read: ")


def test_every_text_key_is_documented_in_every_packaged_file() -> None:
    """The placeholder lists the files' header comments promise are the real ones."""
    fields = {*INFO_FIELDS, *COMPUTED_FIELDS, *PHRASE_FIELDS}
    for spec in TEXT_SPECS.values():
        assert spec.allowed <= fields
    for template in TemplateType:
        header = Path(load_template(template).source).read_text(encoding="utf-8")[:1500]
        for name in sorted(fields):
            assert f"{{{name}}}" in header, (template, name)
