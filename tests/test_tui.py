"""`wactl tui`: Pilot tests against a real daemon with sandbox workers, and SVG snapshots.

Every action test runs the dashboard headless (`App.run_test`) in this process, against
a real daemon (subprocess) and real worker processes, and waits for what the operator
would see, polling the screen (`until`), never sleeping a fixed time. Tests that read
the database from the dashboard (detail pane, names for the filter) run on SQLite and
PostgreSQL; the others on SQLite, where the database is not what they test.

Snapshots: `tests/snapshots/tui/*.svg`, compared byte for byte with what
`App.export_screenshot()` draws. The dashboard shows no clock; the data is fixed
(recorded /v1/tenants answers fed to the app, tenants created with fixed values), the
filter's cursor blink is turned off, and TZ is UTC. To regenerate them after a
deliberate change of the screen, run

    WACTL_UPDATE_SNAPSHOTS=1 .venv/bin/pytest tests/test_tui.py -k snapshot

and look at the SVGs (any browser shows them) before committing. A failing comparison
writes what it got next to the test's tmp_path and names the file.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI
from tests.daemon_support import Daemon
from tests.support import db_session
from wactl.cli.context import AppContext
from wactl.tail import last_lines
from wactl.tui.model import ABSENT, COLUMN_KEYS, Dashboard
from wactl.tui.qr import BORDER, qr_lines

SNAPSHOTS = Path(__file__).parent / "snapshots" / "tui"
#: Read at import: the autouse fixture hides every WACTL_* variable from the tests.
UPDATE_SNAPSHOTS = bool(os.environ.get("WACTL_UPDATE_SNAPSHOTS"))
#: Long enough for a worker to start on a loaded 2-core machine; only failures wait it out.
WAIT = 60.0


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


async def until(
    pilot: Any, condition: Callable[[], bool], what: str, timeout: float = WAIT
) -> None:
    """Let the app run until ``condition()`` holds; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not seen within {timeout:g} s: {what}")
        await pilot.pause(0.05)


