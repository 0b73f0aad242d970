"""Tenants: create, read, edit, delete; one tenant as `tenant show` and the dashboard
show it (JSON, and label/value pairs for people); and the config-as-code document.

Functions take an open `Session` (the caller owns the transaction, see
`wactl.db.engine.session_scope`) and raise wactl errors: `NotFoundError` for an unknown
slug, `ConflictError` for a taken slug or phone number, `ValidationError` for bad values.
Every change writes its audit row in the same transaction.
"""

from __future__ import annotations

import datetime as dt
import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wactl import validation
from wactl.db import audit
from wactl.db.models import Tenant, TenantConfig, WhatsappSession, WorkerProcess
from wactl.enums import EngineName, Language, TemplateType, TenantStatus
from wactl.errors import ConflictError, NotFoundError, ValidationError
from wactl.formatting import duration, local_time, or_dash
from wactl.inputs import parse_toml

if TYPE_CHECKING:
    from wactl.db.wajs_releases import Effective


@dataclass(frozen=True)
class TenantChanges:
    """Fields an operator may set; None means "leave as it is"."""

    name: str | None = None
    phone_number: str | None = None
    template: TemplateType | None = None
    language: Language | None = None
    timezone: str | None = None
    engine: EngineName | None = None
    business_name: str | None = None
    #: The wa-js version this tenant runs instead of the fleet's (a canary), or
    #: "default" to follow the fleet again; vetted by `wajs_releases.vet` beforehand.
    wa_js: str | None = None


def get_tenant(session: Session, slug: str) -> Tenant:
    tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
    if tenant is None:
        known = list(session.scalars(select(Tenant.slug)))
        near = difflib.get_close_matches(slug, known, n=1)
        hint = f"did you mean '{near[0]}'?" if near else "see `wactl tenant list`"
        raise NotFoundError(f"no tenant '{slug}'", hint=hint)
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    return list(session.scalars(select(Tenant).order_by(Tenant.slug)))


def check_phone_free(session: Session, phone: str, tenant: Tenant | None) -> None:
    query = select(Tenant.slug).where(Tenant.phone_number == phone)
    if tenant is not None:
        query = query.where(Tenant.id != tenant.id)
    owner = session.scalar(query)
    if owner is not None:
        raise ConflictError(
            f"phone number {phone} already belongs to tenant '{owner}'",
            hint="one WhatsApp number can serve only one tenant",
        )


def create_tenant(
    session: Session,
    *,
    slug: str,
    name: str,
    template: TemplateType,
    language: Language,
    timezone: str,
    engine: EngineName,
    phone_number: str | None,
    actor: str,
) -> Tenant:
    """A configured tenant, ready to start (status STOPPED), with its session and worker rows."""
    slug = validation.validate_slug(slug)
    name = validation.validate_name("name", name)
    timezone = validation.validate_timezone(timezone)
    phone = validation.normalize_phone(phone_number) if phone_number else None
    if session.scalar(select(func.count()).where(Tenant.slug == slug)):
        raise ConflictError(
            f"tenant '{slug}' already exists", hint=f"use `wactl tenant edit {slug}` to change it"
        )
    if phone is not None:
        check_phone_free(session, phone, None)
    tenant = Tenant(
        slug=slug, name=name, phone_number=phone, engine=engine, status=TenantStatus.STOPPED
    )
    tenant.config = TenantConfig(
        template_type=template,
        business_name=name,
        language=language,
        timezone=timezone,
        hours_json={"weekly": {}, "holidays": []},
    )
    new_tenant_rows(tenant)
    session.add(tenant)
    session.flush()
    audit.record(
        session,
        actor=actor,
        event_type="tenant.created",
        tenant=tenant,
        payload=tenant_json(tenant),
    )
    return tenant


def new_tenant_rows(tenant: Tenant) -> None:
    """Attach the session and worker rows every tenant has from birth."""
    tenant.session = WhatsappSession()
    tenant.worker = WorkerProcess(name=f"wactl-bot-{tenant.slug}")


