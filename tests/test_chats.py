"""`wactl chats`: where the bot is paused, and handing chats over (issue 13).

A customer who asks for a person, or a business that answers by hand, pauses the bot in
that chat; operators list such chats and resume or pause one (audited), and the
business hands a chat back from its phone with `pipeline.resume_keyword`. Real daemon,
real sandbox worker, both databases.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import CLI
from tests.daemon_support import Daemon, daemon_for_cli
from tests.test_pipeline import NO_LIMITS, SLUG, chat_number, start_linked

CUSTOMER = chat_number(7)


def send(daemon: Daemon, text: str, *, from_me: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"from": CUSTOMER, "text": text}
    if from_me:
        body["from_me"] = True
    answer: dict[str, Any] = daemon.client.request(
        "POST", f"/v1/tenants/{SLUG}/sandbox/send", body, timeout=60
    )
    return answer


def paused(cli: CLI) -> list[dict[str, Any]]:
    result = cli("chats", "list", SLUG, "--paused", "--json")
    assert result.code == 0, result.err
    rows: list[dict[str, Any]] = json.loads(result.out)
    return rows


@pytest.fixture
def linked(cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    with daemon_for_cli(monkeypatch, NO_LIMITS) as daemon:
        start_linked(cli, daemon, SLUG)
        yield daemon


def test_operators_see_and_end_pauses(cli: CLI, linked: Daemon) -> None:
    assert send(linked, "hi")["status"] == "replied"
    assert send(linked, "I want to talk to a person")["kind"] == "handoff"
    (row,) = paused(cli)
    assert (row["chat"], row["paused"], row["pause_reason"]) == (CUSTOMER, True, "handoff")
    assert row["messages"] == 4
    assert send(linked, "hello?")["reason"] == "paused"
    shown = cli("chats", "list", SLUG)
    assert shown.code == 0 and CUSTOMER in shown.out and "asked for a person" in shown.out

    result = cli("chats", "resume", SLUG, CUSTOMER.replace("+1", "+1 "))
    assert result.code == 0, result.err
    assert result.err == f"{SLUG}: {CUSTOMER} is the bot's again; it answers the next message\n"
    assert paused(cli) == []
    assert send(linked, "hours")["status"] == "replied"

    result = cli("chats", "pause", SLUG, CUSTOMER, "--for", "90m")
    assert result.code == 0, result.err
    assert result.err.startswith(f"{SLUG}: the bot is quiet in {CUSTOMER} until ")
    assert [r["pause_reason"] for r in paused(cli)] == ["operator"]
    assert send(linked, "menu")["reason"] == "paused"

    events = json.loads(cli("audit", "--json").out)
    chat_events = [
        (e["event_type"], e["payload"]["chat"])
        for e in events
        if e["event_type"].startswith("chat.")
    ]
    assert chat_events == [("chat.resumed", CUSTOMER), ("chat.paused", CUSTOMER)]
    assert all(e["actor"].startswith("os:") for e in events if e["event_type"].startswith("chat."))


def test_the_business_hands_a_chat_back_from_its_phone(cli: CLI, linked: Daemon) -> None:
    assert send(linked, "hi")["status"] == "replied"
    assert send(linked, "I'll call you in a minute", from_me=True)["reason"] == "owner"
    assert [r["pause_reason"] for r in paused(cli)] == ["owner"]
    assert send(linked, "ok")["reason"] == "paused"
    # The keyword, any case, alone or before more words.
    assert send(linked, "#BOT thanks, the bot goes on", from_me=True)["reason"] == (
        "owner resumed the bot"
    )
    assert paused(cli) == []
    assert send(linked, "hours")["status"] == "replied"
    # "#bots" is not the keyword: it is the owner typing, which pauses.
    assert send(linked, "#bots are great", from_me=True)["reason"] == "owner"
    assert len(paused(cli)) == 1


def test_a_stopped_tenant_is_resumed_in_the_database(cli: CLI, linked: Daemon) -> None:
    assert send(linked, "a person please")["kind"] == "handoff"
    assert cli("tenant", "stop", SLUG).code == 0
    assert cli("chats", "resume", SLUG, CUSTOMER).code == 0
    assert paused(cli) == []
    assert cli("tenant", "start", SLUG).code == 0
    assert send(linked, "hours")["status"] == "replied"


def test_bad_chats_input(cli: CLI, linked: Daemon) -> None:
    cases = {
        ("chats", "pause", SLUG, "bob"): (
            "error: CHAT: 'bob' is neither a phone number in international form nor a LID; "
            "write + and the country code, e.g. +15551234567, or the NNN@lid the log shows\n"
        ),
        ("chats", "pause", SLUG, CUSTOMER, "--for", "0m"): (
            "error: --for: '0m' is out of range (above 0, at most 366d0h); use e.g. 30m, "
            "2h, 1d or 2w\n"
        ),
        ("chats", "pause", SLUG, CUSTOMER, "--for", "400d"): (
            "error: --for: '400d' is out of range (above 0, at most 366d0h); use e.g. 30m, "
            "2h, 1d or 2w\n"
        ),
        ("chats", "pause", SLUG, CUSTOMER, "--for", "soon"): (
            "error: --for: 'soon' is not a duration; use e.g. 30m, 2h, 1d or 2w\n"
        ),
        ("chats", "list", "../x"): (
            "error: slug: '../x' is not a valid slug; use 1-40 lowercase letters, digits "
            "and single hyphens, starting and ending with a letter or digit (e.g. "
            "'casa-pepe')\n"
        ),
    }
    for args, err in cases.items():
        result = cli(*args)
        assert (result.code, result.err) == (2, err), args
    unknown = cli("chats", "resume", "nobody", CUSTOMER)
    assert unknown.code == 5 and unknown.err.startswith("error: no tenant 'nobody'")
    assert paused(cli) == []
