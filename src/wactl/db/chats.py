"""A tenant's chats: who wrote, when, and whether the bot is paused in each.

Why this module exists: operators list a tenant's chats and see where the bot is quiet
(a customer asked for a person, the business answered by hand, an operator paused it),
`wactl chats list`. Pausing and resuming a chat goes through the daemon and the
tenant's running worker, which keeps its chats' pauses in memory; `set_pause` is the
daemon's own write for a tenant whose worker does not run.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from wactl.db.base import utcnow
from wactl.db.models import ChatState, MessageLog


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value


def pauses(
    session: Session, tenant_id: uuid.UUID, *, now: dt.datetime | None = None
) -> dict[str, tuple[dt.datetime, str | None]]:
    """The tenant's chats where the bot is paused now: chat -> (until, why)."""
    now = now or dt.datetime.now(dt.UTC)
    found: dict[str, tuple[dt.datetime, str | None]] = {}
    query = select(ChatState).where(ChatState.tenant_id == tenant_id)
    for state in session.scalars(query.where(ChatState.paused_until.is_not(None))):
        until = _aware(state.paused_until)
        if until is not None and until > now:
            found[state.chat] = (until, state.pause_reason)
    return found


def list_chats(
    session: Session,
    tenant_id: uuid.UUID,
    *,
    paused_only: bool = False,
    now: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Every chat with messages or a pause, newest message first (`wactl chats list
    --json`: chat, messages, last_message_at, paused, paused_until, pause_reason)."""
    now = now or dt.datetime.now(dt.UTC)
    counted = (
        select(
            MessageLog.chat,
            func.count(MessageLog.id).label("messages"),
            func.max(MessageLog.created_at).label("last_at"),
        )
        .where(MessageLog.tenant_id == tenant_id, MessageLog.chat != "")
        .group_by(MessageLog.chat)
    )
    chats: dict[str, dict[str, Any]] = {}
    for chat, messages, last_at in session.execute(counted):
        chats[chat] = {"chat": chat, "messages": int(messages), "last_at": _aware(last_at)}
    for chat, (until, reason) in pauses(session, tenant_id, now=now).items():
        entry = chats.setdefault(chat, {"chat": chat, "messages": 0, "last_at": None})
        entry["paused_until"], entry["pause_reason"] = until, reason
    rows = []
    for entry in chats.values():
        paused_until: dt.datetime | None = entry.get("paused_until")
        if paused_only and paused_until is None:
            continue
        rows.append(
            {
                "chat": entry["chat"],
                "messages": entry["messages"],
                "last_message_at": entry["last_at"].isoformat() if entry["last_at"] else None,
                "paused": paused_until is not None,
                "paused_until": paused_until.isoformat() if paused_until else None,
                "pause_reason": entry.get("pause_reason"),
            }
        )
    epoch = dt.datetime.min.replace(tzinfo=dt.UTC).isoformat()
    rows.sort(key=lambda r: r["last_message_at"] or epoch, reverse=True)
    return rows


def set_pause(
    session: Session,
    tenant_id: uuid.UUID,
    chat: str,
    until: dt.datetime | None,
    reason: str | None,
) -> None:
    """Pause the bot in ``chat`` until ``until`` (None: resume it), in the database only:
    for a tenant whose worker does not run (a running one is asked, see the module)."""
    row = session.scalar(
        select(ChatState).where(ChatState.tenant_id == tenant_id, ChatState.chat == chat)
    )
    if row is None:
        if until is None:
            return
        row = ChatState(tenant_id=tenant_id, chat=chat)
        session.add(row)
    row.paused_until = until
    row.pause_reason = reason if until is not None else None
    row.updated_at = utcnow()
