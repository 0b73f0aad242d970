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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
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
from tests.wa_standin import FAKE_WPP, LID, LID_HIDDEN, Session, StandIn, running_standin
from wactl import wajs_api
from wactl.bot.engines import EngineError, InboundMessage, chromium, create_engine
from wactl.bot.engines.whatsapp_web import (
    BRIDGE_SCRIPT,
    Skipped,
    WhatsAppWebEngine,
    chat_number,
    chat_wid,
    customer_id,
    device_name,
    message_chat,
    read_message,
    wpp_config_script,
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


@contextlib.contextmanager
def caplog_of(name: str) -> Iterator[list[str]]:
    """The messages logged to ``name`` inside the block (at INFO and above)."""
    import logging

    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    logger = logging.getLogger(name)
    handler, level = Keep(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def until(condition: Callable[[], object], timeout: float = WAIT) -> None:
    """Poll ``condition`` on the event loop (for what only the engine's own state says)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(0.02)


def message_data(**fields: Any) -> dict[str, Any]:
    """A chat.new_message as the bridge reports it: a customer's text by default."""
    data: dict[str, Any] = {
        "id": "false_34600111222@c.us_3A0001",
        "fromMe": False,
        "byBot": False,
        "chat": "34600111222@c.us",
        "chatPn": None,
        "from": "34600111222@c.us",
        "to": "34911222333@c.us",
        "author": None,
        "authorPn": None,
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


def test_a_lid_chat_is_the_customers_number_when_whatsapp_web_knows_it() -> None:
    """Most one-to-one chats are NNN@lid now; the customer stays one identity, their
    number, whichever chat id WhatsApp Web uses (contact/functions/getPnLidEntry.ts)."""
    lid = "204512345678901@lid"
    known = read_message(
        message_data(
            id=f"false_{lid}_3A0009", chat=lid, chatPn="34600111222@c.us", **{"from": lid}
        ),
        own_number="+34911222333",
        answer_groups=False,
    )
    assert isinstance(known, InboundMessage)
    assert (known.chat, known.from_number) == ("+34600111222", "+34600111222")
    assert known.wa_message_id == f"false_{lid}_3A0009"  # the dedup key is WhatsApp's id
    hidden = read_message(
        message_data(id=f"false_{lid}_3A000A", chat=lid, **{"from": lid}),
        own_number="+34911222333",
        answer_groups=False,
    )
    assert isinstance(hidden, InboundMessage)
    assert (hidden.chat, hidden.from_number) == (lid, lid)
    # The owner typing in the LID chat pauses the same identity.
    owner = read_message(
        message_data(id=f"true_{lid}_3A000B", chat=lid, chatPn="34600111222@c.us", fromMe=True),
        own_number="+34911222333",
        answer_groups=False,
    )
    assert isinstance(owner, InboundMessage) and owner.from_me
    assert (owner.chat, owner.to_number) == ("+34600111222", "+34600111222")
    assert customer_id(lid, "not a wid") == lid
    assert customer_id("34600111222@c.us", None) == "+34600111222"


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


def test_the_bots_own_reply_is_known_by_its_id_not_its_chat() -> None:
    """sendTextMessage("34600111222@c.us") resolves to the customer's @lid chat, and the
    reply's chat.new_message names that chat; its id is what the engine reserved."""
    own = "true_204512345678901@lid_3EB0AAAABBBBCCCCDDDDEE"
    result = read_message(
        message_data(id=own, chat="204512345678901@lid", fromMe=True, body="Hi!"),
        own_number="+34911222333",
        answer_groups=False,
        own_ids={own},
    )
    assert result == Skipped("sent by this bot")


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
        ({"type": "ciphertext"}, "not decrypted yet (wa-js reports it again once it is)"),
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
    data = message_data(
        chat="120363025246125486@g.us",
        isGroupMsg=True,
        author="204512345678901@lid",
        authorPn="34600999888@c.us",
    )
    result = read_message(data, own_number="+34911222333", answer_groups=True)
    assert isinstance(result, InboundMessage) and result.from_number == "+34600999888"
    assert read_message("not a dict", own_number="", answer_groups=True) == Skipped(
        "not a message object"
    )


def test_chat_ids_and_numbers() -> None:
    assert chat_number("34600111222@c.us") == "+34600111222"
    assert chat_number("34600111222@s.whatsapp.net") == "+34600111222"
    assert chat_number("123456789@lid") == "123456789@lid"
    assert chat_wid("+34600111222") == "34600111222@c.us"
    assert chat_wid("123456789@lid") == "123456789@lid"
    assert message_chat("true_123456789@lid_3EB0AB") == "123456789@lid"
    assert message_chat("false_34600111222@c.us_3A01_34600999888@c.us") == "34600111222@c.us"
    assert message_chat("wactl-shop-12") is None
    for bad in ("sandbox:shop", "123@x", "+34 600", "12@c.us@lid"):
        with pytest.raises(EngineError) as caught:
            chat_wid(bad)
        assert caught.value.one_line() == (
            f"cannot send to {bad!r}: not a WhatsApp number (+E164) or chat id; "
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


def test_the_link_is_authenticated_and_main_not_main_ready(tmp_path: Path) -> None:
    """The link's state machine, fed the bridge's events by hand, as wa-js 4.6.0 fires
    them: conn.main_ready comes on the QR screen too and is ignored; only the
    authenticated state plus stream mode MAIN is a link."""

    async def scenario() -> None:
        events = Recorder()
        engine = WhatsAppWebEngine("shop", web_config(tmp_path), events)
        engine.own_number = "+34911222333"
        feed = engine.handle_page_event
        # An unlinked page: mode QR, main_ready (not even listened to), codes.
        await feed("stream_mode", {"mode": "QR", "authenticated": False})
        await feed("main_ready", None)
        await feed("require_auth", None)
        await feed("auth_code", "ref-1,keys")
        await feed("auth_code", "ref-1,keys")  # the same code again is no new QR
        await feed("auth_code", None)  # between codes
        await feed("auth_code", "ref-2,keys")
        await feed("state", {"ready": True, "authenticated": False, "mode": "QR"})
        assert events.events == [("qr", "ref-1,keys"), ("qr", "ref-2,keys")]
        assert not linked(engine)
        # The scan: authenticated, still syncing; ready only in MAIN.
        await feed("auth_code", None)
        await feed("stream_mode", {"mode": "SYNCING", "authenticated": True})
        await feed("authenticated", None)
        assert not linked(engine) and events.names() == ["qr", "qr"]
        await feed("stream_mode", {"mode": "MAIN", "authenticated": True})
        await feed("state", {"ready": True, "authenticated": True, "mode": "MAIN"})
        assert linked(engine) and events.names() == ["qr", "qr", "ready"]
        await feed("message", message_data())
        await feed("message", message_data(fromMe=True, byBot=True, id="true_1"))
        await feed("message", message_data(chat="status@broadcast"))
        assert events.names() == ["qr", "qr", "ready", "message"]
        # Connection trouble while linked: disconnected, then ready again.
        await feed("stream_mode", {"mode": "OFFLINE", "authenticated": True})
        assert events.events[-1] == (
            "disconnected",
            "WhatsApp Web is offline (no connection to WhatsApp)",
        )
        await feed("stream_mode", {"mode": "MAIN", "authenticated": True})
        assert events.names()[-1] == "ready" and linked(engine)
        await feed("logout", None)  # unlinked from the phone
        await feed("logout", None)
        assert events.names()[-1] == "logged_out" and events.names().count("logged_out") == 1
        # The page reloads after a logout and shows a QR.
        await feed("stream_mode", {"mode": "QR", "authenticated": False})
        await feed("auth_code", "ref-3,keys")
        assert events.names()[-1] == "qr"
        await feed("stream_mode", {"mode": "MAIN", "authenticated": True})
        await feed("require_auth", None)  # WhatsApp dropped the session
        assert events.events[-1] == (
            "disconnected",
            "WhatsApp Web asks to link the phone again",
        )
        await feed("stream_mode", {"mode": "MAIN", "authenticated": True})
        await feed("auth_code", "ref-4,keys")  # a QR while linked: the link is gone
        assert events.names()[-3:] == ["ready", "logged_out", "qr"]
        # A probe that finds the page unauthenticated while linked: the logout was missed.
        await feed("state", {"ready": True, "authenticated": True, "mode": "MAIN"})
        await feed("state", {"ready": True, "authenticated": False, "mode": "QR"})
        assert events.names()[-2:] == ["ready", "logged_out"]
        await feed("error", "window.WPP is missing")
        await feed("something-new", {"x": 1})
        assert events.names()[-1] == "logged_out"

    run(scenario)


def test_a_blocked_account_ends_the_worker_with_the_reason(tmp_path: Path) -> None:
    async def scenario() -> None:
        engine = WhatsAppWebEngine("shop", web_config(tmp_path), Recorder())
        engine._failure = asyncio.get_running_loop().create_future()
        await engine.handle_page_event("stream_mode", {"mode": "TOS_BLOCK", "authenticated": True})
        with pytest.raises(EngineError) as caught:
            await engine.watch()
        assert caught.value.one_line() == (
            "WhatsApp banned this number (terms of service) (WhatsApp Web's stream mode "
            "TOS_BLOCK); the daemon restarts the worker with a fresh browser"
        )

    run(scenario)


def test_the_device_name_and_wpp_config() -> None:
    assert device_name("{name} (wactl)", name="Casa Pepe", slug="casa-pepe") == "Casa Pepe (wactl)"
    assert device_name("{slug}", name="x", slug="casa-pepe") == "casa-pepe"
    # Text from owners: control characters and line breaks never reach WhatsApp.
    assert device_name("{name}", name="Casa\x1b[2J\nPepe\u200b\t ", slug="s") == "Casa [2J Pepe"
    assert len(device_name("{name}", name="x" * 300, slug="s")) == 64
    assert device_name("", name="Casa Pepe", slug="s") == ""
    script = wpp_config_script("Casa Pepe (wactl)")
    assert script.startswith("window.WPPConfig = ") and script.endswith(";\n")
    assert json.loads(script.removeprefix("window.WPPConfig = ").removesuffix(";\n")) == {
        "deviceName": "Casa Pepe (wactl)",
        "disableGoogleAnalytics": True,
        "googleAnalyticsId": None,
        "linkPreviewApiServers": [],
        "poweredBy": None,
    }
    assert '"deviceName": false' in wpp_config_script("")


def test_the_bridge_uses_exactly_the_listed_wa_js_names() -> None:
    """wactl.wajs_api is what the contract tests check in the real bundle and its type
    declarations; the bridge must use exactly those names, and no other."""
    bridge = BRIDGE_SCRIPT.read_text(encoding="utf-8")
    assert set(re.findall(r"WPP\.on\('([a-z_.]+)'", bridge)) == set(wajs_api.EVENT_NAMES)
    called = set(re.findall(r"(?:WPP|api)\.((?:conn|chat|contact)\.[A-Za-z]+)\(", bridge))
    assert {f"WPP.{name}" for name in called} | {"WPP.on"} == set(wajs_api.FUNCTION_PATHS)
    read = set(re.findall(r"(?:WPP|api)\.(isReady|version)\b", bridge))
    assert read | {"config"} == set(wajs_api.VALUES)
    # The stand-in plays every one of them.
    fake = FAKE_WPP.read_text(encoding="utf-8")
    for event in wajs_api.EVENT_NAMES:
        assert f"emit('{event}'" in fake, event


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
                "(paths) => paths.map("
                "(p) => typeof p.split('.').slice(1).reduce((o, k) => o[k], WPP))",
                list(wajs_api.FUNCTION_PATHS),
            )
            assert kinds == ["function"] * len(wajs_api.FUNCTION_PATHS)
            message_id = await asyncio.to_thread(standin.customer_writes, session, CUSTOMER, "hola")
            await wait_for(events, lambda: "message" in events.names())
            inbound = events.events[-1][1]
            assert (inbound.wa_message_id, inbound.chat, inbound.text) == (
                message_id,
                CUSTOMER,
                "hola",
            )
            assert inbound.to_number == f"+{OWNER_PHONE}" and not inbound.from_me
            wa_id = await reply(engine, CUSTOMER, "Hello, how can I help?")
            assert re.fullmatch(r"true_34600111222@c\.us_3EB0[0-9A-F]{18}", wa_id)
            assert standin.sent_to(session, CUSTOMER) == ["Hello, how can I help?"]
            # The bot's own message came back as chat.new_message before the send
            # returned: it is not mistaken for the owner typing.
            await asyncio.to_thread(standin.customer_writes, session, CUSTOMER, "gracias")
            await wait_for(events, lambda: events.names().count("message") == 2)
            assert [m.text for n, m in events.events if n == "message"] == ["hola", "gracias"]
            # A send again under the same id (recovery) is not delivered twice.
            assert await engine.send_text(CUSTOMER, "Hello, how can I help?", message_id=wa_id) == (
                wa_id
            )
            assert standin.sent_to(session, CUSTOMER) == ["Hello, how can I help?"]
            assert session.send_attempts.count(wa_id) == 2
            with pytest.raises(EngineError, match="cannot send to '12345@x': not a WhatsApp"):
                await engine.reserve_id("12345@x", "c-2")
            with pytest.raises(EngineError, match="is not a message id from `reserve_id`"):
                await engine.send_text(CUSTOMER, "hi", message_id="c-2")
        assert not browser_pids(engine.profile)

    run(scenario)


async def reply(engine: WhatsAppWebEngine, to: str, text: str) -> str:
    """What the pipeline does: reserve the id, (store it), send under it."""
    message_id = await engine.reserve_id(to, "c-1")
    return await engine.send_text(to, text, message_id=message_id)


def test_a_restart_keeps_the_link_and_knows_what_was_sent(
    tmp_path: Path, standin: StandIn, no_browser_left: Path
) -> None:
    """was_sent answers from WhatsApp Web itself (chat.getMessageById) for the id that
    was reserved and stored before the send, wherever a crash cut in."""
    config = standin_config(tmp_path, standin)
    ids: dict[str, str] = {}

    async def first_run() -> None:
        async with started(config) as (engine, events):
            await link(engine, events, standin)
            ids["sent"] = await reply(engine, CUSTOMER, "first reply")
            # Reserved (and stored by the pipeline), then the crash: never sent.
            ids["reserved"] = await engine.reserve_id(CUSTOMER, "c-2")
            # A reply to a customer whose chat is not on this device at all.
            ids["other chat"] = await engine.reserve_id("+34600999000", "c-3")

    async def second_run() -> None:
        async with started(config) as (engine, events):
            await wait_for(events, lambda: "ready" in events.names())
            assert events.names() == ["ready"]  # no QR: the profile is the linked device
            assert await engine.was_sent(ids["sent"]) is True
            assert await engine.was_sent(ids["reserved"]) is False
            assert await engine.was_sent(ids["other chat"]) is False
            assert await engine.was_sent("wactl-shop-4") is False  # no id was reserved
            # Sent under a new id it is found, and the old one is still not.
            again = await reply(engine, CUSTOMER, "second reply")
            assert await engine.was_sent(again) is True
            assert await engine.was_sent(ids["reserved"]) is False

    run(first_run)
    run(second_run)
    assert len(standin.sessions) == 1
    (session,) = standin.sessions.values()
    assert [m["body"] for m in session.sent] == ["first reply", "second reply"]


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
            # WhatsApp Web reloaded the page after the logout, as a new device.
            new = await asyncio.to_thread(standin.session_showing, events.qrs()[-1])
            assert new.id != session.id and new.urls[-1].endswith("/?post_logout=1")
            assert not engine.is_linked

    run(scenario)


def test_not_connected_while_the_qr_shows(
    tmp_path: Path, standin: StandIn, no_browser_left: Path
) -> None:
    """wa-js fires conn.main_ready on the QR screen too (the first stream mode that is
    MAIN or QR, conn/events/registerMainReadyEvent.ts): an unlinked start shows QRs and
    nothing else, however long it waits; ready comes only once the sync is done."""
    with running_standin(ready_delay_ms=300) as slow_sync:
        config = standin_config(tmp_path, slow_sync)

        async def scenario() -> None:
            async with started(config) as (engine, events):
                await wait_for(events, lambda: bool(events.qrs()))
                (session,) = slow_sync.sessions.values()
                # main_ready has fired (the page reports the mode it fired it on).
                await asyncio.to_thread(
                    slow_sync.wait, lambda: ("mode", {"mode": "QR"}) in session.events
                )
                assert await engine.page.evaluate("WPP.conn.isMainReady()") is True  # type: ignore[union-attr]
                # Probes keep finding the QR screen: still nothing but the QR.
                await until(lambda: engine.wa_js_version is not None)
                assert engine.wa_js_version == "4.6.0-standin"
                assert events.names() == ["qr"] and not engine.is_linked
                await asyncio.to_thread(slow_sync.scan, events.qrs()[-1], me=OWNER_PHONE)
                # Scanned and syncing: still not ready (isMainReady has long been true).
                await asyncio.to_thread(
                    slow_sync.wait, lambda: ("mode", {"mode": "SYNCING"}) in session.events
                )
                assert "ready" not in events.names()
                await wait_for(events, lambda: "ready" in events.names())
                assert events.names() == ["qr", "ready"]
                assert ("mode", {"mode": "MAIN"}) in session.events

        run(scenario)


def test_stream_modes_while_linked(tmp_path: Path, standin: StandIn, no_browser_left: Path) -> None:
    """Offline while linked is a disconnect, and MAIN again is ready again; a banned
    account ends the worker with the reason."""
    config = standin_config(tmp_path, standin)

    async def scenario() -> None:
        async with started(config) as (engine, events):
            session = await link(engine, events, standin)
            standin.set_mode(session, "OFFLINE")
            await wait_for(events, lambda: events.names()[-1] == "disconnected")
            assert events.events[-1][1] == "WhatsApp Web is offline (no connection to WhatsApp)"
            assert not engine.is_linked
            with pytest.raises(EngineError, match="not linked and ready"):
                await engine.reserve_id(CUSTOMER, "c-1")
            standin.set_mode(session, "MAIN")
            await wait_for(events, lambda: events.names()[-1] == "ready")
            standin.set_mode(session, "SMB_TOS_BLOCK")
            assert await failure_of(engine) == (
                "WhatsApp banned this business number (terms of service) (WhatsApp Web's "
                "stream mode SMB_TOS_BLOCK); the daemon restarts the worker with a fresh browser"
            )

    run(scenario)


def test_lid_customers_are_one_identity_and_own_replies_are_known_by_id(
    tmp_path: Path, no_browser_left: Path
) -> None:
    """Customers who write from @lid chats: the one whose number WhatsApp shares is that
    number, the other the LID. A reply to the number goes to the LID chat
    (chat.find), its chat.new_message names that chat before sendTextMessage returns, and
    it is still the bot's own message, not the owner typing."""
    shared, hidden = "+34600111222", "+34600333444"
    with running_standin() as standin:
        standin.addressing.update({shared: LID, hidden: LID_HIDDEN})
        config = standin_config(tmp_path, standin)

        async def scenario() -> None:
            async with started(config) as (engine, events):
                session = await link(engine, events, standin)
                first = await asyncio.to_thread(standin.customer_writes, session, shared, "hola")
                assert first.startswith(f"false_{standin.lid_of(shared)}_")
                await wait_for(events, lambda: events.names().count("message") == 1)
                inbound = events.events[-1][1]
                assert (inbound.chat, inbound.from_number) == (shared, shared)
                sent_id = await reply(engine, inbound.chat, "Hi! How can I help?")
                assert sent_id.startswith(f"true_{standin.lid_of(shared)}_")
                assert standin.sent_to(session, shared) == ["Hi! How can I help?"]
                assert [m["chat"] for m in session.sent] == [standin.lid_of(shared)]
                # Only the LID for this one: the LID is the identity, and the log says so.
                await asyncio.to_thread(standin.customer_writes, session, hidden, "hello")
                await wait_for(events, lambda: events.names().count("message") == 2)
                assert events.events[-1][1].chat == standin.lid_of(hidden)
                await reply(engine, standin.lid_of(hidden), "Hello!")
                assert standin.sent_to(session, hidden) == ["Hello!"]
                # The owner typing in the LID chat: the takeover signal, for the number.
                await asyncio.to_thread(
                    standin.customer_writes, session, shared, "I'll call you", fromMe=True
                )
                await wait_for(events, lambda: events.names().count("message") == 3)
                owner = events.events[-1][1]
                assert owner.from_me and owner.chat == shared
                # The bot's replies never came back as messages (from the owner or not).
                assert [m.text for n, m in events.events if n == "message"] == [
                    "hola",
                    "hello",
                    "I'll call you",
                ]

        with caplog_of("wactl.bot.engines.whatsapp_web") as records:
            run(scenario)
        lid = standin.lid_of(hidden)
        assert [r for r in records if lid in r] == [
            f"customer {lid}: WhatsApp Web knows only their LID, not their phone number; "
            "their messages are logged under the LID"
        ]


def test_a_message_is_reported_once_it_is_decrypted(
    tmp_path: Path, standin: StandIn, no_browser_left: Path
) -> None:
    """wa-js fires chat.new_message for a ciphertext message, and again with the same
    message once it is decrypted (chat/events/registerNewMessageEvent.ts)."""
    config = standin_config(tmp_path, standin)

    async def scenario() -> None:
        async with started(config) as (engine, events):
            session = await link(engine, events, standin)
            message_id = await asyncio.to_thread(
                standin.customer_writes, session, CUSTOMER, "", type="ciphertext"
            )
            await asyncio.to_thread(standin.decrypt, session, message_id, "hola")
            await wait_for(events, lambda: "message" in events.names())
            inbound = events.events[-1][1]
            assert (inbound.wa_message_id, inbound.text) == (message_id, "hola")
            await asyncio.to_thread(standin.customer_writes, session, CUSTOMER, "y2")
            await wait_for(events, lambda: events.names().count("message") == 2)
            assert [m.text for n, m in events.events if n == "message"] == ["hola", "y2"]

    run(scenario)


def foreign_requests_refused(origin: str, seen: list[str]) -> Callable[[Any], Awaitable[None]]:
    """A ``prepare_context`` that lets the page reach ``origin`` only: every request to
    another host is recorded in ``seen`` and fails."""

    async def prepare(context: Any) -> None:
        async def handle(route: Any) -> None:
            url = route.request.url
            if url.startswith(origin):
                await route.continue_()
            else:
                seen.append(url)
                await route.abort()

        await context.route("**/*", handle)

    return prepare


def test_the_page_talks_to_whatsapp_only_and_names_the_device(
    tmp_path: Path, standin: StandIn, no_browser_left: Path
) -> None:
    """wa-js's defaults reach third parties (config/defaultConfig.ts: Google Analytics
    unless disabled, link previews through the servers in util/linkPreview.ts, and every
    send marks the chat read and fetches a preview). With WPPConfig set before wa-js
    loads and the send options chosen, the page asks nothing of any other host; the
    owner's phone lists the device under the tenant's name; read receipts come only
    when the bot starts answering."""
    config = standin_config(tmp_path, standin)
    seen: list[str] = []

    async def scenario() -> None:
        prepare = foreign_requests_refused(standin.url, seen)
        async with started(config, tenant_name="Casa Pepe", prepare_context=prepare) as (
            engine,
            events,
        ):
            session = await link(engine, events, standin)
            assert session.device_name == "Casa Pepe (wactl)"
            merged = session.configs[-1]
            assert merged["deviceName"] == "Casa Pepe (wactl)"
            assert merged["disableGoogleAnalytics"] is True
            assert merged["linkPreviewApiServers"] == []
            assert ("keep_alive", {"enabled": True}) in session.events
            message_id = await asyncio.to_thread(
                standin.customer_writes, session, CUSTOMER, "menu?"
            )
            await reply(engine, CUSTOMER, "Our menu: https://casa-pepe.example/menu")
            assert session.reads == []  # the send did not mark the chat read
            await engine.mark_read(message_id)
            assert session.reads == ["34600111222@c.us"]
            await engine.mark_read("not-an-id")  # best effort: nothing, no error
            assert engine.page is not None
            # wa-js's own default (linkPreview: true) would fetch a preview; with no
            # servers configured it has none to ask.
            await engine.page.evaluate(
                "WPP.chat.sendTextMessage('34600111222@c.us', 'https://casa-pepe.example/x')"
            )
        assert seen == []

    run(scenario)

    # The check can fail: the same page without wactl's WPPConfig calls Google Analytics.
    async def without_config() -> None:
        from playwright.async_api import async_playwright

        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(
                executable_path=str(chromium.resolve_executable(Config())), headless=True
            )
            try:
                context = await browser.new_context(user_agent="Mozilla/5.0 Chrome/150.0")
                await foreign_requests_refused(standin.url, seen)(context)
                await context.add_init_script(path=FAKE_WPP)
                page = await context.new_page()
                await page.goto(standin.url)
                await until(lambda: bool(seen))
            finally:
                await browser.close()

    run(without_config)
    assert seen[0].startswith("https://analytics.google.com/g/collect?")


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
                    "linked, but WhatsApp Web did not become ready within 2 s (it is "
                    "syncing); the daemon restarts the worker with a fresh browser"
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
def daemon_env() -> dict[str, str]:
    """More environment for `web_daemon` (a test module may override it)."""
    return {}


@pytest.fixture
def web_daemon(
    db_url: str,
    monkeypatch: pytest.MonkeyPatch,
    standin: StandIn,
    isolated_env: Path,
    daemon_env: dict[str, str],
) -> Iterator[Daemon]:
    data = isolated_env / ".local/share/wactl"
    try:
        with daemon_for_cli(monkeypatch, {**browser_env(standin), **daemon_env}) as daemon:
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


def create_and_start_no_wait(cli: CLI, slug: str = "shop") -> None:
    result = cli("tenant", "create", slug, "--name", "Casa Pepe", "--engine", "whatsapp-web")
    assert result.code == 0, result.err
    result = cli("tenant", "start", slug, "--no-wait")
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
    # The worker marks it sent once sendTextMessage returns, a moment after the server
    # has it.
    poll_for(lambda: [r["state"] for r in log_json(cli)] == ["ANSWERED", "SENT"], timeout=WAIT)
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
    # The bot marked the first message read as it started answering (not at the send);
    # the one it stays silent on is left unread for the person who took over.
    assert session.reads == ["34600111222@c.us"]
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
@pytest.mark.parametrize(
    "daemon_env",
    [
        {
            "WACTL_BROWSER_URL": "https://web.invalid/",  # RFC 6761: never resolves
            "WACTL_DAEMON_MAX_CRASHES": "2",
        }
    ],
)
def test_no_route_to_whatsapp_is_said_where_operators_look(
    cli: CLI, web_daemon: Daemon, standin: StandIn
) -> None:
    """The worker's own reason (not only "exited with code 1") reaches ps, the
    quarantine, `tenant qr` and `tenant show`; the advice names the command that clears
    the quarantine; doctor checks that WhatsApp Web resolves and answers. `tenant start`
    never says RUNNING: it waits, and ends with the quarantine and its reason (exit 6)."""
    cause = "cannot open https://web.invalid/: Page.goto: net::ERR_NAME_NOT_RESOLVED"
    created = cli("tenant", "create", "shop", "--name", "Casa Pepe", "--engine", "whatsapp-web")
    assert created.code == 0, created.err
    started = cli("tenant", "start", "shop")
    assert started.code == 6, started.err
    assert "RUNNING" not in started.err
    assert started.err.startswith("shop: FATAL: 2 crashes within 300 s; last: exited with code 1: ")
    assert cause in started.err
    assert "then `wactl tenant start shop` starts it again" in started.err
    row = daemon_ps_until(web_daemon, "shop", lambda r: r["state"] == "FATAL")
    assert row["last_error"].startswith("2 crashes within 300 s; last: exited with code 1: ")
    assert cause in row["last_error"]
    qr = cli("tenant", "qr", "shop", "--wait", "--timeout", "5")
    assert qr.code == 6
    assert qr.err.startswith("error: tenant 'shop' was given up on (FATAL): 2 crashes within ")
    assert cause in qr.err
    assert "then `wactl tenant start shop` starts it again and clears the quarantine" in qr.err
    shown = cli("tenant", "show", "shop").out
    assert "FATAL" in shown and cause in " ".join(shown.split())
    doctor = cli("doctor")
    assert doctor.code == 1
    assert re.search(r"FAIL  whatsapp +cannot resolve web\.invalid: ", doctor.out)


@pytest.mark.parametrize("daemon_env", [{"WACTL_PIPELINE_READ_RECEIPTS": "false"}])
def test_a_lid_customer_through_the_daemon(
    cli: CLI, web_daemon: Daemon, standin: StandIn, db_url: str
) -> None:
    """A customer writing from a @lid chat: logged under their number, answered in the
    LID chat, and the bot's own reply (fired back as chat.new_message for the LID chat
    before sendTextMessage returns) pauses nothing: the next message is answered too.
    With pipeline.read_receipts off, nothing is marked read."""
    standin.addressing[CUSTOMER] = LID
    create_and_start(cli)
    session = link_tenant(web_daemon, standin)
    standin.customer_writes(session, CUSTOMER, "hi")
    standin.customer_writes(session, CUSTOMER, "hours")
    poll_for(lambda: [r["state"] for r in log_json(cli)] == ["ANSWERED", "SENT"] * 2, timeout=WAIT)
    rows = log_json(cli)
    assert {r["chat"] for r in rows} == {CUSTOMER}
    assert [r["kind"] for r in rows] == [None, "greeting", None, "hours"]
    assert all(
        r["wa_message_id"].startswith(f"true_{standin.lid_of(CUSTOMER)}_") for r in rows[1::2]
    )
    assert standin.sent_to(session, CUSTOMER) == [rows[1]["text"], rows[3]["text"]]
    with db_session(db_url) as db:
        assert db.scalar(select(ChatState).where(ChatState.chat == CUSTOMER)) is None
    assert session.reads == []
    # A customer whose number WhatsApp does not share is their LID, and the log says so.
    hidden = "+34600999888"
    standin.addressing[hidden] = LID_HIDDEN
    lid = standin.lid_of(hidden)
    standin.customer_writes(session, hidden, "hola")
    poll_for(lambda: len(log_json(cli)) == 6 and log_json(cli)[-1]["state"] == "SENT", timeout=WAIT)
    result = cli("tenant", "logs", "shop")
    assert result.code == 0 and f"{lid} <- hola" in result.out
    assert "chats shown as NNN@lid: WhatsApp did not share the customer's phone number" in (
        result.err
    )
    only = cli("tenant", "logs", "shop", "--chat", lid, "--json")
    assert {r["chat"] for r in json.loads(only.out)} == {lid}
    mine = cli("tenant", "logs", "shop", "--chat", CUSTOMER)
    assert mine.code == 0 and "@lid" not in mine.out + mine.err
    bad = cli("tenant", "logs", "shop", "--chat", "123@x")
    assert (bad.code, bad.err) == (
        2,
        "error: --chat: '123@x' is neither a phone number in international form nor a LID; "
        "write + and the country code, e.g. +15551234567, or the NNN@lid the log shows\n",
    )


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
        # The worker's own reason, left for the daemon as it exited, is in ps and the event.
        assert row["last_error"] == (
            "exited with code 1: the WhatsApp Web page crashed;"
            " the daemon restarts the worker with a fresh browser"
        )
    states = [
        (e["state"], e["reason"]) for e in events if e["event"] == "worker" and e["slug"] == "shop"
    ]
    assert states.count(("BACKOFF", row["last_error"])) == 2
    log = cli("tenant", "logs", "shop", "--worker").out
    assert log.count("whatsapp-web: the WhatsApp Web page crashed") == 2
    # The profile survived: the restarted worker came back linked, with no new QR.
    assert len(standin.sessions) == 1


@pytest.mark.parametrize("backend", ["sqlite"])
def test_running_means_the_engine_has_started(
    cli: CLI, web_daemon: Daemon, standin: StandIn
) -> None:
    """A worker whose WhatsApp Web is slow to load has said hello (its wa-js version is
    in ps) but stays STARTING, and `tenant start` waits for it; RUNNING once the page is
    up, and the event stream says so."""
    events: list[dict[str, Any]] = []
    reader = threading.Thread(
        target=events_in_thread, args=(web_daemon.client, events), daemon=True
    )
    reader.start()
    poll_for(lambda: web_daemon.client.request("GET", "/v1/status")["event_subscribers"] == 1)
    gate = standin.page_gate = threading.Event()
    try:
        create_and_start_no_wait(cli)
        standin.wait(lambda: standin.pages_held == 1)
        row = daemon_ps_until(web_daemon, "shop", lambda r: r["wa_js_version"] is not None)
        assert (row["state"], row["pid"] is not None) == ("STARTING", True)
        waited = cli("tenant", "start", "shop", "--timeout", "0.5")
        assert waited.code == 9, waited.err
        assert "still waiting after 0.5 s for: shop (STARTING)" in waited.err
        assert web_daemon.ps()["shop"]["state"] == "STARTING"
        before = [e["state"] for e in list(events) if e["event"] == "worker"]
        assert "STARTING" in before and "RUNNING" not in before
    finally:
        gate.set()
    started = cli("tenant", "start", "shop")
    assert started.code == 0, started.err
    assert started.err.startswith("shop: RUNNING (pid ")
    poll_for(lambda: any(e["event"] == "worker" and e["state"] == "RUNNING" for e in events))


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
    stopped = "the WhatsApp Web page stopped answering (no answer to a wa-js call within 5 s)"
    assert row["last_error"] == (
        f"exited with code 1: {stopped}; the daemon restarts the worker with a fresh browser"
    )
    log = cli("tenant", "logs", "shop", "--worker").out
    assert stopped in log


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
    """Whether the stand-in's device id (the linked device the profile is) has reached
    the profile's files on disk."""
    storage = profile / "Default" / "Local Storage" / "leveldb"
    return any(
        b"standin.session" in path.read_bytes()
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
    # Chromium writes localStorage (where the stand-in keeps the device's id, as WhatsApp
    # Web keeps its keys in the profile) to disk a few seconds after the page sets it; a
    # kill before that would lose the link, with real WhatsApp Web too.
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
