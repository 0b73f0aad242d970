"""The conversation pipeline (DESIGN.md section 5) with real processes, on SQLite and
PostgreSQL: a daemon, workers on the sandbox engine, customers played through
``POST /v1/tenants/{slug}/sandbox/send``.

Dedup, per-chat FIFO, rate limits, pauses (handoff, owner takeover), errors, and the
crash guarantee: with the worker killed at random moments, every inbound message gets
exactly one reply, in the log and in what "WhatsApp" (the sandbox outbox) received.
A few properties are pinned in-process too, on the real store and sandbox engine,
where the daemon cannot reach a state on purpose (a handler that raises, a crash at one
exact step). Every wait polls a condition with a timeout; nothing sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import itertools
import json
import os
import random
import shutil
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine as SAEngine

from tests.conftest import CLI
from tests.daemon_support import Daemon, daemon_for_cli
from tests.support import db_session, poll_for, run_crash_traffic
from wactl.bot.engines.base import InboundMessage
from wactl.bot.engines.sandbox import SandboxEngine, outbox_file
from wactl.bot.pipeline import Outcome, Pipeline, ReplyLike
from wactl.bot.store import InboundRow, MessageStore
from wactl.config import load_config
from wactl.config.model import Config
from wactl.db.models import ChatState, MessageLog, PortalEventLog, Tenant, WorkerProcess
from wactl.enums import Direction, Language, MessageState, TemplateType
from wactl.errors import ConflictError, DaemonError
from wactl.replies.book import ReplyBook

SLUG = "shop"
BUSINESS = "Shop"
CUSTOMER = "+15550000001"
#: Rate limits far above anything a test sends, for tests about something else.
NO_LIMITS = {
    "WACTL_PIPELINE_CHAT_BURST": "100000",
    "WACTL_PIPELINE_CHAT_PER_MINUTE": "1000000",
    "WACTL_PIPELINE_TENANT_BURST": "100000",
    "WACTL_PIPELINE_TENANT_PER_MINUTE": "1000000",
}
#: Generous: only reached when something is broken.
WAIT = 30.0


# --- helpers ------------------------------------------------------------------------


def reply_book() -> ReplyBook:
    """The reply book of the tenants these tests create (restaurant, English, UTC)."""
    return ReplyBook.build(
        TemplateType.RESTAURANT, Language.EN, {}, {"business_name": BUSINESS}, timezone="UTC"
    )


def expected_reply(text: str, *, first: bool = False) -> ReplyLike:
    return reply_book().reply(text, dt.datetime.now(dt.UTC), first_message=first)


@dataclass(frozen=True)
class Logged:
    """One message_log row, read back for checking."""

    id: int
    direction: str
    chat: str
    from_number: str
    to_number: str
    text: str
    state: str
    kind: str | None
    reply_to: int | None
    wa_id: str
    created_at: dt.datetime


class MessageLogReader:
    """Reads the conversation log straight from the database."""

    def __init__(self, url: str) -> None:
        from wactl.db.engine import make_engine

        self.engine: SAEngine = make_engine(url)

    def rows(self, slug: str = SLUG) -> list[Logged]:
        from wactl.db.engine import session_scope

        query = (
            select(MessageLog)
            .join(Tenant, Tenant.id == MessageLog.tenant_id)
            .where(Tenant.slug == slug)
            .order_by(MessageLog.id)
        )
        with session_scope(self.engine) as session:
            return [
                Logged(
                    r.id,
                    r.direction.value,
                    r.chat,
                    r.from_number,
                    r.to_number,
                    r.message_text,
                    r.state.value,
                    r.kind,
                    r.reply_to_id,
                    r.wa_message_id,
                    r.created_at,
                )
                for r in session.scalars(query)
            ]

    def inbound(self, slug: str = SLUG) -> list[Logged]:
        return [r for r in self.rows(slug) if r.direction == "IN"]

    def replies(self, slug: str = SLUG) -> list[Logged]:
        return [r for r in self.rows(slug) if r.direction == "OUT" and r.kind != "owner"]

    def pause(self, chat: str, slug: str = SLUG) -> tuple[dt.datetime | None, str | None] | None:
        from wactl.db.engine import session_scope

        query = (
            select(ChatState)
            .join(Tenant, Tenant.id == ChatState.tenant_id)
            .where(Tenant.slug == slug, ChatState.chat == chat)
        )
        with session_scope(self.engine) as session:
            row = session.scalar(query)
            return None if row is None else (row.paused_until, row.pause_reason)

    def last_error(self, slug: str = SLUG) -> str | None:
        from wactl.db.engine import session_scope

        query = (
            select(WorkerProcess.last_error)
            .join(Tenant, Tenant.id == WorkerProcess.tenant_id)
            .where(Tenant.slug == slug)
        )
        with session_scope(self.engine) as session:
            return session.scalar(query)


def reply_targets(replies: list[Logged]) -> list[int]:
    """The inbound ids the replies answer, sorted; every reply answers something."""
    targets = [r.reply_to for r in replies]
    assert None not in targets, "a reply without the message it answers"
    return sorted(t for t in targets if t is not None)


@pytest.fixture
def message_log(db_url: str) -> Iterator[MessageLogReader]:
    reader = MessageLogReader(db_url)
    try:
        yield reader
    finally:
        reader.engine.dispose()


def create_tenants(cli: CLI, *slugs: str) -> None:
    for slug in slugs:
        result = cli(
            "tenant",
            "create",
            slug,
            "--name",
            BUSINESS if slug == SLUG else slug.title(),
            "--template",
            "restaurant",
            "--language",
            "en",
            "--timezone",
            "UTC",
            "--engine",
            "sandbox",
        )
        assert result.code == 0, result.err


def start_linked(cli: CLI, daemon: Daemon, *slugs: str) -> None:
    """Create, start and link (scan) sandbox tenants."""
    create_tenants(cli, *slugs)
    result = cli("tenant", "start", *slugs)
    assert result.code == 0, result.err
    for slug in slugs:
        poll_for(lambda slug=slug: bool(daemon.ps()[slug]["has_qr"]), timeout=WAIT)  # type: ignore[misc]
        result = cli("sandbox", "scan", slug)
        assert result.code == 0, result.err


def send(
    daemon: Daemon,
    text: str,
    *,
    chat: str = CUSTOMER,
    message_id: str | None = None,
    from_me: bool = False,
    slug: str = SLUG,
) -> dict[str, Any]:
    """A customer (or, ``from_me``, the business's phone) writes; returns the outcome."""
    body: dict[str, Any] = {"from": chat, "text": text}
    if message_id is not None:
        body["id"] = message_id
    if from_me:
        body["from_me"] = True
    answer: dict[str, Any] = daemon.client.request(
        "POST", f"/v1/tenants/{slug}/sandbox/send", body, timeout=60
    )
    return answer


def restart_worker(cli: CLI, daemon: Daemon, slug: str = SLUG) -> None:
    old = daemon.ps()[slug]["pid"]
    result = cli("tenant", "restart", slug)
    assert result.code == 0, result.err
    row = daemon.wait_state(slug, "RUNNING")
    assert row["pid"] not in (None, old)


def chat_number(index: int) -> str:
    return f"+1555010{index:04d}"


# --- 1. dedup -----------------------------------------------------------------------


def test_a_redelivered_message_is_a_duplicate_even_after_a_restart(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch, message_log: MessageLogReader
) -> None:
    with daemon_for_cli(monkeypatch, NO_LIMITS) as daemon:
        start_linked(cli, daemon, SLUG, "other")
        first = send(daemon, "hi", message_id="wamid-1")
        assert (first["status"], first["kind"]) == ("replied", "greeting")
        assert first["reply"] == expected_reply("hi", first=True).text
        again = send(daemon, "hi", message_id="wamid-1")
        assert again["id"] == "wamid-1"
        assert (again["status"], again["reply"]) == ("duplicate", None)
        # Redelivered several times at once: answered once.
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: send(daemon, "2", message_id="wamid-2"), range(8)))
        assert sorted(s["status"] for s in statuses) == ["duplicate"] * 7 + ["replied"]
        # The key is per tenant: the same id at another tenant is another message.
        assert send(daemon, "hi", message_id="wamid-1", slug="other")["status"] == "replied"

        restart_worker(cli, daemon)
        assert send(daemon, "hi", message_id="wamid-1")["status"] == "duplicate"
        assert send(daemon, "2", message_id="wamid-2")["status"] == "duplicate"

        # Distinct ids are never dropped, however alike they look.
        distinct = ["X", "x", "x ", " x", "WAMID-1", "wamid-1 ", "wamid-ü", "w" * 128]
        distinct += [f"burst-{n}" for n in range(60)]
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(
                pool.map(
                    lambda n: send(daemon, "hours", chat=chat_number(n), message_id=distinct[n]),
                    range(len(distinct)),
                )
            )
        assert [o["status"] for o in outcomes] == ["replied"] * len(distinct)

    inbound = message_log.inbound()
    assert sorted(r.wa_id for r in inbound) == sorted(["wamid-1", "wamid-2", *distinct])
    assert reply_targets(message_log.replies()) == [r.id for r in inbound]
    assert all(r.state == "ANSWERED" for r in inbound)
    assert [r.wa_id for r in message_log.inbound("other")] == ["wamid-1"]


