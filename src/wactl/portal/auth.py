"""Sign-in with OpenID Connect (Google by default) through authlib's Starlette client.

The authorization-code flow with PKCE: `redirect` sends the browser to the provider
with a fresh ``state`` and ``nonce`` kept in the signed session cookie; `finish`
takes the code back, checks the state, exchanges the code, and verifies the
id_token: signature against the provider's JWKS (asymmetric algorithms only),
issuer, audience (exactly our client id, which authlib alone checks only through
``azp``), expiry, and the nonce. Each refusal is a `SignInError` with a title and a
sentence for the page; nothing about the owner is stored before all checks pass.

authlib (~60 ms with httpx2 and joserfc) is imported on first use, not at startup.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wactl.config.loader import email_domains
from wactl.config.model import PortalConfig

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger("wactl.portal")

#: The name authlib files the client under (its session keys start "_state_oidc_").
CLIENT_NAME = "oidc"
#: Signature algorithms accepted for id_tokens: only asymmetric ones, whatever the
#: provider's metadata lists ("none" and HMAC with the client secret are refused).
SAFE_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
#: Seconds of clock difference tolerated on exp, iat and nbf.
LEEWAY_SECONDS = 60


class SignInError(Exception):
    """Sign-in was refused; ``title`` and ``message`` are shown to the person."""

    def __init__(self, title: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.title = title
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Identity:
    email: str
    name: str
    subject: str


def setup_instructions(redirect_uri: str) -> str:
    """What an operator must configure for sign-in to work (page and log)."""
    return (
        "Sign-in is not configured: set portal.google_client_id and "
        "portal.google_client_secret (`wactl config set portal.google_client_id ID`, "
        "then the same for the secret) to an OAuth client of type Web application "
        f"whose authorized redirect URI is {redirect_uri}, and restart `wactl portal serve`."
    )


class OidcSignIn:
    def __init__(self, config: PortalConfig) -> None:
        self.config = config
        self.configured = bool(config.google_client_id and config.google_client_secret)
        self.allowed_domains = email_domains(config.allowed_email_domains)
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            from authlib.integrations.starlette_client import OAuth

            oauth = OAuth()
            self._client = oauth.register(
                CLIENT_NAME,
                client_id=self.config.google_client_id,
                client_secret=self.config.google_client_secret,
                server_metadata_url=self.config.oidc_metadata_url,
                client_kwargs={
                    "scope": "openid email profile",
                    "code_challenge_method": "S256",
                    "timeout": 10.0,
                },
            )
        return self._client

    async def _metadata(self) -> dict[str, Any]:
        """The provider's discovery document, loaded once and checked."""
        import httpx2

        client = self.client()
        url = self.config.oidc_metadata_url
        try:
            metadata: dict[str, Any] = await client.load_server_metadata()
        except (httpx2.HTTPError, ValueError) as exc:
            log.error("cannot load the OpenID provider's metadata from %s: %s", url, exc)
            raise SignInError(
                "The sign-in service cannot be reached",
                "The portal could not reach the sign-in service. Please try again in a "
                "few minutes.",
                status=502,
            ) from None
        missing = [
            key
            for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
            if not metadata.get(key)
        ]
        if missing:
            client.server_metadata.clear()  # load it again next time
            log.error("the OpenID metadata at %s lacks %s", url, ", ".join(missing))
            raise SignInError(
                "The sign-in service is misconfigured",
                "The sign-in service's description is incomplete. The operator has been "
                "told in the portal's log.",
                status=502,
            )
        offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
        metadata["id_token_signing_alg_values_supported"] = [
            alg for alg in offered if alg in SAFE_ALGORITHMS
        ] or ["RS256"]
        return metadata

    async def redirect(self, request: Request, redirect_uri: str) -> Response:
        """Send the browser to the provider (state, nonce and PKCE kept in the session)."""
        import httpx2

        await self._metadata()
        try:
            response: Response = await self.client().authorize_redirect(request, redirect_uri)
        except httpx2.HTTPError as exc:
            log.error("sign-in redirect failed: %s", exc)
            raise SignInError(
                "The sign-in service cannot be reached",
                "The portal could not reach the sign-in service. Please try again.",
                status=502,
            ) from None
        return response

    async def finish(self, request: Request) -> Identity:
        """Check the provider's answer and return who signed in, or raise SignInError."""
        import httpx2
        from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError
        from joserfc.errors import (
            BadSignatureError,
            ClaimError,
            ExpiredTokenError,
            JoseError,
        )

        error = request.query_params.get("error")
        if error:
            raise SignInError(
                "Sign-in was cancelled",
                "The sign-in service did not sign you in"
                + (" (access denied)." if error == "access_denied" else f" ({error[:60]}).")
                + " You can try again.",
            )
        metadata = await self._metadata()
        options = {
            "iss": {"essential": True, "value": metadata["issuer"]},
            "aud": {"essential": True, "value": self.config.google_client_id},
        }
        try:
            token = await self.client().authorize_access_token(
                request, claims_options=options, leeway=LEEWAY_SECONDS
            )
        except MismatchingStateError:
            raise SignInError(
                "This sign-in link is not valid",
                "The sign-in answer does not belong to a sign-in started in this browser "
                "(state mismatch), or it was already used. Please start again.",
            ) from None
        except ExpiredTokenError:
            raise SignInError(
                "Your sign-in has expired",
                "The sign-in service's token has expired (check that this computer's clock "
                "is right). Please start again.",
            ) from None
        except BadSignatureError:
            log.warning("sign-in refused: an id_token with a bad signature")
            raise SignInError(
                "Sign-in could not be verified",
                "The sign-in token's signature is not valid, so it was refused.",
            ) from None
        except ClaimError as exc:
            raise _claim_error(exc.claim) from None
        except OAuthError as exc:
            log.warning("sign-in refused by the provider: %s", exc)
            raise SignInError(
                "Sign-in was refused",
                "The sign-in service refused to complete the sign-in "
                f"({exc.error}). Please start again.",
            ) from None
        except JoseError as exc:
            log.warning("sign-in refused: unreadable id_token (%s)", exc)
            raise SignInError(
                "Sign-in could not be verified",
                "The sign-in token could not be read or verified, so it was refused.",
            ) from None
        except httpx2.HTTPError as exc:
            log.error("sign-in failed talking to the provider: %s", exc)
            raise SignInError(
                "The sign-in service cannot be reached",
                "The portal could not reach the sign-in service. Please try again.",
                status=502,
            ) from None
        claims = token.get("userinfo")
        if not claims:
            raise SignInError(
                "Sign-in could not be verified",
                "The sign-in service sent no identity token, so nobody was signed in.",
            )
        return self._identity(dict(claims))

    def _identity(self, claims: dict[str, Any]) -> Identity:
        email = claims.get("email")
        if not isinstance(email, str) or "@" not in email:
            raise SignInError(
                "No email address",
                "The sign-in service did not share your email address; the portal "
                "needs it to know your business.",
            )
        if claims.get("email_verified") not in (True, "true"):
            raise SignInError(
                "Email address not verified",
                f"The sign-in service has not verified {email}. Verify it with them, "
                "then sign in again.",
                status=403,
            )
        email = email.strip().lower()
        domain = email.rsplit("@", 1)[1]
        if self.allowed_domains and domain not in self.allowed_domains:
            raise SignInError(
                "This account cannot sign in here",
                f"Accounts of {domain} cannot use this portal. Sign in with your "
                "business account, or ask the operator.",
                status=403,
            )
        name = claims.get("name")
        return Identity(
            email=email,
            name=name.strip() if isinstance(name, str) and name.strip() else "",
            subject=str(claims.get("sub", "")),
        )


def _claim_error(claim: str) -> SignInError:
    messages = {
        "nonce": "The sign-in token does not answer this browser's request (nonce "
        "mismatch), so it was refused. Please start again.",
        "aud": "The sign-in token was issued for another application (audience "
        "mismatch), so it was refused.",
        "azp": "The sign-in token was issued for another application (authorized party "
        "mismatch), so it was refused.",
        "iss": "The sign-in token was issued by another service than the configured "
        "one (issuer mismatch), so it was refused.",
    }
    return SignInError(
        "Sign-in could not be verified",
        messages.get(
            claim,
            f"The sign-in token's '{claim[:40]}' claim is missing or not valid, so it was refused.",
        ),
    )
