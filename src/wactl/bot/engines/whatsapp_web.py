"""The whatsapp-web engine: a real phone linked through WhatsApp Web (DESIGN.md section 4).

Playwright (async) drives a headless Chromium on one persistent profile per tenant
(`wactl.bot.engines.chromium`: binary, flags, lock, leftovers). Into every document of
the page go three scripts, in this order: ``window.WPPConfig`` (`wpp_config_script`:
wa-js reads it once, when it loads), the wa-js bundle (``window.WPP``, the tenant's
integrity-checked version from `wactl.wajs`, or a stand-in named by
``browser.wa_js_path``) and wactl's bridge (``whatsapp_web.js``), which hooks the wa-js
events listed in `wactl.wajs_api` and reports them through the ``__wactlEmit`` binding.
The browser says it is desktop Chrome (``browser.user_agent``, default
`chromium.user_agent`): WhatsApp Web answers "HeadlessChrome" with an "update your
browser" page instead of a QR.

wa-js's defaults that reach third parties are off (`wactl.wajs_api.WPP_CONFIG`): no
Google Analytics, no link-preview servers; every send says which options it wants
(`wactl.wajs_api.SEND_OPTIONS`: no link preview, no read mark). The linked device is
named after the tenant (``browser.device_name``), so the owner recognises it under
Linked devices on the phone.

The link (wa-js 4.6.0, src/ paths): linked and ready means authenticated *and* the
stream in mode MAIN (``conn.isAuthenticated``, ``conn.getStreamData``,
``conn.stream_mode_changed``). Not ``conn.main_ready``: it fires on the QR screen too,
once per page, and ``conn.isMainReady`` never turns false again
(conn/events/registerMainReadyEvent.ts). So:

- not authenticated -> each ``conn.auth_code_change`` code is a QR (`on_qr`);
  ``conn.qrcode_idle`` (WhatsApp Web stopped rotating it) -> ``conn.refreshQR``;
- authenticated, mode SYNCING (after a scan, or at a restart of a linked profile) ->
  nothing yet; MAIN must follow within ``browser.ready_timeout_seconds``;
- authenticated and MAIN -> `on_ready`; leaving MAIN while authenticated (OFFLINE,
  CONFLICT, SYNCING again) -> `on_disconnected`, and MAIN must come back within
  ``browser.ready_timeout_seconds``;
- ``conn.logout`` (unlinked from the phone; WhatsApp Web then reloads the page) ->
  `on_logged_out`; ``conn.require_auth`` while linked -> `on_disconnected`; a new QR
  follows either way;
- the modes in which the account cannot work (banned, blocked, a version WhatsApp no
  longer accepts: `wactl.wajs_api.MODES_BLOCKED`) end the worker with the reason.

Messages: ``chat.new_message`` -> `on_message` for text in one-to-one chats (groups only
with ``browser.answer_groups``). Skipped: the bot's own replies (recognised by their
message id, never by chat id), status updates, broadcasts, channels, notifications and
other system messages, media, and a ``ciphertext`` message until it is decrypted (wa-js
fires the event again then). A message the business typed on its phone arrives with
``from_me``: the owner-takeover signal. Since WhatsApp's move to LIDs most one-to-one
chats are ``NNN@lid``; a customer is one identity, their phone number (+E164), whenever
WhatsApp Web knows it (``contact.getPnLidEntry``), and the LID chat id only when it does
not (the log says so, once per customer and worker). Messages that arrive while WhatsApp
Web syncs are held until it is ready. Once ready, the engine also reports the unread
messages of every chat (``chat.list``, ``chat.getMessages``): WhatsApp Web stores a
message and acknowledges it to the server before the worker has recorded it, so a crash
in between would otherwise lose it (the pipeline drops the ones it has).

Replies: `reserve_id` asks the page for the reply's id (``chat.find`` resolves the
number to the chat WhatsApp Web keeps for it, ``chat.generateMessageID`` makes the id
for that chat); the pipeline stores it durably before `send_text` passes it to
``chat.sendTextMessage`` as ``messageId``. After a crash, `was_sent` looks the stored id
up (``chat.getMessageById``): found and at the server (ack SENT or more) -> True; not
found, or failed -> False (the pipeline sends again, under a new id); still on the
device (ack CLOCK) or the page cannot tell -> None (asked again later). So this engine
gives the sandbox's guarantee: every inbound message exactly one reply. Read receipts are
separate (`mark_read`, when the bot starts answering, if ``pipeline.read_receipts``).

What makes the worker exit with an error, so that the daemon starts a fresh one with
backoff (`watch`): the page crashed, the page or the browser closed, wa-js did not load
or the linked session did not become ready within ``browser.ready_timeout_seconds``, a
blocked account, or the page did not answer a probe (`__wactl.state()`, which reads
``WPP.conn``) within ``browser.probe_timeout_seconds``; probes run every
``browser.probe_interval_seconds``.

This module must not touch the database or the daemon; the worker records what it
reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import re
import time
import unicodedata
import weakref
from collections.abc import Awaitable, Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from wactl import wajs, wajs_api
from wactl.bot.engines import chromium
from wactl.bot.engines.base import Engine, EngineError, EngineEvents, InboundMessage
from wactl.config.model import Config
from wactl.enums import EngineName
from wactl.errors import ConfigError
from wactl.futures import mark_retrieved
from wactl.wajs import Pin

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page, Playwright

log = logging.getLogger(__name__)

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
#: How many of the bot's own message ids are remembered to tell them from the owner's.
OWN_IDS = 5000
#: The longest device name passed to WhatsApp (the phone's list shows one short line).
DEVICE_NAME_MAX = 64
#: Catching up once ready: at most this many chats with unread messages, and this many
#: of each one's unread messages.
CATCH_UP_CHATS = 200
CATCH_UP_MESSAGES = 50
#: Messages held while WhatsApp Web syncs (reported once it is ready).
EARLY_MESSAGES = 10_000


# --- ids: chats, customers, messages -------------------------------------------------------

_PHONE_WID = re.compile(r"^(\d{5,20})@(?:c\.us|s\.whatsapp\.net)$")
#: A message id as wa-js writes MsgKey: "<fromMe>_<chat>_<id>[_<participant>]".
_MESSAGE_KEY = re.compile(r"^(true|false)_([0-9-]+@[a-z.]+)_([0-9A-Za-z]+)(?:_.+)?$")


def chat_number(wid: str) -> str:
    """A one-to-one chat id as wactl shows it: "34600123456@c.us" -> "+34600123456";
    other ids (groups "...@g.us", customers known only by their LID "...@lid") unchanged."""
    match = _PHONE_WID.match(wid)
    return f"+{match[1]}" if match else wid


def customer_id(chat: str, phone: Any) -> str:
    """The one identity wactl keeps for a chat: the phone number (+E164) when WhatsApp
    Web knows it (the chat is a number, or a LID it maps to one), else the chat id."""
    if isinstance(phone, str) and _PHONE_WID.match(phone):
        return chat_number(phone)
    return chat_number(chat)


def chat_wid(chat: str) -> str:
    """The WhatsApp id to send to for a chat as wactl stores it (`customer_id`'s inverse;
    WhatsApp Web resolves a number to the customer's @lid chat when it has one)."""
    if re.fullmatch(r"\+\d{5,20}", chat):
        return f"{chat[1:]}@c.us"
    if re.fullmatch(r"[0-9-]+@(?:c\.us|lid|g\.us)", chat):
        return chat
    raise EngineError(
        f"cannot send to {chat!r}: not a WhatsApp number (+E164) or chat id",
        hint="numbers are written +<country code><number>",
    )


def message_chat(message_id: str) -> str | None:
    """The chat a message id belongs to ("true_123@lid_3EB0..." -> "123@lid"), or None
    when it is not a WhatsApp message id."""
    match = _MESSAGE_KEY.match(message_id)
    return match[2] if match else None


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
    from_me = bool(data.get("fromMe"))
    # The bot's own reply, by its id: its chat.new_message names the chat WhatsApp Web
    # resolved the number to (a @lid one), not the number it was sent to.
    if from_me and (data.get("byBot") or message_id in own_ids):
        return Skipped("sent by this bot")
    if chat == "status@broadcast" or data.get("isStatus"):
        return Skipped("status update")
    if data.get("broadcast") or chat.endswith("@broadcast"):
        return Skipped("broadcast list")
    if chat.endswith("@newsletter"):
        return Skipped("channel")
    if data.get("isNotification"):
        return Skipped("notification")
    kind = data.get("type")
    if kind == "ciphertext":
        return Skipped("not decrypted yet (wa-js reports it again once it is)")
    if kind != "chat":
        return Skipped(f"not a text message ({kind})")
    body = data.get("body")
    if not isinstance(body, str) or not body.strip():
        return Skipped("empty text")
    if data.get("isNewMsg") is False:
        return Skipped("history, not a new message")
    group = bool(data.get("isGroupMsg")) or chat.endswith("@g.us")
    if group and not answer_groups:
        return Skipped("group message (browser.answer_groups is off)")
    if len(chat) > 64 or len(message_id) > 128:
        return Skipped("id longer than the message log holds")
    customer = customer_id(chat, data.get("chatPn"))
    own_number = own_number or "me"  # not known yet: WhatsApp Web has not said
    if from_me:
        sender, recipient = own_number, customer
    else:
        author = data.get("author") if group else None
        if isinstance(author, str) and author:
            sender = customer_id(author, data.get("authorPn"))
        else:
            sender = customer
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


# --- what goes into the page before wa-js ---------------------------------------------------


def device_name(template: str, *, name: str, slug: str) -> str:
    """The name the linked device shows on the owner's phone: ``browser.device_name``
    with {name} (the tenant's business name) and {slug} filled in, as one line of
    printable text of at most `DEVICE_NAME_MAX` characters; "" for wa-js's default."""
    text = template.replace("{name}", name).replace("{slug}", slug)
    printable = "".join(
        " " if unicodedata.category(ch)[0] in "CZ" else ch
        for ch in unicodedata.normalize("NFC", text)
    )
    line = " ".join(printable.split())
    return line[:DEVICE_NAME_MAX].rstrip()


def wpp_config_script(device: str) -> str:
    """``window.WPPConfig`` as wa-js must find it when it loads (config/index.ts)."""
    config = {**wajs_api.WPP_CONFIG, "deviceName": device or False}
    return f"window.WPPConfig = {json.dumps(config)};\n"


def _bundle_script(config: Config, pin: Pin) -> Path:
    """The wa-js bundle to inject: ``browser.wa_js_path`` when set (a stand-in for
    tests), else the tenant's version, installed and verified in the data directory."""
    configured = config.browser.wa_js_path
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"browser.wa_js_path {path} is not a file",
                hint="empty it to use the pinned bundle (`wactl engine install`)",
            )
        return path
    # Installs the bundle on first use (a download of ~270 kB), verified.
    return wajs.ensure_installed(config, pin).path


