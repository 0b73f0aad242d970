"""Running the portal: database checks, the listening socket, logging, uvicorn.

`serve` blocks until SIGINT or SIGTERM. It refuses to start on a database whose
schema is not current (naming `wactl db upgrade`) or without a session secret, and
starts without sign-in credentials, saying in its log exactly what to configure.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import TYPE_CHECKING

from wactl.config import Config
from wactl.errors import UsageError
from wactl.portal.auth import setup_instructions
from wactl.signals import Terminated

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

log = logging.getLogger("wactl.portal")


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: any free port)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise UsageError(
            f"--host '{host}' is not an address of this machine: {exc.strerror}",
            hint="use 127.0.0.1, 0.0.0.0 or a name that resolves",
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            hint="choose another --port, or stop what uses this one",
        ) from None
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: ASGIApp, *, access_log: bool = True) -> uvicorn.Config:
    """How uvicorn runs the portal (shared with the tests and the benchmark)."""
    import uvicorn

    return uvicorn.Config(
        app,
        log_config=None,
        lifespan="off",
        access_log=access_log,
        # The application decides whose X-Forwarded-For/-Proto to believe
        # (portal.trusted_proxies, `security.ForwardedHeaders`); uvicorn believes none.
        proxy_headers=False,
        server_header=False,
    )


def serve(config: Config, *, host: str, port: int) -> None:
    import uvicorn

    from wactl.db.engine import check_connection, engine_for
    from wactl.db.schema import ensure_current
    from wactl.portal.app import create_app

    engine = engine_for(config)
    try:
        check_connection(engine)
        ensure_current(engine)
        app = create_app(config, engine)
        sock = bind(host, port)
        bound_host, bound_port = sock.getsockname()[:2]
        shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
        local_url = f"http://{shown_host}:{bound_port}"
        _setup_logging()
        public = config.portal.public_base_url.rstrip("/") or local_url
        log.info("listening on %s (public address %s)", local_url, public)
        if app.state.portal.auth.configured:
            log.info(
                "sign-in through %s as client %s; redirect URI %s/auth/callback",
                config.portal.oidc_metadata_url,
                config.portal.google_client_id,
                public,
            )
        else:
            log.warning("%s", setup_instructions(f"{public}/auth/callback"))
        server = uvicorn.Server(uvicorn_config(app))
        try:
            server.run(sockets=[sock])
        except (KeyboardInterrupt, Terminated):
            # uvicorn stops gracefully on SIGTERM or SIGINT, then sends the signal again
            # (to end the process as the signal would have): that stop was asked for.
            if not server.should_exit:
                raise
            log.info("stopped")
        finally:
            sock.close()
    finally:
        engine.dispose()