async def blocking(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the blocking daemon client without stopping the app's event loop."""
    return await asyncio.to_thread(function, *args, **kwargs)


def make_app(refresh_seconds: float = 1.0, follow_daemon: bool = True) -> Any:
    from wactl.tui.app import build_app

    return build_app(AppContext(None), refresh_seconds=refresh_seconds, follow_daemon=follow_daemon)


def cell(app: Any, slug: str, column: str) -> str:
    """What the table shows in ``slug``'s row under ``column`` (plain text; "" if no row)."""
    if not has_row(app, slug):
        return ""
    value = app.main.table.get_cell(slug, column)
    return str(getattr(value, "plain", value))


def text_of(widget: Any) -> str:
    """What a Static shows, as plain text (wide enough that nothing wraps)."""
    import io

    from rich.console import Console

    console = Console(width=300, file=io.StringIO(), color_system=None, record=True)
    console.print(widget.content)
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def has_row(app: Any, slug: str) -> bool:
    return slug in [key.value for key in app.main.table.rows]


def shown(app: Any) -> list[str]:
    """The slugs in the table, top to bottom."""
    table = app.main.table
    from textual.coordinate import Coordinate

    return [
        str(table.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value)
        for row in range(table.row_count)
    ]


async def select(pilot: Any, slug: str) -> None:
    """Move the table's cursor to ``slug`` with the arrow keys, as an operator would."""
    app = pilot.app
    await until(pilot, lambda: has_row(app, slug), f"a row for {slug}")
    order = shown(app)
    target = order.index(slug)
    while app.main.selected_slug() != slug:
        current = order.index(app.main.selected_slug())
        await pilot.press("down" if current < target else "up")
        order = shown(app)


def palette(app: Any) -> list[str]:
    """The command palette's choices, as shown."""
    from textual.command import CommandList

    found = app.screen.query(CommandList)
    if not found:
        return []
    options = found.first()
    return [str(options.get_option_at_index(i).prompt) for i in range(options.option_count)]


def notes(app: Any) -> list[str]:
    return [n.message for n in app._notifications]


def create(cli: CLI, slug: str, name: str | None = None, *extra: str) -> None:
    result = cli("tenant", "create", slug, "--name", name or slug.title(), *extra)
    assert result.code == 0, result.err


def sqlite_only() -> pytest.MarkDecorator:
    return pytest.mark.parametrize("backend", ["sqlite"])


# --- the pure parts -------------------------------------------------------------------


def view(slug: str, state: str = "STOPPED", **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "slug": slug,
        "state": state,
        "desired": "STOPPED",
        "engine": "sandbox",
        "pid": None,
        "uptime_seconds": None,
        "restarts": 0,
        "cpu_percent": None,
        "memory_rss_bytes": None,
        "memory_uss_bytes": None,
        "processes": 0,
        "heartbeat_age_seconds": None,
        "session_state": None,
        "has_qr": False,
        "last_error": None,
        "reason": None,
    }
    base.update(extra)
    return base


def test_model_sorts_absent_values_last_in_both_directions() -> None:
    model = Dashboard()
    model.load(
        [
            view("a", "RUNNING", cpu_percent=3.0),
            view("b"),
            view("c", "RUNNING", cpu_percent=0.5),
            view("d", "FATAL"),
        ]
    )
    model.sort_by("cpu")
    assert model.visible() == ["c", "a", "b", "d"]
    model.sort_by("cpu")  # the same column again reverses
    assert model.visible() == ["a", "c", "b", "d"]
    model.sort_by("state")
    assert model.visible() == ["d", "a", "c", "b"]  # trouble first, then by slug


def test_model_filter_matches_slug_name_or_state_words() -> None:
    model = Dashboard(names={"a": "Casa Pepe", "b": "Bodega Luis"})
    model.load([view("a", "RUNNING"), view("b"), view("casa-x")])
    model.filter_text = "casa"
    assert model.visible() == ["a", "casa-x"]
    model.filter_text = "LUIS stopped"
    assert model.visible() == ["b"]
    model.filter_text = "running pepe"
    assert model.visible() == ["a"]
    model.filter_text = "nobody"
    assert model.visible() == []


def test_model_applies_events_and_shows_dashes_for_what_is_absent() -> None:
    model = Dashboard()
    model.load([view("a", messages_in_1h=4, messages_out_1h=3)])
    cells = dict(zip(COLUMN_KEYS, model.cells("a"), strict=True))
    assert cells["slug"] == "a" and cells["state"] == "STOPPED"
    assert (cells["pid"], cells["uptime"], cells["cpu"]) == (ABSENT, ABSENT, ABSENT)
    assert (cells["in_1h"], cells["out_1h"]) == ("4", "3")
    event = {"event": "worker", "id": 7, "at": "x", **view("a", "RUNNING", pid=42)}
    assert model.apply(event) == "a"
    assert model.views["a"]["pid"] == 42
    assert model.views["a"]["messages_in_1h"] == 4  # an event without the counts keeps them
    assert model.apply({"event": "qr", "slug": "a", "qr": "x"}) == "a"
    assert model.views["a"]["session_state"] == "QR_PENDING"
    assert model.apply({"event": "session", "slug": "a", "state": "CONNECTED"}) == "a"
    assert model.views["a"]["has_qr"] is False
    assert model.apply({"event": "error", "slug": "a", "message": "boom\n  at x"}) == "a"
    assert model.cells("a")[-1] == "boom at x"
    assert model.apply({"event": "qr", "slug": "unknown", "qr": "x"}) is None
    model.load([view("b")])
    assert list(model.views) == ["b"]
    cells = dict(zip(COLUMN_KEYS, model.cells("b"), strict=True))
    assert (cells["in_1h"], cells["out_1h"]) == (ABSENT, ABSENT)  # the daemon sent none


def test_model_shows_what_fails_now_before_the_last_error() -> None:
    """As `wactl ps`: what the worker says fails now, until the daemon's view says it
    healed (the daemon publishes the worker's view on both)."""
    model = Dashboard()
    model.load([view("a", "RUNNING", last_error="exited with code 1: old")])
    failing = [{"area": "database", "message": "database is locked", "since": "x"}]
    event = {"event": "worker", "id": 8, "at": "x", **view("a", "RUNNING", problems=failing)}
    model.apply(event)
    assert model.cells("a")[-1] == "now: database is locked"
    healed = {"event": "worker", "id": 9, "at": "x", **view("a", "RUNNING", problems=[])}
    model.apply({**healed, "last_error": "exited with code 1: old"})
    assert model.cells("a")[-1] == "exited with code 1: old"


def test_qr_lines_pack_two_module_rows_per_line_losslessly() -> None:
    import segno

    payload = "wactl-sandbox:casa-pepe:" + "Q" * 24
    lines = qr_lines(payload)
    code = segno.make(payload, error="l", boost_error=True)
    matrix = [[bool(m) for m in row] for row in code.matrix_iter(border=BORDER)]
    unpacked = []
    for line in lines:
        unpacked.append([ch in "▀█" for ch in line])
        unpacked.append([ch in "▄█" for ch in line])
    assert unpacked[: len(matrix)] == matrix
    assert not any(unpacked[len(matrix) :][0]) if len(unpacked) > len(matrix) else True
    assert len(lines) <= 20 and len(lines[0]) <= 78  # a sandbox QR fits 80x24


def test_last_lines_reads_only_the_tail(tmp_path: Path) -> None:
    path = tmp_path / "worker.log"
    path.write_text("".join(f"line {i}\n" for i in range(100_000)))
    assert last_lines(path, 3) == ["line 99997\n", "line 99998\n", "line 99999\n"]
    path.write_text("one\ntwo\nthree")  # no newline at the end
    assert last_lines(path, 2) == ["two\n", "three"]
    assert last_lines(path, 10) == ["one\n", "two\n", "three"]
    assert last_lines(path, 0) == []
    with pytest.raises(FileNotFoundError):
        last_lines(tmp_path / "none.log", 5)


# --- the command ----------------------------------------------------------------------


def test_wactl_tui_needs_a_terminal(cli: CLI) -> None:
    result = cli("tui")
    assert result.code == 2
    assert result.err == "error: wactl tui needs a terminal; for scripts, use `wactl ps --json`\n"


def test_bad_refresh_interval_is_refused(cli: CLI, tmp_path: Path) -> None:
    config_file = tmp_path / "config.toml"
    config_file.write_text("[tui]\nrefresh_seconds = 0.5\n")
    result = cli("--config", str(config_file), "config", "validate")
    assert result.code == 3
    assert result.err == (
        f"error: config file {config_file}: tui.refresh_seconds must be 1 or more, not 0.5; "
        "the dashboard polls the daemon at most once a second\n"
    )


# --- against a real daemon -------------------------------------------------------------


@sqlite_only()
def test_start_shows_running(cli: CLI, daemon: Daemon) -> None:
    create(cli, "alpha")
    create(cli, "beta")

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: has_row(app, "beta"), "the tenants")
            assert cell(app, "alpha", "state") == "STOPPED"
            assert cell(app, "alpha", "pid") == ABSENT
            await select(pilot, "beta")
            await pilot.press("s")
            await until(pilot, lambda: cell(app, "beta", "state") == "RUNNING", "beta RUNNING")
            running = await blocking(daemon.ps)
            assert cell(app, "beta", "pid") == str(running["beta"]["pid"])
            assert running["alpha"]["state"] == "STOPPED"
            assert cell(app, "alpha", "state") == "STOPPED"
            # The metrics columns fill in from the periodic refresh.
            await until(pilot, lambda: cell(app, "beta", "memory") != ABSENT, "beta's memory")
            assert cell(app, "beta", "memory").endswith("M")

    run(scenario)


