"""Running wactld: the lock, the socket (0600), the pid file, logging, uvicorn.

`run_daemon` blocks until the daemon is asked to stop (SIGTERM, SIGINT or
POST /v1/shutdown). Stopping the daemon leaves the workers running unless asked
otherwise; the next daemon re-adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import logging.handlers
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from wactl.config import Config
from wactl.errors import DaemonError
from wactl.ipc.protocol import daemon_log_path, pid_path, socket_path

if TYPE_CHECKING:
    from wactl.db.daemon_claim import DaemonClaim

log = logging.getLogger("wactl.daemon")

#: How often the daemon checks that it still holds the database's claim.
CLAIM_CHECK_SECONDS = 15.0


def _setup_logging(config: Config, *, to_stderr: bool) -> None:
    path = daemon_log_path(config.log_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.handlers.RotatingFileHandler(
        path, maxBytes=config.daemon.log_max_bytes, backupCount=config.daemon.log_backups
    )
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if to_stderr:
        stream = logging.StreamHandler(sys.stderr)
        stream.setFormatter(formatter)
        root.addHandler(stream)
    root.setLevel(logging.INFO)
    # uvicorn's own loggers go through ours; its access log would be one line per `ps`.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True


def _take_lock(runtime_dir: Path) -> IO[str]:
    """One daemon per runtime directory: an exclusive lock held for the daemon's life."""
    lock = (runtime_dir / "wactld.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        pid = _read_pid(pid_path(runtime_dir))
        raise DaemonError(
            f"a daemon is already running (pid {pid or '?'}) for {runtime_dir}",
            hint="see `wactl daemon status`",
        ) from None
    return lock


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _bind_socket(path: Path) -> socket.socket:
    """A listening Unix socket with mode 0600 from the start (no window with wider mode)."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # stale: we hold the lock, so no live daemon owns it
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old_umask)
    path.chmod(0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def run_daemon(config: Config, *, foreground: bool) -> None:
    from wactl.db import schema
    from wactl.db.daemon_claim import DaemonClaim, DaemonIdentity
    from wactl.db.engine import check_connection, engine_for

    runtime_dir = config.runtime_dir
    runtime_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    runtime_dir.chmod(0o700)
    (runtime_dir / "workers").mkdir(exist_ok=True, mode=0o700)
    lock = _take_lock(runtime_dir)
    _setup_logging(config, to_stderr=foreground)
    engine = engine_for(config, application_name="wactl daemon")
    try:
        check_connection(engine)
        # Without Alembic: the daemon would carry its ~11 MB for its whole life.
        schema.ensure_current(engine)
        path = socket_path(runtime_dir)
        # One daemon per database, whatever its runtime directory: a second one would
        # supervise the same tenants (`wactl.db.daemon_claim`).
        claim = DaemonClaim.take(engine, DaemonIdentity.of_this_process(path))
        try:
            sock = _bind_socket(path)
            pidfile = pid_path(runtime_dir)
            pidfile.write_text(f"{os.getpid()}\n")
            try:
                asyncio.run(_serve(config, engine, sock, str(path), claim))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                with contextlib.suppress(FileNotFoundError):
                    pidfile.unlink()
                sock.close()
        finally:
            claim.release()
    finally:
        engine.dispose()
        lock.close()
        log.info("daemon stopped")


async def _serve(
    config: Config, engine: object, sock: socket.socket, path: str, claim: DaemonClaim
) -> None:
    import uvicorn
    from sqlalchemy.engine import Engine

    from wactl.daemon.api import DaemonState, build_app
    from wactl.daemon.events import EventHub
    from wactl.daemon.supervisor import Supervisor

    assert isinstance(engine, Engine)
    hub = EventHub()
    supervisor = Supervisor(config, engine, hub)
    stop_workers = False
    servers: list[uvicorn.Server] = []

    exit_requested = asyncio.Event()

    def request_shutdown(with_workers: bool) -> None:
        nonlocal stop_workers
        stop_workers = stop_workers or with_workers
        # First tell event-stream clients, so their streams end cleanly before the
        # server closes the connections.
        if not hub.closed:
            hub.close()
        for server in servers:
            server.should_exit = True
        exit_requested.set()

    class Server(uvicorn.Server):
        """uvicorn's server, leaving signals to the daemon, with a main loop that wakes
        once a second instead of ten times (uvicorn's own loop polls `should_exit`
        every 0.1 s: ~0.05 % of a core in an idle daemon)."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn's would send the signal again once the server has stopped, which
            # ends the process before the supervisor's shutdown (and for systemd, a
            # SIGTERM that stopped the daemon cleanly is not a failure).
            yield

        async def main_loop(self) -> None:
            counter = 0
            while not await self.on_tick(counter):
                # on_tick refreshes the Date header when counter % 10 == 0.
                counter = (counter + 10) % 864000
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(exit_requested.wait(), 1.0)

    state = DaemonState(
        supervisor=supervisor,
        hub=hub,
        socket_path=path,
        request_shutdown=request_shutdown,
        pid=os.getpid(),
    )
    app = build_app(state)
    server = Server(
        uvicorn.Config(
            app,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=3,
            http="h11",
            loop="asyncio",
        )
    )
    servers.append(server)
    # From here on SIGTERM, SIGINT (Ctrl-C on `wactl daemon run`) and SIGHUP are the graceful
    # stop, even while booting; the process exits 0 once everything is shut down.
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, _on_signal, signum, request_shutdown)
    await supervisor.boot()
    log.info("daemon %d listening on %s", os.getpid(), path)
    jobs = [server.serve(sockets=[sock])]
    if config.daemon.metrics_address:
        jobs.append(_metrics_server(config.daemon.metrics_address, state, servers))
    keeping = loop.create_task(_keep_claim(claim, request_shutdown), name="keep-claim")
    try:
        await asyncio.gather(*jobs)
    finally:
        keeping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeping
        if not hub.closed:
            hub.close()
        log.info(
            "shutting down (%s)", "stopping workers" if stop_workers else "workers keep running"
        )
        await supervisor.shutdown(stop_workers=stop_workers)