def test_message_counts_reach_the_daemon_within_a_second_not_a_heartbeat(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`wactl ps` right after a conversation shows it, even with slow heartbeats."""
    slow = {
        **NO_LIMITS,
        "WACTL_DAEMON_HEARTBEAT_INTERVAL_SECONDS": "60",
        "WACTL_DAEMON_HEARTBEAT_TIMEOUT_SECONDS": "240",
    }
    with daemon_for_cli(monkeypatch, slow) as daemon:
        start_linked(cli, daemon, SLUG)
        assert send(daemon, "hi", chat=chat_number(1))["status"] == "replied"
        assert send(daemon, "2", chat=chat_number(1))["status"] == "replied"
        # Much sooner than the next heartbeat (60 s):
        poll_for(
            lambda: (
                (daemon.ps()[SLUG]["messages_in_1h"], daemon.ps()[SLUG]["messages_out_1h"])
                == (2, 2)
            ),
            timeout=20,
        )


# --- 2. per-chat FIFO -----------------------------------------------------------------


def test_each_chat_is_answered_in_order_while_chats_run_concurrently(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch, message_log: MessageLogReader
) -> None:
    chats = [chat_number(n) for n in range(20)]
    per_chat = 10
    texts = ["hi", "1", "2", "hours", "where are you", "thanks"]
    plan = [
        (chat, f"m-{c}-{n}", texts[(c + n) % len(texts)])
        for n in range(per_chat)
        for c, chat in enumerate(chats)
    ]
    with daemon_for_cli(monkeypatch, NO_LIMITS) as daemon:
        start_linked(cli, daemon, SLUG)
        # Enough threads that several messages of one chat are in flight at once.
        with ThreadPoolExecutor(48) as pool:
            outcomes = list(
                pool.map(lambda p: send(daemon, p[2], chat=p[0], message_id=p[1]), plan)
            )
    assert [o["status"] for o in outcomes] == ["replied"] * len(plan)

    inbound = message_log.inbound()
    replies = message_log.replies()
    assert len(inbound) == len(replies) == len(plan)
    by_id = {r.id: r for r in inbound}
    for chat in chats:
        asked = [r for r in inbound if r.chat == chat]
        answered = [r for r in replies if r.chat == chat]
        # Replies were decided (OUT rows written) in the order the messages were recorded.
        assert [r.reply_to for r in answered] == [r.id for r in asked], chat
        for reply in answered:
            assert reply.reply_to is not None
            question = by_id[reply.reply_to]
            assert (reply.to_number, reply.from_number) == (
                question.from_number,
                question.to_number,
            )
            assert reply.text == expected_reply(question.text, first=question is asked[0]).text
            assert reply.state == "SENT" and question.state == "ANSWERED"
    # The chats did run side by side: the replies of different chats interleave.
    runs = sum(1 for a, b in itertools.pairwise(replies) if a.chat != b.chat) + 1
    assert runs > len(chats), "every chat was answered in one block: no concurrency"


# --- 3. rate limits ---------------------------------------------------------------------

#: A chat may send 2 messages at once, then one every 5 s (slow enough that a busy
#: machine sends the excess messages well within one period).
CHAT_LIMITS = {
    "WACTL_PIPELINE_CHAT_BURST": "2",
    "WACTL_PIPELINE_CHAT_PER_MINUTE": "12",
    # What the chat part spends of the tenant's budget: A1, A2, B1, and A once refilled;
    # then C1 and C2 spend the rest, and D finds the tenant over its budget.
    "WACTL_PIPELINE_TENANT_BURST": "6",
    "WACTL_PIPELINE_TENANT_PER_MINUTE": "0.001",
}


def test_rate_limits_warn_once_then_stay_silent_until_the_bucket_refills(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch, message_log: MessageLogReader
) -> None:
    warning = reply_book().rate_limited_text()
    a, b, c, d, e = (chat_number(n) for n in range(5))
    with daemon_for_cli(monkeypatch, CHAT_LIMITS) as daemon:
        start_linked(cli, daemon, SLUG)
        started = time.monotonic()
        burst = [send(daemon, text, chat=a) for text in ("hi", "1", "2", "3", "hours")]
        assert [(o["status"], o["kind"]) for o in burst] == [
            ("replied", "greeting"),
            ("replied", "menu_item"),
            ("replied", "rate_limited"),
            ("ignored", None),
            ("ignored", None),
        ]
        assert burst[2]["reply"] == warning
        assert [o["reason"] for o in burst[3:]] == ["rate_limited", "rate_limited"]
        # Another chat is not affected.
        assert send(daemon, "hi", chat=b)["status"] == "replied"

        # Chat a keeps writing: silence (no second warning) until its bucket has a token.
        silent: list[dict[str, Any]] = []

        def answered_again() -> bool:
            outcome = send(daemon, "still there?", chat=a)
            assert outcome["kind"] != "rate_limited", "a second warning in one excess period"
            if outcome["status"] == "ignored":
                silent.append(outcome)
                return False
            return True

        poll_for(answered_again, timeout=WAIT, interval=0.25)
        assert time.monotonic() - started >= 5.0  # one token every 5 s
        # A new excess period: one new warning, then silence again.
        again = [send(daemon, "hello", chat=a) for _ in range(2)]
        assert [(o["status"], o["kind"]) for o in again] == [
            ("replied", "rate_limited"),
            ("ignored", None),
        ]

        # The tenant-wide bucket: C1 and C2 spend the last of it.
        assert [send(daemon, "hi", chat=c)["status"] for _ in range(2)] == ["replied"] * 2
        over = [send(daemon, "hi", chat=d) for _ in range(3)]
        assert [(o["status"], o["kind"]) for o in over] == [
            ("replied", "rate_limited"),
            ("ignored", None),
            ("ignored", None),
        ], "the tenant's limit must warn a chat once, then stay silent"
        assert send(daemon, "hi", chat=e)["kind"] == "rate_limited"

    rows = message_log.rows()
    in_a = [r for r in rows if r.direction == "IN" and r.chat == a]
    expected_states = ["ANSWERED"] * 3 + ["IGNORED"] * (2 + len(silent))
    expected_states += ["ANSWERED", "ANSWERED", "IGNORED"]
    assert [r.state for r in in_a] == expected_states
    warnings = [r for r in rows if r.kind == "rate_limited"]
    assert [r.chat for r in warnings] == [a, a, d, e]
    assert all(r.text == warning and r.state == "SENT" for r in warnings)
    # Ignored messages get no reply row at all.
    ignored = {r.id for r in rows if r.state == "IGNORED"}
    assert not [r for r in rows if r.reply_to in ignored]


def test_a_redelivered_message_does_not_use_up_the_chat_s_rate_limit(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch, message_log: MessageLogReader
) -> None:
    """Once a chat is known, a message is decided and recorded in one transaction (the
    fast path), so the limiter is asked before the database says "duplicate"; the
    duplicate's token must come back."""
    limits = {
        **NO_LIMITS,
        "WACTL_PIPELINE_CHAT_BURST": "2",
        "WACTL_PIPELINE_CHAT_PER_MINUTE": "0.01",
    }
    with daemon_for_cli(monkeypatch, limits) as daemon:
        start_linked(cli, daemon, SLUG)
        assert send(daemon, "hi", message_id="m1")["status"] == "replied"
        for _ in range(3):
            assert send(daemon, "hi", message_id="m1")["status"] == "duplicate"
        second = send(daemon, "2", message_id="m2")
        assert (second["status"], second["kind"]) == ("replied", "menu_item")
        assert send(daemon, "3", message_id="m3")["kind"] == "rate_limited"
        # A duplicate of the message that got the warning does not use the warning up.
        assert send(daemon, "3", message_id="m3")["status"] == "duplicate"
        assert send(daemon, "4", message_id="m4")["reason"] == "rate_limited"
    rows = message_log.rows()
    assert [(r.wa_id, r.state) for r in rows if r.direction == "IN"] == [
        ("m1", "ANSWERED"),
        ("m2", "ANSWERED"),
        ("m3", "ANSWERED"),
        ("m4", "IGNORED"),
    ]


# --- 4, 5. handoff and owner takeover ---------------------------------------------------


def test_handoff_and_owner_takeover_pause_one_chat_across_a_restart(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch, message_log: MessageLogReader
) -> None:
    handoff_chat, owner_chat, other_chat = (chat_number(n) for n in range(3))
    handoff = expected_reply("I want to talk to a person")
    with daemon_for_cli(monkeypatch, NO_LIMITS) as daemon:
        start_linked(cli, daemon, SLUG)
        asked_at = dt.datetime.now(dt.UTC)
        assert send(daemon, "hi", chat=handoff_chat)["status"] == "replied"
        outcome = send(daemon, "I want to talk to a person", chat=handoff_chat)
        assert (outcome["status"], outcome["kind"]) == ("replied", "handoff")
        assert outcome["reply"] == handoff.text
        paused = send(daemon, "hello?", chat=handoff_chat)
        assert (paused["status"], paused["reason"]) == ("ignored", "paused")

        # The business answers a chat from its phone: logged, and the bot keeps quiet there.
        assert send(daemon, "hi", chat=owner_chat)["status"] == "replied"
        owner = send(
            daemon, "Ana here, I'll help you", chat=owner_chat, from_me=True, message_id="o1"
        )
        assert (owner["status"], owner["reason"]) == ("ignored", "owner")
        redelivered = send(
            daemon, "Ana here, I'll help you", chat=owner_chat, from_me=True, message_id="o1"
        )
        assert redelivered["status"] == "duplicate"
        assert send(daemon, "thanks!", chat=owner_chat)["reason"] == "paused"

        # Other chats are answered all along.
        assert send(daemon, "hi", chat=other_chat)["status"] == "replied"

        restart_worker(cli, daemon)
        assert send(daemon, "anyone?", chat=handoff_chat)["reason"] == "paused"
        assert send(daemon, "and now?", chat=owner_chat)["reason"] == "paused"
        assert send(daemon, "2", chat=other_chat)["status"] == "replied"

    handoff_pause = message_log.pause(handoff_chat)
    owner_pause = message_log.pause(owner_chat)
    assert handoff_pause is not None and owner_pause is not None
    assert handoff_pause[1] == "handoff" and owner_pause[1] == "owner"
    for (until, _), minutes in ((handoff_pause, 120), (owner_pause, 30)):
        assert until is not None
        expected = asked_at + dt.timedelta(minutes=minutes)
        assert abs((until - expected).total_seconds()) < WAIT
    assert message_log.pause(other_chat) is None

    rows = message_log.rows()
    logged_owner = [r for r in rows if r.kind == "owner"]
    assert [(r.direction, r.state, r.chat, r.text, r.wa_id) for r in logged_owner] == [
        ("OUT", "SENT", owner_chat, "Ana here, I'll help you", "o1")
    ]
    assert logged_owner[0].from_number == f"sandbox:{SLUG}"
    assert logged_owner[0].to_number == owner_chat
    states = {
        chat: [r.state for r in rows if r.direction == "IN" and r.chat == chat]
        for chat in (handoff_chat, owner_chat, other_chat)
    }
    assert states == {
        handoff_chat: ["ANSWERED", "ANSWERED", "IGNORED", "IGNORED"],
        owner_chat: ["ANSWERED", "IGNORED", "IGNORED"],
        other_chat: ["ANSWERED", "ANSWERED"],
    }


def test_pauses_end_after_their_configured_time(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch, message_log: MessageLogReader
) -> None:
    handoff_chat, owner_chat = chat_number(0), chat_number(1)
    pauses = {
        **NO_LIMITS,
        # Long enough for the next message to find the chat paused on a busy machine.
        "WACTL_PIPELINE_HANDOFF_PAUSE_MINUTES": "0.05",  # 3 s
        "WACTL_PIPELINE_OWNER_PAUSE_MINUTES": "0.05",
    }
    with daemon_for_cli(monkeypatch, pauses) as daemon:
        start_linked(cli, daemon, SLUG)
        handed_over = time.monotonic()
        assert send(daemon, "a person please", chat=handoff_chat)["kind"] == "handoff"
        assert send(daemon, "hello?", chat=handoff_chat)["reason"] == "paused"
        taken_over = time.monotonic()
        assert send(daemon, "on it", chat=owner_chat, from_me=True)["reason"] == "owner"
        assert send(daemon, "hello?", chat=owner_chat)["reason"] == "paused"

        def answered(chat: str) -> Callable[[], bool]:
            return lambda: send(daemon, "hi", chat=chat)["status"] == "replied"

        poll_for(answered(handoff_chat), timeout=WAIT, interval=0.2)
        assert time.monotonic() - handed_over >= 3.0
        poll_for(answered(owner_chat), timeout=WAIT, interval=0.2)
        assert time.monotonic() - taken_over >= 3.0
    for chat in (handoff_chat, owner_chat):
        states = [r.state for r in message_log.inbound() if r.chat == chat]
        assert states[-1] == "ANSWERED" and "IGNORED" in states


# --- 6. errors --------------------------------------------------------------------------


class _EngineSide:
    """The worker's part for an in-process engine: inbound messages go to the pipeline."""

    def __init__(self) -> None:
        self.pipeline: Pipeline | None = None
        self.qr_shown = asyncio.Event()
        self.outcomes: dict[str, asyncio.Future[Outcome]] = {}

    async def on_qr(self, qr: str) -> None:
        self.qr_shown.set()

    async def on_ready(self) -> None:
        return None

    async def on_disconnected(self, reason: str) -> None:
        return None

    async def on_logged_out(self) -> None:
        return None

    async def on_message(self, message: InboundMessage) -> None:
        assert self.pipeline is not None
        self.outcomes[message.wa_message_id] = await self.pipeline.submit(message)


@dataclass
class LocalWorker:
    """One tenant's pipeline in this process: the real store on the test database and a
    real sandbox engine (its session and outbox under the test's data dir)."""

    config: Config
    engine: SandboxEngine
    pipeline: Pipeline
    store: MessageStore
    side: _EngineSide
    events: list[tuple[str, dict[str, Any]]]

    async def send(
        self, text: str, *, chat: str = CUSTOMER, message_id: str | None = None
    ) -> Outcome:
        message = await self.engine.receive(chat, text, message_id)
        return await asyncio.wait_for(self.side.outcomes.pop(message.wa_message_id), WAIT)

    def outbox(self) -> list[str]:
        path = outbox_file(self.config, SLUG)
        if not path.exists():
            return []
        return [json.loads(line)["id"] for line in path.read_text().splitlines()]


class _Replies:
    """The tenant's reply book, wrapped so that one text makes it raise (the test double
    for the reply book: a broken template or a bug in matching)."""

    def __init__(self, poison: str | None = None) -> None:
        self.book = reply_book()
        self.poison = poison

    def reply(self, text: str, now: dt.datetime, *, first_message: bool) -> ReplyLike:
        if text == self.poison:
            raise RuntimeError("the reply book broke")
        return self.book.reply(text, now, first_message=first_message)

    def rate_limited_text(self) -> str:
        return self.book.rate_limited_text()


def tenant_id_of(db: SAEngine, slug: str = SLUG) -> uuid.UUID:
    from wactl.db.engine import session_scope

    with session_scope(db) as session:
        tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
        assert tenant is not None
        return tenant.id


@contextlib.asynccontextmanager
async def local_worker(
    db: SAEngine, replies: _Replies | None = None, engine_class: type[SandboxEngine] = SandboxEngine
) -> AsyncIterator[LocalWorker]:
    """Start (or, after a simulated crash, start again) the tenant's engine and pipeline."""
    config = load_config()
    config = dataclasses.replace(
        config,
        pipeline=dataclasses.replace(
            config.pipeline, chat_burst=1000, tenant_burst=100_000, chat_per_minute=1e6
        ),
    )
    side = _EngineSide()
    engine = engine_class(SLUG, config, side)
    executor = ThreadPoolExecutor(1, thread_name_prefix="test-db")
    loop = asyncio.get_running_loop()

    async def run_db(work: Callable[[], Any]) -> Any:
        return await loop.run_in_executor(executor, work)

    events: list[tuple[str, dict[str, Any]]] = []
    store = MessageStore(db, tenant_id_of(db))
    book = replies or _Replies()
    pipeline = Pipeline(
        slug=SLUG,
        store=store,
        engine=engine,
        replier=lambda: book,
        config=config.pipeline,
        pacing=False,
        run_db=run_db,
        on_event=lambda name, data: events.append((name, data)),
    )
    side.pipeline = pipeline
    try:
        await engine.start()
        if not engine.is_linked:
            await asyncio.wait_for(side.qr_shown.wait(), WAIT)
            await engine.scan()
        yield LocalWorker(config, engine, pipeline, store, side, events)
        await pipeline.drain(WAIT)
    finally:
        await engine.stop()
        executor.shutdown(wait=True, cancel_futures=True)
        store.close()


def run_async(scenario: Callable[[], Any]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 2 * WAIT))