@sqlite_only()
def test_stop_asks_first(cli: CLI, daemon: Daemon) -> None:
    from wactl.tui.screens import ConfirmScreen

    create(cli, "alpha")
    assert cli("tenant", "start", "alpha").code == 0

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: cell(app, "alpha", "state") == "RUNNING", "RUNNING")
            await select(pilot, "alpha")
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
            question = text_of(app.screen.query_one("#question"))
            assert question == "Stop the worker of 'alpha'? Its bot stops answering."
            await pilot.press("n")
            await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "no question")
            assert (await blocking(daemon.ps))["alpha"]["state"] == "RUNNING"
            assert cell(app, "alpha", "state") == "RUNNING"
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
            await pilot.press("y")
            await until(pilot, lambda: cell(app, "alpha", "state") == "STOPPED", "STOPPED")
            assert (await blocking(daemon.ps))["alpha"]["state"] == "STOPPED"
            assert cell(app, "alpha", "pid") == ABSENT

    run(scenario)


@sqlite_only()
def test_restart_from_the_key_and_from_the_command_palette(cli: CLI, daemon: Daemon) -> None:
    create(cli, "alpha")
    assert cli("tenant", "start", "alpha").code == 0
    first_pid = daemon.ps()["alpha"]["pid"]

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: cell(app, "alpha", "pid") == str(first_pid), "the pid")
            await select(pilot, "alpha")
            await pilot.press("r")
            await until(
                pilot,
                lambda: (
                    cell(app, "alpha", "state") == "RUNNING"
                    and cell(app, "alpha", "pid") not in (str(first_pid), ABSENT)
                ),
                "RUNNING with a new pid",
            )
            second_pid = cell(app, "alpha", "pid")
            assert cell(app, "alpha", "restarts") == "0"  # an operator restart is no crash
            # ctrl+p offers the same action by name.
            await pilot.press("ctrl+p")
            await pilot.press(*"restart")
            await until(pilot, lambda: bool(palette(app)), "the palette's choices")
            assert palette(app)[0] == (
                "Restart (alpha)\nRestart the selected tenant's worker (clears a quarantine)"
            )
            await pilot.press("enter")
            await until(
                pilot,
                lambda: (
                    cell(app, "alpha", "state") == "RUNNING"
                    and cell(app, "alpha", "pid") not in (second_pid, ABSENT)
                ),
                "RUNNING with a third pid",
            )
            assert cell(app, "alpha", "restarts") == "0"
            assert (await blocking(daemon.ps))["alpha"]["pid"] == int(cell(app, "alpha", "pid"))

    run(scenario)


@sqlite_only()
def test_logout_asks_first_and_a_new_qr_follows(cli: CLI, daemon: Daemon) -> None:
    from wactl.tui.screens import ConfirmScreen

    create(cli, "alpha")
    assert cli("tenant", "start", "alpha").code == 0
    assert cli("sandbox", "scan", "alpha").code == 0

    def session_state(app: Any) -> Any:
        return app.model.views.get("alpha", {}).get("session_state")

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await until(pilot, lambda: session_state(app) == "CONNECTED", "CONNECTED")
            await select(pilot, "alpha")
            await pilot.press("u")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
            assert text_of(app.screen.query_one("#question")) == (
                "Log 'alpha' out of WhatsApp? The business's phone must scan a new QR "
                "to link again."
            )
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen), "declined")
            assert (await blocking(daemon.ps))["alpha"]["session_state"] == "CONNECTED"
            await pilot.press("u")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
            await pilot.click("#yes")
            await until(pilot, lambda: session_state(app) == "QR_PENDING", "QR_PENDING")
            await until(pilot, lambda: "alpha: logged out; a new QR follows" in notes(app), "note")
            assert (await blocking(daemon.ps))["alpha"]["has_qr"] is True
            summary = text_of(app.main.query_one("#summary-text"))
            assert "QR_PENDING" in summary

    run(scenario)


@sqlite_only()
def test_qr_screen_redraws_as_it_rotates_and_closes_once_scanned(cli: CLI, daemon: Daemon) -> None:
    from wactl.tui.screens import QrScreen

    create(cli, "alpha")
    create(cli, "beta")
    assert cli("tenant", "start", "alpha").code == 0

    def drawn(screen: Any) -> str:
        content = screen.query_one("#qr-code").content
        assert str(content.style) == "black on white"  # dark modules on light, any theme
        return str(content.plain)

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(100, 30), notifications=True) as pilot:
            await until(pilot, lambda: cell(app, "alpha", "state") == "RUNNING", "RUNNING")
            # A stopped tenant has no QR: the dashboard says so and opens nothing.
            await select(pilot, "beta")
            await pilot.press("c")
            await until(
                pilot,
                lambda: "beta is not running (state STOPPED); `s` starts it" in notes(app),
                "the warning",
            )
            assert not isinstance(app.screen, QrScreen)
            await select(pilot, "alpha")
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, QrScreen), "the QR screen")
            screen = app.screen
            await until(pilot, lambda: screen.payload is not None, "a QR")
            first = screen.payload
            assert drawn(screen) == "\n".join(qr_lines(first))
            # The sandbox rotates its QR every 0.5 s here: the screen follows.
            await until(pilot, lambda: screen.payload != first, "a rotated QR")
            assert drawn(screen) == "\n".join(qr_lines(screen.payload))
            assert screen.rotations >= 1
            # The phone scans it (through the daemon's API): the screen closes by itself.
            await blocking(daemon.client.request, "POST", "/v1/tenants/alpha/sandbox/scan", {})
            await until(pilot, lambda: not isinstance(app.screen, QrScreen), "the screen closed")
            await until(pilot, lambda: "alpha: linked" in notes(app), "the note")
            # Linked: the key now says so instead of showing a code.
            await pilot.press("c")
            await until(
                pilot,
                lambda: "alpha is linked already; `u` logs it out" in notes(app),
                "already linked",
            )
            assert not isinstance(app.screen, QrScreen)

    run(scenario)


