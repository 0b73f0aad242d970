"""What reaches the operator's terminal: text from outside wactl shown as text, a
committed change never turned into a failure by its display, and every list and
detail readable at 80 columns.

Hostile values are written straight into the database (and log files), where input
validation would refuse them: rows written before it existed, message texts, OIDC
names, log lines hold anything. NUL only on SQLite: PostgreSQL text cannot hold it.
The TUI's side is in tests/test_tui.py.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from rich.cells import cell_len

from tests.conftest import CLI
from tests.daemon_support import Daemon
from tests.support import Result, db_session, poll_for, run_wactl
from wactl.display import escape_serialised, json_text, printable

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

#: Characters that must never reach the terminal raw: C0 but the line break, DEL, C1,
#: bidi overrides and isolates.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")

#: Each hostile piece, and how it must show.
PIECES = {
    "[/bold] x": "[/bold] x",  # a closing tag with no opening one: Rich's MarkupError
    "[link=https://evil.test/pay]Casa Pepe[/link]": "[link=https://evil.test/pay]Casa Pepe[/link]",
    "[bold red": "[bold red",  # unbalanced
    ":thumbs_up:": ":thumbs_up:",  # an emoji code
    "\x1b]0;pwned\x07": "\\x1b]0;pwned\\x07",  # OSC: retitles the window
    "\x1b]8;;https://evil.test\x07pay\x1b]8;;\x07": "\\x1b]8;;https://evil.test\\x07pay",  # OSC 8
    "\x1b[2J\x1b[H": "\\x1b[2J\\x1b[H",  # CSI: clears the screen
    "\x9b31m": "\\x9b31m",  # the one-byte CSI (C1)
    "\u202etxt.exe": "\\u202etxt.exe",  # a bidi override
    "bell\x07\r": "bell\\x07\\x0d",
}


def hostile(backend: str) -> str:
    text = " ".join(PIECES)
    return text + " nul\x00" if backend == "sqlite" else text


def shown(backend: str) -> list[str]:
    expected = list(PIECES.values())
    return [*expected, "nul\\x00"] if backend == "sqlite" else expected


def assert_text_only(output: str, expected: list[str]) -> None:
    """Nothing in ``output`` drives a terminal, and each hostile piece shows as text
    (lines may wrap between words: compared with runs of spaces made one)."""
    found = RAW.search(output)
    assert found is None, f"raw {found.group()!r} in {output!r}"
    flat = " ".join(output.split())
    for piece in expected:
        assert " ".join(piece.split()) in flat, (piece, output)


MESSAGE_AT = dt.datetime(2026, 11, 2, 12, 30, tzinfo=dt.UTC)


def add_rows(
    session: Session,
    slug: str,
    *,
    business_name: str,
    number: str,
    notes: str,
    actor: str,
    messages: list[tuple[str, str]],
) -> int:
    """A setup request, an audit event with ``business_name`` and ``notes`` in its
    payload, and ``messages`` ((text, chat) pairs, alternately in and out) for the
    tenant ``slug``, written as they are; the request's id."""
    from wactl.db.models import MessageLog, PortalEventLog, SetupRequest, Tenant
    from wactl.enums import Direction, Language, MessageState, TemplateType

    tenant = session.query(Tenant).filter_by(slug=slug).one()
    request = SetupRequest(
        tenant_id=tenant.id,
        business_name=business_name,
        template_type=TemplateType.RESTAURANT,
        language=Language.ES,
        whatsapp_number=number,
        hours_json={"weekly": {"mon": ["09:00-14:00", "17:00-21:00"]}},
        timezone="America/Argentina/ComodRivadavia",
        notes=notes,
    )
    session.add(request)
    payload = {"business_name": business_name, "notes": notes}
    session.add(
        PortalEventLog(
            tenant_id=tenant.id,
            tenant_slug=slug,
            actor=actor,
            event_type="portal.request",
            payload_json=payload,
        )
    )
    for index, (text, chat) in enumerate(messages):
        inbound = index % 2 == 0
        session.add(
            MessageLog(
                tenant_id=tenant.id,
                direction=Direction.IN if inbound else Direction.OUT,
                from_number="+34600111222" if inbound else "+34910000000",
                to_number="+34910000000" if inbound else "+34600111222",
                message_text=text,
                wa_message_id=f"{slug}-{index}",
                chat=chat,
                state=MessageState.ANSWERED if inbound else MessageState.SENT,
                kind=None if inbound else "greeting",
                created_at=MESSAGE_AT + dt.timedelta(minutes=index),
            )
        )
    session.flush()
    return request.id


