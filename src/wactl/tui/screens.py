"""The dashboard's screens: the tenants table with its detail pane, QR, confirm, help.

Screens show what the app (`wactl.tui.app.Dashboard`) knows and turn keys into its
actions; they do no I/O themselves.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, ParamSpec, TypeVar

from rich.cells import cell_len
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Center, Horizontal, Vertical, VerticalScroll
from textual.coordinate import Coordinate
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.widgets import (
    Button,
    DataTable,
    Footer,
    Input,
    Static,
    TabbedContent,
    TabPane,
)

from wactl.display import printable
from wactl.enums import WORKER_STATE_MEANINGS
from wactl.ipc.protocol import worker_error_text
from wactl.tui.model import ABSENT, COLUMNS, Dashboard, column
from wactl.tui.qr import qr_lines

if TYPE_CHECKING:
    from wactl.tui.app import DashboardApp
    from wactl.tui.data import TenantDetail

#: How each worker state looks (colours vanish under NO_COLOR; the words stay).
STATE_STYLES = {
    "RUNNING": "bold green",
    "STARTING": "yellow",
    "STOPPING": "yellow",
    "BACKOFF": "bold dark_orange",
    "FATAL": "bold white on red",
    "STOPPED": "dim",
}
#: The live fields the summary shows (the rest of it comes from the database).
SUMMARY_FIELDS = (
    "state",
    "pid",
    "reason",
    "session_state",
    "last_error",
    "problems",
    "wa_js_version",
)
#: The Chats tab's first line.
CHATS_HINT = "p: the bot keeps quiet in the chat (a person answers) · b: hand it back to the bot"
SESSION_STYLES = {"CONNECTED": "green", "QR_PENDING": "yellow", "DISCONNECTED": "red"}

#: Fixed column widths: numbers never make the table jump while it updates.
WIDTHS = {
    "state": 8,
    "pid": 7,
    "uptime": 6,
    "restarts": 3,
    "cpu": 5,
    "memory": 7,
    "heartbeat": 5,
    "in_1h": 5,
    "out_1h": 6,
    "engine": 12,
    "last_error": 48,
}


def _cell(key: str, text: str) -> Text:
    """A table cell: the state coloured, numbers to the right, errors in red. Always a
    Text of `printable` text: a string cell would be read as markup."""
    shown = printable(text)
    if key == "state":
        return Text(shown, style=STATE_STYLES.get(text, ""))
    if key == "last_error":
        return Text(shown, style="red", no_wrap=True, overflow="ellipsis")
    if column(key).right:
        return Text(shown, justify="right")
    return Text(shown)


P = ParamSpec("P")
R = TypeVar("R")


def _while_shown(method: Callable[P, R | None]) -> Callable[P, R | None]:
    """The app's messages can arrive before the screen's widgets exist or after they are
    gone (the app is closing): then there is nothing to update."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
        screen = args[0]
        assert isinstance(screen, MainScreen)
        if not screen._ready:
            return None
        try:
            return method(*args, **kwargs)
        except NoMatches:
            return None

    return wrapper


