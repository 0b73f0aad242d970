"""Reading the conversation log (message_log) for people: `wactl tenant logs` and the TUI.

The worker's pipeline writes these rows (`wactl.bot.store`); this module only reads
them, newest first from the (tenant_id, created_at) and primary-key indexes, and
gives each row its stable ``--json`` shape (documented in wactl(1)).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from wactl.db.models import MessageLog
from wactl.enums import Direction, MessageState


def message_json(row: MessageLog, slug: str) -> dict[str, Any]:
    """The stable ``--json`` shape of one logged message."""
    return {
        "id": row.id,
        "tenant": slug,
        "created_at": row.created_at.isoformat(),
        "direction": row.direction.value,
        "chat": row.chat,
        "from": row.from_number,
        "to": row.to_number,
        "text": row.message_text,
        "state": row.state.value,
        "kind": row.kind,
        "reply_to": row.reply_to_id,
        "wa_message_id": row.wa_message_id,
    }


def recent_messages(
    session: Session,
    tenant_id: uuid.UUID,
    slug: str,
    *,
    limit: int,
    since: dt.datetime | None = None,
    chat: str | None = None,
    after_id: int | None = None,
) -> list[dict[str, Any]]:
    """Messages oldest first: the newest ``limit`` ones, or every one after ``after_id``."""
    query = select(MessageLog).where(MessageLog.tenant_id == tenant_id)
    if since is not None:
        query = query.where(MessageLog.created_at >= since)
    if chat is not None:
        query = query.where(MessageLog.chat == chat)
    if after_id is not None:
        query = query.where(MessageLog.id > after_id).order_by(MessageLog.id)
        return [message_json(r, slug) for r in session.scalars(query)]
    query = query.order_by(MessageLog.id.desc()).limit(limit)
    return list(reversed([message_json(r, slug) for r in session.scalars(query)]))


#: Log rows that unfinished work still needs: a message being handled, a reply not sent.
UNFINISHED = (MessageState.NEW, MessageState.PENDING)


def prunable(older_than: dt.datetime, tenant_id: uuid.UUID | None = None) -> ColumnElement[bool]:
    """The retention rule, for `wactl logs prune` and the worker's pipeline.retention_days:
    log rows (of ``tenant_id``, or of every tenant) older than ``older_than`` that no
    unfinished work needs."""
    condition = and_(MessageLog.created_at < older_than, MessageLog.state.not_in(UNFINISHED))
    if tenant_id is not None:
        condition = and_(condition, MessageLog.tenant_id == tenant_id)
    return condition


def logged_totals(
    session: Session, tenant_id: uuid.UUID | None = None
) -> dict[uuid.UUID, tuple[int, int]]:
    """(inbound, outbound) messages in the log of each tenant (or of ``tenant_id``), as
    the worker's counters count them: every inbound message once recorded, a reply or
    an owner's message once sent (a PENDING reply is counted when it goes out).

    The worker seeds its totals with this at start and the daemon reads it at boot for
    the tenants it finds stopped, so `messages_*_total` survive worker and daemon
    restarts. Rows pruned by retention are no longer counted (a counter reset)."""
    counted = or_(MessageLog.direction == Direction.IN, MessageLog.state != MessageState.PENDING)
    query = (
        select(MessageLog.tenant_id, MessageLog.direction, func.count())
        .where(counted)
        .group_by(MessageLog.tenant_id, MessageLog.direction)
    )
    if tenant_id is not None:
        query = query.where(MessageLog.tenant_id == tenant_id)
    totals: dict[uuid.UUID, tuple[int, int]] = {}
    for owner, direction, count in session.execute(query):
        inbound, outbound = totals.get(owner, (0, 0))
        if direction == Direction.IN:
            inbound = int(count)
        else:
            outbound = int(count)
        totals[owner] = (inbound, outbound)
    return totals