def _config(tenant: Tenant) -> TenantConfig:
    if tenant.config is None:
        tenant.config = TenantConfig(
            business_name=tenant.name,
            timezone="UTC",
            hours_json={"weekly": {}, "holidays": []},
        )
    return tenant.config


def apply_changes(session: Session, tenant: Tenant, changes: TenantChanges) -> dict[str, Any]:
    """Apply validated changes; returns {field: {"old": ..., "new": ...}} of what changed."""
    config = _config(tenant)
    new: dict[str, Any] = {}
    if changes.name is not None:
        new["name"] = validation.validate_name("name", changes.name)
    if changes.business_name is not None:
        new["business_name"] = validation.validate_name("business_name", changes.business_name)
    if changes.phone_number is not None:
        phone = validation.normalize_phone(changes.phone_number) if changes.phone_number else None
        if phone is not None:
            check_phone_free(session, phone, tenant)
        new["phone_number"] = phone
    if changes.timezone is not None:
        new["timezone"] = validation.validate_timezone(changes.timezone)
    for key in ("template", "language", "engine"):
        value = getattr(changes, key)
        if value is not None:
            new[key] = value
    current = {
        "name": tenant.name,
        "business_name": config.business_name,
        "phone_number": tenant.phone_number,
        "timezone": config.timezone,
        "template": config.template_type,
        "language": config.language,
        "engine": tenant.engine,
    }
    changed = {k: {"old": current[k], "new": v} for k, v in new.items() if current[k] != v}
    for key, diff in changed.items():
        value = diff["new"]
        if key in ("name", "phone_number", "engine"):
            setattr(tenant, key, value)
        elif key == "template":
            config.template_type = value
        else:
            setattr(config, key, value)
    return {k: {"old": _plain(d["old"]), "new": _plain(d["new"])} for k, d in changed.items()}


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, TemplateType | Language | EngineName) else value


def edit_tenant(
    session: Session, slug: str, changes: TenantChanges, *, actor: str
) -> dict[str, Any]:
    tenant = get_tenant(session, slug)
    changed = apply_changes(session, tenant, changes)
    if changes.wa_js is not None:
        from wactl.db import wajs_releases

        old, new = wajs_releases.set_override(session, tenant, changes.wa_js, actor=actor)
        if old != new:
            changed["wa_js"] = {"old": old, "new": new}
    if changed:
        session.flush()
        audit.record(
            session, actor=actor, event_type="tenant.edited", tenant=tenant, payload=changed
        )
    return changed


def delete_tenant(session: Session, slug: str, *, actor: str) -> Tenant:
    """Delete the tenant; the database cascades to every row it owns."""
    tenant = get_tenant(session, slug)
    audit.record(
        session,
        actor=actor,
        event_type="tenant.deleted",
        tenant=tenant,
        payload={"id": str(tenant.id), "name": tenant.name},
    )
    session.flush()
    session.delete(tenant)
    session.flush()
    return tenant


def tenant_json(tenant: Tenant) -> dict[str, Any]:
    """The stable ``--json`` shape of a tenant (documented in wactl(1))."""
    config = tenant.config
    return {
        "id": str(tenant.id),
        "slug": tenant.slug,
        "name": tenant.name,
        "status": tenant.status.value,
        "engine": tenant.engine.value,
        "phone_number": tenant.phone_number,
        "business_name": config.business_name if config else None,
        "template_type": config.template_type.value if config else None,
        "language": config.language.value if config else None,
        "timezone": config.timezone if config else None,
        "created_at": tenant.created_at.isoformat(),
        "updated_at": tenant.updated_at.isoformat(),
    }


