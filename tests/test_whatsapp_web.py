"""The whatsapp-web engine: its state handling alone, then real Chromium on the stand-in.

Three layers:

1. Without a browser: how the page's events become engine events (QR, ready, logout,
   messages and what is skipped), the send journal, the Chromium helpers.
2. The engine in this process with real Chromium through Playwright, on the stand-in
   for WhatsApp Web (tests/wa_standin): served for https://web.whatsapp.com/ with
   ``context.route``, or on loopback through ``browser.url``.
3. Real workers under a real daemon on SQLite and PostgreSQL, driven through the CLI
   while the test plays the phone and the customers over the stand-in's HTTP channel.

Waits are on conditions (an asyncio.Condition woken by each engine event, the stand-in's
threading.Condition, `poll_for`), never on the clock. Every browser a test starts is
gone at its end (`no_browser_left`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import select

from tests.chromium_support import chromium_executable, require_headless_shell
from tests.conftest import CLI
from tests.daemon_support import Daemon, daemon_for_cli, events_in_thread
from tests.support import db_session, poll_for
from tests.test_sandbox_engine import Recorder
from tests.wa_standin import FAKE_WPP, Session, StandIn, running_standin
from wactl.bot.engines import EngineError, InboundMessage, chromium, create_engine
from wactl.bot.engines.whatsapp_web import (
    BRIDGE_SCRIPT,
    WPP_EVENTS,
    WPP_FUNCTIONS,
    WPP_PROPERTIES,
    SentJournal,
    Skipped,
    WhatsAppWebEngine,
    chat_number,
    chat_wid,
    read_message,
)
from wactl.config import load_config
from wactl.config.model import BrowserConfig, Config, PathsConfig
from wactl.db.models import ChatState, Tenant
from wactl.errors import ConfigError, ConflictError

#: Only reached when something is broken (a loaded 2-core CI machine starts Chromium in
#: seconds, not tens of seconds).
WAIT = 60.0
#: Browsers on a loaded 2-core machine: more than the suite's 120 s per test, for the
#: tests that start several (only a failing test takes that long).
pytestmark = pytest.mark.timeout(300)
CUSTOMER = "+34600111222"
OWNER_PHONE = "34911222333"


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 180))


def wait_for(events: Recorder, condition: Callable[[], bool]) -> Coroutine[Any, Any, None]:
    async def wait() -> None:
        async with events._changed:
            await events._changed.wait_for(condition)

    return asyncio.wait_for(wait(), WAIT)


def message_data(**fields: Any) -> dict[str, Any]:
    """A chat.new_message as the bridge reports it: a customer's text by default."""
    data: dict[str, Any] = {
        "id": "false_34600111222@c.us_3A0001",
        "fromMe": False,
        "byBot": False,
        "chat": "34600111222@c.us",
        "from": "34600111222@c.us",
        "to": "34911222333@c.us",
        "author": None,
        "body": "hola",
        "type": "chat",
        "t": 1_760_000_000,
        "isGroupMsg": False,
        "isNotification": False,
        "broadcast": False,
        "isStatus": False,
        "isNewMsg": True,
    }
    data.update(fields)
    return data


# --- 1. without a browser ------------------------------------------------------------------


def test_a_customers_text_becomes_an_inbound_message() -> None:
    result = read_message(message_data(), own_number="+34911222333", answer_groups=False)
    assert result == InboundMessage(
        wa_message_id="false_34600111222@c.us_3A0001",
        chat="+34600111222",
        from_number="+34600111222",
        to_number="+34911222333",
        text="hola",
        timestamp=dt.datetime(2025, 10, 9, 8, 53, 20, tzinfo=dt.UTC),
        from_me=False,
    )


def test_what_the_owner_types_on_the_phone_is_the_takeover_signal() -> None:
    result = read_message(
        message_data(id="true_34600111222@c.us_3A0002", fromMe=True, body="I'll handle it"),
        own_number="+34911222333",
        answer_groups=False,
    )
    assert isinstance(result, InboundMessage)
    assert result.from_me
    assert (result.chat, result.from_number, result.to_number) == (
        "+34600111222",
        "+34911222333",
        "+34600111222",
    )


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"fromMe": True, "byBot": True}, "sent by this bot"),
        ({"fromMe": True, "id": "true_x_3EB0OWN"}, "sent by this bot"),
        ({"chat": "status@broadcast"}, "status update"),
        ({"isStatus": True}, "status update"),
        ({"broadcast": True}, "broadcast list"),
        ({"chat": "12345@broadcast"}, "broadcast list"),
        ({"chat": "120363@newsletter"}, "channel"),
        ({"isNotification": True}, "notification"),
        ({"type": "e2e_notification"}, "not a text message (e2e_notification)"),
        ({"type": "ciphertext"}, "not a text message (ciphertext)"),
        ({"type": "image", "body": "/9j/4AAQ"}, "not a text message (image)"),
        ({"body": "   "}, "empty text"),
        ({"body": None}, "empty text"),
        ({"isNewMsg": False}, "history, not a new message"),
        ({"chat": "120363025246125486@g.us"}, "group message (browser.answer_groups is off)"),
        ({"isGroupMsg": True}, "group message (browser.answer_groups is off)"),
        ({"id": ""}, "no message id"),
        ({"chat": None}, "no chat id"),
        ({"id": "x" * 129}, "id longer than the message log holds"),
    ],
)
def test_what_the_bot_leaves_alone(fields: dict[str, Any], reason: str) -> None:
    result = read_message(
        message_data(**fields),
        own_number="+34911222333",
        answer_groups=False,
        own_ids={"true_x_3EB0OWN"},
    )
    assert result == Skipped(reason)


def test_groups_are_answered_when_enabled_with_the_author_as_sender() -> None:
    data = message_data(chat="120363025246125486@g.us", isGroupMsg=True, author="34600999888@c.us")
    result = read_message(data, own_number="+34911222333", answer_groups=True)
    assert isinstance(result, InboundMessage)
    assert (result.chat, result.from_number) == ("120363025246125486@g.us", "+34600999888")
    assert read_message("not a dict", own_number="", answer_groups=True) == Skipped(
        "not a message object"
    )


