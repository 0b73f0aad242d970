"""The conversation pipeline of one worker (DESIGN.md section 5):
dedup -> per-chat FIFO -> rate limit -> reply -> send -> log.

The guarantee, message by message:

1. An inbound message is written to ``message_log`` (state NEW) before anything else;
   the unique key (tenant, IN, wa_message_id) makes a redelivery, however late, a
   duplicate, and no TTL ever drops a new message. A redelivery of a message whose
   handling has not finished (NEW, a reply still PENDING, or FAILED) is not dropped: it
   starts that handling again, unless this process is already on it.
2. The messages of one chat are handled one after another, in the order they arrived;
   different chats run concurrently, at most ``pipeline.chat_concurrency``.
3. The decision (the reply text, or to stay silent) is made durable before the reply
   is handed to WhatsApp: an OUT row in state PENDING, linked to its inbound row.
4. Sending a reply (`_send_reply`): the engine fixes the reply's WhatsApp id first
   (`Engine.reserve_id`; the sandbox uses the pipeline's client id, ``wactl-SLUG-<inbound
   row id>``, the whatsapp-web engine has wa-js generate one), the id is stored in the
   PENDING row, durably, and only then is the reply handed to the engine under that id.
   After the engine accepts it, one transaction marks the OUT row SENT and the inbound
   row ANSWERED.

Failures (`_attempt`): a message whose handling fails for a reason that may pass (the
database is unreachable, locked or full, the disk is full, the engine cannot send right
now) is tried again, with growing delays (`RETRY_FIRST_SECONDS` doubling up to
`RETRY_MAX_SECONDS`), for ``pipeline.retry_minutes``; its chat waits meanwhile (order
holds), other chats go on. A reply that may have gone out is never sent again without
asking the engine first (`Engine.was_sent` of its stored id). Only when the time is up,
or the reply book itself fails on the message (that does not pass), is the message
marked FAILED, and its chat moves on. What is failing now is reported as a *problem*
of its area ("database", "replies"), and reported healed by the next success
(``problem``/``healed`` events: the worker tells the daemon, `wactl ps` shows it);
messages given up on also go to ``worker_process.last_error``.

Steps 1 and 3 are one transaction when nothing stands in the way (the fast path): the
chat has no message queued or being recorded, the pipeline already knows the chat's
pause and history, a concurrency slot is free, no recovery runs and there is no typing
delay. The decision is then made first and written with the message (NEW + PENDING
reply, or IGNORED), the same rows the two steps write, so recovery treats them alike;
a message that turns out to be a duplicate writes nothing and gives its rate-limit
token back. That is two write transactions per answered message instead of three.
What the pipeline knows of a chat (pause, whether it has history) is read once per
chat and then kept in memory, because only this worker writes them.

After a crash at any point, `recover` finishes the work: NEW inbound rows are handled
again (nothing was sent for them), and for each PENDING reply the engine is asked
whether the stored id reached WhatsApp (`Engine.was_sent`): yes -> marked SENT; no ->
sent again (under a new id); cannot tell yet (a page still loading, a message still on
the device) -> asked again later, as a failure that may pass, and never sent twice
meanwhile. So on every engine, every inbound message gets exactly one reply.

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
from collections import Counter, OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from wactl.bot.counters import HourlyCounts
from wactl.bot.engines.base import Engine, InboundMessage
from wactl.bot.store import InboundRow, MessageStore, PendingReply, is_database_error
from wactl.config.model import PipelineConfig
from wactl.enums import Direction, MessageState
from wactl.futures import log_failure
from wactl.ratelimit import RateLimiter

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How many chats the pipeline remembers the pause and history of (least recently used
#: forgotten first; a forgotten chat is read again from the database).
CHAT_MEMORY = 10_000
#: A failure that may pass is tried again after this long, then twice as long each
#: time, at most `RETRY_MAX_SECONDS` apart (with 20 % jitter), for pipeline.retry_minutes.
RETRY_FIRST_SECONDS = 1.0
RETRY_MAX_SECONDS = 60.0
#: The areas of the problems the pipeline reports.
DATABASE, REPLIES = "database", "replies"


class ReplyLike(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def text(self) -> str: ...

    @property
    def handoff(self) -> bool: ...


class Replier(Protocol):
    """What the pipeline needs from the tenant's reply book (wactl.replies.book)."""

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


