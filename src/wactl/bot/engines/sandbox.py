"""The sandbox engine: a simulated WhatsApp with no phone and no network.

It behaves like a linked device does: while unlinked it shows a QR code that changes
every ``sandbox.qr_rotate_seconds``; "scanning" the code (`SandboxEngine.scan`, driven by
`wactl sandbox scan` through the daemon) links it; the link is a session file kept under
the data directory like a browser profile, so it survives worker restarts, and
`logout` deletes it. A session file that exists but cannot be read is an error, not a
reason to start over silently: the operator must see that something broke it.

It must not touch the database or the network; the worker records what it reports.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import errno
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, ClassVar

from wactl.bot.engines.base import Engine, EngineError, EngineEvents, InboundMessage
from wactl.config.model import Config
from wactl.enums import EngineName
from wactl.errors import ConflictError

log = logging.getLogger(__name__)

#: Bumped if the session file's fields change; older files are then treated as corrupt.
SESSION_FORMAT = 1


class SandboxSessionError(EngineError):
    """The saved sandbox session exists but is unreadable or belongs to something else."""


def session_file(config: Config, tenant_slug: str) -> Path:
    """Where a sandbox tenant's link is kept (its "browser profile")."""
    return config.data_dir / "sandbox" / tenant_slug / "session.json"


def outbox_file(config: Config, tenant_slug: str) -> Path:
    """What the simulated WhatsApp received from the bot: one JSON line per message.

    It plays WhatsApp's servers: a reply is delivered once its line is written (the
    write reaches the kernel before `send_text` returns, so it survives the worker
    being killed), and `was_sent` reads it back after a crash.
    """
    return config.data_dir / "sandbox" / tenant_slug / "outbox.jsonl"


