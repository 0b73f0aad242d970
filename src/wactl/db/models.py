"""The tables of DESIGN.md section 2, as typed SQLAlchemy 2 models, and the few added since.

Every tenant-owned row carries ``tenant_id`` with ``ON DELETE CASCADE``: deleting a
tenant deletes its config, session, worker, users, messages and setup requests in the
database itself (SQLite enforces it because foreign keys are switched on for every
connection). The one exception is the audit log (`PortalEventLog`): its ``tenant_id``
is ``ON DELETE SET NULL`` and it keeps the tenant's slug, so the record of who deleted
a tenant, and what happened to it before, outlives the tenant.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from wactl.db.base import Base, BigIntKey, UTCDateTime, enum_column, utcnow
from wactl.enums import (
    DesiredState,
    Direction,
    EngineName,
    Language,
    MessageState,
    RequestStatus,
    Role,
    SessionState,
    TemplateType,
    TenantStatus,
    WorkerStatus,
)

_CASCADE = "all, delete-orphan"


def _tenant_fk(*, unique: bool = False) -> Mapped[uuid.UUID]:
    return mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False, unique=unique, index=not unique
    )


class Tenant(Base):
    """One business and its bot."""

    __tablename__ = "tenant"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    phone_number: Mapped[str | None] = mapped_column(String(20), unique=True)
    status: Mapped[TenantStatus] = mapped_column(
        enum_column(TenantStatus, "status"), default=TenantStatus.NEW
    )
    engine: Mapped[EngineName] = mapped_column(
        enum_column(EngineName, "engine"), default=EngineName.SANDBOX
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    config: Mapped[TenantConfig | None] = relationship(
        back_populates="tenant", cascade=_CASCADE, passive_deletes=True, uselist=False
    )
    session: Mapped[WhatsappSession | None] = relationship(
        back_populates="tenant", cascade=_CASCADE, passive_deletes=True, uselist=False
    )
    worker: Mapped[WorkerProcess | None] = relationship(
        back_populates="tenant", cascade=_CASCADE, passive_deletes=True, uselist=False
    )
    users: Mapped[list[User]] = relationship(
        back_populates="tenant", cascade=_CASCADE, passive_deletes=True
    )
    setup_requests: Mapped[list[SetupRequest]] = relationship(
        back_populates="tenant", cascade=_CASCADE, passive_deletes=True
    )


class TenantConfig(Base):
    """What the bot says: template, language, hours and where the business is."""

    __tablename__ = "tenant_config"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk(unique=True)
    template_type: Mapped[TemplateType] = mapped_column(
        enum_column(TemplateType, "template_type"), default=TemplateType.GENERIC
    )
    business_name: Mapped[str] = mapped_column(String(200))
    language: Mapped[Language] = mapped_column(
        enum_column(Language, "language"), default=Language.EN
    )
    #: {"weekly": {"mon": ["09:00-17:00"], ...}, "holidays": ["2026-12-25", ...]};
    #: validated by `wactl.validation.hours_document`.
    hours_json: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    #: Per-tenant replacements of template texts: {"greeting": "...", "menu.2.answer": ...}.
    texts_json: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    #: Business facts the texts use: address, phone, email, website, maps_url.
    info_json: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    tenant: Mapped[Tenant] = relationship(back_populates="config")


class WhatsappSession(Base):
    """The tenant's WhatsApp link: its state and the QR to scan while unlinked."""

    __tablename__ = "whatsapp_session"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk(unique=True)
    state: Mapped[SessionState] = mapped_column(
        enum_column(SessionState, "state"), default=SessionState.UNLINKED
    )
    last_qr: Mapped[str | None] = mapped_column(Text)
    last_seen_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    tenant: Mapped[Tenant] = relationship(back_populates="session")