class ReplyBookError(Exception):
    """The reply book failed on a message: it would again, so it is not tried again."""


class ReplyNotKnownYet(Exception):
    """The engine cannot tell yet whether a reply reached WhatsApp."""


@dataclass
class _Reply:
    """A reply whose PENDING row exists: what sending or confirming it needs."""

    out_id: int
    in_id: int | None
    chat: str
    text: str
    kind: str | None
    #: The id stored with it: the client id, or the WhatsApp id reserved for it.
    message_id: str
    #: Whether the engine may have it: a send was started (here or before a crash).
    maybe_sent: bool


@dataclass
class _Job:
    """One inbound message on its way through its chat's queue."""

    message: InboundMessage
    done: asyncio.Future[Outcome]
    #: Its log row, once recorded.
    row: InboundRow | None = None
    #: Its reply, once decided and written PENDING (a retry confirms or resends it).
    reply: _Reply | None = None
    #: What was decided for it (kept across tries: a retry does not decide again).
    decision: _Decision | None = None
    #: The read receipt is still to send (the fast path decided it elsewhere).
    read_receipt: bool = False
    attempts: int = 0
    #: When (pipeline clock) its first failure in a row happened.
    failing_since: float | None = None
    #: It failed: wait this long before the next try.
    retry_delay: float | None = None

    @property
    def chat(self) -> str:
        return self.message.chat


@dataclass
class _ChatMemory:
    """What the pipeline knows of a chat it has answered in. Only this worker writes a
    tenant's chat pauses and log, so after one read the memory stays true."""

    paused_until: dt.datetime | None
    has_history: bool


