"""The conversation pipeline of one worker (DESIGN.md section 5):
dedup -> per-chat FIFO -> rate limit -> reply -> send -> log.

The guarantee, message by message:

1. An inbound message is written to ``message_log`` (state NEW) before anything else;
   the unique key (tenant, IN, wa_message_id) makes a redelivery, however late, a
   duplicate that is skipped, and no TTL ever drops a new message.
2. The messages of one chat are handled one after another, in the order they were
   recorded; different chats run concurrently, at most ``pipeline.chat_concurrency``.
3. The decision (the reply text, or to stay silent) is made durable before the reply
   is handed to WhatsApp: an OUT row in state PENDING, linked to its inbound row.
4. After the engine accepts the reply, one transaction marks the OUT row SENT and the
   inbound row ANSWERED.

After a crash at any point, `recover` finishes the work: NEW inbound rows are handled
again (nothing was sent for them), and for each PENDING reply the engine is asked
whether it reached WhatsApp (`Engine.was_sent`, keyed by the reply's client id).
The sandbox engine knows for sure, so there every inbound message gets exactly one
reply. An engine that cannot know (None) gets the reply marked SENT without sending it
again: at most one copy, at the price of possibly none in that narrow window (see
`recover`). Errors while handling one message are logged, written to
``worker_process.last_error``, and the pipeline goes on with the next message.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from wactl.bot.engines.base import Engine, InboundMessage
from wactl.bot.ratelimit import RateLimiter
from wactl.bot.store import InboundRow, MessageStore
from wactl.config.model import PipelineConfig
from wactl.enums import MessageState

log = logging.getLogger(__name__)

T = TypeVar("T")
RunDb = Callable[[Callable[[], T]], Awaitable[T]]


class ReplyLike(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def handoff(self) -> bool: ...


class Replier(Protocol):
    """What the pipeline needs from the tenant's reply book (wactl.bot.replies)."""

    def reply(self, text: str, now: dt.datetime, *, first_message: bool) -> ReplyLike: ...

    def rate_limited_text(self) -> str: ...


@dataclass(frozen=True)
class Outcome:
    """What became of one inbound message."""

    #: "replied", "ignored", "duplicate" or "failed".
    status: str
    in_id: int | None = None
    reply: str | None = None
    kind: str | None = None
    #: Why it was ignored ("paused", "rate_limited") or what failed.
    reason: str | None = None


@dataclass
class _Job:
    row: InboundRow
    done: asyncio.Future[Outcome]


