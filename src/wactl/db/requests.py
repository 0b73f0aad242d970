"""Setup requests: an owner asks (portal), an operator approves or rejects (CLI).

PENDING -> APPROVED fills the tenant's config and phone number from the request and
moves the tenant to STOPPED (configured, ready for `wactl tenant start`).
PENDING -> REJECTED records the reason and returns the tenant to NEW, so the owner
can send a corrected request. A decided request is never decided again.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from wactl import validation
from wactl.db import audit
from wactl.db.base import utcnow
from wactl.db.models import SetupRequest, Tenant, TenantConfig
from wactl.db.tenants import check_phone_free
from wactl.enums import Language, RequestStatus, TemplateType, TenantStatus
from wactl.errors import ConflictError, NotFoundError, ValidationError


def submit_request(
    session: Session,
    tenant: Tenant,
    *,
    actor: str,
    business_name: str,
    template: str,
    language: str,
    whatsapp_number: str,
    timezone: str,
    weekly_hours: dict[str, Any] | None = None,
    holidays: list[Any] | None = None,
    notes: str | None = None,
    user_id: uuid.UUID | None = None,
) -> SetupRequest:
    """Validate and store an owner's request; the tenant becomes SETUP_REQUESTED."""
    pending = session.scalar(
        select(SetupRequest.id).where(
            SetupRequest.tenant_id == tenant.id, SetupRequest.status == RequestStatus.PENDING
        )
    )
    if pending is not None:
        raise ConflictError(
            f"tenant '{tenant.slug}' already has a pending setup request (#{pending})",
            hint="wait for the operator to decide it",
        )
    request = SetupRequest(
        tenant_id=tenant.id,
        user_id=user_id,
        business_name=validation.validate_name("business_name", business_name),
        template_type=validation.parse_choice(TemplateType, template, "template_type"),
        language=validation.parse_choice(Language, language, "language"),
        whatsapp_number=validation.normalize_phone(whatsapp_number, "whatsapp_number"),
        timezone=validation.validate_timezone(timezone),
        hours_json=validation.hours_document(weekly_hours or {}, holidays or []),
        notes=validation.refuse_control_characters("notes", (notes or "").strip(), kind="notes")
        or None,
    )
    session.add(request)
    tenant.status = TenantStatus.SETUP_REQUESTED
    session.flush()
    audit.record(
        session,
        actor=actor,
        event_type="request.submitted",
        tenant=tenant,
        user_id=user_id,
        payload={"request_id": request.id, "business_name": request.business_name},
    )
    return request


def list_requests(session: Session, status: RequestStatus | None = None) -> list[SetupRequest]:
    query = select(SetupRequest).order_by(SetupRequest.created_at, SetupRequest.id)
    if status is not None:
        query = query.where(SetupRequest.status == status)
    return list(session.scalars(query))


def get_request(session: Session, request_id: int) -> SetupRequest:
    request = session.get(SetupRequest, request_id)
    if request is None:
        raise NotFoundError(f"no setup request #{request_id}", hint="see `wactl requests list`")
    return request


def _require_pending(request: SetupRequest) -> None:
    if request.status is not RequestStatus.PENDING:
        raise ConflictError(
            f"setup request #{request.id} is already {request.status.value.lower()}",
            hint="only pending requests can be approved or rejected",
        )


def approve_request(session: Session, request_id: int, *, actor: str) -> SetupRequest:
    request = get_request(session, request_id)
    _require_pending(request)
    tenant = request.tenant
    check_phone_free(session, request.whatsapp_number, tenant)
    config = tenant.config
    if config is None:
        config = tenant.config = TenantConfig(business_name=request.business_name)
    config.business_name = request.business_name
    config.template_type = request.template_type
    config.language = request.language
    config.timezone = request.timezone
    config.hours_json = dict(request.hours_json)
    tenant.name = request.business_name
    tenant.phone_number = request.whatsapp_number
    tenant.status = TenantStatus.STOPPED
    request.status = RequestStatus.APPROVED
    request.decided_by = actor
    request.decided_at = utcnow()
    session.flush()
    audit.record(
        session,
        actor=actor,
        event_type="request.approved",
        tenant=tenant,
        payload={"request_id": request.id},
    )
    return request


def reject_request(session: Session, request_id: int, *, reason: str, actor: str) -> SetupRequest:
    reason = " ".join(reason.split())
    if not reason:
        raise ValidationError("reason", "must not be empty", hint="say what the owner should fix")
    request = get_request(session, request_id)
    _require_pending(request)
    request.status = RequestStatus.REJECTED
    request.decision_reason = reason
    request.decided_by = actor
    request.decided_at = utcnow()
    if request.tenant.status is TenantStatus.SETUP_REQUESTED:
        request.tenant.status = TenantStatus.NEW
    session.flush()
    audit.record(
        session,
        actor=actor,
        event_type="request.rejected",
        tenant=request.tenant,
        payload={"request_id": request.id, "reason": reason},
    )
    return request


def request_json(request: SetupRequest) -> dict[str, Any]:
    """The stable ``--json`` shape of a setup request (documented in wactl(1))."""
    hours = request.hours_json or {}
    return {
        "id": request.id,
        "tenant": request.tenant.slug,
        "status": request.status.value,
        "business_name": request.business_name,
        "template_type": request.template_type.value,
        "language": request.language.value,
        "whatsapp_number": request.whatsapp_number,
        "timezone": request.timezone,
        "hours": hours.get("weekly", {}),
        "holidays": hours.get("holidays", []),
        "notes": request.notes,
        "decision_reason": request.decision_reason,
        "decided_by": request.decided_by,
        "decided_at": request.decided_at.isoformat() if request.decided_at else None,
        "created_at": request.created_at.isoformat(),
    }