def test_chat_ids_and_numbers() -> None:
    assert chat_number("34600111222@c.us") == "+34600111222"
    assert chat_number("34600111222@s.whatsapp.net") == "+34600111222"
    assert chat_number("123456789@lid") == "123456789@lid"
    assert chat_wid("+34600111222") == "34600111222@c.us"
    assert chat_wid("123456789@lid") == "123456789@lid"
    with pytest.raises(EngineError) as caught:
        chat_wid("sandbox:shop")
    assert caught.value.one_line() == (
        "cannot send to 'sandbox:shop': not a WhatsApp number (+E164) or chat id; "
        "numbers are written +<country code><number>"
    )


def web_config(tmp_path: Path, **browser: Any) -> Config:
    return dataclasses.replace(
        Config(),
        paths=PathsConfig(data_dir=str(tmp_path / "data")),
        browser=BrowserConfig(**browser),
    )


def linked(engine: WhatsAppWebEngine) -> bool:
    return engine.is_linked


def test_page_events_become_engine_events(tmp_path: Path) -> None:
    """The link's state machine, fed the bridge's events by hand."""

    async def scenario() -> None:
        events = Recorder()
        engine = WhatsAppWebEngine("shop", web_config(tmp_path), events)
        engine.own_number = "+34911222333"
        feed = engine.handle_page_event
        await feed("auth_code", "ref-1,keys")
        await feed("auth_code", "ref-1,keys")  # the same code again is no new QR
        await feed("auth_code", None)  # between codes
        await feed("auth_code", "ref-2,keys")
        await feed("require_auth", None)  # not linked: nothing to lose
        assert events.events == [("qr", "ref-1,keys"), ("qr", "ref-2,keys")]
        await feed("authenticated", None)
        assert not linked(engine) and events.names() == ["qr", "qr"]
        await feed("main_ready", None)
        await feed("main_ready", None)  # the watchdog repeats what it sees
        assert linked(engine) and events.names() == ["qr", "qr", "ready"]
        await feed("message", message_data())
        await feed("message", message_data(fromMe=True, byBot=True, id="true_1"))
        await feed("message", message_data(chat="status@broadcast"))
        assert events.names() == ["qr", "qr", "ready", "message"]
        await feed("logout", None)  # unlinked from the phone
        await feed("logout", None)
        assert events.names()[-1] == "logged_out" and events.names().count("logged_out") == 1
        await feed("auth_code", "ref-3,keys")
        await feed("authenticated", None)
        await feed("main_ready", None)
        await feed("require_auth", None)  # WhatsApp dropped the session
        assert events.events[-1] == (
            "disconnected",
            "WhatsApp Web asks to link the phone again",
        )
        await feed("main_ready", None)
        await feed("auth_code", "ref-4,keys")  # a QR while linked: the link is gone
        assert events.names()[-3:] == ["ready", "logged_out", "qr"]
        await feed("error", "window.WPP is missing")
        await feed("something-new", {"x": 1})
        assert events.names()[-1] == "qr"

    run(scenario)


def test_the_send_journal(tmp_path: Path) -> None:
    path = tmp_path / "shop.sent.jsonl"
    journal = SentJournal(path)
    journal.begin("wactl-shop-1", "+34600111222", "Hello!")
    journal.done("wactl-shop-1", "true_34600111222@c.us_3EB01")
    journal.begin("wactl-shop-2", "+34600111222", "Bye!")
    journal.close()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with path.open("a", encoding="utf-8") as handle:
        handle.write("{half a line\n")
    reread = SentJournal(path)
    reread.load()
    assert reread.entries["wactl-shop-1"].wa_id == "true_34600111222@c.us_3EB01"
    assert reread.entries["wactl-shop-2"].wa_id is None
    assert reread.wa_ids == {"true_34600111222@c.us_3EB01"}
    # Old lines are dropped when the journal is loaded, and the file is compacted.
    old = time.time() - SentJournal.RETENTION_SECONDS - 60
    with path.open("a", encoding="utf-8") as handle:
        for i in range(200):
            handle.write(json.dumps({"id": f"old-{i}", "chat": "+1", "sha": "x", "at": old}) + "\n")
    compacted = SentJournal(path)
    compacted.load()
    assert set(compacted.entries) == {"wactl-shop-1", "wactl-shop-2"}
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3


def test_the_bridge_uses_exactly_the_listed_wa_js_names() -> None:
    """WPP_EVENTS/WPP_FUNCTIONS are what the contract test checks in the real bundle."""
    bridge = BRIDGE_SCRIPT.read_text(encoding="utf-8")
    assert set(re.findall(r"WPP\.on\('([a-z_.]+)'", bridge)) == set(WPP_EVENTS)
    called = set(re.findall(r"(?:WPP|api)\.((?:conn|chat)\.[A-Za-z]+)\(", bridge))
    assert called == set(WPP_FUNCTIONS)
    read = set(re.findall(r"(?:WPP|api)\.(isReady|version|on)\b", bridge))
    assert read == set(WPP_PROPERTIES)
    # The stand-in raises every one of the events (that it has the functions is checked
    # in the browser, below).
    fake = FAKE_WPP.read_text(encoding="utf-8")
    for event in WPP_EVENTS:
        assert f"fire('{event}'" in fake, event


def test_the_contract_test_checks_every_name_the_engine_uses() -> None:
    """tests/test_wajs_contract.py checks wactl.wajs's lists against the real pinned
    bundle; they must be exactly what the bridge uses."""
    from wactl import wajs

    assert set(wajs.WPP_FUNCTIONS) == {f"WPP.{n}" for n in WPP_FUNCTIONS} | {"WPP.on"}
    assert set(wajs.WPP_VALUES) == {f"WPP.{n}" for n in WPP_PROPERTIES if n != "on"}
    assert set(wajs.WPP_EVENTS) == set(WPP_EVENTS)