@dataclass
class _Chat:
    queue: asyncio.Queue[_Job] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class Pipeline:
    def __init__(
        self,
        *,
        slug: str,
        store: MessageStore,
        engine: Engine,
        replier: Callable[[], Replier],
        config: PipelineConfig,
        pacing: bool,
        run_db: Callable[[Callable[[], Any]], Awaitable[Any]],
        on_event: Callable[[str, dict[str, Any]], None],
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.slug = slug
        self.store = store
        self.engine = engine
        self._replier = replier
        self.config = config
        self.pacing = pacing and config.pacing_ms_per_char > 0
        self._run_db = run_db
        self._on_event = on_event
        self._now = now
        self.limiter = RateLimiter(
            chat_burst=config.chat_burst,
            chat_per_minute=config.chat_per_minute,
            tenant_burst=config.tenant_burst,
            tenant_per_minute=config.tenant_per_minute,
            clock=clock,
        )
        self._chats: dict[str, _Chat] = {}
        self._slots = asyncio.Semaphore(config.chat_concurrency)
        self._closed = False
        self.handled = 0
        #: Closed while `recover` collects the backlog: new messages are recorded but
        #: queued only after the older, unfinished ones of their chat.
        self._backlog_queued = asyncio.Event()
        self._backlog_queued.set()
        #: Inbound ids recorded by this process while recovery runs (not backlog).
        self._recorded_here: set[int] | None = None
        #: Inbound ids queued or being handled by this process.
        self._active: set[int] = set()

    async def _db(self, fn: Callable[[], T]) -> T:
        result: T = await self._run_db(fn)
        return result

    # --- intake -------------------------------------------------------------------

    async def submit(self, message: InboundMessage) -> asyncio.Future[Outcome]:
        """Record ``message`` (dedup) and queue it on its chat; the future resolves when
        it has been answered, ignored or has failed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Outcome] = loop.create_future()
        if message.from_me:
            await self._owner_message(message, done)
            return done
        in_id = await self._db(lambda: self.store.record_inbound(message))
        if in_id is None:
            log.info("duplicate message %s skipped", message.wa_message_id)
            done.set_result(Outcome("duplicate"))
            return done
        if self._recorded_here is not None:
            self._recorded_here.add(in_id)
        await self._backlog_queued.wait()
        row = InboundRow(
            in_id,
            message.chat,
            message.from_number,
            message.to_number,
            message.text,
            message.wa_message_id,
        )
        self._enqueue(_Job(row, done))
        return done

    async def _owner_message(self, message: InboundMessage, done: asyncio.Future[Outcome]) -> None:
        """The business answered by hand: log it, and keep the bot quiet in that chat."""
        out_id = await self._db(lambda: self.store.record_owner_message(message))
        if out_id is None:
            done.set_result(Outcome("duplicate"))
            return
        until = self._now() + dt.timedelta(minutes=self.config.owner_pause_minutes)
        await self._db(lambda: self.store.pause(message.chat, until, "owner"))
        self._on_event("takeover", {"chat": message.chat, "until": until.isoformat()})
        done.set_result(Outcome("ignored", reason="owner"))

    def _enqueue(self, job: _Job) -> None:
        chat = self._chats.get(job.row.chat)
        if chat is None:
            chat = self._chats[job.row.chat] = _Chat()
        self._active.add(job.row.id)
        chat.queue.put_nowait(job)
        if chat.task is None or chat.task.done():
            chat.task = asyncio.get_running_loop().create_task(
                self._drain(job.row.chat, chat), name=f"chat-{job.row.chat}"
            )

    async def _drain(self, name: str, chat: _Chat) -> None:
        """Handle one chat's queue in order; the task ends when the queue is empty."""
        while not chat.queue.empty():
            job = chat.queue.get_nowait()
            async with self._slots:
                outcome = await self._handle_safely(job.row)
            self._active.discard(job.row.id)
            if not job.done.done():
                job.done.set_result(outcome)
        if self._chats.get(name) is chat and chat.queue.empty():
            del self._chats[name]

    # --- handling -----------------------------------------------------------------

    async def _handle_safely(self, row: InboundRow) -> Outcome:
        try:
            return await self._handle(row)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = f"message {row.wa_message_id} from {row.chat}: {type(exc).__name__}: {exc}"
            log.exception("handling %s", message)
            with contextlib.suppress(Exception):
                await self._db(lambda: self.store.mark(row.id, MessageState.FAILED))
            with contextlib.suppress(Exception):
                await self._db(lambda: self.store.set_last_error(message))
            self._on_event("error", {"message": message})
            return Outcome("failed", in_id=row.id, reason=str(exc))

    async def _handle(self, row: InboundRow) -> Outcome:
        now = self._now()
        paused = await self._db(lambda: self.store.paused_until(row.chat))
        if paused is not None and paused > now:
            await self._db(lambda: self.store.mark(row.id, MessageState.IGNORED))
            return Outcome("ignored", in_id=row.id, reason="paused")
        allowed, warn = self.limiter.check(row.chat)
        replier = self._replier()
        if not allowed:
            if not warn:
                await self._db(lambda: self.store.mark(row.id, MessageState.IGNORED))
                return Outcome("ignored", in_id=row.id, reason="rate_limited")
            text, kind, handoff = replier.rate_limited_text(), "rate_limited", False
        else:
            first = await self._db(lambda: self.store.is_first_in_chat(row.chat, row.id))
            reply = replier.reply(row.text, now, first_message=first)
            text, kind, handoff = reply.text, reply.kind, reply.handoff
        if handoff:
            until = now + dt.timedelta(minutes=self.config.handoff_pause_minutes)
            await self._db(lambda: self.store.pause(row.chat, until, "handoff"))
            self._on_event("handoff", {"chat": row.chat, "text": row.text})
        if self.pacing:
            await asyncio.sleep(self._typing_delay(text))
        client_id = f"wactl-{self.slug}-{row.id}"
        out_id = await self._db(lambda: self.store.begin_reply(row.id, row, text, kind, client_id))
        sent_id = await self.engine.send_text(row.chat, text, client_id=client_id)
        await self._db(lambda: self.store.finish_reply(out_id, row.id, sent_id))
        self.handled += 1
        return Outcome("replied", in_id=row.id, reply=text, kind=kind)

    def _typing_delay(self, text: str) -> float:
        base = min(
            self.config.pacing_max_seconds, len(text) * self.config.pacing_ms_per_char / 1000
        )
        jitter = self.config.pacing_jitter
        return base * (1 - jitter + 2 * jitter * random.random())  # noqa: S311 - not crypto

    # --- recovery -----------------------------------------------------------------

    async def recover(self) -> tuple[int, int]:
        """Finish what a crashed worker left: (replies confirmed or resent, messages
        handled again)."""
        self._backlog_queued.clear()
        self._recorded_here = set()
        try:
            return await self._recover()
        finally:
            self._recorded_here = None
            self._backlog_queued.set()

    async def _recover(self) -> tuple[int, int]:
        pending, new = await self._db(self.store.unhandled)
        recorded_here = self._recorded_here or set()
        decided = {reply.in_id for reply in pending}
        skip = decided | recorded_here | self._active
        new = [row for row in new if row.id not in skip]
        for reply in pending:
            sent = await self.engine.was_sent(reply.client_id)
            if sent is False:
                log.info("resending reply %s (it never reached WhatsApp)", reply.client_id)
                sent_id = await self.engine.send_text(
                    reply.chat, reply.text, client_id=reply.client_id
                )
            else:
                if sent is None:
                    log.warning(
                        "reply %s may or may not have reached WhatsApp before the crash; "
                        "not sending it again (at most once)",
                        reply.client_id,
                    )
                sent_id = reply.client_id
            await self._db(
                lambda reply=reply, sent_id=sent_id: self.store.finish_reply(  # type: ignore[misc]
                    reply.out_id, reply.in_id, sent_id
                )
            )
        loop = asyncio.get_running_loop()
        for row in new:
            self._enqueue(_Job(row, loop.create_future()))
        if pending or new:
            log.info(
                "recovered %d pending replies and %d unhandled messages", len(pending), len(new)
            )
        return len(pending), len(new)

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout``) for the queued messages to be handled."""
        tasks = [c.task for c in self._chats.values() if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
