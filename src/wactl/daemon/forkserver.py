"""The daemon's end of the fork server (`wactl.bot.forkserver`): workers forked from one
warm process instead of each starting an interpreter and its imports.

`ForkServer.spawn` starts the fork server on first use, sends it the tenant, the log
file and the environment, and returns the new worker's pid. The fork server reports
each worker's exit status (`exit_code`); the supervisor watches the worker with a pidfd
as it watches any worker. When the fork server dies, the next spawn starts a new one;
when a module file it loaded changes on disk (wactl or a dependency upgraded), it says
so and is replaced, so that new workers run the new code.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from wactl.errors import WactlError
from wactl.futures import log_failure, mark_retrieved

log = logging.getLogger("wactl.daemon.forkserver")

#: How long the fork server may take to load everything (a cold disk, a busy machine).
READY_TIMEOUT = 60.0
#: How long a spawn may take to be answered.
SPAWN_TIMEOUT = 30.0
#: The largest message from the fork server.
MAX_MESSAGE = 64 * 1024


class ForkServerError(WactlError):
    """The fork server could not start or could not fork: start the worker the slow way."""


class ForkServer:
    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.env = env
        self.log_path = log_path
        self.popen: subprocess.Popen[bytes] | None = None
        self._channel: socket.socket | None = None
        self._ready: asyncio.Future[int] | None = None
        self._reply: asyncio.Future[dict[str, Any]] | None = None
        self._lock = asyncio.Lock()
        #: Exit codes reported for workers nobody asked about yet, by pid.
        self._codes: dict[int, int] = {}
        self._code_waiters: dict[int, asyncio.Future[int | None]] = {}
        #: Workers forked by the current fork server (their exit codes come from it).
        self._children: set[int] = set()
        #: Waits for a fork server that went away, so that it leaves no zombie.
        self._reaping: asyncio.Future[int] | None = None

    async def spawn(self, slug: str, output: IO[bytes], env: dict[str, str]) -> int:
        """Fork the worker of ``slug`` (stdout and stderr on ``output``); its pid."""
        async with self._lock:
            for attempt in (1, 2):
                if self._channel is None:
                    await self._start()
                reply = await self._request(
                    {"op": "spawn", "slug": slug, "env": env}, output.fileno()
                )
                if "spawned" in reply:
                    pid = int(reply["spawned"])
                    self._children.add(pid)
                    return pid
                if "stale" in reply and attempt == 1:
                    log.info("replacing the fork server: %s", reply["stale"])
                    await self._stop()
                    continue
                raise ForkServerError(f"the fork server could not start a worker: {reply}")
        raise AssertionError("unreachable")

    async def exit_code(self, pid: int, timeout: float) -> int | None:
        """The exit code of a worker this fork server forked, as `subprocess` gives it
        (negative: killed by that signal); None when unknown (not ours, or the fork
        server died before it could say)."""
        if pid in self._codes:
            return self._codes.pop(pid)
        if pid not in self._children or self._channel is None:
            return None
        waiter = self._code_waiters.setdefault(pid, asyncio.get_running_loop().create_future())
        try:
            return await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except TimeoutError:
            return None
        finally:
            self._code_waiters.pop(pid, None)
            self._codes.pop(pid, None)

    async def close(self) -> None:
        async with self._lock:
            await self._stop()

    # --- the process ------------------------------------------------------------------

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("ab") as output:
                self.popen = subprocess.Popen(
                    [sys.executable, "-m", "wactl.bot.forkserver", str(theirs.fileno())],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    pass_fds=(theirs.fileno(),),
                    start_new_session=True,
                )
        except OSError as exc:
            ours.close()
            raise ForkServerError(f"cannot start the fork server: {exc}") from exc
        finally:
            theirs.close()
        ours.setblocking(False)
        self._channel = ours
        self._children = set()
        self._ready = loop.create_future()
        # `_gone` fails it even when its waiter timed out and left.
        self._ready.add_done_callback(mark_retrieved)
        loop.add_reader(ours, self._readable)
        try:
            pid = await asyncio.wait_for(asyncio.shield(self._ready), READY_TIMEOUT)
        except (TimeoutError, ForkServerError) as exc:
            await self._stop()
            raise ForkServerError(
                f"the fork server did not come up ({exc or 'timed out'}); see {self.log_path}"
            ) from None
        log.info("fork server up (pid %d)", pid)

    async def _request(self, message: dict[str, Any], fd: int) -> dict[str, Any]:
        assert self._channel is not None
        loop = asyncio.get_running_loop()
        self._reply = loop.create_future()
        self._reply.add_done_callback(mark_retrieved)  # likewise
        data = json.dumps(message).encode()
        for _ in range(100):
            try:
                socket.send_fds(self._channel, [data], [fd])
                break
            except BlockingIOError:
                await asyncio.sleep(0.01)
            except OSError as exc:
                await self._stop()
                raise ForkServerError(f"the fork server is gone: {exc}") from exc
        try:
            return await asyncio.wait_for(asyncio.shield(self._reply), SPAWN_TIMEOUT)
        except TimeoutError:
            await self._stop()
            raise ForkServerError(
                f"the fork server did not answer within {SPAWN_TIMEOUT:g} s"
            ) from None
        finally:
            self._reply = None

    def _readable(self) -> None:
        channel = self._channel
        while channel is not None:
            try:
                data = channel.recv(MAX_MESSAGE)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._gone("the fork server exited")
                return
            try:
                message = json.loads(data)
            except ValueError:
                log.warning("the fork server sent %r", data[:200])
                continue
            self._dispatch(message)

    def _dispatch(self, message: dict[str, Any]) -> None:
        if "exited" in message:
            pid, code = int(message["exited"]), int(message["code"])
            self._children.discard(pid)
            waiter = self._code_waiters.get(pid)
            if waiter is not None and not waiter.done():
                waiter.set_result(code)
            else:
                self._codes[pid] = code
        elif "ready" in message:
            if self._ready is not None and not self._ready.done():
                self._ready.set_result(int(message["ready"]))
        elif self._reply is not None and not self._reply.done():
            self._reply.set_result(message)

    def _gone(self, why: str) -> None:
        """The channel closed: fail what waits, forget the children's exit codes."""
        if self._channel is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(self._channel)
            self._channel.close()
            self._channel = None
            log.warning("%s; the next worker start runs a new one", why)
        error = ForkServerError(why)
        for future in (self._ready, self._reply):
            if future is not None and not future.done():
                future.set_exception(error)
        for waiter in self._code_waiters.values():
            if not waiter.done():
                waiter.set_result(None)
        self._children = set()
        popen, self.popen = self.popen, None
        if popen is not None and popen.poll() is None:
            # The socket closes a moment before the process is gone: reap it then.
            self._reaping = asyncio.get_running_loop().run_in_executor(None, popen.wait)
            self._reaping.add_done_callback(log_failure(log, "reaping the old fork server"))

    async def _stop(self) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            with contextlib.suppress(ValueError, OSError):
                asyncio.get_running_loop().remove_reader(channel)
            channel.close()  # end of file: the fork server exits; its workers go on
        popen, self.popen = self.popen, None
        if popen is not None:
            try:
                await asyncio.wait_for(asyncio.to_thread(popen.wait), 10)
            except TimeoutError:
                popen.kill()
                await asyncio.to_thread(popen.wait)
        for waiter in self._code_waiters.values():
            if not waiter.done():
                waiter.set_result(None)
        self._children = set()