class FilterInput(Input):
    """The `/` filter: Enter keeps it and goes back to the table, Escape clears it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear filter"),
    ]

    def action_clear_filter(self) -> None:
        self.value = ""
        screen = self.screen
        if isinstance(screen, MainScreen):
            screen.close_filter()


class MainScreen(Screen[None]):
    """Every tenant's worker in a table; the selected one's detail below it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("s", "start", "Start"),
        Binding("x", "stop", "Stop"),
        Binding("r", "restart", "Restart"),
        Binding("u", "logout", "Logout"),
        Binding("c", "qr", "QR"),
        Binding("l", "logs", "Logs"),
        Binding("slash", "filter", "Filter"),
        # In the Chats tab (which says so); the footer keeps room for ? and q.
        Binding("p", "pause_chat", "Pause chat", show=False),
        Binding("b", "resume_chat", "Chat back to bot", show=False),
        # Clicking a header sorts too; the footer keeps room for ? and q at 80 columns.
        Binding("o", "sort", "Sort", show=False),
        Binding("O", "reverse_sort", "Reverse sort", show=False),
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
    ]
    #: What each key does, for `?` and the command palette (same words as the footer).
    ACTIONS: ClassVar[dict[str, str]] = {
        "start": "Start the selected tenant's worker",
        "stop": "Stop the selected tenant's worker (asks first)",
        "restart": "Restart the selected tenant's worker (clears a quarantine)",
        "logout": "Log the selected tenant out of WhatsApp (asks first)",
        "qr": "Show the QR to link the selected tenant's phone",
        "logs": "Show the selected tenant's worker log",
        "pause_chat": "Pause the bot in the chat chosen in the Chats tab (a person answers)",
        "resume_chat": "Hand the chat chosen in the Chats tab back to the bot",
        "filter": "Filter by slug, name or state (Enter keeps it, Escape clears it)",
        "sort": "Sort by the next column (or click a column's header)",
        "reverse_sort": "Reverse the sort order",
        "help": "Show this help",
        "quit": "Quit",
    }

    DEFAULT_CSS = """
    MainScreen { layout: vertical; }
    #status { height: auto; max-height: 3; padding: 0 1; background: $panel; }
    #banner { height: auto; padding: 0 1; background: $error; color: $text; display: none; }
    #banner.shown { display: block; }
    #tenants { height: 1fr; }
    #detail { height: 45%; min-height: 9; }
    #detail TabPane { padding: 0 1; }
    #chats-hint { height: auto; }
    #chats-table { height: 1fr; }
    #filter { dock: bottom; display: none; margin-bottom: 1; }
    #filter.shown { display: block; }
    .empty { color: $text-muted; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._shown: list[str] = []
        self._rendered: dict[str, tuple[str, ...]] = {}
        #: The tenant the detail pane is about, and what was last read for it.
        self._detail_slug: str | None = None
        self._detail: TenantDetail | None = None
        self._pane_signatures: dict[str, object] = {}
        #: Set once the widgets exist: the app's messages may arrive before.
        self._ready = False

    @property
    def dashboard(self) -> DashboardApp:
        from wactl.tui.app import DashboardApp

        app = self.app
        assert isinstance(app, DashboardApp)
        return app

    @property
    def model(self) -> Dashboard:
        return self.dashboard.model

    def compose(self) -> ComposeResult:
        yield Static("", id="status")
        yield Static("", id="banner")
        table: DataTable[Any] = DataTable(
            id="tenants", cursor_type="row", zebra_stripes=False, fixed_columns=1
        )
        for col in COLUMNS:
            table.add_column(col.label, key=col.key, width=WIDTHS.get(col.key))
        yield table
        with TabbedContent(id="detail", initial="summary"):
            with TabPane("Summary", id="summary"), VerticalScroll():
                yield Static("", id="summary-text")
            with TabPane("Conversation", id="conversation"), VerticalScroll():
                yield Static("", id="conversation-text")
            with TabPane("Chats", id="chats"), Vertical():
                yield Static(CHATS_HINT, id="chats-hint", classes="empty")
                chats: DataTable[Any] = DataTable(id="chats-table", cursor_type="row")
                for label, key in (
                    ("CHAT", "chat"),
                    ("PAUSED UNTIL", "until"),
                    ("WHY", "why"),
                    ("LAST", "last"),
                ):
                    chats.add_column(label, key=key)
                yield chats
            with TabPane("Worker log", id="log"), VerticalScroll():
                yield Static("", id="log-text")
        yield FilterInput(placeholder="filter: slug, name or state", id="filter")
        # ctrl+p is in `?`; its key on the footer would push ? and q out at 80 columns.
        yield Footer(show_command_palette=False)

    def on_unmount(self) -> None:
        self._ready = False

    def on_mount(self) -> None:
        self._ready = True
        self.table.focus()
        self.show_problem(self.dashboard.problem)
        self.sync()

    @property
    def table(self) -> DataTable[Any]:
        return self.query_one("#tenants", DataTable)

    # --- what the app calls ------------------------------------------------------

    @_while_shown
    def sync(self, changed: set[str] | None = None) -> None:
        """Make the table show the model: rows added or gone, order, changed cells."""
        model = self.model
        table = self.table
        order = model.visible()
        selected = self.selected_slug()
        if set(order) != set(self._shown):
            table.clear()
            self._rendered = {}
            for slug in order:
                cells = model.cells(slug)
                table.add_row(
                    *(_cell(c.key, text) for c, text in zip(COLUMNS, cells, strict=True)),
                    key=slug,
                )
                self._rendered[slug] = cells
            self._shown = order
            self._restore_cursor(selected)
        else:
            for slug in order if changed is None else changed & set(order):
                cells = model.cells(slug)
                before = self._rendered.get(slug, ())
                for index, (col, text) in enumerate(zip(COLUMNS, cells, strict=True)):
                    if index >= len(before) or before[index] != text:
                        table.update_cell(slug, col.key, _cell(col.key, text))
                self._rendered[slug] = cells
            if order != self._shown:
                position = {slug: i for i, slug in enumerate(order)}
                table.sort("slug", key=lambda slug: position[str(slug)])
                self._shown = order
                self._restore_cursor(selected)
        self._show_status()
        selected_now = self.selected_slug()
        if selected_now != self._detail_slug:
            self._select(selected_now)
        elif selected_now is not None and (changed is None or selected_now in changed):
            self._render_detail()

    @_while_shown
    def selected_slug(self) -> str | None:
        table = self.table
        if not self._shown or table.row_count == 0:
            return None
        row = min(max(table.cursor_row, 0), table.row_count - 1)
        return table.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value

    def _restore_cursor(self, slug: str | None) -> None:
        if slug is not None and slug in self._shown:
            self.table.move_cursor(row=self._shown.index(slug), animate=False)

    def _show_status(self) -> None:
        model = self.model
        counts = model.counts()
        parts = ["wactl", f"{len(model.views)} tenants"]
        if counts:
            parts.append(" ".join(f"{n} {state}" for state, n in counts.items()))
        arrow = "▼" if model.sort_reverse else "▲"
        parts.append(f"sort {column(model.sort_key).label} {arrow}")
        if model.filter_text:
            parts.append(f"filter '{printable(model.filter_text)}': {len(self._shown)} shown")
        status = self.query_one("#status", Static)
        width = status.content_size.width or self.app.size.width - 2
        self._set("status", Text("\n".join(_pack(parts, " · ", width))))

    def on_resize(self) -> None:
        if self._ready:
            self._show_status()

    @_while_shown
    def show_problem(self, text: str | None) -> None:
        banner = self.query_one("#banner", Static)
        banner.update(Text(printable(text or "")))
        banner.set_class(text is not None, "shown")

    def _select(self, slug: str | None) -> None:
        """The detail pane follows the selected row; its stored part is read anew."""
        self._detail_slug = slug
        self._detail = None
        self._render_detail()
        if slug is not None:
            self.dashboard.want_detail(slug)

    @_while_shown
    def show_detail(self, detail: TenantDetail) -> None:
        """What the store read for a tenant; ignored if another row is selected by now."""
        if detail.slug == self._detail_slug:
            self._detail = detail
            self._render_detail()

    def _render_detail(self) -> None:
        slug = self._detail_slug
        stored = self._detail
        if slug is None:
            self._set("summary-text", Text("no tenant selected", style="dim"))
            self._set("conversation-text", Text(""))
            self._set("log-text", Text(""))
            return
        view = self.model.views.get(slug, {})
        # Only what the summary shows: CPU or uptime changing must not redraw it (each
        # redraw of an auto-height pane lays the whole screen out again).
        shown = tuple(view.get(key) for key in SUMMARY_FIELDS)
        self._set("summary-text", _summary(view, stored), signature=(shown, id(stored)))
        if stored is None:
            self._set("conversation-text", Text("loading…", style="dim"))
            self._set("log-text", Text("loading…", style="dim"))
        elif stored.problem:
            self._set("conversation-text", Text(printable(stored.problem), style="red"))
        elif stored.conversation:
            self._set(
                "conversation-text",
                _conversation(stored.conversation),
                signature=tuple(stored.conversation),
            )
        else:
            self._set("conversation-text", Text("no messages yet", style="dim"))
        self._show_chats(stored)
        if stored is not None:
            if stored.log_lines:
                # Long lines fold at the pane's edge rather than run out of sight.
                lines = printable("\n".join(stored.log_lines), multiline=True)
                self._set("log-text", Text(lines, overflow="fold"))
            else:
                self._set("log-text", Text(printable(stored.log_note), style="dim"))

    def _show_chats(self, stored: TenantDetail | None) -> None:
        """The Chats tab: paused chats, then recent ones; the cursor stays on its chat."""
        rows = stored.chats if stored is not None and not stored.problem else []
        signature = (self._detail_slug, tuple(rows))
        if self._pane_signatures.get("chats-table") == signature:
            return
        self._pane_signatures["chats-table"] = signature
        table = self.query_one("#chats-table", DataTable)
        chosen = self.selected_chat()
        table.clear()
        for row in rows:
            table.add_row(
                Text(printable(row.chat)),
                Text(printable(row.paused_until or "-"), style="yellow" if row.why else ""),
                Text(printable(row.why or "-")),
                Text(printable(row.last or "-")),
                key=row.chat,
            )
        chats = [row.chat for row in rows]
        if chosen in chats:
            table.move_cursor(row=chats.index(chosen), animate=False)

    @_while_shown
    def selected_chat(self) -> str | None:
        """The chat under the Chats tab's cursor."""
        table = self.query_one("#chats-table", DataTable)
        if table.row_count == 0:
            return None
        row = min(max(table.cursor_row, 0), table.row_count - 1)
        value = table.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value
        return str(value) if value is not None else None

    def _set(self, widget_id: str, content: Text | Table, signature: object = None) -> None:
        """Update a pane only when what it shows changed (an idle dashboard stays idle)."""
        if signature is None:
            assert isinstance(content, Text)
            signature = (content.plain, str(content.style))
        if self._pane_signatures.get(widget_id) == signature:
            return
        self._pane_signatures[widget_id] = signature
        widget = self.query_one(f"#{widget_id}", Static)
        widget.update(content)
        if widget_id in ("conversation-text", "log-text"):
            scroller = widget.parent
            assert isinstance(scroller, VerticalScroll)
            # The newest lines are at the bottom; scroll once the new size is known.
            scroller.call_after_refresh(scroller.scroll_end, animate=False)

    def open_filter(self) -> None:
        box = self.query_one("#filter", FilterInput)
        box.add_class("shown")
        box.focus()

    def close_filter(self) -> None:
        box = self.query_one("#filter", FilterInput)
        if not box.value:
            box.remove_class("shown")
        self.table.focus()

    # --- events ------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id != "tenants":
            return  # the Chats tab's cursor
        slug = event.row_key.value if event.row_key is not None else None
        if slug != self._detail_slug:
            self._select(slug)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.data_table.id == "tenants" and event.column_key.value is not None:
            self.model.sort_by(event.column_key.value)
            self.sync()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.model.filter_text = event.value
            self.sync()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            self.close_filter()

    # --- actions -----------------------------------------------------------------

    def _slug_or_say(self) -> str | None:
        slug = self.selected_slug()
        if slug is None:
            self.notify("no tenant selected", severity="warning")
        return slug

    def action_start(self) -> None:
        if (slug := self._slug_or_say()) is not None:
            self.dashboard.act("start", slug)

    def action_restart(self) -> None:
        if (slug := self._slug_or_say()) is not None:
            self.dashboard.act("restart", slug)

    def action_stop(self) -> None:
        if (slug := self._slug_or_say()) is None:
            return

        def decided(yes: bool | None) -> None:
            if yes:
                self.dashboard.act("stop", slug)

        self.app.push_screen(
            ConfirmScreen(f"Stop the worker of '{slug}'? Its bot stops answering."), decided
        )

    def action_logout(self) -> None:
        if (slug := self._slug_or_say()) is None:
            return

        def decided(yes: bool | None) -> None:
            if yes:
                self.dashboard.act("logout", slug)

        self.app.push_screen(
            ConfirmScreen(
                f"Log '{slug}' out of WhatsApp? The business's phone must scan a new QR "
                "to link again."
            ),
            decided,
        )

    def action_qr(self) -> None:
        if (slug := self._slug_or_say()) is not None:
            self.dashboard.open_qr(slug)

    def _chat_or_say(self) -> tuple[str, str] | None:
        """The tenant and chat a chat key acts on; without one, the Chats tab opens."""
        if (slug := self._slug_or_say()) is None:
            return None
        tabs = self.query_one("#detail", TabbedContent)
        table = self.query_one("#chats-table", DataTable)
        chat = self.selected_chat() if tabs.active == "chats" else None
        if chat is None:
            tabs.active = "chats"
            table.focus()
            self.notify(
                "choose a chat (↑↓), then p to pause the bot in it or b to hand it back",
                markup=False,
            )
            return None
        return slug, chat

    def action_pause_chat(self) -> None:
        if (target := self._chat_or_say()) is not None:
            self.dashboard.chat_act("pause", *target)

    def action_resume_chat(self) -> None:
        if (target := self._chat_or_say()) is not None:
            self.dashboard.chat_act("resume", *target)

    def action_logs(self) -> None:
        self.query_one("#detail", TabbedContent).active = "log"

    def action_filter(self) -> None:
        self.open_filter()

    def action_sort(self) -> None:
        self.model.next_sort()
        self.sync()

    def action_reverse_sort(self) -> None:
        self.model.sort_reverse = not self.model.sort_reverse
        self.sync()

    def action_help(self) -> None:
        self.app.push_screen(HelpScreen())

    def action_quit(self) -> None:
        self.app.exit()


