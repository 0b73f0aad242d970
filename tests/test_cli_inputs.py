"""What the CLI accepts: every number bounded, every slug checked before use, every
file read bounded and only from a regular file, every time zone a real one, and the
sandbox's errors naming the command to run.

Each class is checked from the command tree as well as by example, so that a new
option of the same kind is covered by these tests without being listed here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tests.conftest import CLI
from tests.daemon_support import Daemon
from tests.support import poll_for
from wactl.cli.app import command
from wactl.cli.context import MAX_ROW_ID, MAX_ROWS, MAX_WAIT_SECONDS
from wactl.display import printable
from wactl.errors import ExitCode

HUGE = "1" + "0" * 30  # 10**30: more than any database integer


def walk(group: click.Command, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """The path of every command in the tree."""
    if isinstance(group, click.Group):
        found = []
        for name, sub in group.commands.items():
            found.extend(walk(sub, (*path, name)))
        return found
    return [path]


def command_at(path: tuple[str, ...]) -> click.Command:
    found: click.Command = command()
    for name in path:
        assert isinstance(found, click.Group)
        found = found.commands[name]
    return found


def error_of(result_err: str) -> str:
    assert result_err.count("\n") == 1, f"expected exactly one stderr line: {result_err!r}"
    assert result_err.startswith("error: "), result_err
    return result_err.removeprefix("error: ").removesuffix("\n")


# --- numbers ------------------------------------------------------------------------------


def test_every_number_option_of_every_command_is_bounded() -> None:
    """No integer or float reaches a command without a range; floats also refuse NaN."""
    unbounded = []
    for path in walk(command()):
        for param in command_at(path).params:
            kind = param.type
            if not isinstance(kind, click.types.IntParamType | click.types.FloatParamType):
                continue
            if not isinstance(kind, click.IntRange | click.FloatRange):
                unbounded.append(f"{' '.join(path)} {param.name}")
            elif kind.min is None or kind.max is None:
                unbounded.append(f"{' '.join(path)} {param.name} (one end open)")
            elif isinstance(kind, click.FloatRange) and param.callback is None:
                unbounded.append(f"{' '.join(path)} {param.name} (NaN)")
    assert unbounded == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["requests", "approve", HUGE],
            f"Invalid value for 'ID': {HUGE} is not in the range 1<=x<={MAX_ROW_ID}; "
            "see `wactl requests approve --help`",
        ),
        (
            ["requests", "show", HUGE],
            f"Invalid value for 'ID': {HUGE} is not in the range 1<=x<={MAX_ROW_ID}; "
            "see `wactl requests show --help`",
        ),
        (
            ["requests", "reject", str(MAX_ROW_ID + 1), "--reason", "x"],
            f"Invalid value for 'ID': {MAX_ROW_ID + 1} is not in the range "
            f"1<=x<={MAX_ROW_ID}; see `wactl requests reject --help`",
        ),
        (
            ["requests", "show", "0"],
            f"Invalid value for 'ID': 0 is not in the range 1<=x<={MAX_ROW_ID}; "
            "see `wactl requests show --help`",
        ),
        (
            ["audit", "--limit", HUGE],
            f"Invalid value for '--limit': {HUGE} is not in the range 1<=x<={MAX_ROWS}; "
            "see `wactl audit --help`",
        ),
        (
            ["tenant", "logs", "casa-pepe", "--limit", HUGE],
            f"Invalid value for '--limit' / '-n': {HUGE} is not in the range "
            f"1<=x<={MAX_ROWS}; see `wactl tenant logs --help`",
        ),
        (
            ["tenant", "logs", "casa-pepe", "--worker", "-n", str(MAX_ROWS + 1)],
            f"Invalid value for '--limit' / '-n': {MAX_ROWS + 1} is not in the range "
            f"1<=x<={MAX_ROWS}; see `wactl tenant logs --help`",
        ),
        (
            ["daemon", "logs", "--lines", HUGE],
            f"Invalid value for '--lines' / '-n': {HUGE} is not in the range "
            f"0<=x<={MAX_ROWS}; see `wactl daemon logs --help`",
        ),
        (
            ["portal", "serve", "--port", "65536"],
            "Invalid value for '--port': 65536 is not in the range 0<=x<=65535; "
            "see `wactl portal serve --help`",
        ),
    ],
)
def test_huge_ids_and_counts_are_bad_input(
    cli: CLI, db_url: str, args: list[str], message: str
) -> None:
    """10**30 used to reach the database: OverflowError on SQLite, DataError with the
    SQL on PostgreSQL, exit 1. It is bad input, refused before any query."""
    result = cli(*args)
    assert (result.code, error_of(result.err), result.out) == (ExitCode.USAGE, message, "")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["tenant", "start", "x", "--timeout", "nan"], "nan is not a number"),
        (["tenant", "stop", "x", "--timeout", "NaN"], "nan is not a number"),
        (
            ["tenant", "restart", "x", "--timeout", "inf"],
            f"inf is not in the range 0<=x<={MAX_WAIT_SECONDS}",
        ),
        (
            ["tenant", "qr", "x", "--timeout", "1e30"],
            f"1e+30 is not in the range 0<=x<={MAX_WAIT_SECONDS}",
        ),
        (
            ["tenant", "qr", "x", "--timeout", "-1"],
            f"-1.0 is not in the range 0<=x<={MAX_WAIT_SECONDS}",
        ),
        (
            ["daemon", "stop", "--timeout", "0"],
            f"0.0 is not in the range 1<=x<={MAX_WAIT_SECONDS}",
        ),
        (["daemon", "stop", "--timeout", "-nan"], "nan is not a number"),
    ],
)
def test_waits_are_finite_and_bounded(cli: CLI, args: list[str], message: str) -> None:
    result = cli(*args)
    command_path = " ".join(args[:2])
    assert result.code == ExitCode.USAGE
    assert error_of(result.err) == (
        f"Invalid value for '--timeout': {message}; see `wactl {command_path} --help`"
    )


# --- slugs --------------------------------------------------------------------------------

#: Every command that takes a tenant's slug, with the rest of a valid command line
#: ("@" is where the slug goes). The test below keeps this list complete.
SLUG_COMMANDS: dict[tuple[str, ...], list[str]] = {
    ("tenant", "create"): ["@", "--name", "X"],
    ("tenant", "show"): ["@"],
    ("tenant", "edit"): ["@", "--language", "en"],
    ("tenant", "delete"): ["@", "--yes"],
    ("tenant", "config", "export"): ["@"],
    ("tenant", "config", "apply"): ["@", "-"],
    ("tenant", "start"): ["@"],
    ("tenant", "stop"): ["casa-pepe", "@"],
    ("tenant", "restart"): ["@"],
    ("tenant", "qr"): ["@"],
    ("tenant", "logout"): ["@"],
    ("tenant", "logs"): ["@", "--worker"],
    ("sandbox", "scan"): ["@"],
    ("sandbox", "send"): ["@", "hola"],
    ("sandbox", "chat"): ["@"],
    ("audit",): ["--tenant", "@"],
    ("logs", "prune"): ["--older-than", "90d", "--tenant", "@"],
    ("chats", "list"): ["@"],
    ("chats", "pause"): ["@", "+15551234567"],
    ("chats", "resume"): ["@", "+15551234567"],
}


def test_the_list_of_slug_commands_is_complete() -> None:
    takes_slug = set()
    for path in walk(command()):
        for param in command_at(path).params:
            if param.metavar in ("SLUG", "SLUG...") or (
                isinstance(param, click.Option) and "--tenant" in param.opts
            ):
                takes_slug.add(path)
    assert takes_slug == set(SLUG_COMMANDS)


@pytest.mark.parametrize("slug", ["../x", "a/../../b", "x\x1b[2J", "Casa", "", "-"])
@pytest.mark.parametrize("path", list(SLUG_COMMANDS), ids=" ".join)
def test_every_slug_is_checked_before_use(
    cli: CLI, isolated_env: Path, path: tuple[str, ...], slug: str
) -> None:
    """`tenant logs ../x --worker` used to read <log dir>/tenants/../x.log; now every
    command refuses a bad slug before touching a file, the daemon or the database
    (no database, no daemon and no file exist here, and none is created)."""
    args = [*path, *(slug if part == "@" else part for part in SLUG_COMMANDS[path])]
    if slug.startswith("-") and args[args.index(slug) - 1] != "--tenant":
        args.insert(args.index(slug), "--")
    result = cli(*args)
    assert result.code == ExitCode.USAGE, result.err
    shown = printable(slug)  # an escape in it is shown as text
    assert error_of(result.err).startswith(f"slug: '{shown}' is not a valid slug; use 1-40"), (
        result.err
    )
    assert not (isolated_env / ".local").exists()  # no data dir, no database file
    assert not (isolated_env / "run").exists()  # no daemon was started


# --- empty values and time zones ---------------------------------------------------------


@pytest.mark.parametrize("zone", ["", "localtime", "Factory", "posixrules", "posix/Europe/Madrid"])
def test_a_zone_that_is_not_an_iana_name_is_refused_everywhere(
    cli: CLI, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, zone: str
) -> None:
    expected = (
        f"'{zone}' is not a known time zone; "
        'use an IANA name such as "Europe/Madrid", "America/Sao_Paulo" or "UTC"'
    )
    # `--timezone ''` used to mean the default silently.
    result = cli("tenant", "create", "casa-pepe", "--name", "Casa Pepe", "--timezone", zone)
    assert (result.code, error_of(result.err)) == (ExitCode.USAGE, f"timezone: {expected}")
    assert cli("tenant", "create", "casa-pepe", "--name", "Casa Pepe").code == 0
    result = cli("tenant", "edit", "casa-pepe", "--timezone", zone)
    assert (result.code, error_of(result.err)) == (ExitCode.USAGE, f"timezone: {expected}")
    exported = cli("tenant", "config", "export", "casa-pepe").out
    document = tmp_path / "casa-pepe.toml"
    document.write_text(exported.replace('timezone = "UTC"', f'timezone = "{zone}"'))
    result = cli("tenant", "config", "apply", "casa-pepe", str(document))
    assert (result.code, error_of(result.err)) == (
        ExitCode.USAGE,
        f"{document}: timezone: {expected}",
    )
    monkeypatch.setenv("WACTL_DEFAULTS_TIMEZONE", zone)
    result = cli("tenant", "list")
    assert result.code == ExitCode.CONFIG
    assert error_of(result.err).endswith(
        f"defaults.timezone '{zone}' is not a known time zone; "
        'use an IANA name such as "Europe/Madrid" or "UTC"'
    )


def test_empty_option_values_are_refused_not_ignored(cli: CLI, db_url: str) -> None:
    assert cli("tenant", "create", "casa-pepe", "--name", "Casa Pepe").code == 0
    hint = "use e.g. 30m, 12h, 7d, 2w, 2026-11-01 or 2026-11-01T09:00"
    for args, message in (
        (["audit", "--since", ""], f"--since: '' is not a duration or a date; {hint}"),
        (
            ["tenant", "logs", "casa-pepe", "--since", ""],
            f"--since: '' is not a duration or a date; {hint}",
        ),
        (
            ["tenant", "logs", "casa-pepe", "--chat", ""],
            "--chat: '' is neither a phone number in international form nor a LID; write + "
            "and the country code, e.g. +15551234567, or the NNN@lid the log shows",
        ),
        (
            ["sandbox", "scan", "casa-pepe", "--qr", ""],
            "--qr: must not be empty; leave --qr out to scan the current QR",
        ),
    ):
        result = cli(*args)
        assert (result.code, error_of(result.err)) == (ExitCode.USAGE, message), args


# --- files and stdin ----------------------------------------------------------------------


def run_wactl(
    *args: str, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess[str]:
    """wactl in a process of its own: a read that blocks fails the test by its timeout
    instead of hanging it."""
    return subprocess.run(
        [sys.executable, "-m", "wactl", *args],
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_tenant_file_that_is_a_fifo_is_refused_at_once(
    cli: CLI, db_url: str, tmp_path: Path
) -> None:
    """It used to block forever (reading a FIFO waits for a writer)."""
    assert cli("tenant", "create", "casa-pepe", "--name", "Casa Pepe").code == 0
    fifo = tmp_path / "casa-pepe.toml"
    os.mkfifo(fifo)
    completed = run_wactl("tenant", "config", "apply", "casa-pepe", str(fifo))
    assert (completed.returncode, completed.stderr) == (
        ExitCode.USAGE,
        f"error: {fifo} is a named pipe, not a regular file\n",
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("/dev/zero", "/dev/zero is a character device, not a regular file"),
        ("DIR", "DIR is a directory, not a regular file"),
        ("BIG", "BIG is larger than 1 MiB, the limit"),
        ("-", "stdin is larger than 1 MiB, the limit"),
    ],
)
def test_tenant_file_must_be_a_regular_file_of_at_most_a_mebibyte(
    cli: CLI, db_url: str, tmp_path: Path, name: str, message: str
) -> None:
    assert cli("tenant", "create", "casa-pepe", "--name", "Casa Pepe").code == 0
    before = cli("tenant", "show", "casa-pepe", "--json").out
    exported = cli("tenant", "config", "export", "casa-pepe").out
    # A valid document padded with a comment past the limit: the size alone refuses it.
    big = exported + "#" * (1024 * 1024) + "\n"
    (tmp_path / "BIG").write_text(big)
    (tmp_path / "DIR").mkdir()
    path = name if name in ("-", "/dev/zero") else str(tmp_path / name)
    result = cli("tenant", "config", "apply", "casa-pepe", path, input=big)
    assert result.code == ExitCode.USAGE
    assert error_of(result.err) == message.replace(name, path) if name != "-" else message
    assert cli("tenant", "show", "casa-pepe", "--json").out == before


def test_tenant_file_of_exactly_the_limit_is_read(cli: CLI, db_url: str, tmp_path: Path) -> None:
    assert cli("tenant", "create", "casa-pepe", "--name", "Casa Pepe").code == 0
    exported = cli("tenant", "config", "export", "casa-pepe").out
    edited = exported.replace('language = "en"', 'language = "es"')
    padding = 1024 * 1024 - len(edited.encode()) - 1
    document = tmp_path / "casa-pepe.toml"
    document.write_text(edited + "#" * padding + "\n")
    assert document.stat().st_size == 1024 * 1024
    result = cli("tenant", "config", "apply", "casa-pepe", str(document))
    assert result.code == 0, result.err
    assert result.err.endswith("casa-pepe: configuration applied\n")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x = " + "9" * 5000 + "\n", "a number has too many digits"),
        ("x = " + "[" * 5000 + "]" * 5000 + "\n", "arrays or tables are nested too deeply"),
    ],
    ids=["digits", "nesting"],
)
def test_tenant_file_the_toml_parser_chokes_on_is_one_error(
    cli: CLI, db_url: str, tmp_path: Path, text: str, message: str
) -> None:
    assert cli("tenant", "create", "casa-pepe", "--name", "Casa Pepe").code == 0
    document = tmp_path / "casa-pepe.toml"
    document.write_text(text)
    result = cli("tenant", "config", "apply", "casa-pepe", str(document))
    assert (result.code, error_of(result.err)) == (
        ExitCode.USAGE,
        f"{document}: not valid TOML: {message}",
    )


def test_chat_line_longer_than_a_whatsapp_message_ends_the_chat(cli: CLI, daemon: Daemon) -> None:
    assert cli("tenant", "create", "casa-lola", "--name", "Casa Lola").code == 0
    assert cli("tenant", "start", "casa-lola").code == 0
    poll_for(lambda: daemon.ps()["casa-lola"]["has_qr"], timeout=10)
    assert cli("sandbox", "scan", "casa-lola").code == 0
    result = cli("sandbox", "chat", "casa-lola", input="hola\n" + "x" * 65537 + "\nmenu\n")
    assert result.code == ExitCode.USAGE
    assert result.out.startswith("bot> ") and result.out.count("bot> ") == 1
    assert result.err.endswith(
        "error: line 2 is longer than 65536 characters, WhatsApp's limit for a message\n"
    )
    result = cli("sandbox", "send", "casa-lola", "y" * 65537)
    assert (result.code, error_of(result.err)) == (
        ExitCode.USAGE,
        "the message is 65537 characters long; WhatsApp's limit is 65536",
    )


# --- what a newcomer is told --------------------------------------------------------------


def test_sandbox_send_and_chat_say_what_to_run(cli: CLI, daemon: Daemon) -> None:
    def both_say(error: str) -> None:
        for args in (["sandbox", "send", "casa-lola", "hola"], ["sandbox", "chat", "casa-lola"]):
            result = cli(*args, input="hola\n")
            assert (result.code, error_of(result.err), result.out) == (
                ExitCode.CONFLICT,
                error,
                "",
            )

    assert cli("tenant", "create", "casa-lola", "--name", "Casa Lola").code == 0
    both_say(
        "tenant 'casa-lola' is not running (state STOPPED); run `wactl tenant start "
        "casa-lola`, then `wactl sandbox scan casa-lola` to link it"
    )
    assert cli("tenant", "start", "casa-lola").code == 0
    both_say(
        "tenant 'casa-lola' is not linked yet; run `wactl sandbox scan casa-lola` "
        "(the sandbox plays the phone scanning its QR)"
    )
    poll_for(lambda: daemon.ps()["casa-lola"]["has_qr"], timeout=10)
    assert cli("sandbox", "scan", "casa-lola").code == 0
    assert cli("sandbox", "send", "casa-lola", "hola").code == 0
    # Stopped after linking: starting it is enough, the link is kept.
    assert cli("tenant", "stop", "casa-lola").code == 0
    result = cli("sandbox", "send", "casa-lola", "hola")
    assert (result.code, error_of(result.err)) == (
        ExitCode.CONFLICT,
        "tenant 'casa-lola' is not running (state STOPPED); run `wactl tenant start casa-lola`",
    )


def test_new_tenant_says_its_hours_are_not_set(cli: CLI, db_url: str) -> None:
    result = cli("tenant", "create", "casa-pepe", "--name", "Casa Pepe")
    assert result.err == (
        "created tenant 'casa-pepe' (STOPPED)\n"
        "casa-pepe: no opening hours yet (the bot tells customers they are not published); "
        "set them in the [hours] table of `wactl tenant config export casa-pepe > "
        "casa-pepe.toml`, then `wactl tenant config apply casa-pepe casa-pepe.toml`\n"
    )
    shown = cli("tenant", "show", "casa-pepe").out
    assert "hours          not set yet (`wactl tenant config export` shows how)" in shown
    assert "closed" not in shown and "hours mon" not in shown
