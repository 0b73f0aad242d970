"""Portal pages and JSON endpoints for a signed-in owner, on SQLite and PostgreSQL:
the setup form, the QR, the conversation log, the activity page, tenant scoping,
CSRF, rate limits, security headers and error pages; and `wactl portal serve`."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from tests.conftest import CLI
from tests.oidc_provider import Provider
from tests.portal_support import (
    RunningPortal,
    csrf_of,
    page_text,
    portal_env,
    running_portal,
    sign_in,
)
from tests.support import db_session, poll_for
from wactl.db.models import (
    MessageLog,
    PortalEventLog,
    SetupRequest,
    Tenant,
    User,
    WhatsappSession,
    WorkerProcess,
)
from wactl.db.portal import SignIn
from wactl.enums import Direction, MessageState, SessionState, TenantStatus, WorkerStatus
from wactl.portal.routes import render_qr_svg

GOOD_FORM = {
    "business_name": "  Casa   Pepe ",
    "template_type": "restaurant",
    "language": "es",
    "whatsapp_number": "+34 600 123 456",
    "timezone": "Europe/Madrid",
    "hours_mon": "",
    "hours_tue": "12:00-16:00, 19:00-23:00",
    "hours_sat": "12:00-24:00",
    "notes": "We close in August.",
}


@dataclass
class Owner:
    browser: httpx2.Client
    email: str
    csrf: str

    def tenant_id(self, url: str) -> uuid.UUID:
        with db_session(url) as session:
            user = session.scalar(select(User).where(User.email == self.email))
            assert user is not None
            return user.tenant_id


@pytest.fixture
def owner(portal: RunningPortal, provider: Provider) -> Iterator[Owner]:
    with portal.client() as browser:
        page = sign_in(browser, provider, "pepe@casapepe.es", "Pepe García")
        yield Owner(browser, "pepe@casapepe.es", csrf_of(page.text))


def _form(owner: Owner, **changes: str) -> dict[str, str]:
    return {**GOOD_FORM, "csrf_token": owner.csrf, **changes}


def _requests(url: str) -> list[SetupRequest]:
    with db_session(url) as session:
        return list(session.scalars(select(SetupRequest)))


# --- the setup request form ---------------------------------------------------------------


def test_setup_form_shows_each_error_beside_its_field_and_saves_nothing(
    owner: Owner, db_url: str
) -> None:
    page = owner.browser.post(
        "/setup",
        data=_form(
            owner,
            business_name=" ",
            whatsapp_number="600123456",
            timezone="Europe/Madird",
            hours_tue="9-5",
            hours_wed="14:00-10:00",
            template_type="bakery",
        ),
    )
    assert page.status_code == 422
    errors = dict(re.findall(r'<p class="field-error" id="([a-z_]+)-error">([^<]*)</p>', page.text))
    assert {k: v.replace("&#34;", '"').replace("&#39;", "'") for k, v in errors.items()} == {
        "business_name": "must not be empty",
        "template_type": "'bakery' is not one of restaurant, clinic, salon, retail, generic",
        "whatsapp_number": "'600123456' has no country code (write it in international form "
        "starting with +, e.g. +34600123456)",
        "timezone": "'Europe/Madird' is not a known time zone (use an IANA name such as "
        '"Europe/Madrid", "America/Sao_Paulo" or "UTC")',
        "hours_tue": "'9-5' is not a time range (write \"HH:MM-HH:MM\" in 24-hour time, e.g. "
        '"09:00-17:30")',
        "hours_wed": "'14:00-10:00' ends before it starts (split a range past midnight: "
        '"20:00-24:00" today, "00:00-02:00" tomorrow)',
    }
    assert 'aria-invalid="true" aria-describedby="timezone-error"' in page.text
    # What the owner typed is kept, so only the mistakes need retyping.
    assert 'value="Europe/Madird"' in page.text and 'value="9-5"' in page.text
    assert "We close in August." in page.text
    assert _requests(db_url) == []
    with db_session(db_url) as session:
        assert session.scalar(select(Tenant.status)) is TenantStatus.NEW
        assert "request.submitted" not in session.scalars(select(PortalEventLog.event_type)).all()


def test_setup_form_submits_a_request(owner: Owner, db_url: str) -> None:
    sent = owner.browser.post("/setup", data=_form(owner))
    assert (sent.status_code, sent.headers["location"]) == (303, "/")
    (request,) = _requests(db_url)
    assert request.business_name == "Casa Pepe"
    assert request.whatsapp_number == "+34600123456"
    assert request.hours_json == {
        "weekly": {
            "mon": [],
            "tue": ["12:00-16:00", "19:00-23:00"],
            "wed": [],
            "thu": [],
            "fri": [],
            "sat": ["12:00-24:00"],
            "sun": [],
        },
        "holidays": [],
    }
    with db_session(db_url) as session:
        event = session.scalars(
            select(PortalEventLog).where(PortalEventLog.event_type == "request.submitted")
        ).one()
        assert event.actor == "portal:pepe@casapepe.es" and event.user_id is not None
        assert session.scalar(select(Tenant.status)) is TenantStatus.SETUP_REQUESTED

    home = page_text(owner.browser.get("/").text)
    assert "We have your setup request An operator will check it soon." in home
    assert f"Request #{request.id} for Casa Pepe" in home and "waiting for the operator" in home
    detail = page_text(owner.browser.get(f"/requests/{request.id}").text)
    assert "Tue 12:00-16:00, 19:00-23:00" in detail and "Mon closed" in detail
    # A second request while the first waits is refused, and not stored.
    again = owner.browser.post("/setup", data=_form(owner))
    assert again.status_code == 409
    assert "A request is not possible now" in page_text(again.text)
    assert len(_requests(db_url)) == 1


def test_a_rejected_request_can_be_corrected(owner: Owner, db_url: str, cli: CLI) -> None:
    owner.browser.post("/setup", data=_form(owner))
    (request,) = _requests(db_url)
    result = cli("requests", "reject", str(request.id), "--reason", "that number is a landline")
    assert result.code == 0, result.err
    home = page_text(owner.browser.get("/").text)
    assert (
        "Your setup request needs changes We could not set up your bot yet: that number is a "
        "landline. Please correct it and send the request again."
    ) in home
    form = owner.browser.get("/setup").text
    assert 'value="+34600123456"' in form  # starts from the declined request
    assert owner.browser.post("/setup", data=_form(owner)).status_code == 303
    assert [r.status.value for r in _requests(db_url)] == ["REJECTED", "PENDING"]


def test_posts_need_the_csrf_token(owner: Owner, db_url: str) -> None:
    for token in (None, "", "x" * 43):
        data = dict(GOOD_FORM)
        if token is not None:
            data["csrf_token"] = token
        refused = owner.browser.post("/setup", data=data)
        assert refused.status_code == 403
        assert page_text(refused.text).startswith(
            "This form has expired The form was not sent from this portal"
        )
    api = owner.browser.post("/api/portal/setup-request", json={"business_name": "x"})
    assert api.status_code == 403 and api.json()["error"].startswith("The form was not sent")
    assert _requests(db_url) == []


def test_posts_are_rate_limited(
    db_url: str, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    portal_env(monkeypatch, provider)
    monkeypatch.setenv("WACTL_PORTAL_POSTS_PER_MINUTE", "3")
    with running_portal() as portal, portal.client() as browser:
        token = csrf_of(sign_in(browser, provider, "busy@example.com").text)
        codes = [
            browser.post(
                "/setup", data={**GOOD_FORM, "csrf_token": token, "timezone": "x"}
            ).status_code
            for _ in range(4)
        ]
        assert codes == [422, 422, 422, 429]


# --- JSON API -------------------------------------------------------------------------------


def test_api_status_and_setup_request(owner: Owner, db_url: str) -> None:
    status = owner.browser.get("/api/portal/tenant/current/status").json()
    token = status.pop("csrf_token")
    assert token == owner.csrf
    assert status == {
        "tenant": {"slug": "pepe", "name": "Pepe García", "status": "NEW", "phone_number": None},
        "status_title": "Welcome! Let's set up your bot",
        "status_text": "Tell us about your business: its name, your WhatsApp number and your "
        "opening hours. An operator will check it and get your bot ready.",
        "session_state": "UNLINKED",
        "worker_status": "STOPPED",
        "qr_available": False,
        "qr_id": None,
        "connected_since": None,
        "can_request_setup": True,
        "setup_request": None,
        "user": {"email": "pepe@casapepe.es", "name": "Pepe García"},
    }
    headers = {"X-CSRF-Token": token}
    body = {
        "business_name": "Casa Pepe",
        "template_type": "restaurant",
        "language": "es",
        "whatsapp_number": "+34600123456",
        "timezone": "Europe/Madrid",
        "hours": {"tue": ["12:00-16:00"], "sat": ["12:00-24:00"]},
    }
    bad = owner.browser.post(
        "/api/portal/setup-request",
        json={**body, "whatsapp_number": "+3460012", "hours": {"tus": []}},
        headers=headers,
    )
    assert bad.status_code == 422
    assert bad.json() == {
        "error": "whatsapp_number: '+3460012' is not a valid phone number (check the country "
        "code and the number of digits)",
        "errors": {
            "whatsapp_number": "'+3460012' is not a valid phone number (check the country code "
            "and the number of digits)",
            "hours_tus": "is not a day (did you mean 'tue'?)",
        },
    }
    unknown = owner.browser.post(
        "/api/portal/setup-request", json={**body, "slug": "other"}, headers=headers
    )
    assert unknown.status_code == 422 and unknown.json()["error"] == "unknown field 'slug'"
    not_json = owner.browser.post(
        "/api/portal/setup-request",
        content=b"{",
        headers={**headers, "Content-Type": "application/json"},
    )
    assert (not_json.status_code, not_json.json()) == (
        400,
        {"error": "the request body is not JSON"},
    )
    huge = owner.browser.post(
        "/api/portal/setup-request", json={**body, "notes": "x" * 70_000}, headers=headers
    )
    assert (huge.status_code, huge.json()) == (
        413,
        {"error": "The request body is larger than 65536 bytes, the most the portal takes."},
    )
    assert _requests(db_url) == []

    created = owner.browser.post("/api/portal/setup-request", json=body, headers=headers)
    assert created.status_code == 201, created.text
    shown = created.json()["setup_request"]
    assert shown["status"] == "PENDING" and shown["hours"]["tue"] == ["12:00-16:00"]
    assert shown["hours"]["mon"] == []
    again = owner.browser.post("/api/portal/setup-request", json=body, headers=headers)
    assert again.status_code == 409
    status = owner.browser.get("/api/portal/tenant/current/status").json()
    assert status["tenant"]["status"] == "SETUP_REQUESTED"
    assert status["setup_request"]["id"] == shown["id"]


def _messages(url: str, tenant_id: uuid.UUID, texts: list[str], chat: str) -> list[int]:
    base = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
    with db_session(url) as session:
        rows = []
        for number, text in enumerate(texts):
            incoming = number % 2 == 0
            row = MessageLog(
                tenant_id=tenant_id,
                direction=Direction.IN if incoming else Direction.OUT,
                from_number=chat if incoming else "sandbox:bot",
                to_number="sandbox:bot" if incoming else chat,
                chat=chat,
                message_text=text,
                wa_message_id=f"{tenant_id.hex[:6]}-{number}",
                state=MessageState.ANSWERED if incoming else MessageState.SENT,
                created_at=base + dt.timedelta(seconds=number),
            )
            session.add(row)
            rows.append(row)
        session.flush()
        return [row.id for row in rows]


def test_api_logs_pages_and_searches(owner: Owner, db_url: str) -> None:
    tenant_id = owner.tenant_id(db_url)
    texts = [f"message {n}" for n in range(7)] + ["100% OFF_today", "Hola, ¿abrís hoy?"]
    ids = _messages(db_url, tenant_id, texts, "+15551234567")
    api = "/api/portal/tenant/current/logs"
    first = owner.browser.get(api, params={"limit": 4}).json()
    assert [m["id"] for m in first["messages"]] == ids[::-1][:4]
    assert first["next_before"] == ids[-4]
    second = owner.browser.get(api, params={"limit": 4, "before": first["next_before"]}).json()
    assert [m["id"] for m in second["messages"]] == ids[::-1][4:8]
    third = owner.browser.get(api, params={"limit": 4, "before": second["next_before"]}).json()
    assert ([m["id"] for m in third["messages"]], third["next_before"]) == ([ids[0]], None)
    newest = first["messages"][0]
    assert newest == {
        "id": ids[-1],
        "created_at": "2026-03-01T12:00:08+00:00",
        "direction": "IN",
        "chat": "+15551234567",
        "from": "+15551234567",
        "to": "sandbox:bot",
        "text": "Hola, ¿abrís hoy?",
        "kind": None,
    }
    found = owner.browser.get(api, params={"q": "HOLA"}).json()["messages"]
    assert [m["text"] for m in found] == ["Hola, ¿abrís hoy?"]
    # % and _ are literal characters, not wildcards.
    assert [
        m["text"] for m in owner.browser.get(api, params={"q": "0% off_"}).json()["messages"]
    ] == ["100% OFF_today"]
    assert (
        owner.browser.get(api, params={"q": "_"}).json()["messages"][0]["text"] == "100% OFF_today"
    )
    assert len(owner.browser.get(api, params={"q": "5551234"}).json()["messages"]) == 9
    for bad in ({"limit": "0"}, {"limit": "201"}, {"limit": "x"}):
        assert owner.browser.get(api, params=bad).status_code == 400
    assert owner.browser.get(api, params={"before": "-1"}).json() == {
        "error": "'before' must be a number from 1 to 9223372036854775807"
    }


def test_logs_page(owner: Owner, db_url: str) -> None:
    empty = page_text(owner.browser.get("/logs").text)
    assert "No messages yet." in empty
    ids = _messages(
        db_url, owner.tenant_id(db_url), [f"texto {n}" for n in range(60)], "+34611000000"
    )
    page = owner.browser.get("/logs").text
    assert page.count('<li class="message') == 50
    assert "texto 59" in page and "texto 9<" not in page
    older = re.search(r'href="(/logs\?before=\d+)">Older messages', page)
    assert older and older[1] == f"/logs?before={ids[10]}"
    rest = owner.browser.get(older[1]).text
    assert rest.count('<li class="message') == 10 and "Older messages" not in rest
    searched = owner.browser.get("/logs", params={"q": "texto 5"}).text
    assert searched.count('<li class="message') == 11  # 5 and 50..59
    assert "No message matches “nada”." in page_text(owner.browser.get("/logs?q=nada").text)
    assert "<script>" not in owner.browser.get("/logs", params={"q": "<script>"}).text


# --- one owner never sees another tenant's data -------------------------------------------


def test_guessed_and_tampered_ids_never_show_another_tenant(
    portal: RunningPortal, provider: Provider, owner: Owner, db_url: str
) -> None:
    with portal.client() as browser:
        other_page = sign_in(browser, provider, "rival@example.net", "Rival")
        other = Owner(browser, "rival@example.net", csrf_of(other_page.text))
        browser.post("/setup", data=_form(other, business_name="Rival Secret Bar"))
    rival_id = other.tenant_id(db_url)
    rival_messages = _messages(db_url, rival_id, ["rival secret message"], "+34699999999")
    (rival_request,) = _requests(db_url)
    mine = _messages(db_url, owner.tenant_id(db_url), ["my message"], "+34611111111")

    guessed = owner.browser.get(f"/requests/{rival_request.id}")
    assert guessed.status_code == 404
    assert page_text(guessed.text) == (
        "Page not found There is nothing at this address, or it is not yours to see. "
        "Back to the start page"
    )
    # A cursor past the rival's newest message still pages only through the owner's own.
    cursor = max(rival_messages + mine) + 1
    logs = owner.browser.get("/api/portal/tenant/current/logs", params={"before": cursor}).json()
    assert [m["text"] for m in logs["messages"]] == ["my message"]
    assert owner.browser.get("/api/portal/tenant/current/logs", params={"q": "rival"}).json() == {
        "messages": [],
        "next_before": None,
    }
    for path in ("/logs?q=rival", f"/logs?before={cursor}", "/events", "/", "/link"):
        text = owner.browser.get(path).text
        for secret in ("rival secret message", "Rival Secret Bar", "rival@example.net", "+34699"):
            assert secret not in text, path
    status = owner.browser.get("/api/portal/tenant/current/status").json()
    assert status["tenant"]["slug"] == "pepe" and status["setup_request"] is None
    # Ids in the query string or body are not how the tenant is chosen.
    assert (
        "rival"
        not in owner.browser.get(
            f"/api/portal/tenant/current/status?tenant_id={rival_id}&slug=rival"
        ).text
    )
    refused = owner.browser.post(
        "/api/portal/setup-request",
        json={"tenant_id": str(rival_id)},
        headers={"X-CSRF-Token": owner.csrf},
    )
    assert refused.status_code == 422


def test_activity_page(owner: Owner, db_url: str, cli: CLI) -> None:
    owner.browser.post("/setup", data=_form(owner))
    (request,) = _requests(db_url)
    assert cli("requests", "approve", str(request.id)).code == 0
    text = page_text(owner.browser.get("/events").text)
    rows = re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC (\S+) ([A-Z][a-z]+(?: [a-z]+)?)", text)
    assert rows == [
        ("operator", "Setup approved"),
        ("you", "Setup requested"),
        ("you", "Signed in"),
        ("you", "Account created"),
    ]


# --- the QR and the link ------------------------------------------------------------------------


def _link_state(
    url: str,
    tenant_id: uuid.UUID,
    *,
    tenant: TenantStatus,
    session: SessionState,
    qr: str | None,
    worker: WorkerStatus,
) -> None:
    with db_session(url) as db:
        db.execute(update(Tenant).where(Tenant.id == tenant_id).values(status=tenant))
        db.execute(
            update(WhatsappSession)
            .where(WhatsappSession.tenant_id == tenant_id)
            .values(state=session, last_qr=qr)
        )
        db.execute(
            update(WorkerProcess).where(WorkerProcess.tenant_id == tenant_id).values(status=worker)
        )


def test_link_page_shows_the_qr_only_while_a_running_bot_waits(owner: Owner, db_url: str) -> None:
    tenant_id = owner.tenant_id(db_url)
    page = page_text(owner.browser.get("/link").text)
    assert "Welcome! Let's set up your bot" in page
    assert owner.browser.get("/link/qr.svg").status_code == 404

    qr = "2@sandbox-pepe-7f3a1c"
    _link_state(
        db_url,
        tenant_id,
        tenant=TenantStatus.QR_PENDING,
        session=SessionState.QR_PENDING,
        qr=qr,
        worker=WorkerStatus.RUNNING,
    )
    page = owner.browser.get("/link").text
    assert "Scan this code with your phone" in page
    status = owner.browser.get("/api/portal/tenant/current/status").json()
    assert status["qr_available"] is True and len(status["qr_id"]) == 16
    assert f'src="/link/qr.svg?v={status["qr_id"]}"' in page
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in page
    svg = owner.browser.get("/link/qr.svg")
    assert svg.headers["content-type"] == "image/svg+xml"
    assert svg.headers["cache-control"] == "no-store"
    assert svg.content == render_qr_svg(qr) and svg.content.startswith(b"<svg")

    rotated = "2@sandbox-pepe-99b0e2"
    _link_state(
        db_url,
        tenant_id,
        tenant=TenantStatus.QR_PENDING,
        session=SessionState.QR_PENDING,
        qr=rotated,
        worker=WorkerStatus.RUNNING,
    )
    new_status = owner.browser.get("/api/portal/tenant/current/status").json()
    assert new_status["qr_id"] != status["qr_id"]
    assert owner.browser.get("/link/qr.svg").content == render_qr_svg(rotated)

    # A QR left behind by a worker that stopped is stale: not shown.
    _link_state(
        db_url,
        tenant_id,
        tenant=TenantStatus.QR_PENDING,
        session=SessionState.QR_PENDING,
        qr=rotated,
        worker=WorkerStatus.BACKOFF,
    )
    assert owner.browser.get("/link/qr.svg").status_code == 404
    assert "Scan this code" not in owner.browser.get("/link").text

    _link_state(
        db_url,
        tenant_id,
        tenant=TenantStatus.CONNECTED,
        session=SessionState.CONNECTED,
        qr=None,
        worker=WorkerStatus.RUNNING,
    )
    page = page_text(owner.browser.get("/link").text)
    assert page.startswith("Connected Your phone is linked.")


# --- headers, errors, static files ------------------------------------------------------------


def test_security_headers_everywhere(owner: Owner, portal: RunningPortal) -> None:
    for path in (
        "/",
        "/logs",
        "/nowhere",
        "/static/portal.css",
        "/api/portal/tenant/current/status",
    ):
        response = owner.browser.get(path)
        headers = response.headers
        assert "frame-ancestors 'none'" in headers["content-security-policy"], path
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY"
        assert "server" not in headers
        if not path.startswith("/static/"):
            assert headers["cache-control"] == "no-store"
    with portal.client() as stranger:
        missing = stranger.get("/nowhere")
        assert missing.status_code == 404 and "Page not found" in missing.text
        assert stranger.post("/link").status_code == 405
        assert stranger.get("/api/portal/tenant/current/logs").json() == {
            "error": "not signed in",
            "hint": "sign in at /signin first",
        }
        assert stranger.get("/static/link.js").status_code == 200


def test_an_unexpected_error_shows_no_internals(
    db_url: str, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    portal_env(monkeypatch, provider)
    with running_portal() as portal, portal.client() as browser:
        token = csrf_of(sign_in(browser, provider, "owner@example.com").text)
        # The database loses its tables under the running portal.
        with db_session(db_url) as session:
            session.connection().exec_driver_sql("DROP TABLE message_log")
        broken = browser.get("/logs")
        assert broken.status_code == 500
        assert page_text(broken.text) == (
            "Something went wrong The portal could not complete this request. Please try "
            "again; if it keeps happening, tell the operator. Back to the start page"
        )
        assert "message_log" not in broken.text and "Traceback" not in broken.text
        api = browser.get("/api/portal/tenant/current/logs")
        assert api.status_code == 500 and "message_log" not in api.text
        assert token


# --- wactl portal serve, and wactl init's session secret --------------------------------------


def _serve(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "wactl", "portal", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )


def test_serve_without_credentials_starts_and_says_what_to_configure(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    portal_env(monkeypatch, None)
    process = _serve()
    lines: list[str] = []
    try:
        assert process.stderr is not None
        while not any("listening on" in line for line in lines):
            line = process.stderr.readline()
            assert line, f"the portal exited: {''.join(lines)}"
            lines.append(line)
        url = re.search(r"listening on (http://\S+)", "".join(lines))
        assert url
        while not any("Sign-in is not configured" in line for line in lines):
            lines.append(process.stderr.readline())
        warning = next(line for line in lines if "Sign-in is not configured" in line)
        assert warning.split(": ", 1)[1].strip() == (
            "Sign-in is not configured: set portal.google_client_id and "
            "portal.google_client_secret (`wactl config set portal.google_client_id ID`, then "
            "the same for the secret) to an OAuth client of type Web application whose "
            f"authorized redirect URI is {url[1]}/auth/callback, and restart `wactl portal serve`."
        )
        assert "portal-test-session-secret" not in "".join(lines)

        def answers() -> bool:
            try:
                return httpx2.get(f"{url[1]}/healthz", timeout=5).text == "ok"
            except httpx2.HTTPError:
                return False

        poll_for(answers, timeout=30)
        assert "Sign-in is not configured" in httpx2.get(f"{url[1]}/").text
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
    # uvicorn shuts down cleanly, then ends the way the signal asked (as systemd expects).
    assert process.returncode in (0, -signal.SIGTERM)


def test_serve_refuses_what_it_cannot_run(
    cli: CLI, empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = cli("portal", "serve", "--port", "0")
    assert (result.code, result.err) == (
        4,
        f"error: database {_shown(empty_db_url)} "
        "has no wactl schema; run `wactl init` (or `wactl db upgrade`) first\n",
    )
    assert cli("db", "upgrade").code == 0
    result = cli("portal", "serve", "--port", "0")
    assert (result.code, result.err) == (
        3,
        "error: portal.session_secret is empty; the portal cannot sign its session cookie; run "
        "`wactl init` (it generates one) or set WACTL_PORTAL_SESSION_SECRET\n",
    )
    portal_env(monkeypatch, None)
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("portal", "serve", "--port", str(port))
    assert (result.code, result.err) == (
        2,
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use; choose another "
        "--port, or stop what uses this one\n",
    )
    result = cli("portal", "serve", "--port", "70000")
    assert result.code == 2 and "70000 is not in the range 0<=x<=65535" in result.err


def _shown(url: str) -> str:
    from wactl.db.engine import display_url

    return display_url(url)


def test_init_generates_the_session_secret_once(cli: CLI, isolated_env: Path) -> None:
    from wactl.config import load_config

    config_file = isolated_env / ".config/wactl/config.toml"
    assert cli("init").code == 0
    secret = load_config().portal.session_secret
    assert len(secret) == 64
    assert cli("init").err.endswith("nothing changed.\n")
    assert load_config().portal.session_secret == secret
    shown = cli("config", "show").out
    assert secret not in shown and 'session_secret = "***"' in shown

    # An existing file without a secret gets one, and keeps its other settings.
    config_file.write_text('[defaults]\nlanguage = "es"\n')
    result = cli("init")
    assert f"config: generated portal.session_secret in {config_file}" in result.err
    config = load_config()
    assert config.defaults.language == "es" and len(config.portal.session_secret) == 64
    assert config.portal.session_secret != secret


def test_init_keeps_a_secret_given_by_the_environment(
    cli: CLI, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WACTL_PORTAL_SESSION_SECRET", "s" * 40)
    config_file = isolated_env / ".config/wactl/config.toml"
    config_file.parent.mkdir(parents=True)
    config_file.write_text("")
    result = cli("init")
    assert f"config: {config_file} (exists, kept)" in result.err
    assert config_file.read_text() == ""


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        (
            "portal.session_secret",
            "short",
            "portal.session_secret is 5 characters long; it must have at least 32; empty it "
            "and run `wactl init`, which generates one",
        ),
        (
            "portal.public_base_url",
            "portal.example.com",
            "portal.public_base_url 'portal.example.com' is not an http:// or https:// "
            'address; e.g. "https://portal.example.com"',
        ),
        (
            "portal.allowed_email_domains",
            "example.com, not a domain",
            "portal.allowed_email_domains: 'not a domain' is not a domain name; e.g. "
            '"casapepe.es, example.com"',
        ),
        (
            "portal.trusted_proxies",
            "127.0.0.1, proxy.internal",
            "portal.trusted_proxies: 'proxy.internal' is not an IP address or network; e.g. "
            '"127.0.0.1, 10.0.0.0/8"',
        ),
        (
            "portal.signin_per_minute",
            "0",
            "portal.signin_per_minute must be greater than 0, not 0.0",
        ),
    ],
)
def test_bad_portal_settings_are_refused(
    cli: CLI, isolated_env: Path, key: str, value: str, message: str
) -> None:
    result = cli("config", "set", key, value)
    assert (result.code, result.err) == (3, f"error: '{key}': {message}\n")


def _twin_signs_in(session: Session) -> SignIn:
    """The first (or a later) sign-in of one identity, as the sign-in race tests make it."""
    from wactl.db import portal as store
    from wactl.enums import EngineName

    return store.sign_in(
        session,
        issuer="https://accounts.example",
        subject="twin-1",
        email="twin@example.com",
        name="Twin",
        engine=EngineName.SANDBOX,
    )


def test_sign_in_race_creates_one_tenant(db_url: str) -> None:
    """Two first sign-ins of one email at once: one tenant, one user, no error."""
    import concurrent.futures

    from sqlalchemy.exc import IntegrityError

    from wactl.db.engine import make_engine, session_scope

    engine = make_engine(db_url)
    try:

        def attempt() -> str:
            for _ in range(3):
                try:
                    with session_scope(engine) as session:
                        return _twin_signs_in(session).slug
                except IntegrityError:
                    continue
            raise AssertionError("three conflicts in a row")

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            slugs = list(pool.map(lambda _: attempt(), range(4)))
    finally:
        engine.dispose()
    assert slugs == ["twin"] * 4
    with db_session(db_url) as session:
        assert session.scalar(select(func.count()).select_from(Tenant)) == 1
        assert session.scalar(select(func.count()).select_from(User)) == 1


def test_a_first_sign_in_committed_between_the_two_reads_is_the_same_account(
    db_url: str,
) -> None:
    """The race the test above hits now and then, made certain: another first sign-in of
    the same identity commits after this one looked the identity up (not found) and
    before it looks the email up (found, bound to this very identity). That is this
    identity's account, not "bound to another identity"."""
    from sqlalchemy import event

    from wactl.db.engine import make_engine, session_scope

    engine, other = make_engine(db_url), make_engine(db_url)
    raced: list[str] = []

    def between_the_reads(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if not raced and "oidc_subject =" in statement and statement.startswith("SELECT"):
            with session_scope(other) as session:
                raced.append(_twin_signs_in(session).slug)

    event.listen(engine, "after_cursor_execute", between_the_reads)
    try:
        with session_scope(engine) as session:
            mine = _twin_signs_in(session)
    finally:
        engine.dispose()
        other.dispose()
    assert raced == ["twin"]
    assert (mine.slug, mine.created) == ("twin", False)
    with db_session(db_url) as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1


def test_the_form_suggests_exactly_the_zones_it_accepts() -> None:
    """The zone suggestions came from zoneinfo directly: "Factory" and "localtime" were
    offered, then refused on submit."""
    from wactl import validation
    from wactl.portal import forms

    suggested = forms.timezones()
    assert "Europe/Madrid" in suggested and len(suggested) > 300
    assert not {"Factory", "localtime", "posixrules"} & set(suggested)
    assert all(validation.validate_timezone(zone) == zone for zone in suggested)
