"""The portal's defences that are not sign-in itself: CSRF tokens, security headers,
rate limits and local-only redirects.

- CSRF: one random token per session, put in every form (and given to the JSON API
  by the status endpoint); every POST must send it back, compared in constant time.
  The session cookie is also SameSite=Lax, so a cross-site POST carries no session.
- Headers: a strict Content-Security-Policy (no inline script or style, no framing),
  nosniff, no referrer, and no caching of anything but the static files.
- Rate limits: token buckets (`wactl.bot.ratelimit.TokenBucket`) per client address
  for sign-in and per owner for posts; in memory, per portal process.
"""

from __future__ import annotations

import hmac
import math
import secrets
import time
from collections.abc import Callable, MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wactl.bot.ratelimit import TokenBucket

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


class SecurityHeaders:
    """ASGI middleware adding the security headers to every response."""

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
        if https:
            headers.append((b"strict-transport-security", b"max-age=31536000"))
        self.headers = headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                raw = list(message.get("headers", []))
                present = {name.lower() for name, _ in raw}
                raw.extend(item for item in self.headers if item[0] not in present)
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