@dataclass(frozen=True)
class Planted:
    name: str
    expected: list[str]
    request_id: int


@pytest.fixture
def planted(cli: CLI, db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch) -> Planted:
    """A tenant whose name, business name, setup request, audit event, messages and
    chat id are hostile; wide columns, so that checks need not follow wrapping."""
    from wactl.db.models import Tenant

    monkeypatch.setenv("COLUMNS", "1000")
    assert cli("tenant", "create", "casa-pepe", "--name", "Casa Pepe").code == 0
    name = hostile(backend)
    with db_session(db_url) as session:
        tenant = session.query(Tenant).filter_by(slug="casa-pepe").one()
        tenant.name = name
        assert tenant.config is not None
        tenant.config.business_name = name
        request_id = add_rows(
            session,
            "casa-pepe",
            business_name=name,
            number="+34600\x1b[2J",
            notes=f"first line\n{name}",
            actor=f"portal:{name}",
            messages=[(f"IN: {name}", "+3460\x1b[2J"), (f"OUT: {name}", "+3460\x1b[2J")],
        )
    return Planted(name, shown(backend), request_id)


# --- 1. untrusted text is shown as text ----------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("tenant", "list"),
        ("tenant", "show", "casa-pepe"),
        ("requests", "list"),
        ("requests", "show", "{request}"),
        ("audit",),
        ("audit", "--tenant", "casa-pepe"),
        ("tenant", "logs", "casa-pepe"),
    ],
)
def test_lists_and_details_show_stored_text_as_text(
    cli: CLI, planted: Planted, command: tuple[str, ...]
) -> None:
    """Before: `[/bold]` made list and show exit 1 with MarkupError, `[link=...]`
    became a clickable link, and `tenant logs` printed ESC sequences raw."""
    args = [arg.replace("{request}", str(planted.request_id)) for arg in command]
    result = cli(*args)
    assert result.code == 0, result.err
    assert_text_only(result.out, planted.expected)
    assert_text_only(result.err, [])


@pytest.mark.parametrize(
    ("command", "path"),
    [
        (("tenant", "list", "--json"), [0, "name"]),
        (("tenant", "show", "casa-pepe", "--json"), ["business_name"]),
        (("requests", "show", "{request}", "--json"), ["notes"]),
        (("audit", "--json"), [-1, "actor"]),
        (("tenant", "logs", "casa-pepe", "--json"), [0, "text"]),
    ],
)
def test_json_keeps_the_value_and_escapes_what_would_drive_a_terminal(
    cli: CLI, planted: Planted, command: tuple[str, ...], path: list[str | int]
) -> None:
    """`--json` is the same JSON value, character for character; only the characters
    JSON writers leave raw (C1, bidi overrides) are written as \\u escapes."""
    args = [arg.replace("{request}", str(planted.request_id)) for arg in command]
    result = cli(*args)
    assert result.code == 0, result.err
    assert RAW.search(result.out) is None
    value = json.loads(result.out)
    for key in path:
        value = value[key]
    assert planted.name in value
    assert "\\u009b31m" in result.out and "\\u202etxt.exe" in result.out


def test_config_export_and_diff_stay_toml_of_the_same_values(
    cli: CLI, planted: Planted, tmp_path: Path
) -> None:
    exported = cli("tenant", "config", "export", "casa-pepe")
    assert exported.code == 0, exported.err
    assert RAW.search(exported.out) is None
    import tomllib

    document = tomllib.loads(exported.out)
    assert document["name"] == planted.name
    edited = tmp_path / "casa.toml"
    edited.write_text(exported.out.replace("[/bold] x", "Casa Pepe"), encoding="utf-8")
    dry = cli("tenant", "config", "apply", "casa-pepe", str(edited), "--dry-run")
    assert RAW.search(dry.out + dry.err) is None, dry


