"""The worker's control socket: JSON lines between the daemon (or a test) and one worker.

Wire format, both directions: one JSON object per line, UTF-8, ended by ``\\n``.

- On connect the worker sends a ``hello`` object (built by the worker).
- The worker pushes ``{"type": "event", "event": NAME, ...}`` to every connected client.
- A client sends ``{"type": "request", "id": N, "op": OP, "args": {...}}`` and gets
  ``{"type": "reply", "id": N, "ok": true, "result": {...}}`` or
  ``{"type": "reply", "id": N, "ok": false, "status": 400|404|409|500, "error": "..."}``.
  A line that is not such a request gets a 400 reply (``id`` null when it has none);
  the connection stays open.

The socket file is mode 0600 in a 0700 directory: whoever can connect can unlink the
tenant's WhatsApp. This module knows nothing about engines or the database: it calls the
operation handlers it is given and maps the wactl errors they raise to statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from wactl.errors import ConfigError, ConflictError, NotFoundError, UsageError, WactlError
from wactl.futures import log_failure

log = logging.getLogger(__name__)

#: An operation: takes the request's ``args`` and returns the reply's ``result``.
Operation = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]

#: Longest request line accepted; longer ones close that connection.
MAX_LINE_BYTES = 1 << 20
#: A client that lets this much of our output pile up unread is dropped, so one stuck
#: reader cannot grow the worker's memory without bound.
MAX_PENDING_OUTPUT_BYTES = 1 << 20
#: sun_path is 108 bytes on Linux, including the final NUL.
MAX_SOCKET_PATH_BYTES = 107


class RequestError(Exception):
    """A request the worker refuses, with the status to reply."""

    def __init__(self, status: int, message: str, *, request_id: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        #: The id of the request, when it was read before the error.
        self.request_id = request_id


def status_for(error: WactlError) -> int:
    if isinstance(error, ConflictError):
        return 409
    if isinstance(error, NotFoundError):
        return 404
    if isinstance(error, UsageError):
        return 400
    return 500


def encode(message: Mapping[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def prepare_socket_path(path: Path) -> None:
    """Make the 0700 directory and clear a stale socket file left by a dead worker.

    Raises `ConflictError` when a live process still answers on the socket (two workers
    for one tenant would both run its WhatsApp), and `ConfigError` when the path is too
    long for a Unix socket.
    """
    if len(os.fsencode(path)) > MAX_SOCKET_PATH_BYTES:
        raise ConfigError(
            f"the worker socket path {path} is longer than {MAX_SOCKET_PATH_BYTES} bytes",
            hint="set paths.runtime_dir to a shorter directory",
        )
    path.parent.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.parent.chmod(0o700)
    if not path.exists() and not path.is_symlink():
        return
    if _someone_listens(path):
        raise ConflictError(
            f"another worker already listens on {path}",
            hint="stop it first (`wactl tenant stop`), or find it with `fuser`",
        )
    log.info("removing the stale socket file %s", path)
    path.unlink(missing_ok=True)


def _someone_listens(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except OSError as exc:
        # Refused: nobody listens. Not a socket or gone: nothing to talk to either.
        if exc.errno in (errno.ECONNREFUSED, errno.ENOENT, errno.ENOTSOCK):
            return False
        raise
    finally:
        probe.close()
    return True


class ControlServer:
    """An asyncio Unix server speaking the JSON-lines protocol to many clients."""

    def __init__(
        self,
        path: Path,
        *,
        hello: Callable[[], dict[str, Any]],
        operations: Mapping[str, Operation],
    ) -> None:
        self.path = path
        self._hello = hello
        self._operations = dict(operations)
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[None]] = set()
        self._inode: int | None = None

    async def start(self) -> None:
        prepare_socket_path(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(os.fspath(self.path))
            # Before listen(): nobody can connect while the mode is still the umask's.
            # (umask is process-wide, not ours to change; the directory is 0700 anyway.)
            self.path.chmod(0o600)
            self._inode = self.path.stat().st_ino
            self._server = await asyncio.start_unix_server(
                self._serve_client, sock=listener, limit=MAX_LINE_BYTES
            )
        except BaseException:
            listener.close()
            raise

    def broadcast(self, message: Mapping[str, Any]) -> None:
        """Send ``message`` to every connected client."""
        data = encode(message)
        for writer in list(self._clients):
            self._send(writer, data)

    def event(self, name: str, **fields: Any) -> None:
        self.broadcast({"type": "event", "event": name, **fields})

    async def close(self) -> None:
        """Stop accepting, drop every client and remove the socket file (if still ours)."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._clients):
            writer.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            # Another worker may have replaced a file it thought stale; leave its socket.
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()

    # --- one client ----------------------------------------------------------------

    def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        if writer.is_closing():
            self._clients.discard(writer)
            return
        if writer.transport.get_write_buffer_size() > MAX_PENDING_OUTPUT_BYTES:
            log.warning("dropping a control client that stopped reading")
            self._clients.discard(writer)
            writer.close()
            return
        writer.write(data)

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._clients.add(writer)
        try:
            self._send(writer, encode(self._hello()))
            while True:
                try:
                    line = await reader.readline()
                except ValueError:
                    # LimitOverrunError: the rest of that line cannot be framed; hang up.
                    log.warning("control client sent a line over %d bytes", MAX_LINE_BYTES)
                    self._send(writer, encode(_reply_error(None, 400, "line too long")))
                    break
                if not line:
                    break
                if line.strip():
                    # Each request in its own task: a slow one (a "send" waits for the
                    # pipeline's reply) must not hold up the next; replies carry ids.
                    request = asyncio.create_task(self._answer_to(writer, line))
                    self._handlers.add(request)
                    request.add_done_callback(self._handlers.discard)
                    request.add_done_callback(log_failure(log, "answering a control request"))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # close() cancels us. Python 3.11's start_server calls task.exception() on
            # the finished handler, which raises for a cancelled task and logs "Exception
            # in callback" at every worker exit; ending normally is what close() wants.
            pass
        finally:
            self._clients.discard(writer)
            self._handlers.discard(task)
            writer.close()

    async def _answer_to(self, writer: asyncio.StreamWriter, line: bytes) -> None:
        reply = await self._answer(line)
        if not writer.is_closing():
            self._send(writer, encode(reply))

    async def _answer(self, line: bytes) -> dict[str, Any]:
        request_id: Any = None
        try:
            request_id, op, args = _parse_request(line)
            operation = self._operations.get(op)
            if operation is None:
                known = ", ".join(sorted(self._operations))
                raise RequestError(400, f"unknown op '{op}' (ops: {known})")
            result = await operation(args)
        except RequestError as exc:
            log.warning("control request refused (%d): %s", exc.status, exc.message)
            rid = exc.request_id if exc.request_id is not None else request_id
            return _reply_error(rid, exc.status, exc.message)
        except WactlError as exc:
            status = status_for(exc)
            log.log(
                logging.ERROR if status >= 500 else logging.INFO,
                "control request failed (%d): %s",
                status,
                exc.one_line(),
            )
            return _reply_error(request_id, status, exc.one_line())
        except Exception as exc:
            log.exception("control request crashed")
            # The details (which may quote SQL with customers' messages) stay in the
            # worker's log; the caller learns only what kind of failure it was.
            return _reply_error(
                request_id,
                500,
                f"internal error in the worker ({type(exc).__name__}); see its log",
            )
        return {"type": "reply", "id": request_id, "ok": True, "result": result}


def _reply_error(request_id: Any, status: int, message: str) -> dict[str, Any]:
    one_line = " ".join(message.split())
    return {"type": "reply", "id": request_id, "ok": False, "status": status, "error": one_line}


def _parse_request(line: bytes) -> tuple[Any, str, dict[str, Any]]:
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"not a JSON line: {exc}") from None
    if not isinstance(message, dict):
        raise RequestError(400, "a request must be a JSON object")
    request_id = message.get("id")
    if isinstance(request_id, bool) or not isinstance(request_id, int | str):
        raise RequestError(400, "a request needs an integer or string 'id'")
    # The id is known from here on, so the errors below carry it.
    if message.get("type") != "request":
        raise RequestError(
            400, f"expected type 'request', not {message.get('type')!r}", request_id=request_id
        )
    op = message.get("op")
    if not isinstance(op, str):
        raise RequestError(400, "a request needs a string 'op'", request_id=request_id)
    args = message.get("args", {})
    if not isinstance(args, dict):
        raise RequestError(400, "'args' must be a JSON object", request_id=request_id)
    return request_id, op, args