# --- the engine --------------------------------------------------------------------------


class WhatsAppWebEngine(Engine):
    name: ClassVar[str] = EngineName.WHATSAPP_WEB.value

    def __init__(
        self,
        tenant_slug: str,
        config: Config,
        events: EngineEvents,
        *,
        tenant_name: str = "",
        wa_js: Pin | None = None,
        flags: Sequence[str] = chromium.CHROMIUM_FLAGS,
        prepare_context: Callable[[BrowserContext], Awaitable[None]] | None = None,
    ) -> None:
        """``tenant_name`` names the linked device (``browser.device_name``); ``wa_js``
        is the wa-js version to inject (default: the one pinned in wactl); ``flags``
        replaces `chromium.CHROMIUM_FLAGS` (bench/browser.py measures each);
        ``prepare_context`` runs on each new browser context before the page opens (tests
        use it to serve a stand-in for https://web.whatsapp.com/ with ``context.route``)."""
        super().__init__(tenant_slug, events)
        self.config = config
        self.settings = config.browser
        #: The wa-js the page gets (the tenant's version; the pinned one by default).
        self.wa_js = wa_js or wajs.PINNED
        self.device_name = device_name(
            config.browser.device_name, name=tenant_name or tenant_slug, slug=tenant_slug
        )
        self.flags = tuple(flags)
        self.prepare_context = prepare_context
        self.profile = chromium.profile_dir(config, tenant_slug)
        self.lock = chromium.ProfileLock(self.profile)
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
        # What the page says of the link (None: not heard since it loaded).
        self._authenticated: bool | None = None
        self._mode: str | None = None
        # What this engine reported: ready (linked), or linked and waiting for MAIN since.
        self._linked = False
        self._waiting_since: float | None = None
        self._last_qr: str | None = None
        self._wpp_ready = False
        self._loading_since = time.monotonic()
        #: The ids of the replies this engine prepared or sent (their chat.new_message
        #: events are not the owner typing).
        self._own_ids: dict[str, None] = {}
        #: Customers logged as known only by their LID (once per worker).
        self._lid_only: set[str] = set()
        #: Messages that arrived before the link was ready, in order.
        self._early: list[Any] = []

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
        # A failure during start, or after the worker stopped watching, has been
        # logged by `_fail` and must not be reported again as never retrieved.
        self._failure.add_done_callback(mark_retrieved)
        self.lock.acquire()
        try:
            chromium.reap_leftovers(self.profile)
            if self.settings.executable_path:  # checked before the driver costs anything
                self.executable = chromium.resolve_executable(self.config)
            self._playwright = await _start_playwright()
            self.executable = chromium.resolve_executable(
                self.config, playwright_default=self._playwright.chromium.executable_path
            )
            self.user_agent = await asyncio.to_thread(
                chromium.user_agent, self.config, self.executable
            )
            log.info(
                "browser %s, profile %s, wa-js %s, device name %r",
                self.executable,
                self.profile,
                bundle,
                self.device_name,
            )
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
        self.lock.release()

    async def logout(self) -> None:
        """Log out on WhatsApp (when linked), close the browser, wipe the profile and
        report `on_logged_out`; a fresh page (showing a new QR) opens in the background,
        so that the caller is answered within the daemon's request timeout."""
        async with self._lifecycle:
            was_linked = self._linked or bool(self._authenticated)
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
        self._page_reloaded()
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
            # In this order in every document: wa-js reads WPPConfig when it loads.
            await context.add_init_script(script=wpp_config_script(self.device_name))
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
        """One event of the bridge, or ``state`` (what the watchdog's probe found)."""
        if name == "auth_code":
            await self._auth_code(data)
        elif name == "authenticated":
            self._authenticated = True
            await self._decide_link()
        elif name in ("stream_mode", "state"):
            # The bridge's stream_mode carries the authenticated state; so does a probe.
            if isinstance(data, Mapping):
                authenticated, mode = data.get("authenticated"), data.get("mode")
                if isinstance(authenticated, bool):
                    self._authenticated = authenticated
                self._mode = mode if isinstance(mode, str) else None
                await self._decide_link()
        elif name == "logout":
            self._authenticated = False
            if self._linked or self._waiting_since is not None:
                self._reset_link()
                await self._report("logged_out", self.events.on_logged_out())
        elif name == "require_auth":
            self._authenticated = False
            if self._linked:
                self._reset_link()
                reason = "WhatsApp Web asks to link the phone again"
                await self._report("disconnected", self.events.on_disconnected(reason))
        elif name == "message":
            if self._linked:
                await self._message(data)
            elif len(self._early) < EARLY_MESSAGES:
                # Delivered while WhatsApp Web syncs: replies cannot go out yet.
                self._early.append(data)
            else:
                log.warning("dropping a message that arrived before WhatsApp Web was ready")
        elif name == "error":
            log.warning("the page reports: %s", data)
        else:
            log.debug("ignoring the page event %r", name)

    async def _decide_link(self) -> None:
        """Linked and ready, or not, from what the page last said: authenticated and the
        stream in MAIN, nothing less (see the module docstring)."""
        mode = self._mode
        if mode in wajs_api.MODES_BLOCKED:
            self._fail(f"{wajs_api.MODES_BLOCKED[mode]} (WhatsApp Web's stream mode {mode})")
            return
        if self._authenticated and mode == wajs_api.MODE_READY:
            self._waiting_since = None
            if not self._linked:
                await self._refresh_identity()
                self._linked = True
                self._last_qr = None
                await self._report("ready", self.events.on_ready())
                await self._catch_up()
            return
        if self._authenticated is False and (self._linked or self._waiting_since is not None):
            # Unlinked without a logout event reaching us (it fired while the page was
            # between documents).
            self._reset_link()
            await self._report("logged_out", self.events.on_logged_out())
            return
        if not self._authenticated:
            return  # not linked (QRs say so), or not known yet
        if self._linked:
            self._linked = False
            self._waiting_since = time.monotonic()
            reason = f"WhatsApp Web is {_describe_mode(mode)}"
            await self._report("disconnected", self.events.on_disconnected(reason))
        elif self._waiting_since is None:
            self._waiting_since = time.monotonic()
            self._last_qr = None
            log.info("the phone is linked; waiting for WhatsApp Web to sync (%s)", mode)

    async def _catch_up(self) -> None:
        """Once ready: report what may have reached the device but not this worker (the
        unread messages; a crash between WhatsApp Web storing a message and the worker
        recording it leaves one unread), then what arrived while WhatsApp Web synced.
        The pipeline records each message once: the ones it has are duplicates."""
        early, self._early = self._early, []
        page = self._page
        unread: Any = []
        if page is not None:
            try:
                unread = await asyncio.wait_for(
                    page.evaluate(
                        "([chats, count]) => window.__wactl.unread(chats, count)",
                        [CATCH_UP_CHATS, CATCH_UP_MESSAGES],
                    ),
                    self.settings.probe_timeout_seconds,
                )
            except Exception as exc:
                log.warning("cannot read the unread messages: %s", _short(exc))
        for data in [*(unread if isinstance(unread, list) else []), *early]:
            await self._message(data)

    async def _auth_code(self, code: Any) -> None:
        if not isinstance(code, str) or not code:
            return  # no code: linked, or WhatsApp Web is between codes
        # wa-js has a code only while unauthenticated (conn/functions/getAuthCode.ts).
        self._authenticated = False
        if self._linked or self._waiting_since is not None:
            # A QR while linked: the link is gone without a logout event reaching us.
            self._reset_link()
            await self._report("logged_out", self.events.on_logged_out())
        if code != self._last_qr:
            self._last_qr = code
            await self._report("qr", self.events.on_qr(code))

    async def _message(self, data: Any) -> None:
        result = read_message(
            data,
            own_number=self.own_number,
            answer_groups=self.settings.answer_groups,
            own_ids=self._own_ids,
        )
        if isinstance(result, Skipped):
            message_id = data.get("id") if isinstance(data, Mapping) else None
            log.debug("message %s skipped: %s", message_id, result.reason)
            return
        if result.chat.endswith("@lid") and result.chat not in self._lid_only:
            self._lid_only.add(result.chat)
            log.warning(
                "customer %s: WhatsApp Web knows only their LID, not their phone number; "
                "their messages are logged under the LID",
                result.chat,
            )
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
        self._waiting_since = None
        self._last_qr = None
        self._early = []

    def _page_reloaded(self) -> None:
        """A new document: wa-js loads again and says everything anew."""
        self._wpp_ready = False
        self._loading_since = time.monotonic()
        self._authenticated = None
        self._mode = None

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
        """Act on a probe's answer: deadlines, and what the page may not have sent."""
        now = time.monotonic()
        timeout = self.settings.ready_timeout_seconds
        if not isinstance(state, dict) or not state.get("ready"):
            if self._wpp_ready:
                log.info("WhatsApp Web is reloading")
                self._page_reloaded()
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
        # Through the queue, in order with the page's own events.
        self._events_queue.put_nowait((generation, "state", state))
        waiting = self._waiting_since
        if waiting is not None and now - waiting > timeout:
            mode = state.get("mode")
            self._fail(
                f"linked, but WhatsApp Web did not become ready within {timeout:g} s "
                f"(it is {_describe_mode(mode if isinstance(mode, str) else None)})"
            )
        if not state.get("authenticated") and self._last_qr is None:
            with contextlib.suppress(Exception):
                code = await asyncio.wait_for(
                    page.evaluate("() => window.__wactl.authCode()"),
                    self.settings.probe_timeout_seconds,
                )
                self._events_queue.put_nowait((generation, "auth_code", code))

    # --- replies -------------------------------------------------------------------------

    def _linked_page(self, to: str) -> Page:
        page = self._page
        if not self._linked or page is None:
            raise EngineError(f"cannot send to {to}: WhatsApp Web is not linked and ready")
        return page

    def _remember_own(self, message_id: str) -> None:
        self._own_ids[message_id] = None
        while len(self._own_ids) > OWN_IDS:
            del self._own_ids[next(iter(self._own_ids))]

    async def reserve_id(self, to: str, client_id: str) -> str:
        """The reply's WhatsApp id, made by wa-js for the chat WhatsApp Web keeps for
        ``to`` (``chat.find`` resolves a number to its @lid chat, then
        ``chat.generateMessageID``)."""
        page = self._linked_page(to)
        wid = chat_wid(to)
        try:
            message_id = await asyncio.wait_for(
                page.evaluate("(chat) => window.__wactl.prepare(chat)", wid),
                self.settings.probe_timeout_seconds,
            )
        except TimeoutError:
            raise EngineError(
                f"WhatsApp Web did not prepare the message to {to} within "
                f"{self.settings.probe_timeout_seconds:g} s"
            ) from None
        except Exception as exc:
            raise EngineError(
                f"WhatsApp Web cannot prepare a message to {to}: {_short(exc)}"
            ) from exc
        if not isinstance(message_id, str) or not _MESSAGE_KEY.match(message_id):
            raise EngineError(f"WhatsApp Web gave no usable message id for {to}: {message_id!r}")
        self._remember_own(message_id)
        return message_id

    async def send_text(self, to: str, text: str, *, message_id: str) -> str:
        page = self._linked_page(to)
        if message_chat(message_id) is None:
            raise EngineError(
                f"cannot send to {to}: {message_id!r} is not a message id from `reserve_id`"
            )
        self._remember_own(message_id)
        try:
            result = await asyncio.wait_for(
                page.evaluate(
                    "([id, text, options]) => window.__wactl.send(id, text, options)",
                    [message_id, text, wajs_api.SEND_OPTIONS],
                ),
                SEND_TIMEOUT_SECONDS,
            )
        except TimeoutError:
            raise EngineError(
                f"WhatsApp Web did not confirm the message to {to} within "
                f"{SEND_TIMEOUT_SECONDS:g} s"
            ) from None
        except Exception as exc:
            raise EngineError(f"WhatsApp Web refused the message to {to}: {_short(exc)}") from exc
        sent_id = result.get("id") if isinstance(result, Mapping) else None
        if not isinstance(sent_id, str) or not sent_id:
            raise EngineError(f"WhatsApp Web returned no message id for the message to {to}")
        if sent_id != message_id:
            log.warning("WhatsApp Web sent %s as %s", message_id, sent_id)
            self._remember_own(sent_id)
        return sent_id

    async def was_sent(self, message_id: str) -> bool | None:
        if message_chat(message_id) is None:
            return False  # no id was reserved for it: the send never started
        page = self._page
        if page is None or not self._linked:
            return None
        try:
            found = await asyncio.wait_for(
                page.evaluate("(id) => window.__wactl.lookup(id)", message_id),
                self.settings.probe_timeout_seconds,
            )
        except Exception as exc:
            log.warning("cannot look up reply %s: %s", message_id, _short(exc))
            return None
        if not isinstance(found, Mapping) or not found.get("found"):
            return False
        ack = found.get("ack")
        if not isinstance(ack, int) or isinstance(ack, bool):
            return None
        if ack >= wajs_api.ACK_SENT:
            return True
        if ack < wajs_api.ACK_CLOCK:
            return False  # it failed: WhatsApp will not deliver it
        return None  # on the device, not at the server yet: WhatsApp Web sends it

    async def mark_read(self, message_id: str) -> None:
        chat = message_chat(message_id)
        page = self._page
        if chat is None or page is None or not self._linked:
            return
        try:
            await asyncio.wait_for(
                page.evaluate("(chat) => window.__wactl.markRead(chat)", chat),
                self.settings.probe_timeout_seconds,
            )
        except Exception as exc:
            log.info("could not mark chat %s read: %s", chat, _short(exc))


def _describe_mode(mode: str | None) -> str:
    """What a stream mode means, for a log line or a disconnect reason."""
    return {
        None: "loading",
        "QR": "showing a QR",
        "SYNCING": "syncing",
        "OFFLINE": "offline (no connection to WhatsApp)",
        "CONFLICT": "open in another window",
    }.get(mode, f"in stream mode {mode}")


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
