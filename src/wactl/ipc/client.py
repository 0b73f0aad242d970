"""A small HTTP/1.1 + JSON client for the daemon's Unix socket, with plain-words errors.

Every failure to reach the daemon becomes one `DaemonError` that says why (no socket,
stale socket, permission, timeout, protocol mismatch) and what to run (STYLE.md 5).
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wactl.actor import operator_actor
from wactl.errors import ConflictError, DaemonError, DatabaseError, NotFoundError, UsageError
from wactl.ipc.protocol import ACTOR_HEADER, PROTOCOL_HEADER, PROTOCOL_VERSION


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("wactl", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self._path))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class DaemonNotRunning(DaemonError):
    """No daemon listens on the socket (missing or stale); starting one may help."""


def explain_os_error(path: Path, timeout: float, exc: OSError) -> DaemonError:
    """Why the daemon on ``path`` could not be reached, and what to run about it."""
    if isinstance(exc, FileNotFoundError):
        return DaemonNotRunning(
            f"the daemon is not running (no socket at {path})",
            hint="run `wactl daemon start`",
        )
    if isinstance(exc, ConnectionRefusedError):
        return DaemonNotRunning(
            f"the daemon is not running ({path} is a stale socket left by a daemon that died)",
            hint="run `wactl daemon start`, which replaces it",
        )
    if isinstance(exc, PermissionError):
        return DaemonError(
            f"permission denied on the daemon socket {path}",
            hint="run wactl as the user who started the daemon",
        )
    if isinstance(exc, TimeoutError):
        return DaemonError(
            f"the daemon on {path} did not answer within {timeout:g} s",
            hint="see `wactl daemon logs`",
        )
    return DaemonError(f"cannot talk to the daemon on {path}: {exc}")


def decode_reply(status: int, content_type: str, raw: bytes, what: str) -> Any:
    """A reply's body (JSON when it says so), or the error it stands for (4xx/5xx)."""
    data: Any = raw.decode("utf-8", "replace")
    if content_type.startswith("application/json"):
        try:
            data = json.loads(raw)
        except ValueError:
            raise DaemonError(f"the daemon sent invalid JSON for {what}") from None
    if status >= 400:
        raise error_for(status, data)
    return data


class EventParser:
    """Server-Sent Events, one line at a time (for the blocking and the asyncio client)."""

    def __init__(self) -> None:
        self._name = "message"
        self._data: list[str] = []

    def feed(self, line: str) -> dict[str, Any] | None:
        """Take one line (without its line end); the event it completes, if any, as a
        dict with its ``event`` name."""
        if line.startswith(":"):  # a comment (the daemon's keep-alive)
            return None
        if line.startswith("event:"):
            self._name = line[6:].strip()
        elif line.startswith("data:"):
            self._data.append(line[5:].lstrip())
        elif line == "" and self._data:
            try:
                payload: dict[str, Any] = json.loads("\n".join(self._data))
            except ValueError:
                raise DaemonError("the daemon sent an event that is not JSON") from None
            payload.setdefault("event", self._name)
            self._name, self._data = "message", []
            return payload
        return None


class DaemonClient:
    def __init__(self, path: Path, *, timeout: float = 10.0) -> None:
        self.path = path
        self.timeout = timeout
        self._checked = False

    def _explain(self, exc: OSError) -> DaemonError:
        return explain_os_error(self.path, self.timeout, exc)

    def _open(
        self, method: str, path: str, body: Any, timeout: float | None
    ) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        connection = _UnixConnection(self.path, timeout or self.timeout)
        headers = {
            PROTOCOL_HEADER: str(PROTOCOL_VERSION),
            ACTOR_HEADER: operator_actor(),
            "Accept": "application/json",
        }
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
        except OSError as exc:
            connection.close()
            raise self._explain(exc) from exc
        except http.client.HTTPException as exc:
            connection.close()
            raise DaemonError(f"the daemon on {self.path} sent a broken answer: {exc!r}") from exc
        return connection, response

    def check_version(self) -> dict[str, Any]:
        """The daemon's identity; raises when it speaks another protocol version."""
        info: dict[str, Any] = self._call("GET", "/v1/version", None, None)
        theirs = info.get("protocol")
        if theirs != PROTOCOL_VERSION:
            raise DaemonError(
                f"the daemon (wactl {info.get('version', '?')}, pid {info.get('pid', '?')}) "
                f"speaks protocol {theirs}, this wactl speaks {PROTOCOL_VERSION}",
                hint="run `wactl daemon restart` to run this version's daemon",
            )
        self._checked = True
        return info

    def request(
        self, method: str, path: str, body: Any = None, *, timeout: float | None = None
    ) -> Any:
        if not self._checked:
            self.check_version()
        return self._call(method, path, body, timeout)

    def _call(self, method: str, path: str, body: Any, timeout: float | None) -> Any:
        connection, response = self._open(method, path, body, timeout)
        try:
            raw = response.read()
        except OSError as exc:
            raise self._explain(exc) from exc
        finally:
            connection.close()
        content_type = response.getheader("Content-Type", "")
        return decode_reply(response.status, content_type, raw, f"{method} {path}")

    def events(self, *, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Server-Sent Events from /v1/events, one dict per event, until the daemon goes."""
        if not self._checked:
            self.check_version()
        connection, response = self._open("GET", "/v1/events", None, timeout)
        try:
            if response.status != 200:
                raise error_for(response.status, response.read().decode("utf-8", "replace"))
            parser = EventParser()
            while True:
                try:
                    line = response.readline()
                except OSError as exc:
                    raise self._explain(exc) from exc
                if not line:
                    return
                event = parser.feed(line.decode("utf-8").rstrip("\r\n"))
                if event is not None:
                    yield event
        finally:
            connection.close()


def error_for(status: int, data: Any) -> Exception:
    """The wactl error for a daemon answer with an HTTP error ``status`` and body ``data``."""
    message = data.get("error") if isinstance(data, dict) else None
    hint = data.get("hint") if isinstance(data, dict) else None
    text = message or (str(data).strip() or f"HTTP {status}")
    if status == 404:
        return NotFoundError(text, hint=hint)
    if status == 409:
        return ConflictError(text, hint=hint)
    if 400 <= status < 500:
        return UsageError(text, hint=hint)
    if isinstance(data, dict) and data.get("kind") == "database":
        # The daemon runs; the database it uses failed (exit code 4, not 7).
        return DatabaseError(text, hint=hint)
    return DaemonError(f"the daemon failed: {text}", hint=hint or "see `wactl daemon logs`")
