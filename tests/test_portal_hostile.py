"""The portal against hostile input, on SQLite and PostgreSQL: every parameter, path
segment, header and body it reads from outside is checked before use, so crafted input
gets a 4xx with a clear message, never a 500 (and never reaches the database raw: NUL
is refused by PostgreSQL in text).

`test_every_route_survives_hostile_input` walks the routes of the application itself,
so a route added later is walked too.
"""

from __future__ import annotations

import itertools
import logging
import re
import socket
import time
from collections.abc import Iterator
from urllib.parse import quote

import httpx2
import pytest
from sqlalchemy import func, select
from starlette.routing import Mount, Route

from tests.oidc_provider import Provider
from tests.portal_support import (
    RunningPortal,
    csrf_of,
    page_text,
    sign_in,
)
from tests.support import db_session, every_case
from wactl.db.models import SetupRequest, Tenant

#: Values a hostile client sends: NUL and other controls, digits that are not ASCII,
#: numbers past 64 bits, markup for Rich and HTML, bidi overrides, long strings.
HOSTILE = [
    "\x00",
    "a\x00b",
    "²",
    "٣",
    "9223372036854775808",
    "-1",
    " 7",
    "\u202eevil",
    "\x1b[2J\x07",
    "<script>alert(1)</script>",
    "[/bold] x [link=https://evil.example]y[/link]",
    "%'\"",
    "x" * 5000,
    "😀",
    "\ufffd",
    "\r\nSet-Cookie: a=b",
]

#: The values also sent in each query parameter alone (the walk's time is mostly these).
EACH_ALONE = {"\x00", "²", "9223372036854775808", " 7", "x" * 5000, "<script>alert(1)</script>"}