class WorkerProcess(Base):
    """Supervisor bookkeeping for the tenant's worker process."""

    __tablename__ = "worker_process"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk(unique=True)
    name: Mapped[str] = mapped_column(String(80))
    status: Mapped[WorkerStatus] = mapped_column(
        enum_column(WorkerStatus, "status"), default=WorkerStatus.STOPPED
    )
    pid: Mapped[int | None] = mapped_column(Integer)
    desired: Mapped[DesiredState] = mapped_column(
        enum_column(DesiredState, "desired"), default=DesiredState.STOPPED
    )
    restarts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: The process's start time as the kernel reports it (psutil create_time): with the
    #: pid, it identifies the worker when a new daemon re-adopts it (pids are reused).
    create_time: Mapped[float | None] = mapped_column(Float)
    #: Written by the worker every daemon.heartbeat_interval_seconds.
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    tenant: Mapped[Tenant] = relationship(back_populates="worker")


class MessageLog(Base):
    """Every message in and out, per tenant; the unique key makes inbound dedup durable."""

    __tablename__ = "message_log"
    __table_args__ = (
        UniqueConstraint("tenant_id", "direction", "wa_message_id"),
        Index(None, "tenant_id", "created_at"),
        Index(None, "tenant_id", "chat", "id"),
        Index(None, "tenant_id", "state"),
    )

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False
    )
    direction: Mapped[Direction] = mapped_column(enum_column(Direction, "direction"))
    #: Numbers, or WhatsApp ids for groups and the sandbox ("sandbox:<slug>"): up to 64.
    from_number: Mapped[str] = mapped_column(String(64))
    to_number: Mapped[str] = mapped_column(String(64))
    message_text: Mapped[str] = mapped_column(Text)
    wa_message_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The customer's number: the chat this message belongs to (per-chat order, logs).
    chat: Mapped[str] = mapped_column(String(64), default="")
    state: Mapped[MessageState] = mapped_column(
        enum_column(MessageState, "state"), default=MessageState.NEW
    )
    #: What the reply was (greeting, menu_item, hours, fallback, handoff, rate_limited,
    #: owner for messages the business typed by hand); None for inbound.
    kind: Mapped[str | None] = mapped_column(String(32))
    #: For a reply: the inbound message it answers.
    reply_to_id: Mapped[int | None] = mapped_column(
        ForeignKey("message_log.id", ondelete="SET NULL"), index=True
    )


class ChatState(Base):
    """Per-chat state that must survive worker restarts: a pause of the bot in one chat
    (the customer asked for a person, or the owner answered by hand)."""

    __tablename__ = "chat_state"
    __table_args__ = (UniqueConstraint("tenant_id", "chat"),)

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), nullable=False
    )
    chat: Mapped[str] = mapped_column(String(64))
    paused_until: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    #: Why: "handoff" (the customer asked for a person) or "owner" (the owner answered).
    pause_reason: Mapped[str | None] = mapped_column(String(16))
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class User(Base):
    """A portal user (a business owner or their staff).

    The identity provider's issuer and ``sub`` are who the user is (DESIGN.md section
    7); the email is an attribute. Both are set at the user's first sign-in (users
    created before they existed get them at their next one).
    """

    __tablename__ = "user"
    __table_args__ = (Index(None, "oidc_issuer", "oidc_subject", unique=True),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk()
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    #: The identity provider's ``iss`` (its issuer URL) and ``sub`` (at most 255
    #: characters, OpenID Connect Core 1.0 section 2); None until the first sign-in.
    oidc_issuer: Mapped[str | None] = mapped_column(String(255))
    oidc_subject: Mapped[str | None] = mapped_column(String(255))
    phone: Mapped[str | None] = mapped_column(String(20))
    role: Mapped[Role] = mapped_column(enum_column(Role, "role"), default=Role.OWNER)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: The portal's session cookie carries the value it had at sign-in; a sign-out bumps
    #: it, so that no cookie issued before (another browser, a copied one) signs in.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    tenant: Mapped[Tenant] = relationship(back_populates="users")


class SetupRequest(Base):
    """An owner's request to set up their bot; an operator approves or rejects it."""

    __tablename__ = "setup_request"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = _tenant_fk()
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL"), index=True
    )
    business_name: Mapped[str] = mapped_column(String(200))
    template_type: Mapped[TemplateType] = mapped_column(enum_column(TemplateType, "template_type"))
    language: Mapped[Language] = mapped_column(enum_column(Language, "language"))
    whatsapp_number: Mapped[str] = mapped_column(String(20))
    hours_json: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timezone: Mapped[str] = mapped_column(String(64))
    notes: Mapped[str | None] = mapped_column(Text)
    status: Mapped[RequestStatus] = mapped_column(
        enum_column(RequestStatus, "status"), default=RequestStatus.PENDING
    )
    decision_reason: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    decided_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    tenant: Mapped[Tenant] = relationship(back_populates="setup_requests")