class SandboxEngine(Engine):
    name: ClassVar[str] = EngineName.SANDBOX.value

    def __init__(self, tenant_slug: str, config: Config, events: EngineEvents) -> None:
        super().__init__(tenant_slug, events)
        self.session_path = session_file(config, tenant_slug)
        self.outbox_path = outbox_file(config, tenant_slug)
        self._delivered: set[str] | None = None
        #: The tenant's own number as the simulated WhatsApp shows it (the worker sets
        #: the tenant's phone number when it has one).
        self.own_number = f"sandbox:{tenant_slug}"
        self._outbox_fd: int | None = None
        self.qr_rotate_seconds = config.sandbox.qr_rotate_seconds
        self._linked = False
        self._current_qr: str | None = None
        self._qr_task: asyncio.Task[None] | None = None
        # Held while a QR is being reported and while scan/logout change the link, so
        # that a client never sees a QR event arrive after the link it was replaced by.
        self._lock = asyncio.Lock()

    @property
    def is_linked(self) -> bool:
        return self._linked

    @property
    def current_qr(self) -> str | None:
        """The QR code showing now; None while linked or stopped."""
        return self._current_qr

    async def start(self) -> None:
        session = self._read_session()
        if session is not None:
            self._linked = True
            log.info("sandbox session found (linked at %s)", session["linked_at"])
            await self._report("ready", self.events.on_ready())
            return
        self._start_rotating()

    async def stop(self) -> None:
        await self._stop_rotating()
        self._current_qr = None
        if self._outbox_fd is not None:
            os.close(self._outbox_fd)
            self._outbox_fd = None

    async def scan(self, qr: str | None = None) -> None:
        """Link the account as a phone scanning ``qr`` would (None: the code showing now)."""
        async with self._lock:
            if self._linked:
                raise ConflictError("already linked")
            if self._current_qr is None:
                raise ConflictError("no QR code is showing yet")
            if qr is not None and qr != self._current_qr:
                raise ConflictError("QR expired")
            await self._stop_rotating()
            self._write_session()
            self._linked = True
            self._current_qr = None
            log.info("sandbox linked; session saved in %s", self.session_path)
            await self._report("ready", self.events.on_ready())

    async def logout(self) -> None:
        async with self._lock:
            if not self._linked:
                raise ConflictError("not linked")
            self.session_path.unlink(missing_ok=True)
            self._linked = False
            log.info("sandbox logged out; session file %s removed", self.session_path)
            await self._report("logged_out", self.events.on_logged_out())
        self._start_rotating()

    async def send_text(self, to: str, text: str, *, message_id: str) -> str:
        if not self._linked:
            raise EngineError(f"cannot send to {to}: the sandbox is not linked")
        delivered = self._delivered_ids()
        if message_id in delivered:
            return message_id  # WhatsApp has it already; a resend must not double it
        line = {"id": message_id, "to": to, "text": text, "at": dt.datetime.now(dt.UTC).isoformat()}
        self._append((json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8"))
        delivered.add(message_id)
        return message_id

    def _append(self, record: bytes) -> None:
        """Add one whole record to the outbox, or none of it: one write to the kernel (it
        survives kill -9 of this process); a write cut short (a full disk) is taken back
        and raised, so no torn record ever precedes the next one."""
        if self._outbox_fd is None:
            self.outbox_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._outbox_fd = os.open(
                self.outbox_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
            )
        fd = self._outbox_fd
        size = os.fstat(fd).st_size
        try:
            written = os.write(fd, record)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise
        if written != len(record):
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
            raise OSError(errno.ENOSPC, f"the outbox {self.outbox_path} took only part of a reply")

    async def was_sent(self, message_id: str) -> bool:
        return message_id in self._delivered_ids()

    def _delivered_ids(self) -> set[str]:
        """The ids in the outbox; a torn last record (the disk filled mid-write, before
        this engine took writes back) is cut off first, and an unreadable record is
        skipped on its own, so one damaged record never hides the others."""
        if self._delivered is None:
            delivered: set[str] = set()
            try:
                data = self.outbox_path.read_bytes()
            except FileNotFoundError:
                data = b""
            if data and not data.endswith(b"\n"):
                whole = data.rfind(b"\n") + 1
                log.warning(
                    "the outbox %s ends in a torn record (%d bytes); cutting it off",
                    self.outbox_path,
                    len(data) - whole,
                )
                with self.outbox_path.open("r+b") as handle:
                    handle.truncate(whole)
                data = data[:whole]
            for number, line in enumerate(data.splitlines(), start=1):
                try:
                    delivered.add(str(json.loads(line.decode("utf-8"))["id"]))
                except (ValueError, KeyError, TypeError):
                    log.warning("skipping record %d of the outbox: it is unreadable", number)
            self._delivered = delivered
        return self._delivered

    async def receive(
        self,
        from_number: str,
        text: str,
        wa_message_id: str | None = None,
        *,
        from_me: bool = False,
    ) -> InboundMessage:
        """A customer (or, with ``from_me``, the business's own phone) writes to the
        tenant: what `wactl sandbox send` plays. Returns the message as reported."""
        if not self._linked:
            raise ConflictError("the sandbox is not linked; scan its QR first")
        message = InboundMessage(
            wa_message_id=wa_message_id or f"sandbox-in-{secrets.token_hex(10)}",
            chat=from_number,
            from_number=self.own_number if from_me else from_number,
            to_number=from_number if from_me else self.own_number,
            text=text,
            timestamp=dt.datetime.now(dt.UTC),
            from_me=from_me,
        )
        await self.events.on_message(message)
        return message

    # --- QR codes ----------------------------------------------------------------

    def _new_qr(self) -> str:
        return f"wactl-sandbox:{self.tenant_slug}:{secrets.token_urlsafe(18)}"

    def _start_rotating(self) -> None:
        if self._qr_task is None or self._qr_task.done():
            self._qr_task = asyncio.create_task(self._rotate_qr(), name="sandbox-qr")

    async def _stop_rotating(self) -> None:
        task, self._qr_task = self._qr_task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _rotate_qr(self) -> None:
        while True:
            async with self._lock:
                self._current_qr = self._new_qr()
                await self._report("qr", self.events.on_qr(self._current_qr))
            await asyncio.sleep(self.qr_rotate_seconds)

    @staticmethod
    async def _report(event: str, callback: Awaitable[None]) -> None:
        """Await an events callback; an exception in it is logged, not raised (see base)."""
        try:
            await callback
        except Exception:
            log.exception("the %s callback failed", event)

    # --- the session file ---------------------------------------------------------

    def _read_session(self) -> dict[str, Any] | None:
        path = self.session_path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise self._corrupt(f"cannot read it: {exc}") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise self._corrupt(f"not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise self._corrupt("not a JSON object")
        if data.get("format") != SESSION_FORMAT or data.get("engine") != self.name:
            raise self._corrupt(f"not a format-{SESSION_FORMAT} sandbox session")
        if data.get("slug") != self.tenant_slug:
            raise self._corrupt(f"it belongs to tenant {data.get('slug')!r}")
        device_id, linked_at = data.get("device_id"), data.get("linked_at")
        if not isinstance(device_id, str) or not device_id:
            raise self._corrupt("device_id is missing")
        try:
            dt.datetime.fromisoformat(linked_at if isinstance(linked_at, str) else "")
        except ValueError:
            raise self._corrupt("linked_at is missing or not a time") from None
        return data

    def _corrupt(self, detail: str) -> SandboxSessionError:
        return SandboxSessionError(
            f"sandbox session file {self.session_path} is corrupt: {detail}",
            hint="delete it to unlink the sandbox and show a new QR code",
        )

    def _write_session(self) -> None:
        """Write the session atomically (0600 in a 0700 directory), like a browser profile.

        Synchronous on purpose: a few hundred bytes, well under a millisecond.
        """
        directory = self.session_path.parent
        directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        directory.mkdir(mode=0o700, exist_ok=True)
        directory.chmod(0o700)
        session = {
            "format": SESSION_FORMAT,
            "engine": self.name,
            "slug": self.tenant_slug,
            "device_id": secrets.token_urlsafe(12),
            "linked_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        fd, tmp_name = tempfile.mkstemp(prefix=".session-", suffix=".json", dir=directory)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(session, handle)
                handle.flush()
                os.fsync(handle.fileno())
            tmp.replace(self.session_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        # The rename is durable only once the directory entry is on disk.
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
