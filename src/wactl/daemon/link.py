"""The daemon's end of a worker's control socket (JSON lines, see wactl.bot.control).

One `WorkerLink` per live worker: it reads the worker's hello, events and replies, and
sends requests (scan, logout, ping) with an id, matching each reply to its request.
When the connection breaks while the worker lives (the daemon restarted, or the worker
restarted its server), the link reconnects; the worker's exit is noticed elsewhere
(its pidfd), never inferred from the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wactl.errors import ConflictError, DaemonError, NotFoundError, UsageError
from wactl.futures import log_failure, mark_retrieved

log = logging.getLogger("wactl.daemon.link")

#: Longest accepted line from a worker (a QR payload is a few hundred bytes).
LINE_LIMIT = 1 << 20


class WorkerLink:
    def __init__(
        self,
        slug: str,
        path: Path,
        on_message: Callable[[str, dict[str, Any]], None],
    ) -> None:
        self.slug = slug
        self.path = path
        self._on_message = on_message
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.connected = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"link-{self.slug}")
        self._task.add_done_callback(log_failure(log, f"the control link of worker {self.slug}"))

    async def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._drop_connection("the worker link closed")

    def _drop_connection(self, why: str) -> None:
        self.connected.clear()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(DaemonError(f"worker '{self.slug}': {why}"))
        self._pending.clear()

    async def _run(self) -> None:
        delay = 0.01
        while not self._closed:
            try:
                reader, writer = await asyncio.open_unix_connection(
                    str(self.path), limit=LINE_LIMIT
                )
            except OSError:
                # Not there yet (starting) or gone for a moment: try again, a little slower.
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.5)
                continue
            delay = 0.01
            self._writer = writer
            self.connected.set()
            try:
                while True:
                    line = await reader.readline()
                    if not line:
                        break
                    try:
                        message = json.loads(line)
                    except ValueError:
                        log.warning("worker %s sent a line that is not JSON", self.slug)
                        continue
                    if not isinstance(message, dict):
                        continue
                    if message.get("type") == "reply":
                        future = self._pending.pop(message.get("id", -1), None)
                        if future is not None and not future.done():
                            future.set_result(message)
                        continue
                    self._on_message(self.slug, message)
            except (OSError, ValueError, asyncio.LimitOverrunError) as exc:
                log.info("worker %s control connection broke: %s", self.slug, exc)
            finally:
                self._drop_connection("the control connection closed")

    async def request(
        self, op: str, args: dict[str, Any] | None = None, timeout: float = 10.0
    ) -> Any:
        """Send one request and wait for its reply; worker errors become wactl errors."""
        try:
            await asyncio.wait_for(self.connected.wait(), timeout)
        except TimeoutError:
            raise DaemonError(
                f"worker '{self.slug}' does not answer on its control socket",
                hint=f"see its log, tenants/{self.slug}.log in the log directory",
            ) from None
        writer = self._writer
        assert writer is not None
        request_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        # A broken connection fails every pending request, including one whose caller
        # already gave up on it (its write failed, or it was cancelled).
        future.add_done_callback(mark_retrieved)
        self._pending[request_id] = future
        line = {"type": "request", "id": request_id, "op": op, "args": args or {}}
        writer.write(json.dumps(line).encode() + b"\n")
        try:
            await writer.drain()
            reply = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise DaemonError(
                f"worker '{self.slug}' did not answer '{op}' within {timeout:g} s"
            ) from None
        except OSError as exc:
            raise DaemonError(f"worker '{self.slug}': {exc}") from exc
        finally:
            self._pending.pop(request_id, None)
            future.cancel()  # no-op once answered; else nobody will read it
        if reply.get("ok"):
            return reply.get("result")
        message = str(reply.get("error") or "the worker refused")
        status = reply.get("status")
        if status == 409:
            raise ConflictError(message)
        if status == 404:
            raise NotFoundError(message)
        if status == 400:
            raise UsageError(message)
        raise DaemonError(f"worker '{self.slug}': {message}")
