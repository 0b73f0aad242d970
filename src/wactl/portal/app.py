"""The portal's application factory: routes, middleware and error pages.

`create_app` is shared by `wactl portal serve`, the tests and the benchmark. It
takes an engine the caller owns (and disposes of), so that a test can point a
portal at its own database.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wactl.config.loader import trusted_networks
from wactl.errors import ConfigError
from wactl.portal import routes
from wactl.portal.auth import OidcSignIn, SignInError
from wactl.portal.security import (
    MAX_BODY_BYTES,
    BodyLimit,
    ForwardedHeaders,
    RateLimits,
    SecurityHeaders,
    SessionCookie,
)
from wactl.portal.views import event_who, event_words

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from wactl.config import Config

log = logging.getLogger("wactl.portal")

SESSION_COOKIE = "wactl_portal"

_MESSAGES = {
    400: ("Bad request", "The address or form was not understood."),
    404: ("Page not found", "There is nothing at this address, or it is not yours to see."),
    405: ("Not allowed", "This address does not take that kind of request."),
}


def _templates() -> Jinja2Templates:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("wactl.portal", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["when"] = _when
    environment.filters["event_words"] = event_words
    environment.filters["event_who"] = event_who
    return Jinja2Templates(env=environment)


def _when(value: object) -> str:
    """A UTC time as "2026-11-01 09:30 UTC" (the pages do not know the owner's zone)."""
    import datetime as dt

    if not isinstance(value, dt.datetime):
        return ""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


_TOO_LARGE = (
    "Too much data",
    f"The request body is larger than {MAX_BODY_BYTES} bytes, the most the portal takes.",
)


def _too_large(scope: Scope) -> Response:
    """The 413 of `BodyLimit`; the connection is closed after it, so the rest of the
    body is never read."""
    response = routes.error_page(Request(scope), 413, *_TOO_LARGE)
    response.headers["connection"] = "close"
    return response


async def _signin_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInError)
    return routes.error_page(request, exc.status, exc.title, exc.message)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    title, message = _MESSAGES.get(exc.status_code, ("Error", "The request failed."))
    if exc.status_code == 400 and exc.detail and exc.detail != "Bad Request":
        message = str(exc.detail)
    return routes.error_page(request, exc.status_code, title, message)


class CatchErrors:
    """An unexpected exception becomes the "Something went wrong" page (or JSON), and its
    traceback goes to the log. Done here rather than by Starlette's last-resort handler,
    which re-raises and so makes uvicorn drop the keep-alive connection."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            if started:
                raise
            request = Request(scope)
            log.exception("unexpected error on %s %s", request.method, request.url.path)
            response = routes.error_page(
                request,
                500,
                "Something went wrong",
                "The portal could not complete this request. Please try again; if it keeps "
                "happening, tell the operator.",
            )
            await response(scope, receive, send)


def create_app(config: Config, engine: Engine) -> Starlette:
    """The portal on ``engine``; refuses to build without a session secret."""
    portal_config = config.portal
    if not portal_config.session_secret:
        raise ConfigError(
            "portal.session_secret is empty; the portal cannot sign its session cookie",
            hint="run `wactl init` (it generates one) or set WACTL_PORTAL_SESSION_SECRET",
        )
    # Secure cookie and HSTS: always when the public address is https, else per request
    # when a trusted proxy says the client came over https (`security.is_https`).
    https = portal_config.public_base_url.startswith("https://")
    portal = routes.Portal(
        config=config,
        engine=engine,
        auth=OidcSignIn(portal_config),
        templates=_templates(),
        signin_limits=RateLimits(portal_config.signin_per_minute),
        post_limits=RateLimits(portal_config.posts_per_minute),
    )
    app = Starlette(
        debug=False,
        routes=[
            Route("/", routes.dashboard),
            Route("/signin", routes.signin_page),
            Route("/auth/signin", routes.auth_start),
            Route("/auth/callback", routes.auth_callback),
            Route("/auth/signout", routes.signout, methods=["POST"]),
            Route("/setup", routes.setup_page),
            Route("/setup", routes.setup_submit, methods=["POST"]),
            Route("/requests/{request_id:int}", routes.request_page),
            Route("/link", routes.link_page),
            Route("/link/qr.svg", routes.qr_svg),
            Route("/logs", routes.logs_page),
            Route("/events", routes.events_page),
            Route("/api/portal/tenant/current/status", routes.api_status),
            Route("/api/portal/tenant/current/logs", routes.api_logs),
            Route("/api/portal/setup-request", routes.api_setup_request, methods=["POST"]),
            Route("/healthz", routes.healthz),
            Mount("/static", StaticFiles(packages=[("wactl.portal", "static")]), name="static"),
        ],
        middleware=[
            Middleware(ForwardedHeaders, trusted=trusted_networks(portal_config.trusted_proxies)),
            Middleware(SecurityHeaders, https=https),
            Middleware(BodyLimit, limit=MAX_BODY_BYTES, refuse=_too_large),
            Middleware(
                SessionCookie,
                https=https,
                secret_key=portal_config.session_secret,
                session_cookie=SESSION_COOKIE,
                max_age=int(portal_config.session_hours * 3600),
            ),
            Middleware(CatchErrors),
        ],
        exception_handlers={HTTPException: _http_error, SignInError: _signin_error},
    )
    app.state.portal = portal
    return app