#: Every query parameter any route reads, and one no route reads.
QUERY_NAMES = ("q", "before", "limit", "next", "error", "state", "code", "v", "other")
#: Every field the setup form and the JSON API read, and the CSRF token.
FIELD_NAMES = (
    "business_name",
    "template_type",
    "language",
    "whatsapp_number",
    "timezone",
    "notes",
    *(f"hours_{day}" for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")),
)
#: JSON values of every type, for the API's fields.
ODD_JSON: list[object] = [None, True, 0, -1, 1.5, 10**30, [], ["x"], {}, {"a": [1]}, "\x00"]


def _header_value(value: str) -> bytes:
    """``value`` as a header can carry it (HTTP itself refuses NUL, CR and LF there)."""
    return re.sub(r"[\x00\r\n]", "", value).strip().encode()


def _paths(portal: RunningPortal, value: str) -> Iterator[tuple[str, str]]:
    """(method, path) of every route of the running application, parameters filled
    with ``value``."""
    segment = quote(value, safe="")
    for route in portal.app.routes:
        if isinstance(route, Mount):
            yield "GET", f"{route.path}/{segment}"
            continue
        assert isinstance(route, Route), route
        path = re.sub(r"\{[^}]+\}", segment, route.path)
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                yield method, path
    yield "GET", f"/{segment}"
    yield "GET", f"/requests/{segment}"


def _bodies(value: str, token: str) -> Iterator[dict[str, object]]:
    """httpx arguments of the bodies a POST route is sent with ``value``: the form and
    the JSON object with every field, and raw bytes under odd content types."""
    form = dict.fromkeys(FIELD_NAMES, value)
    yield {"data": {**form, "csrf_token": token}}
    body: dict[str, object] = {k: value for k in FIELD_NAMES if not k.startswith("hours_")}
    yield {"json": {**body, "hours": {value: [value], "mon": value}}}
    raw = value.encode() + b"\xff\xfe=\x00&%zz=%ff"
    shown = _header_value(value).decode()
    for content_type in (
        f"multipart/form-data; boundary={shown}",
        "multipart/form-data",
        f"application/x-www-form-urlencoded; charset={shown}",
        "application/json; charset=latin-1",
    ):
        yield {"content": raw, "headers": {b"Content-Type": content_type.encode()}}


def _walk(browser: httpx2.Client, portal: RunningPortal, token: str) -> list[str]:
    """Every route with every hostile value; what went wrong, as "METHOD PATH -> code"."""
    failures: list[str] = []

    def check(method: str, path: str, response: httpx2.Response) -> None:
        where = f"{method} {path[:60]!r} -> {response.status_code}"
        if response.status_code >= 500 or "Traceback" in response.text:
            failures.append(where)
        elif path.startswith("/api/") and response.status_code >= 400:
            if response.headers["content-type"] != "application/json":
                failures.append(f"{where}: not JSON")
            elif not isinstance(response.json().get("error"), str):
                failures.append(f"{where}: no error")

    for value in HOSTILE:
        names = (b"X-CSRF-Token", b"X-Forwarded-For", b"X-Forwarded-Proto", b"Accept-Language")
        headers = {name: _header_value(value) for name in names}
        headers[b"Host"] = _header_value(value) or b"x"
        for method, path in _paths(portal, value):
            if method == "GET":
                # All parameters at once; the sharpest values also on each parameter
                # alone (one refusal hides no other).
                every = dict.fromkeys(QUERY_NAMES, value)
                alone = [{name: value} for name in QUERY_NAMES] if value in EACH_ALONE else []
                for params in [every, *alone]:
                    check(method, path, browser.get(path, params=params, headers=headers))
                continue
            # With the owner's CSRF token the body reaches validation; with the hostile
            # value as the token it is refused before. (Sign-out only without: it would
            # end the walk's session.)
            for csrf in [value] if path == "/auth/signout" else [value, token]:
                sent = {**headers, b"X-CSRF-Token": _header_value(csrf)}
                for body in _bodies(value, csrf):
                    extra = body.pop("headers", {})
                    assert isinstance(extra, dict)
                    response = browser.post(path, headers={**sent, **extra}, **body)  # type: ignore[arg-type]
                    check(method, path, response)
    # JSON fields of every type (the same for every value).
    for method, path in _paths(portal, "1"):
        if method == "POST" and path != "/auth/signout":
            for odd in ODD_JSON:
                fields = {name: odd for name in FIELD_NAMES if not name.startswith("hours_")}
                response = browser.post(
                    path, json={**fields, "hours": odd}, headers={"X-CSRF-Token": token}
                )
                check(method, path, response)
    return failures


def test_every_route_survives_hostile_input(
    roomy_portal: RunningPortal,
    provider: Provider,
    db_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="wactl.portal")
    with roomy_portal.client() as stranger:
        failures = _walk(stranger, roomy_portal, "no-token")
    with roomy_portal.client() as browser:
        page = sign_in(browser, provider, "walker@example.com")
        token = csrf_of(page.text)
        failures += _walk(browser, roomy_portal, token)
        # The walk left the owner signed in, and sent nothing half-written.
        assert browser.get("/api/portal/tenant/current/status").status_code == 200
    assert not failures, "\n".join(sorted(set(failures)))
    assert [r.getMessage() for r in caplog.records if r.name == "wactl.portal"] == []
    with db_session(db_url) as session:
        assert session.scalar(select(func.count()).select_from(SetupRequest)) == 0


# --- the probe's examples, each with its message -----------------------------------------------


@pytest.fixture
def browser(portal: RunningPortal, provider: Provider) -> Iterator[httpx2.Client]:
    with portal.client() as client:
        sign_in(client, provider, "pepe@casapepe.es", "Pepe")
        yield client


def test_a_bad_cursor_is_a_400(browser: httpx2.Client) -> None:
    message = "'before' must be a number from 1 to 9223372036854775807"

    def check(path: str, value: str) -> None:
        response = browser.get(path, params={"before": value})
        assert response.status_code == 400
        if path.startswith("/api/"):
            assert response.json() == {"error": message}
        else:
            assert page_text(response.text) == f"Bad request {message} Back to the start page"

    every_case(
        itertools.product(
            ["/api/portal/tenant/current/logs", "/logs", "/events"],
            ["²", "٣", "9223372036854775808", "-1", " 7", "\x00"],
        ),
        check,
    )


def test_a_bad_limit_is_a_400(browser: httpx2.Client) -> None:
    def check(value: str) -> None:
        response = browser.get("/api/portal/tenant/current/logs", params={"limit": value})
        assert (response.status_code, response.json()) == (
            400,
            {"error": "'limit' must be a number from 1 to 200"},
        )

    every_case([(v,) for v in ["²", "٣", "0", "201", "99999999999999999999", " 7", "\x00"]], check)


def test_a_request_number_out_of_range_is_not_found(browser: httpx2.Client) -> None:
    def check(number: str) -> None:
        response = browser.get(f"/requests/{number}")
        assert response.status_code == 404
        assert page_text(response.text).startswith("Page not found")

    every_case(
        [(n,) for n in ["9223372036854775808", "2147483648", "99999999999999999999999999", "0"]],
        check,
    )


def test_a_search_with_control_characters_is_a_400(browser: httpx2.Client) -> None:
    def check(search: str) -> None:
        api = browser.get("/api/portal/tenant/current/logs", params={"q": search})
        assert (api.status_code, api.json()) == (
            400,
            {"error": "'q' must not contain control characters"},
        )
        assert browser.get("/logs", params={"q": search}).status_code == 400

    every_case([(v,) for v in ["\x00", "a\x00b", "\x1b[2J"]], check)


def test_a_deeply_nested_json_body_is_a_400(browser: httpx2.Client) -> None:
    token = browser.get("/api/portal/tenant/current/status").json()["csrf_token"]
    headers = {"X-CSRF-Token": token, "Content-Type": "application/json"}
    # The probe's 40,000 levels are 80,000 bytes: over the body limit.
    nested = "[" * 40_000 + "]" * 40_000
    response = browser.post("/api/portal/setup-request", content=nested, headers=headers)
    assert response.status_code == 413
    # Within the limit: past Python's recursion limit, past ours, and as an object.
    for body in (
        "[" * 30_000 + "]" * 30_000,
        "[" * 2_000 + "]" * 2_000,
        '{"hours": {"mon": ' + "[" * 19 + "]" * 19 + "}}",
    ):
        response = browser.post("/api/portal/setup-request", content=body, headers=headers)
        assert (response.status_code, response.json()) == (
            400,
            {"error": "the request body is nested too deeply (at most 20 levels)"},
        )
    # Long numbers are refused by Python's own limit, as bad JSON.
    digits = browser.post(
        "/api/portal/setup-request",
        content=b'{"notes": ' + b"9" * 5000 + b"}",
        headers={"X-CSRF-Token": token, "Content-Type": "application/json"},
    )
    assert (digits.status_code, digits.json()) == (400, {"error": "the request body is not JSON"})


# --- owner text: control characters refused by field, everything shown as text ----------------

GOOD_FORM = {
    "business_name": "Casa Pepe",
    "template_type": "restaurant",
    "language": "es",
    "whatsapp_number": "+34600123456",
    "timezone": "Europe/Madrid",
    "hours_tue": "12:00-16:00",
    "notes": "We close in August.",
}


#: (field, value, the error shown at the field)
OWNER_TEXT_CONTROLS: list[tuple[str, str, str]] = [
    (
        "business_name",
        "Casa\x00Pepe",
        "contains the control character U+0000 at position 5 (names are plain text: remove it)",
    ),
    (
        "business_name",
        "\x1b]0;owned\x07Casa",
        "contains the control character U+001B at position 1 (names are plain text: remove it)",
    ),
    (
        "notes",
        "line one\nline two\x00",
        "contains the control character U+0000 at position 18 (notes are plain text: remove it)",
    ),
    (
        "notes",
        "\u202eevil",
        "contains the control character U+202E at position 1 (notes are plain text: remove it)",
    ),
    (
        "whatsapp_number",
        "+34600\x00123456",
        "contains the control character U+0000 at position 7 (phone numbers are plain "
        "text: remove it)",
    ),
    (
        "timezone",
        "Europe/\x00Madrid",
        "contains the control character U+0000 at position 8 (time zones are plain text: "
        "remove it)",
    ),
    (
        "hours_tue",
        "12:00-16:00\x00",
        "contains the control character U+0000 at position 12 (opening hours are plain "
        "text: remove it)",
    ),
    (
        "language",
        "es\x1b",
        "contains the control character U+001B at position 3 (choices are plain text: remove it)",
    ),
]


def test_control_characters_in_owner_text_are_refused_by_field(
    browser: httpx2.Client, db_url: str
) -> None:
    import html

    token = browser.get("/api/portal/tenant/current/status").json()["csrf_token"]

    def check(field: str, value: str, error: str) -> None:
        page = browser.post("/setup", data={**GOOD_FORM, field: value, "csrf_token": token})
        assert page.status_code == 422
        shown = re.findall(r'<p class="field-error" id="([a-z_]+)-error">([^<]*)</p>', page.text)
        assert [(name, html.unescape(text)) for name, text in shown] == [(field, error)]
        if field.startswith("hours_"):
            body: dict[str, object] = {
                **{k: v for k, v in GOOD_FORM.items() if k != "hours_tue"},
                "hours": {"tue": [value]},
            }
        else:
            body = {**{k: v for k, v in GOOD_FORM.items() if k != "hours_tue"}, field: value}
        api = browser.post("/api/portal/setup-request", json=body, headers={"X-CSRF-Token": token})
        assert api.status_code == 422
        assert api.json()["error"].startswith(f"{field}: ")

    every_case(OWNER_TEXT_CONTROLS, check)
    with db_session(db_url) as session:
        assert session.scalar(select(func.count()).select_from(SetupRequest)) == 0


def test_json_fields_of_the_wrong_type_are_refused_by_field(browser: httpx2.Client) -> None:
    token = browser.get("/api/portal/tenant/current/status").json()["csrf_token"]
    kinds = {bool: "true or false", int: "a number", list: "a list", dict: "an object"}

    def check(field: str, value: object) -> None:
        body: dict[str, object] = {k: v for k, v in GOOD_FORM.items() if k != "hours_tue"}
        body[field] = value
        response = browser.post(
            "/api/portal/setup-request", json=body, headers={"X-CSRF-Token": token}
        )
        kind = kinds[type(value)] if value is not None else "null"
        assert response.status_code == 422
        assert response.json()["error"] == f"{field}: must be text, not {kind}"

    values: list[object] = [7, None, ["x"], {"a": 1}, True]
    every_case(
        [
            (field, value)
            for field in ["business_name", "template_type", "whatsapp_number", "notes"]
            for value in values
            if (field, value) != ("notes", None)
        ],
        check,
    )
    # Notes are optional: null is "no notes" (last: it files the request).
    body = {k: v for k, v in GOOD_FORM.items() if k != "hours_tue"}
    response = browser.post(
        "/api/portal/setup-request", json={**body, "notes": None}, headers={"X-CSRF-Token": token}
    )
    assert response.status_code == 201


MARKUP = '<script>alert("x")</script> [/bold] [link=https://evil.example]Pay[/link] &amp;'


def test_pages_show_owner_and_provider_text_as_text(
    portal: RunningPortal, provider: Provider, db_url: str
) -> None:
    """Every page escapes what owners, customers and the provider wrote: markup stays
    visible text, never HTML."""
    with portal.client() as client:
        page = sign_in(client, provider, "mark@example.com", MARKUP)
        token = csrf_of(page.text)
        form = {**GOOD_FORM, "business_name": MARKUP, "notes": MARKUP, "csrf_token": token}
        assert client.post("/setup", data=form).status_code == 303
        with db_session(db_url) as session:
            request_id = session.scalar(select(SetupRequest.id))
            tenant = session.scalar(select(Tenant))
            assert tenant is not None and tenant.name == MARKUP
        pages = [client.get(path).text for path in ("/", f"/requests/{request_id}", "/events")]
        for text in pages:
            assert "<script>" not in text and 'href="https://evil.example' not in text
        detail = pages[1]
        escaped = (
            "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; [/bold] "
            "[link=https://evil.example]Pay[/link] &amp;amp;"
        )
        assert detail.count(escaped) == 2  # business name and notes
        assert client.get("/api/portal/tenant/current/status").json()["user"]["name"] == MARKUP


# --- the body limit, enforced while reading ------------------------------------------------------


def _stream(url: str, path: str, headers: dict[str, str], limit: int) -> tuple[int, bytes]:
    """POST a chunked body to ``path`` until the portal answers (or ``limit`` bytes were
    sent); the bytes sent and the response's first bytes."""
    host, port = url.removeprefix("http://").split(":")
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Transfer-Encoding: chunked"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    chunk = b"x" * 65536
    framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    sent = 0
    pending = b""  # what is left of the chunk being sent (a send may take only part)
    answer = b""
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        sock.setblocking(False)
        deadline = time.monotonic() + 60
        while sent < limit and time.monotonic() < deadline:
            try:
                answer += sock.recv(65536)
                break  # the portal answered before the body ended
            except BlockingIOError:
                pass
            try:
                pending = pending or framed
                taken = sock.send(pending)
                sent += taken
                pending = pending[taken:]
            except BlockingIOError:
                time.sleep(0.001)  # the portal does not read: its buffers are full
            except OSError:
                break  # the portal closed the connection
        sock.setblocking(True)
        sock.settimeout(30)
        try:
            while b"\r\n\r\n" not in answer:
                more = sock.recv(65536)
                if not more:
                    break
                answer += more
        except OSError:
            pass
    return sent, answer


@pytest.mark.parametrize(
    "path",
    ["/api/portal/setup-request", "/setup", "/auth/signout", "/", "/logs", "/nowhere"],
)
def test_a_chunked_body_over_the_limit_is_refused_while_reading(
    portal: RunningPortal, path: str
) -> None:
    limit = 64 * 1024 * 1024
    sent, answer = _stream(
        portal.url, path, {"Content-Type": "application/x-www-form-urlencoded"}, limit
    )
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"connection: close" in answer.lower()
    # The portal stopped reading at 64 KB; what was sent beyond is what the kernel's
    # socket buffers took before the answer came back.
    assert sent < limit // 4, sent


def test_a_declared_length_over_the_limit_is_refused_before_reading(portal: RunningPortal) -> None:
    with portal.client() as client:
        response = client.post(
            "/setup",
            content=b"x" * (64 * 1024 + 1),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 413
    assert page_text(response.text) == (
        "Too much data The request body is larger than 65536 bytes, the most the portal "
        "takes. Back to the start page"
    )