class PortalEventLog(Base):
    """The audit trail: every portal action and every operator action, with its actor."""

    __tablename__ = "portal_event_log"
    __table_args__ = (Index(None, "tenant_id", "created_at"), Index(None, "created_at"))

    id: Mapped[int] = mapped_column(BigIntKey, primary_key=True, autoincrement=True)
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("tenant.id", ondelete="SET NULL")
    )
    #: The tenant's slug when the event was written; kept after the tenant is deleted.
    tenant_slug: Mapped[str | None] = mapped_column(String(40))
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("user.id", ondelete="SET NULL"), index=True
    )
    #: Who did it: "os:<login>" for operator commands, "portal:<email>" for the portal
    #: (320 wide: "portal:" and the longest email address, 254 characters, fit).
    actor: Mapped[str] = mapped_column(String(320))
    event_type: Mapped[str] = mapped_column(String(64))
    payload_json: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)


class PortalSignin(Base):
    """A portal sign-in started and not finished yet: its ``state`` and ``nonce`` (as
    sha256, hex), so that each is used once, across every portal process on this
    database. The callback deletes the row it uses; rows older than the sign-in
    window are deleted when another sign-in starts."""

    __tablename__ = "portal_signin"

    state_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    nonce_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


# --- wa-js versions (wactl engine install --version, tenant edit --wa-js, engine rollout) ---
# Separate tables, not columns of `tenant`: a column there would make SQLite's batch
# migrations rebuild `tenant` (drop and copy), and dropping it cascades to every row
# that references a tenant.


class WajsRelease(Base):
    """A wa-js version an operator installed (`wactl engine install --version V`), or the
    pinned one once a tenant was told to run it by name: what any host needs to fetch
    and verify it by itself (`wactl.wajs.ensure_installed` with the release's pin)."""

    __tablename__ = "wajs_release"

    version: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: npm's dist.integrity of the version's tarball (SRI, e.g. sha512-BASE64).
    integrity: Mapped[str] = mapped_column(String(200))
    #: sha256 (hex) of the bundle in that tarball, recorded at the first install.
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    installed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    #: Who installed it first ("os:<login>").
    actor: Mapped[str] = mapped_column(String(200))


class WajsTenantOverride(Base):
    """A tenant that runs another wa-js than the fleet: a canary (`tenant edit --wa-js`)."""

    __tablename__ = "wajs_tenant_override"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenant.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[str] = mapped_column(ForeignKey("wajs_release.version"), index=True)
    set_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))


class WajsFleetDefault(Base):
    """The wa-js every tenant runs unless it has an override (`wactl engine rollout`).

    At most one row (id 1); no row means the version pinned in the code (`engine
    rollback` deletes it)."""

    __tablename__ = "wajs_fleet_default"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(ForeignKey("wajs_release.version"), index=True)
    set_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(200))


class ServingDaemon(Base):
    """The daemon that serves this database now (`wactl.db.daemon_claim`): who it is and
    where its socket is, so that a second daemon refuses to start and the CLI finds the
    running one (DESIGN.md section 8: SQLite means one node; several nodes on one
    PostgreSQL are not supported yet).

    At most one row (id 1), written by the daemon that holds the claim (a lock file
    beside a SQLite database, an advisory lock on PostgreSQL); a row whose claim is not
    held is stale and means nothing."""

    __tablename__ = "serving_daemon"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    #: The kernel's start time of that pid (psutil create_time): a reused pid is not it.
    process_start: Mapped[float] = mapped_column(Float)
    #: Its Unix socket: where the CLI reaches it.
    socket_path: Mapped[str] = mapped_column(Text)
    #: The operating-system user it runs as.
    os_user: Mapped[str] = mapped_column(String(64))
    version: Mapped[str] = mapped_column(String(64))
    #: PostgreSQL: the server process of the session that holds the advisory lock.
    backend_pid: Mapped[int | None] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
