"""The portal for tests: served by uvicorn on loopback in a thread of the test, with
sign-in against the local OpenID provider of `tests.oidc_provider`."""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import httpx2
import pytest
import uvicorn
from starlette.applications import Starlette

from tests.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider
from tests.support import poll_for
from wactl.config import load_config
from wactl.db.engine import make_engine
from wactl.portal.app import SESSION_COOKIE, create_app
from wactl.portal.server import bind, uvicorn_config

SESSION_SECRET = "portal-test-session-secret-0123456789abcdef"


def portal_env(monkeypatch: pytest.MonkeyPatch, provider: Provider | None) -> None:
    """The WACTL_PORTAL_* settings of a portal signing in through ``provider``."""
    monkeypatch.setenv("WACTL_PORTAL_SESSION_SECRET", SESSION_SECRET)
    if provider is not None:
        monkeypatch.setenv("WACTL_PORTAL_GOOGLE_CLIENT_ID", CLIENT_ID)
        monkeypatch.setenv("WACTL_PORTAL_GOOGLE_CLIENT_SECRET", CLIENT_SECRET)
        monkeypatch.setenv("WACTL_PORTAL_OIDC_METADATA_URL", provider.metadata_url)


@dataclass
class RunningPortal:
    url: str
    server: uvicorn.Server
    app: Starlette

    def client(self) -> httpx2.Client:
        """A browser-like client: keeps cookies, does not follow redirects by itself."""
        return httpx2.Client(base_url=self.url, follow_redirects=False, timeout=30)


@contextlib.contextmanager
def running_portal() -> Iterator[RunningPortal]:
    """The portal on the current WACTL_* configuration, on a free loopback port."""
    config = load_config()
    engine = make_engine(config.database_url)
    app = create_app(config, engine)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, access_log=False))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="portal", daemon=True
    )
    thread.start()
    try:
        poll_for(lambda: server.started, timeout=30)
        yield RunningPortal(url=f"http://127.0.0.1:{port}", server=server, app=app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        engine.dispose()


def follow(client: httpx2.Client, response: httpx2.Response, limit: int = 10) -> httpx2.Response:
    """Follow redirects across the portal and the provider, as a browser would."""
    for _ in range(limit):
        if response.status_code not in (301, 302, 303, 307, 308):
            return response
        location = response.headers["location"]
        response = client.get(location if "://" in location else client.base_url.join(location))
    raise AssertionError("too many redirects")


def sign_in(
    client: httpx2.Client, provider: Provider, email: str, name: str = "Test Owner"
) -> httpx2.Response:
    """The whole authorization-code flow for ``email``; returns the page it lands on."""
    provider.sign_in_as(email, name)
    return follow(client, client.get("/auth/signin"))


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, "no CSRF token on the page"
    return match[1]


def session_cookie(client: httpx2.Client) -> str | None:
    return client.cookies.get(SESSION_COOKIE)


def page_text(page: str) -> str:
    """The visible text of a page's <main>, whitespace collapsed (for verbatim asserts)."""
    import html

    main = page.split("<main>", 1)[-1].split("</main>", 1)[0]
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", main)).split())
