"""The whatsapp-web engine: a real phone linked through WhatsApp Web (DESIGN.md section 4).

Playwright (async) drives a headless Chromium on one persistent profile per tenant
(`wactl.bot.engines.chromium`: binary, flags, lock, leftovers). Into every document of
the page go two scripts, in this order: the wa-js bundle (``window.WPP``, pinned and
integrity-checked by `wactl engine install`, or a stand-in named by
``browser.wa_js_path``) and wactl's bridge (``whatsapp_web.js``), which hooks the wa-js
events in `WPP_EVENTS` and reports them through the ``__wactlEmit`` binding.
The browser says it is desktop Chrome (``browser.user_agent``, default
`chromium.user_agent`): WhatsApp Web answers "HeadlessChrome" with an "update your
browser" page instead of a QR.

What the page reports, and what the worker hears:

- ``conn.auth_code_change`` with a code -> `EngineEvents.on_qr` (the code rotates);
  ``conn.qrcode_idle`` (WhatsApp Web stopped rotating it) -> ``conn.refreshQR``.
- ``conn.authenticated`` -> nothing yet; ``conn.main_ready`` must follow within
  ``browser.ready_timeout_seconds``, and then -> `on_ready`.
- ``conn.logout`` (unlinked from the phone) -> `on_logged_out`; a new QR follows.
  ``conn.require_auth`` while linked -> `on_disconnected`; a new QR follows.
- ``chat.new_message`` -> `on_message` for text in one-to-one chats (groups only with
  ``browser.answer_groups``). Skipped: what this bot sent, status updates, broadcasts,
  channels, notifications and other system messages, media. A message the business
  typed on its phone arrives with ``from_me``: the owner-takeover signal.

What makes the worker exit with an error, so that the daemon starts a fresh one with
backoff (`watch`): the page crashed, the page or the browser closed, wa-js did not load
or the linked session did not become ready within ``browser.ready_timeout_seconds``, or
the page did not answer a probe (`__wactl.state()`, which reads ``WPP.conn``) within
``browser.probe_timeout_seconds``; probes run every ``browser.probe_interval_seconds``.

Replies (`send_text`) go through ``WPP.chat.sendTextMessage``. `was_sent` answers from a
journal of sends (`SentJournal`) and, for a send cut short by a crash, from the chat's
recent messages (``WPP.chat.getMessages``): see `SentJournal` for the guarantee.

This module must not touch the database or the daemon; the worker records what it
reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import time
import weakref
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar

from wactl import wajs
from wactl.bot.engines import chromium
from wactl.bot.engines.base import Engine, EngineError, EngineEvents, InboundMessage
from wactl.config.model import Config
from wactl.enums import EngineName
from wactl.errors import ConfigError
from wactl.wajs import Pin

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page, Playwright

log = logging.getLogger(__name__)

#: The wa-js events the bridge listens to (the issue's contract test checks that the
#: pinned bundle has them all).
WPP_EVENTS = (
    "conn.auth_code_change",
    "conn.qrcode_idle",
    "conn.authenticated",
    "conn.main_ready",
    "conn.logout",
    "conn.require_auth",
    "chat.new_message",
)
#: The wa-js functions the bridge calls.
WPP_FUNCTIONS = (
    "conn.getAuthCode",
    "conn.getMyUserId",
    "conn.isAuthenticated",
    "conn.isMainReady",
    "conn.logout",
    "conn.refreshQR",
    "chat.getMessages",
    "chat.sendTextMessage",
)
#: The other top-level wa-js names it reads.
WPP_PROPERTIES = ("on", "isReady", "version")

#: wactl's bridge script (see the module docstring).
BRIDGE_SCRIPT = Path(__file__).with_name("whatsapp_web.js")
#: The binding the bridge reports through.
BINDING = "__wactlEmit"

#: While wa-js is loading, how often the page is asked whether it is ready.
LOADING_POLL_SECONDS = 0.5
#: How long a send may take (sendTextMessage waits for WhatsApp's server to accept it).
SEND_TIMEOUT_SECONDS = 60.0
#: How long WhatsApp Web may take to confirm a logout before the profile is wiped anyway.
LOGOUT_TIMEOUT_SECONDS = 5.0
#: How long the browser may take to close before its processes are killed.
CLOSE_TIMEOUT_SECONDS = 4.0
#: How many of a chat's latest messages `was_sent` looks through.
RECENT_MESSAGES = 50


# --- messages: from the page's plain data to InboundMessage ------------------------------------

_PHONE_WID = re.compile(r"^(\d{5,20})@(?:c\.us|s\.whatsapp\.net)$")


def chat_number(wid: str) -> str:
    """A one-to-one chat id as wactl shows it: "34600123456@c.us" -> "+34600123456";
    other ids (groups "...@g.us", hidden numbers "...@lid") unchanged."""
    match = _PHONE_WID.match(wid)
    return f"+{match[1]}" if match else wid


def chat_wid(chat: str) -> str:
    """The WhatsApp id to send to for a chat as wactl stores it (`chat_number`'s inverse)."""
    if re.fullmatch(r"\+\d{5,20}", chat):
        return f"{chat[1:]}@c.us"
    if "@" in chat:
        return chat
    raise EngineError(
        f"cannot send to {chat!r}: not a WhatsApp number (+E164) or chat id",
        hint="numbers are written +<country code><number>",
    )


@dataclass(frozen=True)
class Skipped:
    """A ``chat.new_message`` the bot does not handle, and why."""

    reason: str


def read_message(
    data: Any,
    *,
    own_number: str,
    answer_groups: bool,
    own_ids: Container[str] = (),
) -> InboundMessage | Skipped:
    """The message the page reported, or why the bot leaves it alone."""
    if not isinstance(data, Mapping):
        return Skipped("not a message object")
    message_id, chat = data.get("id"), data.get("chat")
    if not isinstance(message_id, str) or not message_id:
        return Skipped("no message id")
    if not isinstance(chat, str) or not chat:
        return Skipped("no chat id")
    if chat == "status@broadcast" or data.get("isStatus"):
        return Skipped("status update")
    if data.get("broadcast") or chat.endswith("@broadcast"):
        return Skipped("broadcast list")
    if chat.endswith("@newsletter"):
        return Skipped("channel")
    if data.get("isNotification"):
        return Skipped("notification")
    kind = data.get("type")
    if kind != "chat":
        return Skipped(f"not a text message ({kind})")
    body = data.get("body")
    if not isinstance(body, str) or not body.strip():
        return Skipped("empty text")
    if data.get("isNewMsg") is False:
        return Skipped("history, not a new message")
    from_me = bool(data.get("fromMe"))
    if from_me and (data.get("byBot") or message_id in own_ids):
        return Skipped("sent by this bot")
    group = bool(data.get("isGroupMsg")) or chat.endswith("@g.us")
    if group and not answer_groups:
        return Skipped("group message (browser.answer_groups is off)")
    if len(chat) > 64 or len(message_id) > 128:
        return Skipped("id longer than the message log holds")
    customer = chat_number(chat)
    own_number = own_number or "me"  # not known yet: WhatsApp Web has not said
    if from_me:
        sender, recipient = own_number, customer
    else:
        author = data.get("author") if group else data.get("from")
        sender = chat_number(author) if isinstance(author, str) and author else customer
        recipient = own_number
    stamp = data.get("t")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool) and stamp > 0:
        timestamp = dt.datetime.fromtimestamp(stamp, dt.UTC)
    else:
        timestamp = dt.datetime.now(dt.UTC)
    return InboundMessage(
        wa_message_id=message_id,
        chat=customer,
        from_number=sender,
        to_number=recipient,
        text=body,
        timestamp=timestamp,
        from_me=from_me,
    )


