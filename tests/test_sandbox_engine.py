"""The sandbox engine on its own: QR rotation, linking, the saved session, logout.

Each test drives the engine inside ``asyncio.run`` with a recording events object; waits
are on the recorder's condition (woken by each event), never on the clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import stat
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from wactl.bot.engines import (
    EngineError,
    InboundMessage,
    create_engine,
)
from wactl.bot.engines.sandbox import SandboxEngine, SandboxSessionError, session_file
from wactl.config.model import Config, PathsConfig, SandboxConfig
from wactl.errors import ConfigError, ConflictError

#: Generous: only reached when something is broken.
WAIT_SECONDS = 5.0


class Recorder:
    """An `EngineEvents` that remembers everything and wakes waiters on each event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._changed = asyncio.Condition()

    async def _record(self, name: str, value: Any = None) -> None:
        async with self._changed:
            self.events.append((name, value))
            self._changed.notify_all()

    async def on_qr(self, qr: str) -> None:
        await self._record("qr", qr)

    async def on_ready(self) -> None:
        await self._record("ready")

    async def on_disconnected(self, reason: str) -> None:
        await self._record("disconnected", reason)

    async def on_logged_out(self) -> None:
        await self._record("logged_out")

    async def on_message(self, message: InboundMessage) -> None:
        await self._record("message", message)

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def qrs(self) -> list[str]:
        return [value for name, value in self.events if name == "qr"]

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(condition)

        await asyncio.wait_for(wait(), WAIT_SECONDS)


def sandbox_config(tmp_path: Path, qr_rotate_seconds: float = 0.05) -> Config:
    return dataclasses.replace(
        Config(),
        paths=PathsConfig(data_dir=str(tmp_path / "data")),
        sandbox=SandboxConfig(qr_rotate_seconds=qr_rotate_seconds),
    )


def collapse(names: list[str]) -> list[str]:
    """The names with repeats in a row merged: ["qr", "qr", "ready"] -> ["qr", "ready"]."""
    return [name for i, name in enumerate(names) if i == 0 or names[i - 1] != name]


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 30))


def test_an_unlinked_sandbox_shows_a_new_qr_code_every_rotation(tmp_path: Path) -> None:
    config = sandbox_config(tmp_path)

    async def scenario() -> None:
        events = Recorder()
        engine = SandboxEngine("shop", config, events)
        await engine.start()
        await events.wait_until(lambda: len(events.qrs()) >= 3)
        await engine.stop()
        qrs = events.qrs()
        assert len(set(qrs)) == len(qrs)
        assert all(qr.startswith("wactl-sandbox:shop:") for qr in qrs)
        assert set(events.names()) == {"qr"}
        assert engine.current_qr is None
        assert not session_file(config, "shop").exists()

    run(scenario)


def test_scanning_links_and_the_link_survives_a_new_engine(tmp_path: Path) -> None:
    config = sandbox_config(tmp_path)
    path = session_file(config, "shop")

    async def first_run() -> None:
        events = Recorder()
        engine = SandboxEngine("shop", config, events)
        await engine.start()
        await events.wait_until(lambda: bool(events.qrs()))
        await engine.scan(engine.current_qr)
        assert events.names()[-1] == "ready"
        assert engine.is_linked and engine.current_qr is None
        qrs_when_linked = len(events.qrs())
        message_id = await engine.send_text("+34600000001", "hello", message_id="wactl-shop-1")
        assert message_id == "wactl-shop-1"
        assert await engine.was_sent("wactl-shop-1")
        assert not await engine.was_sent("wactl-shop-2")
        # A resend of the same reply is not delivered twice (what recovery relies on).
        assert await engine.send_text("+34600000001", "hello", message_id="wactl-shop-1") == (
            "wactl-shop-1"
        )
        assert engine.outbox_path.read_text().count("wactl-shop-1") == 1
        await engine.stop()
        # The rotation stopped at the scan: no QR was reported after "ready".
        assert len(events.qrs()) == qrs_when_linked

    async def second_run() -> None:
        events = Recorder()
        engine = SandboxEngine("shop", config, events)
        await engine.start()
        assert events.names() == ["ready"]
        assert engine.is_linked
        await engine.stop()

    run(first_run)
    saved = json.loads(path.read_text(encoding="utf-8"))
    assert saved["slug"] == "shop" and saved["engine"] == "sandbox"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    # No temp files left: only the session and what the simulated WhatsApp received.
    assert sorted(p.name for p in path.parent.iterdir()) == ["outbox.jsonl", "session.json"]
    run(second_run)


