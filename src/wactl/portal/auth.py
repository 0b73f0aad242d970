"""Sign-in with OpenID Connect (Google by default) through authlib's Starlette client.

The authorization-code flow with PKCE: `redirect` sends the browser to the provider
with a fresh ``state`` and ``nonce``, kept in the signed session cookie (and, by the
caller, in the database, where the callback uses them up: a copy of the cookie cannot
replay a sign-in); `finish` takes the code back, checks the state, exchanges the code,
and verifies the id_token: signature against the provider's JWKS (asymmetric
algorithms only), issuer, audience (exactly our client id, which authlib alone checks
only through ``azp``), expiry, and the nonce. Every claim used is checked for its
type and shape (`Identity`). Each refusal is a `SignInError` with a title and a
sentence for the page; nothing about the owner is stored before all checks pass.

authlib (~60 ms with httpx2 and joserfc) is imported on first use, not at startup.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wactl import validation
from wactl.config.loader import email_domains, is_domain_name
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
#: The longest email address (RFC 5321: a 256-octet path less its angle brackets) and
#: local part; the audit actor column holds "portal:" and the longest address.
MAX_EMAIL_LENGTH = 254
MAX_LOCAL_PART_LENGTH = 64
#: The longest ``sub`` (OpenID Connect Core 1.0 section 2) and issuer the user columns hold.
MAX_SUBJECT_LENGTH = 255
MAX_ISSUER_LENGTH = 255
#: Whitespace and control characters, which no usable email address holds.
_NOT_IN_EMAILS = re.compile(r"[\s\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
#: An OAuth error code as RFC 6749 section 4.1.2.1 defines them (shown on the page).
_ERROR_CODE = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]{1,60}")


class SignInError(Exception):
    """Sign-in was refused; ``title`` and ``message`` are shown to the person."""

    def __init__(self, title: str, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.title = title
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Identity:
    """Who signed in: the provider (``issuer``) and its id for them (``subject``, the
    ``sub`` claim), which together are the account; the email (lowercase) and a plain
    name (control characters replaced, possibly empty) are attributes."""

    issuer: str
    subject: str
    email: str
    name: str


def sha256(text: str) -> str:
    """The hex sha256 of ``text`` (how state and nonce are kept in the database)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


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
        except (httpx2.HTTPError, ValueError, TypeError) as exc:
            # TypeError: a document that is JSON but not an object (authlib adds a key).
            log.error("cannot load the OpenID provider's metadata from %s: %r", url, exc)
            raise SignInError(
                "The sign-in service cannot be reached",
                "The portal could not reach the sign-in service. Please try again in a "
                "few minutes.",
                status=502,
            ) from None
        missing = [
            key
            for key in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")
            if not isinstance(metadata.get(key), str) or not metadata[key]
        ]
        issuer = str(metadata.get("issuer", ""))
        if len(issuer) > MAX_ISSUER_LENGTH or not issuer.isprintable():
            missing.append(f"a printable issuer of at most {MAX_ISSUER_LENGTH} characters")
        if missing:
            client.server_metadata.clear()  # load it again next time
            log.error("the OpenID metadata at %s lacks %s", url, ", ".join(missing))
            raise SignInError(
                "The sign-in service is misconfigured",
                "The sign-in service's description is incomplete. The operator has been "
                "told in the portal's log.",
                status=502,
            )
        offered = metadata.get("id_token_signing_alg_values_supported")
        metadata["id_token_signing_alg_values_supported"] = [
            alg for alg in (offered if isinstance(offered, list) else []) if alg in SAFE_ALGORITHMS
        ] or ["RS256"]
        return metadata

    async def redirect(
        self, request: Request, redirect_uri: str, *, state: str, nonce: str
    ) -> Response:
        """Send the browser to the provider with ``state`` and ``nonce`` (kept in the
        session, with the PKCE verifier, by authlib)."""
        import httpx2

        await self._metadata()
        try:
            response: Response = await self.client().authorize_redirect(
                request, redirect_uri, state=state, nonce=nonce
            )
        except (httpx2.HTTPError, ValueError, TypeError) as exc:
            log.error("sign-in redirect failed: %s", exc)
            raise SignInError(
                "The sign-in service cannot be reached",
                "The portal could not reach the sign-in service. Please try again.",
                status=502,
            ) from None
        return response

    @staticmethod
    def provider_refusal(request: Request) -> SignInError | None:
        """The provider's own refusal in the callback (``error``), if any."""
        error = request.query_params.get("error")
        if not error:
            return None
        why = "access denied" if error == "access_denied" else _error_code(error)
        return SignInError(
            "Sign-in was cancelled",
            f"The sign-in service did not sign you in ({why}). You can try again.",
        )

    @staticmethod
    def callback_state(request: Request) -> str:
        """The callback's ``state``, when this browser started that sign-in (its session
        holds authlib's record of it, under authlib's key); else `SignInError`."""
        state = request.query_params.get("state", "")
        if not state or f"_state_{CLIENT_NAME}_{state}" not in request.session:
            raise _mismatching_state()
        return state

    def domain_refusal(self, email: str) -> SignInError | None:
        """Why ``email`` may not use the portal (`portal.allowed_email_domains`), if so."""
        domain = email.rsplit("@", 1)[-1]
        if not self.allowed_domains or domain in self.allowed_domains:
            return None
        return SignInError(
            "This account cannot sign in here",
            f"Accounts of {domain} cannot use this portal. Sign in with your "
            "business account, or ask the operator.",
            status=403,
        )

    async def finish(self, request: Request, *, nonce_sha256: str) -> Identity:
        """Check the provider's answer and return who signed in, or raise SignInError.

        ``nonce_sha256`` is what the database kept for this sign-in's state: the
        id_token must carry that nonce (authlib checks it against the cookie's copy)."""
        import httpx2
        from authlib.integrations.base_client.errors import MismatchingStateError, OAuthError
        from joserfc.errors import (
            BadSignatureError,
            ClaimError,
            ExpiredTokenError,
            JoseError,
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
            raise _mismatching_state() from None
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
            code = _error_code(exc.error)
            log.warning("sign-in refused by the provider: %s", code)
            raise SignInError(
                "Sign-in was refused",
                f"The sign-in service refused to complete the sign-in ({code}). Please "
                "start again.",
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
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            # What authlib and joserfc raise on an answer of the wrong shape: a token
            # response in HTML or empty (ValueError), a JWKS or token whose values are
            # not of the types they must be (TypeError: "keys": null, "id_token": [...]).
            log.warning("sign-in refused: unreadable answer from the provider (%r)", exc)
            raise SignInError(
                "The sign-in service's answer could not be read",
                "The sign-in service sent an answer the portal cannot read, so nobody "
                "was signed in. Please try again later; the operator can see why in "
                "the portal's log.",
                status=502,
            ) from None
        claims = token.get("userinfo") if isinstance(token, dict) else None
        if not claims:
            raise SignInError(
                "Sign-in could not be verified",
                "The sign-in service sent no identity token, so nobody was signed in.",
            )
        nonce = claims.get("nonce")
        if not isinstance(nonce, str) or sha256(nonce) != nonce_sha256:
            raise _claim_error("nonce")
        return self._identity(dict(claims), issuer=metadata["issuer"])

    def _identity(self, claims: dict[str, Any], *, issuer: str) -> Identity:
        """The checked identity of verified ``claims`` (values of any type and size)."""
        subject = claims.get("sub")
        if not (
            isinstance(subject, str)
            and 0 < len(subject) <= MAX_SUBJECT_LENGTH
            and subject.isascii()
            and subject.isprintable()
        ):
            raise _claim_error("sub")
        email = _email(claims.get("email"))
        if claims.get("email_verified") not in (True, "true"):
            raise SignInError(
                "Email address not verified",
                f"The sign-in service has not verified {email}. Verify it with them, "
                "then sign in again.",
                status=403,
            )
        refusal = self.domain_refusal(email)
        if refusal is not None:
            raise refusal
        name = claims.get("name")
        return Identity(
            issuer=issuer,
            subject=subject,
            email=email,
            name=validation.clean_name(name) if isinstance(name, str) else "",
        )


def _error_code(error: object) -> str:
    """An OAuth error code from the provider as the page and log may show it."""
    if isinstance(error, str) and _ERROR_CODE.fullmatch(error):
        return error
    return "an unreadable error"


def _mismatching_state() -> SignInError:
    return SignInError(
        "This sign-in link is not valid",
        "The sign-in answer does not belong to a sign-in started in this browser "
        "(state mismatch), or it was already used. Please start again.",
    )


def _email(value: object) -> str:
    """The ``email`` claim, lowercase, when it is an address the portal can use."""
    if not isinstance(value, str) or "@" not in value:
        raise SignInError(
            "No email address",
            "The sign-in service did not share your email address; the portal "
            "needs it to know your business.",
        )
    email = value.lower()
    local, _, domain = email.rpartition("@")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_domain = ""
    if len(email) > MAX_EMAIL_LENGTH:
        problem = f"it is {len(email)} characters long; the most is {MAX_EMAIL_LENGTH}"
    elif _NOT_IN_EMAILS.search(email):
        problem = "it holds spaces or control characters"
    elif not local:
        problem = "it has nothing before the @"
    elif len(local) > MAX_LOCAL_PART_LENGTH:
        problem = f"its part before the @ is longer than {MAX_LOCAL_PART_LENGTH} characters"
    elif not is_domain_name(ascii_domain):
        problem = "what follows the @ is not a domain name"
    else:
        return email
    raise SignInError(
        "This email address cannot be used",
        f"The sign-in service gave an email address the portal cannot use ({problem}), "
        "so nobody was signed in.",
    )


def _claim_error(claim: str) -> SignInError:
    messages = {
        "sub": "The sign-in token does not say which account signed in (its 'sub' claim "
        "is missing or not an id), so it was refused.",
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
