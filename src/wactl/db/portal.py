"""What the portal reads and writes, always scoped by the signed-in owner's tenant.

Every function that returns a tenant's rows takes the tenant's id and filters by it in
the query itself; none takes a row id alone. A guessed or tampered id (a setup
request number, a log cursor) therefore finds nothing outside the owner's tenant
and reads as "not found", never as another tenant's data (DESIGN.md section 2).

Functions take an open `Session` (the caller owns the transaction) and raise wactl
errors, like the other repositories in this package.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session, joinedload

from wactl import validation
from wactl.db import audit
from wactl.db.base import utcnow
from wactl.db.models import (
    MessageLog,
    PortalEventLog,
    PortalSignin,
    SetupRequest,
    Tenant,
    User,
)
from wactl.db.tenants import new_tenant_rows, tenant_json
from wactl.enums import EngineName, Role, TenantStatus
from wactl.errors import ConflictError, NotFoundError

#: Page size of the conversation log and the activity page (and the API's upper bound).
PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
#: The largest id of a message or an audit event (64-bit keys), and of a setup request
#: (a 32-bit integer column): a number past it is no row, and the database would refuse
#: it as a parameter (SQLite: OverflowError; PostgreSQL: out of range).
MAX_ROW_ID = 2**63 - 1
MAX_REQUEST_ID = 2**31 - 1


def portal_actor(email: str) -> str:
    """The audit actor of an owner's action."""
    return f"portal:{email}"


#: How long a started sign-in may take to come back from the provider (the person signs
#: in there meanwhile, perhaps with a second factor).
SIGNIN_WINDOW = dt.timedelta(minutes=15)


def start_signin(session: Session, *, state_sha256: str, nonce_sha256: str) -> None:
    """Record a sign-in that is starting; forget the ones past `SIGNIN_WINDOW`."""
    session.execute(delete(PortalSignin).where(PortalSignin.created_at < utcnow() - SIGNIN_WINDOW))
    session.add(PortalSignin(state_sha256=state_sha256, nonce_sha256=nonce_sha256))


def use_signin(session: Session, *, state_sha256: str) -> str | None:
    """Use up the started sign-in of this state: its nonce's sha256, or None when there
    is none (never started, already used, or too old). One statement, so that of two
    callbacks with one state, on any portal process, only one gets it."""
    return session.scalar(
        delete(PortalSignin)
        .where(
            PortalSignin.state_sha256 == state_sha256,
            PortalSignin.created_at >= utcnow() - SIGNIN_WINDOW,
        )
        .returning(PortalSignin.nonce_sha256)
    )


@dataclass(frozen=True)
class SignIn:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    slug: str
    created: bool
    #: `User.session_generation` at this sign-in; the session cookie keeps it.
    generation: int


class AccountMismatchError(ConflictError):
    """The email belongs to a user bound to another identity (issuer + sub)."""

    def __init__(self, user_id: uuid.UUID, email: str) -> None:
        super().__init__(f"{email} is bound to another identity at the sign-in service")
        self.user_id = user_id
        self.email = email


def slug_base(email: str) -> str:
    """A slug from the email's local part: "Maria.Lopez+shop@x" -> "maria-lopez"."""
    local = email.split("@", 1)[0].split("+", 1)[0].lower()
    base = re.sub(r"[^a-z0-9]+", "-", local).strip("-")[:32].strip("-")
    return base or "owner"


def _free_slug(session: Session, base: str) -> str:
    taken = set(
        session.scalars(
            select(Tenant.slug).where(or_(Tenant.slug == base, Tenant.slug.like(f"{base}-%")))
        )
    )
    if base not in taken:
        return base
    for number in range(2, 100):
        candidate = f"{base}-{number}"
        if candidate not in taken:
            return candidate
    return f"{base}-{secrets.token_hex(3)}"