# --- the journal of sends ------------------------------------------------------------------


@dataclass
class JournalEntry:
    client_id: str
    chat: str
    text_sha256: str
    #: When the send started (Unix time).
    started: float
    #: WhatsApp's id of the sent message, once sendTextMessage returned it.
    wa_id: str | None = None


class SentJournal:
    """Which replies were handed to WhatsApp Web: JSON lines in ``<slug>.sent.jsonl``
    beside the profile (not inside it, so that a logout's wipe does not forget them).

    A line is written and flushed (to the kernel: it survives ``kill -9`` of the worker)
    *before* each send, and another with WhatsApp's message id after it. So, for a reply
    the pipeline left pending after a crash, `WhatsAppWebEngine.was_sent` knows:

    - no line: the send never started -> False (send it);
    - a line with WhatsApp's id: it was sent -> True;
    - a line without one (the crash hit during the send): the chat's latest messages
      decide: a message from this account with the same text, no older than the line
      -> True, none -> False. When the chat cannot be read (not linked yet, another
      account now) -> None: the pipeline does not send it again (at most once).

    What this cannot tell apart: the business typing exactly the bot's text in that chat
    on its phone while the crashed send was under way (then the reply counts as sent).
    Lines older than `RETENTION_SECONDS` are dropped when the journal is loaded.
    """

    RETENTION_SECONDS = 30 * 24 * 3600

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, JournalEntry] = {}
        self.wa_ids: set[str] = set()
        self._handle: IO[str] | None = None

    def load(self) -> None:
        entries: dict[str, JournalEntry] = {}
        lines = 0
        try:
            with self.path.open(encoding="utf-8") as handle:
                for line in handle:
                    lines += 1
                    self._apply(entries, line)
        except FileNotFoundError:
            pass
        cutoff = time.time() - self.RETENTION_SECONDS
        self.entries = {k: e for k, e in entries.items() if e.started >= cutoff}
        self.wa_ids = {e.wa_id for e in self.entries.values() if e.wa_id}
        if lines > 2 * len(self.entries) + 100:
            self._rewrite()

    @staticmethod
    def _apply(entries: dict[str, JournalEntry], line: str) -> None:
        try:
            record = json.loads(line)
            client_id = record["id"]
            if "wa" in record:
                if client_id in entries:
                    entries[client_id].wa_id = str(record["wa"])
                return
            entries[client_id] = JournalEntry(
                client_id, str(record["chat"]), str(record["sha"]), float(record["at"])
            )
        except (ValueError, KeyError, TypeError):
            log.warning("skipping an unreadable line of the send journal")

    def _rewrite(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            for entry in self.entries.values():
                handle.write(self._begin_line(entry))
                if entry.wa_id:
                    handle.write(self._done_line(entry.client_id, entry.wa_id))
        tmp.chmod(0o600)
        tmp.replace(self.path)

    @staticmethod
    def _begin_line(entry: JournalEntry) -> str:
        record = {
            "id": entry.client_id,
            "chat": entry.chat,
            "sha": entry.text_sha256,
            "at": entry.started,
        }
        return json.dumps(record) + "\n"

    @staticmethod
    def _done_line(client_id: str, wa_id: str) -> str:
        return json.dumps({"id": client_id, "wa": wa_id}) + "\n"

    def _write(self, line: str) -> None:
        if self._handle is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._handle = os.fdopen(fd, "a", encoding="utf-8")
        self._handle.write(line)
        self._handle.flush()

    def begin(self, client_id: str, chat: str, text: str) -> JournalEntry:
        entry = JournalEntry(client_id, chat, text_digest(text), time.time())
        self._write(self._begin_line(entry))
        self.entries[client_id] = entry
        return entry

    def done(self, client_id: str, wa_id: str) -> None:
        self._write(self._done_line(client_id, wa_id))
        self.wa_ids.add(wa_id)
        entry = self.entries.get(client_id)
        if entry is not None:
            entry.wa_id = wa_id

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _bundle_script(config: Config, pin: Pin) -> Path:
    """The wa-js bundle to inject: ``browser.wa_js_path`` when set (a stand-in for
    tests), else the pinned bundle `wactl engine install` keeps in the data directory."""
    configured = config.browser.wa_js_path
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"browser.wa_js_path {path} is not a file",
                hint="empty it to use the pinned bundle (`wactl engine install`)",
            )
        return path
    from wactl.wajs import ensure_installed

    # Installs the pinned bundle on first use (a download of ~270 kB), verified.
    return ensure_installed(config, pin).path