def _pack(parts: list[str], separator: str, width: int) -> list[str]:
    """``parts`` joined by ``separator`` into lines of at most ``width`` cells, each part
    whole on one line (a narrow status line breaks between its parts, not inside)."""
    lines: list[str] = []
    for part in parts:
        if lines and cell_len(lines[-1] + separator + part) <= width:
            lines[-1] += separator + part
        else:
            lines.append(part)
    return lines


def _conversation(messages: list[tuple[str, str]]) -> Table:
    """The conversation pane: each message's text wraps beside its lead (when, chat,
    direction), so nothing runs out of sight at 80 columns; all of it is data."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for lead, text in messages:
        grid.add_row(Text(printable(lead)), Text(printable(text, multiline=True)))
    return grid


def _summary(view: dict[str, Any], stored: TenantDetail | None) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    state = printable(view.get("state", ABSENT))
    live = Text(state, style=STATE_STYLES.get(state, ""))
    if view.get("pid"):
        live.append(f"  pid {view['pid']}")
    if view.get("reason"):
        live.append(f"  ({printable(view['reason'])})", style="dim")
    grid.add_row("worker", live)
    session = view.get("session_state")
    if session:
        style = SESSION_STYLES.get(str(session), "")
        grid.add_row("whatsapp", Text(printable(session), style=style))
    error = worker_error_text(view)
    if error:
        grid.add_row("last error", Text(printable(error), style="red"))
    running = view.get("wa_js_version") if view.get("pid") else None
    if running:
        grid.add_row("wa-js", _wa_js_text(printable(running), stored))
    if stored is None:
        grid.add_row("", Text("loading the configuration…", style="dim"))
    elif stored.problem:
        grid.add_row("database", Text(printable(stored.problem), style="red"))
    else:
        for label, value in stored.summary:
            if label in ("slug", "last error", "worker", "whatsapp", "restarts"):
                continue  # the live fields above say it, and fresher
            if label == "wa-js" and running:
                continue  # what the worker runs, above
            grid.add_row(label, Text(printable(value)))  # a str would be read as markup
    return grid


def _wa_js_text(running: str, stored: TenantDetail | None) -> Text:
    """The wa-js a worker runs: "(canary)" when the fleet runs another, and the version
    its next start will run when that changed since it started."""
    text = Text(running)
    if stored is None or stored.problem:
        return text
    if stored.wa_js_fleet is not None and running != stored.wa_js_fleet:
        text.append(" (canary)", style="bold yellow")
    if stored.wa_js is not None and stored.wa_js != running:
        text.append(f"  {printable(stored.wa_js)} from its next start", style="dim")
    return text


class ConfirmScreen(ModalScreen[bool]):
    """A yes/no question; y or Enter on Yes confirms, n or Escape declines."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]
    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 60; height: auto; padding: 1 2; border: thick $warning; background: $surface;
    }
    ConfirmScreen Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    ConfirmScreen Button { margin-left: 2; }
    """

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text(printable(self.question)), id="question")
            with Horizontal():
                yield Button("No", id="no")
                yield Button("Yes", id="yes", variant="warning")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class QrScreen(ModalScreen[None]):
    """The QR to scan, redrawn when it rotates; the app closes it once linked."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,c", "close", "Close"),
    ]
    DEFAULT_CSS = """
    QrScreen { align: center middle; background: $background; }
    QrScreen > Vertical { width: auto; height: auto; }
    #qr-title { width: auto; max-width: 78; height: auto; }
    #qr-code { width: auto; height: auto; }
    #qr-note { width: auto; max-width: 78; height: auto; color: $text-muted; }
    """

    def __init__(self, slug: str, payload: str | None) -> None:
        super().__init__()
        self.slug = slug
        self.payload = payload
        self.rotations = 0

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                Text(
                    f"{printable(self.slug)}: scan with WhatsApp on the business's phone "
                    "(Settings › Linked devices › Link a device)"
                ),
                id="qr-title",
            )
            with Center():
                yield Static("", id="qr-code")
            yield Static("", id="qr-note")

    def on_mount(self) -> None:
        self._draw()

    def show_qr(self, payload: str | None) -> None:
        if payload == self.payload:
            return
        if self.payload is not None and payload is not None:
            self.rotations += 1
        self.payload = payload
        self._draw()

    def _draw(self) -> None:
        code = self.query_one("#qr-code", Static)
        note = self.query_one("#qr-note", Static)
        if self.payload is None:
            code.update(Text("waiting for a QR…", style="dim"))
            note.update("Esc closes")
            return
        lines = qr_lines(self.payload)
        # A real WhatsApp code (~240 characters) needs about 61×34; a clipped code does
        # not scan, so say what size it needs instead of drawing part of it.
        need_width, need_height = len(lines[0]), len(lines) + 3  # title and note lines
        size = self.app.size
        if need_width > size.width or need_height > size.height:
            code.update(
                Text(
                    f"This QR needs a terminal of at least {need_width}×{need_height};\n"
                    f"this one is {size.width}×{size.height}. Enlarge the window, or run\n"
                    f"`wactl tenant qr {self.slug}` in a larger terminal,\n"
                    "or open the portal's Phone page.",
                    style="bold",
                )
            )
        else:
            code.update(Text("\n".join(lines), style="black on white"))
        rotated = f"new QR ({self.rotations} since opened) · " if self.rotations else ""
        note.update(f"{rotated}closes by itself once linked · Esc closes")

    def on_resize(self) -> None:
        if self.payload is not None:
            self._draw()

    def action_close(self) -> None:
        self.dismiss(None)


