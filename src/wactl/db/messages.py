"""Reading the conversation log (message_log) for people: `wactl tenant logs` and the TUI.

The worker's pipeline writes these rows (`wactl.bot.store`); this module only reads
them, newest first from the (tenant_id, created_at) and primary-key indexes, and
gives each row its stable ``--json`` shape (documented in wactl(1)).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from wactl.db.models import MessageLog


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