def test_the_pinned_wa_js_is_installed_on_first_use(
    tmp_path: Path, pinned_tarball: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no browser.wa_js_path the engine injects the pinned bundle, fetching and
    verifying it the first time (here from a loopback registry serving the real one)."""
    from tests.wajs_support import loopback_registry
    from wactl import wajs
    from wactl.bot.engines.whatsapp_web import _bundle_script

    config = Config(paths=PathsConfig(data_dir=str(tmp_path / "data"), runtime_dir="/tmp"))
    monkeypatch.setenv("PATH", "/nonexistent")  # no npm: the HTTPS path
    with loopback_registry() as registry:
        registry.publish(wajs.WAJS_VERSION, pinned_tarball)
        monkeypatch.setenv("npm_config_registry", registry.url)
        path = _bundle_script(config, wajs.PINNED)
        again = _bundle_script(config, wajs.PINNED)  # verified on disk: nothing fetched
        assert len(registry.tarball_requests()) == 1
    assert path == again == wajs.bundle_path(config)
    found = wajs.installed(config)
    assert found is not None and found.verified


def test_resolving_the_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "no-chrome"
    with pytest.raises(chromium.BrowserNotFoundError) as caught:
        chromium.resolve_executable(web_config(tmp_path, executable_path=str(missing)))
    assert caught.value.one_line() == (
        f"browser.executable_path {missing} is not an executable file; install Chromium "
        "(`apt-get install chromium-headless-shell`) or fix the path "
        "(`wactl config set browser.executable_path PATH`)"
    )
    assert caught.value.exit_code == 3
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(chromium.BrowserNotFoundError) as caught:
        chromium.resolve_executable(web_config(tmp_path), playwright_default=str(missing))
    assert caught.value.one_line() == (
        "no Chromium found: browser.executable_path is empty, Playwright has no browser "
        "installed, and none of chromium-headless-shell, chromium, chromium-browser, "
        "google-chrome-stable, google-chrome is on PATH; install one "
        "(`apt-get install chromium-headless-shell`) or set browser.executable_path"
    )
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\necho 'Chromium 1.2.3.4 built on nowhere'\n")
    fake.chmod(0o755)
    assert chromium.resolve_executable(web_config(tmp_path)) == fake
    # The headless shell comes first; Debian's script (it runs a binary) as that binary.
    shell = tmp_path / "chromium-headless-shell"
    shutil.copy(fake, shell)
    assert chromium.resolve_executable(web_config(tmp_path)) == shell
    binary = tmp_path / "lib" / "chromium-headless-shell"
    binary.parent.mkdir()
    monkeypatch.setattr(chromium, "WRAPPED_BINARIES", {shell: binary})
    assert chromium.resolve_executable(web_config(tmp_path)) == shell  # no binary there
    shutil.copy(fake, binary)
    assert chromium.resolve_executable(web_config(tmp_path)) == binary
    assert chromium.browser_version(fake) == "Chromium 1.2.3.4"
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\necho 'segfault' >&2; exit 139\n")
    broken.chmod(0o755)
    with pytest.raises(ConfigError) as not_chromium:
        chromium.browser_version(broken)
    assert not_chromium.value.one_line() == (
        f"{broken} --version did not print a Chromium version (exit 139: segfault); "
        "point browser.executable_path at Chromium or Chrome"
    )


def test_the_real_browser_is_found_and_reports_its_version() -> None:
    path = chromium.resolve_executable(Config())
    assert re.fullmatch(r"Chromium \d+\.\d+\.\d+\.\d+", chromium.browser_version(path))


def test_one_owner_per_profile_and_leftovers_are_reaped(tmp_path: Path) -> None:
    profile = tmp_path / "profiles" / "shop"
    first = chromium.ProfileLock(profile)
    first.acquire()
    second = chromium.ProfileLock(profile)
    with pytest.raises(ConflictError) as caught:
        second.acquire()
    assert caught.value.one_line() == (
        f"the browser profile {profile} is in use by another worker (pid {os.getpid()}); "
        "stop it first (`wactl tenant stop`); two browsers on one profile would corrupt "
        "the linked session"
    )
    first.release()
    second.acquire()
    second.release()
    # A process left on the profile, and Chromium's stale locks.
    profile.mkdir(parents=True, exist_ok=True)
    leftover = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)", f"--user-data-dir={profile}"]
    )
    try:
        (profile / "SingletonLock").symlink_to("otherhost-12345")
        (profile / "SingletonCookie").write_text("x")
        poll_for(lambda: bool(chromium.profile_processes(profile)), timeout=10)
        assert chromium.reap_leftovers(profile) == [leftover.pid]
        # (psutil reaped our child while waiting for it, so its status is gone)
        leftover.wait(timeout=10)
        assert not chromium.profile_processes(profile)
        assert sorted(p.name for p in profile.iterdir()) == []
    finally:
        leftover.kill()
        leftover.wait()


def test_browser_config_is_validated(cli: CLI, tmp_path: Path) -> None:
    config_file = tmp_path / "c.toml"
    config_file.write_text('[browser]\nurl = "web.whatsapp.com"\n')
    result = cli("--config", str(config_file), "config", "validate")
    assert result.code == 3
    assert result.err == (
        f"error: config file {config_file}: browser.url must be an http:// or https:// URL, "
        "not 'web.whatsapp.com'; the default is \"https://web.whatsapp.com/\"\n"
    )
    config_file.write_text("[browser]\nprobe_timeout_seconds = 0\n")
    result = cli("--config", str(config_file), "config", "validate")
    assert result.code == 3
    assert "browser.probe_timeout_seconds must be greater than 0, not 0.0" in result.err
    for bad in ('"two\\nlines"', "' padded'", "'" + "x" * 513 + "'"):
        config_file.write_text(f"[browser]\nuser_agent = {bad}\n")
        result = cli("--config", str(config_file), "config", "validate")
        assert result.code == 3
        assert result.err == (
            f"error: config file {config_file}: browser.user_agent must be one line of "
            "printable text, at most 512 characters, without leading or trailing spaces; "
            "leave it empty for desktop Chrome's User-Agent\n"
        )
    config_file.write_text("[browser]\nanswer_groups = true\n")
    assert load_config(config_file).browser.answer_groups


# --- 2. the engine in this process, real Chromium ----------------------------------------


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with running_standin() as server:
        yield server


@pytest.fixture
def no_browser_left(tmp_path: Path) -> Iterator[Path]:
    """The data dir; at the end no process may run on any profile under it."""
    data = tmp_path / "data"
    yield data
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if any(str(data / "profiles") in arg for arg in (p.info["cmdline"] or []))
    ]
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    assert not leftovers, f"browsers left behind: {[p.pid for p in leftovers]}"


def standin_config(tmp_path: Path, standin: StandIn, **browser: Any) -> Config:
    settings: dict[str, Any] = {
        "url": standin.url,
        "wa_js_path": str(FAKE_WPP),
        "probe_interval_seconds": 0.5,
        "probe_timeout_seconds": 5.0,
    }
    settings.update(browser)
    return web_config(tmp_path, **settings)


@contextlib.asynccontextmanager
async def started(
    config: Config, **options: Any
) -> AsyncIterator[tuple[WhatsAppWebEngine, Recorder]]:
    """Tenant "shop"'s engine, started, with a `Recorder` of what it reports; stopped at
    the end however the block ends."""
    events = Recorder()
    engine = WhatsAppWebEngine("shop", config, events, **options)
    await engine.start()
    try:
        yield engine, events
    finally:
        await engine.stop()


async def link(engine: WhatsAppWebEngine, events: Recorder, standin: StandIn) -> Session:
    """Start showing QRs, scan the newest, wait for ready; returns the page's session."""
    await wait_for(events, lambda: bool(events.qrs()))
    session = await asyncio.to_thread(standin.scan, events.qrs()[-1], me=OWNER_PHONE)
    await wait_for(events, lambda: "ready" in events.names())
    return session


def browser_pids(profile: Path) -> list[int]:
    return [p.pid for p in chromium.profile_processes(profile)]


@pytest.mark.parametrize("browser", ["headless-shell", "chromium"])
def test_the_engine_on_web_whatsapp_com_under_its_csp(
    tmp_path: Path, standin: StandIn, no_browser_left: Path, browser: str
) -> None:
    """https://web.whatsapp.com/ served by the stand-in through context.route, with a
    policy that forbids inline scripts: wa-js and the bridge run anyway, and the whole
    conversation works; on the headless shell (the default) and on the full browser."""

    async def route_to_standin(context: Any) -> None:
        async def handle(route: Any) -> None:
            path = route.request.url.removeprefix("https://web.whatsapp.com/")
            response = await route.fetch(url=standin.url + path)
            await route.fulfill(response=response)

        await context.route("https://web.whatsapp.com/**", handle)

    if browser == "chromium":
        executable = str(chromium_executable())
    else:
        require_headless_shell()
        executable = ""
    config = standin_config(
        tmp_path, standin, url="https://web.whatsapp.com/", executable_path=executable
    )

    async def scenario() -> None:
        async with started(config, prepare_context=route_to_standin) as (engine, events):
            assert engine.executable is not None
            assert chromium.is_headless_shell(engine.executable) == (browser == "headless-shell")
            session = await link(engine, events, standin)
            assert engine.own_number == f"+{OWNER_PHONE}"
            assert engine.page is not None
            assert engine.page.url == "https://web.whatsapp.com/"
            # The page's inline script was blocked by the policy; ours were not.
            assert await engine.page.evaluate("document.body.dataset.inline") is None
            assert await engine.page.evaluate("typeof window.__wactl.send") == "function"
            # The stand-in has every wa-js function the bridge calls.
            kinds = await engine.page.evaluate(
                "(names) => names.map((n) => typeof n.split('.').reduce((o, k) => o[k], WPP))",
                list(WPP_FUNCTIONS),
            )
            assert kinds == ["function"] * len(WPP_FUNCTIONS)
            message_id = await asyncio.to_thread(standin.customer_writes, session, CUSTOMER, "hola")
            await wait_for(events, lambda: "message" in events.names())
            inbound = events.events[-1][1]
            assert (inbound.wa_message_id, inbound.chat, inbound.text) == (
                message_id,
                CUSTOMER,
                "hola",
            )
            assert inbound.to_number == f"+{OWNER_PHONE}" and not inbound.from_me
            wa_id = await engine.send_text(CUSTOMER, "Hello, how can I help?", client_id="c-1")
            assert re.fullmatch(r"true_34600111222@c\.us_3EB0[0-9A-F]{16}", wa_id)
            assert standin.sent_to(session, CUSTOMER) == ["Hello, how can I help?"]
            # The bot's own message came back as chat.new_message before the send
            # returned: it is not mistaken for the owner typing.
            await asyncio.to_thread(standin.customer_writes, session, CUSTOMER, "gracias")
            await wait_for(events, lambda: events.names().count("message") == 2)
            assert [m.text for n, m in events.events if n == "message"] == ["hola", "gracias"]
            # A resend of the same reply (recovery) is not delivered twice.
            assert await engine.send_text(CUSTOMER, "Hello, how can I help?", client_id="c-1") == (
                wa_id
            )
            assert standin.sent_to(session, CUSTOMER) == ["Hello, how can I help?"]
            with pytest.raises(EngineError, match="WhatsApp Web refused the message to 12345@x"):
                await engine.send_text("12345@x", "hi", client_id="c-2")
        assert not browser_pids(engine.profile)

    run(scenario)


def test_a_restart_keeps_the_link_and_knows_what_was_sent(
    tmp_path: Path, standin: StandIn, no_browser_left: Path
) -> None:
    config = standin_config(tmp_path, standin)

    async def first_run() -> None:
        async with started(config) as (engine, events):
            await link(engine, events, standin)
            await engine.send_text(CUSTOMER, "first reply", client_id="c-1")
            # A crash in the middle of a send: the journal line is written, the message
            # reaches WhatsApp, and the worker dies before it records WhatsApp's id.
            engine.journal.begin("c-2", CUSTOMER, "second reply")
            assert engine.page is not None
            await engine.page.evaluate(
                "([c, t]) => window.__wactl.send(c, t)", ["34600111222@c.us", "second reply"]
            )
            # ...and one that crashed before anything reached WhatsApp.
            engine.journal.begin("c-3", CUSTOMER, "third reply")

    async def second_run() -> None:
        async with started(config) as (engine, events):
            await wait_for(events, lambda: "ready" in events.names())
            assert events.names() == ["ready"]  # no QR: the profile is the linked device
            assert await engine.was_sent("c-1") is True  # journal
            assert await engine.was_sent("c-2") is True  # the chat shows it
            assert await engine.was_sent("c-3") is False  # started, never reached WhatsApp
            assert await engine.was_sent("c-4") is False  # never started

    run(first_run)
    run(second_run)
    assert len(standin.sessions) == 1


def test_a_second_engine_on_the_profile_is_refused(
    tmp_path: Path, standin: StandIn, no_browser_left: Path
) -> None:
    config = standin_config(tmp_path, standin)

    async def scenario() -> None:
        async with started(config) as (engine, events):
            await wait_for(events, lambda: bool(events.qrs()))
            running = browser_pids(engine.profile)
            intruder = WhatsAppWebEngine("shop", config, Recorder())
            with pytest.raises(ConflictError) as caught:
                await intruder.start()
            assert caught.value.message == (
                f"the browser profile {engine.profile} is in use by another worker "
                f"(pid {os.getpid()})"
            )
            # The owner's browser was not touched.
            assert browser_pids(engine.profile) == running
            assert engine.page is not None
            assert (await engine.page.evaluate("window.__wactl.state()"))["ready"]

    run(scenario)


def test_logout_unlinks_wipes_the_profile_and_shows_a_new_qr(
    tmp_path: Path, standin: StandIn, no_browser_left: Path
) -> None:
    config = standin_config(tmp_path, standin)

    async def scenario() -> None:
        async with started(config) as (engine, events):
            first = await link(engine, events, standin)
            marker = engine.profile / "wactl-test-marker"
            marker.write_text("linked device")
            await engine.logout()
            assert events.names()[-1] == "logged_out"
            assert not marker.exists()
            assert ("logout", {}) in first.events  # WhatsApp heard it
            await wait_for(events, lambda: events.names()[-1] == "qr")
            new = await asyncio.to_thread(standin.session_showing, events.qrs()[-1])
            assert new.id != first.id  # a new device: the old keys are gone
            assert not engine.is_linked

    run(scenario)


def test_a_qr_that_went_idle_is_refreshed(
    tmp_path: Path, standin: StandIn, no_browser_left: Path
) -> None:
    """WhatsApp Web stops rotating the QR of an unattended page; the owner who comes to
    scan later must find a live code, not the last one shown."""
    config = standin_config(tmp_path, standin)

    async def scenario() -> None:
        async with started(config) as (_engine, events):
            await wait_for(events, lambda: bool(events.qrs()))
            session = await asyncio.to_thread(standin.session_showing, events.qrs()[-1])
            shown = len(events.qrs())
            standin.command(session, "qr_idle")
            await asyncio.to_thread(standin.wait, lambda: ("qr_idle", {}) in session.events)
            # Rotation has stopped (and the next would be a minute away): only the
            # refresh adds a code, and it may already have by now.
            await asyncio.to_thread(standin.wait, lambda: ("refresh_qr", {}) in session.events)
            await wait_for(events, lambda: len(events.qrs()) > shown)
            fresh = events.qrs()[-1]
            assert (await asyncio.to_thread(standin.session_showing, fresh)).id == session.id
            order = [(name, data.get("qr")) for name, data in session.events]
            assert order.index(("qr", fresh)) > order.index(("refresh_qr", None))

    run(scenario)


def test_the_phone_unlinking_reports_logged_out_and_a_new_qr(
    tmp_path: Path, standin: StandIn, no_browser_left: Path
) -> None:
    config = standin_config(tmp_path, standin)

    async def scenario() -> None:
        async with started(config) as (engine, events):
            session = await link(engine, events, standin)
            qrs = len(events.qrs())
            standin.command(session, "phone_logout")
            await wait_for(events, lambda: len(events.qrs()) > qrs)
            assert events.names()[-2:] == ["logged_out", "qr"]

    run(scenario)


async def failure_of(engine: WhatsAppWebEngine) -> str:
    with pytest.raises(EngineError) as caught:
        await asyncio.wait_for(engine.watch(), WAIT)
    return caught.value.one_line()


def test_no_ready_after_the_scan_is_a_failure(tmp_path: Path, no_browser_left: Path) -> None:
    with running_standin(withhold_ready=True) as standin:
        config = standin_config(tmp_path, standin, ready_timeout_seconds=2.0)

        async def scenario() -> None:
            async with started(config) as (engine, events):
                await wait_for(events, lambda: bool(events.qrs()))
                await asyncio.to_thread(standin.scan, events.qrs()[-1])
                assert await failure_of(engine) == (
                    "linked, but WhatsApp Web did not become ready within 2 s; "
                    "the daemon restarts the worker with a fresh browser"
                )
                assert "ready" not in events.names()

        run(scenario)


def test_a_page_without_wa_js_is_a_failure(
    tmp_path: Path, standin: StandIn, no_browser_left: Path
) -> None:
    empty = tmp_path / "not-wa-js.js"
    empty.write_text("// nothing\n")
    config = standin_config(tmp_path, standin, wa_js_path=str(empty), ready_timeout_seconds=2.0)

    async def scenario() -> None:
        async with started(config) as (engine, _events):
            assert await failure_of(engine) == (
                "WhatsApp Web did not load within 2 s (wa-js not ready); "
                "the daemon restarts the worker with a fresh browser"
            )

    run(scenario)


def test_the_browser_says_desktop_chrome_not_headless(
    tmp_path: Path, standin: StandIn, no_browser_left: Path
) -> None:
    """WhatsApp Web (and the stand-in) turns HeadlessChrome away; the engine sends desktop
    Chrome's User-Agent with the browser's own major version, in the HTTP header and in
    navigator.userAgent alike."""
    major = chromium.browser_version(chromium.resolve_executable(Config())).split()[1]
    expected = (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        f"Chrome/{major.split('.')[0]}.0.0.0 Safari/537.36"
    )

    async def scenario() -> None:
        async with started(standin_config(tmp_path, standin)) as (engine, events):
            session = await link(engine, events, standin)
        assert engine.user_agent == expected
        assert session.user_agents[0] == (expected, expected)

    run(scenario)


def test_a_configured_user_agent_is_sent_and_a_headless_one_is_turned_away(
    tmp_path: Path, standin: StandIn, no_browser_left: Path
) -> None:
    own = "Mozilla/5.0 (X11; Linux x86_64) Chrome/150.0.0.0 Safari/537.36 wactl-test"
    headless = "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/150.0.0.0 Safari/537.36"

    async def scenario(agent: str) -> tuple[Recorder, str | None]:
        config = standin_config(tmp_path, standin, user_agent=agent, ready_timeout_seconds=3.0)
        async with started(config) as (engine, events):
            if agent == own:
                await wait_for(events, lambda: bool(events.qrs()))
                return events, None
            return events, await failure_of(engine)

    events, _ = asyncio.run(asyncio.wait_for(scenario(own), 180))
    session = standin.session_showing(events.qrs()[-1])
    assert session.user_agents == [(own, own)]
    events, failure = asyncio.run(asyncio.wait_for(scenario(headless), 180))
    assert failure == (
        "WhatsApp Web did not load within 3 s (wa-js not ready); "
        "the daemon restarts the worker with a fresh browser"
    )
    assert not events.qrs()
    seen = [agents for s in standin.sessions.values() for agents in s.user_agents]
    assert seen == [(own, own), (headless, headless)]


def test_the_user_agent_follows_the_browsers_version(tmp_path: Path) -> None:
    assert chromium.user_agent_for("Chromium 156.0.8078.108 built on Debian") == (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/156.0.0.0 Safari/537.36"
    )
    assert chromium.user_agent_for("Google Chrome 99.1.2.3").count("Chrome/99.0.0.0") == 1
    with pytest.raises(ConfigError) as caught:
        chromium.user_agent_for("Chromium")
    assert caught.value.one_line() == (
        "cannot tell the browser's version from 'Chromium'; set browser.user_agent"
    )
    fake = tmp_path / "chromium"
    fake.write_text("#!/bin/sh\necho 'Chromium 120.0.1.2'\n")
    fake.chmod(0o755)
    assert "Chrome/120.0.0.0 " in chromium.user_agent(web_config(tmp_path), fake)
    assert chromium.user_agent(web_config(tmp_path, user_agent="X/1"), fake) == "X/1"


def test_a_hung_page_is_a_failure(tmp_path: Path, standin: StandIn, no_browser_left: Path) -> None:
    config = standin_config(tmp_path, standin, probe_timeout_seconds=2.0)

    async def scenario() -> None:
        async with started(config) as (engine, events):
            session = await link(engine, events, standin)
            standin.command(session, "hang")
            assert await failure_of(engine) == (
                "the WhatsApp Web page stopped answering (no answer to a wa-js call within "
                "2 s); the daemon restarts the worker with a fresh browser"
            )
        assert not browser_pids(engine.profile)

    run(scenario)


def renderers(root: int) -> list[psutil.Process]:
    """The renderer processes among ``root``'s descendants."""
    found = []
    for proc in psutil.Process(root).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "--type=renderer" in proc.cmdline():
                found.append(proc)
    return found


def test_a_crashed_page_is_a_failure(
    tmp_path: Path, standin: StandIn, no_browser_left: Path
) -> None:
    config = standin_config(tmp_path, standin)

    async def scenario() -> None:
        async with started(config) as (engine, events):
            await wait_for(events, lambda: bool(events.qrs()))
            for proc in renderers(os.getpid()):
                proc.kill()
            assert await failure_of(engine) == (
                "the WhatsApp Web page crashed; the daemon restarts the worker with a fresh browser"
            )

    run(scenario)


def test_our_disabled_features_keep_playwrights(tmp_path: Path, no_browser_left: Path) -> None:
    """Chromium reads the last --disable-features only; ours must repeat Playwright's."""

    async def scenario() -> None:
        from playwright.async_api import async_playwright

        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                no_browser_left / "profiles" / "bare",
                executable_path=chromium.resolve_executable(Config()),
                headless=True,
            )
            try:
                marker = f"--user-data-dir={no_browser_left / 'profiles' / 'bare'}"
                browser = next(
                    p
                    for p in psutil.Process().children(recursive=True)
                    if marker in p.cmdline() and "--type" not in " ".join(p.cmdline())
                )
                disabled = [a for a in browser.cmdline() if a.startswith("--disable-features=")]
            finally:
                await context.close()
        assert len(disabled) == 1
        theirs = set(disabled[0].removeprefix("--disable-features=").split(","))
        assert theirs <= set(chromium.PLAYWRIGHT_DISABLED_FEATURES)
        ours = [f for f in chromium.CHROMIUM_FLAGS if f.startswith("--disable-features=")]
        assert set(ours[0].split("=", 1)[1].split(",")) >= theirs

    run(scenario)