def test_a_failing_message_is_recorded_and_the_others_are_answered(
    cli: CLI, db_url: str, message_log: MessageLogReader, caplog: pytest.LogCaptureFixture
) -> None:
    """DESIGN.md 5.6. No message reaches a raising handler through the daemon (bad
    tenant settings are refused when loaded), so the reply book is the one test double."""
    create_tenants(cli, SLUG)

    async def scenario() -> None:
        db = message_log.engine
        async with local_worker(db, _Replies(poison="boom")) as worker:
            first = await worker.send("hi", chat=chat_number(1))
            failed = await worker.send("boom", chat=chat_number(1), message_id="bad-1")
            after = await worker.send("2", chat=chat_number(1))
            other = await worker.send("hours", chat=chat_number(2))
            assert [first.status, failed.status, after.status, other.status] == [
                "replied",
                "failed",
                "replied",
                "replied",
            ]
            assert failed.reason == "the reply book broke"
            assert [name for name, _ in worker.events] == ["error"]
            assert "bad-1" in worker.events[0][1]["message"]

    run_async(scenario)
    rows = message_log.inbound()
    assert [(r.wa_id, r.state) for r in rows if r.wa_id == "bad-1"] == [("bad-1", "FAILED")]
    assert [r.state for r in rows if r.wa_id != "bad-1"] == ["ANSWERED"] * 3
    failed_id = next(r.id for r in rows if r.wa_id == "bad-1")
    assert reply_targets(message_log.replies()) == [r.id for r in rows if r.id != failed_id]
    error = message_log.last_error()
    assert error == f"message bad-1 from {chat_number(1)}: RuntimeError: the reply book broke"
    logged = [r for r in caplog.records if r.name == "wactl.bot.pipeline" and r.exc_info]
    assert [r.getMessage() for r in logged] == [f"handling {error}"]


