"""`wactl --help`, `--version` and sub-command help import none of the heavy libraries,
and `wactl ps` and `wactl tui --help` do not import Textual."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.daemon_support import Daemon

HEAVY = (
    "sqlalchemy",
    "alembic",
    "textual",
    "playwright",
    "starlette",
    "psycopg",
    "uvicorn",
    "authlib",
    "jinja2",
    "httpx2",
)

PROBE = """
import contextlib, io, json, sys
from wactl.cli.app import run
with contextlib.redirect_stdout(io.StringIO()):
    code = run(sys.argv[1:])
heavy = sorted({m.split('.')[0] for m in sys.modules} & set(HEAVY))
print(json.dumps({"code": code, "heavy": heavy}))
""".replace("HEAVY", repr(HEAVY))


@pytest.mark.parametrize(
    "args",
    [
        ["--help"],
        ["--version"],
        ["tenant", "--help"],
        ["tenant", "create", "--help"],
        ["db", "--help"],
        ["engine", "--help"],
        ["engine", "install", "--help"],
        ["engine", "check", "--help"],
        ["portal", "serve", "--help"],
    ],
)
def test_fast_paths_import_nothing_heavy(args: list[str]) -> None:
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}


@pytest.mark.parametrize("command", ["status", "check"])
def test_engine_status_imports_nothing_heavy(command: str) -> None:
    """`wactl engine status` and `engine check` of the pinned version really run (nothing
    installed: exit 5) without Playwright or a database."""
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, "engine", command, "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result == {"code": 5, "heavy": []}


def test_the_probe_can_fail() -> None:
    """The same probe does see SQLAlchemy once a database command runs."""
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, "db", "history"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert "sqlalchemy" in result["heavy"] and "alembic" in result["heavy"]


@pytest.mark.parametrize("backend", ["sqlite"])
@pytest.mark.parametrize("args", [["ps"], ["ps", "--json"], ["tui", "--help"]])
def test_ps_and_tui_help_do_not_import_textual(args: list[str], daemon: Daemon) -> None:
    """`wactl ps` talks to a running daemon, and `tui --help` only prints: neither
    may pay for Textual (~180 ms), which only `wactl tui` itself imports."""
    completed = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, check=True, timeout=60
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["code"] == 0
    assert "textual" not in result["heavy"]


def test_the_tui_module_does_import_textual() -> None:
    """The probe's other side: importing the dashboard does load Textual."""
    probe = "import sys, wactl.tui.app; print('textual' in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert completed.stdout.strip() == "True"
