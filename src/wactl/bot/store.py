"""The pipeline's database work for one tenant: the message log and chat pauses.

Plain SQLAlchemy Core (no ORM identity map: ~3x less CPU per message). Every statement
is built once, with bound parameters, and runs on one connection that the store keeps
open: it is called only from the worker's single database thread, so nothing else
shares it. Per message that saves building the statements and their cache keys, and a
pool checkout with its pre-ping and rollback per transaction (bench/README.md has the
figures). Each method is one short transaction. A connection that breaks (the
PostgreSQL server restarted) fails the message being handled; the next use reconnects.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from wactl.bot.engines.base import InboundMessage
from wactl.db.base import Base, utcnow
from wactl.db.engine import describe_db_error
from wactl.db.messages import prunable
from wactl.db.models import ChatState, MessageLog, WorkerProcess
from wactl.enums import Direction, MessageState

log = logging.getLogger(__name__)

T = TypeVar("T")

# Table objects (typed as such, unlike ``Model.__table__``).
LOG = Base.metadata.tables[MessageLog.__tablename__]
CHATS = Base.metadata.tables[ChatState.__tablename__]
WORKERS = Base.metadata.tables[WorkerProcess.__tablename__]


@dataclass(frozen=True)
class InboundRow:
    id: int
    chat: str
    from_number: str
    to_number: str
    text: str
    wa_message_id: str

    @classmethod
    def of(cls, row_id: int, message: InboundMessage) -> InboundRow:
        return cls(
            row_id,
            message.chat,
            message.from_number,
            message.to_number,
            message.text,
            message.wa_message_id,
        )

    @classmethod
    def from_log(cls, row: Any) -> InboundRow:
        """From a ``message_log`` row."""
        return cls(
            row.id, row.chat, row.from_number, row.to_number, row.message_text, row.wa_message_id
        )

    def message(self) -> InboundMessage:
        """The message this row recorded (for handling it again)."""
        return InboundMessage(
            wa_message_id=self.wa_message_id,
            chat=self.chat,
            from_number=self.from_number,
            to_number=self.to_number,
            text=self.text,
            timestamp=dt.datetime.now(dt.UTC),
        )


@dataclass(frozen=True)
class PendingReply:
    out_id: int
    in_id: int | None
    chat: str
    text: str
    kind: str | None
    #: The id stored with the reply: the client id, or the WhatsApp id the engine
    #: reserved for it before sending (`Engine.reserve_id`).
    message_id: str


@dataclass(frozen=True)
class ChatInfo:
    """What the pipeline needs to know of a chat before it answers in it."""

    #: The bot stays quiet in the chat until then (owner takeover, hand-over).
    paused_until: dt.datetime | None
    #: Whether anything was logged in the chat before the message being handled.
    has_history: bool


def _causes(error: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def is_locked(error: BaseException) -> bool:
    """Whether ``error`` is SQLite saying another connection holds the lock it needs."""
    return any(
        isinstance(e, OperationalError) and "is locked" in str(e.orig) for e in _causes(error)
    )


def is_database_error(error: BaseException) -> bool:
    """Whether ``error`` came from the database (unreachable, locked, full...)."""
    from wactl.errors import DatabaseError

    return any(isinstance(e, SQLAlchemyError | DatabaseError) for e in _causes(error))


class MessageStore:
    def __init__(self, db: Engine, tenant_id: uuid.UUID) -> None:
        self.db = db
        self.tenant_id = tenant_id
        self._connection: Connection | None = None
        #: SQLite: how long the kept connection waits for another writer (None: the
        #: engine's database.busy_timeout_ms).
        self._busy_ms: int | None = None
        module = postgresql if db.dialect.name == "postgresql" else sqlite
        self._insert_once = (
            module.insert(LOG)
            .on_conflict_do_nothing(index_elements=["tenant_id", "direction", "wa_message_id"])
            .returning(LOG.c.id)
        )
        self._insert = insert(LOG).returning(LOG.c.id)
        self._set_state = (
            update(LOG).where(LOG.c.id == bindparam("row_id")).values(state=bindparam("new_state"))
        )
        self._set_sent = (
            update(LOG)
            .where(LOG.c.id == bindparam("row_id"))
            .values(state=MessageState.SENT.value, wa_message_id=bindparam("sent_id"))
        )
        self._set_id = (
            update(LOG)
            .where(LOG.c.id == bindparam("row_id"))
            .values(wa_message_id=bindparam("message_id"))
        )
        self._paused_until = select(CHATS.c.paused_until).where(
            CHATS.c.tenant_id == bindparam("tenant"), CHATS.c.chat == bindparam("chat_name")
        )
        self._earlier_row = (
            select(LOG.c.id)
            .where(
                LOG.c.tenant_id == bindparam("tenant"),
                LOG.c.chat == bindparam("chat_name"),
                LOG.c.id < bindparam("before_id"),
            )
            .limit(1)
        )
        self._update_pause = (
            update(CHATS)
            .where(CHATS.c.tenant_id == bindparam("tenant"), CHATS.c.chat == bindparam("chat_name"))
            .values(
                paused_until=bindparam("until"),
                pause_reason=bindparam("reason"),
                updated_at=bindparam("at"),
            )
        )
        self._insert_pause = insert(CHATS)

    # --- the connection -------------------------------------------------------------

    def wait_for_locks(self, milliseconds: int) -> None:
        """SQLite: how long the kept connection waits for another writer's lock before
        it raises "database is locked" (until the next call; at first, the engine's
        database.busy_timeout_ms)."""
        if milliseconds == self._busy_ms or self.db.dialect.name != "sqlite":
            return
        self._busy_ms = milliseconds
        connection = self._connection
        if connection is not None and not connection.closed:
            self._apply_busy_timeout(connection)

    def _apply_busy_timeout(self, connection: Connection) -> None:
        # On the driver's connection: through SQLAlchemy it would begin a transaction.
        raw = connection.connection.driver_connection
        assert raw is not None and self._busy_ms is not None
        raw.execute(f"PRAGMA busy_timeout={int(self._busy_ms)}")

    def _run(self, work: Callable[[Connection], T]) -> T:
        """``work`` in one transaction on the kept connection (opened on first use).

        A connection found dead (the server restarted or ended it while the worker was
        idle) is replaced and the work tried once more: without that, the first message
        after a database restart would fail. A transaction cut off at its commit might
        have committed; the retry then meets its own row (a duplicate, or one more row),
        the narrow window every client of a remote database has.
        """
        for attempt in (1, 2):
            connection = self._connection
            if connection is None or connection.closed:
                connection = self._connection = self.db.connect()
                if self._busy_ms is not None:
                    self._apply_busy_timeout(connection)
            try:
                with connection.begin():
                    return work(connection)
            except DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
                self._connection = None
                with contextlib.suppress(Exception):
                    connection.close()
                if attempt == 2:
                    raise
                log.warning("the database connection was lost; reconnecting")
        raise AssertionError("unreachable")

    def run_session(self, work: Callable[[Session], T]) -> T:
        """``work`` with an ORM session on the kept connection, in one transaction: so a
        worker whose database work all runs on one thread needs one server connection,
        not one for the pipeline and another for everything else."""

        def in_session(connection: Connection) -> T:
            session = Session(bind=connection, expire_on_commit=False)
            try:
                result = work(session)
                session.flush()
                return result
            finally:
                session.close()

        try:
            return self._run(in_session)
        except OperationalError as exc:
            raise describe_db_error(self.db, exc) from exc

    def close(self) -> None:
        """Give the kept connection back (before the engine is disposed)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    # --- writes -----------------------------------------------------------------------

    def _log_row(
        self, message: InboundMessage, direction: Direction, state: MessageState
    ) -> dict[str, object]:
        return {
            "tenant_id": self.tenant_id,
            "direction": direction.value,
            "from_number": message.from_number,
            "to_number": message.to_number,
            "message_text": message.text,
            "wa_message_id": message.wa_message_id,
            "chat": message.chat,
            "state": state.value,
            "kind": None,
            "reply_to_id": None,
            "created_at": utcnow(),
        }

    def _insert_ignoring_duplicates(self, values: dict[str, object]) -> int | None:
        """Insert a log row; None when (tenant, direction, wa_message_id) exists already."""
        row = self._run(lambda c: c.execute(self._insert_once, values).first())
        return None if row is None else int(row[0])

    def record_inbound(self, message: InboundMessage) -> int | None:
        """Durable dedup: the message is logged before it is handled; None if seen before."""
        return self._insert_ignoring_duplicates(
            self._log_row(message, Direction.IN, MessageState.NEW)
        )

    def record_owner_message(self, message: InboundMessage) -> int | None:
        """A message the business typed by hand: logged as OUT (kind owner), deduplicated."""
        values = self._log_row(message, Direction.OUT, MessageState.SENT)
        values["kind"] = "owner"
        return self._insert_ignoring_duplicates(values)

    def chat_info(self, chat: str, before_id: int) -> ChatInfo:
        """The chat's pause, and whether anything was logged in it before ``before_id``."""
        params = {"tenant": self.tenant_id, "chat_name": chat, "before_id": before_id}

        def read(connection: Connection) -> tuple[object, bool]:
            paused = connection.execute(self._paused_until, params).scalar()
            return paused, connection.execute(self._earlier_row, params).first() is not None

        paused, earlier = self._run(read)
        if not isinstance(paused, dt.datetime):
            return ChatInfo(None, has_history=earlier)
        if paused.tzinfo is None:
            paused = paused.replace(tzinfo=dt.UTC)
        return ChatInfo(paused, has_history=earlier)

    def pause(self, chat: str, until: dt.datetime | None, reason: str | None) -> None:
        """Keep the bot quiet in ``chat`` until ``until`` (None: not paused any more)."""
        self._run(lambda c: self._write_pause(c, chat, until, reason))

    def _write_pause(
        self,
        connection: Connection,
        chat: str,
        until: dt.datetime | None,
        reason: str | None,
    ) -> None:
        at = utcnow()
        params = {
            "tenant": self.tenant_id,
            "chat_name": chat,
            "until": until,
            "reason": reason,
            "at": at,
        }
        if not connection.execute(self._update_pause, params).rowcount:
            connection.execute(
                self._insert_pause,
                {
                    "tenant_id": self.tenant_id,
                    "chat": chat,
                    "paused_until": until,
                    "pause_reason": reason,
                    "updated_at": at,
                },
            )

    def record_decided(
        self,
        message: InboundMessage,
        *,
        reply: tuple[str, str] | None,
        client_prefix: str,
        pause: tuple[dt.datetime, str] | None = None,
    ) -> tuple[int, int | None] | None:
        """The pipeline's fast path: `record_inbound` and the decision in one transaction.

        ``reply`` is (text, kind): the message is recorded NEW with a PENDING reply whose
        client id is ``client_prefix`` + the message's row id; None: recorded IGNORED.
        ``pause`` (until, reason) pauses the chat in the same transaction. Returns the
        (inbound, reply) row ids, or None when the message is a duplicate (then nothing
        is written)."""
        inbound = self._log_row(
            message, Direction.IN, MessageState.NEW if reply else MessageState.IGNORED
        )

        def write(connection: Connection) -> tuple[int, int | None] | None:
            row = connection.execute(self._insert_once, inbound).first()
            if row is None:
                return None
            in_id = int(row[0])
            if reply is None:
                return in_id, None
            if pause is not None:
                self._write_pause(connection, message.chat, *pause)
            text, kind = reply
            values = {
                "tenant_id": self.tenant_id,
                "direction": Direction.OUT.value,
                "from_number": message.to_number,
                "to_number": message.from_number,
                "message_text": text,
                "wa_message_id": f"{client_prefix}{in_id}",
                "chat": message.chat,
                "state": MessageState.PENDING.value,
                "kind": kind,
                "reply_to_id": in_id,
                "created_at": inbound["created_at"],
            }
            return in_id, int(connection.execute(self._insert, values).scalar_one())

        return self._run(write)

    def begin_reply(self, in_id: int, row: InboundRow, text: str, kind: str, client_id: str) -> int:
        """The decision, made durable before the reply is handed to WhatsApp."""
        values = {
            "tenant_id": self.tenant_id,
            "direction": Direction.OUT.value,
            "from_number": row.to_number,
            "to_number": row.from_number,
            "message_text": text,
            "wa_message_id": client_id,
            "chat": row.chat,
            "state": MessageState.PENDING.value,
            "kind": kind,
            "reply_to_id": in_id,
            "created_at": utcnow(),
        }
        return int(self._run(lambda c: c.execute(self._insert, values).scalar_one()))

    def reserve_reply(self, out_id: int, message_id: str) -> None:
        """Store the WhatsApp id a reply will be sent under, before it is sent."""
        self._run(lambda c: c.execute(self._set_id, {"row_id": out_id, "message_id": message_id}))

    def finish_reply(self, out_id: int, in_id: int | None, wa_message_id: str) -> None:
        def write(connection: Connection) -> None:
            connection.execute(self._set_sent, {"row_id": out_id, "sent_id": wa_message_id})
            if in_id is not None:
                connection.execute(
                    self._set_state, {"row_id": in_id, "new_state": MessageState.ANSWERED.value}
                )

        self._run(write)

    def mark(self, in_id: int, state: MessageState) -> None:
        self._run(lambda c: c.execute(self._set_state, {"row_id": in_id, "new_state": state.value}))

    # --- rarely: recovery, errors, retention, counters ----------------------------------

    def unhandled(self) -> tuple[list[tuple[InboundRow, PendingReply]], list[InboundRow]]:
        """After a crash: replies decided but not confirmed sent (with the messages they
        answer), and inbound messages recorded but not yet decided, oldest first."""

        def read(
            connection: Connection,
        ) -> tuple[list[tuple[InboundRow, PendingReply]], list[InboundRow]]:
            replies = [
                self._pending_of(r)
                for r in connection.execute(
                    select(LOG)
                    .where(
                        LOG.c.tenant_id == self.tenant_id,
                        LOG.c.state == MessageState.PENDING.value,
                    )
                    .order_by(LOG.c.id)
                )
            ]
            answered = {
                r.id: InboundRow.from_log(r)
                for r in connection.execute(
                    select(LOG).where(LOG.c.id.in_([p.in_id for p in replies if p.in_id]))
                )
            }
            pending = [(answered[p.in_id], p) for p in replies if p.in_id in answered]
            new = [
                InboundRow.from_log(r)
                for r in connection.execute(
                    select(LOG)
                    .where(
                        LOG.c.tenant_id == self.tenant_id,
                        LOG.c.state == MessageState.NEW.value,
                        LOG.c.direction == Direction.IN.value,
                    )
                    .order_by(LOG.c.id)
                )
            ]
            return pending, new

        return self._run(read)

    def unfinished(self, wa_message_id: str) -> tuple[InboundRow, PendingReply | None] | None:
        """The inbound message ``wa_message_id`` when its handling did not finish (NEW,
        FAILED), with its PENDING reply if it has one; None when it is done with."""

        def read(connection: Connection) -> tuple[InboundRow, PendingReply | None] | None:
            row = connection.execute(
                select(LOG).where(
                    LOG.c.tenant_id == self.tenant_id,
                    LOG.c.direction == Direction.IN.value,
                    LOG.c.wa_message_id == wa_message_id,
                    LOG.c.state.in_([MessageState.NEW.value, MessageState.FAILED.value]),
                )
            ).first()
            if row is None:
                return None
            reply = connection.execute(
                select(LOG).where(
                    LOG.c.reply_to_id == row.id, LOG.c.state == MessageState.PENDING.value
                )
            ).first()
            return InboundRow.from_log(row), None if reply is None else self._pending_of(reply)

        return self._run(read)

    @staticmethod
    def _pending_of(row: Any) -> PendingReply:
        return PendingReply(
            row.id, row.reply_to_id, row.chat, row.message_text, row.kind, row.wa_message_id
        )

    def recent_times(self, since: dt.datetime) -> list[tuple[str, dt.datetime]]:
        """(direction, created_at) of the messages logged since ``since`` (replies and
        the owner's messages count as OUT once sent), for the worker's hourly counters."""
        query = select(LOG.c.direction, LOG.c.created_at).where(
            LOG.c.tenant_id == self.tenant_id,
            LOG.c.created_at >= since,
            LOG.c.state != MessageState.PENDING.value,
        )
        rows = self._run(lambda c: c.execute(query).all())
        result = []
        for direction, created in rows:
            if created.tzinfo is None:
                created = created.replace(tzinfo=dt.UTC)
            result.append((getattr(direction, "value", str(direction)), created))
        return result

    def set_last_error(self, text: str) -> None:
        statement = (
            update(WORKERS)
            .where(WORKERS.c.tenant_id == self.tenant_id)
            .values(last_error=text[:2000])
        )
        self._run(lambda c: c.execute(statement))

    def prune(self, older_than: dt.datetime) -> int:
        """Delete log rows older than ``older_than`` that no unfinished work needs.

        On a connection of its own (not the kept one), so it may run on another thread
        than the pipeline's work."""
        statement = delete(LOG).where(prunable(older_than, self.tenant_id))
        with self.db.begin() as connection:
            return int(connection.execute(statement).rowcount or 0)
