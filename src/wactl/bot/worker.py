"""The worker process of one tenant: ``python -m wactl.bot SLUG``, started by the daemon.

It exists so that each tenant's WhatsApp link lives in its own process (and process
group), which the daemon can start, watch and kill without touching any other tenant.

Startup, in this order: load the configuration (``WACTL_CONFIG`` and ``WACTL_*``), log to
the tenant's log file (`wactl.bot.logs`), check the database schema, load the tenant,
build its engine, open the control socket (`wactl.bot.control`), start the engine. Then
it writes ``worker_process.heartbeat_at`` every ``daemon.heartbeat_interval_seconds``,
records what the engine reports in ``whatsapp_session`` and ``tenant.status``, and
pushes the same as events to the control socket's clients. SIGTERM or SIGINT stop it
gracefully: engine stopped, socket removed, database engine disposed, exit code 0.

Exit codes (`wactl.errors.ExitCode` values; the daemon records them):

====  ============================================================================
0     stopped by SIGTERM or SIGINT
1     unexpected failure, including a corrupt sandbox session file, or an engine that
      broke while running (whatsapp-web: the browser crashed, closed, or its page
      stopped answering); the log says why
2     bad command line: no slug, or not a valid slug
3     configuration: bad config file or variable, the tenant's engine is not available
      in this wactl (no Chromium, no wa-js bundle), or the socket path is too long for
      a Unix socket
4     the database is unreachable, or its schema is not the one this wactl needs
5     no tenant with that slug
6     another worker already answers on this tenant's control socket, or holds its
      browser profile
====  ============================================================================

It must not write ``worker_process.status``, ``pid`` or ``restarts`` (the daemon owns
them), do PostgreSQL work on the event loop (a single database thread keeps writes in
order; SQLite's pipeline work runs on the loop itself, see `Worker._run_db`), or import
the CLI, TUI, web or browser stacks (the whatsapp-web engine imports Playwright itself,
only in the workers of its tenants).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

from sqlalchemy import select, update
from sqlalchemy.engine import CursorResult, Engine
from sqlalchemy.orm import Session

import wactl
from wactl import wajs
from wactl.bot.control import ControlServer, RequestError
from wactl.bot.engines import EngineError, InboundMessage, create_engine
from wactl.bot.engines.sandbox import SandboxEngine
from wactl.bot.logs import setup_logging
from wactl.bot.pipeline import Outcome, Pipeline
from wactl.bot.store import MessageStore, is_locked
from wactl.config import load_config
from wactl.config.model import Config
from wactl.db.engine import display_url, engine_for, session_scope
from wactl.db.messages import logged_totals
from wactl.db.models import Tenant, TenantConfig, WhatsappSession, WorkerProcess
from wactl.db.wajs_releases import tenant_effective
from wactl.enums import EngineName, Language, SessionState, TemplateType, TenantStatus
from wactl.errors import (
    ConfigError,
    ExitCode,
    NotFoundError,
    ValidationError,
    WactlError,
)
from wactl.ipc.protocol import (
    MAX_PAUSE_MINUTES,
    WORKER_PROTOCOL_VERSION,
    worker_exit_path,
    worker_socket_path,
)
from wactl.replies.book import ReplyBook
from wactl.validation import validate_slug

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Longest delay between a message being counted and the daemon hearing of it.
COUNTS_REPORT_SECONDS = 1.0
#: SQLite work tried on the event loop waits at most this long for another writer's
#: lock (ms); work that would wait longer goes to the database thread, so that the loop,
#: and with it the heartbeat and the control socket, never waits out busy_timeout_ms.
INLINE_LOCK_WAIT_MS = 20
#: After a lock was met on the loop, database work stays on the thread this long (s).
THREAD_AFTER_LOCK_SECONDS = 2.0
#: How long `Engine.stop` may take before the worker exits anyway; well inside the
#: daemon's stop grace period (10 s by default), after which it would SIGKILL.
ENGINE_STOP_TIMEOUT_SECONDS = 5.0


def main(argv: Sequence[str]) -> int:
    """Run the worker for the tenant named in ``argv``; returns the exit code."""
    if len(argv) != 1:
        print("usage: python -m wactl.bot SLUG", file=sys.stderr)
        return ExitCode.USAGE
    try:
        slug = validate_slug(argv[0])
    except ValidationError as exc:
        print(f"wactl-bot: {exc.one_line()}", file=sys.stderr)
        return ExitCode.USAGE
    try:
        config = load_config()
    except ConfigError as exc:
        # No log file without a configuration; stderr is the log file when the daemon
        # starts the worker.
        print(f"wactl-bot {slug}: {exc.one_line()}", file=sys.stderr)
        return ExitCode.CONFIG
    try:
        setup_logging(config, slug)
    except OSError as exc:
        print(f"wactl-bot {slug}: cannot open the log file: {exc}", file=sys.stderr)
        return ExitCode.FAILURE
    log.info(
        "starting the worker of tenant '%s' (pid %d, wactl %s, config %s)",
        slug,
        os.getpid(),
        wactl.__version__,
        config.source,
    )
    # Until the event loop takes the signals over, a stop request ends startup with 0 too.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop_during_startup)
    exit_path = worker_exit_path(config.runtime_dir, slug)
    with contextlib.suppress(OSError):
        exit_path.unlink(missing_ok=True)  # an earlier worker's
    reason = None
    try:
        code = int(run_worker(config, slug))
    except _StopDuringStartup as stop:
        log.info("%s received during startup; exiting", stop.args[0])
        code = ExitCode.OK
    except WactlError as exc:
        reason = exc.one_line()
        log.error("%s", reason)
        code = exc.exit_code
    except Exception as exc:
        reason = f"the worker crashed: {_first_line(exc)}"
        log.exception("the worker crashed")
        code = ExitCode.FAILURE
    if reason is not None:
        _leave_reason(exit_path, reason)
    log.info("worker exiting with code %d", code)
    return code


def _leave_reason(path: Path, reason: str) -> None:
    """Tell the daemon why this worker fails (`wactl ps`, `tenant show`, the quarantine
    reason say it, not only this worker's log): one line, written whole (by rename)."""
    line = " ".join(reason.split())[:500]
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_suffix(".exit.tmp")
        temporary.write_text(line + "\n", encoding="utf-8")
        temporary.replace(path)
    except OSError as exc:
        log.warning("cannot leave the reason for the daemon in %s: %s", path, exc)


class _StopDuringStartup(BaseException):
    """SIGTERM or SIGINT before the event loop runs (a BaseException: nothing swallows it)."""


def _stop_during_startup(signum: int, _frame: object) -> None:
    raise _StopDuringStartup(signal.Signals(signum).name)


def run_worker(config: Config, slug: str) -> int:
    """Everything after logging is set up; raises `WactlError` for the documented exits."""
    db = engine_for(config, application_name=f"wactl worker {slug}")
    try:
        log.info("database %s", display_url(db.url))
        check_schema(db)
        tenant = load_tenant(db, slug)
        worker = Worker(config, tenant, db)
        return asyncio.run(worker.run())
    finally:
        db.dispose()


# --- startup checks -------------------------------------------------------------------


def check_schema(db: Engine) -> None:
    """Refuse an out-of-date schema (`wactl.db.schema.ensure_current`).

    It reads ``alembic_version`` and the migrations folder directly: Alembic itself
    would add ~12 MB of unique memory to every worker (psutil USS ~36 MB without it,
    ~48 MB with it) and ~50 ms of CPU to every start.
    """
    from wactl.db.schema import ensure_current

    ensure_current(db)


@dataclass(frozen=True)
class TenantSnapshot:
    """What the worker needs to know about its tenant, read once at startup."""

    id: uuid.UUID
    slug: str
    engine: str
    session_state: SessionState
    phone_number: str | None = None
    #: The business's name (it names the linked device on the owner's phone).
    name: str = ""
    #: The wa-js the whatsapp-web engine injects (`wajs_releases.effective`: the
    #: tenant's override, else the fleet default, else the version pinned in wactl).
    wa_js: wajs.Pin = wajs.PINNED


@dataclass(frozen=True)
class ReplySettings:
    """The tenant's reply configuration; re-read when tenant_config changes."""

    template: TemplateType
    language: Language
    overrides: dict[str, str]
    info: dict[str, str]
    hours_json: dict[str, Any]
    timezone: str
    updated_at: dt.datetime | None


def load_reply_settings(session: Session, tenant_id: uuid.UUID) -> ReplySettings:
    config = session.scalar(select(TenantConfig).where(TenantConfig.tenant_id == tenant_id))
    tenant = session.get(Tenant, tenant_id)
    if config is None:
        name = tenant.name if tenant is not None else ""
        return ReplySettings(
            TemplateType.GENERIC, Language.EN, {}, {"business_name": name}, {}, "UTC", None
        )
    info = {"business_name": config.business_name, **dict(config.info_json or {})}
    if tenant is not None and tenant.phone_number and not info.get("phone"):
        info["phone"] = tenant.phone_number
    return ReplySettings(
        template=config.template_type,
        language=config.language,
        overrides=dict(config.texts_json or {}),
        info=info,
        hours_json=dict(config.hours_json or {}),
        timezone=config.timezone,
        updated_at=config.updated_at,
    )


def load_tenant(db: Engine, slug: str) -> TenantSnapshot:
    with session_scope(db) as session:
        tenant = session.scalar(select(Tenant).where(Tenant.slug == slug))
        if tenant is None:
            raise NotFoundError(
                f"no tenant '{slug}'", hint="create it with `wactl tenant create` first"
            )
        state = tenant.session.state if tenant.session is not None else SessionState.UNLINKED
        return TenantSnapshot(
            id=tenant.id,
            slug=tenant.slug,
            engine=tenant.engine.value,
            session_state=state,
            phone_number=tenant.phone_number,
            name=tenant.name,
            wa_js=tenant_effective(session, tenant.id).pin,
        )


# --- the running worker ------------------------------------------------------------------


class Worker:
    """The asyncio side of a worker: control socket, engine events, heartbeat, shutdown.

    Implements `wactl.bot.engines.EngineEvents` for its engine.
    """

    def __init__(self, config: Config, tenant: TenantSnapshot, db: Engine) -> None:
        self.config = config
        self.tenant = tenant
        self.db = db
        self.pid = os.getpid()
        #: The last state reported to clients; until the engine reports, the stored one.
        self.state = tenant.session_state
        #: The QR code showing now, or None.
        self.qr: str | None = None
        #: The engine has started (the daemon's RUNNING): said in the hello, and as a
        #: ``started`` event when it happens.
        self.engine_started = False
        self.engine = create_engine(
            tenant.engine,
            tenant.slug,
            config,
            self,
            tenant_name=tenant.name,
            wa_js=tenant.wa_js,
        )
        if isinstance(self.engine, SandboxEngine) and tenant.phone_number:
            self.engine.own_number = tenant.phone_number
        self.control = ControlServer(
            worker_socket_path(config.runtime_dir, tenant.slug),
            hello=self.hello,
            operations={
                "ping": self.op_ping,
                "scan": self.op_scan,
                "logout": self.op_logout,
                "send": self.op_send,
                "pause": self.op_pause,
            },
        )
        # One thread: database writes happen in the order the events did.
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="wactl-db")
        self._db_inline = db.dialect.name == "sqlite"
        #: Pipeline work on the database thread now (the store's connection is then the
        #: thread's: nothing runs inline meanwhile).
        self._db_on_thread = 0
        #: Inline SQLite work waits until then (event-loop time) after meeting a lock.
        self._inline_after = 0.0
        #: What is failing now, by area: (message, since) (see `Pipeline`'s problems).
        self.problems: dict[str, tuple[str, str]] = {}
        self._housekeeping_task: asyncio.Task[None] | None = None
        self._heartbeat_write: asyncio.Task[bool] | None = None
        self._replies: ReplyBook | None = None
        self._reply_settings: ReplySettings | None = None
        self._recovered = False
        self._outcomes: dict[str, asyncio.Future[Outcome]] = {}
        self._last_prune = 0.0
        self.pipeline = Pipeline(
            slug=tenant.slug,
            store=MessageStore(db, tenant.id),
            engine=self.engine,
            replier=self._replier,
            config=config.pipeline,
            pacing=tenant.engine != "sandbox" or config.pipeline.pacing_in_sandbox,
            run_db=self._run_db,
            on_event=self._pipeline_event,
        )
        self._stop_requested: asyncio.Event | None = None
        self._warned_no_worker_row = False
        self.pipeline.counts.on_change = self._counts_changed
        self._counts_timer: asyncio.TimerHandle | None = None

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        stop_requested = self._stop_requested = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_stop_signal, signum)
        heartbeat: asyncio.Task[None] | None = None
        waiting: asyncio.Task[bool] | None = None
        try:
            # Reply settings first: a broken tenant configuration stops the worker with
            # the reason in its log before it links anything.
            await self._load_replies()
            await self.pipeline.load_counts()
            await self._load_totals()
            await self.control.start()
            log.info("control socket %s", self.control.path)
            # The engine may take long to start (a browser); a stop signal must not wait.
            starting = asyncio.create_task(self.engine.start(), name="engine-start")
            waiting = asyncio.create_task(stop_requested.wait(), name="stop-requested")
            await asyncio.wait({starting, waiting}, return_when=asyncio.FIRST_COMPLETED)
            if not starting.done():
                starting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await starting
            else:
                starting.result()  # raises what the engine raised
                log.info("engine %s started", self.engine.name)
                self.engine_started = True
                self.control.event("started")
                heartbeat = asyncio.create_task(self._heartbeat(), name="heartbeat")
                watching = asyncio.create_task(self.engine.watch(), name="engine-watch")
                await asyncio.wait({waiting, watching}, return_when=asyncio.FIRST_COMPLETED)
                if not stop_requested.is_set() and watching.done():
                    # The engine broke (a crashed or deaf browser): exit with its error so
                    # that the daemon starts a fresh worker, with backoff.
                    watching.result()
                    raise EngineError(f"the {self.engine.name} engine stopped working")
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError, WactlError):
                    await watching
            return ExitCode.OK
        finally:
            if waiting is not None:
                waiting.cancel()
            await self._shut_down(heartbeat)
            # Closing the loop would restore the default actions (SIGTERM kills with -15,
            # SIGINT raises KeyboardInterrupt) for the last steps; stopping is under way.
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
                signal.signal(signum, signal.SIG_IGN)

    def _on_stop_signal(self, signum: int) -> None:
        assert self._stop_requested is not None
        if not self._stop_requested.is_set():
            log.info("%s received; stopping", signal.Signals(signum).name)
            self._stop_requested.set()

    async def _shut_down(self, heartbeat: asyncio.Task[None] | None) -> None:
        if self._counts_timer is not None:
            self._counts_timer.cancel()
            self._counts_timer = None
        if heartbeat is not None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        try:
            await asyncio.wait_for(self.engine.stop(), ENGINE_STOP_TIMEOUT_SECONDS)
        except TimeoutError:
            log.warning("the engine did not stop within %.0f s", ENGINE_STOP_TIMEOUT_SECONDS)
        except Exception:
            log.exception("stopping the engine failed")
        await self.control.close()
        # Writes already started finish (each is short); queued ones are dropped.
        self._db_thread.shutdown(wait=True, cancel_futures=True)
        try:
            self.pipeline.store.close()
        except Exception:
            log.exception("closing the message store's connection failed")

    # --- control operations ---------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "protocol": WORKER_PROTOCOL_VERSION,
            "slug": self.tenant.slug,
            "pid": self.pid,
            "engine": self.engine.name,
            "wa_js_version": self.tenant.wa_js.version
            if self.engine.name == EngineName.WHATSAPP_WEB
            else None,
            "started": self.engine_started,
            "state": self.state.value,
            "qr": self.qr,
            "problems": self.problem_list(),
            **self.message_counts(),
        }

    def problem_list(self) -> list[dict[str, str]]:
        return [
            {"area": area, "message": message, "since": since}
            for area, (message, since) in sorted(self.problems.items())
        ]

    async def _load_totals(self) -> None:
        """Seed the message totals from the log, before the engine can add any."""
        totals = await self._run_db(
            partial(self._in_session, partial(logged_totals, tenant_id=self.tenant.id))
        )
        self.pipeline.counts.seed_totals(*totals.get(self.tenant.id, (0, 0)))

    def message_counts(self) -> dict[str, int]:
        """Messages in and out in the last hour, and in all (the tenant's log)."""
        counts = self.pipeline.counts
        last_in, last_out = counts.last_hour()
        return {
            "messages_in_1h": last_in,
            "messages_out_1h": last_out,
            "messages_in_total": counts.total_in,
            "messages_out_total": counts.total_out,
        }

    async def op_ping(self, args: dict[str, Any]) -> dict[str, Any]:
        _check_args(args, allowed=())
        return {"pid": self.pid, "state": self.state.value}

    async def op_scan(self, args: dict[str, Any]) -> dict[str, Any]:
        _check_args(args, allowed=("qr",))
        qr = args.get("qr")
        if qr is not None and not isinstance(qr, str):
            raise RequestError(400, "'qr' must be a string or null")
        if not isinstance(self.engine, SandboxEngine):
            raise RequestError(400, f"scan is only for sandbox tenants, not {self.engine.name}")
        await self.engine.scan(qr)
        return {"state": self.state.value}

    async def op_logout(self, args: dict[str, Any]) -> dict[str, Any]:
        _check_args(args, allowed=())
        await self.engine.logout()
        return {"state": self.state.value}

    async def op_pause(self, args: dict[str, Any]) -> dict[str, Any]:
        """An operator pauses the bot in one chat for ``minutes``, or (0) hands the chat
        back to it; through this worker, which keeps its chats' pauses in memory."""
        _check_args(args, allowed=("chat", "minutes"))
        chat, minutes = args.get("chat"), args.get("minutes")
        if not isinstance(chat, str) or not chat:
            raise RequestError(400, "'chat' must be the customer's number or LID")
        if (
            not isinstance(minutes, int | float)
            or isinstance(minutes, bool)
            or not 0 <= minutes <= MAX_PAUSE_MINUTES
        ):
            raise RequestError(400, f"'minutes' must be a number from 0 to {MAX_PAUSE_MINUTES}")
        until = None
        if minutes:
            until = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=float(minutes))
        await self.pipeline.set_pause(chat, until, "operator")
        return {"chat": chat, "paused_until": until.isoformat() if until else None}

    async def op_send(self, args: dict[str, Any]) -> dict[str, Any]:
        """Sandbox: a customer (or the owner, ``from_me``) writes; answers with the outcome."""
        _check_args(args, allowed=("from", "text", "id", "from_me", "wait"))
        sender, text = args.get("from"), args.get("text")
        if not isinstance(sender, str) or not sender:
            raise RequestError(400, "'from' must be the customer's number")
        if not isinstance(text, str) or not text.strip():
            raise RequestError(400, "'text' must be a non-empty string")
        message_id = args.get("id")
        if message_id is not None and (not isinstance(message_id, str) or not message_id):
            raise RequestError(400, "'id' must be a non-empty string")
        if not isinstance(self.engine, SandboxEngine):
            raise RequestError(400, f"send is only for sandbox tenants, not {self.engine.name}")
        message = await self.engine.receive(
            sender, text, message_id, from_me=bool(args.get("from_me"))
        )
        outcome_future = self._outcomes.pop(message.wa_message_id, None)
        if outcome_future is None or args.get("wait") is False:
            return {"id": message.wa_message_id, "status": "queued"}
        outcome = await asyncio.wait_for(outcome_future, 60)
        return {
            "id": message.wa_message_id,
            "status": outcome.status,
            "reply": outcome.reply,
            "kind": outcome.kind,
            "reason": outcome.reason,
        }

    # --- the pipeline's needs -----------------------------------------------------------

    async def _run_db(self, work: Callable[[], T]) -> T:
        """Run the pipeline's database ``work``: on SQLite right here, on the event loop's
        thread, unless another writer holds the lock; otherwise on the database thread.

        A SQLite transaction is local file work (0.1-0.3 ms), and handing it to a thread
        and back costs more than that when a worker is woken for each message: in
        bench/pipeline.py, 50 workers at 10 msg/s each took 2.07 ms of CPU per message with
        the thread and 1.61 ms without, the p99 fell from 135 to 83 ms on a loaded machine,
        and one busy worker went from 1215 to 2201 msg/s. But the loop must never wait out
        database.busy_timeout_ms behind another process's lock (a worker of another
        tenant, stopped mid-transaction; someone's `sqlite3` shell): its heartbeat would
        stop and the daemon would kill it as hung. So inline work waits at most
        `INLINE_LOCK_WAIT_MS` for a lock; locked, it is done again on the database thread
        with the full timeout (nothing was written: SQLite refuses the first write), and
        the next `THREAD_AFTER_LOCK_SECONDS` of work go there too. The store's one
        connection is used by one thread at a time: inline work only starts when no
        work is on the thread. PostgreSQL work is network round trips, which must not
        stop the loop: always on the thread.
        """
        loop = asyncio.get_running_loop()
        store = self.pipeline.store
        if self._db_inline and not self._db_on_thread and loop.time() >= self._inline_after:
            store.wait_for_locks(INLINE_LOCK_WAIT_MS)
            try:
                return work()
            except Exception as exc:
                if not is_locked(exc):
                    raise
                self._inline_after = loop.time() + THREAD_AFTER_LOCK_SECONDS
                log.info("the database is locked by another process; waiting on a thread")
        self._db_on_thread += 1
        try:
            return await loop.run_in_executor(self._db_thread, self._on_db_thread, work)
        finally:
            self._db_on_thread -= 1

    def _on_db_thread(self, work: Callable[[], T]) -> T:
        if self._db_inline:
            self.pipeline.store.wait_for_locks(self.config.database.busy_timeout_ms)
        return work()

    def _replier(self) -> ReplyBook:
        assert self._replies is not None, "reply settings are loaded before the engine starts"
        return self._replies

    async def _load_replies(self) -> None:
        """(Re)build the reply book when the tenant's configuration changed."""
        settings = await self._run_db(
            partial(self._in_session, partial(load_reply_settings, tenant_id=self.tenant.id))
        )
        if self._reply_settings is not None and settings == self._reply_settings:
            return
        try:
            book = ReplyBook.build(
                settings.template,
                settings.language,
                settings.overrides,
                settings.info,
                hours_json=settings.hours_json,
                timezone=settings.timezone,
            )
        except WactlError as exc:
            if self._replies is None:
                raise
            log.error("new reply settings not used: %s", exc.one_line())
            self.control.event("error", message=f"reply settings: {exc.one_line()}")
            self._reply_settings = settings
            return
        self._replies = book
        self._reply_settings = settings
        log.info("reply book: %s in %s", settings.template.value, settings.language.value)

    def _pipeline_event(self, event: str, data: dict[str, Any]) -> None:
        if event == "problem":
            self._problem(str(data["area"]), str(data["message"]))
        elif event == "healed":
            self._healed(str(data["area"]))
        else:
            self.control.event(event, **data)

    def _problem(self, area: str, message: str) -> None:
        """Something in ``area`` is failing now: the daemon hears it (it shows in
        `wactl ps` until `_healed`)."""
        since = self.problems[area][1] if area in self.problems else _now_iso()
        self.problems[area] = (message[:2000], since)
        self.control.event("problem", area=area, message=message[:2000], since=since)

    def _healed(self, area: str) -> None:
        if self.problems.pop(area, None) is not None:
            self.control.event("healed", area=area)
            if area == "database":
                self.pipeline.retry_now()

    async def _housekeeping(self) -> None:
        """Each heartbeat: pick up configuration changes; hourly: apply log retention."""
        await self._load_replies()
        days = self.config.pipeline.retention_days
        now = time.monotonic()
        if days and now - self._last_prune > 3600:
            self._last_prune = now
            cutoff = dt.datetime.now(dt.UTC) - dt.timedelta(days=days)
            # Always on the database thread: a first prune may delete many rows.
            loop = asyncio.get_running_loop()
            removed = await loop.run_in_executor(
                self._db_thread, partial(self.pipeline.store.prune, cutoff)
            )
            if removed:
                log.info("retention: removed %d log entries older than %d days", removed, days)

    # --- engine events (EngineEvents) --------------------------------------------------

    async def on_qr(self, qr: str) -> None:
        await self._write("qr", partial(self._store_link, SessionState.QR_PENDING, qr=qr))
        self.qr = qr
        self._set_state(SessionState.QR_PENDING)
        self.control.event("qr", qr=qr)

    async def on_ready(self) -> None:
        await self._write("ready", partial(self._store_link, SessionState.CONNECTED))
        self.qr = None
        self._set_state(SessionState.CONNECTED)
        if not self._recovered:
            self._recovered = True
            try:
                await self.pipeline.recover()
            except Exception as exc:
                log.exception("recovering unfinished messages failed")
                self.control.event("error", message=f"recovery failed: {_first_line(exc)}")

    async def on_disconnected(self, reason: str) -> None:
        await self._write("disconnected", partial(self._store_link, SessionState.DISCONNECTED))
        self.qr = None
        self._set_state(SessionState.DISCONNECTED, reason)

    async def on_logged_out(self) -> None:
        await self._write("logged_out", partial(self._store_link, SessionState.UNLINKED))
        self.qr = None
        self._set_state(SessionState.UNLINKED, "logged out")

    async def on_message(self, message: InboundMessage) -> None:
        outcome = await self.pipeline.submit(message)
        if len(self._outcomes) > 10_000:
            self._outcomes.clear()  # nobody is waiting for that many
        self._outcomes[message.wa_message_id] = outcome

    def _set_state(self, state: SessionState, reason: str | None = None) -> None:
        if state == self.state and reason is None:
            return
        log.info("WhatsApp session %s%s", state.value, f" ({reason})" if reason else "")
        self.state = state
        self.control.event("state", state=state.value, reason=reason)

    # --- heartbeat -----------------------------------------------------------------------

    def _counts_changed(self) -> None:
        """A message was counted: tell the daemon within a second (once for a burst), so
        `wactl ps` need not wait for the next heartbeat."""
        if self._counts_timer is None:
            loop = asyncio.get_running_loop()
            self._counts_timer = loop.call_later(COUNTS_REPORT_SECONDS, self._report_counts)

    def _report_counts(self) -> None:
        self._counts_timer = None
        self.control.event("messages", **self.message_counts())

    async def _heartbeat(self) -> None:
        """Tell the daemon this worker is alive, every heartbeat interval, whatever the
        database does: the row's ``heartbeat_at`` and the housekeeping run beside it, and
        one still under way (a slow or unreachable database) is not started again."""
        interval = self.config.daemon.heartbeat_interval_seconds
        try:
            while True:
                at = dt.datetime.now(dt.UTC)
                self.control.event("heartbeat", at=at.isoformat(), **self.message_counts())
                if self._heartbeat_write is None or self._heartbeat_write.done():
                    self._heartbeat_write = asyncio.create_task(
                        self._write("heartbeat", partial(self._store_heartbeat, at)),
                        name="heartbeat-write",
                    )
                if self._housekeeping_task is None or self._housekeeping_task.done():
                    self._housekeeping_task = asyncio.create_task(
                        self._housekeeping_safely(), name="housekeeping"
                    )
                await asyncio.sleep(interval)
        finally:
            for task in (self._heartbeat_write, self._housekeeping_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task

    async def _housekeeping_safely(self) -> None:
        try:
            await self._housekeeping()
        except Exception as exc:
            log.exception("housekeeping failed")
            self.control.event("error", message=f"housekeeping: {_first_line(exc)}")

    # --- database (runs on the database thread) ---------------------------------------

    async def _write(self, what: str, work: Callable[[Session], object]) -> bool:
        """Run ``work`` in a session on the database thread; a failure is logged and
        pushed as an ``error`` event, never raised (the engine must go on)."""
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._db_thread, self._in_session, work)
        except Exception as exc:
            message = f"cannot record {what} in the database: {_first_line(exc)}"
            log.error("%s", message)
            self._problem("database", message)
            return False
        self._healed("database")
        return True

    def _in_session(self, work: Callable[[Session], T]) -> T:
        if self._db_inline:
            # SQLite: the store's connection belongs to the event loop's thread; a
            # second connection to a file costs nothing.
            with session_scope(self.db) as session:
                return work(session)
        # Everything runs on the database thread: one server connection per worker.
        return self.pipeline.store.run_session(work)

    def _store_link(self, state: SessionState, session: Session, *, qr: str | None = None) -> None:
        """Record a link state reported by the engine in the session row and the
        tenant's status; the engine's events are the truth about the link."""
        tenant_id = self.tenant.id
        row = session.scalar(select(WhatsappSession).where(WhatsappSession.tenant_id == tenant_id))
        if row is None:
            row = WhatsappSession(tenant_id=tenant_id)
            session.add(row)
        row.state = state
        now = dt.datetime.now(dt.UTC)
        if state in (SessionState.QR_PENDING, SessionState.UNLINKED):
            row.last_qr = qr
        elif state == SessionState.CONNECTED:
            row.last_qr = None
            row.last_seen_at = now
        tenant_status = {
            SessionState.QR_PENDING: TenantStatus.QR_PENDING,
            SessionState.CONNECTED: TenantStatus.CONNECTED,
            # Logged out: it was linked and lost the link; a QR (QR_PENDING) follows.
            SessionState.UNLINKED: TenantStatus.DISCONNECTED,
            SessionState.DISCONNECTED: TenantStatus.DISCONNECTED,
        }[state]
        session.execute(update(Tenant).where(Tenant.id == tenant_id).values(status=tenant_status))

    def _store_heartbeat(self, at: dt.datetime, session: Session) -> None:
        statement = (
            update(WorkerProcess)
            .where(WorkerProcess.tenant_id == self.tenant.id)
            # Setting updated_at to itself keeps its onupdate from firing: a heartbeat is
            # not a change of the row's bookkeeping.
            .values(heartbeat_at=at, updated_at=WorkerProcess.updated_at)
        )
        result = cast(CursorResult[Any], session.execute(statement))
        if result.rowcount == 0 and not self._warned_no_worker_row:
            self._warned_no_worker_row = True
            log.warning(
                "tenant '%s' has no worker_process row; heartbeat not recorded", self.tenant.slug
            )


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _first_line(error: Exception) -> str:
    """An exception as one short line (SQLAlchemy's carry the SQL on further lines)."""
    if isinstance(error, WactlError):
        return error.one_line()
    lines = str(error).strip().splitlines()
    text = f"{type(error).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= 300 else text[:299] + "…"


def _check_args(args: dict[str, Any], *, allowed: Sequence[str]) -> None:
    unknown = sorted(set(args) - set(allowed))
    if unknown:
        raise RequestError(400, f"unknown argument '{unknown[0]}'")
