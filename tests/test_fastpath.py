"""`wactl ps --json` has a fast path; it must print exactly what the full CLI prints,
import neither typer nor click, and hand every unusual case to the full CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import CLI
from tests.daemon_support import Daemon
from tests.support import run_wactl


def _wactl(*args: str) -> subprocess.CompletedProcess[str]:
    result: subprocess.CompletedProcess[str] = run_wactl(*args, capture_output=True, text=True)
    return result


def test_same_output_as_the_full_cli(cli: CLI, daemon: Daemon) -> None:
    for slug in ("alpha", "beta"):
        assert cli("tenant", "create", slug, "--name", slug).code == 0
    assert cli("tenant", "start", "alpha").code == 0
    fast = _wactl("ps", "--json")
    assert fast.returncode == 0, fast.stderr
    full = cli("ps", "--json")
    fast_rows, full_rows = json.loads(fast.stdout), json.loads(full.out)
    volatile = {
        "uptime_seconds",
        "heartbeat_age_seconds",
        "cpu_percent",
        "memory_rss_bytes",
        "memory_uss_bytes",
        "processes",
    }
    strip = [{k: v for k, v in r.items() if k not in volatile} for r in fast_rows]
    assert strip == [{k: v for k, v in r.items() if k not in volatile} for r in full_rows]
    assert [list(r) for r in fast_rows] == [list(r) for r in full_rows]  # same key order


def test_fast_path_imports_no_cli_framework(daemon: Daemon) -> None:
    probe = (
        "import sys, io, contextlib\n"
        "from wactl.cli.fastpath import try_fast\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    code = try_fast(['ps', '--json'])\n"
        "print(code, sorted({m.split('.')[0] for m in sys.modules} & "
        "{'typer', 'click', 'rich', 'sqlalchemy', 'http'}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "0 []"


def test_without_a_daemon_the_full_cli_runs(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil
    import tempfile
    from pathlib import Path

    runtime = Path(tempfile.mkdtemp(prefix="wt", dir="/tmp"))
    monkeypatch.setenv("WACTL_PATHS_RUNTIME_DIR", str(runtime))
    try:
        result = _wactl("ps", "--json")
        # Not served fast: the full CLI started the daemon and said so.
        assert result.returncode == 0, result.stderr
        assert "the daemon was not running; started it" in result.stderr
        assert json.loads(result.stdout) == []
    finally:
        _wactl("daemon", "stop", "--with-workers")
        shutil.rmtree(runtime, ignore_errors=True)
