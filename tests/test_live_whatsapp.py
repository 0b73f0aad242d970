"""A smoke test with a real phone on the real WhatsApp Web, for operators (README:
"Linking a real phone"). Skipped unless WACTL_LIVE_PHONE=1; run it with ``-s``::

    WACTL_LIVE_PHONE=1 .venv/bin/pytest tests/test_live_whatsapp.py -s

It starts a daemon and a whatsapp-web tenant in a throwaway home, draws the QR in the
terminal, and waits for an operator to (1) scan it with the business's phone
(WhatsApp > Settings > Linked devices > Link a device) and (2) send two texts to that
number from another phone, the second after the bot answered the first. It checks what
the stand-in cannot prove about the real WhatsApp Web and wa-js:

- the tenant is never CONNECTED while a QR shows (wa-js fires conn.main_ready on the QR
  screen too);
- the device shows on the phone under the tenant's name (the operator is asked);
- the customer's chat is a @lid chat (most are; the check says so when it is not), the
  bot's reply reaches it, and the customer is logged under one identity;
- the bot's own reply pauses nothing: the second text is answered too.

Then it logs the tenant out (the phone's list of linked devices loses it) unless
WACTL_LIVE_KEEP=1.

Needs Chromium, the network, and the wa-js bundle (`wactl engine install`, or
WACTL_BROWSER_WA_JS_PATH); WACTL_BROWSER_EXECUTABLE_PATH is passed on when set.
WACTL_LIVE_TIMEOUT (seconds, default 300) bounds each of the two waits.
"""

from __future__ import annotations

import io
import json
import os
import sys
from typing import Any

import pytest

from tests.conftest import CLI
from tests.daemon_support import daemon_for_cli
from tests.support import poll_for

# Read at import: the autouse fixture clears WACTL_* variables before each test runs.
LIVE = os.environ.get("WACTL_LIVE_PHONE") == "1"
KEEP = os.environ.get("WACTL_LIVE_KEEP") == "1"
WAIT = float(os.environ.get("WACTL_LIVE_TIMEOUT") or 300)
PASSED_ON = {
    name: os.environ[name]
    for name in ("WACTL_BROWSER_WA_JS_PATH", "WACTL_BROWSER_EXECUTABLE_PATH")
    if os.environ.get(name)
}

pytestmark = pytest.mark.skipif(
    not LIVE, reason="needs a real phone: set WACTL_LIVE_PHONE=1 (README: Linking a real phone)"
)


def tell(text: str) -> None:
    """Talk to the operator on the real terminal (pytest captures the test's output)."""
    terminal = sys.__stderr__
    assert terminal is not None, "run it from a terminal, with -s"
    terminal.write(text + "\n")
    terminal.flush()


def draw(qr: str) -> None:
    import segno

    out = io.StringIO()
    segno.make(qr, error="m").terminal(out=out, compact=True, border=2)
    tell(out.getvalue())


@pytest.mark.timeout(2 * WAIT + 180)
@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_real_phone_links_and_gets_a_reply(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = dict(PASSED_ON)
    # Real WhatsApp Web takes its time; the test daemon's 2 s heartbeat window is for
    # the sandbox.
    extra["WACTL_DAEMON_HEARTBEAT_TIMEOUT_SECONDS"] = "60"
    with daemon_for_cli(monkeypatch, extra) as daemon:
        result = cli(
            "tenant", "create", "live", "--name", "wactl smoke test", "--engine", "whatsapp-web"
        )
        assert result.code == 0, result.err
        result = cli("tenant", "start", "live")
        assert result.code == 0, result.err
        tell("\nScan this with WhatsApp on the business's phone (Linked devices > Link a device):")
        shown: list[str] = []

        def linked() -> bool:
            """True once linked; meanwhile draws each new QR as WhatsApp rotates it."""
            view: dict[str, Any] = daemon.client.request("GET", "/v1/tenants/live/qr")
            assert view["state"] in ("STARTING", "RUNNING"), view
            if view["qr"]:
                assert view["session_state"] != "CONNECTED", f"CONNECTED with a QR: {view}"
                if view["qr"] not in shown:
                    shown.append(view["qr"])
                    draw(view["qr"])
            return bool(view["session_state"] == "CONNECTED")

        poll_for(linked, timeout=WAIT, interval=0.5)
        tell(
            "Linked. The phone lists this device as 'wactl smoke test (wactl)'.\n"
            "Now send any text to that number from another phone."
        )
        rows: list[dict[str, Any]] = []

        def answered(count: int) -> bool:
            rows[:] = json.loads(cli("tenant", "logs", "live", "--json").out)
            replies = [r for r in rows if r["direction"] == "OUT" and r["state"] == "SENT"]
            return len(replies) >= count

        poll_for(lambda: answered(1), timeout=WAIT, interval=1.0)
        first = next(r for r in rows if r["direction"] == "OUT")
        tell(f"The bot answered {first['chat']}:\n{first['text']}\nNow send a second text.")
        poll_for(lambda: answered(2), timeout=WAIT, interval=1.0)
        inbound = [r for r in rows if r["direction"] == "IN"]
        replies = [r for r in rows if r["direction"] == "OUT"]
        # The bot's own reply paused nothing: both answered, nothing taken for the owner.
        assert [r["state"] for r in inbound[:2]] == ["ANSWERED", "ANSWERED"], rows
        assert not [r for r in rows if r["kind"] == "owner"], rows
        # One identity for the customer, whatever chat id WhatsApp used.
        assert len({r["chat"] for r in inbound}) == 1, rows
        assert "@lid_" in inbound[0]["wa_message_id"], (
            "this customer's chat is not a @lid chat, so the LID path was not tried; "
            f"send from another phone (the message id was {inbound[0]['wa_message_id']})"
        )
        assert all("@lid_" in r["wa_message_id"] for r in replies[:2]), replies
        tell(f"Both answered, in the LID chat, logged as {inbound[0]['chat']}.")
        log = cli("tenant", "logs", "live", "--worker").out
        assert "Traceback" not in log
        if not KEEP:
            assert cli("tenant", "logout", "live").code == 0
            tell("Logged out; the phone no longer lists this device.")
        assert cli("tenant", "stop", "live").code == 0