def test_the_registry_builds_the_whatsapp_web_engine(tmp_path: Path) -> None:
    engine = create_engine("whatsapp-web", "shop", web_config(tmp_path), Recorder())
    assert isinstance(engine, WhatsAppWebEngine)
    assert engine.profile == tmp_path / "data" / "profiles" / "shop"


# --- 3. real workers under a real daemon -----------------------------------------------------


def browser_env(standin: StandIn) -> dict[str, str]:
    return {
        "WACTL_BROWSER_URL": standin.url,
        "WACTL_BROWSER_WA_JS_PATH": str(FAKE_WPP),
        "WACTL_BROWSER_PROBE_INTERVAL_SECONDS": "0.5",
        "WACTL_BROWSER_PROBE_TIMEOUT_SECONDS": "5",
        "WACTL_PIPELINE_PACING_MS_PER_CHAR": "0",
        # Chromium starting on a loaded 2-core machine can starve a worker's loop for a
        # moment; the daemon tests' 2 s would call that a hang.
        "WACTL_DAEMON_HEARTBEAT_TIMEOUT_SECONDS": "15",
    }


@pytest.fixture
def web_daemon(
    db_url: str, monkeypatch: pytest.MonkeyPatch, standin: StandIn, isolated_env: Path
) -> Iterator[Daemon]:
    data = isolated_env / ".local/share/wactl"
    try:
        with daemon_for_cli(monkeypatch, browser_env(standin)) as daemon:
            yield daemon
    finally:
        left = [
            p
            for p in psutil.process_iter(["cmdline"])
            if any(str(data / "profiles") in a for a in (p.info["cmdline"] or []))
        ]
        for proc in left:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        assert not left, f"browsers left behind: {[p.pid for p in left]}"


