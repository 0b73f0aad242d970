"""The daemon API client for asyncio programs (the TUI): requests and the event stream.

It speaks the same HTTP/1.1 + JSON over the Unix socket as `wactl.ipc.client`, and
fails the same way: every problem reaching the daemon is one `DaemonError` saying why
and what to run (`explain_os_error`), every error answer the same wactl error as the
blocking client raises (`error_for`). HTTP framing (content length, chunked streams)
is parsed by h11, the parser uvicorn itself uses on the other end.

`EventStream` is opened before anything else is read: once `open_events` returns,
the daemon has registered the subscription, so a client that then loads
``/v1/tenants`` misses no change made after that load.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import h11

from wactl.actor import operator_actor
from wactl.errors import DaemonError
from wactl.ipc.client import EventParser, decode_reply, explain_os_error
from wactl.ipc.protocol import ACTOR_HEADER, PROTOCOL_HEADER, PROTOCOL_VERSION

#: The daemon sends a comment line on an idle event stream every 15 s
#: (`wactl.daemon.api.KEEPALIVE_SECONDS`); two missed ones mean it is hung or gone.
EVENTS_IDLE_TIMEOUT = 40.0
_READ_SIZE = 65536


class _Connection:
    """One HTTP/1.1 exchange on a fresh Unix socket connection."""

    def __init__(self, path: Path, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self.h11 = h11.Connection(h11.CLIENT)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    def _fail(self, exc: OSError) -> DaemonError:
        return explain_os_error(self.path, self.timeout, exc)

    async def send(self, method: str, target: str, body: Any) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                self.reader, self.writer = await asyncio.open_unix_connection(str(self.path))
        except OSError as exc:  # TimeoutError is an OSError too
            raise self._fail(exc) from exc
        headers = [
            ("Host", "wactl"),
            (PROTOCOL_HEADER, str(PROTOCOL_VERSION)),
            (ACTOR_HEADER, operator_actor()),
            ("Accept", "application/json"),
            ("Connection", "close"),
        ]
        payload = b""
        if body is not None:
            payload = json.dumps(body).encode()
            headers += [("Content-Type", "application/json")]
        headers += [("Content-Length", str(len(payload)))]
        data = self.h11.send(h11.Request(method=method, target=target, headers=headers))
        data += self.h11.send(h11.Data(data=payload)) or b""
        data += self.h11.send(h11.EndOfMessage()) or b""
        try:
            self.writer.write(data)
            await self.writer.drain()
        except OSError as exc:
            raise self._fail(exc) from exc

    async def next_event(self, timeout: float) -> Any:
        """The next h11 event (Response, Data, EndOfMessage); EOF ends the message."""
        assert self.reader is not None
        while True:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise DaemonError(f"the daemon on {self.path} sent a broken answer: {exc}") from exc
            if event is not h11.NEED_DATA:
                return event
            try:
                async with asyncio.timeout(timeout):
                    chunk = await self.reader.read(_READ_SIZE)
            except TimeoutError as exc:
                raise explain_os_error(self.path, timeout, exc) from exc
            except OSError as exc:
                raise self._fail(exc) from exc
            self.h11.receive_data(chunk)

    async def response(self) -> h11.Response:
        event = await self.next_event(self.timeout)
        if not isinstance(event, h11.Response):
            raise DaemonError(f"the daemon on {self.path} closed the connection")
        return event

    async def body(self) -> bytes:
        chunks = []
        while True:
            event = await self.next_event(self.timeout)
            if isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return b"".join(chunks)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            # The daemon may have gone first; there is nothing left to release then.
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()
            self.writer = None


def _content_type(response: h11.Response) -> str:
    for name, value in response.headers:
        if name == b"content-type":
            return value.decode("latin-1")
    return ""


def _decode(response: h11.Response, raw: bytes, what: str) -> Any:
    return decode_reply(response.status_code, _content_type(response), raw, what)


class AsyncDaemonClient:
    """What `wactl.ipc.client.DaemonClient` does, for an asyncio event loop."""

    def __init__(self, path: Path, *, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout

    async def check_version(self) -> dict[str, Any]:
        """The daemon's identity; raises when it speaks another protocol version."""
        info: dict[str, Any] = await self.request("GET", "/v1/version")
        theirs = info.get("protocol")
        if theirs != PROTOCOL_VERSION:
            raise DaemonError(
                f"the daemon (wactl {info.get('version', '?')}, pid {info.get('pid', '?')}) "
                f"speaks protocol {theirs}, this wactl speaks {PROTOCOL_VERSION}",
                hint="run `wactl daemon restart` to run this version's daemon",
            )
        return info

    async def request(
        self, method: str, target: str, body: Any = None, *, timeout: float | None = None
    ) -> Any:
        connection = _Connection(self.path, timeout or self.timeout)
        try:
            await connection.send(method, target, body)
            response = await connection.response()
            raw = await connection.body()
        finally:
            await connection.close()
        return _decode(response, raw, f"{method} {target}")

    async def open_events(self) -> EventStream:
        """Subscribe to /v1/events; returns once the daemon has registered us."""
        connection = _Connection(self.path, self.timeout)
        try:
            await connection.send("GET", "/v1/events", None)
            response = await connection.response()
            if response.status_code != 200:
                _decode(response, await connection.body(), "GET /v1/events")
                raise DaemonError(f"the daemon answered /v1/events with {response.status_code}")
            stream = EventStream(connection)
            await stream.wait_connected()
        except BaseException:
            await connection.close()
            raise
        return stream


class EventStream:
    """Server-Sent Events from /v1/events: one dict per event, until the daemon goes.

    Iterating ends normally after the daemon's ``shutdown`` event or when it closes
    the stream; it raises `DaemonError` when the connection breaks or stays silent
    longer than `EVENTS_IDLE_TIMEOUT`.
    """

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self._buffer = ""

    async def _next_line(self) -> str | None:
        """The next line of the stream, None at its end."""
        while "\n" not in self._buffer:
            event = await self._connection.next_event(EVENTS_IDLE_TIMEOUT)
            if isinstance(event, h11.Data):
                self._buffer += bytes(event.data).decode("utf-8", "replace")
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return None
        line, self._buffer = self._buffer.split("\n", 1)
        return line.rstrip("\r")

    async def wait_connected(self) -> None:
        """Read up to the daemon's first comment line (``: connected``)."""
        while (line := await self._next_line()) is not None:
            if line.startswith(":"):
                return
        raise DaemonError("the daemon closed the event stream at once")

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> dict[str, Any]:
        parser = EventParser()
        while (line := await self._next_line()) is not None:
            if (event := parser.feed(line)) is not None:
                return event
        raise StopAsyncIteration

    async def close(self) -> None:
        await self._connection.close()