def _account(
    session: Session, *, issuer: str, subject: str, email: str
) -> tuple[User | None, dict[str, Any]]:
    """The user this identity signs in as (None: a first sign-in), and what changed.

    The identity (issuer + sub) decides. A user not bound yet (created before users
    were bound) is found by email and bound now. A user bound to another identity is
    never signed into with this one (`AccountMismatchError`), whatever the email says.
    """
    user = session.scalar(
        select(User).where(User.oidc_issuer == issuer, User.oidc_subject == subject)
    )
    if user is not None:
        if user.email == email:
            return user, {}
        # The address changed at the provider: follow it, unless another user has it.
        if session.scalar(select(User.id).where(User.email == email)) is not None:
            return user, {}
        old, user.email = user.email, email
        return user, {"email_was": old}
    user = session.scalar(select(User).where(User.email == email))
    if user is None:
        return None, {}
    if (user.oidc_issuer, user.oidc_subject) == (issuer, subject):
        # This identity's own user, committed by a concurrent first sign-in between the
        # two reads (each statement sees the newest commit).
        return user, {}
    if user.oidc_subject is not None:
        raise AccountMismatchError(user.id, email)
    user.oidc_issuer, user.oidc_subject = issuer, subject
    return user, {"bound": True}


def sign_in(
    session: Session,
    *,
    issuer: str,
    subject: str,
    email: str,
    name: str,
    engine: EngineName,
) -> SignIn:
    """Load the owner's user and tenant, or create them on the first sign-in.

    The first sign-in creates, in the caller's one transaction, the tenant (NEW) with
    its WhatsApp session and worker rows, and the user (OWNER) bound to the identity;
    a concurrent first sign-in of the same identity or email makes the commit fail on
    a unique index, and the caller retries (the retry then finds the user). ``name``
    is plain text already (`validation.clean_name`); empty, the email's local part
    stands in.
    """
    email = email.strip().lower()
    actor = portal_actor(email)
    user, changes = _account(session, issuer=issuer, subject=subject, email=email)
    created = False
    if user is None:
        display = validation.validate_name(
            "name", name or validation.clean_name(email.split("@", 1)[0]) or "owner"
        )
        slug = validation.validate_slug(_free_slug(session, slug_base(email)))
        tenant = Tenant(slug=slug, name=display, status=TenantStatus.NEW, engine=engine)
        new_tenant_rows(tenant)
        session.add(tenant)
        session.flush()
        user = User(
            tenant_id=tenant.id,
            name=display,
            email=email,
            role=Role.OWNER,
            oidc_issuer=issuer,
            oidc_subject=subject,
        )
        session.add(user)
        session.flush()
        payload = tenant_json(tenant)
        payload["owner"] = email
        audit.record(
            session,
            actor=actor,
            event_type="tenant.created",
            tenant=tenant,
            user_id=user.id,
            payload=payload,
        )
        created = True
    else:
        tenant = user.tenant
    audit.record(
        session,
        actor=actor,
        event_type="portal.signed_in",
        tenant=tenant,
        user_id=user.id,
        payload={"first": created, **changes},
    )
    return SignIn(user.id, tenant.id, email, tenant.slug, created, user.session_generation)


def record_refused_sign_in(
    session: Session, refused: AccountMismatchError, *, issuer: str, subject: str
) -> None:
    """The audit row of a sign-in refused because the email's user is bound to another
    identity: on the user's tenant, so the owner sees it on their activity page."""
    user = session.get(User, refused.user_id)
    if user is None:
        return  # deleted meanwhile: nothing left to protect
    audit.record(
        session,
        actor=portal_actor(refused.email),
        event_type="portal.signin_refused",
        tenant=user.tenant,
        user_id=user.id,
        payload={"reason": "another identity", "issuer": issuer, "subject": subject},
    )


def record(
    session: Session,
    user: User,
    event_type: str,
    payload: dict[str, Any] | None = None,
) -> None:
    """An audit row for an owner's action on their own tenant."""
    audit.record(
        session,
        actor=portal_actor(user.email),
        event_type=event_type,
        tenant=user.tenant,
        user_id=user.id,
        payload=payload,
    )


def load_user(session: Session, user_id: str) -> User | None:
    """The signed-in user with their tenant, config, session and worker rows."""
    try:
        key = uuid.UUID(user_id)
    except (ValueError, TypeError, AttributeError):
        return None
    # One SELECT with joins (the three are one-to-one): this runs on every page view.
    tenant = joinedload(User.tenant, innerjoin=True)
    return session.scalar(
        select(User)
        .where(User.id == key)
        .options(
            tenant.joinedload(Tenant.session),
            tenant.joinedload(Tenant.worker),
        )
    )


def sign_out(session: Session, user: User) -> None:
    """End every portal session of ``user`` (each browser, and any copied cookie)."""
    user.session_generation += 1
    record(session, user, "portal.signed_out")


