"""Portal sign-in: the whole authorization-code flow against a local OpenID provider
(real HTTP on loopback, real JWKS, RS256 id_tokens), on SQLite and PostgreSQL.

Each way an answer can be wrong (state, nonce, expiry, audience, signature, issuer)
is refused with a clear page, and nothing about the owner is stored.
"""

from __future__ import annotations

import time

import httpx2
import pytest
from joserfc.jwk import RSAKey
from sqlalchemy import func, select

from tests.conftest import CLI
from tests.oidc_provider import CLIENT_ID, KEY_ID, Provider
from tests.portal_support import (
    SESSION_SECRET,
    RunningPortal,
    csrf_of,
    follow,
    page_text,
    portal_env,
    running_portal,
    session_cookie,
    sign_in,
)
from tests.support import db_session, every_case
from wactl.db.models import PortalEventLog, Tenant, User
from wactl.enums import Role, SessionState, TenantStatus, WorkerStatus


def _count(url: str, model: type[object]) -> int:
    with db_session(url) as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_first_sign_in_creates_the_tenant_then_loads_it(
    portal: RunningPortal, provider: Provider, db_url: str
) -> None:
    with portal.client() as browser:
        page = sign_in(browser, provider, "Maria.Lopez+shop@Example.com", "María López")
        assert page.status_code == 200 and str(page.url) == f"{portal.url}/"
        assert "Welcome! Let's set up your bot" in page_text(page.text)
        assert "maria.lopez+shop@example.com" in page.text

    with db_session(db_url) as session:
        user = session.scalar(select(User))
        assert user is not None
        assert (user.email, user.name, user.role) == (
            "maria.lopez+shop@example.com",
            "María López",
            Role.OWNER,
        )
        tenant = user.tenant
        assert (tenant.slug, tenant.name, tenant.status) == (
            "maria-lopez",
            "María López",
            TenantStatus.NEW,
        )
        assert tenant.session is not None and tenant.session.state is SessionState.UNLINKED
        assert tenant.worker is not None and tenant.worker.status is WorkerStatus.STOPPED
        events = [
            (e.actor, e.event_type, e.tenant_slug, e.payload_json.get("first"))
            for e in session.scalars(select(PortalEventLog).order_by(PortalEventLog.id))
        ]
    actor = "portal:maria.lopez+shop@example.com"
    assert events == [
        (actor, "tenant.created", "maria-lopez", None),
        (actor, "portal.signed_in", "maria-lopez", True),
    ]

    # A later sign-in, from another browser, loads the same tenant.
    with portal.client() as other_browser:
        page = sign_in(other_browser, provider, "maria.lopez+shop@example.com")
        assert "Welcome! Let's set up your bot" in page_text(page.text)
    assert (_count(db_url, Tenant), _count(db_url, User)) == (1, 1)
    with db_session(db_url) as session:
        last = session.scalars(select(PortalEventLog).order_by(PortalEventLog.id.desc())).first()
        assert last is not None
        assert (last.event_type, last.payload_json) == ("portal.signed_in", {"first": False})


def test_slugs_stay_unique(portal: RunningPortal, provider: Provider, db_url: str) -> None:
    with db_session(db_url) as session:
        session.add(Tenant(slug="ana", name="Ana's operator-made tenant"))
    for email in ("ana@one.example", "ana@two.example", "ana+x@three.example"):
        with portal.client() as browser:
            assert sign_in(browser, provider, email).status_code == 200
    with db_session(db_url) as session:
        slugs = {u.email: u.tenant.slug for u in session.scalars(select(User))}
    assert slugs == {
        "ana@one.example": "ana-2",
        "ana@two.example": "ana-3",
        "ana+x@three.example": "ana-4",
    }


def _refused(response: httpx2.Response, status: int, text: str, db_url: str) -> None:
    assert response.status_code == status, response.text
    assert text in page_text(response.text)
    assert "Traceback" not in response.text
    assert (_count(db_url, User), _count(db_url, Tenant)) == (0, 0)


def _to_callback(browser: httpx2.Client) -> httpx2.Response:
    """Start sign-in and let the provider answer; stop before the portal's callback."""
    to_provider = browser.get("/auth/signin")
    assert to_provider.status_code == 302
    back = browser.get(to_provider.headers["location"])
    assert back.status_code == 302 and "/auth/callback?" in back.headers["location"]
    return back


def test_wrong_state_is_refused(portal: RunningPortal, provider: Provider, db_url: str) -> None:
    provider.sign_in_as("owner@example.com")
    with portal.client() as browser:
        back = _to_callback(browser)
        location = back.headers["location"]
        state = httpx2.URL(location).params["state"]
        forged = location.replace(f"state={state}", "state=forged-state")
        _refused(
            browser.get(forged),
            400,
            "This sign-in link is not valid The sign-in answer does not belong to a sign-in "
            "started in this browser (state mismatch), or it was already used. Please start "
            "again.",
            db_url,
        )
    assert provider.token_requests == 0  # the code was never exchanged


