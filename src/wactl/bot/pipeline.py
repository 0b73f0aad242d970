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

Steps 1 and 3 are one transaction when nothing stands in the way (the fast path): the
chat has no message queued or being recorded, the pipeline already knows the chat's
pause and history, a concurrency slot is free, no recovery runs and there is no typing
delay. The decision is then made first and written with the message (NEW + PENDING
reply, or IGNORED), the same rows the two steps write, so recovery treats them alike;
a message that turns out to be a duplicate writes nothing and gives its rate-limit
token back. That is two write transactions per answered message instead of three.
What the pipeline knows of a chat (pause, whether it has history) is read once per
chat and then kept in memory, because only this worker writes them.

Sending a reply (`_send_reply`): the engine fixes the reply's WhatsApp id first
(`Engine.reserve_id`; the sandbox uses the pipeline's client id, ``wactl-SLUG-<inbound
row id>``, the whatsapp-web engine has wa-js generate one), the id is stored in the
PENDING row, durably, and only then is the reply handed to the engine under that id.

After a crash at any point, `recover` finishes the work: NEW inbound rows are handled
again (nothing was sent for them), and for each PENDING reply the engine is asked
whether the stored id reached WhatsApp (`Engine.was_sent`): yes -> marked SENT; no ->
sent again (under a new id); cannot tell yet (a page still loading, a message still on
the device) -> asked again a few times, and left PENDING for the next start if it stays
unknown, never sent twice. So on every engine, every inbound message gets exactly one
reply. Errors while handling one message (or one recovered reply) are logged, written to
``worker_process.last_error``, and the pipeline goes on with the next one.