def latest_request(session: Session, tenant_id: uuid.UUID) -> SetupRequest | None:
    return session.scalar(
        select(SetupRequest)
        .where(SetupRequest.tenant_id == tenant_id)
        .order_by(SetupRequest.created_at.desc(), SetupRequest.id.desc())
        .limit(1)
    )


def get_request(session: Session, tenant_id: uuid.UUID, request_id: int) -> SetupRequest:
    """One of the tenant's setup requests; another tenant's number is "not found"."""
    if not 1 <= request_id <= MAX_REQUEST_ID:
        raise NotFoundError(f"no setup request #{request_id}")
    request = session.scalar(
        select(SetupRequest).where(
            SetupRequest.id == request_id, SetupRequest.tenant_id == tenant_id
        )
    )
    if request is None:
        raise NotFoundError(f"no setup request #{request_id}")
    return request


def list_requests(session: Session, tenant_id: uuid.UUID) -> list[SetupRequest]:
    return list(
        session.scalars(
            select(SetupRequest)
            .where(SetupRequest.tenant_id == tenant_id)
            .order_by(SetupRequest.created_at.desc(), SetupRequest.id.desc())
        )
    )


@dataclass(frozen=True)
class Page:
    """One page of a newest-first list; ``older`` is the cursor of the next page."""

    rows: list[Any]
    older: int | None


def _page(rows: list[Any], limit: int) -> Page:
    if len(rows) > limit:
        return Page(rows[:limit], rows[limit - 1].id)
    return Page(rows, None)


def conversation(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    search: str = "",
    before: int | None = None,
    limit: int = PAGE_SIZE,
) -> Page:
    """The tenant's messages, newest first, ``limit`` at a time before the cursor.

    ``search`` matches the text or the customer's number, ignoring case; ``%`` and
    ``_`` in it are literal characters.
    """
    query = select(MessageLog).where(MessageLog.tenant_id == tenant_id)
    needle = search.strip().lower()
    if needle:
        query = query.where(
            or_(
                func.lower(MessageLog.message_text).contains(needle, autoescape=True),
                MessageLog.chat.contains(needle, autoescape=True),
            )
        )
    if before is not None:
        query = query.where(MessageLog.id < before)
    rows = list(session.scalars(query.order_by(MessageLog.id.desc()).limit(limit + 1)))
    return _page(rows, limit)


def events(
    session: Session, tenant_id: uuid.UUID, *, before: int | None = None, limit: int = PAGE_SIZE
) -> Page:
    """The tenant's audit events (operators' and the portal's), newest first."""
    query = select(PortalEventLog).where(PortalEventLog.tenant_id == tenant_id)
    if before is not None:
        query = query.where(PortalEventLog.id < before)
    rows = list(session.scalars(query.order_by(PortalEventLog.id.desc()).limit(limit + 1)))
    return _page(rows, limit)


def message_json(message: MessageLog) -> dict[str, Any]:
    """The API shape of one logged message."""
    return {
        "id": message.id,
        "created_at": _iso(message.created_at),
        "direction": message.direction.value,
        "chat": message.chat,
        "from": message.from_number,
        "to": message.to_number,
        "text": message.message_text,
        "kind": message.kind,
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def unbind_users(session: Session, emails: list[str] | None, *, actor: str) -> list[User]:
    """Clear the sign-in binding (issuer + sub) of the users with these emails (None:
    every bound user), and end their sessions: the next sign-in with the email binds
    whichever account presents it (after a move to another provider). Audited per user
    (``portal.user_unbound``). Raises `NotFoundError`, changing nothing, when an email
    has no user."""
    query = select(User).order_by(User.email)
    if emails is None:
        query = query.where(User.oidc_subject.is_not(None))
    else:
        wanted = sorted({email.strip().lower() for email in emails})
        query = query.where(User.email.in_(wanted))
    users = list(session.scalars(query.options(joinedload(User.tenant))).unique())
    if emails is not None:
        missing = sorted(set(wanted) - {user.email for user in users})
        if missing:
            raise NotFoundError(
                f"no portal user with the email {', '.join(map(repr, missing))}",
                hint="`wactl audit` shows who signed in (portal:EMAIL)",
            )
    for user in users:
        payload = {"email": user.email, "issuer": user.oidc_issuer, "subject": user.oidc_subject}
        user.oidc_issuer = user.oidc_subject = None
        user.session_generation += 1
        audit.record(
            session,
            actor=actor,
            event_type="portal.user_unbound",
            tenant=user.tenant,
            user_id=user.id,
            payload=payload,
        )
    return users
