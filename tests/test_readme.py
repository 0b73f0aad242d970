"""The README runs as written: every ```sh block, in order, on a fresh home.

A newcomer copies the README's shell blocks one after another; so does this test, in
an empty home with the embedded defaults (SQLite, the sandbox engine), through bash
and the installed `wactl`, each command as its own process. The only lines it skips
are the ones the README marks ``# needs: ...`` (a real phone, Google credentials, the
network, PostgreSQL, an owner's request from the portal); nothing is skipped by
guessing.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.daemon_support import Daemon

README = Path(__file__).resolve().parent.parent / "README.md"

#: A bash comment that starts with "needs:" marks a command the test does not run.
#: What it names must be one of these (README.md, "Using it", lists them).
SKIP_REASONS = (
    "a real phone",
    "Google credentials",
    "the network",
    "PostgreSQL",
    "an owner's",
    "root",
)
_NEEDS = re.compile(r"(?:^|\s)# needs: (?P<what>\S.*)$")


@dataclass(frozen=True)
class Command:
    """One command of a README block, continuation lines included."""

    line: int  # where it starts in README.md
    text: str
    needs: str | None  # what the `# needs:` marker says it needs, or None: it runs


def readme_commands(text: str) -> list[Command]:
    """The commands of every ```sh block, in order (comments and blank lines left out)."""
    commands: list[Command] = []
    in_block = False
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), 1):
        if not in_block:
            in_block = line.strip() == "```sh"
            continue
        if line.strip() == "```":
            assert not pending, f"README.md:{start}: the block ends inside a command"
            in_block = False
            continue
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if not pending:
            start = number
        pending.append(line)
        if line.rstrip().endswith("\\"):
            continue
        needs = [m["what"] for m in map(_NEEDS.search, pending) if m is not None]
        commands.append(Command(start, "\n".join(pending), needs[0] if needs else None))
        pending = []
    return commands


def test_marker_and_continuations_are_read() -> None:
    text = (
        "```sh\n"
        "wactl one            # a comment\n"
        "# a comment line\n"
        "\n"
        "wactl two \\\n"
        '      --flag "x"     # needs: a real phone\n'
        "make it   # needs: the network. And more words\n"
        "          # more comment\n"
        "```\n"
        "```\n"
        "wactl not-shell\n"
        "```\n"
    )
    assert readme_commands(text) == [
        Command(2, "wactl one            # a comment", None),
        Command(5, 'wactl two \\\n      --flag "x"     # needs: a real phone', "a real phone"),
        Command(7, "make it   # needs: the network. And more words", "the network. And more words"),
    ]


def test_every_block_of_commands_is_a_sh_block() -> None:
    """A block of commands fenced without ``sh`` would be left out of the run below."""
    fences = re.findall(r"^```(\w*)\n(.*?)^```$", README.read_text(encoding="utf-8"), re.M | re.S)
    for language, body in fences:
        if language != "sh":
            assert not re.search(r"^(wactl|make|curl) ", body, re.M), body


@pytest.fixture
def fresh_home() -> Iterator[tuple[Path, dict[str, str]]]:
    """An empty home with no WACTL_* settings (AF_UNIX paths are short: under /tmp),
    where `wactl` is this checkout's; any daemon started there is stopped at the end."""
    home = Path(tempfile.mkdtemp(prefix="rd", dir="/tmp"))
    env = {name: value for name, value in os.environ.items() if not name.startswith("WACTL_")}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        XDG_DATA_HOME=str(home / ".local/share"),
        XDG_STATE_HOME=str(home / ".local/state"),
        XDG_RUNTIME_DIR=str(home / "run"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    (home / "work").mkdir()
    try:
        yield home, env
    finally:
        Daemon(runtime_dir=home / "run" / "wactl", env=env).stop_everything()
        shutil.rmtree(home, ignore_errors=True)


def run_in(home: Path, env: dict[str, str], command: Command) -> None:
    """Run one README command as bash would, and fail with what it printed."""
    completed = subprocess.run(
        ["bash", "-c", command.text],
        cwd=home / "work",
        env=env,
        stdin=subprocess.DEVNULL,  # `sandbox chat` reads to the end: it ends at once
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, (
        f"README.md:{command.line}: {command.text}\nexit {completed.returncode}\n"
        f"stdout: {completed.stdout}\nstderr: {completed.stderr}"
    )


def test_readme_portal_setup_runs_verbatim(fresh_home: tuple[Path, dict[str, str]]) -> None:
    """The portal's block alone, right after a fresh install: `config set` of the
    client id used to exit 3 because its secret was still empty."""
    home, env = fresh_home
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## The portal") :]
    block = section[section.index("```sh") : section.index("```\n", section.index("```sh") + 5)]
    commands = [c for c in readme_commands(block + "```\n") if c.needs is None]
    assert [c.text.split("#")[0].split()[:3] for c in commands] == [
        ["wactl", "init"],
        ["wactl", "config", "set"],
        ["wactl", "config", "set"],
        ["wactl", "config", "set"],
        ["wactl", "config", "validate"],
    ]
    for command in commands:
        run_in(home, env, command)


@pytest.mark.timeout(900)
def test_readme_blocks_run_in_order_on_a_fresh_home(
    fresh_home: tuple[Path, dict[str, str]],
) -> None:
    home, env = fresh_home
    assert shutil.which("wactl", path=env["PATH"]) == str(Path(sys.executable).parent / "wactl")
    commands = readme_commands(README.read_text(encoding="utf-8"))
    ran = []
    for command in commands:
        if command.needs is not None:
            continue
        run_in(home, env, command)
        ran.append(command.text)
    # The run covered the README's walk through, not a few stray lines.
    for expected in (
        "wactl tenant start casa-pepe",
        "wactl sandbox scan casa-pepe",
        'wactl sandbox send casa-pepe --from +15551234567 "hola"',
        'wactl config set portal.google_client_id "1234-abc.apps.googleusercontent.com"',
        "wactl config validate",
    ):
        assert any(text.startswith(expected) for text in ran), expected
    # Skipped only for what the README says a fresh machine lacks.
    for command in commands:
        if command.needs is not None:
            assert any(reason in command.needs for reason in SKIP_REASONS), command