def test_scan_without_a_qr_links_whatever_code_is_showing(tmp_path: Path) -> None:
    config = sandbox_config(tmp_path, qr_rotate_seconds=60)

    async def scenario() -> None:
        events = Recorder()
        engine = SandboxEngine("shop", config, events)
        await engine.start()
        await events.wait_until(lambda: bool(events.qrs()))
        await engine.scan()
        assert events.names() == ["qr", "ready"]
        await engine.stop()

    run(scenario)


def test_an_expired_qr_does_not_link_and_a_linked_sandbox_refuses_a_scan(tmp_path: Path) -> None:
    config = sandbox_config(tmp_path)

    async def scenario() -> None:
        events = Recorder()
        engine = SandboxEngine("shop", config, events)
        await engine.start()
        await events.wait_until(lambda: len(events.qrs()) >= 2)
        with pytest.raises(ConflictError, match=r"^QR expired$"):
            await engine.scan(events.qrs()[0])
        with pytest.raises(ConflictError, match=r"^QR expired$"):
            await engine.scan("wactl-sandbox:shop:made-up")
        assert not engine.is_linked
        await engine.scan()
        with pytest.raises(ConflictError, match=r"^already linked$"):
            await engine.scan()
        await engine.stop()

    run(scenario)


def test_logout_forgets_the_session_and_shows_qr_codes_again(tmp_path: Path) -> None:
    config = sandbox_config(tmp_path)
    path = session_file(config, "shop")

    async def scenario() -> None:
        events = Recorder()
        engine = SandboxEngine("shop", config, events)
        await engine.start()
        await events.wait_until(lambda: bool(events.qrs()))
        await engine.scan()
        assert path.exists()
        await engine.logout()
        assert not path.exists()
        assert not engine.is_linked
        await events.wait_until(lambda: events.names()[-1] == "qr")
        assert collapse(events.names()) == ["qr", "ready", "logged_out", "qr"]
        with pytest.raises(EngineError, match="not linked"):
            await engine.send_text("+34600000001", "hello", message_id="x")
        await engine.stop()
        with pytest.raises(ConflictError, match=r"^not linked$"):
            await engine.logout()

    run(scenario)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not JSON"),
        ("[]", "not a JSON object"),
        ('{"format": 1, "engine": "sandbox"}', "belongs to tenant None"),
        (
            '{"format": 1, "engine": "sandbox", "slug": "other", "device_id": "d",'
            ' "linked_at": "2026-01-01T00:00:00+00:00"}',
            "belongs to tenant 'other'",
        ),
        (
            '{"format": 1, "engine": "sandbox", "slug": "shop", "device_id": "d",'
            ' "linked_at": "yesterday"}',
            "linked_at is missing or not a time",
        ),
        (
            '{"format": 1, "engine": "sandbox", "slug": "shop", "linked_at": "2026-01-01"}',
            "device_id is missing",
        ),
    ],
)
def test_a_corrupt_session_file_is_an_error_not_a_new_qr(
    tmp_path: Path, content: str, reason: str
) -> None:
    config = sandbox_config(tmp_path)
    path = session_file(config, "shop")
    path.parent.mkdir(parents=True)
    path.write_text(content, encoding="utf-8")

    async def scenario() -> None:
        events = Recorder()
        engine = SandboxEngine("shop", config, events)
        with pytest.raises(SandboxSessionError) as caught:
            await engine.start()
        assert caught.value.message.startswith(f"sandbox session file {path} is corrupt: ")
        assert reason in caught.value.message
        assert caught.value.hint == "delete it to unlink the sandbox and show a new QR code"
        assert events.events == []
        await engine.stop()

    run(scenario)
    assert path.read_text(encoding="utf-8") == content  # left for the operator to inspect


def test_the_registry_builds_the_sandbox_and_refuses_what_does_not_exist(tmp_path: Path) -> None:
    config = sandbox_config(tmp_path)
    events = Recorder()
    assert isinstance(create_engine("sandbox", "shop", config, events), SandboxEngine)
    with pytest.raises(ConfigError, match="unknown engine 'telegram'"):
        create_engine("telegram", "shop", config, events)