def test_errors_that_quote_input_show_it_as_text(cli: CLI, db_url: str) -> None:
    """One-line errors quote what was typed: ESC and markup there are data too."""
    result = cli("tenant", "show", "\x1b[2Jbad[/x]")
    assert result.code == 2
    assert result.err.startswith("error: slug: '\\x1b[2Jbad[/x]' is not a valid slug; ")
    result = cli("tenant", "create", "\x1b]0;x\x07", "--name", "Shop")
    assert result == Result(
        2,
        "",
        "error: slug: '\\x1b]0;x\\x07' is not a valid slug; use 1-40 lowercase letters, "
        "digits and single hyphens, starting and ending with a letter or digit "
        "(e.g. 'casa-pepe')\n",
    )
    usage = cli("tenant", "create", "shop", "--name", "Shop", "--template", "\x9b2J")
    assert usage.code == 2
    assert RAW.search(usage.err) is None and "\\x9b2J" in usage.err


def test_a_delete_prompt_shows_the_name_as_text(cli: CLI, planted: Planted) -> None:
    result = cli("tenant", "delete", "casa-pepe", input="n\n")
    assert result.code == 8
    assert_text_only(result.err, planted.expected)


def test_log_files_are_shown_as_text(cli: CLI, planted: Planted) -> None:
    """A worker's own log holds what customers and WhatsApp sent it."""
    from wactl.config import load_config
    from wactl.ipc.protocol import daemon_log_path, worker_log_path

    config = load_config()
    for path in (worker_log_path(config.log_dir, "casa-pepe"), daemon_log_path(config.log_dir)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"12:00 INFO reply to {planted.name}\nnext line\n", encoding="utf-8")
    for command in (("tenant", "logs", "casa-pepe", "--worker"), ("daemon", "logs")):
        result = cli(*command)
        assert result.code == 0, result.err
        assert_text_only(result.out, planted.expected)
        assert result.out.endswith("\nnext line\n")


