"""The audit trail: writing and reading `portal_event_log` rows.

Every state-changing operator command calls `record` in the same transaction as the
change, so a change and its audit row are committed together or not at all.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from wactl.actor import operator_actor
from wactl.db.models import PortalEventLog, Tenant

__all__ = ["event_json", "list_events", "operator_actor", "record"]


def record(
    session: Session,
    *,
    actor: str,
    event_type: str,
    tenant: Tenant | None = None,
    payload: dict[str, Any] | None = None,
    user_id: uuid.UUID | None = None,
) -> PortalEventLog:
    row = PortalEventLog(
        tenant_id=tenant.id if tenant is not None else None,
        tenant_slug=tenant.slug if tenant is not None else None,
        user_id=user_id,
        actor=actor,
        event_type=event_type,
        payload_json=payload or {},
    )
    session.add(row)
    return row


def list_events(
    session: Session,
    *,
    tenant_slug: str | None = None,
    since: dt.datetime | None = None,
    limit: int | None = None,
) -> list[PortalEventLog]:
    """Events oldest first (like a log), optionally for one tenant and after a time."""
    query = select(PortalEventLog)
    if tenant_slug is not None:
        query = query.where(PortalEventLog.tenant_slug == tenant_slug)
    if since is not None:
        query = query.where(PortalEventLog.created_at >= since)
    query = query.order_by(PortalEventLog.created_at.desc(), PortalEventLog.id.desc())
    if limit is not None:
        query = query.limit(limit)
    return list(reversed(session.scalars(query).all()))


def event_json(event: PortalEventLog) -> dict[str, Any]:
    return {
        "id": event.id,
        "created_at": event.created_at.isoformat(),
        "tenant": event.tenant_slug,
        "actor": event.actor,
        "event_type": event.event_type,
        "payload": event.payload_json,
    }
