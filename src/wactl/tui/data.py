"""The dashboard's reads of the database and of log files (the detail pane, names).

Everything here blocks, so the app calls it from thread workers; it reads only for the
tenant selected and at most once per ``tui.refresh_seconds`` (at least 1 s), so a
dashboard left open all day costs the database one small query a second or less.
A database that cannot be reached is reported in the pane, never raised to the app.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from wactl.errors import WactlError
from wactl.formatting import local_time, message_parts, pause_reason_text
from wactl.ipc.protocol import worker_log_path
from wactl.tail import last_lines

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

    from wactl.config import Config

#: How many messages of the conversation and lines of the worker log the pane keeps.
CONVERSATION_LINES = 50
LOG_LINES = 200
#: `tenant show` fields the pane leaves out: they never help at a glance.
_HIDDEN_FIELDS = ("id", "created")


@dataclass(frozen=True)
class ChatRow:
    """A chat in the detail pane's Chats tab: a recent one, or one where the bot is
    paused (however old its last message)."""

    chat: str
    #: When its last message of the conversation pane was, for people ("" if older).
    last: str
    #: Until when the bot is quiet in it, for people ("" when it is not paused).
    paused_until: str = ""
    why: str = ""


@dataclass(frozen=True)
class TenantDetail:
    """What the detail pane shows for one tenant; ``problem`` when the database failed."""

    slug: str
    summary: list[tuple[str, str]] = field(default_factory=list)
    #: Each message's lead (when, chat, direction) and text (`message_parts`).
    conversation: list[tuple[str, str]] = field(default_factory=list)
    log_lines: list[str] = field(default_factory=list)
    log_note: str = ""
    problem: str | None = None
    #: The wa-js version the tenant runs from its next start, and the fleet's (the
    #: pane marks a worker running another version than the fleet as a canary).
    wa_js: str | None = None
    wa_js_fleet: str | None = None
    #: Paused chats first (soonest to end first), then the conversation's chats,
    #: newest first.
    chats: list[ChatRow] = field(default_factory=list)


class DashboardContext(Protocol):
    """What the dashboard needs from whoever starts it: the configuration, a database
    engine made on first use, and a way to let go of both. `wactl tui` passes its
    command context (`wactl.cli.context.AppContext`); the dashboard never imports the
    CLI."""

    @property
    def config(self) -> Config: ...

    def engine(self, *, check_schema: bool = True) -> Engine: ...

    def close(self) -> None: ...


class Store:
    """The database and the log directory, as the dashboard needs them.

    One lock: the app's thread workers take turns (the engine is created on first use,
    with its connection and schema checks, by whichever call comes first).
    """

    def __init__(self, context: DashboardContext) -> None:
        self._context = context
        self._lock = threading.Lock()
        self._schema_checked = False

    @contextmanager
    def _session(self) -> Iterator[Session]:
        """A session; the schema is checked on the first one only (it costs a query)."""
        from wactl.db.engine import session_scope

        engine = self._context.engine(check_schema=not self._schema_checked)
        self._schema_checked = True
        with session_scope(engine) as session:
            yield session

    def tenant_names(self) -> dict[str, str]:
        """slug -> the business's name, for the filter; empty when the database fails."""
        from wactl.db import tenants

        with self._lock:
            try:
                with self._session() as session:
                    return {t.slug: t.name for t in tenants.list_tenants(session)}
            except Exception:  # names only help the filter; the pane reports DB trouble
                return {}

    def detail(self, slug: str) -> TenantDetail:
        from wactl.db import chats, tenants, wajs_releases
        from wactl.db.messages import recent_messages

        log_lines, log_note = self.worker_log(slug)
        with self._lock:
            try:
                with self._session() as session:
                    tenant = tenants.get_tenant(session, slug)
                    wa_js = wajs_releases.tenant_effective(session, tenant.id)
                    summary = [
                        f
                        for f in tenants.tenant_detail_fields(tenant, wa_js, ages=False)
                        if f[0] not in _HIDDEN_FIELDS
                    ]
                    messages = recent_messages(session, tenant.id, slug, limit=CONVERSATION_LINES)
                    paused = chats.pauses(session, tenant.id)
            except WactlError as exc:
                return TenantDetail(
                    slug, log_lines=log_lines, log_note=log_note, problem=exc.one_line()
                )
            except Exception as exc:  # a dashboard shows what failed and keeps going
                problem = f"unexpected {type(exc).__name__}: {exc}"
                return TenantDetail(slug, log_lines=log_lines, log_note=log_note, problem=problem)
        return TenantDetail(
            slug,
            summary=summary,
            conversation=[message_parts(m) for m in messages],
            log_lines=log_lines,
            log_note=log_note,
            wa_js=wa_js.version,
            wa_js_fleet=wa_js.fleet_version,
            chats=chat_rows(messages, paused),
        )

    def worker_log(self, slug: str) -> tuple[list[str], str]:
        """The tail of the worker's own log file, or why there is none."""
        path = worker_log_path(self._context.config.log_dir, slug)
        try:
            return [line.rstrip("\n") for line in last_lines(path, LOG_LINES)], ""
        except FileNotFoundError:
            return [], f"no worker log yet ({path})"
        except OSError as exc:
            return [], f"cannot read {path}: {exc.strerror or exc}"

    def close(self) -> None:
        with self._lock:
            self._context.close()


def chat_rows(
    messages: list[dict[str, Any]], paused: dict[str, tuple[dt.datetime, str | None]]
) -> list[ChatRow]:
    """The Chats tab: where the bot is paused, then the other chats of ``messages``."""
    last: dict[str, str] = {}
    for message in reversed(messages):  # newest first
        if message["chat"]:
            last.setdefault(
                message["chat"], local_time(dt.datetime.fromisoformat(message["created_at"]))
            )
    rows = [
        ChatRow(chat, last.get(chat, ""), local_time(until), pause_reason_text(why))
        for chat, (until, why) in sorted(paused.items(), key=lambda item: item[1][0])
    ]
    rows.extend(ChatRow(chat, when) for chat, when in last.items() if chat not in paused)
    return rows