def test_after_the_database_dropped_the_connection_the_next_message_is_answered(
    cli: CLI, db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker keeps one connection open; when the server ends it (a restart, an
    idle timeout, an administrator), the next message reconnects instead of failing."""
    if backend == "sqlite":
        pytest.skip("SQLite has no server that could end the connection")
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    database = make_url(db_url).database
    with daemon_for_cli(monkeypatch, NO_LIMITS) as daemon:
        start_linked(cli, daemon, SLUG)
        assert send(daemon, "hi", message_id="before")["status"] == "replied"
        admin = create_engine(make_url(db_url).set(database="postgres"))
        try:
            with admin.connect() as connection:
                ended = connection.execute(
                    text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = :name AND pid <> pg_backend_pid()"
                    ),
                    {"name": database},
                ).scalar_one()
        finally:
            admin.dispose()
        assert ended >= 1
        after = send(daemon, "2", message_id="after")
        assert (after["status"], after["kind"]) == ("replied", "menu_item"), after

        # And one connection per worker is all it holds, for messages and heartbeats:
        # 50 tenants must not need 100 of the server's connections.
        engine = create_engine(db_url)
        try:
            with engine.connect() as connection:
                held = connection.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE datname = :name AND application_name = :app"
                    ),
                    {"name": database, "app": f"wactl worker {SLUG}"},
                ).scalar_one()
        finally:
            engine.dispose()
        assert held == 1
        # A heartbeat written at the moment the connection was ended may fail (and say
        # so); no message may.
        error = daemon.ps()[SLUG]["last_error"]
        assert error is None or error.startswith("cannot record heartbeat"), error


# --- crash recovery, step by step (in-process) -----------------------------------------


def _inbound(worker: LocalWorker, chat: str, text: str, message_id: str) -> InboundMessage:
    return InboundMessage(
        wa_message_id=message_id,
        chat=chat,
        from_number=chat,
        to_number=worker.engine.own_number,
        text=text,
        timestamp=dt.datetime.now(dt.UTC),
    )


async def _crash_at(worker: LocalWorker, step: str, chat: str, message_id: str) -> int:
    """Leave the log (and the outbox) as a worker killed at ``step`` leaves them, using the
    same calls in the same order as the pipeline: record, decide, send, finish."""
    message = _inbound(worker, chat, "hours", message_id)
    text = reply_book().reply("hours", dt.datetime.now(dt.UTC), first_message=True).text
    if step.startswith("at once"):
        # The fast path: recorded and decided in one transaction.
        written = worker.store.record_decided(
            message, reply=(text, "hours"), client_prefix=f"wactl-{SLUG}-"
        )
        assert written is not None and written[1] is not None
        in_id = written[0]
    else:
        recorded = worker.store.record_inbound(message)
        assert recorded is not None
        in_id = recorded
        if step == "recorded":
            return in_id
        client_id = f"wactl-{SLUG}-{in_id}"
        worker.store.begin_reply(in_id, InboundRow.of(in_id, message), text, "hours", client_id)
    if step in ("decided", "at once, decided"):
        return in_id
    await worker.engine.send_text(chat, text, message_id=f"wactl-{SLUG}-{in_id}")
    assert step in ("sent", "at once, sent")
    return in_id


def test_recovery_finishes_a_crash_at_each_step_with_exactly_one_reply(
    cli: CLI, db_url: str, message_log: MessageLogReader
) -> None:
    create_tenants(cli, SLUG)
    steps = ("recorded", "decided", "sent", "at once, decided", "at once, sent")

    async def scenario() -> None:
        db = message_log.engine
        async with local_worker(db) as crashed:
            for n, step in enumerate(steps):
                await _crash_at(crashed, step, chat_number(n), f"crash-{step}")
        async with local_worker(db) as restarted:
            await restarted.pipeline.recover()
            await restarted.pipeline.drain(WAIT)
            assert restarted.events == []
            in_ids = [r.id for r in message_log.inbound()]
            assert sorted(restarted.outbox()) == sorted(f"wactl-{SLUG}-{i}" for i in in_ids)

    run_async(scenario)
    inbound = message_log.inbound()
    assert [(r.wa_id, r.state) for r in inbound] == [(f"crash-{s}", "ANSWERED") for s in steps]
    replies = message_log.replies()
    assert sorted((r.reply_to, r.state) for r in replies) == [(r.id, "SENT") for r in inbound]
    assert message_log.last_error() is None


class _ReservingSandbox(SandboxEngine):
    """The sandbox with WhatsApp's id chosen before each send, as the whatsapp-web engine
    has wa-js generate it: the pipeline must store it before the send."""

    async def reserve_id(self, to: str, client_id: str) -> str:
        return f"wa-{client_id}-{uuid.uuid4().hex[:8]}"


class _UnsureSandbox(SandboxEngine):
    """The sandbox whose `was_sent` cannot tell (None) the first ``unsure`` times, as a
    page still loading, or a message still on the device, cannot."""

    unsure = 2
    asked = 0

    async def was_sent(self, message_id: str) -> bool:
        type(self).asked += 1
        if type(self).asked <= self.unsure:
            return None  # type: ignore[return-value]
        return await super().was_sent(message_id)


def test_an_id_chosen_before_the_send_is_stored_first_and_recovered_by(
    cli: CLI, db_url: str, message_log: MessageLogReader
) -> None:
    """The reply's id is in the database before the engine has the reply; after a crash
    between the two, was_sent(that id) says no, and the reply goes out once, under a new
    id."""
    create_tenants(cli, SLUG)

    async def scenario() -> None:
        db = message_log.engine
        async with local_worker(db, engine_class=_ReservingSandbox) as worker:
            outcome = await worker.send("hours", chat=chat_number(1), message_id="in-1")
            assert outcome.status == "replied"
            (reply,) = message_log.replies()
            assert reply.wa_id.startswith(f"wa-wactl-{SLUG}-") and worker.outbox() == [reply.wa_id]
            # The next one crashes after its id was stored, before the send.
            message = _inbound(worker, chat_number(2), "hours", "in-2")
            in_id = worker.store.record_inbound(message)
            assert in_id is not None
            out_id = worker.store.begin_reply(
                in_id, InboundRow.of(in_id, message), "text", "hours", f"wactl-{SLUG}-{in_id}"
            )
            worker.store.reserve_reply(out_id, "wa-stored-never-sent")
        async with local_worker(db, engine_class=_ReservingSandbox) as restarted:
            await restarted.pipeline.recover()
            await restarted.pipeline.drain(WAIT)
            outbox = restarted.outbox()
            assert "wa-stored-never-sent" not in outbox and len(outbox) == 2

    run_async(scenario)
    replies = message_log.replies()
    assert [r.state for r in replies] == ["SENT", "SENT"]
    assert replies[1].wa_id.startswith(f"wa-wactl-{SLUG}-") and replies[1].wa_id != (
        "wa-stored-never-sent"
    )
    assert [r.state for r in message_log.inbound()] == ["ANSWERED", "ANSWERED"]


def test_recovery_asks_again_while_the_engine_cannot_tell(
    cli: CLI, db_url: str, message_log: MessageLogReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """None from was_sent: asked again (never sent meanwhile), with the delays of any
    failure that may pass; still None when pipeline.retry_minutes is over: the message
    is FAILED, its reply stays PENDING, not sent, not dropped, and the next start
    confirms or sends it."""
    create_tenants(cli, SLUG)
    monkeypatch.setattr("wactl.bot.pipeline.RETRY_FIRST_SECONDS", 0.01)
    monkeypatch.setattr("wactl.bot.pipeline.RETRY_MAX_SECONDS", 0.05)
    monkeypatch.setenv("WACTL_PIPELINE_RETRY_MINUTES", "0.01")  # 0.6 s

    async def scenario() -> None:
        db = message_log.engine
        async with local_worker(db) as crashed:
            await _crash_at(crashed, "sent", chat_number(1), "sent-1")
            await _crash_at(crashed, "decided", chat_number(2), "decided-1")
        _UnsureSandbox.unsure, _UnsureSandbox.asked = 2, 0
        async with local_worker(db, engine_class=_UnsureSandbox) as restarted:
            await restarted.pipeline.recover()
            await restarted.pipeline.drain(WAIT)
            assert _UnsureSandbox.asked == 4  # twice unsure, then an answer for each
            assert len(restarted.outbox()) == 2  # the sent one was not sent again
            assert [e for e, _ in restarted.events] == ["problem", "problem", "healed"]
        async with local_worker(db) as crashed_again:
            await _crash_at(crashed_again, "decided", chat_number(3), "decided-2")
        _UnsureSandbox.unsure, _UnsureSandbox.asked = 1_000_000, 0
        async with local_worker(db, engine_class=_UnsureSandbox) as unsure:
            await unsure.pipeline.recover()
            await unsure.pipeline.drain(WAIT)
            assert _UnsureSandbox.asked >= 3
            assert len(unsure.outbox()) == 2
            errors = [d["message"] for e, d in unsure.events if e == "error"]
            assert len(errors) == 1 and "given up after" in errors[0]
        assert [r.state for r in message_log.replies()] == ["SENT", "SENT", "PENDING"]
        assert [r.state for r in message_log.inbound()] == ["ANSWERED", "ANSWERED", "FAILED"]
        async with local_worker(db) as later:
            await later.pipeline.recover()
            await later.pipeline.drain(WAIT)
            assert len(later.outbox()) == 3

    run_async(scenario)
    assert [r.state for r in message_log.replies()] == ["SENT"] * 3
    assert [r.state for r in message_log.inbound()] == ["ANSWERED"] * 3


def test_a_message_arriving_while_recovery_reads_the_backlog_is_answered_once(
    cli: CLI, db_url: str, message_log: MessageLogReader
) -> None:
    """In a worker, a customer's message can arrive between the engine linking (it
    accepts messages from then on) and recovery reading the unfinished rows."""
    create_tenants(cli, SLUG)

    async def scenario() -> None:
        db = message_log.engine
        async with local_worker(db) as crashed:
            await _crash_at(crashed, "recorded", chat_number(1), "backlog-1")
        async with local_worker(db) as restarted:
            # The new message's insert is queued on the database thread before recovery's
            # query (both tasks run to their first database call in creation order).
            arriving = asyncio.ensure_future(
                restarted.engine.receive(chat_number(2), "hi", "arriving-1")
            )
            recovering = asyncio.ensure_future(restarted.pipeline.recover())
            await asyncio.gather(arriving, recovering)
            outcome = await asyncio.wait_for(restarted.side.outcomes["arriving-1"], WAIT)
            assert outcome.status == "replied"
            await restarted.pipeline.drain(WAIT)
            assert restarted.events == []

    run_async(scenario)
    inbound = message_log.inbound()
    assert [(r.wa_id, r.state) for r in inbound] == [
        ("backlog-1", "ANSWERED"),
        ("arriving-1", "ANSWERED"),
    ]
    assert reply_targets(message_log.replies()) == [r.id for r in inbound]
    assert message_log.last_error() is None


def test_a_recovered_message_is_answered_before_a_newer_one_of_its_chat(
    cli: CLI, db_url: str, message_log: MessageLogReader
) -> None:
    """Per-chat FIFO across a crash: the customer writes again while the new worker's
    recovery is still busy (here: confirming another chat's pending reply)."""
    create_tenants(cli, SLUG)
    chat = chat_number(1)

    async def scenario() -> None:
        db = message_log.engine
        async with local_worker(db) as crashed:
            await _crash_at(crashed, "recorded", chat, "older")
            await _crash_at(crashed, "decided", chat_number(2), "elsewhere")
        async with local_worker(db) as restarted:
            recovering = asyncio.ensure_future(restarted.pipeline.recover())
            arriving = asyncio.ensure_future(restarted.engine.receive(chat, "hi", "newer"))
            await asyncio.gather(recovering, arriving)
            await asyncio.wait_for(restarted.side.outcomes["newer"], WAIT)
            await restarted.pipeline.drain(WAIT)

    run_async(scenario)
    asked = [r for r in message_log.inbound() if r.chat == chat]
    assert [r.wa_id for r in asked] == ["older", "newer"]
    answered = [r.reply_to for r in message_log.replies() if r.chat == chat]
    assert answered == [r.id for r in asked], "the chat's replies are out of order"


# --- 7. the crash test --------------------------------------------------------------------

CRASH_CHATS = 20
CRASH_MESSAGES = 500
CRASH_SENDERS = 10


def test_every_message_gets_exactly_one_reply_across_kill_9(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch, message_log: MessageLogReader
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    kill_points = sorted(rng.sample(range(40, CRASH_MESSAGES - 40), rng.randint(3, 5)))
    chats = [chat_number(n) for n in range(CRASH_CHATS)]
    texts = ["hi", "1", "2", "3", "hours", "where", "thanks", "menu"]
    plan = [
        (chats[n % CRASH_CHATS], f"crash-{n}", texts[n % len(texts)]) for n in range(CRASH_MESSAGES)
    ]
    # Each sender owns a few chats and writes them in order, one message at a time.
    lanes = [plan[lane::CRASH_SENDERS] for lane in range(CRASH_SENDERS)]
    env = {**NO_LIMITS, "WACTL_DAEMON_MAX_CRASHES": "100"}
    where = f"(seed {seed}, kills after {kill_points} messages)"

    delivered = 0
    statuses: dict[str, str] = {}
    lock = threading.Lock()
    stop = threading.Event()
    killed: list[int] = []

    with daemon_for_cli(monkeypatch, env) as daemon:
        start_linked(cli, daemon, SLUG)
        path = f"/v1/tenants/{SLUG}/sandbox/send"

        def deliver(lane: list[tuple[str, str, str]]) -> None:
            nonlocal delivered
            for chat, message_id, text in lane:
                body = {"from": chat, "text": text, "id": message_id}

                def accepted(body: dict[str, str] = body) -> bool:
                    if stop.is_set():
                        pytest.fail("stopped")
                    try:
                        answer = daemon.client.request("POST", path, body, timeout=WAIT)
                    except (ConflictError, DaemonError):
                        return False  # the worker is down: deliver the same message again
                    with lock:
                        statuses[body["id"]] = answer["status"]
                    return True

                poll_for(accepted, timeout=2 * WAIT, interval=0.01)
                with lock:
                    delivered += 1

        def kill_at_points() -> None:
            for point in kill_points:
                poll_for(lambda point=point: stop.is_set() or delivered >= point, timeout=2 * WAIT)  # type: ignore[misc]
                if stop.is_set():
                    return
                pid = daemon.wait_state(SLUG, "RUNNING")["pid"]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

                def replaced(old: int = pid) -> bool:
                    row = daemon.ps()[SLUG]
                    return bool(row["state"] == "RUNNING" and row["pid"] not in (None, old))

                poll_for(replaced, timeout=WAIT)

        run_crash_traffic(deliver, lanes, kill_at_points, stop)

        def settled() -> bool:
            rows = message_log.rows()
            return not [r for r in rows if r.state in ("NEW", "PENDING")]

        poll_for(settled, timeout=WAIT)
        assert len(killed) == len(kill_points), where

    assert set(statuses.values()) <= {"replied", "duplicate"}, where
    inbound = message_log.inbound()
    assert sorted(r.wa_id for r in inbound) == sorted(p[1] for p in plan), where
    unanswered = [(r.wa_id, r.state) for r in inbound if r.state != "ANSWERED"]
    assert not unanswered, f"{where} not answered: {unanswered}"
    replies = message_log.replies()
    per_message = collections.Counter(r.reply_to for r in replies)
    assert all(per_message[r.id] == 1 for r in inbound), where
    assert len(replies) == len(inbound), where
    assert all(r.state == "SENT" for r in replies), where
    outbox = [
        json.loads(line)["id"] for line in outbox_file(load_config(), SLUG).read_text().splitlines()
    ]
    doubled = [i for i, n in collections.Counter(outbox).items() if n > 1]
    assert not doubled, f"{where} WhatsApp got these twice: {doubled}"
    assert sorted(outbox) == sorted(f"wactl-{SLUG}-{r.id}" for r in inbound), where
    for chat in chats:
        asked = [r.id for r in inbound if r.chat == chat]
        answered = [r.reply_to for r in replies if r.chat == chat]
        assert answered == asked, f"{where} chat {chat} answered out of order"


# --- 8. CLI: sandbox send/chat, tenant logs, logs prune ----------------------------------


def test_sandbox_and_log_commands(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch, message_log: MessageLogReader
) -> None:
    greeting = expected_reply("hi", first=True).text
    with daemon_for_cli(monkeypatch, NO_LIMITS) as daemon:
        start_linked(cli, daemon, SLUG)
        result = cli("sandbox", "send", SLUG, "--from", "+15551234567", "hi")
        assert (result.code, result.out) == (0, greeting + "\n")
        result = cli("sandbox", "send", SLUG, "--from", "+1 555 123 4567", "2", "--json")
        answer = json.loads(result.out)
        assert (answer["status"], answer["kind"]) == ("replied", "menu_item")
        result = cli("sandbox", "send", SLUG, "--from", "12345", "hi")
        assert result.code == 2
        assert result.err.startswith("error: --from: '12345' is not a phone number")

        lines = "hours\n\nI want to talk to a person\nhello?\n"
        result = cli("sandbox", "chat", SLUG, "--from", "+15557654321", input=lines)
        assert result.code == 0, result.err
        replies = [expected_reply("hours").text, expected_reply("a person").text]
        assert result.out == "".join(
            [
                f"bot> {replies[0]}\n",
                f"bot> {replies[1]}\n",
                "bot> (no reply: the bot is paused in this chat (a person is answering))\n",
            ]
        )

        result = cli("tenant", "logs", SLUG)
        assert result.code == 0, result.err
        text = result.out
        assert text.count("<-") == 5 and "[ignored] hello?" in text
        assert "+15551234567 <- hi\n" in text
        assert "-> (greeting) Hi! 👋 Welcome to Shop." in text

        rows = json.loads(cli("tenant", "logs", SLUG, "--json").out)
        assert [r["direction"] for r in rows] == ["IN", "OUT"] * 4 + ["IN"]
        assert set(rows[0]) == {
            "id",
            "tenant",
            "created_at",
            "direction",
            "chat",
            "from",
            "to",
            "text",
            "state",
            "kind",
            "reply_to",
            "wa_message_id",
        }
        assert rows[1]["reply_to"] == rows[0]["id"] and rows[1]["kind"] == "greeting"
        assert rows[-1]["state"] == "IGNORED"

        chat_rows = json.loads(
            cli("tenant", "logs", SLUG, "--json", "--chat", "+1 (555) 765-4321").out
        )
        assert {r["chat"] for r in chat_rows} == {"+15557654321"} and len(chat_rows) == 5
        newest = json.loads(cli("tenant", "logs", SLUG, "--json", "-n", "2").out)
        assert [r["id"] for r in newest] == [rows[-2]["id"], rows[-1]["id"]]
        assert len(json.loads(cli("tenant", "logs", SLUG, "--json", "--since", "1h").out)) == 9
        result = cli("tenant", "logs", SLUG, "--since", "2999-01-01")
        assert (result.code, result.out, result.err) == (0, "", f"no messages for '{SLUG}' match\n")

        result = cli("tenant", "logs", SLUG, "--worker", "-n", "1000")
        assert result.code == 0, result.err
        assert f"starting the worker of tenant '{SLUG}'" in result.out
        assert len(cli("tenant", "logs", SLUG, "--worker", "-n", "1").out.splitlines()) == 1

        result = cli("tenant", "logs", SLUG, "--since", "yesterday")
        assert (result.code, result.err) == (
            2,
            "error: --since: 'yesterday' is not a duration or a date; use e.g. 30m, 12h, "
            "7d, 2w, 2026-11-01 or 2026-11-01T09:00\n",
        )
        result = cli("tenant", "logs", SLUG, "--chat", "bob")
        assert (result.code, result.err) == (
            2,
            "error: --chat: 'bob' is neither a phone number in international form nor a "
            "LID; write + and the country code, e.g. +15551234567, or the NNN@lid the log "
            "shows\n",
        )
        assert cli("tenant", "logs", "nosuch").code == 5


def _log_row(
    tenant: Tenant, *, age_days: float, direction: Direction, state: MessageState, wa_id: str
) -> MessageLog:
    return MessageLog(
        tenant_id=tenant.id,
        direction=direction,
        from_number=CUSTOMER,
        to_number=f"sandbox:{tenant.slug}",
        message_text=wa_id,
        wa_message_id=wa_id,
        chat=CUSTOMER,
        state=state,
        created_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=age_days),
    )


def test_the_worker_s_retention_deletes_what_logs_prune_would(
    cli: CLI, db_url: str, message_log: MessageLogReader
) -> None:
    """pipeline.retention_days (the worker's store, hourly) and `wactl logs prune` keep
    one rule (`db.messages.prunable`): the same rows go, unfinished work stays."""
    from wactl.bot.store import MessageStore
    from wactl.db.engine import make_engine

    create_tenants(cli, SLUG, "other")
    _plant_log_rows(db_url, (SLUG, "other"))
    would = cli("logs", "prune", "--older-than", "90d", "--tenant", SLUG, "--dry-run")
    assert (would.code, would.err) == (0, "4 log entries older than 90d would be deleted\n")
    engine = make_engine(db_url)
    try:
        with db_session(db_url) as session:
            tenant = session.scalar(select(Tenant).where(Tenant.slug == SLUG))
            assert tenant is not None
        store = MessageStore(engine, tenant.id)
        try:
            removed = store.prune(dt.datetime.now(dt.UTC) - dt.timedelta(days=90))
        finally:
            store.close()
    finally:
        engine.dispose()
    assert removed == 4
    kept = ["old-new", "old-pending", "recent-in", "recent-out"]
    assert sorted(r.wa_id for r in message_log.rows(SLUG)) == sorted(kept)
    assert len(message_log.rows("other")) == 8


def _plant_log_rows(db_url: str, slugs: tuple[str, ...]) -> None:
    """Old and recent, finished and unfinished log rows for each of ``slugs``."""
    IN, OUT = Direction.IN, Direction.OUT
    with db_session(db_url) as session:
        for slug in slugs:
            tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
            assert tenant is not None
            old_question = _log_row(
                tenant, age_days=100, direction=IN, state=MessageState.ANSWERED, wa_id="old-in"
            )
            session.add(old_question)
            session.flush()
            old_reply = _log_row(
                tenant, age_days=100, direction=OUT, state=MessageState.SENT, wa_id="old-out"
            )
            old_reply.reply_to_id = old_question.id
            unfinished = _log_row(
                tenant, age_days=100, direction=IN, state=MessageState.NEW, wa_id="old-new"
            )
            session.add_all([old_reply, unfinished])
            session.flush()
            pending = _log_row(
                tenant, age_days=100, direction=OUT, state=MessageState.PENDING, wa_id="old-pending"
            )
            pending.reply_to_id = unfinished.id
            recent_question = _log_row(
                tenant, age_days=1, direction=IN, state=MessageState.ANSWERED, wa_id="recent-in"
            )
            session.add_all(
                [
                    pending,
                    _log_row(
                        tenant,
                        age_days=95,
                        direction=IN,
                        state=MessageState.IGNORED,
                        wa_id="old-ignored",
                    ),
                    _log_row(
                        tenant,
                        age_days=91,
                        direction=IN,
                        state=MessageState.FAILED,
                        wa_id="old-failed",
                    ),
                    recent_question,
                ]
            )
            session.flush()
            recent_reply = _log_row(
                tenant, age_days=1, direction=OUT, state=MessageState.SENT, wa_id="recent-out"
            )
            recent_reply.reply_to_id = recent_question.id
            session.add(recent_reply)


def test_logs_prune_deletes_old_finished_entries_only(
    cli: CLI, db_url: str, message_log: MessageLogReader
) -> None:
    create_tenants(cli, SLUG, "other")
    _plant_log_rows(db_url, (SLUG, "other"))
    kept = ["old-new", "old-pending", "recent-in", "recent-out"]
    everything = sorted(["old-in", "old-out", "old-ignored", "old-failed", *kept])

    result = cli("logs", "prune", "--older-than", "90d", "--dry-run")
    assert (result.code, result.err) == (0, "8 log entries older than 90d would be deleted\n")
    assert sorted(r.wa_id for r in message_log.rows()) == everything

    result = cli("logs", "prune", "--older-than", "90d", "--tenant", "other")
    assert (result.code, result.err) == (0, "deleted 4 log entries older than 90d\n")
    assert sorted(r.wa_id for r in message_log.rows("other")) == sorted(kept)
    assert sorted(r.wa_id for r in message_log.rows()) == everything

    result = cli("logs", "prune", "--older-than", "12w")
    assert (result.code, result.err) == (0, "deleted 4 log entries older than 12w\n")
    rows = {r.wa_id: r for r in message_log.rows()}
    assert sorted(rows) == sorted(kept)
    assert rows["old-pending"].reply_to == rows["old-new"].id
    assert rows["recent-out"].reply_to == rows["recent-in"].id

    with db_session(db_url) as session:
        audits = session.scalars(
            select(PortalEventLog)
            .where(PortalEventLog.event_type == "logs.pruned")
            .order_by(PortalEventLog.id)
        ).all()
        assert [(a.tenant_slug, a.payload_json) for a in audits] == [
            ("other", {"older_than": "90d", "deleted": 4}),
            (None, {"older_than": "12w", "deleted": 4}),
        ]
        assert all(a.actor.startswith("os:") for a in audits)

    for bad in ("abc", "2026-01-01", "90"):
        result = cli("logs", "prune", "--older-than", bad)
        assert (result.code, result.err) == (
            2,
            f"error: --older-than: '{bad}' is not an age; use e.g. 90d or 12w\n",
        ), bad
    # An age-shaped value that is not an age names the option that was given.
    result = cli("logs", "prune", "--older-than", "-5d")
    assert result.code == 2
    assert result.err.startswith("error: --older-than: '-5d'"), result.err
    result = cli("logs", "prune", "--older-than", "90d", "--tenant", "nosuch")
    assert result.code == 5
    assert sorted(r.wa_id for r in message_log.rows()) == sorted(kept)


# --- 9. quickstart ------------------------------------------------------------------------


def test_quickstart_on_embedded_defaults_twice(
    cli: CLI, monkeypatch: pytest.MonkeyPatch, isolated_env: Path
) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="wq", dir="/tmp"))
    monkeypatch.setenv("WACTL_PATHS_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("WACTL_DATABASE_URL", raising=False)
    started = Daemon(runtime_dir=runtime, env=dict(os.environ))
    try:
        first = cli("quickstart")
        assert first.code == 0, first.err
        assert "created the sandbox tenant 'demo'" in first.err
        assert "linked 'demo'" in first.err
        second = cli("quickstart")
        assert second.code == 0, second.err
        assert "tenant 'demo' exists; reusing it" in second.err
        assert "created the sandbox tenant" not in second.err

        database = isolated_env / ".local/share/wactl/wactl.db"
        assert database.exists()
        log = MessageLogReader(f"sqlite:///{database}")
        try:
            replies = log.replies("demo")
        finally:
            log.engine.dispose()
        assert len(replies) == 4
        for run, said in ((first, replies[:2]), (second, replies[2:])):
            assert run.out.startswith("\nA customer (+15550000042) writes to Demo Bistro:\n\n")
            assert "  customer> Hi!\n" in run.out and "  customer> 2\n" in run.out
            for reply in said:  # wrapped under itself at the terminal's width
                printed = "  bot>      " + reply.text.replace("\n", "\n            ")
                assert " ".join(printed.split()) in " ".join(run.out.split())
            assert all(len(line) <= 120 for line in run.out.splitlines())  # COLUMNS=120
            assert "(no reply" not in run.out
            assert "\nNext:\n  wactl sandbox chat demo " in run.out
            assert "  wactl tenant logs demo " in run.out
        assert [r.kind for r in replies] == ["greeting", "menu_item", "greeting", "menu_item"]
    finally:
        stopped = cli("daemon", "stop", "--with-workers")
        started.stop_everything()
        shutil.rmtree(runtime, ignore_errors=True)
    assert stopped.code == 0, stopped.err


def test_a_tenant_with_the_longest_slug_is_answered(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch, message_log: MessageLogReader
) -> None:
    slug = "a-tenant-with-a-slug-of-forty-characters"
    assert len(slug) == 40  # the longest `validate_slug` accepts
    with daemon_for_cli(monkeypatch) as daemon:
        start_linked(cli, daemon, slug)
        outcome = send(daemon, "hi", slug=slug)
        assert (outcome["status"], outcome["kind"]) == ("replied", "greeting")
    assert [(r.direction, r.state) for r in message_log.rows(slug)] == [
        ("IN", "ANSWERED"),
        ("OUT", "SENT"),
    ]
