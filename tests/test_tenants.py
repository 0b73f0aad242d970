"""`wactl tenant ...` end to end through the CLI edge, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.conftest import CLI
from tests.support import db_session
from wactl.db.base import Base
from wactl.db.models import (
    MessageLog,
    PortalEventLog,
    SetupRequest,
    Tenant,
    TenantConfig,
    User,
    WhatsappSession,
    WorkerProcess,
)
from wactl.enums import Direction, Language, TemplateType

LIST_KEYS = {
    "id",
    "slug",
    "name",
    "status",
    "engine",
    "phone_number",
    "business_name",
    "template_type",
    "language",
    "timezone",
    "created_at",
    "updated_at",
}


def _create(cli: CLI, slug: str = "casa-pepe", *extra: str) -> None:
    result = cli("tenant", "create", slug, "--name", "Casa Pepe", *extra)
    assert result.code == 0, result.err


def _count(url: str, model: type[Base]) -> int:
    with db_session(url) as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def test_create_list_show(cli: CLI, db_url: str) -> None:
    result = cli(
        "tenant",
        "create",
        "casa-pepe",
        "--name",
        "  Casa   Pepe ",
        "--template",
        "restaurant",
        "--language",
        "es",
        "--phone",
        "+34 600 123 456",
        "--timezone",
        "Europe/Madrid",
        "--engine",
        "whatsapp-web",
        "--json",
    )
    assert result.code == 0, result.err
    created = json.loads(result.out)
    assert created["name"] == "Casa Pepe"
    assert created["phone_number"] == "+34600123456"
    assert created["status"] == "STOPPED"

    listed = json.loads(cli("tenant", "list", "--json").out)
    assert len(listed) == 1
    assert set(listed[0]) == LIST_KEYS
    assert {
        k: listed[0][k] for k in ("slug", "engine", "language", "template_type", "timezone")
    } == {
        "slug": "casa-pepe",
        "engine": "whatsapp-web",
        "language": "es",
        "template_type": "restaurant",
        "timezone": "Europe/Madrid",
    }

    table = cli("tenant", "list").out
    assert "casa-pepe" in table and "+34600123456" in table and "whatsapp-web" in table

    shown = json.loads(cli("tenant", "show", "casa-pepe", "--json").out)
    assert set(shown) == LIST_KEYS | {"hours", "holidays", "wa_js", "session", "worker"}
    assert shown["session"] == {"state": "UNLINKED", "has_qr": False, "last_seen_at": None}
    assert shown["worker"]["status"] == "STOPPED" and shown["worker"]["desired"] == "STOPPED"
    text = cli("tenant", "show", "casa-pepe").out
    assert "Europe/Madrid" in text and "not set yet" in text


def test_defaults_come_from_config(cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WACTL_DEFAULTS_LANGUAGE", "pt")
    monkeypatch.setenv("WACTL_DEFAULTS_TIMEZONE", "America/Sao_Paulo")
    _create(cli, "padaria")
    shown = json.loads(cli("tenant", "show", "padaria", "--json").out)
    assert (shown["language"], shown["timezone"], shown["template_type"], shown["engine"]) == (
        "pt",
        "America/Sao_Paulo",
        "generic",
        "sandbox",
    )


def test_empty_list(cli: CLI, db_url: str) -> None:
    assert cli("tenant", "list", "--json").out == "[]\n"
    result = cli("tenant", "list")
    assert result.code == 0 and result.out == ""
    assert "no tenants yet" in result.err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["Bad_Slug", "--name", "X"], 2, "error: slug: 'Bad_Slug' is not a valid slug; use 1-40"),
        (
            ["ok", "--name", "X", "--phone", "600123456"],
            2,
            "error: phone: '600123456' has no country code",
        ),
        (["ok", "--name", "X", "--phone", "+99 123"], 2, "error: phone: '+99 123' is not a"),
        (
            ["ok", "--name", "X", "--timezone", "Mars/Base"],
            2,
            "error: timezone: 'Mars/Base' is not a known time zone",
        ),
        (
            ["ok", "--name", "X", "--template", "bakery"],
            2,
            "error: Invalid value for '--template': 'bakery' is not one of",
        ),
        (["ok", "--name", "   "], 2, "error: name: must not be empty\n"),
        (["ok"], 2, "error: Missing option '--name'; see `wactl tenant create --help`\n"),
    ],
)
def test_create_rejects_bad_input(
    cli: CLI, db_url: str, args: list[str], code: int, message: str
) -> None:
    result = cli("tenant", "create", *args)
    assert result.code == code
    assert result.err.startswith(message)
    assert result.err.count("\n") == 1
    assert _count(db_url, Tenant) == 0
    assert _count(db_url, PortalEventLog) == 0


def test_conflicts(cli: CLI, db_url: str) -> None:
    _create(cli, "casa-pepe", "--phone", "+34600123456")
    result = cli("tenant", "create", "casa-pepe", "--name", "Other")
    assert (result.code, result.err) == (
        6,
        "error: tenant 'casa-pepe' already exists; "
        "use `wactl tenant edit casa-pepe` to change it\n",
    )
    result = cli("tenant", "create", "other", "--name", "Other", "--phone", "+34 600-123-456")
    assert (result.code, result.err) == (
        6,
        "error: phone number +34600123456 already belongs to tenant 'casa-pepe'; "
        "one WhatsApp number can serve only one tenant\n",
    )
    _create(cli, "other")
    result = cli("tenant", "edit", "other", "--phone", "+34600123456")
    assert result.code == 6
    assert _count(db_url, Tenant) == 2


def test_not_found_suggests(cli: CLI, db_url: str) -> None:
    _create(cli)
    result = cli("tenant", "show", "casa-pep")
    assert (result.code, result.err) == (
        5,
        "error: no tenant 'casa-pep'; did you mean 'casa-pepe'?\n",
    )
    result = cli("tenant", "delete", "zzz", "--yes")
    assert (result.code, result.err) == (5, "error: no tenant 'zzz'; see `wactl tenant list`\n")


def test_edit(cli: CLI, db_url: str) -> None:
    _create(cli, "casa-pepe", "--phone", "+34600123456")
    result = cli(
        "tenant", "edit", "casa-pepe", "--language", "pt", "--timezone", "Europe/Lisbon", "--json"
    )
    assert result.code == 0, result.err
    assert json.loads(result.out) == {
        "timezone": {"old": "UTC", "new": "Europe/Lisbon"},
        "language": {"old": "en", "new": "pt"},
    }
    result = cli("tenant", "edit", "casa-pepe", "--language", "pt")
    assert "nothing changed" in result.err
    result = cli("tenant", "edit", "casa-pepe", "--phone", "")
    assert result.code == 0
    assert json.loads(cli("tenant", "show", "casa-pepe", "--json").out)["phone_number"] is None
    result = cli("tenant", "edit", "casa-pepe")
    assert result.code == 2
    assert result.err.startswith("error: nothing to change; give at least one of --name")
    result = cli("tenant", "edit", "casa-pepe", "--timezone", "Nowhere/City", "--language", "es")
    assert result.code == 2
    # all or nothing: the valid --language did not slip through
    assert json.loads(cli("tenant", "show", "casa-pepe", "--json").out)["language"] == "pt"


def _populate_owned_rows(url: str, slug: str) -> None:
    from wactl.db import requests

    with db_session(url) as session:
        tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
        assert tenant is not None
        user = User(tenant_id=tenant.id, name="Owner", email=f"{slug}@example.com")
        session.add(user)
        session.add(
            MessageLog(
                tenant_id=tenant.id,
                direction=Direction.IN,
                from_number="+14155552671",
                to_number="+34600123456",
                message_text="hola",
                wa_message_id="m1",
            )
        )
        session.flush()
        requests.submit_request(
            session,
            tenant,
            actor=f"portal:{slug}@example.com",
            business_name="Casa Pepe",
            template=TemplateType.RESTAURANT,
            language=Language.ES,
            whatsapp_number="+34600999888",
            timezone="Europe/Madrid",
            user_id=user.id,
        )


def test_delete_cascades_and_keeps_the_audit_trail(cli: CLI, db_url: str) -> None:
    _create(cli, "casa-pepe")
    _create(cli, "keep-me")
    _populate_owned_rows(db_url, "casa-pepe")
    _populate_owned_rows(db_url, "keep-me")

    result = cli("tenant", "delete", "casa-pepe", input="n\n")
    assert result.code == 8
    assert _count(db_url, Tenant) == 2

    result = cli("tenant", "delete", "casa-pepe", input="y\n")
    assert result.code == 0, result.err
    for model in (
        Tenant,
        TenantConfig,
        WhatsappSession,
        WorkerProcess,
        User,
        MessageLog,
        SetupRequest,
    ):
        assert _count(db_url, model) == 1, model.__tablename__
    with db_session(db_url) as session:
        events = session.scalars(
            select(PortalEventLog)
            .where(PortalEventLog.tenant_slug == "casa-pepe")
            .order_by(PortalEventLog.id)
        ).all()
        assert [e.event_type for e in events] == [
            "tenant.created",
            "request.submitted",
            "tenant.deleted",
        ]
        assert all(e.tenant_id is None for e in events)

    result = cli("tenant", "delete", "keep-me", "--yes")
    assert result.code == 0
    assert _count(db_url, Tenant) == 0


def test_config_export_apply_round_trip(cli: CLI, db_url: str, tmp_path: Path) -> None:
    _create(cli, "casa-pepe", "--template", "restaurant", "--phone", "+34600123456")
    exported = cli("tenant", "config", "export", "casa-pepe").out
    path = tmp_path / "t.toml"
    path.write_text(exported)
    result = cli("tenant", "config", "apply", "casa-pepe", str(path))
    assert (result.code, result.out) == (0, "")
    assert "no changes" in result.err

    edited = exported.replace('language = "en"', 'language = "es"').replace(
        "[hours]\n", '[hours]\nmon = ["17:00-22:00", "09:00-14:00"]\nsat = ["10:00-24:00"]\n'
    )
    edited = edited.replace("holidays = []", 'holidays = ["2026-12-25", 2027-01-01, "2026-12-25"]')
    path.write_text(edited)
    before = _count(db_url, PortalEventLog)
    result = cli("tenant", "config", "apply", "casa-pepe", str(path), "--dry-run")
    assert result.code == 0
    assert '-language = "en"\n+language = "es"' in result.out
    assert "dry run" in result.err
    assert _count(db_url, PortalEventLog) == before
    assert json.loads(cli("tenant", "show", "casa-pepe", "--json").out)["language"] == "en"

    result = cli("tenant", "config", "apply", "casa-pepe", str(path))
    assert result.code == 0, result.err
    shown = json.loads(cli("tenant", "show", "casa-pepe", "--json").out)
    assert shown["language"] == "es"
    assert shown["hours"]["mon"] == ["09:00-14:00", "17:00-22:00"]
    assert shown["hours"]["sat"] == ["10:00-24:00"]
    assert shown["hours"]["sun"] == []
    assert shown["holidays"] == ["2026-12-25", "2027-01-01"]
    assert _count(db_url, PortalEventLog) == before + 1

    # The export of the applied state applies cleanly again (idempotent round trip).
    path.write_text(cli("tenant", "config", "export", "casa-pepe").out)
    assert "no changes" in cli("tenant", "config", "apply", "casa-pepe", str(path)).err

    # stdin works too, and leaving phone_number out removes it.
    text = path.read_text().replace('phone_number = "+34600123456"\n', "")
    result = cli("tenant", "config", "apply", "casa-pepe", "-", input=text)
    assert result.code == 0, result.err
    assert json.loads(cli("tenant", "show", "casa-pepe", "--json").out)["phone_number"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ('timezone = "UTC"', 'timezone = "Mars/Base"'),
            "timezone: 'Mars/Base' is not a known time zone",
        ),
        (('language = "en"', 'language = "fr"'), "language: 'fr' is not one of en, es, pt"),
        (
            ('template = "generic"', 'template = "restaurnt"'),
            "template: 'restaurnt' is not one of restaurant, clinic, salon, retail, generic; "
            "did you mean 'restaurant'?",
        ),
        (
            ("[hours]\n", '[hours]\nmon = ["14:00-09:00"]\n'),
            "hours.mon: '14:00-09:00' ends before it starts",
        ),
        (
            ("[hours]\n", '[hours]\nmon = ["09:00-14:00", "13:00-15:00"]\n'),
            "hours.mon: '09:00-14:00' and '13:00-15:00' overlap",
        ),
        (
            ("[hours]\n", '[hours]\nmonday = ["09:00-14:00"]\n'),
            "hours.monday: is not a day; did you mean 'mon'?",
        ),
        (("holidays = []", 'holidays = ["25/12/2026"]'), "holidays: '25/12/2026' is not a date"),
        (
            ('language = "en"', 'langauge = "en"'),
            "langauge: is not a tenant setting; did you mean 'language'?",
        ),
        (('name = "Casa Pepe"', 'name = "Casa Pepe'), "not valid TOML"),
        (
            ("# wactl tenant", 'slug = "other"\n# wactl tenant'),
            "slug: names another tenant, not 'casa-pepe'",
        ),
    ],
)
def test_config_apply_rejects_and_writes_nothing(
    cli: CLI, db_url: str, tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    _create(cli)
    exported = cli("tenant", "config", "export", "casa-pepe").out
    # Also change the name, to check that nothing at all is written on error.
    edited = exported.replace('name = "Casa Pepe"\nbusiness', 'name = "Renamed"\nbusiness')
    assert change[0] in edited
    path = tmp_path / "bad.toml"
    path.write_text(edited.replace(change[0], change[1], 1))
    before = cli("tenant", "show", "casa-pepe", "--json").out
    result = cli("tenant", "config", "apply", "casa-pepe", str(path))
    assert result.code == 2
    assert result.err.startswith(f"error: {path}: ")
    assert message in result.err
    assert result.err.count("\n") == 1
    assert cli("tenant", "show", "casa-pepe", "--json").out == before


def test_config_apply_missing_file(cli: CLI, db_url: str, tmp_path: Path) -> None:
    _create(cli)
    result = cli("tenant", "config", "apply", "casa-pepe", str(tmp_path / "nope.toml"))
    assert (result.code, result.err) == (
        2,
        f"error: cannot read {tmp_path / 'nope.toml'}: No such file or directory\n",
    )


def test_config_apply_texts_and_info(cli: CLI, db_url: str, tmp_path: Path) -> None:
    _create(cli, "casa-pepe", "--template", "restaurant")
    exported = cli("tenant", "config", "export", "casa-pepe").out
    assert "\n[info]\n" in exported and "\n[texts]\n" in exported
    edited = exported.replace(
        "[info]\n", '[info]\naddress = "Calle Mayor 1"\nwebsite = "https://pepe.example"\n'
    ).replace("[texts]\n", '[texts]\ngreeting = "Hola from {business_name}!\\n{menu}"\n')
    path = tmp_path / "t.toml"
    path.write_text(edited)
    result = cli("tenant", "config", "apply", "casa-pepe", str(path))
    assert result.code == 0, result.err
    again = cli("tenant", "config", "export", "casa-pepe").out
    assert 'address = "Calle Mayor 1"' in again
    assert "greeting = " in again and "{business_name}" in again
    path.write_text(again)
    assert "no changes" in cli("tenant", "config", "apply", "casa-pepe", str(path)).err


@pytest.mark.parametrize(
    ("table_line", "message"),
    [
        ('[texts]\ngreetin = "hi"\n', "texts.greetin: is not a reply text"),
        ('[texts]\ngreeting = "hi {nosuch}"\n', "texts.greeting: "),
        ('[info]\naddres = "x"\n', "info.addres: is not a business fact; did you mean 'address'?"),
        ("[info]\naddress = 3\n", "info.address: must be text"),
    ],
)
def test_config_apply_rejects_bad_texts_and_info(
    cli: CLI, db_url: str, tmp_path: Path, table_line: str, message: str
) -> None:
    _create(cli, "casa-pepe", "--template", "restaurant")
    exported = cli("tenant", "config", "export", "casa-pepe").out
    header = table_line.split("\n", 1)[0] + "\n"
    path = tmp_path / "bad.toml"
    path.write_text(exported.replace(header, table_line))
    before = cli("tenant", "config", "export", "casa-pepe").out
    result = cli("tenant", "config", "apply", "casa-pepe", str(path))
    assert result.code == 2
    assert result.err.startswith(f"error: {path}: {message}"), result.err
    assert result.err.count("\n") == 1
    assert cli("tenant", "config", "export", "casa-pepe").out == before