def test_filter_by_slug_name_or_state(cli: CLI, daemon: Daemon) -> None:
    create(cli, "alpha", "Casa Pepe")
    create(cli, "beta", "Bodega Luis")
    create(cli, "gamma", "Casa Maria")
    assert cli("tenant", "start", "gamma").code == 0

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: cell(app, "gamma", "state") == "RUNNING", "RUNNING")
            await until(pilot, lambda: len(app.model.names) == 3, "the names from the database")
            await pilot.press("slash", *"casa")
            await until(pilot, lambda: shown(app) == ["alpha", "gamma"], "the Casa tenants")
            await pilot.press(*" run")
            await until(pilot, lambda: shown(app) == ["gamma"], "the running Casa tenant")
            await pilot.press("enter")  # keeps the filter, back to the table
            assert app.focused is app.main.table
            status = text_of(app.main.query_one("#status"))
            assert "filter 'casa run': 1 shown" in status
            await pilot.press("slash", "escape")  # clears it
            await until(pilot, lambda: shown(app) == ["alpha", "beta", "gamma"], "everyone")
            await pilot.press("slash", *"bet")
            await until(pilot, lambda: shown(app) == ["beta"], "beta by its slug")

    run(scenario)


@sqlite_only()
def test_sort_by_key_and_by_clicking_a_header(cli: CLI, daemon: Daemon) -> None:
    for slug in ("alpha", "beta", "gamma"):
        create(cli, slug)
    assert cli("tenant", "start", "beta").code == 0

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: cell(app, "beta", "state") == "RUNNING", "RUNNING")
            assert shown(app) == ["alpha", "beta", "gamma"]
            await pilot.press("O")  # reverse
            assert shown(app) == ["gamma", "beta", "alpha"]
            await pilot.press("o")  # next column: STATE, trouble and life first
            assert shown(app) == ["beta", "alpha", "gamma"]
            assert "sort STATE ▲" in text_of(app.main.query_one("#status"))
            # Click the PID header: only beta has one; the stopped ones follow by slug.
            table = app.main.table
            x = 1 + sum(c.get_render_width(table) for c in table.ordered_columns[:2])
            await pilot.click("#tenants", offset=(x, 0))
            assert "sort PID ▲" in text_of(app.main.query_one("#status"))
            assert shown(app) == ["beta", "alpha", "gamma"]
            await pilot.click("#tenants", offset=(1, 0))  # SLUG
            await pilot.click("#tenants", offset=(1, 0))  # SLUG again: reversed
            assert shown(app) == ["gamma", "beta", "alpha"]
            assert app.main.selected_slug() is not None

    run(scenario)


@sqlite_only()
def test_a_daemon_restart_shows_a_banner_that_goes_away(cli: CLI, daemon: Daemon) -> None:
    create(cli, "alpha")
    assert cli("tenant", "start", "alpha").code == 0
    worker_pid = daemon.ps()["alpha"]["pid"]

    def banner(app: Any) -> str:
        widget = app.main.query_one("#banner")
        return text_of(widget) if widget.has_class("shown") else ""

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await until(pilot, lambda: cell(app, "alpha", "state") == "RUNNING", "RUNNING")
            assert banner(app) == ""
            await blocking(daemon.client.request, "POST", "/v1/shutdown", {})
            await until(pilot, lambda: "daemon unreachable" in banner(app), "the banner")
            assert "Reconnecting by itself" in banner(app)
            # The table keeps the last known state, and the dashboard keeps running.
            assert cell(app, "alpha", "state") == "RUNNING"
            await pilot.press("s")  # an action while the daemon is gone: an error, no crash
            await until(
                pilot, lambda: any("daemon is not running" in n for n in notes(app)), "an error"
            )
            assert daemon.process is not None
            await blocking(daemon.process.wait, 30)  # the old daemon is gone for good
            await blocking(daemon.start)
            await until(pilot, lambda: banner(app) == "", "the banner gone", timeout=30)
            await until(
                pilot,
                lambda: any(n.startswith("reconnected to the daemon (pid ") for n in notes(app)),
                "the note",
            )
            # The new daemon re-adopted the worker: same pid, events flow again.
            await until(pilot, lambda: cell(app, "alpha", "pid") == str(worker_pid), "the pid")
            await pilot.press("x", "y")
            await until(pilot, lambda: cell(app, "alpha", "state") == "STOPPED", "STOPPED")

    run(scenario)


def test_detail_pane_shows_config_conversation_and_worker_log(
    cli: CLI, daemon: Daemon, db_url: str
) -> None:
    from textual.widgets import TabbedContent

    create(cli, "alpha", "Casa Pepe", "--template", "restaurant", "--language", "es")
    create(cli, "beta", "Bodega")
    assert cli("tenant", "start", "alpha").code == 0
    assert cli("sandbox", "scan", "alpha").code == 0
    assert cli("sandbox", "send", "alpha", "--from", "+34600111222", "hola").code == 0

    def pane(app: Any, name: str) -> str:
        return text_of(app.main.query_one(f"#{name}-text"))

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await select(pilot, "alpha")
            await until(pilot, lambda: "restaurant" in pane(app, "summary"), "the config")
            summary = pane(app, "summary")
            assert "Casa Pepe" in summary and "es" in summary and "CONNECTED" in summary
            await until(pilot, lambda: "hola" in pane(app, "conversation"), "the conversation")
            conversation = pane(app, "conversation")
            assert "+34600111222 <- hola" in conversation
            assert "+34600111222 -> (greeting)" in conversation
            await pilot.press("l")
            assert app.main.query_one("#detail", TabbedContent).active == "log"
            await until(pilot, lambda: "starting the worker" in pane(app, "log"), "the log")
            # A new message shows within a refresh, without touching anything.
            await blocking(
                daemon.client.request,
                "POST",
                "/v1/tenants/alpha/sandbox/send",
                {"from": "+34600111222", "text": "gracias"},
            )
            await until(pilot, lambda: "gracias" in pane(app, "conversation"), "the new message")
            await select(pilot, "beta")
            await until(pilot, lambda: "Bodega" in pane(app, "summary"), "beta's config")
            assert "no worker log yet" in pane(app, "log")
            assert pane(app, "conversation") == "no messages yet"

    run(scenario)