def test_a_callback_from_another_browser_is_refused(
    portal: RunningPortal, provider: Provider, db_url: str
) -> None:
    """Login CSRF: an attacker's own code and state, delivered to a victim's browser."""
    provider.sign_in_as("attacker@example.com")
    with portal.client() as attacker, portal.client() as victim:
        back = _to_callback(attacker)
        _refused(victim.get(back.headers["location"]), 400, "(state mismatch)", db_url)


def test_a_used_callback_cannot_be_replayed(
    portal: RunningPortal, provider: Provider, db_url: str
) -> None:
    provider.sign_in_as("owner@example.com")
    with portal.client() as browser:
        back = _to_callback(browser)
        assert browser.get(back.headers["location"]).status_code == 303
        browser.cookies.clear()
        replay = browser.get(back.headers["location"])
        assert replay.status_code == 400 and "(state mismatch)" in page_text(replay.text)


@pytest.mark.parametrize(
    ("claims", "text"),
    [
        (
            {"nonce": "not-the-nonce-we-sent"},
            "Sign-in could not be verified The sign-in token does not answer this browser's "
            "request (nonce mismatch), so it was refused. Please start again.",
        ),
        (
            {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200},
            "Your sign-in has expired The sign-in service's token has expired (check that "
            "this computer's clock is right). Please start again.",
        ),
        (
            # azp names us, so authlib's own check (azp only) would let it through.
            {"aud": "another-application.apps.example", "azp": CLIENT_ID},
            "Sign-in could not be verified The sign-in token was issued for another "
            "application (audience mismatch), so it was refused.",
        ),
        (
            {"iss": "https://impostor.example"},
            "Sign-in could not be verified The sign-in token was issued by another service "
            "than the configured one (issuer mismatch), so it was refused.",
        ),
    ],
    ids=["wrong-nonce", "expired", "wrong-audience", "wrong-issuer"],
)
def test_a_bad_id_token_is_refused(
    portal: RunningPortal,
    provider: Provider,
    db_url: str,
    claims: dict[str, object],
    text: str,
) -> None:
    provider.overrides = claims
    with portal.client() as browser:
        _refused(sign_in(browser, provider, "owner@example.com"), 400, text, db_url)
        assert session_cookie(browser) is not None
        assert browser.get("/api/portal/tenant/current/status").status_code == 401


def test_a_bad_signature_is_refused(portal: RunningPortal, provider: Provider, db_url: str) -> None:
    provider.sign_with = RSAKey.generate_key(2048, parameters={"kid": KEY_ID})
    with portal.client() as browser:
        _refused(
            sign_in(browser, provider, "owner@example.com"),
            400,
            "Sign-in could not be verified The sign-in token's signature is not valid, so it "
            "was refused.",
            db_url,
        )


def test_an_unsigned_token_is_refused(
    portal: RunningPortal, provider: Provider, db_url: str
) -> None:
    """The provider's metadata offers "none"; the portal never accepts it."""
    import base64
    import json

    def unsigned(grant: object) -> str:
        def part(value: object) -> str:
            return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

        now = int(time.time())
        claims = {"iss": provider.url, "sub": "1", "aud": CLIENT_ID, "iat": now, "exp": now + 60}
        return f"{part({'alg': 'none'})}.{part(claims)}."

    provider.id_token = unsigned  # type: ignore[method-assign]
    with portal.client() as browser:
        response = sign_in(browser, provider, "owner@example.com")
    _refused(response, 400, "Sign-in could not be verified", db_url)


#: Claims of an id_token the portal cannot use: (overrides, status, text on the page).
UNUSABLE_CLAIMS: list[tuple[dict[str, object], int, str]] = [
    (
        {"email_verified": False},
        403,
        "Email address not verified The sign-in service has not verified "
        "owner@example.com. Verify it with them, then sign in again.",
    ),
    (
        {"email": None},
        400,
        "No email address The sign-in service did not share your email address; the "
        "portal needs it to know your business.",
    ),
    # Every claim used is checked for its type and shape.
    (
        {"email": "@example.com"},
        400,
        "This email address cannot be used The sign-in service gave an email address the "
        "portal cannot use (it has nothing before the @), so nobody was signed in.",
    ),
    (
        {"email": "a" * 64 + "@" + "b" * 60 + "." + "c" * 60 + "." + "d" * 60 + ".example"},
        400,
        "(it is 255 characters long; the most is 254)",
    ),
    ({"email": "a" * 65 + "@example.com"}, 400, "(its part before the @ is longer than 64"),
    ({"email": "pe\x00pe@example.com"}, 400, "(it holds spaces or control characters)"),
    ({"email": "pepe @example.com"}, 400, "(it holds spaces or control characters)"),
    ({"email": "pepe@example.com\n"}, 400, "(it holds spaces or control characters)"),
    ({"email": "pepe@localhost"}, 400, "(what follows the @ is not a domain name)"),
    ({"email": "pepe@-x-.example"}, 400, "(what follows the @ is not a domain name)"),
    ({"email": ["pepe@example.com"]}, 400, "No email address"),
    ({"email": 42}, 400, "No email address"),
    ({"email_verified": "yes"}, 403, "Email address not verified"),
    ({"email_verified": [True]}, 403, "Email address not verified"),
    ({"sub": 12345}, 400, "(its 'sub' claim is missing or not an id)"),
    ({"sub": ""}, 400, "(its 'sub' claim is missing or not an id)"),
    ({"sub": "s" * 256}, 400, "(its 'sub' claim is missing or not an id)"),
    ({"sub": "abc\x00"}, 400, "(its 'sub' claim is missing or not an id)"),
    ({"sub": ["abc"]}, 400, "(its 'sub' claim is missing or not an id)"),
    ({"exp": "tomorrow"}, 400, "Sign-in could not be verified"),
    ({"iat": [1]}, 400, "Sign-in could not be verified"),
    ({"aud": {"a": 1}}, 400, "Sign-in could not be verified"),
    ({"nonce": ["x"]}, 400, "Sign-in could not be verified"),
    ({"azp": 7}, 400, "Sign-in could not be verified"),
    ({"at_hash": 7}, 400, "Sign-in could not be verified"),
    ({"amr": "pwd"}, 400, "Sign-in could not be verified"),
    ({"iss": None}, 400, "Sign-in could not be verified"),
]