def tenant_detail_json(tenant: Tenant, wa_js: Effective) -> dict[str, Any]:
    """`tenant show --json`: the tenant plus hours, wa-js, session and worker."""
    data = tenant_json(tenant)
    hours = tenant.config.hours_json if tenant.config else {}
    data["hours"] = hours.get("weekly", {})
    data["holidays"] = hours.get("holidays", [])
    data["wa_js"] = {"version": wa_js.version, "source": wa_js.source}
    session_row = tenant.session
    data["session"] = (
        {
            "state": session_row.state.value,
            "has_qr": session_row.last_qr is not None,
            "last_seen_at": session_row.last_seen_at.isoformat()
            if session_row.last_seen_at
            else None,
        }
        if session_row
        else None
    )
    worker = tenant.worker
    data["worker"] = (
        {
            "name": worker.name,
            "status": worker.status.value,
            "desired": worker.desired.value,
            "pid": worker.pid,
            "restarts": worker.restarts,
            "last_error": worker.last_error,
            "started_at": worker.started_at.isoformat() if worker.started_at else None,
        }
        if worker
        else None
    )
    return data


def tenant_detail_fields(
    tenant: Tenant, wa_js: Effective, *, ages: bool = True
) -> list[tuple[str, str]]:
    """`tenant show` for people: (label, value) pairs of `tenant_detail_json`, also the
    dashboard's summary (without ``ages``: it shows the daemon's live state and
    heartbeat beside it). Values may hold data from outside wactl: show them with
    `wactl.display.printable`."""
    data = tenant_detail_json(tenant, wa_js)
    fields = [
        ("slug", data["slug"]),
        ("name", data["name"]),
        ("status", data["status"]),
        ("engine", data["engine"]),
        ("phone", or_dash(data["phone_number"])),
        ("business name", or_dash(data["business_name"])),
        ("template", or_dash(data["template_type"])),
        ("language", or_dash(data["language"])),
        ("timezone", or_dash(data["timezone"])),
    ]
    if tenant.engine == EngineName.WHATSAPP_WEB:
        fields.append(("wa-js", wa_js.describe()))
    elif wa_js.source == "tenant":
        fields.append(("wa-js", f"{wa_js.describe()}; unused by the {tenant.engine.value} engine"))
    hours = data["hours"]
    if not hours:
        # Not "closed" seven times: the bot says the hours are not published yet.
        fields.append(("hours", "not set yet (`wactl tenant config export` shows how)"))
    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun") if hours else ():
        fields.append((f"hours {day}", ", ".join(hours.get(day, [])) or "closed"))
    fields.append(("holidays", ", ".join(data["holidays"]) or "-"))
    if data["session"]:
        fields.append(("whatsapp", _session_text(tenant) if ages else data["session"]["state"]))
    if data["worker"]:
        worker = data["worker"]
        fields.append(("worker", f"{worker['status']} (wants {worker['desired']})"))
        fields.append(("restarts", str(worker["restarts"])))
        fields.append(("last error", or_dash(worker["last_error"])))
    fields.append(("id", data["id"]))
    fields.append(("created", local_time(tenant.created_at)))
    return fields


def _session_text(tenant: Tenant) -> str:
    """The WhatsApp link as the database knows it, and how old that is: a worker that
    does not run says nothing new, so its last word is only history."""
    session = tenant.session
    assert session is not None
    worker = tenant.worker
    state = session.state.value
    live = worker is not None and worker.status.value in ("STARTING", "RUNNING", "STOPPING")
    heartbeat = worker.heartbeat_at if worker is not None else None
    said = heartbeat or session.updated_at
    if said.tzinfo is None:
        said = said.replace(tzinfo=dt.UTC)
    age = duration((dt.datetime.now(dt.UTC) - said).total_seconds())
    if live:
        return f"{state} (its worker said so {age} ago)"
    return f"{state} when its worker last ran, {age} ago (it does not run now)"


# --- config as code ---------------------------------------------------------------

#: Keys of the tenant document, in the order they are written.
DOCUMENT_KEYS = (
    "name",
    "business_name",
    "phone_number",
    "engine",
    "template",
    "language",
    "timezone",
    "holidays",
    "hours",
    "info",
    "texts",
)


