"""`wactl quickstart`: the whole product in one command, on embedded defaults.

Initialises config and database when needed, starts the daemon, creates a `demo`
sandbox tenant, starts and links it, sends two customer messages through the real
pipeline and prints the conversation. Running it again reuses what exists.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import typer

from wactl.cli.context import app_context

DEMO = "demo"

#: What to try after the demo: (command, what it does). tests/test_docs.py checks each
#: command against the command tree, so the list cannot suggest one that does not exist.
NEXT_STEPS: tuple[tuple[str, str], ...] = (
    (f"wactl sandbox chat {DEMO}", "talk to the bot yourself"),
    (f"wactl tenant logs {DEMO}", "the conversation log"),
    ("wactl tui", "the live dashboard of every tenant"),
    (f"wactl tenant config export {DEMO} > demo.toml", "change hours, texts, menu"),
    ("wactl tenant create shop --name Shop --engine whatsapp-web", "a bot for a real phone,"),
    ("wactl tenant start shop && wactl tenant qr shop", "linked by scanning this QR"),
    ("wactl portal serve", "the owners' portal (README: Google sign-in)"),
    ("wactl doctor", "what is installed, and what to fix"),
)
#: The demo's own customer (not `wactl sandbox chat`'s default, +15551234567: a person
#: asked for there must not silence the demo).
CUSTOMER = "+15550000042"
DEMO_HOURS = {
    "mon": [],
    "tue": ["12:00-16:00", "19:00-23:00"],
    "wed": ["12:00-16:00", "19:00-23:00"],
    "thu": ["12:00-16:00", "19:00-23:00"],
    "fri": ["12:00-16:00", "19:00-24:00"],
    "sat": ["12:00-24:00"],
    "sun": ["12:00-17:00"],
}
DEMO_INFO = {
    "address": "Calle Mayor 1, Madrid",
    "phone": "+34 910 000 000",
    "website": "https://demo-bistro.example",
}


def quickstart(ctx: typer.Context) -> None:
    """Set everything up on embedded defaults and show a demo bot answering customers."""
    from wactl.cli.daemon_client import client_for
    from wactl.cli.init_cmd import init
    from wactl.cli.proc_cmd import _wait_for
    from wactl.db import audit, tenants
    from wactl.enums import EngineName, Language, TemplateType
    from wactl.errors import NotFoundError

    app = app_context(ctx)
    say = app.err_console.print
    init(ctx)
    with app.session() as session:
        try:
            tenants.get_tenant(session, DEMO)
            say(f"tenant '{DEMO}' exists; reusing it")
        except NotFoundError:
            tenant = tenants.create_tenant(
                session,
                slug=DEMO,
                name="Demo Bistro",
                template=TemplateType.RESTAURANT,
                language=Language.EN,
                timezone="Europe/Madrid",
                engine=EngineName.SANDBOX,
                phone_number=None,
                actor=audit.operator_actor(),
            )
            assert tenant.config is not None
            tenant.config.hours_json = {"weekly": DEMO_HOURS, "holidays": ["2026-12-25"]}
            tenant.config.info_json = dict(DEMO_INFO)
            say(f"created the sandbox tenant '{DEMO}' (a restaurant, Demo Bistro)")
    client = client_for(app)
    client.request("POST", "/v1/start", {"tenants": [DEMO]})
    _wait_for(client, [DEMO], {"RUNNING"}, 60)
    deadline = time.monotonic() + 30
    while True:
        view: dict[str, Any] = client.request("GET", f"/v1/tenants/{DEMO}")
        if view["session_state"] == "CONNECTED":
            break
        if view["has_qr"]:
            client.request("POST", f"/v1/tenants/{DEMO}/sandbox/scan", {})
            say(f"linked '{DEMO}' (the sandbox plays the phone scanning its QR)")
            continue
        if time.monotonic() > deadline:
            from wactl.errors import WaitTimeoutError

            raise WaitTimeoutError(f"'{DEMO}' did not show a QR within 30 s")
        time.sleep(0.1)
    from wactl.cli.console import print_hanging

    out = sys.stdout
    out.write(f"\nA customer ({CUSTOMER}) writes to Demo Bistro:\n\n")
    for text in ("Hi!", "2"):
        answer = client.request(
            "POST",
            f"/v1/tenants/{DEMO}/sandbox/send",
            {"from": CUSTOMER, "text": text},
            timeout=60,
        )
        if not answer.get("reply"):
            from wactl.errors import ConflictError

            reason = answer.get("reason") or answer["status"]
            print_hanging(app.console, [("  customer>", text), ("  bot>", f"(no reply: {reason})")])
            out.write("\n")
            raise ConflictError(
                f"the demo bot did not answer ({reason})",
                hint=f"if it is paused in this chat, `wactl chats resume {DEMO} {CUSTOMER}` "
                "hands it back; `wactl tenant logs demo --worker` says more",
            )
        # The reply is data: the template's words with the demo tenant's texts, which
        # an operator may have changed (`tenant config apply`). It wraps under itself.
        print_hanging(app.console, [("  customer>", text), ("  bot>", str(answer["reply"]))])
        out.write("\n")
    # Descriptions line up after the commands, in a column that leaves them room before
    # the terminal's edge; a longer command has its own line.
    longest = max(len(what) for _, what in NEXT_STEPS)
    width = max(min(44, app.console.width - 5 - longest), 16)
    out.write("Next:\n")
    for command, what in NEXT_STEPS:
        if len(command) > width:
            out.write(f"  {command}\n  {'':<{width}}   {what}\n")
        else:
            out.write(f"  {command:<{width}}   {what}\n")
