"""What the owner sees: a snapshot of their tenant, and its status in plain words.

`Owner` is built inside the database thread from the signed-in user's rows and
carries plain values only, so pages and JSON never touch a database session.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from wactl.db.models import PortalEventLog, SetupRequest, User
from wactl.enums import RequestStatus, SessionState, TenantStatus, WorkerStatus


@dataclass(frozen=True)
class RequestView:
    id: int
    status: RequestStatus
    business_name: str
    template_type: str
    language: str
    whatsapp_number: str
    timezone: str
    hours: dict[str, list[str]]
    notes: str | None
    decision_reason: str | None
    created_at: dt.datetime
    decided_at: dt.datetime | None

    @classmethod
    def of(cls, request: SetupRequest) -> RequestView:
        return cls(
            id=request.id,
            status=request.status,
            business_name=request.business_name,
            template_type=request.template_type.value,
            language=request.language.value,
            whatsapp_number=request.whatsapp_number,
            timezone=request.timezone,
            hours=dict((request.hours_json or {}).get("weekly", {})),
            notes=request.notes,
            decision_reason=request.decision_reason,
            created_at=request.created_at,
            decided_at=request.decided_at,
        )

    def json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status.value,
            "business_name": self.business_name,
            "template_type": self.template_type,
            "language": self.language,
            "whatsapp_number": self.whatsapp_number,
            "timezone": self.timezone,
            "hours": self.hours,
            "notes": self.notes,
            "decision_reason": self.decision_reason,
            "created_at": self.created_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
        }


@dataclass(frozen=True)
class Owner:
    """The signed-in owner and their tenant, as plain values."""

    user_id: uuid.UUID
    email: str
    name: str
    tenant_id: uuid.UUID
    slug: str
    tenant_name: str
    status: TenantStatus
    phone_number: str | None
    session_state: SessionState | None
    qr: str | None
    worker_status: WorkerStatus | None
    last_seen_at: dt.datetime | None
    request: RequestView | None

    @classmethod
    def of(cls, user: User, request: SetupRequest | None) -> Owner:
        tenant = user.tenant
        session = tenant.session
        worker = tenant.worker
        return cls(
            user_id=user.id,
            email=user.email,
            name=user.name,
            tenant_id=tenant.id,
            slug=tenant.slug,
            tenant_name=tenant.name,
            status=tenant.status,
            phone_number=tenant.phone_number,
            session_state=session.state if session else None,
            qr=session.last_qr if session else None,
            worker_status=worker.status if worker else None,
            last_seen_at=session.last_seen_at if session else None,
            request=RequestView.of(request) if request is not None else None,
        )

    @property
    def can_request_setup(self) -> bool:
        """Only a tenant not set up yet (new, or its last request rejected) may ask."""
        return self.status is TenantStatus.NEW

    @property
    def qr_showing(self) -> str | None:
        """The QR to scan, when the running bot waits for the phone; None otherwise.

        A QR left in the database by a worker that is no longer running is stale:
        scanning it would link nothing.
        """
        if (
            self.qr
            and self.session_state is SessionState.QR_PENDING
            and self.worker_status is WorkerStatus.RUNNING
        ):
            return self.qr
        return None

    @property
    def qr_id(self) -> str | None:
        """A short fingerprint of the QR showing, for pages to notice it rotated."""
        qr = self.qr_showing
        return hashlib.sha256(qr.encode()).hexdigest()[:16] if qr else None

    @property
    def headline(self) -> Headline:
        return describe(self)

    def status_json(self) -> dict[str, Any]:
        """The shape of GET /api/portal/tenant/current/status (documented in README)."""
        headline = self.headline
        return {
            "tenant": {
                "slug": self.slug,
                "name": self.tenant_name,
                "status": self.status.value,
                "phone_number": self.phone_number,
            },
            "status_title": headline.title,
            "status_text": headline.text,
            "session_state": self.session_state.value if self.session_state else None,
            "worker_status": self.worker_status.value if self.worker_status else None,
            "qr_available": self.qr_showing is not None,
            "qr_id": self.qr_id,
            "connected_since": self.last_seen_at.isoformat()
            if self.last_seen_at and self.status is TenantStatus.CONNECTED
            else None,
            "can_request_setup": self.can_request_setup,
            "setup_request": self.request.json() if self.request else None,
            "user": {"email": self.email, "name": self.name},
        }


@dataclass(frozen=True)
class Headline:
    """The status in plain words, and the one thing to do next (if any)."""

    title: str
    text: str
    action: tuple[str, str] | None = None  # (label, path)


def describe(owner: Owner) -> Headline:
    status = owner.status
    request = owner.request
    if status is TenantStatus.NEW:
        if request is not None and request.status is RequestStatus.REJECTED:
            reason = request.decision_reason or "no reason given"
            return Headline(
                "Your setup request needs changes",
                f"We could not set up your bot yet: {reason}. Please correct it and "
                "send the request again.",
                ("Send a new setup request", "/setup"),
            )
        return Headline(
            "Welcome! Let's set up your bot",
            "Tell us about your business: its name, your WhatsApp number and your "
            "opening hours. An operator will check it and get your bot ready.",
            ("Request setup", "/setup"),
        )
    if status is TenantStatus.SETUP_REQUESTED:
        return Headline(
            "We have your setup request",
            "An operator will check it soon. This page will show when your bot is "
            "ready for your phone.",
        )
    if status is TenantStatus.STOPPED:
        return Headline(
            "Your bot is set up",
            "Your bot is ready but not running. When the operator starts it, a code to "
            "scan with your phone appears on the Phone page (unless your phone is "
            "already linked).",
            ("Link your phone", "/link"),
        )
    if status is TenantStatus.QR_PENDING:
        return Headline(
            "Your bot is waiting for your phone",
            "Your bot is running. Scan the code with WhatsApp on your phone to link it.",
            ("Scan the code", "/link"),
        )
    if status is TenantStatus.CONNECTED:
        number = owner.phone_number or "your number"
        return Headline(
            "Connected",
            f"Your bot is linked to WhatsApp on {number} and answers your customers.",
            ("Read the conversations", "/logs"),
        )
    if status is TenantStatus.DISCONNECTED:
        return Headline(
            "Your phone is not linked any more",
            "WhatsApp ended the link with your bot (for example, the device was removed "
            "on the phone). Link it again by scanning a new code.",
            ("Link your phone", "/link"),
        )
    assert status is TenantStatus.ERROR
    return Headline(
        "Your bot has a problem",
        "Your bot stopped because of an error. The operator has been alerted and "
        "will fix it; you do not need to do anything.",
    )


#: Audit event types in the owner's words; others are shown as they are.
EVENT_WORDS = {
    "tenant.created": "Account created",
    "portal.signed_in": "Signed in",
    "portal.signed_out": "Signed out",
    "request.submitted": "Setup requested",
    "request.approved": "Setup approved",
    "request.rejected": "Setup declined",
    "tenant.edited": "Settings changed",
    "tenant.config_applied": "Settings changed",
    "worker.start": "Bot started",
    "worker.stop": "Bot stopped",
    "worker.restart": "Bot restarted",
    "whatsapp.logout": "Phone unlinked",
    "sandbox.scan": "Test phone linked",
    "portal.signin_refused": "Sign-in refused (another account with your email)",
}


def event_words(event_type: str) -> str:
    return EVENT_WORDS.get(event_type, event_type)


def event_who(event: PortalEventLog, owner: Owner) -> str:
    """Who did it, in the owner's words: "you", "operator", "someone else" (a refused
    sign-in with the owner's email), or the other portal user's email."""
    if event.event_type == "portal.signin_refused":
        return "someone else"
    if event.actor == f"portal:{owner.email}":
        return "you"
    if event.actor.startswith("os:"):
        return "operator"
    return event.actor.split(":", 1)[-1]