def create_and_start(cli: CLI, slug: str = "shop") -> None:
    result = cli(
        "tenant",
        "create",
        slug,
        "--name",
        "Casa Pepe",
        "--template",
        "restaurant",
        "--language",
        "en",
        "--engine",
        "whatsapp-web",
    )
    assert result.code == 0, result.err
    result = cli("tenant", "start", slug)
    assert result.code == 0, result.err


def current_qr(daemon: Daemon, slug: str = "shop") -> str:
    found: list[str] = []

    def showing() -> bool:
        qr = daemon.client.request("GET", f"/v1/tenants/{slug}/qr")["qr"]
        if qr:
            found.append(qr)
        return bool(qr)

    poll_for(showing, timeout=WAIT)
    return found[-1]


def link_tenant(daemon: Daemon, standin: StandIn, slug: str = "shop") -> Session:
    session = standin.scan(current_qr(daemon, slug), me=OWNER_PHONE)
    daemon_ps_until(daemon, slug, lambda row: row["session_state"] == "CONNECTED")
    return session


def ready_count(session: Session) -> int:
    """How many times a page of this session became ready (one per browser start)."""
    return sum(1 for name, _ in session.events if name == "ready")


def daemon_ps_until(
    daemon: Daemon, slug: str, condition: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    row: dict[str, Any] = {}

    def met() -> bool:
        row.update(daemon.ps()[slug])
        return condition(row)

    poll_for(met, timeout=WAIT)
    return row


def log_json(cli: CLI, slug: str = "shop") -> list[dict[str, Any]]:
    result = cli("tenant", "logs", slug, "--json")
    assert result.code == 0, result.err
    rows: list[dict[str, Any]] = json.loads(result.out)
    return rows


def drawn(qr: str) -> str:
    import segno

    out = io.StringIO()
    segno.make(qr, error="m").terminal(out=out, compact=True, border=2)
    return out.getvalue()


def test_link_answer_takeover_and_logout_through_the_daemon(
    cli: CLI, web_daemon: Daemon, standin: StandIn, db_url: str, isolated_env: Path
) -> None:
    create_and_start(cli)
    qr = current_qr(web_daemon)
    # `wactl tenant qr` draws exactly the code the page shows.
    result = cli("tenant", "qr", "shop")
    assert result.code == 0, result.err
    assert result.out == drawn(qr)
    assert "shop: scan this with WhatsApp on the business's phone" in result.err
    session = standin.session_showing(qr)
    assert session.qr == qr
    standin.scan(qr, me=OWNER_PHONE)
    assert cli("tenant", "qr", "shop", "--wait", "--timeout", str(WAIT)).code == 0
    with db_session(db_url) as db:
        tenant = db.scalar(select(Tenant).where(Tenant.slug == "shop"))
        assert tenant is not None and tenant.session is not None
        assert tenant.status.value == "CONNECTED" and tenant.session.last_qr is None
    # A customer writes; the template's reply reaches WhatsApp through sendTextMessage.
    first_id = standin.customer_writes(session, CUSTOMER, "hi")
    standin.wait(lambda: standin.sent_to(session, CUSTOMER))
    rows = log_json(cli)
    assert [(r["direction"], r["state"], r["wa_message_id"]) for r in rows] == [
        ("IN", "ANSWERED", first_id),
        ("OUT", "SENT", session.sent[0]["id"]),
    ]
    assert standin.sent_to(session, CUSTOMER) == [rows[1]["text"]]
    assert "Casa Pepe" in rows[1]["text"]
    assert (rows[0]["from"], rows[0]["to"], rows[0]["chat"]) == (
        CUSTOMER,
        f"+{OWNER_PHONE}",
        CUSTOMER,
    )
    # The owner answers by hand on the phone: the bot stays quiet in that chat.
    standin.customer_writes(session, CUSTOMER, "I'll call you", fromMe=True)
    poll_for(lambda: any(r["kind"] == "owner" for r in log_json(cli)), timeout=WAIT)
    with db_session(db_url) as db:
        assert db.scalar(select(ChatState.pause_reason).where(ChatState.chat == CUSTOMER)) == (
            "owner"
        )
    standin.customer_writes(session, CUSTOMER, "ok, thanks")
    poll_for(lambda: log_json(cli)[-1]["state"] == "IGNORED", timeout=WAIT)
    assert len(standin.sent_to(session, CUSTOMER)) == 1  # no second bot reply
    assert [r["kind"] for r in log_json(cli)] == [None, "greeting", "owner", None]
    # Logout: WhatsApp hears it, the profile is wiped, a new device shows a new QR.
    profile = isolated_env / ".local/share/wactl/profiles/shop"
    (profile / "wactl-test-marker").write_text("x")
    result = cli("tenant", "logout", "shop")
    assert result.code == 0, result.err
    assert ("logout", {}) in session.events
    assert not (profile / "wactl-test-marker").exists()
    new_qr = current_qr(web_daemon)
    assert standin.session_showing(new_qr).id != session.id
    with db_session(db_url) as db:
        tenant = db.scalar(select(Tenant).where(Tenant.slug == "shop"))
        assert tenant is not None and tenant.status.value == "QR_PENDING"
    assert cli("tenant", "stop", "shop").code == 0


@pytest.mark.parametrize("backend", ["sqlite"])  # supervision; the database plays no part
def test_a_crashed_page_restarts_the_worker_with_backoff(
    cli: CLI, web_daemon: Daemon, standin: StandIn
) -> None:
    events: list[dict[str, Any]] = []
    reader = threading.Thread(
        target=events_in_thread, args=(web_daemon.client, events), daemon=True
    )
    reader.start()
    poll_for(lambda: web_daemon.client.request("GET", "/v1/status")["event_subscribers"] == 1)
    create_and_start(cli)
    session = link_tenant(web_daemon, standin)
    for crash in (1, 2):
        pid = web_daemon.ps()["shop"]["pid"]
        killed = renderers(pid)
        assert killed
        for proc in killed:
            proc.kill()
        # A new worker, whose new browser is linked again (no QR: the profile is kept).
        starts = crash + 1
        standin.wait(lambda: ready_count(session) == starts, timeout=WAIT)  # noqa: B023
        row = daemon_ps_until(
            web_daemon,
            "shop",
            lambda r: r["pid"] not in (None, pid) and r["session_state"] == "CONNECTED",  # noqa: B023
        )
        assert row["restarts"] == crash
        assert row["last_error"] == "exited with code 1"
    states = [
        (e["state"], e["reason"]) for e in events if e["event"] == "worker" and e["slug"] == "shop"
    ]
    assert states.count(("BACKOFF", "exited with code 1")) == 2
    log = cli("tenant", "logs", "shop", "--worker").out
    assert log.count("whatsapp-web: the WhatsApp Web page crashed") == 2
    # The profile survived: the restarted worker came back linked, with no new QR.
    assert len(standin.sessions) == 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_silent_page_restarts_the_worker(cli: CLI, web_daemon: Daemon, standin: StandIn) -> None:
    create_and_start(cli)
    session = link_tenant(web_daemon, standin)
    old = web_daemon.ps()["shop"]["pid"]
    standin.command(session, "hang")
    standin.wait(lambda: ready_count(session) == 2, timeout=WAIT)
    row = daemon_ps_until(
        web_daemon,
        "shop",
        lambda r: r["pid"] not in (None, old) and r["session_state"] == "CONNECTED",
    )
    assert row["last_error"] == "exited with code 1"
    log = cli("tenant", "logs", "shop", "--worker").out
    assert "the WhatsApp Web page stopped answering (no answer to a wa-js call within 5 s)" in log


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_second_worker_on_the_same_profile_exits_6(
    cli: CLI, web_daemon: Daemon, standin: StandIn
) -> None:
    """Another node (its own runtime dir) starting the same tenant on the same data dir."""
    create_and_start(cli)
    current_qr(web_daemon)
    owner = web_daemon.ps()["shop"]["pid"]
    env = dict(os.environ)
    runtime = tempfile.mkdtemp(prefix="wt2", dir="/tmp")  # short: AF_UNIX paths
    env["WACTL_PATHS_RUNTIME_DIR"] = runtime
    try:
        second = subprocess.run(
            [sys.executable, "-m", "wactl.bot", "shop"],
            env=env,
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    assert second.returncode == 6
    profile = Path(env["XDG_DATA_HOME"]) / "wactl" / "profiles" / "shop"
    log = cli("tenant", "logs", "shop", "--worker").out
    assert (
        f"the browser profile {profile} is in use by another worker (pid {owner}); "
        "stop it first (`wactl tenant stop`)" in log
    )
    assert web_daemon.ps()["shop"]["pid"] == owner  # the owner is untouched


def link_saved(profile: Path) -> bool:
    """Whether the stand-in's link has reached the profile's files on disk."""
    storage = profile / "Default" / "Local Storage" / "leveldb"
    return any(
        b"standin.authenticated" in path.read_bytes()
        for path in storage.glob("*")
        if path.suffix in (".log", ".ldb")
    )


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_browser_left_by_a_killed_worker_is_reaped(
    cli: CLI, web_daemon: Daemon, standin: StandIn, isolated_env: Path
) -> None:
    create_and_start(cli)
    session = link_tenant(web_daemon, standin)
    worker = web_daemon.ps()["shop"]["pid"]
    profile = isolated_env / ".local/share/wactl/profiles/shop"
    browser = next(
        p
        for p in chromium.profile_processes(profile)
        if not any(arg.startswith("--type=") for arg in p.cmdline())
    )
    # Chromium writes localStorage (where the stand-in keeps the link, as WhatsApp Web
    # keeps its keys in the profile) to disk a few seconds after the page sets it; a kill
    # before that would lose the link, with real WhatsApp Web too.
    poll_for(lambda: link_saved(profile), timeout=WAIT)
    # A hung browser outlives its worker: Chromium quits by itself when Playwright's pipe
    # closes, unless it is stuck; a stopped one is.
    browser.send_signal(signal.SIGSTOP)
    os.killpg(worker, signal.SIGKILL)
    standin.wait(lambda: ready_count(session) == 2, timeout=WAIT)
    row = daemon_ps_until(
        web_daemon,
        "shop",
        lambda r: r["pid"] not in (None, worker) and r["session_state"] == "CONNECTED",
    )
    assert row["last_error"] == "killed by SIGKILL"
    assert not browser.is_running() or browser.status() == psutil.STATUS_ZOMBIE
    log = cli("tenant", "logs", "shop", "--worker").out
    assert re.search(
        r"killed \d+ browser processes a previous worker left on " + re.escape(str(profile)), log
    )