def test_chats_tab_pauses_and_hands_back_chats(cli: CLI, daemon: Daemon, db_url: str) -> None:
    """The Chats tab lists where the bot is paused (a customer asked for a person) and
    the recent chats; p pauses the chosen chat, b hands it back, through the daemon
    (audited), and a pause made elsewhere (the CLI) shows without a key."""
    import sqlalchemy
    from textual.widgets import DataTable, TabbedContent

    from wactl.db.models import PortalEventLog

    create(cli, "alpha", "Casa Pepe", "--language", "en")
    assert cli("tenant", "start", "alpha").code == 0
    assert cli("sandbox", "scan", "alpha").code == 0
    for number, text in (("+34600111222", "hola"), ("+34600333444", "human")):
        assert cli("sandbox", "send", "alpha", "--from", number, text).code == 0

    def rows(app: Any) -> dict[str, list[str]]:
        table = app.main.query_one("#chats-table", DataTable)
        return {str(key.value): [str(cell) for cell in table.get_row(key)] for key in table.rows}

    def paused(app: Any, chat: str) -> bool:
        row = rows(app).get(chat)
        return row is not None and row[1] != "-"

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await select(pilot, "alpha")
            # p with no chat chosen opens the Chats tab and says what to do.
            await pilot.press("p")
            assert app.main.query_one("#detail", TabbedContent).active == "chats"
            assert any("choose a chat" in note for note in notes(app))
            await until(pilot, lambda: len(rows(app)) == 2, "the chats")
            # The paused chat first, with why.
            assert next(iter(rows(app))) == "+34600333444"
            assert rows(app)["+34600333444"][2] == "asked for a person"
            assert not paused(app, "+34600111222")
            # Hand the customer's chat back to the bot.
            assert app.main.selected_chat() == "+34600333444"
            await pilot.press("b")
            await until(pilot, lambda: not paused(app, "+34600333444"), "the chat resumed")
            await until(
                pilot,
                lambda: any("+34600333444 is the bot's again" in n for n in notes(app)),
                "the notification",
            )
            # Pause the other one from the keyboard.
            await pilot.press("down")
            await until(pilot, lambda: app.main.selected_chat() == "+34600111222", "cursor")
            await pilot.press("p")
            await until(pilot, lambda: paused(app, "+34600111222"), "the chat paused")
            assert rows(app)["+34600111222"][2] == "operator"
            # A resume from the CLI shows by itself.
            assert cli("chats", "resume", "alpha", "+34600111222").code == 0
            await until(pilot, lambda: not paused(app, "+34600111222"), "the CLI's resume")

    run(scenario)
    with db_session(db_url) as session:
        events = [
            (e.event_type, e.payload_json["chat"])
            for e in session.scalars(sqlalchemy.select(PortalEventLog).order_by(PortalEventLog.id))
            if e.event_type.startswith("chat.")
        ]
    assert events == [
        ("chat.resumed", "+34600333444"),
        ("chat.paused", "+34600111222"),
        ("chat.resumed", "+34600111222"),
    ]
    # The customer's next message in the resumed chat is answered.
    sent = cli("sandbox", "send", "alpha", "--from", "+34600333444", "hours", "--json")
    assert json.loads(sent.out)["reply"]


def test_the_database_is_read_at_most_once_a_second(cli: CLI, daemon: Daemon) -> None:
    from sqlalchemy import event

    for slug in ("alpha", "beta", "gamma", "delta"):
        create(cli, slug)
    reads: list[float] = []
    queries: list[str] = []

    async def scenario() -> None:
        app = make_app(refresh_seconds=1.0)
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: has_row(app, "delta"), "the tenants")
            await until(pilot, lambda: app.main._detail is not None, "a first detail")
            store = app.store
            engine = store._context.engine()
            read_detail = store.detail

            def detail(slug: str) -> Any:
                # When a read starts: its queries may come late within it on a busy
                # machine, the reads themselves must be a second apart.
                reads.append(time.monotonic())
                return read_detail(slug)

            def count(*args: Any) -> None:
                queries.append(str(args[2]))

            store.detail = detail
            event.listen(engine, "before_cursor_execute", count)
            started = time.monotonic()
            for _ in range(15):  # an operator scrolling up and down fast
                await pilot.press("down", "down", "down", "up", "up", "up")
            await pilot.pause(3.0)
            elapsed = time.monotonic() - started
            event.remove(engine, "before_cursor_execute", count)
            store.detail = read_detail
            assert 1 <= len(reads) <= elapsed + 1
            # Every query went through a detail read (one message_log query each; one
            # more from a read in flight when counting began).
            assert sum("message_log" in query for query in queries) <= len(reads) + 1
            gaps = [b - a for a, b in itertools.pairwise(reads)]
            assert all(gap >= 0.99 for gap in gaps), gaps

    run(scenario)


