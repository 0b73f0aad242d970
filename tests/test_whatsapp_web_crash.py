"""The crash test on the whatsapp-web engine: exactly one reply per message across kill -9.

A real daemon runs a real worker, whose Chromium runs the stand-in for WhatsApp Web and
wa-js (tests/wa_standin). 500 customer messages in 20 chats, a share of the customers
writing from ``@lid`` chats (some of them without WhatsApp sharing their number), while
the worker is killed with SIGKILL at random moments: alone (its browser then closes by
itself) or with its whole process group (the browser dies mid-write). The stand-in's
server delivers again what the device never acknowledged; the worker catches up on what
the device acknowledged but it never recorded, and asks WhatsApp Web (by the id stored
before each send) whether an interrupted reply went out.

Then, from the database and from what "WhatsApp's servers" received: every message is
recorded once and answered once, the server got exactly one reply per message and none
twice, each chat's replies in the order of its messages, and no chat was paused by the
bot's own replies being taken for the owner typing.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI
from tests.daemon_support import Daemon
from tests.support import poll_for, run_crash_traffic
from tests.test_pipeline import NO_LIMITS, MessageLogReader, message_log  # noqa: F401
from tests.test_whatsapp_web import (
    OWNER_PHONE,
    WAIT,
    create_and_start,
    current_qr,
    daemon_ps_until,
    link_saved,
    standin,  # noqa: F401 - a fixture
    web_daemon,  # noqa: F401 - a fixture
)
from tests.wa_standin import LID, LID_HIDDEN, PN, StandIn

pytestmark = pytest.mark.timeout(600)

SLUG = "shop"
CHATS = 20
MESSAGES = 500
SENDERS = 10
TEXTS = ["hi", "1", "2", "3", "hours", "where", "thanks", "menu"]


@pytest.fixture
def daemon_env() -> dict[str, str]:
    """No rate limits (the test writes fast), and no quarantine (it crashes often)."""
    return {**NO_LIMITS, "WACTL_DAEMON_MAX_CRASHES": "100"}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_every_message_gets_exactly_one_reply_across_kill_9(
    cli: CLI,
    web_daemon: Daemon,  # noqa: F811
    standin: StandIn,  # noqa: F811
    message_log: MessageLogReader,  # noqa: F811
    isolated_env: Path,
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    kill_points = sorted(rng.sample(range(40, MESSAGES - 40), rng.randint(3, 5)))
    whole_group = [rng.random() < 0.5 for _ in kill_points]
    where = f"(seed {seed}, kills after {kill_points} messages, whole group {whole_group})"
    numbers = [f"+3460000{n:04d}" for n in range(CHATS)]
    # A share of the customers write from @lid chats, some without their number.
    for n, number in enumerate(numbers):
        standin.addressing[number] = (PN, LID, LID, LID_HIDDEN)[n % 4]
    plan = [(numbers[n % CHATS], TEXTS[n % len(TEXTS)]) for n in range(MESSAGES)]
    lanes = [plan[lane::SENDERS] for lane in range(SENDERS)]

    create_and_start(cli, SLUG)
    session = standin.scan(current_qr(web_daemon, SLUG), me=OWNER_PHONE)
    daemon_ps_until(web_daemon, SLUG, lambda row: row["session_state"] == "CONNECTED")
    # Kills must not lose the device's id before Chromium has written it to the profile
    # (a few seconds after the page set it; with real WhatsApp Web too).
    profile = isolated_env / ".local/share/wactl/profiles" / SLUG
    poll_for(lambda: link_saved(profile), timeout=WAIT)

    sent_ids: dict[str, str] = {}  # inbound message id -> chat
    lock = threading.Lock()
    stop = threading.Event()
    delivered = 0
    killed: list[int] = []

    def deliver(lane: list[tuple[str, str]]) -> None:
        nonlocal delivered
        for number, text in lane:
            if stop.is_set():
                return
            # Waits until the device stored it (a dead page gets it again at its start).
            message_id = standin.customer_writes(session, number, text, wait=False)

            def stored(message_id: str = message_id) -> bool:
                return message_id not in session.undelivered

            standin.wait(stored, timeout=WAIT)
            with lock:
                sent_ids[message_id] = number
                delivered += 1

    def kill_at_points() -> None:
        for point, group in zip(kill_points, whole_group, strict=True):

            def reached(point: int = point) -> bool:
                return stop.is_set() or delivered >= point

            poll_for(reached, timeout=4 * WAIT)
            if stop.is_set():
                return
            pid = web_daemon.ps()[SLUG]["pid"]
            if group:
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)

            def replaced(row: dict[str, Any], old: int = pid) -> bool:
                return row["pid"] not in (None, old) and row["session_state"] == "CONNECTED"

            daemon_ps_until(web_daemon, SLUG, replaced)

    run_crash_traffic(deliver, lanes, kill_at_points, stop)

    def settled() -> bool:
        rows = message_log.rows(SLUG)
        inbound = [r for r in rows if r.direction == "IN"]
        return len(inbound) == MESSAGES and not [r for r in rows if r.state in ("NEW", "PENDING")]

    poll_for(settled, timeout=4 * WAIT)
    assert len(killed) == len(kill_points), where

    inbound = message_log.inbound(SLUG)
    assert sorted(r.wa_id for r in inbound) == sorted(sent_ids), where
    unanswered = [(r.wa_id, r.state) for r in inbound if r.state != "ANSWERED"]
    assert not unanswered, f"{where} not answered: {unanswered}"
    replies = message_log.replies(SLUG)
    per_message = collections.Counter(r.reply_to for r in replies)
    assert all(per_message[r.id] == 1 for r in inbound), where
    assert len(replies) == len(inbound) and all(r.state == "SENT" for r in replies), where
    # What WhatsApp's servers got: one message per reply, no id twice, no other.
    with standin.changed:
        server = [dict(m) for m in session.sent]
    assert len({m["id"] for m in server}) == len(server) == MESSAGES, where
    assert {m["id"] for m in server} == {r.wa_id for r in replies}, where
    # Each chat's replies reached the server in the order of its messages.
    reply_to = {r.wa_id: r.reply_to for r in replies}
    for chat in {r.chat for r in inbound}:
        asked = [r.id for r in inbound if r.chat == chat]
        ids = {r.wa_id for r in replies if r.chat == chat}
        answered = [reply_to[m["id"]] for m in server if m["id"] in ids]
        assert answered == asked, f"{where} chat {chat} answered out of order"
    # One identity per customer: the number where WhatsApp shares it, else the LID.
    expected_chats = {
        number if standin.addressing[number] != LID_HIDDEN else standin.lid_of(number)
        for number in numbers
    }
    assert {r.chat for r in inbound} == expected_chats, where
    # The bot's own replies were never taken for the owner typing.
    assert not [r for r in message_log.rows(SLUG) if r.kind == "owner"], where
    assert all(message_log.pause(chat, SLUG) is None for chat in expected_chats), where