# --- the engine --------------------------------------------------------------------------


class WhatsAppWebEngine(Engine):
    name: ClassVar[str] = EngineName.WHATSAPP_WEB.value

    def __init__(
        self,
        tenant_slug: str,
        config: Config,
        events: EngineEvents,
        *,
        flags: Sequence[str] = chromium.CHROMIUM_FLAGS,
        prepare_context: Callable[[BrowserContext], Awaitable[None]] | None = None,
        wa_js: Pin | None = None,
    ) -> None:
        """``flags`` replaces `chromium.CHROMIUM_FLAGS` (bench/browser.py measures each);
        ``prepare_context`` runs on each new browser context before the page opens (tests
        use it to serve a stand-in for https://web.whatsapp.com/ with ``context.route``)."""
        super().__init__(tenant_slug, events)
        self.config = config
        self.settings = config.browser
        self.flags = tuple(flags)
        self.prepare_context = prepare_context
        self.wa_js = wa_js or wajs.PINNED
        self.profile = chromium.profile_dir(config, tenant_slug)
        self.lock = chromium.ProfileLock(self.profile)
        self.journal = SentJournal(self.profile.with_name(f"{tenant_slug}.sent.jsonl"))
        self.executable: Path | None = None
        #: The User-Agent the browser sends (`chromium.user_agent`): not HeadlessChrome.
        self.user_agent = ""
        #: The tenant's own number ("+E164"), once WhatsApp Web says who is linked.
        self.own_number = ""
        #: The wa-js version the page reported.
        self.wa_js_version: str | None = None
        self._playwright: Playwright | None = None
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        #: Bumped on each launch and close: events from an older page are dropped.
        self._generation = 0
        self._closing = False
        self._failure: asyncio.Future[None] | None = None
        self._events_queue: asyncio.Queue[tuple[int, str, Any]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self._lifecycle = asyncio.Lock()
        # The link as the page reported it.
        self._linked = False
        self._authenticated_at: float | None = None
        self._last_qr: str | None = None
        self._wpp_ready = False
        self._loading_since = time.monotonic()

    @property
    def is_linked(self) -> bool:
        return self._linked

    @property
    def page(self) -> Page | None:
        return self._page

    # --- life cycle -----------------------------------------------------------------

    async def start(self) -> None:
        bundle = await asyncio.to_thread(_bundle_script, self.config, self.wa_js)  # may download
        self._failure = asyncio.get_running_loop().create_future()
        self.lock.acquire()
        try:
            chromium.reap_leftovers(self.profile)
            self.journal.load()
            if self.settings.executable_path:  # checked before the driver costs anything
                self.executable = chromium.resolve_executable(self.config)
            self._playwright = await _start_playwright()
            self.executable = chromium.resolve_executable(
                self.config, playwright_default=self._playwright.chromium.executable_path
            )
            self.user_agent = await asyncio.to_thread(
                chromium.user_agent, self.config, self.executable
            )
            log.info("browser %s, profile %s, wa-js %s", self.executable, self.profile, bundle)
            self._tasks = [
                asyncio.create_task(self._dispatch(), name="whatsapp-web-events"),
                asyncio.create_task(self._watchdog(), name="whatsapp-web-watchdog"),
            ]
            await self._launch(bundle)
        except BaseException:
            await self.stop()
            raise

    async def watch(self) -> None:
        assert self._failure is not None, "start() first"
        await self._failure

    async def stop(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self._close_browser()
        if self._playwright is not None:
            playwright, self._playwright = self._playwright, None
            with contextlib.suppress(Exception):
                await asyncio.wait_for(playwright.stop(), CLOSE_TIMEOUT_SECONDS)
        self.journal.close()
        self.lock.release()

    async def logout(self) -> None:
        """Log out on WhatsApp (when linked), close the browser, wipe the profile and
        report `on_logged_out`; a fresh page (showing a new QR) opens in the background,
        so that the caller is answered within the daemon's request timeout."""
        async with self._lifecycle:
            was_linked = self._linked or self._authenticated_at is not None
            # From here the page's own "logout" event is ours; it must not be reported.
            self._reset_link()
            page = self._page
            if was_linked and page is not None:
                try:
                    await asyncio.wait_for(
                        page.evaluate("() => window.__wactl.logout()"), LOGOUT_TIMEOUT_SECONDS
                    )
                except Exception as exc:
                    log.warning(
                        "WhatsApp Web did not confirm the logout (%s); wiping the profile anyway",
                        _short(exc),
                    )
            await self._close_browser()
            chromium.wipe_profile(self.profile)
            await self._report("logged_out", self.events.on_logged_out())
        self._tasks.append(asyncio.create_task(self._reopen(), name="whatsapp-web-reopen"))

    async def _reopen(self) -> None:
        async with self._lifecycle:
            try:
                await self._launch(_bundle_script(self.config, self.wa_js))
            except Exception as exc:
                # No browser now: the worker must start again, as after a crash.
                self._fail(f"cannot open WhatsApp Web again after the logout: {_short(exc)}")

    # --- browser ------------------------------------------------------------------------

    async def _launch(self, bundle: Path) -> None:
        assert self._playwright is not None and self.executable is not None
        from playwright.async_api import Error as PlaywrightError

        self._generation += 1
        generation = self._generation
        self._wpp_ready = False
        self._loading_since = time.monotonic()
        self.profile.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.profile.mkdir(mode=0o700, exist_ok=True)
        try:
            context = await self._playwright.chromium.launch_persistent_context(
                self.profile,
                executable_path=self.executable,
                headless=True,
                # A switch, not Playwright's user_agent option: the switch covers every
                # request and worker of the browser, the option only the pages.
                args=[*self.flags, f"--user-agent={self.user_agent}"],
                # The driver closes the browser on SIGTERM/SIGHUP to the worker's group;
                # SIGINT is the worker's to handle.
                handle_sigint=False,
                viewport={"width": 1024, "height": 768},
                timeout=self.settings.ready_timeout_seconds * 1000,
            )
        except PlaywrightError as exc:
            raise EngineError(
                f"cannot start the browser {self.executable}: {_short(exc)}",
                hint="check it runs (`wactl doctor`), or set browser.executable_path",
            ) from exc
        self._context = context
        context.on("close", lambda _: self._closed(generation, "the browser closed or crashed"))
        try:
            await context.expose_binding(
                BINDING, lambda _source, name, data: self._received(generation, name, data)
            )
            await context.add_init_script(path=bundle)
            await context.add_init_script(path=BRIDGE_SCRIPT)
            if self.prepare_context is not None:
                await self.prepare_context(context)
            page = context.pages[0] if context.pages else await context.new_page()
            self._page = page
            page.on("crash", lambda _: self._fail_from(generation, "the WhatsApp Web page crashed"))
            page.on("close", lambda _: self._closed(generation, "the WhatsApp Web page closed"))
            await page.goto(
                self.settings.url,
                wait_until="commit",
                timeout=self.settings.ready_timeout_seconds * 1000,
            )
        except PlaywrightError as exc:
            raise EngineError(
                f"cannot open {self.settings.url}: {_short(exc)}",
                hint="check the network (WhatsApp Web must be reachable)",
            ) from exc
        log.info("opened %s (browser pid tree under %s)", self.settings.url, self.profile)

    async def _close_browser(self) -> None:
        """Close the browser (profile flushed), then kill whatever of it is left."""
        context, self._context, self._page = self._context, None, None
        self._generation += 1  # what the closing page still reports is dropped
        if context is not None:
            try:
                await asyncio.wait_for(context.close(), CLOSE_TIMEOUT_SECONDS)
            except Exception as exc:
                log.warning("the browser did not close cleanly: %s", _short(exc))
        if not self.lock.held:
            return  # the profile is another worker's: its processes are not ours to kill
        stragglers = chromium.profile_processes(self.profile)
        if stragglers:
            await asyncio.to_thread(_wait_gone, stragglers, 2.0)
            chromium.reap_leftovers(self.profile)

    def _closed(self, generation: int, reason: str) -> None:
        self._fail_from(generation, reason)

    def _fail_from(self, generation: int, reason: str) -> None:
        if generation == self._generation and not self._closing:
            self._fail(reason)

    def _fail(self, reason: str) -> None:
        if self._closing or self._failure is None or self._failure.done():
            return
        log.error("whatsapp-web: %s", reason)
        self._failure.set_exception(
            EngineError(reason, hint="the daemon restarts the worker with a fresh browser")
        )

    # --- what the page reports ------------------------------------------------------

    def _received(self, generation: int, name: Any, data: Any) -> None:
        """The binding (Playwright calls it on the event loop): queue, never block."""
        self._events_queue.put_nowait((generation, str(name), data))

    async def _dispatch(self) -> None:
        while True:
            generation, name, data = await self._events_queue.get()
            if generation != self._generation:
                continue
            try:
                await self.handle_page_event(name, data)
            except Exception:
                log.exception("handling the page event %s failed", name)

    async def handle_page_event(self, name: str, data: Any) -> None:
        """One event of the bridge (or of the watchdog, which repeats what it finds)."""
        if name == "auth_code":
            await self._auth_code(data)
        elif name == "authenticated":
            if not self._linked and self._authenticated_at is None:
                log.info("the phone scanned the QR; waiting for WhatsApp Web to be ready")
                self._authenticated_at = time.monotonic()
        elif name == "main_ready":
            if not self._linked:
                await self._refresh_identity()
                self._linked = True
                self._authenticated_at = None
                self._last_qr = None
                await self._report("ready", self.events.on_ready())
        elif name == "logout":
            if self._linked or self._authenticated_at is not None:
                self._reset_link()
                await self._report("logged_out", self.events.on_logged_out())
        elif name == "require_auth":
            if self._linked:
                self._reset_link()
                reason = "WhatsApp Web asks to link the phone again"
                await self._report("disconnected", self.events.on_disconnected(reason))
        elif name == "message":
            await self._message(data)
        elif name == "error":
            log.warning("the page reports: %s", data)
        else:
            log.debug("ignoring the page event %r", name)

    async def _auth_code(self, code: Any) -> None:
        if not isinstance(code, str) or not code:
            return  # no code: linked, or WhatsApp Web is between codes
        if self._linked:
            # A QR while linked: the link is gone without a logout event reaching us.
            self._reset_link()
            await self._report("logged_out", self.events.on_logged_out())
        self._authenticated_at = None
        if code != self._last_qr:
            self._last_qr = code
            await self._report("qr", self.events.on_qr(code))

    async def _message(self, data: Any) -> None:
        result = read_message(
            data,
            own_number=self.own_number,
            answer_groups=self.settings.answer_groups,
            own_ids=self.journal.wa_ids,
        )
        if isinstance(result, Skipped):
            message_id = data.get("id") if isinstance(data, Mapping) else None
            log.debug("message %s skipped: %s", message_id, result.reason)
            return
        await self._report("message", self.events.on_message(result))

    async def _refresh_identity(self) -> None:
        """Learn the linked account's number (the "to" of inbound messages)."""
        page = self._page
        if page is None:
            return
        try:
            state = await asyncio.wait_for(
                page.evaluate("() => window.__wactl.state()"), self.settings.probe_timeout_seconds
            )
        except Exception as exc:
            log.warning("cannot read the linked account's number: %s", _short(exc))
            return
        me = state.get("me") if isinstance(state, dict) else None
        if isinstance(me, str) and me:
            self.own_number = chat_number(me)
            log.info("linked to %s", self.own_number)

    def _reset_link(self) -> None:
        self._linked = False
        self._authenticated_at = None
        self._last_qr = None

    @staticmethod
    async def _report(event: str, callback: Awaitable[None]) -> None:
        """Await an events callback; an exception in it is logged, not raised (see base)."""
        try:
            await callback
        except Exception:
            log.exception("the %s callback failed", event)

    # --- the watchdog: loading, readiness, liveness ------------------------------------

    async def _watchdog(self) -> None:
        settings = self.settings
        failing_since: float | None = None
        while True:
            interval = settings.probe_interval_seconds if self._wpp_ready else LOADING_POLL_SECONDS
            await asyncio.sleep(min(interval, settings.probe_interval_seconds))
            if self._lifecycle.locked() or self._page is None:
                continue  # a logout is replacing the browser
            page, generation = self._page, self._generation
            try:
                state = await asyncio.wait_for(
                    page.evaluate("() => window.__wactl ? window.__wactl.state() : null"),
                    settings.probe_timeout_seconds,
                )
            except TimeoutError:
                if generation == self._generation:
                    self._fail(
                        "the WhatsApp Web page stopped answering (no answer to a wa-js "
                        f"call within {settings.probe_timeout_seconds:g} s)"
                    )
                continue
            except Exception as exc:
                # A navigation in progress destroys the page's context for a moment.
                now = time.monotonic()
                failing_since = failing_since or now
                log.debug("probe failed: %s", _short(exc))
                if now - failing_since > settings.probe_timeout_seconds:
                    self._fail(f"the WhatsApp Web page cannot be reached: {_short(exc)}")
                continue
            failing_since = None
            if generation == self._generation:
                await self._reconcile(page, state)

    async def _reconcile(self, page: Page, state: Any) -> None:
        """Act on a probe's answer: deadlines, and events the page may not have sent."""
        now = time.monotonic()
        timeout = self.settings.ready_timeout_seconds
        if not isinstance(state, dict) or not state.get("ready"):
            if self._wpp_ready:
                log.info("WhatsApp Web is reloading")
                self._wpp_ready = False
                self._loading_since = now
            elif now - self._loading_since > timeout:
                detail = "the page has no wactl bridge" if state is None else "wa-js not ready"
                self._fail(f"WhatsApp Web did not load within {timeout:g} s ({detail})")
            return
        if not self._wpp_ready:
            self._wpp_ready = True
            self.wa_js_version = state.get("version")
            log.info("wa-js %s ready", self.wa_js_version)
        me = state.get("me")
        if isinstance(me, str) and me:
            self.own_number = chat_number(me)
        generation = self._generation
        if state.get("authenticated"):
            if state.get("mainReady"):
                self._events_queue.put_nowait((generation, "main_ready", None))
            elif self._authenticated_at is None and not self._linked:
                self._events_queue.put_nowait((generation, "authenticated", None))
            elif self._authenticated_at is not None and now - self._authenticated_at > timeout:
                self._fail(f"linked, but WhatsApp Web did not become ready within {timeout:g} s")
        else:
            if self._linked:
                self._events_queue.put_nowait((generation, "logout", None))
            if self._last_qr is None:
                with contextlib.suppress(Exception):
                    code = await asyncio.wait_for(
                        page.evaluate("() => window.__wactl.authCode()"),
                        self.settings.probe_timeout_seconds,
                    )
                    self._events_queue.put_nowait((generation, "auth_code", code))

    # --- sending -----------------------------------------------------------------------

    async def send_text(self, to: str, text: str, *, client_id: str) -> str:
        page = self._page
        if not self._linked or page is None:
            raise EngineError(f"cannot send to {to}: WhatsApp Web is not linked and ready")
        wid = chat_wid(to)
        entry = self.journal.entries.get(client_id)
        if entry is not None and entry.wa_id:
            return entry.wa_id  # WhatsApp has it already; a resend must not double it
        self.journal.begin(client_id, to, text)
        try:
            wa_id = await asyncio.wait_for(
                page.evaluate("([chat, text]) => window.__wactl.send(chat, text)", [wid, text]),
                SEND_TIMEOUT_SECONDS,
            )
        except TimeoutError:
            raise EngineError(
                f"WhatsApp Web did not confirm the message to {to} within "
                f"{SEND_TIMEOUT_SECONDS:g} s"
            ) from None
        except Exception as exc:
            raise EngineError(f"WhatsApp Web refused the message to {to}: {_short(exc)}") from exc
        if not isinstance(wa_id, str) or not wa_id:
            raise EngineError(f"WhatsApp Web returned no message id for the message to {to}")
        self.journal.done(client_id, wa_id)
        return wa_id

    async def was_sent(self, client_id: str) -> bool | None:
        entry = self.journal.entries.get(client_id)
        if entry is None:
            return False
        if entry.wa_id:
            return True
        page = self._page
        if page is None or not self._linked:
            return None
        try:
            recent = await asyncio.wait_for(
                page.evaluate(
                    "([chat, count]) => window.__wactl.recent(chat, count)",
                    [chat_wid(entry.chat), RECENT_MESSAGES],
                ),
                self.settings.probe_timeout_seconds,
            )
        except Exception as exc:
            log.warning("cannot read chat %s to check reply %s: %s", entry.chat, client_id, exc)
            return None
        for message in recent if isinstance(recent, list) else []:
            if not isinstance(message, dict) or not message.get("fromMe"):
                continue
            body, stamp = message.get("body"), message.get("t")
            if not isinstance(body, str) or text_digest(body) != entry.text_sha256:
                continue
            # WhatsApp's clock is the phone's second; allow for skew against ours.
            if isinstance(stamp, int | float) and stamp < entry.started - 120:
                continue
            wa_id = message.get("id")
            if isinstance(wa_id, str) and wa_id:
                self.journal.done(client_id, wa_id)
            return True
        return False


#: Per event loop, held while the environment carries the driver's NODE_OPTIONS (engines
#: in one process, as in the tests and the bench, must not interleave there).
_DRIVER_ENV_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


async def _start_playwright() -> Playwright:
    """Start Playwright's driver (a Node.js process) with a smaller young generation.

    Playwright passes this process's environment to the driver and has no parameter for
    it, so NODE_OPTIONS is set around the start.
    """
    lock = _DRIVER_ENV_LOCKS.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        return await _start_playwright_with(chromium.DRIVER_NODE_OPTIONS)


async def _start_playwright_with(node_options: str) -> Playwright:
    from playwright.async_api import Error as PlaywrightError
    from playwright.async_api import async_playwright

    previous = os.environ.get("NODE_OPTIONS")
    os.environ["NODE_OPTIONS"] = f"{previous or ''} {node_options}".strip()
    try:
        return await async_playwright().start()
    except (PlaywrightError, OSError) as exc:
        raise EngineError(
            f"cannot start Playwright's driver: {_short(exc)}",
            hint="reinstall wactl (the playwright package is incomplete)",
        ) from exc
    finally:
        if previous is None:
            os.environ.pop("NODE_OPTIONS", None)
        else:
            os.environ["NODE_OPTIONS"] = previous


def _wait_gone(processes: list[Any], timeout: float) -> None:
    import psutil

    psutil.wait_procs(processes, timeout=timeout)


def _short(error: BaseException) -> str:
    """Playwright's messages carry call logs on further lines; keep the first."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= 300 else text[:299] + "…"