@sqlite_only()
def test_database_trouble_shows_in_the_pane_and_nothing_crashes(
    cli: CLI, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    create(cli, "alpha")
    # The dashboard alone is pointed at a database that does not exist.
    monkeypatch.setenv("WACTL_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:9/none")

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40)) as pilot:
            await until(pilot, lambda: has_row(app, "alpha"), "the tenants from the daemon")
            summary = app.main.query_one("#summary-text")
            await until(
                pilot,
                lambda: (
                    "cannot use database postgresql+psycopg://nobody@127.0.0.1:9/none"
                    in text_of(summary)
                ),
                "the database error",
            )
            await pilot.press("s")
            await until(pilot, lambda: cell(app, "alpha", "state") == "RUNNING", "RUNNING")

    run(scenario)


@sqlite_only()
def test_an_action_the_daemon_refuses_is_a_notification(cli: CLI, daemon: Daemon) -> None:
    from wactl.db.models import Tenant
    from wactl.enums import TenantStatus

    create(cli, "alpha")
    with db_session(os.environ["WACTL_DATABASE_URL"]) as session:
        session.query(Tenant).filter_by(slug="alpha").one().status = TenantStatus.SETUP_REQUESTED

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(120, 40), notifications=True) as pilot:
            await select(pilot, "alpha")
            await pilot.press("s")
            await until(pilot, lambda: bool(notes(app)), "a notification")
            assert notes(app) == [
                "tenant 'alpha' is not set up yet (status SETUP_REQUESTED); approve its "
                "setup request first (`wactl requests list`)"
            ]
            assert cell(app, "alpha", "state") == "STOPPED"

    run(scenario)


@sqlite_only()
def test_help_lists_every_key_and_state(cli: CLI, daemon: Daemon) -> None:
    from wactl.enums import WORKER_STATE_MEANINGS
    from wactl.tui.screens import HelpScreen, MainScreen

    async def scenario() -> None:
        app = make_app()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("question_mark")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
            text = "\n".join(text_of(s) for s in app.screen.query("Static"))
            for action, words in MainScreen.ACTIONS.items():
                assert words in text, action
            for state, meaning in WORKER_STATE_MEANINGS.items():
                assert re.search(rf"^{state} +{re.escape(meaning)}$", text, re.M), state
            await pilot.press("escape")
            await until(pilot, lambda: isinstance(app.screen, MainScreen), "the table again")

    run(scenario)


# --- SVG snapshots ----------------------------------------------------------------------

#: A recorded /v1/tenants answer with every state, fed to the dashboard instead of a live
#: daemon (whose pids, uptimes and CPU figures change on every run).
RECORDED: list[dict[str, Any]] = [
    view(
        "alpha",
        "RUNNING",
        desired="RUNNING",
        pid=41234,
        uptime_seconds=7384.2,
        cpu_percent=0.4,
        memory_rss_bytes=52_000_000,
        memory_uss_bytes=41_300_000,
        processes=1,
        heartbeat_age_seconds=1.2,
        session_state="CONNECTED",
        messages_in_1h=12,
        messages_out_1h=12,
    ),
    view(
        "bodega-luis",
        "BACKOFF",
        desired="RUNNING",
        restarts=3,
        last_error="exited with code 1",
        reason="exited with code 1",
        messages_in_1h=0,
        messages_out_1h=0,
    ),
    view(
        "clinica-sol",
        "FATAL",
        desired="RUNNING",
        restarts=5,
        last_error="quarantined: 5 crashes within 300 s (last: killed by SIGKILL)",
    ),
    view("dental-ana", "STARTING", desired="RUNNING", pid=41301, uptime_seconds=0.4),
    view("estetica-mar", "STOPPING", desired="STOPPED", pid=40990, uptime_seconds=93.0),
    view("floristeria", "STOPPED"),
]
QR_PAYLOAD = "wactl-sandbox:alpha:Zm9yIHRoZSBzbmFwc2hvdHM"