def export_document(tenant: Tenant) -> dict[str, Any]:
    config = _config(tenant)
    hours = config.hours_json or {}
    doc: dict[str, Any] = {
        "name": tenant.name,
        "business_name": config.business_name,
        "engine": tenant.engine.value,
        "template": config.template_type.value,
        "language": config.language.value,
        "timezone": config.timezone,
        "holidays": list(hours.get("holidays", [])),
        "hours": {day: list(v) for day, v in hours.get("weekly", {}).items()},
        "info": dict(config.info_json or {}),
        "texts": dict(config.texts_json or {}),
    }
    if tenant.phone_number:
        doc["phone_number"] = tenant.phone_number
    return {key: doc[key] for key in DOCUMENT_KEYS if key in doc}


def render_document(slug: str, doc: dict[str, Any]) -> str:
    import tomli_w

    header = (
        f"# wactl tenant configuration for '{slug}'.\n"
        f"# Apply changes with: wactl tenant config apply {slug} FILE [--dry-run]\n"
        "# hours: 24-hour ranges per day (mon..sun), [] or a missing day means closed.\n"
        "# holidays: dates (YYYY-MM-DD) on which the business is closed.\n"
        "# phone_number: the WhatsApp number in E.164; leave it out for none.\n"
        "# [info]: business facts the replies use: address, phone, email, website, maps_url.\n"
        "# [texts]: your own wording for any reply, replacing the template's: greeting,\n"
        "#   fallback, location, contact, handoff, rate_limited, hours.answer, menu.N.label,\n"
        "#   menu.N.answer, menu.N.keywords (comma-separated) and more; a wrong key is\n"
        "#   refused with the closest valid one. Placeholders: {business_name}, {address},\n"
        "#   {phone}, {email}, {website}, {maps_url}, {hours_today}, {hours_week}, {menu}.\n"
    )
    top = {k: v for k, v in doc.items() if k not in ("hours", "info", "texts")}
    text = header + tomli_w.dumps(top)
    hours = doc.get("hours", {})
    text += "\n[hours]\n"
    if hours:
        text += tomli_w.dumps(hours)
    else:
        text += '# not set yet; for example:\n# mon = ["09:00-14:00", "17:00-22:00"]\n'
    for table, example in (
        ("info", '# address = "Calle Mayor 1, Madrid"\n'),
        ("texts", '# greeting = "Hello from {business_name}! Reply with a number:\\n{menu}"\n'),
    ):
        values = doc.get(table) or {}
        text += f"\n[{table}]\n" + (tomli_w.dumps(values) if values else example)
    return text


def parse_document(text: str, *, source: str, slug: str) -> dict[str, Any]:
    """Parse and validate a tenant document completely, before anything is written."""
    try:
        raw = parse_toml(text)
    except ValueError as exc:
        raise ValidationError(source, f"not valid TOML: {exc}") from exc
    if "slug" in raw and raw.pop("slug") != slug:
        raise ValidationError(
            f"{source}: slug", f"names another tenant, not '{slug}'", hint="remove the key"
        )
    unknown = [key for key in raw if key not in DOCUMENT_KEYS]
    if unknown:
        near = difflib.get_close_matches(unknown[0], DOCUMENT_KEYS, n=1)
        hint = f"did you mean '{near[0]}'?" if near else f"keys: {', '.join(DOCUMENT_KEYS)}"
        raise ValidationError(f"{source}: {unknown[0]}", "is not a tenant setting", hint=hint)
    for key in ("name", "template", "language", "timezone"):
        if key not in raw:
            raise ValidationError(f"{source}: {key}", "is missing")

    def text_value(key: str) -> str:
        value = raw[key]
        if not isinstance(value, str):
            raise ValidationError(f"{source}: {key}", f"must be a string, not {value!r}")
        return value

    doc: dict[str, Any] = {
        "name": validation.validate_name(f"{source}: name", text_value("name")),
        "business_name": validation.validate_name(
            f"{source}: business_name",
            text_value("business_name") if "business_name" in raw else text_value("name"),
        ),
        "engine": validation.parse_choice(
            EngineName, text_value("engine") if "engine" in raw else "sandbox", f"{source}: engine"
        ),
        "template": validation.parse_choice(
            TemplateType, text_value("template"), f"{source}: template"
        ),
        "language": validation.parse_choice(
            Language, text_value("language"), f"{source}: language"
        ),
        "timezone": validation.validate_timezone(text_value("timezone"), f"{source}: timezone"),
    }
    holidays = raw.get("holidays", [])
    if not isinstance(holidays, list):
        raise ValidationError(f"{source}: holidays", "must be a list of dates")
    doc["holidays"] = validation.validate_holidays(holidays, f"{source}: holidays")
    doc["hours"] = validation.validate_weekly_hours(raw.get("hours", {}), f"{source}: hours")
    for table in ("info", "texts"):
        value = raw.get(table, {})
        if not isinstance(value, dict):
            raise ValidationError(f"{source}: {table}", f"must be a table [{table}]")
        doc[table] = dict(value)
    _check_replies(doc, source)
    if "phone_number" in raw:
        doc["phone_number"] = validation.normalize_phone(
            text_value("phone_number"), f"{source}: phone_number"
        )
    return doc


