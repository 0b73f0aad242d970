"""A small OpenID provider for the portal's tests: real HTTP on loopback, a real JWKS
and RS256 id_tokens signed with a key generated for the test run.

It plays Google's part in the authorization-code flow: /authorize signs in whoever
`identity` says (no login page: a test has no person to type a password) and sends
the browser back with a code; /token checks the client's credentials, the redirect
URI and the PKCE verifier, and answers with an id_token carrying the nonce it was
given. `overrides` and `sign_with` let a test make that id_token wrong in one way;
`answers` replaces what an endpoint answers (an HTML error page, a JSON array...);
`reuse_codes` makes codes usable more than once (Google refuses a used code, but the
portal must not depend on every provider doing so).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.support import serving

CLIENT_ID = "wactl-test-client.apps.example"
CLIENT_SECRET = "test-client-secret"
KEY_ID = "test-key-1"


@dataclass
class Grant:
    client_id: str
    redirect_uri: str
    nonce: str | None
    challenge: str | None
    identity: dict[str, Any]


@dataclass
class Provider:
    url: str
    key: RSAKey
    #: Claims of whoever signs in next (email, name, email_verified...).
    identity: dict[str, Any] = field(default_factory=dict)
    #: Claims replaced in the next id_tokens (e.g. {"nonce": "other"}).
    overrides: dict[str, Any] = field(default_factory=dict)
    #: Sign id_tokens with this key instead (same kid): a bad signature.
    sign_with: RSAKey | None = None
    #: Raw answers by path ("/token", "/jwks"): (status, content type, body).
    answers: dict[str, tuple[int, str, bytes]] = field(default_factory=dict)
    reuse_codes: bool = False
    grants: dict[str, Grant] = field(default_factory=dict)
    token_requests: int = 0

    @property
    def metadata_url(self) -> str:
        return f"{self.url}/.well-known/openid-configuration"

    def sign_in_as(self, email: str, name: str = "Test Owner", **claims: Any) -> None:
        self.identity = {"email": email, "name": name, "email_verified": True, **claims}

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        # One account per address, whatever its case (a test signs in as another
        # account with the same address by giving "sub" to sign_in_as).
        account = str(grant.identity.get("email")).lower()
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": hashlib.sha256(account.encode()).hexdigest()[:21],
            "aud": grant.client_id,
            "azp": grant.client_id,
            "iat": now,
            "exp": now + 300,
            **grant.identity,
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        claims.update(self.overrides)
        key = self.sign_with or self.key
        return jwt.encode({"alg": "RS256", "kid": KEY_ID}, claims, key)


def _handler(provider: Provider) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet tests

        def _json(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)

        def _raw(self, path: str) -> bool:
            """Answer with the test's raw answer for ``path``, if it set one."""
            if path not in provider.answers:
                return False
            status, content_type, body = provider.answers[path]
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return True

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if self._raw(parts.path):
                return
            if parts.path == "/.well-known/openid-configuration":
                self._json(
                    200,
                    {
                        "issuer": provider.url,
                        "authorization_endpoint": f"{provider.url}/authorize",
                        "token_endpoint": f"{provider.url}/token",
                        "jwks_uri": f"{provider.url}/jwks",
                        "response_types_supported": ["code"],
                        "subject_types_supported": ["public"],
                        # "none" and HS256 are offered to check the portal ignores them.
                        "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
                        "code_challenge_methods_supported": ["S256"],
                    },
                )
            elif parts.path == "/jwks":
                self._json(200, KeySet([provider.key]).as_dict(private=False))
            elif parts.path == "/authorize":
                self._authorize(parse_qs(parts.query))
            else:
                self._json(404, {"error": "not_found"})

        def _authorize(self, query: dict[str, list[str]]) -> None:
            one = {key: values[0] for key, values in query.items()}
            if one.get("client_id") != CLIENT_ID or one.get("response_type") != "code":
                self._json(400, {"error": "invalid_request"})
                return
            code = secrets.token_urlsafe(16)
            provider.grants[code] = Grant(
                client_id=one["client_id"],
                redirect_uri=one.get("redirect_uri", ""),
                nonce=one.get("nonce"),
                challenge=one.get("code_challenge"),
                identity=dict(provider.identity),
            )
            back = one.get("redirect_uri", "")
            self.send_response(302)
            self.send_header(
                "Location", f"{back}?{urlencode({'code': code, 'state': one.get('state', '')})}"
            )
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_POST(self) -> None:
            if urlsplit(self.path).path != "/token":
                self._json(404, {"error": "not_found"})
                return
            provider.token_requests += 1
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if self._raw("/token"):
                return
            client_id, client_secret = form.get("client_id"), form.get("client_secret")
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                decoded = base64.b64decode(auth[6:]).decode()
                client_id, _, client_secret = decoded.partition(":")
            if (client_id, client_secret) != (CLIENT_ID, CLIENT_SECRET):
                self._json(401, {"error": "invalid_client"})
                return
            code = form.get("code", "")
            grant = provider.grants.get(code) if provider.reuse_codes else None
            grant = grant or provider.grants.pop(code, None)
            if (
                grant is None
                or form.get("grant_type") != "authorization_code"
                or form.get("redirect_uri") != grant.redirect_uri
            ):
                self._json(400, {"error": "invalid_grant"})
                return
            if grant.challenge is not None:
                verifier = form.get("code_verifier", "")
                digest = hashlib.sha256(verifier.encode()).digest()
                expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                if expected != grant.challenge:
                    self._json(400, {"error": "invalid_grant"})
                    return
            self._json(
                200,
                {
                    "access_token": secrets.token_urlsafe(24),
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "scope": "openid email profile",
                    "id_token": provider.id_token(grant),
                },
            )

    return Handler


_KEYS: list[RSAKey] = []


def signing_key() -> RSAKey:
    """One RSA key per test run (generating one takes ~0.1 s)."""
    if not _KEYS:
        _KEYS.append(RSAKey.generate_key(2048, parameters={"kid": KEY_ID}))
    return _KEYS[0]


@contextlib.contextmanager
def running_provider() -> Iterator[Provider]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = server.server_address[1]
    provider = Provider(url=f"http://127.0.0.1:{port}", key=signing_key())
    server.RequestHandlerClass = _handler(provider)
    with serving(server, "oidc-provider"):
        yield provider