async def compare_snapshot(app: Any, pilot: Any, name: str, tmp_path: Path) -> None:
    """The screen as SVG, byte for byte against tests/snapshots/tui/NAME.svg.

    Taken once two frames 0.1 s apart are the same: a widget just updated may need a
    layout pass or two before the screen shows it.
    """
    for box in app.screen.query("Input"):
        box.cursor_blink = False
    deadline = time.monotonic() + WAIT
    svg = ""
    while True:
        await pilot.pause(0.1)
        frame = app.export_screenshot(title=f"wactl tui: {name}", simplify=True)
        if frame == svg:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the screen never settled for the snapshot {name}")
        svg = frame
    path = SNAPSHOTS / f"{name}.svg"
    if UPDATE_SNAPSHOTS:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(svg, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no snapshot {path}; make it with WACTL_UPDATE_SNAPSHOTS=1")
    if path.read_text(encoding="utf-8") != svg:
        got = tmp_path / f"{name}.svg"
        got.write_text(svg, encoding="utf-8")
        pytest.fail(f"the screen differs from {path}: see {got} (open both in a browser)")


@pytest.fixture
def recorded(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Coroutine[Any, Any, None]]:
    """Run a snapshot scenario: the RECORDED tenants in a real database, the recorded
    daemon answer in the table, clocks and blinking frozen."""
    from wactl.db.models import MessageLog, Tenant
    from wactl.enums import Direction, MessageState, TenantStatus

    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setenv("WACTL_PATHS_RUNTIME_DIR", "/nonexistent/wactl-snapshots")
    assert cli("init").code == 0
    names = ["Casa Pepe", "Bodega Luis", "Clínica Sol", "Dental Ana", "Estética Mar", "Flores"]
    for row, name in zip(RECORDED, names, strict=True):
        create(cli, row["slug"], name, "--template", "restaurant", "--language", "es")
    import datetime as dt

    with db_session(db_url) as session:
        alpha = session.query(Tenant).filter_by(slug="alpha").one()
        alpha.status = TenantStatus.CONNECTED
        start = dt.datetime(2026, 11, 2, 12, 30, tzinfo=dt.UTC)
        for i, (direction, text) in enumerate(
            [
                (Direction.IN, "hola"),
                (Direction.OUT, "¡Hola! Gracias por escribir a Casa Pepe. Responde con un número"),
                (Direction.IN, "3"),
                (Direction.OUT, "Abrimos de 13:00 a 16:00 y de 20:00 a 23:30."),
            ]
        ):
            session.add(
                MessageLog(
                    tenant_id=alpha.id,
                    direction=direction,
                    from_number="+34600111222" if direction is Direction.IN else "+34910000000",
                    to_number="+34910000000" if direction is Direction.IN else "+34600111222",
                    message_text=text,
                    wa_message_id=f"snap-{i}",
                    chat="+34600111222",
                    state=MessageState.ANSWERED if direction is Direction.IN else MessageState.SENT,
                    kind=None if direction is Direction.IN else "greeting",
                    created_at=start + dt.timedelta(minutes=i),
                )
            )

    def scenario(
        steps: Callable[[Any, Any], Coroutine[Any, Any, None]], size: tuple[int, int] = (80, 24)
    ) -> Coroutine[Any, Any, None]:
        async def body() -> None:
            from wactl.tui.messages import TenantsLoaded

            app = make_app(follow_daemon=False)
            async with app.run_test(size=size) as pilot:
                app.post_message(TenantsLoaded(RECORDED))
                await until(pilot, lambda: app.main._detail is not None, "alpha's detail")
                await steps(app, pilot)

        return body()

    return scenario


@sqlite_only()
def test_snapshot_dashboard_in_colour(
    recorded: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("NO_COLOR")

    async def steps(app: Any, pilot: Any) -> None:
        assert not app.no_color
        await compare_snapshot(app, pilot, "dashboard_colour_80x24", tmp_path)

    asyncio.run(recorded(steps))


@sqlite_only()
def test_snapshot_dashboard_without_colour(recorded: Any, tmp_path: Path) -> None:
    async def steps(app: Any, pilot: Any) -> None:
        assert app.no_color  # NO_COLOR=1, as conftest sets it
        await compare_snapshot(app, pilot, "dashboard_no_color_80x24", tmp_path)

    asyncio.run(recorded(steps))


@sqlite_only()
def test_snapshot_conversation_wide(
    recorded: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from textual.widgets import TabbedContent

    monkeypatch.delenv("NO_COLOR")

    async def steps(app: Any, pilot: Any) -> None:
        app.main.query_one("#detail", TabbedContent).active = "conversation"
        await until(
            pilot,
            lambda: "Abrimos" in text_of(app.main.query_one("#conversation-text")),
            "the conversation",
        )
        await pilot.pause()
        await compare_snapshot(app, pilot, "conversation_120x32", tmp_path)

    asyncio.run(recorded(steps, size=(120, 32)))


@sqlite_only()
def test_snapshot_qr(recorded: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from wactl.tui.screens import QrScreen

    monkeypatch.delenv("NO_COLOR")

    async def steps(app: Any, pilot: Any) -> None:
        app.push_screen(QrScreen("alpha", QR_PAYLOAD))
        await until(pilot, lambda: isinstance(app.screen, QrScreen), "the QR screen")
        await pilot.pause()
        await compare_snapshot(app, pilot, "qr_80x24", tmp_path)

    asyncio.run(recorded(steps))


@sqlite_only()
def test_snapshot_confirm_help_filter_and_banner(
    recorded: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from wactl.tui.messages import DaemonLost
    from wactl.tui.screens import ConfirmScreen, HelpScreen

    monkeypatch.delenv("NO_COLOR")

    async def steps(app: Any, pilot: Any) -> None:
        await pilot.press("x")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the question")
        await pilot.pause()
        await compare_snapshot(app, pilot, "confirm_stop_80x24", tmp_path)
        await pilot.press("n", "question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
        await pilot.pause()
        await compare_snapshot(app, pilot, "help_80x24", tmp_path)
        await pilot.press("escape", "slash", *"run")
        await until(pilot, lambda: shown(app) == ["alpha"], "the filter applied")
        for box in app.screen.query("Input"):
            box.cursor_blink = False
        await pilot.pause()
        await compare_snapshot(app, pilot, "filter_80x24", tmp_path)
        await pilot.press("escape")
        app.post_message(
            DaemonLost(
                "the daemon is not running (no socket at /run/user/1000/wactl/wactld.sock); "
                "run `wactl daemon start`",
                2.0,
            )
        )
        await until(pilot, lambda: app.main.query_one("#banner").has_class("shown"), "banner")
        await pilot.pause()
        await compare_snapshot(app, pilot, "banner_80x24", tmp_path)

    asyncio.run(recorded(steps))


#: Characters that must never reach the terminal raw (see tests/test_terminal.py).
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
HOSTILE = (
    "[/bold] x [link=https://evil.test/pay]Pay[/link] \x1b]0;pwned\x07 \x1b[2J \x9b1m \u202eexe"
)
#: How it shows: as text, each control character as an escape.
ESCAPED = (
    "[/bold] x [link=https://evil.test/pay]Pay[/link] \\x1b]0;pwned\\x07 \\x1b[2J \\x9b1m "
    "\\u202eexe"
)


@sqlite_only()
def test_hostile_text_shows_as_text_in_every_part_of_the_dashboard(
    recorded: Any, db_url: str, tmp_path: Path
) -> None:
    """Table cells, summary, conversation, worker log, banner and notifications show
    stored and relayed text as text. Before: the name `[/bold] x` in the summary
    crashed the dashboard with a MarkupError."""
    from textual.widgets import TabbedContent

    from wactl.config import load_config
    from wactl.db.models import MessageLog, Tenant
    from wactl.ipc.protocol import worker_log_path
    from wactl.tui.messages import DaemonEvent, DaemonLost, TenantsLoaded

    with db_session(db_url) as session:
        alpha = session.query(Tenant).filter_by(slug="alpha").one()
        alpha.name = HOSTILE
        assert alpha.config is not None
        alpha.config.business_name = HOSTILE
        for row in session.query(MessageLog).filter_by(tenant_id=alpha.id):
            row.message_text = f"{row.message_text} {HOSTILE}"
            row.chat = "+3460\x1b[2J"
    log = worker_log_path(load_config().log_dir, "alpha")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(f"12:00 INFO replied to {HOSTILE}\n", encoding="utf-8")
    views = [dict(row) for row in RECORDED]
    views[0].update(last_error=HOSTILE, reason=HOSTILE)

    def pane(app: Any, name: str) -> str:
        return text_of(app.main.query_one(f"#{name}-text"))

    async def steps(app: Any, pilot: Any) -> None:
        app.post_message(TenantsLoaded(views))
        await until(pilot, lambda: pane(app, "summary").count(ESCAPED) == 4, "all of it")
        summary = pane(app, "summary")  # the reason, last error, name and business name
        assert RAW.search(summary) is None
        cell_text = app.main.table.get_cell("alpha", "last_error")
        assert cell_text.plain == ESCAPED
        detail = app.main.query_one("#detail", TabbedContent)
        detail.active = "conversation"
        await until(pilot, lambda: ESCAPED in pane(app, "conversation"), "the conversation")
        assert "+3460\\x1b[2J <- hola" in pane(app, "conversation")
        detail.active = "log"
        await until(pilot, lambda: ESCAPED in pane(app, "log"), "the worker log")
        app.post_message(DaemonLost(f"unexpected OSError: {HOSTILE}", 2.0))
        await until(pilot, lambda: ESCAPED in text_of(app.main.query_one("#banner")), "banner")
        app.post_message(DaemonEvent({"event": "handoff", "slug": "alpha", "chat": HOSTILE}))
        await until(pilot, lambda: any(ESCAPED in note for note in notes(app)), "the note")
        for part in ("summary", "conversation", "log"):
            assert RAW.search(pane(app, part)) is None, part
        assert all(RAW.search(note) is None for note in notes(app))
        await pilot.pause()
        assert app.is_running  # nothing crashed the dashboard

    asyncio.run(recorded(steps))


@sqlite_only()
def test_the_dashboard_reads_well_at_80x24(recorded: Any, tmp_path: Path) -> None:
    """Before: the footer hid `? Help` and `q Quit`, the status line broke inside a
    count, and the conversation cut long replies at the pane's edge."""
    from textual.widgets import TabbedContent
    from textual.widgets._footer import FooterKey

    async def steps(app: Any, pilot: Any) -> None:
        await until(pilot, lambda: bool(app.screen.query(FooterKey)), "the footer")
        await pilot.pause()
        keys = {key.key: key for key in app.screen.query(FooterKey)}
        for wanted in ("s", "x", "r", "u", "c", "l", "slash", "question_mark", "q"):
            assert wanted in keys, wanted
            region = keys[wanted].region
            assert region.width > 0 and region.right <= 80, (wanted, region)
        status = text_of(app.main.query_one("#status")).splitlines()
        assert status == [
            "wactl · 6 tenants",
            "1 FATAL 1 BACKOFF 1 STARTING 1 STOPPING 1 RUNNING 1 STOPPED · sort SLUG ▲",
        ]
        for slug, view in zip(shown(app), RECORDED, strict=True):
            assert cell(app, slug, "slug") == view["slug"]
            assert cell(app, slug, "state") == view["state"]
        summary = app.main.query_one("#summary-text")
        assert "last error" not in text_of(summary)
        await pilot.press("down", "down")  # clinica-sol, FATAL: its error in the summary
        await until(
            pilot,
            lambda: (
                "quarantined: 5 crashes within 300 s (last: killed by SIGKILL)" in text_of(summary)
            ),
            "the error",
        )
        await pilot.press("up", "up")
        app.main.query_one("#detail", TabbedContent).active = "conversation"
        widget = app.main.query_one("#conversation-text")
        await until(pilot, lambda: "Abrimos" in text_of(widget), "the conversation")
        await pilot.pause()
        # Wrapped beside its lead, the whole reply is on screen at 78 columns.
        rendered = widget.render_lines(widget.region.reset_offset)
        text = "\n".join("".join(seg.text for seg in strip).rstrip() for strip in rendered)
        assert "¡Hola! Gracias por escribir a" in text and "Responde con un número" in text
        assert all(len(line) <= 78 for line in text.splitlines())

    asyncio.run(recorded(steps))


def test_a_qr_too_large_for_the_terminal_says_what_size_it_needs() -> None:
    """A real WhatsApp code (~240 characters) does not fit 80×24 in half blocks; a
    clipped code does not scan, so the screen says what it needs, and draws the code
    once the terminal is large enough."""
    from textual.app import App

    from wactl.tui.qr import qr_lines
    from wactl.tui.screens import QrScreen

    payload = "2@" + "A1b2C3d4E5" * 24  # the length of a real code
    lines = qr_lines(payload)
    width, height = len(lines[0]), len(lines) + 3

    class Bare(App[None]):
        def on_mount(self) -> None:
            self.push_screen(QrScreen("shop", payload))

    async def scenario() -> None:
        app = Bare()
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            shown = text_of(app.screen.query_one("#qr-code"))
            assert shown.startswith(f"This QR needs a terminal of at least {width}×{height};")
            assert "this one is 80×24." in shown and "`wactl tenant qr shop`" in shown
            await pilot.resize_terminal(width + 10, height + 2)
            await pilot.pause()
            expected = "\n".join(line.rstrip() for line in lines).rstrip("\n")
            assert text_of(app.screen.query_one("#qr-code")).rstrip("\n") == expected

    run(scenario)