@dataclass
class _Chat:
    queue: deque[_Job] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    #: A message taken by the fast path is being recorded: queued ones wait for it.
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
        self._clock = clock
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
        #: The areas with a problem reported and not healed yet.
        self._problems: set[str] = set()
        #: Set (and replaced) when a problem heals: retries waiting out their delay go
        #: at once, instead of up to RETRY_MAX_SECONDS after the database is back.
        self._retry_now = asyncio.Event()
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
        if DATABASE in self._problems:
            # The database fails now: the message waits in its chat's queue, in memory,
            # and is recorded there as soon as the database takes it; intake does not
            # wait out a lock or a timeout for each message meanwhile.
            await self._backlog_queued.wait()
            self._enqueue(_Job(message, done))
            return done
        if self._fast_path_open(message.chat) and await self._submit_decided(message, done):
            return done
        await self._submit_recorded(message, done)
        return done

    async def _submit_recorded(
        self, message: InboundMessage, done: asyncio.Future[Outcome]
    ) -> None:
        """The slow path: record the message, then queue it on its chat. When recording
        fails, the message is queued unrecorded (its chat's place kept) and recording is
        tried again there."""
        # Until it is queued, a message being recorded holds its chat's place in line:
        # a later message of the chat must not take the fast path past it.
        job = _Job(message, done)
        self._recording[message.chat] += 1
        try:
            try:
                recorded = await self._record(job) is not None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed_once(job, exc)
                recorded = True
            if recorded:
                await self._backlog_queued.wait()
                self._enqueue(job)
        finally:
            self._recording[message.chat] -= 1
            if not self._recording[message.chat]:
                del self._recording[message.chat]

    async def _record(self, job: _Job) -> InboundRow | None:
        """Write the job's message (NEW); its row. For a message seen before: None when
        it is done with (``job.done`` is then set: a duplicate), its row when its
        handling never finished (NEW, its reply still PENDING, or FAILED) and nobody here
        is on it: the job then carries on with that row (and reply)."""
        message = job.message
        in_id = await self._db(lambda: self.store.record_inbound(message))
        if in_id is not None:
            row = InboundRow.of(in_id, message)
            self._recorded(job, row)
            return row
        return job.row if await self._resume(job) else None

    def _recorded(self, job: _Job, row: InboundRow) -> None:
        job.row = row
        self.counts.add(Direction.IN)
        self._healed(DATABASE)
        if self._recorded_here is not None:
            self._recorded_here.add(row.id)

    async def _resume(self, job: _Job) -> bool:
        """``job``'s message was seen before (see `_record`)."""
        message = job.message
        found = await self._db(lambda: self.store.unfinished(message.wa_message_id))
        if found is None or found[0].id in self._active:
            log.info("duplicate message %s skipped", message.wa_message_id)
            job.done.set_result(Outcome("duplicate"))
            return False
        row, pending = found
        log.info("message %s came again before it was answered: handling it", row.wa_message_id)
        job.row, job.reply = row, self._reply_of(pending)
        return True

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
        nothing was written (the reply book failed, or the database did): the slow path
        then records the message, or keeps trying, and reports the failure."""
        await self._slots.acquire()  # a slot is free: this does not wait
        chat = self._chats[message.chat] = _Chat(busy=True)  # later messages queue behind
        memory = self._memory[message.chat]
        self._memory.move_to_end(message.chat)
        now = self._now()
        had_history = memory.has_history
        try:
            decision = self._decide(message.chat, message.text, memory, now)
        except Exception:
            memory.has_history = had_history
            self._release(message.chat, chat)
            return False
        pause = None
        if decision.handoff:
            pause = (now + dt.timedelta(minutes=self.config.handoff_pause_minutes), "handoff")
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
        except asyncio.CancelledError:
            self._release(message.chat, chat)
            raise
        except Exception:
            # Nothing was written: the slow path decides again, and keeps trying.
            self.limiter.refund(message.chat, allowed=decision.allowed, warned=decision.warned)
            memory.has_history = had_history
            self._release(message.chat, chat)
            return False
        if pause is not None:
            memory.paused_until = pause[0]
        job = _Job(message, done)
        if written is None:
            self.limiter.refund(message.chat, allowed=decision.allowed, warned=decision.warned)
            memory.has_history = had_history
            resumed = await self._resume(job)
            self._release(message.chat, chat, first=job if resumed else None)
            return True
        in_id, out_id = written
        self._recorded(job, InboundRow.of(in_id, message))
        if decision.handoff:
            self._on_event("handoff", {"chat": message.chat, "text": message.text})
        if out_id is None or decision.text is None:
            self._release(message.chat, chat)
            done.set_result(Outcome("ignored", in_id=in_id, reason=decision.reason))
            return True
        job.decision = decision
        job.reply = _Reply(
            out_id,
            in_id,
            message.chat,
            decision.text,
            decision.kind,
            self._client_id(in_id),
            maybe_sent=False,
        )
        job.read_receipt = True
        # Its slot goes back; the job is first in its chat's queue, and the chat's task
        # (which takes a slot per job) sends it.
        self._release(message.chat, chat, first=job)
        return True

    def _release(self, name: str, chat: _Chat, first: _Job | None = None) -> None:
        """A fast-path message was written (or nothing was): give its slot back and hand
        its chat over to ``first`` (the job to finish) and what queued behind it."""
        self._slots.release()
        chat.busy = False
        if first is not None:
            if first.row is not None:
                self._active.add(first.row.id)
            chat.queue.appendleft(first)
        if chat.queue:
            chat.task = self._start_drain(name, chat)
        elif self._chats.get(name) is chat:
            del self._chats[name]

    @property
    def _client_prefix(self) -> str:
        """The pipeline's id of a reply is this plus the inbound row's id."""
        return f"wactl-{self.slug}-"

    def _client_id(self, in_id: int) -> str:
        return f"{self._client_prefix}{in_id}"

    async def _owner_message(self, message: InboundMessage, done: asyncio.Future[Outcome]) -> None:
        """The business answered by hand: log it, and keep the bot quiet in that chat;
        unless the message starts with ``pipeline.resume_keyword``: the business hands
        the chat back to the bot (it answers the next message)."""
        out_id = await self._db(lambda: self.store.record_owner_message(message))
        if out_id is None:
            done.set_result(Outcome("duplicate"))
            return
        self.counts.add(Direction.OUT)
        if self.is_resume_keyword(message.text):
            await self.set_pause(message.chat, None, "owner")
            done.set_result(Outcome("ignored", reason="owner resumed the bot"))
            return
        until = self._now() + dt.timedelta(minutes=self.config.owner_pause_minutes)
        await self._pause(message.chat, until, "owner")
        self._on_event("takeover", {"chat": message.chat, "until": until.isoformat()})
        done.set_result(Outcome("ignored", reason="owner"))

    def is_resume_keyword(self, text: str) -> bool:
        """Whether the owner's ``text`` hands the chat back (it starts with the keyword,
        in any case, alone or followed by a space)."""
        keyword = self.config.resume_keyword.strip().casefold()
        if not keyword:
            return False
        words = text.strip().casefold()
        return words == keyword or words.startswith(keyword + " ")

    async def set_pause(self, chat: str, until: dt.datetime | None, reason: str) -> None:
        """Pause the bot in ``chat`` until ``until``, or (None) hand the chat back to it
        now: an operator (`wactl chats pause|resume`), or the owner's keyword."""
        if until is None:
            await self._db(lambda: self.store.pause(chat, None, None))
            memory = self._memory.get(chat)
            if memory is not None:
                memory.paused_until = None
            log.info("chat %s handed back to the bot (%s)", chat, reason)
            self._on_event("resumed", {"chat": chat, "by": reason})
            return
        await self._pause(chat, until, reason)
        self._on_event("takeover", {"chat": chat, "until": until.isoformat(), "by": reason})

    def _enqueue(self, job: _Job) -> None:
        chat = self._chats.get(job.chat)
        if chat is None:
            chat = self._chats[job.chat] = _Chat()
        if job.row is not None:
            self._active.add(job.row.id)
        chat.queue.append(job)
        if not chat.busy and (chat.task is None or chat.task.done()):
            chat.task = self._start_drain(job.chat, chat)

    def _start_drain(self, name: str, chat: _Chat) -> asyncio.Task[None]:
        """The task that handles ``chat``'s queue; a failure of its own (not a job's:
        those are outcomes) is logged, and the chat's next message starts a new one."""
        task = asyncio.get_running_loop().create_task(self._drain(name, chat), name=f"chat-{name}")
        task.add_done_callback(log_failure(log, f"handling chat {name}"))
        return task

    async def _drain(self, name: str, chat: _Chat) -> None:
        """Handle one chat's queue in order; the task ends when the queue is empty. A job
        that failed for a reason that may pass stays first, and is tried again after its
        delay (holding its chat, not a concurrency slot)."""
        while chat.queue:
            job = chat.queue[0]
            if job.retry_delay is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._retry_now.wait(), job.retry_delay)
                job.retry_delay = None
            async with self._slots:
                outcome = await self._attempt(job)
            if outcome is None:
                continue  # failed: tried again after job.retry_delay
            chat.queue.popleft()
            if job.row is not None:
                self._active.discard(job.row.id)
            if not job.done.done():
                job.done.set_result(outcome)
        if self._chats.get(name) is chat and not chat.queue:
            del self._chats[name]

    # --- handling -----------------------------------------------------------------

    async def _attempt(self, job: _Job) -> Outcome | None:
        """One try at a job: record it (if it is not yet), decide, reply (or confirm a
        reply already under way). None: it failed for a reason that may pass, and is to
        be tried again after ``job.retry_delay``."""
        try:
            if job.row is None:
                row = await self._record(job)
                if row is None:
                    return Outcome("duplicate")  # job.done is set already
                self._active.add(row.id)
            if job.reply is None:
                outcome = await self._handle(job)
            else:
                outcome = await self._finish(job)
        except asyncio.CancelledError:
            raise
        except ReplyBookError as exc:
            return await self._give_up(job, exc.__cause__ or exc)
        except Exception as exc:
            return await self._retry_or_give_up(job, exc)
        self._healed(DATABASE)
        if outcome.status == "replied":
            self._healed(REPLIES)
        job.failing_since = None
        return outcome

    async def _handle(self, job: _Job) -> Outcome:
        """Decide on a recorded message, then reply (or stay silent)."""
        row = job.row
        assert row is not None
        now = self._now()
        decision = job.decision
        if decision is None:
            memory = await self._chat_memory(row)
            try:
                decision = self._decide(row.chat, row.text, memory, now)
            except Exception as exc:
                raise ReplyBookError(str(exc)) from exc
            job.decision = decision
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
        job.reply = _Reply(out_id, row.id, row.chat, text, kind, client_id, maybe_sent=False)
        return await self._finish(job)

    async def _finish(self, job: _Job) -> Outcome:
        """A decided reply: send it, or, when a send may have happened (a crash or a
        failed try), ask the engine first and send it again only when it says no."""
        reply = job.reply
        assert reply is not None
        if job.read_receipt:
            job.read_receipt = False
            if job.row is not None:
                await self._mark_read(job.row)
        if reply.maybe_sent:
            sent = await self.engine.was_sent(reply.message_id)
            if sent is None:
                raise ReplyNotKnownYet(
                    f"cannot tell yet whether reply {reply.message_id} reached WhatsApp"
                )
            if sent:
                await self._db(
                    lambda: self.store.finish_reply(reply.out_id, reply.in_id, reply.message_id)
                )
                self.counts.add(Direction.OUT)
                return self._replied(job)
            log.info("sending reply %s again (it never reached WhatsApp)", reply.message_id)
        await self._send_reply(reply)
        return self._replied(job)

    def _replied(self, job: _Job) -> Outcome:
        reply = job.reply
        assert reply is not None
        self.handled += 1
        return Outcome("replied", in_id=reply.in_id, reply=reply.text, kind=reply.kind)

    async def _send_reply(self, reply: _Reply) -> None:
        """Fix the reply's WhatsApp id and store it (durable before anything leaves),
        send it under that id, then mark it SENT (and its message ANSWERED)."""
        client_id = (
            self._client_id(reply.in_id)
            if reply.in_id is not None
            else f"{self._client_prefix}o{reply.out_id}"
        )
        message_id = await self.engine.reserve_id(reply.chat, client_id)
        if message_id != reply.message_id:
            await self._db(lambda: self.store.reserve_reply(reply.out_id, message_id))
            reply.message_id = message_id
        reply.maybe_sent = True
        sent_id = await self.engine.send_text(reply.chat, reply.text, message_id=message_id)
        await self._db(lambda: self.store.finish_reply(reply.out_id, reply.in_id, sent_id))
        self.counts.add(Direction.OUT)

    async def _mark_read(self, row: InboundRow) -> None:
        if self.config.read_receipts:
            try:
                await self.engine.mark_read(row.wa_message_id)
            except Exception:
                log.exception("marking message %s read failed", row.wa_message_id)

    # --- failures -----------------------------------------------------------------

    def _failed_once(self, job: _Job, exc: Exception) -> None:
        """Recording ``job`` failed at intake: it goes into its chat's queue unrecorded,
        to be recorded there on its next try."""
        job.attempts = 1
        job.failing_since = self._clock()
        self._report_failure(job, exc)

    async def _retry_or_give_up(self, job: _Job, exc: Exception) -> Outcome | None:
        now = self._clock()
        job.attempts += 1
        if job.failing_since is None:
            job.failing_since = now
        if now - job.failing_since >= self.config.retry_minutes * 60:
            minutes = (now - job.failing_since) / 60
            return await self._give_up(
                job, exc, why=f"given up after {job.attempts} tries in {minutes:.0f} min"
            )
        self._report_failure(job, exc)
        return None

    def _report_failure(self, job: _Job, exc: Exception) -> None:
        """Log the failure, report the problem of its area, and set the delay to the
        next try (`RETRY_FIRST_SECONDS` doubling up to `RETRY_MAX_SECONDS`, +-20 %)."""
        delay = min(RETRY_MAX_SECONDS, RETRY_FIRST_SECONDS * 2 ** (job.attempts - 1))
        job.retry_delay = delay * random.uniform(0.8, 1.2)  # noqa: S311 - not crypto
        area = DATABASE if is_database_error(exc) else REPLIES
        problem = f"{self._what(job)}: {type(exc).__name__}: {exc}"
        log.warning(
            "%s; trying again in %.0f s (try %d)",
            problem,
            job.retry_delay,
            job.attempts,
            exc_info=job.attempts == 1,
        )
        self._problems.add(area)
        self._on_event("problem", {"area": area, "message": problem})

    def _healed(self, area: str) -> None:
        if area in self._problems:
            self._problems.discard(area)
            log.info("%s: working again", area)
            self._on_event("healed", {"area": area})
            self.retry_now()

    def retry_now(self) -> None:
        """Something works again (the database, for this worker's heartbeat): the
        retries waiting out their delay go now."""
        self._retry_now.set()
        self._retry_now = asyncio.Event()

    async def _give_up(self, job: _Job, exc: BaseException, why: str | None = None) -> Outcome:
        """The message fails for good (for this process): FAILED, last_error, an
        ``error`` event; its chat goes on. A redelivery or a restart tries it again."""
        if job.row is not None:
            row_id = job.row.id
            with contextlib.suppress(Exception):
                await self._db(lambda: self.store.mark(row_id, MessageState.FAILED))
        message = f"{self._what(job)}: {type(exc).__name__}: {exc}"
        if why:
            message += f" ({why})"
        log.error("handling %s", message, exc_info=(type(exc), exc, exc.__traceback__))
        with contextlib.suppress(Exception):
            await self._db(lambda: self.store.set_last_error(message))
        self._on_event("error", {"message": message})
        job.failing_since = None
        return Outcome("failed", in_id=job.row.id if job.row else None, reason=str(exc))

    @staticmethod
    def _what(job: _Job) -> str:
        return f"message {job.message.wa_message_id} from {job.chat}"

    # --- decisions ------------------------------------------------------------------

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

    @staticmethod
    def _reply_of(pending: PendingReply | None) -> _Reply | None:
        if pending is None:
            return None
        return _Reply(
            pending.out_id,
            pending.in_id,
            pending.chat,
            pending.text,
            pending.kind,
            pending.message_id,
            maybe_sent=True,  # a send may have started before the crash
        )

    async def recover(self) -> tuple[int, int]:
        """Queue what a crashed worker left: (replies to confirm or resend, messages to
        handle again). Each is handled in its chat's queue, in the order of the messages,
        before the messages that arrive from now on."""
        self._backlog_queued.clear()
        self._recorded_here = set()
        try:
            return await self._recover()
        finally:
            self._recorded_here = None
            self._backlog_queued.set()

    async def _recover(self) -> tuple[int, int]:
        pending, new = await self._db(self.store.unhandled)
        # What this process is handling right now is not a crash's leftover.
        recorded_here = self._recorded_here or set()
        skip = recorded_here | self._active
        pending = [(row, reply) for row, reply in pending if row.id not in skip]
        decided = {row.id for row, _ in pending}
        new = [row for row in new if row.id not in skip and row.id not in decided]
        loop = asyncio.get_running_loop()
        jobs = [
            _Job(row.message(), loop.create_future(), row=row, reply=self._reply_of(reply))
            for row, reply in pending
        ]
        jobs += [_Job(row.message(), loop.create_future(), row=row) for row in new]
        for job in sorted(jobs, key=lambda j: j.row.id if j.row else 0):
            self._enqueue(job)
        if pending or new:
            log.info(
                "recovering %d pending replies and %d unhandled messages", len(pending), len(new)
            )
        return len(pending), len(new)

    async def drain(self, timeout: float) -> None:
        """Wait (up to ``timeout``) for the queued messages to be handled."""
        tasks = [c.task for c in self._chats.values() if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