Read receipts (``pipeline.read_receipts``): when the bot starts answering a message (it
decided to reply, before the typing delay), `Engine.mark_read`; never for a message it
stays silent on (a paused chat is the business's to read).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from wactl.bot.counters import HourlyCounts
from wactl.bot.engines.base import Engine, InboundMessage
from wactl.bot.ratelimit import RateLimiter
from wactl.bot.store import InboundRow, MessageStore, PendingReply
from wactl.config.model import PipelineConfig
from wactl.enums import Direction, MessageState

log = logging.getLogger(__name__)

T = TypeVar("T")
RunDb = Callable[[Callable[[], T]], Awaitable[T]]

#: How many chats the pipeline remembers the pause and history of (least recently used
#: forgotten first; a forgotten chat is read again from the database).
CHAT_MEMORY = 10_000
#: Recovery asks an engine that cannot tell yet whether a reply was sent again after
#: these delays (seconds; ~15 s in all), then leaves it for the next start.
WAS_SENT_RETRIES = (0.5, 1.0, 2.0, 4.0, 8.0)


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
class _ChatMemory:
    """What the pipeline knows of a chat it has answered in. Only this worker writes a
    tenant's chat pauses and log, so after one read the memory stays true."""

    paused_until: dt.datetime | None
    has_history: bool


@dataclass
class _Chat:
    queue: asyncio.Queue[_Job] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    #: A message taken by the fast path is being handled: queued ones wait for it.
    busy: bool = False


@dataclass(frozen=True)
class _Decision:
    """What to do with a message: a reply, or silence for ``reason``."""

    text: str | None
    kind: str | None = None
    handoff: bool = False
    reason: str | None = None
    #: What the rate limiter said, so that a duplicate can give its token back.
    allowed: bool = True
    warned: bool = False


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
        self._memory: OrderedDict[str, _ChatMemory] = OrderedDict()
        #: Chats with a message being recorded by the slow path (how many).
        self._recording: Counter[str] = Counter()
        #: Messages in and out, for the heartbeat (seeded by `load_counts`).
        self.counts = HourlyCounts(now)

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
        if self._fast_path_open(message.chat) and await self._submit_decided(message, done):
            return done
        await self._submit_recorded(message, done)
        return done

    async def _submit_recorded(
        self, message: InboundMessage, done: asyncio.Future[Outcome]
    ) -> None:
        """The slow path: record the message, then queue it on its chat."""
        # Until it is queued, a message being recorded holds its chat's place in line:
        # a later message of the chat must not take the fast path past it.
        self._recording[message.chat] += 1
        try:
            in_id = await self._db(lambda: self.store.record_inbound(message))
            if in_id is None:
                log.info("duplicate message %s skipped", message.wa_message_id)
                done.set_result(Outcome("duplicate"))
                return
            self.counts.add(Direction.IN)
            if self._recorded_here is not None:
                self._recorded_here.add(in_id)
            await self._backlog_queued.wait()
            self._enqueue(_Job(InboundRow.of(in_id, message), done))
        finally:
            self._recording[message.chat] -= 1
            if not self._recording[message.chat]:
                del self._recording[message.chat]

    # --- the fast path: record and decide in one transaction ------------------------

    def _fast_path_open(self, chat: str) -> bool:
        """Whether ``message`` can be decided at once: its chat idle and known, a slot
        free, no recovery under way, no typing delay (a decision waiting out a delay
        should not be durable yet: an engine that cannot tell whether a reply went out
        would then skip it after a crash)."""
        return (
            chat not in self._chats
            and chat not in self._recording
            and chat in self._memory
            and not self._slots.locked()
            and self._backlog_queued.is_set()
            and self._recorded_here is None
            and not self.pacing
        )

    async def _submit_decided(self, message: InboundMessage, done: asyncio.Future[Outcome]) -> bool:
        """The common case, in one transaction instead of two: the message is recorded
        together with the decision (the PENDING reply, or IGNORED), exactly the rows the
        slow path writes in two steps, so recovery cannot tell them apart. False when
        the reply book failed before anything was written: the slow path then records
        the message and reports the failure."""
        await self._slots.acquire()  # a slot is free: this does not wait
        chat = self._chats[message.chat] = _Chat(busy=True)  # later messages queue behind
        memory = self._memory[message.chat]
        self._memory.move_to_end(message.chat)
        now = self._now()
        try:
            decision = self._decide(message.chat, message.text, memory, now)
        except Exception:
            self._release(message.chat, chat)
            return False
        pause = None
        if decision.handoff:
            pause = (now + dt.timedelta(minutes=self.config.handoff_pause_minutes), "handoff")
            memory.paused_until = pause[0]
        prefix = self._client_prefix
        try:
            written = await self._db(
                lambda: self.store.record_decided(
                    message,
                    reply=None if decision.text is None else (decision.text, decision.kind or ""),
                    client_prefix=prefix,
                    pause=pause,
                )
            )
        except BaseException:
            self._release(message.chat, chat)
            raise
        if written is None:
            log.info("duplicate message %s skipped", message.wa_message_id)
            self.limiter.refund(message.chat, allowed=decision.allowed, warned=decision.warned)
            self._release(message.chat, chat)
            done.set_result(Outcome("duplicate"))
            return True
        in_id, out_id = written
        self.counts.add(Direction.IN)
        if decision.handoff:
            self._on_event("handoff", {"chat": message.chat, "text": message.text})
        if out_id is None or decision.text is None:
            self._release(message.chat, chat)
            done.set_result(Outcome("ignored", in_id=in_id, reason=decision.reason))
            return True
        row = InboundRow.of(in_id, message)
        self._active.add(in_id)
        chat.task = asyncio.get_running_loop().create_task(
            self._send_decided(chat, row, out_id, decision, done), name=f"chat-{row.chat}"
        )
        return True

    async def _send_decided(
        self,
        chat: _Chat,
        row: InboundRow,
        out_id: int,
        decision: _Decision,
        done: asyncio.Future[Outcome],
    ) -> None:
        try:
            outcome = await self._safely(row, lambda: self._answer(row, out_id, decision))
        finally:
            self._slots.release()
            self._active.discard(row.id)
            chat.busy = False
        if not done.done():
            done.set_result(outcome)
        await self._drain(row.chat, chat)  # what arrived meanwhile, in order

    def _release(self, name: str, chat: _Chat) -> None:
        """A fast-path message that needs no sending is done: give its slot back and hand
        its chat over to what queued behind it."""
        self._slots.release()
        chat.busy = False
        if not chat.queue.empty():
            chat.task = asyncio.get_running_loop().create_task(
                self._drain(name, chat), name=f"chat-{name}"
            )
        elif self._chats.get(name) is chat:
            del self._chats[name]

    @property
    def _client_prefix(self) -> str:
        """The pipeline's id of a reply is this plus the inbound row's id."""
        return f"wactl-{self.slug}-"

    async def _owner_message(self, message: InboundMessage, done: asyncio.Future[Outcome]) -> None:
        """The business answered by hand: log it, and keep the bot quiet in that chat."""
        out_id = await self._db(lambda: self.store.record_owner_message(message))
        if out_id is None:
            done.set_result(Outcome("duplicate"))
            return
        self.counts.add(Direction.OUT)
        until = self._now() + dt.timedelta(minutes=self.config.owner_pause_minutes)
        await self._pause(message.chat, until, "owner")
        self._on_event("takeover", {"chat": message.chat, "until": until.isoformat()})
        done.set_result(Outcome("ignored", reason="owner"))

    def _enqueue(self, job: _Job) -> None:
        chat = self._chats.get(job.row.chat)
        if chat is None:
            chat = self._chats[job.row.chat] = _Chat()
        self._active.add(job.row.id)
        chat.queue.put_nowait(job)
        if not chat.busy and (chat.task is None or chat.task.done()):
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
        return await self._safely(row, lambda: self._handle(row))

    async def _safely(self, row: InboundRow, handle: Callable[[], Awaitable[Outcome]]) -> Outcome:
        try:
            return await handle()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            with contextlib.suppress(Exception):
                await self._db(lambda: self.store.mark(row.id, MessageState.FAILED))
            await self._failed(f"message {row.wa_message_id} from {row.chat}", exc)
            return Outcome("failed", in_id=row.id, reason=str(exc))

    async def _failed(self, what: str, exc: Exception) -> None:
        """One message's (or recovered reply's) handling failed: into the log (with the
        traceback), ``worker_process.last_error`` and an ``error`` event; the pipeline
        goes on with the next one. Called from the ``except`` block."""
        message = f"{what}: {type(exc).__name__}: {exc}"
        log.exception("handling %s", message)
        with contextlib.suppress(Exception):
            await self._db(lambda: self.store.set_last_error(message))
        self._on_event("error", {"message": message})

    def _decide(self, chat: str, text: str, memory: _ChatMemory, now: dt.datetime) -> _Decision:
        """The reply to ``text``, or silence (paused chat, over the rate limit)."""
        first = not memory.has_history
        memory.has_history = True  # this message is the chat's history from now on
        paused = memory.paused_until
        if paused is not None and paused > now:
            return _Decision(None, reason="paused")
        allowed, warn = self.limiter.check(chat)
        replier = self._replier()
        if not allowed:
            if not warn:
                return _Decision(None, reason="rate_limited", allowed=False)
            return _Decision(
                replier.rate_limited_text(), "rate_limited", allowed=False, warned=True
            )
        reply = replier.reply(text, now, first_message=first)
        return _Decision(reply.text, reply.kind, reply.handoff)

    async def _handle(self, row: InboundRow) -> Outcome:
        """The slow path: the message was recorded; decide, then reply."""
        now = self._now()
        memory = await self._chat_memory(row)
        decision = self._decide(row.chat, row.text, memory, now)
        if decision.text is None:
            await self._db(lambda: self.store.mark(row.id, MessageState.IGNORED))
            return Outcome("ignored", in_id=row.id, reason=decision.reason)
        text, kind = decision.text, decision.kind or ""
        await self._mark_read(row)
        if decision.handoff:
            until = now + dt.timedelta(minutes=self.config.handoff_pause_minutes)
            await self._pause(row.chat, until, "handoff")
            self._on_event("handoff", {"chat": row.chat, "text": row.text})
        if self.pacing:
            await asyncio.sleep(self._typing_delay(text))
        client_id = self._client_id(row.id)
        out_id = await self._db(lambda: self.store.begin_reply(row.id, row, text, kind, client_id))
        return await self._deliver(row, out_id, decision)

    async def _answer(self, row: InboundRow, out_id: int, decision: _Decision) -> Outcome:
        """The fast path's reply: the bot starts answering (read receipt), then delivers."""
        await self._mark_read(row)
        return await self._deliver(row, out_id, decision)

    async def _mark_read(self, row: InboundRow) -> None:
        if self.config.read_receipts:
            try:
                await self.engine.mark_read(row.wa_message_id)
            except Exception:
                log.exception("marking message %s read failed", row.wa_message_id)

    async def _deliver(self, row: InboundRow, out_id: int, decision: _Decision) -> Outcome:
        """Hand the decided reply to WhatsApp, then mark it SENT and the message ANSWERED."""
        assert decision.text is not None
        await self._send_reply(out_id, row.id, row.chat, decision.text)
        self.handled += 1
        return Outcome("replied", in_id=row.id, reply=decision.text, kind=decision.kind)

    async def _send_reply(self, out_id: int, in_id: int | None, chat: str, text: str) -> None:
        """Fix the reply's WhatsApp id and store it (durable before anything leaves),
        send it under that id, then mark it SENT (and its message ANSWERED)."""
        client_id = (
            self._client_id(in_id) if in_id is not None else f"{self._client_prefix}o{out_id}"
        )
        message_id = await self.engine.reserve_id(chat, client_id)
        if message_id != client_id:
            await self._db(lambda: self.store.reserve_reply(out_id, message_id))
        sent_id = await self.engine.send_text(chat, text, message_id=message_id)
        await self._db(lambda: self.store.finish_reply(out_id, in_id, sent_id))
        self.counts.add(Direction.OUT)

    def _client_id(self, in_id: int) -> str:
        return f"{self._client_prefix}{in_id}"

    async def _chat_memory(self, row: InboundRow) -> _ChatMemory:
        memory = self._memory.get(row.chat)
        if memory is not None:
            self._memory.move_to_end(row.chat)
            return memory
        info = await self._db(lambda: self.store.chat_info(row.chat, row.id))
        memory = self._memory.get(row.chat)  # the owner paused the chat meanwhile?
        if memory is None:
            memory = self._remember(row.chat, _ChatMemory(info.paused_until, info.has_history))
        return memory

    def _remember(self, chat: str, memory: _ChatMemory) -> _ChatMemory:
        self._memory[chat] = memory
        self._memory.move_to_end(chat)
        while len(self._memory) > CHAT_MEMORY:
            self._memory.popitem(last=False)
        return memory

    async def _pause(self, chat: str, until: dt.datetime, reason: str) -> None:
        await self._db(lambda: self.store.pause(chat, until, reason))
        # Either way the chat has history now: the owner's message or the hand-over.
        memory = self._memory.get(chat)
        if memory is None:
            self._remember(chat, _ChatMemory(until, has_history=True))
        else:
            memory.paused_until = until
            memory.has_history = True

    async def load_counts(self) -> None:
        """Seed the hourly counters from the log (at start-up)."""
        since = self._now() - dt.timedelta(hours=1)
        self.counts.seed(await self._db(lambda: self.store.recent_times(since)))

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
        # A reply this process is sending right now is not a crash's leftover.
        pending = [reply for reply in pending if reply.in_id not in self._active]
        recorded_here = self._recorded_here or set()
        decided = {reply.in_id for reply in pending}
        skip = decided | recorded_here | self._active
        new = [row for row in new if row.id not in skip]
        for reply in pending:
            try:
                await self._recover_reply(reply)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._failed(f"reply {reply.message_id} to {reply.chat}", exc)
        loop = asyncio.get_running_loop()
        for row in new:
            self._enqueue(_Job(row, loop.create_future()))
        if pending or new:
            log.info(
                "recovered %d pending replies and %d unhandled messages", len(pending), len(new)
            )
        return len(pending), len(new)

    async def _recover_reply(self, reply: PendingReply) -> None:
        """One PENDING reply a crash left: confirm it, send it again, or leave it."""
        sent = await self.engine.was_sent(reply.message_id)
        for delay in WAS_SENT_RETRIES:
            if sent is not None:
                break
            await asyncio.sleep(delay)
            sent = await self.engine.was_sent(reply.message_id)
        if sent is None:
            log.warning(
                "cannot tell whether reply %s reached WhatsApp; it stays pending and is "
                "checked again at the next start (it is never sent twice)",
                reply.message_id,
            )
            return
        if sent:
            await self._db(
                lambda: self.store.finish_reply(reply.out_id, reply.in_id, reply.message_id)
            )
            self.counts.add(Direction.OUT)
            return
        log.info("resending reply %s (it never reached WhatsApp)", reply.message_id)
        await self._send_reply(reply.out_id, reply.in_id, reply.chat, reply.text)

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout``) for the queued messages to be handled."""
        tasks = [c.task for c in self._chats.values() if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