async def _keep_claim(claim: DaemonClaim, request_shutdown: Callable[[bool], None]) -> None:
    """Check the database claim now and then (a PostgreSQL restart ends the session that
    holds it): take it again, or stop serving if another daemon took it meanwhile."""
    from wactl.db.daemon_claim import ServedElsewhereError

    while True:
        await asyncio.sleep(CLAIM_CHECK_SECONDS)
        if await asyncio.to_thread(claim.alive):
            continue
        try:
            await asyncio.to_thread(claim.retake)
            log.warning("the database claim was lost (its session ended) and taken again")
        except ServedElsewhereError as exc:
            log.error("stopping: %s", exc.message)
            request_shutdown(False)
            return
        except Exception as exc:
            log.warning("the database claim was lost and cannot be taken again yet: %s", exc)


def _on_signal(signum: int, request_shutdown: Callable[[bool], None]) -> None:
    log.info("%s received; shutting down", signal.Signals(signum).name)
    request_shutdown(False)


async def _metrics_server(address: str, state: object, servers: list[Any]) -> None:
    """Prometheus metrics on TCP: only GET /metrics, read-only, no control."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse, Response
    from starlette.routing import Route

    import wactl
    from wactl.daemon import metrics
    from wactl.daemon.api import DaemonState

    assert isinstance(state, DaemonState)

    async def get(request: Request) -> Response:
        await state.supervisor.refresh()
        text = metrics.render(
            state.supervisor.views(), uptime=state.supervisor.uptime(), version=wactl.__version__
        )
        return PlainTextResponse(text, media_type=metrics.CONTENT_TYPE)

    host, _, port = address.rpartition(":")
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/metrics", get)]),
            host=host.strip("[]"),
            port=int(port),
            log_config=None,
            access_log=False,
            lifespan="off",
            http="h11",
            loop="asyncio",
        )
    )
    servers.append(server)
    await server.serve()