def test_config_show_escapes_what_toml_leaves_raw(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WACTL_BROWSER_DEVICE_NAME", "")
    monkeypatch.setenv("WACTL_PORTAL_PUBLIC_BASE_URL", "https://portal.example/\u202egnp.exe")
    result = cli("config", "show")
    if result.code == 0:
        assert RAW.search(result.out) is None
        assert '"https://portal.example/\\u202egnp.exe"' in result.out
    else:  # the config loader refused it: then the error line must be text
        assert RAW.search(result.err) is None


def test_sandbox_replies_with_owner_texts_are_shown_as_text(
    cli: CLI, daemon: Daemon, db_url: str, backend: str
) -> None:
    """The bot's reply is the template with the owner's texts and business facts in
    it: `sandbox send` and `sandbox chat` print it as data."""
    from wactl.db.models import Tenant

    for step in (
        ("tenant", "create", "shop", "--name", "Shop", "--template", "restaurant"),
        ("tenant", "start", "shop"),
    ):
        assert cli(*step).code == 0
    poll_for(lambda: bool(daemon.ps()["shop"]["has_qr"]), timeout=60)
    assert cli("sandbox", "scan", "shop").code == 0
    greeting = "Hola [/bold] \x1b]0;pwned\x07 \x1b[2J\u202e\nsecond line"
    with db_session(db_url) as session:
        tenant = session.query(Tenant).filter_by(slug="shop").one()
        assert tenant.config is not None
        tenant.config.texts_json = {"greeting": greeting}
    assert cli("tenant", "restart", "shop").code == 0
    poll_for(lambda: daemon.ps()["shop"]["state"] == "RUNNING", timeout=60)
    expected = ["Hola [/bold] \\x1b]0;pwned\\x07 \\x1b[2J\\u202e", "second line"]
    sent = cli("sandbox", "send", "shop", "hi")
    assert sent.code == 0, sent.err
    assert_text_only(sent.out, expected)
    assert "\\x1b[2J\\u202e\nsecond line" in sent.out  # the reply's own line break stays
    chat = cli("sandbox", "chat", "shop", "--from", "+15559876543", input="hello\n")
    assert chat.code == 0, chat.err
    assert_text_only(chat.out, expected)


# --- 2. a committed change is never failed by its display ---------------------------------


def _wactl(*args: str, stdout: int | None = None, stderr: int | None = None) -> int:
    return run_wactl(*args, stdout=stdout, stderr=stderr).returncode


@pytest.fixture
def full_disk() -> Iterator[int]:
    """A file descriptor every write to fails with ENOSPC (/dev/full): the output of a
    command on a full disk, or a terminal gone."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full on this system")
    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        yield fd
    finally:
        os.close(fd)


def test_a_change_whose_result_cannot_be_written_still_succeeds(
    cli: CLI, db_url: str, full_disk: int, tmp_path: Path
) -> None:
    """Before: `tenant create --json > /dev/full` created the tenant and exited 1
    ("unexpected OSError"), and so did `tenant edit 2> /dev/full` after its change."""
    from wactl.db.models import Tenant

    errors = tmp_path / "stderr"
    with errors.open("w") as err:
        code = _wactl(
            "tenant",
            "create",
            "shop",
            "--name",
            "Shop",
            "--json",
            stdout=full_disk,
            stderr=err.fileno(),
        )
    assert code == 0
    assert errors.read_text() == (
        "warning: the change was committed, but showing the result failed: "
        "OSError: [Errno 28] No space left on device\n"
    )
    assert _wactl("tenant", "edit", "shop", "--name", "Shop Two", stderr=full_disk) == 0
    with db_session(db_url) as session:
        assert session.query(Tenant).filter_by(slug="shop").one().name == "Shop Two"
    # Nothing committed: a result that cannot be written is the command's failure.
    assert _wactl("tenant", "list", "--json", stdout=full_disk, stderr=subprocess.DEVNULL) == 1


def test_an_edit_with_markup_in_the_name_prints_it_and_succeeds(cli: CLI, db_url: str) -> None:
    assert cli("tenant", "create", "shop", "--name", "Shop").code == 0
    result = cli("tenant", "edit", "shop", "--name", "[/x] Shop [link=https://evil.test]x")
    assert result.code == 0
    assert result.err == (
        "shop: name: Shop -> [/x] Shop [link=https://evil.test]x\n"
        "shop: business_name: Shop -> [/x] Shop [link=https://evil.test]x\n"
    )


# --- 3. every list and detail reads well at 80 columns ------------------------------------

WIDTH = 80
LONG_SLUG = "casa-pepe-restaurante-del-mar-y-la-sierr"  # 40 characters, the longest
NAME = "Restaurante Casa Pepe del Mar y la Sierra, cocina tradicional desde 1952"
NOTES = "Please set it up before the summer; " * 3 + "a" * 100
ACTOR = "portal:maria.fernandez-de-la-vega@restaurante-casa-pepe.example"
REPLY = "¡Hola! Gracias por escribir a Casa Pepe. Responde con un número del menú: " * 2
LONG_ERROR = (
    "cannot open https://web.whatsapp.com/: net::ERR_NAME_NOT_RESOLVED (the host has no "
    "route to WhatsApp; check DNS and the proxy settings)"
)


def assert_fits(output: str, width: int = WIDTH) -> list[str]:
    lines = output.splitlines()
    wide = [line for line in lines if cell_len(line) > width]
    assert not wide, "\n".join(wide)
    return lines


def assert_no_trailing_spaces(lines: list[str]) -> None:
    """Rich padded every cell of a table's last column to its width: copied text ended
    in runs of spaces."""
    assert all(line == line.rstrip() for line in lines), "trailing spaces"


def column_text(lines: list[str], header: str, first: str) -> str:
    """What a wrapping column shows for the row that starts with ``first``: its lines
    from that row to the next one, joined."""
    start = lines[0].index(header)
    end = start + len(lines[0][start:].split("  ")[0])
    following = lines[0][end:].lstrip()
    end = lines[0].index(following, end) if following else 10**6
    top = next(i for i, line in enumerate(lines) if line.startswith(first + " "))
    parts = [lines[top][start:end].strip()]
    for line in lines[top + 1 :]:
        if line[:start].strip():
            break
        parts.append(line[start:end].strip())
    return " ".join(parts)


def row_of(lines: list[str], first: str) -> list[str]:
    """The cells of the line that starts with ``first`` (cells: runs of 2+ spaces)."""
    found = [line for line in lines if line.strip().split("  ")[0] == first]
    assert found, (first, lines)
    return re.split(r"\s{2,}", found[0].strip())


def test_ps_at_80_columns_keeps_slug_state_and_pid_whole_and_shows_the_error() -> None:
    """Before: `casa-pe…`, `RUNNI…`, a cut PID, and no LAST ERROR at all."""
    from rich.console import Console

    from tests.test_tui import RECORDED
    from wactl.cli.console import DataConsole
    from wactl.cli.proc_cmd import print_ps

    rows = [dict(row) for row in RECORDED]
    rows[0]["slug"] = LONG_SLUG
    rows[1]["last_error"] = LONG_ERROR
    rows[2]["last_error"] = "quarantined:\n5 crashes \x1b[2J"
    for width in (80, 100, 200):
        console: Console = DataConsole(width=width, record=True, file=io.StringIO())
        print_ps(console, rows)
        lines = assert_fits(console.export_text(), width)
        assert row_of(lines, LONG_SLUG)[:3] == [LONG_SLUG, "RUNNING", "41234"]
        for row in rows:
            cells = row_of(lines, row["slug"])
            assert cells[:2] == [row["slug"], row["state"]]
            assert cells[2] == str(row["pid"] or "-")
        text = "\n".join(lines)
        assert "\\x1b[2J" in text and "\x1b" not in text
        if width == 200:
            assert "ENGINE" in lines[0] and LONG_ERROR in text
            continue
        # Under its row, cut with an ellipsis at the edge, never left out.
        under = lines[lines.index(next(line for line in lines if line.startswith("bodega"))) + 1]
        assert under.startswith("  last error: cannot open https://web.whatsapp.com/")
        assert under.endswith("…") and cell_len(under) == width
        assert "  last error: quarantined: 5 crashes \\x1b[2J" in lines


def test_ps_of_a_real_daemon_at_80_columns(
    cli: CLI, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    for slug in (LONG_SLUG, "alpha"):
        assert cli("tenant", "create", slug, "--name", slug).code == 0
    assert cli("tenant", "start", LONG_SLUG).code == 0
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    result = cli("ps")
    assert result.code == 0, result.err
    lines = assert_fits(result.out)
    pid = daemon.ps()[LONG_SLUG]["pid"]
    assert row_of(lines, LONG_SLUG)[:3] == [LONG_SLUG, "RUNNING", str(pid)]
    assert lines[0].split()[:5] == ["SLUG", "STATE", "PID", "UPTIME", "RST"]


@pytest.fixture
def narrow(cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch) -> CLI:
    """Tenants, a setup request, an audit event and messages with long values;
    COLUMNS=80 and TZ=UTC."""
    for slug, name, phone in (
        (LONG_SLUG, NAME, "+34600123456"),
        ("bodega", "Bodega Luis", "+34600654321"),
    ):
        result = cli("tenant", "create", slug, "--name", name, "--phone", phone)
        assert result.code == 0, result.err
    with db_session(db_url) as session:
        add_rows(
            session,
            LONG_SLUG,
            business_name=NAME,
            number="+34600123456",
            notes=NOTES,
            actor=ACTOR,
            messages=[("hola", "+34600111222"), (REPLY, "+34600111222")],
        )
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    return cli


def test_tenant_list_and_show_at_80_columns(narrow: CLI) -> None:
    listed = narrow("tenant", "list")
    lines = assert_fits(listed.out)
    assert lines[0].split() == ["SLUG", "NAME", "STATUS", "ENGINE"]  # the rest dropped
    assert row_of(lines, LONG_SLUG)[0] == LONG_SLUG
    assert column_text(lines, "NAME", LONG_SLUG) == (
        "Restaurante Casa Pepe del Mar y la Sierra, cocina tradicional desde 1952"
    )
    shown = narrow("tenant", "show", LONG_SLUG)
    lines = assert_fits(shown.out)
    assert lines[0].split() == ["slug", LONG_SLUG]
    assert lines[1] == "name           " + NAME.removesuffix(" desde 1952")
    assert lines[2] == " " * 15 + "desde 1952"  # wrapped under the value, not at column 0
    assert_no_trailing_spaces(lines + assert_fits(listed.out))


def test_requests_at_80_columns(narrow: CLI) -> None:
    lines = assert_fits(narrow("requests", "list").out)
    assert row_of(lines, "1")[:3] == ["1", LONG_SLUG, "PENDING"]
    lines = assert_fits(narrow("requests", "show", "1").out)
    notes = [line for line in lines if line.startswith("notes")]
    assert notes and notes[0].startswith("notes            Please set it up before the summer;")


def test_audit_details_fold_on_lines_of_their_own_at_80_columns(narrow: CLI) -> None:
    """Before: DETAILS wrapped one character per line beside four fixed columns. Now
    the actor and the details go under the event when they do not fit beside it."""
    result = narrow("audit", "--tenant", LONG_SLUG)
    lines = assert_fits(result.out)
    assert lines[0].split() == ["TIME", "TENANT", "EVENT"]
    event = next(i for i, line in enumerate(lines) if "portal.request" in line)
    assert lines[event].split()[2:] == [LONG_SLUG, "portal.request"]
    assert lines[event + 1] == f"  actor: {ACTOR}"
    details = lines[event + 2 :]
    assert details[0].startswith('  details: {"business_name": "Restaurante Casa Pepe')
    assert all(line.startswith("    ") for line in details[1:])
    payload = {"business_name": NAME, "notes": NOTES}
    expected = "details: " + json.dumps(payload, separators=(", ", ": "))
    assert re.sub(r"\s", "", "".join(details)) == re.sub(r"\s", "", expected)
    assert len(details) <= len(expected) // 60 + 1  # lines of up to 76, not of 1
    wide = narrow("audit", "--json")
    assert json.loads(wide.out)[-1]["payload"]["notes"] == NOTES


def test_engine_status_and_doctor_at_80_columns(narrow: CLI) -> None:
    """Before: hashes and paths split beside their labels; doctor's lines wrapped to
    column 0."""
    from wactl import wajs

    status = narrow("engine", "status")
    lines = assert_fits(status.out)
    assert lines[1] == "pinned integrity"
    folded = "".join(line.strip() for line in lines[2:4])
    assert folded == wajs.WAJS_INTEGRITY
    doctor = narrow("doctor")
    lines = assert_fits(doctor.out)
    for line in lines:
        assert line.startswith(("ok  ", "warn", "FAIL", " " * 6)), line


def test_tenant_logs_wrap_under_the_text_at_80_columns(narrow: CLI) -> None:
    result = narrow("tenant", "logs", LONG_SLUG)
    lines = assert_fits(result.out)
    lead = "2026-11-02 12:31     +34600111222 -> "
    assert lines[0] == "2026-11-02 12:30     +34600111222 <- hola"
    assert lines[1].startswith(lead + "(greeting) ¡Hola! Gracias")
    assert all(line.startswith(" " * len(lead)) for line in lines[2:])
    assert " ".join(line.strip() for line in lines[1:]) == (
        lead.strip() + " (greeting) " + REPLY.strip()
    )


def test_the_qr_hint_fits_80_columns(
    cli: CLI, daemon: Daemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: one 102-character line."""
    assert cli("tenant", "create", LONG_SLUG, "--name", "Shop").code == 0
    assert cli("tenant", "start", LONG_SLUG).code == 0
    poll_for(lambda: bool(daemon.ps()[LONG_SLUG]["has_qr"]), timeout=60)
    monkeypatch.setenv("COLUMNS", str(WIDTH))
    result = cli("tenant", "qr", LONG_SLUG)
    assert result.code == 0, result.err
    assert assert_fits(result.err) == [
        f"{LONG_SLUG}: scan this with WhatsApp on the",
        "business's phone:",
        "Settings > Linked devices > Link a device",
    ]
    monkeypatch.setenv("COLUMNS", "120")
    assert cli("tenant", "qr", LONG_SLUG).err.splitlines() == [
        f"{LONG_SLUG}: scan this with WhatsApp on the business's phone:",
        "Settings > Linked devices > Link a device",
    ]


# --- the helpers ---------------------------------------------------------------------------


def test_printable_shows_every_control_and_bidi_override() -> None:
    controls = "".join(chr(c) for c in (*range(0x20), *range(0x7F, 0xA0)))
    overrides = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
    one_line = printable(controls + overrides)
    assert RAW.search(one_line) is None and "\n" not in one_line
    assert one_line.startswith("\\x00\\x01") and one_line.endswith("\\u2068\\u2069")
    assert printable("a\nb\x1b", multiline=True) == "a\nb\\x1b"
    assert printable("Clínica Sol ☕ 日本 עברית") == "Clínica Sol ☕ 日本 עברית"
    assert printable(None) == "None"


def test_serialised_text_escapes_only_what_its_writers_leave_raw() -> None:
    value = {"name": "a\x1b\x9b\u202eb\x7f ñ"}
    text = json_text(value)
    assert RAW.search(text) is None and json.loads(text) == value
    assert "ñ" in text  # UTF-8 stays UTF-8
    assert escape_serialised('name = "x\u2066y"') == 'name = "x\\u2066y"'


def test_chats_list_at_80_columns(narrow: CLI) -> None:
    result = narrow("chats", "list", LONG_SLUG)
    lines = assert_fits(result.out)
    assert lines[0].split()[:2] == ["CHAT", "MESSAGES"]
    assert row_of(lines, "+34600111222")[:2] == ["+34600111222", "2"]
    assert_no_trailing_spaces(lines)