class HelpScreen(ModalScreen[None]):
    """`?`: every key of the dashboard, from the same bindings the footer shows."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close"),
    ]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 76; height: auto; max-height: 22; padding: 0 1;
        border: round $primary; background: $surface;
    }
    """

    def compose(self) -> ComposeResult:
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        for binding in MainScreen.BINDINGS:
            assert isinstance(binding, Binding)
            grid.add_row(_key_name(binding.key), MainScreen.ACTIONS[binding.action])
        grid.add_row("↑ ↓ PgUp PgDn", "Select a tenant (or click its row)")
        grid.add_row("Tab", "Move between the table, the detail tabs and the filter")
        grid.add_row("ctrl+p", "Command palette: the same actions by name")
        grid.add_row("ctrl+q", "Quit")
        states = Table.grid(padding=(0, 2))
        states.add_column(no_wrap=True)
        states.add_column()
        for state, meaning in WORKER_STATE_MEANINGS.items():
            states.add_row(Text(state, style=STATE_STYLES.get(state, "")), meaning)
        with VerticalScroll():
            yield Static(Text("wactl tui: keys", style="bold"))
            yield Static(grid)
            yield Static(Text("\nStates", style="bold"))
            yield Static(states)
            yield Static(
                Text(
                    "State changes show at once (the daemon's events); CPU, memory and "
                    "heartbeat refresh every tui.refresh_seconds. Esc closes this help.",
                    style="dim",
                )
            )

    def action_close(self) -> None:
        self.dismiss(None)


def _key_name(key: str) -> str:
    return {"slash": "/", "question_mark": "?"}.get(key, key)