def _check_replies(doc: dict[str, Any], source: str) -> None:
    """Build the reply book the worker would build: every text, fact and placeholder
    is checked now, so that nothing invalid is ever written."""
    # Here, not at the top: the templates and hours cost ~15 ms to import, and most
    # commands that read tenants never check replies.
    from wactl.replies.book import ReplyBook

    try:
        ReplyBook.build(
            doc["template"],
            doc["language"],
            doc["texts"],
            {"business_name": doc["business_name"], **doc["info"]},
            hours_json={"weekly": doc["hours"], "holidays": doc["holidays"]},
            timezone=doc["timezone"],
        )
    except ValidationError as exc:
        field = exc.field.replace("overrides.", "texts.", 1)
        detail = exc.message.split(": ", 1)[-1]
        raise ValidationError(f"{source}: {field}", detail, hint=exc.hint) from None


def plain_document(doc: dict[str, Any]) -> dict[str, Any]:
    """A validated document with enums as their values, in document key order."""
    return {key: _plain(doc[key]) for key in DOCUMENT_KEYS if key in doc}


def document_diff(slug: str, old: dict[str, Any], new: dict[str, Any]) -> str:
    """A unified diff of the two documents as TOML ('' when they are equal)."""
    before = render_document(slug, old).splitlines(keepends=True)
    after = render_document(slug, plain_document(new)).splitlines(keepends=True)
    return "".join(difflib.unified_diff(before, after, f"{slug} (current)", f"{slug} (new)"))


def apply_document(
    session: Session, tenant: Tenant, doc: dict[str, Any], *, actor: str
) -> dict[str, Any]:
    """Write a validated document in the caller's transaction; returns what changed."""
    changed = apply_changes(
        session,
        tenant,
        TenantChanges(
            name=doc["name"],
            business_name=doc["business_name"],
            # "" clears the number when the document leaves it out.
            phone_number=doc.get("phone_number", ""),
            template=doc["template"],
            language=doc["language"],
            timezone=doc["timezone"],
            engine=doc["engine"],
        ),
    )
    config = _config(tenant)
    hours = {"weekly": doc["hours"], "holidays": doc["holidays"]}
    if config.hours_json != hours:
        changed["hours"] = {"old": config.hours_json, "new": hours}
        config.hours_json = hours
    for key, column in (("info", "info_json"), ("texts", "texts_json")):
        if (getattr(config, column) or {}) != doc[key]:
            changed[key] = {"old": getattr(config, column), "new": doc[key]}
            setattr(config, column, doc[key])
    if changed:
        session.flush()
        audit.record(
            session, actor=actor, event_type="tenant.config_applied", tenant=tenant, payload=changed
        )
    return changed