def test_an_unusable_identity_is_refused(
    roomy_portal: RunningPortal, provider: Provider, db_url: str
) -> None:
    def check(claims: dict[str, object], status: int, text: str) -> None:
        provider.overrides = claims
        with roomy_portal.client() as browser:
            _refused(sign_in(browser, provider, "owner@example.com"), status, text, db_url)

    every_case(UNUSABLE_CLAIMS, check)


def test_allowed_email_domains(
    db_url: str, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    portal_env(monkeypatch, provider)
    monkeypatch.setenv("WACTL_PORTAL_ALLOWED_EMAIL_DOMAINS", "casapepe.es, Example.org")
    with running_portal() as portal, portal.client() as browser:
        _refused(
            sign_in(browser, provider, "someone@gmail.com"),
            403,
            "This account cannot sign in here Accounts of gmail.com cannot use this portal. "
            "Sign in with your business account, or ask the operator.",
            db_url,
        )
        assert sign_in(browser, provider, "pepe@example.org").status_code == 200
    assert _count(db_url, User) == 1


def test_cancelled_at_the_provider(portal: RunningPortal, db_url: str) -> None:
    with portal.client() as browser:
        response = browser.get("/auth/callback?error=access_denied&state=x")
    _refused(
        response,
        400,
        "Sign-in was cancelled The sign-in service did not sign you in (access denied). You "
        "can try again.",
        db_url,
    )


def test_sign_out(portal: RunningPortal, provider: Provider, db_url: str) -> None:
    with portal.client() as browser:
        page = sign_in(browser, provider, "owner@example.com")
        token = csrf_of(page.text)
        refused = browser.post("/auth/signout", data={"csrf_token": "wrong"})
        assert refused.status_code == 403
        assert "This form has expired" in page_text(refused.text)
        assert browser.get("/api/portal/tenant/current/status").status_code == 200

        out = browser.post("/auth/signout", data={"csrf_token": token})
        assert (out.status_code, out.headers["location"]) == (303, "/signin")
        assert browser.get("/api/portal/tenant/current/status").status_code == 401
        assert "Sign in with Google" in follow(browser, browser.get("/logs")).text
    with db_session(db_url) as session:
        types = list(session.scalars(select(PortalEventLog.event_type).order_by(PortalEventLog.id)))
    assert types == ["tenant.created", "portal.signed_in", "portal.signed_out"]


def test_sign_out_ends_every_session_of_the_account(
    portal: RunningPortal, provider: Provider, db_url: str
) -> None:
    """A sign-out on one browser signs the account out everywhere: another browser, and
    a copy of the cookie taken before (a stolen one) no longer work, though the cookie
    itself has not expired."""
    with portal.client() as laptop, portal.client() as phone, portal.client() as thief:
        token = csrf_of(sign_in(laptop, provider, "owner@example.com").text)
        sign_in(phone, provider, "owner@example.com")
        thief.cookies.update(laptop.cookies)
        for browser in (laptop, phone, thief):
            assert browser.get("/api/portal/tenant/current/status").status_code == 200
        assert laptop.post("/auth/signout", data={"csrf_token": token}).status_code == 303
        for browser in (laptop, phone, thief):
            assert browser.get("/api/portal/tenant/current/status").status_code == 401
        assert "Sign in with Google" in follow(thief, thief.get("/")).text
        # Signing in again works, on any of them, and only there.
        sign_in(phone, provider, "owner@example.com")
        assert phone.get("/api/portal/tenant/current/status").status_code == 200
        assert laptop.get("/api/portal/tenant/current/status").status_code == 401
    with db_session(db_url) as session:
        assert session.scalar(select(User.session_generation)) == 1


@pytest.mark.parametrize(
    ("target", "lands_on"),
    [
        ("/logs?q=hola", "/logs?q=hola"),
        ("https://evil.example/phish", "/"),
        ("//evil.example/phish", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
    ],
)
def test_no_open_redirect_after_sign_in(
    portal: RunningPortal, provider: Provider, target: str, lands_on: str
) -> None:
    provider.sign_in_as("owner@example.com")
    with portal.client() as browser:
        response = browser.get("/auth/signin", params={"next": target})
        while response.headers["location"].startswith(provider.url):
            response = browser.get(response.headers["location"])
        final = browser.get(response.headers["location"])  # the callback
        assert final.status_code == 303
        assert final.headers["location"] == lands_on


def test_a_page_asks_to_sign_in_and_comes_back(portal: RunningPortal, provider: Provider) -> None:
    provider.sign_in_as("owner@example.com")
    with portal.client() as browser:
        asked = browser.get("/events")
        assert (asked.status_code, asked.headers["location"]) == (303, "/signin?next=/events")
        page = browser.get(asked.headers["location"])
        assert 'href="/auth/signin?next=/events"' in page.text
        landed = follow(browser, browser.get("/auth/signin?next=/events"))
        assert str(landed.url) == f"{portal.url}/events"


def test_sign_in_is_rate_limited(
    db_url: str, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    portal_env(monkeypatch, provider)
    monkeypatch.setenv("WACTL_PORTAL_SIGNIN_PER_MINUTE", "2")
    with running_portal() as portal, portal.client() as browser:
        assert browser.get("/auth/signin").status_code == 302
        assert browser.get("/auth/signin").status_code == 302
        refused = browser.get("/auth/signin")
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "30"
        assert page_text(refused.text) == (
            "Too many attempts Too many sign-in attempts in a short time. Please wait 30 "
            "seconds and try again. Back to the start page"
        )
        # The callback counts too: a stolen code cannot be tried again and again.
        assert browser.get("/auth/callback?code=x&state=y").status_code == 429


def test_session_cookie_flags(
    db_url: str, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    portal_env(monkeypatch, provider)
    with running_portal() as portal, portal.client() as browser:
        cookie = browser.get("/auth/signin").headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/" in cookie
        assert "secure" not in cookie  # plain http: a Secure cookie would never come back
    monkeypatch.setenv("WACTL_PORTAL_PUBLIC_BASE_URL", "https://portal.example.com")
    with running_portal() as portal, portal.client() as browser:
        response = browser.get("/auth/signin")
        cookie = response.headers["set-cookie"].lower()
        assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie
        assert response.headers["strict-transport-security"] == "max-age=31536000"
        redirect = httpx2.URL(response.headers["location"])
        assert redirect.params["redirect_uri"] == "https://portal.example.com/auth/callback"
        assert redirect.params["code_challenge_method"] == "S256"
        assert redirect.params["nonce"] and redirect.params["state"]
        assert redirect.params["scope"] == "openid email profile"


def test_a_tampered_or_foreign_cookie_signs_nobody_in(
    portal: RunningPortal, provider: Provider, db_url: str
) -> None:
    import base64
    import json

    import itsdangerous

    with portal.client() as browser:
        sign_in(browser, provider, "owner@example.com")
        cookie = session_cookie(browser)
    assert cookie is not None
    with db_session(db_url) as session:
        session.add(Tenant(slug="victim", name="Victim"))
    with db_session(db_url) as session:
        victim = session.scalar(select(Tenant).where(Tenant.slug == "victim"))
        assert victim is not None
        victim_user = User(tenant_id=victim.id, name="V", email="v@example.com")
        session.add(victim_user)
        session.flush()
        victim_id = str(victim_user.id)

    payload, _, rest = cookie.partition(".")
    forged_payload = base64.b64encode(json.dumps({"uid": victim_id}).encode())
    tampered = f"{forged_payload.decode()}.{rest}"
    other_key = itsdangerous.TimestampSigner("another-secret-another-secret-another")
    foreign = other_key.sign(forged_payload).decode()
    right_key = itsdangerous.TimestampSigner(SESSION_SECRET)
    assert right_key.unsign(cookie)  # the cookie is what the test thinks it is
    for value in (tampered, foreign, payload):
        with portal.client() as attacker:
            attacker.cookies.set("wactl_portal", value)
            response = attacker.get("/api/portal/tenant/current/status")
            assert response.status_code == 401, value
            assert "victim" not in attacker.get("/").text.lower()


def test_a_cookie_from_before_session_generations_works_until_a_sign_out(
    portal: RunningPortal, provider: Provider, db_url: str
) -> None:
    """Cookies issued before the upgrade that added sign-out everywhere carry no
    generation: they stay valid (nobody is signed out by the upgrade) until the owner
    signs out somewhere."""
    import base64
    import json

    import itsdangerous

    with portal.client() as browser:
        token = csrf_of(sign_in(browser, provider, "owner@example.com").text)
        with db_session(db_url) as session:
            user_id = str(session.scalar(select(User.id)))
        old_payload = base64.b64encode(json.dumps({"uid": user_id}).encode())
        old_cookie = itsdangerous.TimestampSigner(SESSION_SECRET).sign(old_payload).decode()
        with portal.client() as old:
            old.cookies.set("wactl_portal", old_cookie)
            assert old.get("/api/portal/tenant/current/status").status_code == 200
            assert browser.post("/auth/signout", data={"csrf_token": token}).status_code == 303
            assert old.get("/api/portal/tenant/current/status").status_code == 401


def test_without_credentials_the_page_says_what_to_configure(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    portal_env(monkeypatch, None)
    with running_portal() as portal, portal.client() as browser:
        page = browser.get("/")
        assert page.status_code == 200
        assert page_text(page.text) == (
            "Your business on WhatsApp Sign in to ask for your WhatsApp bot, link your phone "
            "and read what the bot told your customers. Sign-in is not configured: set "
            "portal.google_client_id and portal.google_client_secret (`wactl config set "
            "portal.google_client_id ID`, then the same for the secret) to an OAuth client of "
            "type Web application whose authorized redirect URI is "
            f"{portal.url}/auth/callback, and restart `wactl portal serve`."
        )
        assert browser.get("/auth/signin").headers["location"] == "/signin"


# --- the account is the provider's issuer + sub; the email is an attribute ---------------------


def _users(url: str) -> list[tuple[str, str | None, str | None]]:
    with db_session(url) as session:
        return [
            (user.email, user.oidc_issuer, user.oidc_subject)
            for user in session.scalars(select(User).order_by(User.created_at))
        ]


def _events(url: str) -> list[tuple[str, str, dict[str, object]]]:
    with db_session(url) as session:
        return [
            (event.actor, event.event_type, event.payload_json)
            for event in session.scalars(select(PortalEventLog).order_by(PortalEventLog.id))
        ]


def test_another_account_with_a_bound_email_is_refused(
    portal: RunningPortal, provider: Provider, db_url: str
) -> None:
    """An id_token with Alice's (verified) email but another ``sub`` is another account
    at the provider: it does not sign into Alice's tenant."""
    with portal.client() as alice:
        sign_in(alice, provider, "alice@example.com", "Alice")
        alice_token = csrf_of(alice.get("/").text)
    ((email, issuer, alice_sub),) = _users(db_url)
    assert (email, issuer) == ("alice@example.com", provider.url) and alice_sub
    with portal.client() as mallory:
        provider.sign_in_as("alice@example.com", "Mallory", sub="mallory-account-7")
        refused = follow(mallory, mallory.get("/auth/signin"))
        assert refused.status_code == 403
        assert page_text(refused.text) == (
            "This email belongs to another account The portal account of alice@example.com "
            "was opened with another account at the sign-in service than the one you used "
            "now, so you were not signed in. Sign in with the account you used before; if you "
            "no longer can, ask the operator. Back to the start page"
        )
        assert mallory.get("/api/portal/tenant/current/status").status_code == 401
    assert _users(db_url) == [("alice@example.com", provider.url, alice_sub)]
    assert _events(db_url)[-1] == (
        "portal:alice@example.com",
        "portal.signin_refused",
        {"reason": "another identity", "issuer": provider.url, "subject": "mallory-account-7"},
    )
    # Alice sees it on her activity page, and is still signed in.
    with portal.client() as alice:
        alice_page = sign_in(alice, provider, "alice@example.com")
        assert alice_page.status_code == 200
        events = page_text(alice.get("/events").text)
        assert "someone else Sign-in refused (another account with your email)" in events
    assert alice_token


def test_an_operator_unbinds_a_user_for_another_account(
    portal: RunningPortal, provider: Provider, db_url: str, cli: CLI
) -> None:
    """After a move to another provider (here: another ``sub`` for the same email),
    `wactl portal unbind` lets the next account with the email become the user, with
    its tenant; the old account's sessions end. Bad input changes nothing."""
    with portal.client() as alice:
        sign_in(alice, provider, "alice@example.com", "Alice")
        ((_, _, old_sub),) = _users(db_url)
        for args, code, error in (
            ((), 2, "error: name the users' emails, or --all (not both); "),
            (("a@example.com", "--all"), 2, "error: name the users' emails, or --all "),
            (("x\x1b[2J",), 2, "error: 'x\\x1b[2J' is not an email address; "),
            (
                ("alice@example.com", "bob@example.com"),
                5,
                "error: no portal user with the email 'bob@example.com'; ",
            ),
        ):
            result = cli("portal", "unbind", *args)
            assert (result.code, result.err[: len(error)]) == (code, error), result.err
        assert _users(db_url) == [("alice@example.com", provider.url, old_sub)]
        assert cli("portal", "unbind", "--all", input="n\n").code == 8
        result = cli("portal", "unbind", " Alice@Example.com ")
        assert result.code == 0, result.err
        assert result.err == "unbound alice@example.com: its next sign-in binds it again\n"
        assert _users(db_url) == [("alice@example.com", None, None)]
        # The old account's browser is signed out.
        assert alice.get("/api/portal/tenant/current/status").status_code == 401
    from wactl.db.audit import operator_actor

    assert _events(db_url)[-1] == (
        operator_actor(),
        "portal.user_unbound",
        {"email": "alice@example.com", "issuer": provider.url, "subject": old_sub},
    )
    with portal.client() as moved:
        provider.sign_in_as("alice@example.com", "Alice", sub="new-provider-account")
        page = follow(moved, moved.get("/auth/signin"))
        assert page.status_code == 200
        status = moved.get("/api/portal/tenant/current/status").json()
        assert status["tenant"]["slug"] == "alice"
    assert _users(db_url) == [("alice@example.com", provider.url, "new-provider-account")]
    assert cli("portal", "unbind", "--all", "--yes").err == (
        "unbound alice@example.com: its next sign-in binds it again\n"
    )
    assert cli("portal", "unbind", "--all", "--yes").err == "no bound portal users\n"


def test_a_user_from_before_is_bound_at_the_next_sign_in(
    portal: RunningPortal, provider: Provider, db_url: str
) -> None:
    """Users created before accounts were bound (no issuer, no sub) sign in by email
    once more, and are bound to that account from then on."""
    with db_session(db_url) as session:
        tenant = Tenant(slug="old", name="Old Shop")
        session.add(tenant)
        session.flush()
        session.add(User(tenant_id=tenant.id, name="Olga", email="olga@example.com"))
    with portal.client() as olga:
        page = sign_in(olga, provider, "olga@example.com")
        assert page.status_code == 200
        assert olga.get("/api/portal/tenant/current/status").json()["tenant"]["slug"] == "old"
    ((_, issuer, subject),) = _users(db_url)
    assert issuer == provider.url and subject
    assert _events(db_url)[-1] == (
        "portal:olga@example.com",
        "portal.signed_in",
        {"first": False, "bound": True},
    )
    with portal.client() as other:
        provider.sign_in_as("olga@example.com", sub="someone-else")
        assert follow(other, other.get("/auth/signin")).status_code == 403


def test_the_account_keeps_its_tenant_when_its_email_changes(
    portal: RunningPortal, provider: Provider, db_url: str
) -> None:
    with portal.client() as browser:
        provider.sign_in_as("pepe@old.example", sub="pepe-account")
        follow(browser, browser.get("/auth/signin"))
    with portal.client() as browser:
        provider.sign_in_as("pepe@new.example", sub="pepe-account")
        follow(browser, browser.get("/auth/signin"))
        status = browser.get("/api/portal/tenant/current/status").json()
        assert (status["tenant"]["slug"], status["user"]["email"]) == ("pepe", "pepe@new.example")
    assert _users(db_url) == [("pepe@new.example", provider.url, "pepe-account")]
    assert _events(db_url)[-1] == (
        "portal:pepe@new.example",
        "portal.signed_in",
        {"first": False, "email_was": "pepe@old.example"},
    )


# --- state and nonce are used once, on the server --------------------------------------------


def test_a_copy_of_the_cookie_cannot_replay_the_callback(
    db_url: str, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cookie from before the callback (it holds the state) is copied, and the
    callback replayed with it after the owner signed in: refused, even by a provider
    that accepts a code twice, and on another portal process on the same database."""
    portal_env(monkeypatch, provider)
    provider.reuse_codes = True
    provider.sign_in_as("owner@example.com")
    with (
        running_portal() as first,
        running_portal() as second,
        first.client() as owner,
        first.client() as thief,
    ):
        back = _to_callback(owner)
        thief.cookies.update(owner.cookies)
        # The callback reaches the other process: state and nonce are in the database.
        path = back.headers["location"].removeprefix(first.url)
        assert owner.get(f"{second.url}{path}").status_code == 303
        for portal in (first, second):
            replay = thief.get(f"{portal.url}{path}")
            assert replay.status_code == 400
            assert page_text(replay.text) == (
                "This sign-in link was already used This sign-in was already completed, "
                "or it was started too long ago (more than 15 minutes). Please start "
                "again. Back to the start page"
            )
            status = thief.get(f"{portal.url}/api/portal/tenant/current/status")
            assert status.status_code == 401
    assert provider.token_requests == 1


def test_a_sign_in_started_too_long_ago_is_refused(
    portal: RunningPortal, provider: Provider, db_url: str
) -> None:
    import datetime as dt

    from sqlalchemy import update

    from wactl.db.models import PortalSignin

    provider.sign_in_as("owner@example.com")
    with portal.client() as browser:
        back = _to_callback(browser)
        with db_session(db_url) as session:
            session.execute(
                update(PortalSignin).values(
                    created_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=16)
                )
            )
        late = browser.get(back.headers["location"])
        assert late.status_code == 400 and "started too long ago" in late.text
        # Starting again works, and forgets the old one.
        assert sign_in(browser, provider, "owner@example.com").status_code == 200
    with db_session(db_url) as session:
        assert session.scalar(select(func.count()).select_from(PortalSignin)) == 0


# --- the domain rule holds on every request ---------------------------------------------------


def test_narrowing_the_allowed_domains_ends_other_sessions(
    db_url: str, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    portal_env(monkeypatch, provider)
    with running_portal() as portal, portal.client() as browser:
        sign_in(browser, provider, "someone@gmail.com")
        assert browser.get("/api/portal/tenant/current/status").status_code == 200
        cookie = session_cookie(browser)
    monkeypatch.setenv("WACTL_PORTAL_ALLOWED_EMAIL_DOMAINS", "casapepe.es")
    with running_portal() as portal, portal.client() as browser:
        assert cookie is not None
        browser.cookies.set("wactl_portal", cookie)
        api = browser.get("/api/portal/tenant/current/status")
        message = (
            "Accounts of gmail.com cannot use this portal. Sign in with your business "
            "account, or ask the operator."
        )
        assert (api.status_code, api.json()) == (403, {"error": message})
        # The session is over: the answer clears the cookie.
        assert api.headers["set-cookie"].startswith("wactl_portal=null; path=/; expires=Thu, 01")
        for path in ("/", "/logs", "/events", "/setup", "/link", "/requests/1", "/link/qr.svg"):
            page = browser.get(path)
            assert page.status_code == 403, path
            assert page_text(page.text) == (
                f"This account cannot sign in here {message} Back to the start page"
            )


# --- every value from the provider is checked before use --------------------------------------


@pytest.mark.parametrize(
    ("name", "stored"),
    [
        ("Pepe\x1b]0;owned\x07 García\x00", "Pepe ]0;owned García"),
        ("\u202eepeP", "epeP"),
        ("<b>Pepe</b> [/bold] [link=https://evil.example]x[/link]", None),
        ("P" * 10_000, "P" * 200),
        ("\x00\x1b\x07", "owner"),
        (12345, "owner"),
        (["Pepe"], "owner"),
        ({"first": "Pepe"}, "owner"),
        (None, "owner"),
    ],
    ids=["controls", "bidi", "markup", "huge", "only-controls", "number", "list", "object", "null"],
)
def test_any_name_claim_signs_in_as_plain_text(
    portal: RunningPortal, provider: Provider, db_url: str, name: object, stored: str | None
) -> None:
    provider.sign_in_as("owner@example.com")
    provider.overrides = {"name": name}
    with portal.client() as browser:
        page = follow(browser, browser.get("/auth/signin"))
        assert page.status_code == 200
        shown = browser.get("/api/portal/tenant/current/status").json()["user"]["name"]
    expected = stored if stored is not None else name
    assert shown == expected
    with db_session(db_url) as session:
        tenant = session.scalar(select(Tenant))
        assert tenant is not None and tenant.name == expected


def test_the_longest_email_address_signs_in(
    portal: RunningPortal, provider: Provider, db_url: str
) -> None:
    """254 characters (RFC 5321's most); its audit actor has 261, on PostgreSQL too."""
    email = "a" * 64 + "@" + "b" * 60 + "." + "c" * 60 + "." + "d" * 60 + ".exampl"
    assert len(email) == 254
    with portal.client() as browser:
        assert sign_in(browser, provider, email).status_code == 200
    assert _events(db_url)[-1][0] == f"portal:{email}"


@pytest.mark.parametrize(
    ("path", "answer"),
    [
        ("/token", (200, "text/html", b"<html><body>Service Unavailable</body></html>")),
        ("/token", (502, "text/html", b"<html><body>Bad Gateway</body></html>")),
        ("/token", (200, "application/json", b"[1, 2]")),
        ("/token", (200, "application/json", b'{"access_token": "x", "id_token": 12}')),
        ("/token", (200, "application/json", b'{"access_token": "x", "id_token": "a.b.c"}')),
        ("/token", (200, "application/json", b'{"access_token": "x", "token_type": "Bearer"}')),
        ("/token", (200, "application/json", b"")),
        ("/jwks", (200, "text/html", b"<html>maintenance</html>")),
        ("/jwks", (200, "application/json", b'{"keys": "none"}')),
        ("/jwks", (200, "application/json", b'{"keys": [{"kty": "RSA", "kid": "test-key-1"}]}')),
        ("/jwks", (200, "application/json", b'{"keys": [123, null, "x"]}')),
        ("/.well-known/openid-configuration", (200, "application/json", b"[1]")),
        ("/.well-known/openid-configuration", (200, "application/json", b"null")),
        ("/.well-known/openid-configuration", (200, "text/html", b"<h1>Sign in</h1>")),
        (
            "/.well-known/openid-configuration",
            (200, "application/json", b'{"issuer": 7, "token_endpoint": ["x"], "jwks_uri": {}}'),
        ),
        (
            "/.well-known/openid-configuration",
            (
                200,
                "application/json",
                b'{"issuer": "https://x.example/\\u0000", "authorization_endpoint": "https://x.'
                b'example/a", "token_endpoint": "https://x.example/t", "jwks_uri": "https://x.'
                b'example/k"}',
            ),
        ),
        ("/jwks", (200, "application/json", b'{"keys": null}')),
        ("/jwks", (200, "application/json", b"[]")),
        ("/jwks", (404, "text/html", b"<h1>Not Found</h1>")),
        ("/token", (200, "application/json", b'{"access_token": 5, "id_token": null}')),
        ("/token", (200, "application/json", b'{"access_token": "x", "id_token": ["a"]}')),
        (
            "/token",
            (
                200,
                "application/json",
                rb'{"access_token": "x", "id_token": "\u0000.\u0000.\u0000"}',
            ),
        ),
        ("/token", (400, "application/json", b'{"error": ["invalid_grant"]}')),
        ("/token", (400, "application/json", rb'{"error": "invalid_grant\u001b[2J"}')),
    ],
    ids=[
        "token-html",
        "token-502-html",
        "token-array",
        "id-token-number",
        "id-token-garbage",
        "no-id-token",
        "token-empty",
        "jwks-html",
        "jwks-keys-string",
        "jwks-key-without-numbers",
        "jwks-keys-not-keys",
        "metadata-array",
        "metadata-null",
        "metadata-html",
        "metadata-types",
        "metadata-nul-issuer",
        "jwks-keys-null",
        "jwks-array",
        "jwks-404",
        "token-types",
        "id-token-list",
        "id-token-nul",
        "error-list",
        "error-escape",
    ],
)
def test_an_unreadable_answer_from_the_provider_is_a_clear_page(
    portal: RunningPortal,
    provider: Provider,
    db_url: str,
    path: str,
    answer: tuple[int, str, bytes],
) -> None:
    provider.answers[path] = answer
    with portal.client() as browser:
        response = sign_in(browser, provider, "owner@example.com")
    assert response.status_code in (400, 502), response.text
    text = page_text(response.text)
    assert text.startswith(
        ("The sign-in service", "Sign-in could not be verified", "Sign-in was")
    ), text
    assert "Something went wrong" not in text
    assert (_count(db_url, User), _count(db_url, Tenant)) == (0, 0)


# --- forwarded headers: believed only from portal.trusted_proxies -----------------------------


def test_forwarded_headers_from_an_untrusted_client_are_ignored(
    db_url: str, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """By default no proxy is trusted: a local client rotating X-Forwarded-For still
    counts as itself, and its X-Forwarded-Proto makes nothing Secure."""
    portal_env(monkeypatch, provider)
    monkeypatch.setenv("WACTL_PORTAL_SIGNIN_PER_MINUTE", "2")
    with running_portal() as portal, portal.client() as browser:
        codes = []
        for number in range(3):
            response = browser.get(
                "/auth/signin",
                headers={"X-Forwarded-For": f"198.51.100.{number}", "X-Forwarded-Proto": "https"},
            )
            codes.append(response.status_code)
            if response.status_code == 302:
                assert "secure" not in response.headers["set-cookie"].lower()
                assert "strict-transport-security" not in response.headers
                redirect = httpx2.URL(response.headers["location"])
                assert redirect.params["redirect_uri"] == f"{portal.url}/auth/callback"
        assert codes == [302, 302, 429]


def test_forwarded_headers_from_a_trusted_proxy_are_believed(
    db_url: str, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    portal_env(monkeypatch, provider)
    monkeypatch.setenv("WACTL_PORTAL_SIGNIN_PER_MINUTE", "2")
    monkeypatch.setenv("WACTL_PORTAL_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    with running_portal() as portal, portal.client() as browser:

        def start(forwarded_for: str, proto: str = "http") -> httpx2.Response:
            headers = {"X-Forwarded-For": forwarded_for, "X-Forwarded-Proto": proto}
            return browser.get("/auth/signin", headers=headers)

        # Each client has its own limit; the nearest hop that is not a trusted proxy
        # is the client (what it wrote further left is not believed).
        assert [start(f"198.51.100.{n}").status_code for n in range(3)] == [302] * 3
        chain = "203.0.113.66, 203.0.113.7, 10.1.2.3"
        assert [start(chain).status_code for _ in range(3)] == [302, 302, 429]
        assert start("203.0.113.99, 203.0.113.7").status_code == 429
        # Behind an https proxy: a Secure cookie, HSTS, and an https redirect URI.
        secure = start("192.0.2.1", "https")
        assert "secure" in secure.headers["set-cookie"].lower()
        assert secure.headers["strict-transport-security"] == "max-age=31536000"
        redirect = httpx2.URL(secure.headers["location"])
        assert redirect.params["redirect_uri"].startswith("https://127.0.0.1:")
        # Not an address, or a scheme that is not one: ignored.
        assert start("not-an-address", "gopher").status_code == 302
        assert "secure" not in start("192.0.2.2", "gopher").headers["set-cookie"].lower()
