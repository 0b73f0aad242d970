"""The dashboard app and `build_app`, the factory `wactl tui`, the tests and the bench share.

The app owns the state (`Dashboard`, the model of the table) and all I/O, each in a
Textual worker whose results come back as messages (`wactl.tui.messages`):

- ``daemon``: connect, subscribe to /v1/events, load /v1/tenants, then apply events as
  they come. When the daemon goes away (a dead socket, a ``shutdown`` event, a stream
  silent for 40 s) a banner says so and the worker tries again with a growing delay
  (0.5 s doubling to 5 s); it never ends the app.
- ``refresh``: every ``tui.refresh_seconds`` (at least 1 s) /v1/tenants again, for the
  figures events do not carry (CPU, memory, heartbeat age, uptime).
- ``detail`` and ``names``: database and log reads in threads (`wactl.tui.data`), for
  the selected tenant only, at most once per refresh interval (and never twice
  within a second when the selection moves).
- ``actions``: start, stop, restart and logout requests; their outcome is a
  notification, and the table changes when the daemon's events say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, SystemCommand
from textual.screen import Screen

from wactl.display import printable
from wactl.errors import WactlError
from wactl.ipc.aio import AsyncDaemonClient
from wactl.tui.messages import (
    DaemonConnected,
    DaemonEvent,
    DaemonLost,
    DetailLoaded,
    NamesLoaded,
    TenantsLoaded,
)
from wactl.tui.model import Dashboard
from wactl.tui.screens import MainScreen, QrScreen

#: Signals that quit the dashboard as `q` does (exit status 128 + the signal).
QUIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

if TYPE_CHECKING:
    from textual.notifications import SeverityLevel

    from wactl.tui.data import DashboardContext, Store

#: Reconnect delays: the first retry soon, then doubling up to the longest wait.
RECONNECT_FIRST_SECONDS = 0.5
RECONNECT_MAX_SECONDS = 5.0
#: The database is never read more often than this (DESIGN: the TUI polls it gently).
MIN_DB_INTERVAL = 1.0
#: Worker states in which a QR can be shown.
LIVE_STATES = ("STARTING", "RUNNING", "BACKOFF")

_ACTION_DONE = {
    "start": "starting",
    "stop": "stopped",
    "restart": "restarting",
    "logout": "logged out; a new QR follows",
}


class DashboardApp(App[None]):
    """`wactl tui`. Build it with `build_app`."""

    TITLE = "wactl"
    ENABLE_COMMAND_PALETTE = True
    #: No Textual default bindings beyond quit and the palette: the keys are the screen's.
    BINDINGS: ClassVar[list[Any]] = []

    def __init__(
        self,
        *,
        socket: Path,
        store: Store | None,
        refresh_seconds: float = 2.0,
        follow_daemon: bool = True,
    ) -> None:
        super().__init__()
        self.client = AsyncDaemonClient(socket)
        self.store = store
        self.refresh_seconds = max(refresh_seconds, MIN_DB_INTERVAL)
        self.follow_daemon = follow_daemon
        self.model = Dashboard()
        #: What the banner says, None while the daemon answers.
        self.problem: str | None = "connecting to the daemon…" if follow_daemon else None
        self.daemon_pid: int | None = None
        self._refreshing = False
        self._detail_busy = False
        self._detail_wanted: str | None = None
        self._detail_last = 0.0
        self._detail_timer: Any = None
        self._names_busy = False
        self._names_last = 0.0
        self._main = MainScreen()

    def get_default_screen(self) -> Screen[Any]:
        self._main = MainScreen()
        return self._main

    @property
    def main(self) -> MainScreen:
        """The dashboard screen (under any QR, confirmation or help screen)."""
        return self._main

    def on_mount(self) -> None:
        # Killed, hung up or interrupted, the dashboard quits as `q` does, so Textual
        # gives the terminal back (a default SIGTERM left it in raw mode on the
        # alternate screen). Ctrl-C in the dashboard is a key, not this signal.
        loop = asyncio.get_running_loop()
        for signum in QUIT_SIGNALS:
            with contextlib.suppress(ValueError, RuntimeError):  # not the main thread
                loop.add_signal_handler(signum, partial(self.exit, return_code=128 + signum))
        if self.follow_daemon:
            self.run_worker(self._follow(), name="daemon", group="daemon", exit_on_error=False)
        self.set_interval(self.refresh_seconds, self._tick, name="refresh")

    def _fatal_error(self) -> None:
        """A crash prints its traceback without local variables (STYLE.md 3: they may
        hold secrets such as the database URL); Textual's own shows them."""
        import rich
        from rich.segment import Segments
        from rich.traceback import Traceback

        self.bell()
        traceback = Traceback(show_locals=False, width=None, suppress=[rich])
        self._exit_renderables.append(
            Segments(self.console.render(traceback, self.console.options))
        )
        self._close_messages_no_wait()

    def on_unmount(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in QUIT_SIGNALS:
            with contextlib.suppress(ValueError, RuntimeError):
                loop.remove_signal_handler(signum)
        if self.store is not None:
            self.store.close()

    # --- the daemon --------------------------------------------------------------

    async def _follow(self) -> None:
        """Stay subscribed to the daemon's events, whatever happens to the daemon."""
        delay = RECONNECT_FIRST_SECONDS
        while True:
            stream = None
            try:
                info = await self.client.check_version()
                stream = await self.client.open_events()
                rows = await self.client.request("GET", "/v1/tenants")
                self.post_message(DaemonConnected(info))
                self.post_message(TenantsLoaded(rows))
                delay = RECONNECT_FIRST_SECONDS
                async for event in stream:
                    self.post_message(DaemonEvent(event))
                reason = f"the daemon (pid {info.get('pid', '?')}) stopped"
            except WactlError as exc:
                reason = exc.one_line()
            except Exception as exc:  # a dashboard reports and retries; it never dies
                reason = f"unexpected {type(exc).__name__}: {exc}"
            finally:
                if stream is not None:
                    await stream.close()
            self.post_message(DaemonLost(reason, delay))
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    async def _refresh(self) -> None:
        try:
            rows = await self.client.request("GET", "/v1/tenants")
        except WactlError:
            return  # the daemon worker notices and says so
        finally:
            self._refreshing = False
        self.post_message(TenantsLoaded(rows))

    def _tick(self) -> None:
        if self.problem is None and self.follow_daemon and not self._refreshing:
            self._refreshing = True
            self.run_worker(self._refresh(), group="refresh", exit_on_error=False)
        slug = self.main.selected_slug()
        if slug is not None:
            self.want_detail(slug)

    def on_daemon_connected(self, message: DaemonConnected) -> None:
        pid = message.info.get("pid")
        if self.problem is not None and self.daemon_pid is not None:
            self.say(f"reconnected to the daemon (pid {pid})")
        self.daemon_pid = pid if isinstance(pid, int) else None
        self.problem = None
        self.main.show_problem(None)

    def on_daemon_lost(self, message: DaemonLost) -> None:
        self.problem = (
            f"⚠ daemon unreachable: {printable(message.reason)}. Reconnecting by itself "
            f"(next try in {message.retry_in:g} s); the table shows the last known state."
        )
        self.main.show_problem(self.problem)

    def on_tenants_loaded(self, message: TenantsLoaded) -> None:
        self.model.load(message.rows)
        self.main.sync()
        if any(slug not in self.model.names for slug in self.model.views):
            self._load_names()

    def on_daemon_event(self, message: DaemonEvent) -> None:
        event = message.payload
        kind = event.get("event")
        if kind == "lagged":
            # We missed events: read the whole state again.
            self.run_worker(self._refresh(), group="refresh", exit_on_error=False)
            return
        if kind in ("handoff", "takeover", "chat"):
            slug = event.get("slug")
            if kind != "chat":
                what = (
                    "a customer asked for a person"
                    if kind == "handoff"
                    else "the business answered by hand"
                )
                self.say(f"{slug}: {what} in chat {event.get('chat', '?')}")
            if isinstance(slug, str) and slug == self.main.selected_slug():
                self.want_detail(slug)  # its Chats tab shows the pause
            return
        slug = self.model.apply(event)
        if slug is None:
            return
        if slug not in self.model.names:
            self._load_names()
        self.main.sync({slug})
        self._follow_qr(slug, event)

    # --- QR ----------------------------------------------------------------------

    def open_qr(self, slug: str) -> None:
        self.run_worker(self._open_qr(slug), group="actions", exit_on_error=False)

    async def _open_qr(self, slug: str) -> None:
        try:
            info = await self.client.request("GET", f"/v1/tenants/{slug}/qr")
        except WactlError as exc:
            self.say(exc.one_line(), title=f"QR of {slug}", severity="error")
            return
        if info.get("session_state") == "CONNECTED":
            self.say(f"{slug} is linked already; `u` logs it out", title=f"QR of {slug}")
            return
        if info.get("state") not in LIVE_STATES:
            self.say(
                f"{slug} is not running (state {info.get('state')}); `s` starts it",
                title=f"QR of {slug}",
                severity="warning",
            )
            return
        self.push_screen(QrScreen(slug, info.get("qr")))

    def _follow_qr(self, slug: str, event: dict[str, Any]) -> None:
        """Redraw an open QR screen when the code rotates; close it once linked."""
        screen = self.screen
        if not isinstance(screen, QrScreen) or screen.slug != slug:
            return
        kind = event.get("event")
        view = self.model.views.get(slug, {})
        if kind == "qr":
            screen.show_qr(event.get("qr"))
        elif view.get("session_state") == "CONNECTED":
            screen.dismiss(None)
            self.say(f"{slug}: linked")
        elif kind == "worker" and view.get("state") not in LIVE_STATES:
            screen.dismiss(None)
            self.say(f"{slug}: the worker is {view.get('state')}", severity="warning")

    # --- actions -----------------------------------------------------------------

    def act(self, action: str, slug: str) -> None:
        """start, stop, restart or logout ``slug``, through the daemon."""
        self.run_worker(self._act(action, slug), group="actions", exit_on_error=False)

    async def _act(self, action: str, slug: str) -> None:
        try:
            if action == "logout":
                await self.client.request("POST", f"/v1/tenants/{slug}/logout", {})
            else:
                answer = await self.client.request(
                    "POST", f"/v1/{action}", {"tenants": [slug]}, timeout=90.0
                )
                for message in answer.get("errors", []):
                    self.say(str(message), title=f"{action} {slug}", severity="error")
        except WactlError as exc:
            self.say(exc.one_line(), title=f"{action} {slug}", severity="error")
            return
        self.say(f"{slug}: {_ACTION_DONE[action]}")

    def chat_act(self, action: str, slug: str, chat: str) -> None:
        """Pause the bot in ``chat`` (for pipeline.handoff_pause_minutes) or hand the
        chat back to it, through the daemon (audited there)."""
        self.run_worker(self._chat_act(action, slug, chat), group="actions", exit_on_error=False)

    async def _chat_act(self, action: str, slug: str, chat: str) -> None:
        import datetime as dt

        from wactl.formatting import local_time

        try:
            answer = await self.client.request(
                "POST", f"/v1/tenants/{slug}/chats/{action}", {"chat": chat}, timeout=30.0
            )
        except WactlError as exc:
            self.say(exc.one_line(), title=f"{action} {slug} {chat}", severity="error")
            return
        until = answer.get("paused_until")
        if action == "pause" and until:
            when = local_time(dt.datetime.fromisoformat(until))
            self.say(f"{slug}: the bot is quiet in {chat} until {when}")
        else:
            self.say(f"{slug}: {chat} is the bot's again; it answers the next message")
        self.want_detail(slug)

    def say(
        self, message: str, *, title: str = "", severity: SeverityLevel = "information"
    ) -> None:
        """A notification. Its words may quote data (a chat, a name, an error the
        daemon relays): shown as text, never markup, control characters escaped."""
        self.notify(printable(message), title=printable(title), severity=severity, markup=False)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette offers the screen's actions, named as in `?`."""
        yield from super().get_system_commands(screen)
        if not isinstance(screen, MainScreen):
            return
        slug = screen.selected_slug()
        target = f" ({slug})" if slug else ""
        for name, text in MainScreen.ACTIONS.items():
            if name in ("help", "quit"):
                continue
            title = name.replace("_", " ").capitalize() + target
            yield SystemCommand(title, text, getattr(screen, f"action_{name}"))
        yield SystemCommand("Help", MainScreen.ACTIONS["help"], screen.action_help)

    # --- the database, in threads ------------------------------------------------

    def want_detail(self, slug: str) -> None:
        """Read ``slug``'s detail soon: now, or once a second has passed since the last."""
        self._detail_wanted = slug
        self._pump_detail()

    def _pump_detail(self) -> None:
        slug = self._detail_wanted
        if slug is None or self.store is None:
            return
        if self._detail_busy or self._detail_timer is not None:
            return  # it runs when the read in flight ends, or when the timer fires
        wait = self._detail_last + MIN_DB_INTERVAL - time.monotonic()
        if wait > 0:
            self._detail_timer = self.set_timer(wait, self._detail_due)
            return
        self._detail_wanted = None
        self._detail_busy = True
        self._detail_last = time.monotonic()
        store = self.store

        def read() -> None:
            detail = None
            # The interval counts from when the read really starts: a thread that starts
            # late must not let the next read come sooner than a second after it.
            self._detail_last = time.monotonic()
            try:
                detail = store.detail(slug)
            finally:
                self.post_message(DetailLoaded(detail))  # thread-safe in Textual

        self.run_worker(read, thread=True, group="detail", exit_on_error=False)

    def _detail_due(self) -> None:
        self._detail_timer = None
        self._pump_detail()

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        self._detail_busy = False
        if message.detail is not None:
            self.main.show_detail(message.detail)
        self._pump_detail()

    def _load_names(self) -> None:
        if self.store is None or self._names_busy:
            return
        if time.monotonic() - self._names_last < self.refresh_seconds:
            return
        self._names_busy = True
        self._names_last = time.monotonic()
        store = self.store

        def read() -> None:
            names: dict[str, str] = {}
            try:
                names = store.tenant_names()
            finally:
                self.post_message(NamesLoaded(names))

        self.run_worker(read, thread=True, group="names", exit_on_error=False)

    def on_names_loaded(self, message: NamesLoaded) -> None:
        self._names_busy = False
        self.model.names.update(message.names)
        if self.model.filter_text:
            self.main.sync()


def build_app(
    context: DashboardContext,
    *,
    follow_daemon: bool = True,
    refresh_seconds: float | None = None,
    socket: Path | None = None,
) -> DashboardApp:
    """The dashboard for ``context``'s configuration: its daemon socket, database and
    log directory (``socket``: the daemon's, when `find_daemon` found it elsewhere).
    ``follow_daemon=False`` leaves the daemon alone (rendering tests feed
    the app recorded /v1/tenants answers instead)."""
    from wactl.ipc.protocol import socket_path
    from wactl.tui.data import Store

    config = context.config
    return DashboardApp(
        socket=socket or socket_path(config.runtime_dir),
        store=Store(context),
        refresh_seconds=refresh_seconds or config.tui.refresh_seconds,
        follow_daemon=follow_daemon,
    )
