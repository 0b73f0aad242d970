"""The portal end to end in a real browser (Playwright driving the system Chromium):
an owner signs in, asks for setup; the operator approves it and starts the sandbox
tenant; the QR appears and rotates; `wactl sandbox scan` links it and the page says
"Connected"; a `wactl sandbox send` message shows in the conversation log.

The portal runs as `wactl portal serve` (a subprocess), the daemon and its worker as
real processes, sign-in goes through the local OpenID provider. A screenshot of each
page is saved for review; the test prints where.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CLI
from tests.daemon_support import daemon_for_cli
from tests.oidc_provider import Provider
from tests.portal_support import portal_env
from tests.support import poll_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="needs Chromium (Debian: apt-get install chromium)"
)


class PortalProcess:
    """`wactl portal serve --port 0`, its stderr collected by a thread."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wactl", "portal", "serve", "--port", "0"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    def url(self) -> str:
        found: list[str] = []

        def listening() -> bool:
            if self.process.poll() is not None:
                pytest.fail("the portal exited:\n" + "".join(self.lines))
            match = re.search(r"listening on (http://\S+)", "".join(self.lines))
            if match:
                found.append(match[1])
            return bool(match)

        poll_for(listening, timeout=30)
        return found[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._reader.join(timeout=10)
        if self.process.stderr is not None:
            self.process.stderr.close()


@pytest.fixture
def shots() -> Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="wactl-portal-shots-"))
    yield directory
    print(f"\nportal screenshots: {directory}")


def test_owner_journey_in_a_browser(
    db_url: str,
    provider: Provider,
    cli: CLI,
    monkeypatch: pytest.MonkeyPatch,
    shots: Path,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    portal_env(monkeypatch, provider)
    provider.sign_in_as("carmen@casacarmen.es", "Carmen Ruiz")
    # The QR rotates every 2 s, so the test also sees the page follow a rotation.
    with daemon_for_cli(monkeypatch, {"WACTL_SANDBOX_QR_ROTATE_SECONDS": "2"}):
        portal = PortalProcess()
        try:
            base = portal.url()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
                try:
                    page = browser.new_page(viewport={"width": 420, "height": 900})
                    page.set_default_timeout(30_000)
                    _journey(page, base, cli, shots, expect)
                finally:
                    browser.close()
        finally:
            portal.stop()
    log = "".join(portal.lines)
    assert "signed in carmen@casacarmen.es (tenant 'carmen', new)" in log
    assert "Traceback" not in log


def _journey(page: object, base: str, cli: CLI, shots: Path, expect: object) -> None:
    from playwright.sync_api import Page
    from playwright.sync_api import expect as expect_

    assert isinstance(page, Page)
    assert expect is expect_

    def shot(name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    # 1. Sign in.
    page.goto(base)
    expect_(page.get_by_role("heading", name="Your business on WhatsApp")).to_be_visible()
    shot("01-sign-in")
    page.get_by_role("link", name="Sign in with Google").click()
    expect_(page.get_by_role("heading", name="Welcome! Let's set up your bot")).to_be_visible()
    shot("02-dashboard-new")

    # 2. The setup request: a mistake first, shown beside its field; then sent.
    page.get_by_role("link", name="Request setup").click()
    page.get_by_label("Business name").fill("Casa Carmen")
    page.get_by_label("Kind of business").select_option("restaurant")
    page.get_by_label("Language the bot answers in").select_option("es")
    page.get_by_label("WhatsApp number of the business").fill("600 123 456")
    page.get_by_label("Time zone").fill("Europe/Madrid")
    page.get_by_label("Tuesday").fill("12:00-16:00, 20:00-23:30")
    page.get_by_label("Saturday").fill("12:00-24:00")
    page.get_by_role("button", name="Send the request").click()
    expect_(page.locator("#whatsapp_number-error")).to_have_text(
        "'600 123 456' has no country code (write it in international form starting with +, "
        "e.g. +34600123456)"
    )
    shot("03-setup-form-error")
    assert page.get_by_label("Tuesday").input_value() == "12:00-16:00, 20:00-23:30"
    page.get_by_label("WhatsApp number of the business").fill("+34 600 123 456")
    page.get_by_role("button", name="Send the request").click()
    expect_(page.get_by_role("heading", name="We have your setup request")).to_be_visible()
    shot("04-dashboard-requested")

    # 3. The operator approves it and starts the sandbox tenant.
    (request,) = json.loads(cli("requests", "list", "--status", "pending", "--json").out)
    assert (request["tenant"], request["whatsapp_number"]) == ("carmen", "+34600123456")
    approved = cli("requests", "approve", str(request["id"]))
    assert approved.code == 0, approved.err
    started = cli("tenant", "start", "carmen")
    assert started.code == 0, started.err

    # 4. The QR appears on the phone page, and follows a rotation without a reload.
    page.get_by_role("link", name="Phone", exact=True).click()
    qr = page.locator("img#qr")
    expect_(qr).to_be_visible()
    first_src = qr.get_attribute("src")
    assert first_src and first_src.startswith("/link/qr.svg?v=")
    shot("05-link-qr")
    page.wait_for_function(
        "src => document.getElementById('qr') && document.getElementById('qr')"
        ".getAttribute('src') !== src",
        arg=first_src,
    )

    # 5. The phone scans it: the page says so by itself.
    scanned = cli("sandbox", "scan", "carmen")
    assert scanned.code == 0, scanned.err
    expect_(page.get_by_role("heading", name="Connected")).to_be_visible()
    expect_(page.get_by_text("Your phone is linked (+34600123456).")).to_be_visible()
    shot("06-link-connected")

    # 6. A customer writes; the conversation shows in the log.
    sent = cli("sandbox", "send", "carmen", "--from", "+15551234567", "hola, ¿abrís el martes?")
    assert sent.code == 0, sent.err
    reply = sent.out.strip()
    page.get_by_role("link", name="Conversations", exact=True).click()
    expect_(page.get_by_text("hola, ¿abrís el martes?")).to_be_visible()
    assert reply.splitlines()[0] in page.locator("ol.messages").inner_text()
    shot("07-conversations")
    page.get_by_label("Search messages or numbers").fill("¿abrís")
    page.get_by_role("button", name="Search").click()
    expect_(page.locator("li.message")).to_have_count(1)

    # 7. The activity page: the owner's and the operator's actions.
    page.get_by_role("link", name="Activity", exact=True).click()
    for words in ("Setup approved", "Bot started", "Setup requested", "Account created"):
        expect_(page.get_by_role("cell", name=words, exact=True)).to_be_visible()
    shot("08-activity")
    page.goto(base)
    expect_(page.get_by_role("heading", name="Connected")).to_be_visible()
    shot("09-dashboard-connected")

    # 8. Sign out.
    page.get_by_role("button", name="Sign out").click()
    expect_(page.get_by_role("link", name="Sign in with Google")).to_be_visible()
    assert len(list(shots.glob("*.png"))) == 9
