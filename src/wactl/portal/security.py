"""The portal's defences that are not sign-in itself: CSRF tokens, security headers,
rate limits and local-only redirects.

- CSRF: one random token per session, put in every form (and given to the JSON API
  by the status endpoint); every POST must send it back, compared in constant time.
  The session cookie is also SameSite=Lax, so a cross-site POST carries no session.
- Headers: a strict Content-Security-Policy (no inline script or style, no framing),
  nosniff, no referrer, and no caching of anything but the static files.
- Rate limits: token buckets (`wactl.ratelimit.TokenBucket`) per client address
  for sign-in and per owner for posts; in memory, per portal process.
- Body limit: no request body over `MAX_BODY_BYTES`, counted while it is read (a
  chunked body declares no length), on every route: 413.
- Forwarded headers: X-Forwarded-For and X-Forwarded-Proto are believed only from the
  proxies of `portal.trusted_proxies`; from anyone else they are ignored, so a client
  cannot choose the address its rate limit counts or make the portal think it is
  behind HTTPS.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from starlette.datastructures import Headers
from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wactl.ratelimit import TokenBucket

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
_CSRF_KEY = "csrf"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)


def csrf_token(session: MutableMapping[str, Any]) -> str:
    """The session's CSRF token, created on first use."""
    token = session.get(_CSRF_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[_CSRF_KEY] = token
    return token


def csrf_valid(session: MutableMapping[str, Any], sent: object) -> bool:
    expected = session.get(_CSRF_KEY)
    if not isinstance(expected, str) or not expected or not isinstance(sent, str):
        return False
    return hmac.compare_digest(expected.encode(), sent.encode())


def local_path(target: object, default: str = "/") -> str:
    """``target`` when it is a path on this site, else ``default`` (no open redirects).

    Refused: absolute URLs, scheme-relative ``//host``, backslashes (browsers read
    ``/\\host`` as ``//host``), control characters and anything not starting with "/".
    """
    if not isinstance(target, str) or not target.startswith("/") or len(target) > 500:
        return default
    if target.startswith("//") or "\\" in target:
        return default
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return default
    return target


def is_https(scope: Scope, configured: bool) -> bool:
    """Whether this request reached the portal over HTTPS: ``configured`` (the public
    address is https) or, behind a trusted proxy, X-Forwarded-Proto said so."""
    return configured or scope.get("scheme") == "https"


class SecurityHeaders:
    """ASGI middleware adding the security headers to every response (HSTS only to a
    request that came over HTTPS)."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        headers = [
            (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"no-referrer"),
            (b"cross-origin-opener-policy", b"same-origin"),
            (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
        ]
        self.https = https
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")
        headers = list(self.headers)
        if is_https(scope, self.https):
            headers.append((b"strict-transport-security", b"max-age=31536000"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {name.lower() for name, _ in raw}
                raw.extend(item for item in headers if item[0] not in present)
                if not static and b"cache-control" not in present:
                    raw.append((b"cache-control", b"no-store"))
                message["headers"] = raw
            await send(message)

        await self.app(scope, receive, send_with_headers)


class RateLimits:
    """Token buckets by key: ``per_minute`` tokens a minute after a burst of as many."""

    #: Above this many keys, buckets that have refilled completely are forgotten.
    MAX_KEYS = 10_000

    def __init__(self, per_minute: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str) -> float:
        """0 when allowed; otherwise the seconds until the next attempt may pass."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.MAX_KEYS:
                self._forget_full()
            bucket = TokenBucket(self.per_minute, self.per_minute / 60.0, self._clock)
            self._buckets[key] = bucket
        if bucket.take():
            return 0.0
        return max(1.0, math.ceil((1 - bucket.tokens) / bucket.per_second))

    def _forget_full(self) -> None:
        for key, bucket in list(self._buckets.items()):
            bucket._refill()
            if bucket.tokens >= bucket.burst:
                del self._buckets[key]


# --- the session cookie ---------------------------------------------------------------------


class SessionCookie:
    """Starlette's signed session cookie (HttpOnly, SameSite=Lax), ``Secure`` on every
    request that came over HTTPS (`is_https`): a Secure cookie set over plain http
    would never come back."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        https: bool,
        secret_key: str,
        session_cookie: str,
        max_age: int,
    ) -> None:
        self.https = https
        self.plain, self.secure = (
            SessionMiddleware(
                app,
                secret_key=secret_key,
                session_cookie=session_cookie,
                max_age=max_age,
                same_site="lax",
                https_only=secure,
            )
            for secure in (False, True)
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chosen = self.secure if is_https(scope, self.https) else self.plain
        await chosen(scope, receive, send)


# --- forwarded headers -----------------------------------------------------------------------

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


class ForwardedHeaders:
    """The client's address and scheme as a trusted reverse proxy forwarded them.

    Only for a connection from one of ``trusted`` (`portal.trusted_proxies`): the
    client is the nearest X-Forwarded-For hop that is not itself a trusted proxy (each
    proxy appends the address it saw, so hops further left are whatever the client
    claimed), and X-Forwarded-Proto (the nearest value) sets the scheme. Other
    connections keep their own address and ``http``, whatever headers they send.
    """

    def __init__(self, app: ASGIApp, *, trusted: Sequence[Network]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    def _trusts(self, host: str) -> bool:
        address = _address(host)
        return address is not None and any(address in network for network in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] == "http" and client and self.trusted and self._trusts(client[0]):
            headers = Headers(scope=scope)
            hops = [
                hop.strip()
                for value in headers.getlist("x-forwarded-for")
                for hop in value.split(",")
                if hop.strip()
            ]
            host = client[0]
            for hop in reversed(hops):
                address = _address(hop)
                if address is None:
                    break  # not an address: what is further left is not believable either
                host = str(address)
                if not self._trusts(host):
                    break
            scope = dict(scope, client=(host, 0))
            protos = ",".join(headers.getlist("x-forwarded-proto")).split(",")
            nearest = protos[-1].strip().lower()
            if nearest in ("http", "https"):
                scope["scheme"] = nearest
        await self.app(scope, receive, send)


# --- the body limit --------------------------------------------------------------------------

#: The largest request body the portal reads: a setup request is a few hundred bytes
#: (its notes at most 2,000 characters, ~18 KB when every one is percent-encoded).
MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with ``refuse(scope)`` (a 413), on
    every route, whether or not its handler reads the body.

    A declared Content-Length over the limit is refused at once. Otherwise the body is
    read here first, counting as it comes (a chunked body declares no length), up to
    the limit, and refused as soon as it passes it; the application then gets the
    whole body as one message. At most ``limit`` bytes of a request are ever held.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        refuse: Callable[[Scope], Callable[[Scope, Receive, Send], Awaitable[None]]],
    ) -> None:
        self.app = app
        self.limit = limit
        self.refuse = refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        # uvicorn (h11) has already refused a Content-Length that is not a number.
        if declared.isascii() and declared.isdigit() and int(declared) > self.limit:
            await self.refuse(scope)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away before its body ended
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self.refuse(scope)(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body_given = False

        async def replay() -> Message:
            nonlocal body_given
            if body_given:
                return await receive()  # after the body: the disconnect, when it comes
            body_given = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)
