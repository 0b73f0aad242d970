"""`wactl doctor`: every check, what it says when things are fine, and the fix it names
when they are not; on SQLite and PostgreSQL. It must change nothing."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI
from tests.daemon_support import Daemon
from tests.support import serving
from wactl.cli import manpage
from wactl.errors import ExitCode


@pytest.fixture
def short_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A runtime dir as short as a real one (pytest's tmp_path is long for sockets)."""
    path = Path(tempfile.mkdtemp(prefix="wd", dir="/tmp"))
    monkeypatch.setenv("WACTL_PATHS_RUNTIME_DIR", str(path))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def whatsapp_page(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """browser.url on a real HTTP server on loopback (WhatsApp Web is not reachable here)."""
    import http.server

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>WhatsApp</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    monkeypatch.setenv("WACTL_BROWSER_URL", url)
    with serving(server, "whatsapp-page"):
        yield url


def checks(cli: CLI, *, code: int = 0) -> dict[str, dict[str, Any]]:
    result = cli("doctor", "--json")
    assert result.code == code, (result.out, result.err)
    shown = json.loads(result.out)
    assert list(shown) == ["ok", "checks"]
    assert shown["ok"] is (code == 0)
    for check in shown["checks"]:
        assert list(check) == [key for key, _ in manpage.DOCTOR_KEYS]
        assert check["status"] in ("ok", "warn", "fail")
        assert (check["fix"] is None) == (check["status"] == "ok"), check
    return {check["name"]: check for check in shown["checks"]}


def test_a_new_installation_is_ready_and_says_what_is_optional(
    cli: CLI, db_url: str, short_runtime: Path
) -> None:
    assert cli("init").code == 0
    found = checks(cli)
    assert list(found) == [
        "config",
        "database",
        "schema",
        "daemon",
        "browser",
        "wa-js",
        "data dir",
        "runtime dir",
    ]
    status = {name: check["status"] for name, check in found.items()}
    assert status == {
        "config": "ok",
        "database": "ok",
        "schema": "ok",
        "daemon": "warn",  # not running: commands start it when they need it
        "browser": "ok",
        "wa-js": "warn",  # not installed yet: the engine fetches it on first use
        "data dir": "ok",
        "runtime dir": "ok",
    }
    assert found["schema"]["detail"] == "current; 0 tenant(s), 0 on whatsapp-web"
    assert found["browser"]["detail"].startswith("/") and "Chromium" in found["browser"]["detail"]
    assert found["daemon"]["fix"] == (
        "`wactl daemon start` (commands that need it start it by themselves)"
    )
    assert found["wa-js"]["fix"] == (
        "`wactl engine install` (the whatsapp-web engine also does on first use)"
    )
    # Nothing was started or fetched.
    assert not list(short_runtime.iterdir())

    text = cli("doctor")
    assert text.code == 0
    lines = text.out.splitlines()
    assert lines[0].startswith("ok    config       ")
    assert "warn  daemon       " in text.out
    assert "              fix: `wactl engine install`" in text.out


def test_a_running_daemon_is_reported(cli: CLI, daemon: Daemon) -> None:
    found = checks(cli)
    assert found["daemon"]["status"] == "ok"
    assert found["daemon"]["detail"].startswith(f"pid {daemon.pid}, version ")


def test_a_whatsapp_web_tenant_without_a_browser_fails_with_the_fix(
    cli: CLI,
    db_url: str,
    short_runtime: Path,
    monkeypatch: pytest.MonkeyPatch,
    whatsapp_page: str,
) -> None:
    assert cli("init").code == 0
    created = cli("tenant", "create", "shop", "--name", "Shop", "--engine", "whatsapp-web")
    assert created.code == 0, created.err
    found = checks(cli)
    assert found["schema"]["detail"] == "current; 1 tenant(s), 1 on whatsapp-web"
    assert found["browser"]["status"] == "ok"
    assert found["whatsapp"]["detail"] == f"{whatsapp_page} answers (HTTP 200)"

    monkeypatch.setenv("WACTL_BROWSER_EXECUTABLE_PATH", "/nonexistent/chromium")
    found = checks(cli, code=ExitCode.FAILURE)
    assert found["browser"] == {
        "name": "browser",
        "status": "fail",
        "detail": "browser.executable_path /nonexistent/chromium is not an executable file",
        "fix": "install Chromium (`apt-get install chromium-headless-shell`) or fix the path "
        "(`wactl config set browser.executable_path PATH`)",
    }
    text = cli("doctor")
    assert text.code == ExitCode.FAILURE
    assert "FAIL  browser      browser.executable_path /nonexistent/chromium" in text.out


def test_whatsapp_web_not_answering_fails_with_the_fix(
    cli: CLI, db_url: str, short_runtime: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checked only when a tenant uses whatsapp-web; a port nobody listens on."""
    import socket

    assert cli("init").code == 0
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/"
    monkeypatch.setenv("WACTL_BROWSER_URL", url)
    assert "whatsapp" not in checks(cli)  # no whatsapp-web tenant: nothing to check
    assert cli("tenant", "create", "shop", "--name", "Shop", "--engine", "whatsapp-web").code == 0
    found = checks(cli, code=ExitCode.FAILURE)
    assert found["whatsapp"] == {
        "name": "whatsapp",
        "status": "fail",
        "detail": f"{url} does not answer: [Errno 111] Connection refused",
        "fix": "whatsapp-web workers cannot link from this host: check its DNS, network and "
        "proxy (HTTPS to web.whatsapp.com must work)",
    }


def test_without_whatsapp_web_tenants_a_missing_browser_is_only_a_warning(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("init").code == 0
    monkeypatch.setenv("WACTL_BROWSER_EXECUTABLE_PATH", "/nonexistent/chromium")
    assert checks(cli)["browser"]["status"] == "warn"


def test_the_full_browser_is_a_warning_that_names_the_headless_shell(
    cli: CLI, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("init").code == 0
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    full = bin_dir / "chromium"
    full.write_text("#!/bin/sh\necho 'Chromium 150.0.1.2 built on Debian'\n")
    full.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert checks(cli)["browser"] == {
        "name": "browser",
        "status": "warn",
        "detail": f"{full} (Chromium 150.0.1.2): the full browser, about 57 MB more per "
        "tenant than chromium-headless-shell",
        "fix": "install the headless shell (`apt-get install chromium-headless-shell`); "
        "the engine prefers it",
    }
    # Chosen on purpose: fine.
    monkeypatch.setenv("WACTL_BROWSER_EXECUTABLE_PATH", str(full))
    assert checks(cli)["browser"]["status"] == "ok"
    monkeypatch.delenv("WACTL_BROWSER_EXECUTABLE_PATH")
    shell = bin_dir / "chromium-headless-shell"
    shell.write_text(full.read_text())
    shell.chmod(0o755)
    assert checks(cli)["browser"] == {
        "name": "browser",
        "status": "ok",
        "detail": f"{shell} (Chromium 150.0.1.2)",
        "fix": None,
    }


def test_an_old_schema_fails_and_names_the_upgrade(cli: CLI, empty_db_url: str) -> None:
    found = checks(cli, code=ExitCode.FAILURE)
    assert found["database"]["status"] == "ok"
    assert found["schema"]["status"] == "fail"
    assert found["schema"]["detail"].endswith("has no wactl schema")
    assert found["schema"]["fix"] == "run `wactl init` (or `wactl db upgrade`) first"
    # doctor changes nothing: the database is still empty.
    assert checks(cli, code=ExitCode.FAILURE)["schema"]["status"] == "fail"


def test_a_broken_configuration_is_the_only_line(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WACTL_DAEMON_MAX_CRASHES", "many")
    found = checks(cli, code=ExitCode.FAILURE)
    assert list(found) == ["config"]
    assert found["config"]["detail"] == (
        "environment variable WACTL_DAEMON_MAX_CRASHES: expected an integer, not 'many'"
    )
    assert found["config"]["fix"] == (
        "correct it; `wactl config validate` checks the file and WACTL_* variables"
    )


def test_an_unreachable_database_fails_and_the_rest_is_still_checked(
    cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WACTL_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/nothing")
    found = checks(cli, code=ExitCode.FAILURE)
    assert found["database"]["status"] == "fail"
    assert "schema" not in found  # nothing to check it on
    assert {"daemon", "browser", "wa-js", "data dir", "runtime dir"} <= set(found)
