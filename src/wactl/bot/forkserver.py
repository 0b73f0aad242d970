"""``python -m wactl.bot.forkserver FD``: the process the daemon forks workers from.

A worker started as ``python -m wactl.bot SLUG`` loads the interpreter, SQLAlchemy,
Playwright's Python side and wactl (about 50 MB of private memory) on its own. This
process loads them once, freezes them out of the garbage collector's reach
(``gc.freeze``: a collection would otherwise write to every object and copy its page),
and forks each worker from there: the children share those pages until they write
them. bench/browser.py and bench/README.md have the figures.

It talks to the daemon over ``FD``, one end of a ``SOCK_SEQPACKET`` socket pair (one
message per datagram, JSON):

- the daemon sends ``{"op": "spawn", "slug": S, "env": {...}}`` with the worker's log
  file as an attached descriptor; the reply is ``{"spawned": PID}``, or
  ``{"error": TEXT}`` when the fork failed, or ``{"stale": TEXT}`` when a module
  file it loaded has changed on disk since (an upgrade): the daemon then replaces it;
- on its own it sends ``{"exited": PID, "code": C}`` for each worker that ended (the
  code as `subprocess` reports it: negative for a signal);
- it sends ``{"ready": PID}`` once, when it has loaded everything.

The child becomes the worker: its own session, stdout and stderr on the log file,
stdin on /dev/null, the environment it was sent, then `wactl.bot.worker.main`. When
the daemon goes away (end of file) this process exits; its workers keep running, as
workers started by a daemon always do, and the next daemon adopts them.

Single-threaded on purpose: a fork copies only the calling thread, so no other thread
may hold a lock (the import lock, a logging lock) at the moment of a fork.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import logging
import os
import selectors
import signal
import socket
import sys
from pathlib import Path
from typing import Any, NoReturn

#: The largest message: a spawn carries the daemon's environment.
MAX_MESSAGE = 1 << 20
#: Modules a worker imports later, by its engine and database, when they are installed.
OPTIONAL_PRELOADS = (
    "sqlite3",
    "playwright.async_api",
    "psycopg",
    "sqlalchemy.dialects.postgresql.psycopg",
    "setproctitle",
)


def preload() -> dict[str, float]:
    """Import what every worker imports; returns the loaded module files and their
    modification times (to notice an upgrade)."""
    import wactl.bot.engines.sandbox
    import wactl.bot.engines.whatsapp_web
    import wactl.bot.worker
    import wactl.db.schema
    import wactl.wajs
    import wactl.worker_names  # noqa: F401

    # What a worker imports later, by its engine and database: loaded here, it is shared
    # (importing psycopg adds 9.7 MB USS to a process; tests/test_forkserver.py checks
    # that a worker maps no library the fork server has not).
    for name in OPTIONAL_PRELOADS:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    files: dict[str, float] = {}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str):
            with contextlib.suppress(OSError):
                files[path] = Path(path).stat().st_mtime
    return files


def changed(files: dict[str, float]) -> str | None:
    """The first loaded module file that changed or went away, or None."""
    for path, mtime in files.items():
        try:
            if Path(path).stat().st_mtime != mtime:
                return path
        except OSError:
            return path
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not argv[0].isdigit():
        print("usage: python -m wactl.bot.forkserver FD", file=sys.stderr)
        return 2
    channel = socket.socket(fileno=int(argv[0]))
    channel.setblocking(True)
    files = preload()
    gc.collect()
    gc.freeze()
    pipe = wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda _signum, _frame: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon's Ctrl-C is not ours
    _send(channel, {"ready": os.getpid()})
    selector = selectors.DefaultSelector()
    selector.register(channel, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    try:
        while True:
            for key, _ in selector.select():
                if key.fileobj == wake_read:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake_read, 4096)
                    continue
                message, fds, _flags, _address = socket.recv_fds(channel, MAX_MESSAGE, 1)
                if not message:
                    return 0  # the daemon is gone
                try:
                    _handle(channel, _parse(message), fds, files, selector, pipe)
                finally:
                    for fd in fds:
                        os.close(fd)
            _reap(channel)
    except (BrokenPipeError, ConnectionResetError):
        return 0
    finally:
        selector.close()


def _handle(
    channel: socket.socket,
    request: dict[str, Any],
    fds: list[int],
    files: dict[str, float],
    selector: selectors.BaseSelector,
    pipe: tuple[int, int],
) -> None:
    slug, env = request.get("slug"), request.get("env")
    if (
        request.get("op") != "spawn"
        or len(fds) != 1
        or not isinstance(slug, str)
        or not isinstance(env, dict)
    ):
        _send(channel, {"error": f"bad request {request!r} with {len(fds)} descriptors"})
        return
    path = changed(files)
    if path is not None:
        _send(channel, {"stale": f"{path} changed since the fork server loaded it"})
        return
    try:
        pid = os.fork()
    except OSError as exc:
        _send(channel, {"error": f"fork failed: {exc}"})
        return
    if pid == 0:
        selector.close()
        _become_worker(slug, {str(k): str(v) for k, v in env.items()}, fds[0], channel, pipe)
    _send(channel, {"spawned": pid})


def _parse(message: bytes) -> dict[str, Any]:
    try:
        request = json.loads(message)
    except ValueError:
        return {}
    return request if isinstance(request, dict) else {}


def _reap(channel: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        _send(channel, {"exited": pid, "code": os.waitstatus_to_exitcode(status)})


def _send(channel: socket.socket, message: dict[str, Any]) -> None:
    channel.send(json.dumps(message).encode())


def _become_worker(
    slug: str, env: dict[str, str], log_fd: int, channel: socket.socket, pipe: tuple[int, int]
) -> NoReturn:
    from wactl.worker_names import name_worker_process

    code = 1
    try:
        # First: until then this process looks like the fork server to ps and pgrep.
        name_worker_process(slug, title=True)
        os.setsid()
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        channel.close()
        for fd in pipe:
            os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        os.environ.clear()
        os.environ.update(env)
        sys.argv = ["wactl.bot", slug]
        from wactl.bot.worker import main as worker_main

        code = worker_main([slug])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            logging.shutdown()
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
