"""`wactl doctor`: is this installation able to run bots, and if not, what to fix.

Each check is one line: ok, warn (works, but something an operator should know) or
FAIL (something will not work), with what was found and, when not ok, the command or
setting that fixes it. Checks never change anything: the daemon is not started, wa-js
is not fetched, the schema is not upgraded. Exit 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from wactl.cli.context import JsonFlag, app_context

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from wactl.cli.context import AppContext
    from wactl.wajs import Pin

#: The fix shown when a check fails with an error that names none.
DEFAULT_FIXES = {
    "config": "correct it; `wactl config validate` checks the file and WACTL_* variables",
    "database": "check database.url (`wactl config show`) and that the server is up",
}

#: How long WhatsApp Web may take to answer the doctor (seconds).
WHATSAPP_TIMEOUT = 10.0
#: Below this much free space in the data directory, a warning (logs and profiles grow).
LOW_DISK_BYTES = 1 << 30


@dataclass(frozen=True)
class Check:
    """One line of the report (the keys of `wactl doctor --json`, see wactl(1))."""

    name: str
    #: "ok", "warn" or "fail".
    status: str
    detail: str
    fix: str | None = None


def _ok(name: str, detail: str) -> Check:
    return Check(name, "ok", detail)


class _Doctor:
    def __init__(self, app: AppContext) -> None:
        self.app = app
        self.checks: list[Check] = []
        self.engine: Engine | None = None
        #: Tenants on the whatsapp-web engine; None when the database could not say.
        self.browser_tenants: int | None = None

    def run(self, name: str, check: Callable[[], Check | list[Check] | None]) -> None:
        from wactl.errors import WactlError

        unexpected = "unexpected: please report it, with this line"
        try:
            result = check()
        except WactlError as exc:
            result = Check(name, "fail", exc.message, exc.hint or DEFAULT_FIXES.get(name))
        except Exception as exc:  # a check must never stop the others
            result = Check(name, "fail", f"{type(exc).__name__}: {exc}", unexpected)
        results = result if isinstance(result, list) else [result] if result else []
        for each in results:
            if each.status != "ok" and each.fix is None:
                each = Check(each.name, each.status, each.detail, unexpected)
            self.checks.append(each)

    # --- the checks ---------------------------------------------------------------

    def config(self) -> Check:
        config = self.app.config  # raises ConfigError with the file, key and fix
        if not config.source.exists():
            return Check(
                "config",
                "warn",
                f"no file at {config.source}; built-in defaults and WACTL_* variables",
                "`wactl init` writes a documented one",
            )
        return _ok("config", str(config.source))

    def database(self) -> Check:
        from wactl.db.engine import display_url

        engine = self.app.engine(check_schema=False)
        self.engine = engine
        with engine.connect() as connection:
            version = connection.dialect.server_version_info or ()
        server = ".".join(str(part) for part in version)
        name = "SQLite" if engine.dialect.name == "sqlite" else "PostgreSQL"
        return _ok("database", f"{display_url(engine.url)} ({name} {server})")

    def schema(self) -> Check | None:
        if self.engine is None:
            return None
        from sqlalchemy import func, select

        from wactl.db.models import Tenant
        from wactl.db.schema import ensure_current
        from wactl.enums import EngineName

        ensure_current(self.engine)  # raises with "run `wactl db upgrade`"
        with self.engine.connect() as connection:
            counts = dict(
                connection.execute(
                    select(Tenant.engine, func.count()).group_by(Tenant.engine)
                ).all()
            )
        total = sum(counts.values())
        self.browser_tenants = int(counts.get(EngineName.WHATSAPP_WEB, 0))
        return _ok(
            "schema",
            f"current; {total} tenant(s), {self.browser_tenants} on whatsapp-web",
        )

    def daemon(self) -> Check:
        from wactl.cli.daemon_client import find_daemon
        from wactl.errors import DaemonError
        from wactl.ipc.protocol import socket_path

        try:
            # The daemon serving this database, also one with another runtime directory.
            client = find_daemon(self.app)
            status: dict[str, Any] = client.request("GET", "/v1/status", timeout=5.0)
        except DaemonError as exc:
            return Check(
                "daemon",
                "warn",
                exc.message,
                "`wactl daemon start` (commands that need it start it by themselves)",
            )
        workers = status.get("workers") or {}
        running = workers.get("RUNNING", 0)
        fatal = workers.get("FATAL", 0)
        detail = f"pid {status.get('pid')}, version {status.get('version')}, {running} running"
        if client.path != socket_path(self.app.config.runtime_dir):
            detail += f", socket {client.path} (not this config's paths.runtime_dir)"
        if fatal:
            return Check(
                "daemon",
                "warn",
                f"{detail}, {fatal} given up on (FATAL)",
                "`wactl ps` shows which and why; `wactl tenant start SLUG` tries again",
            )
        return _ok("daemon", detail)

    def _needed(self) -> str:
        """'fail' when a tenant needs the whatsapp-web engine (or we cannot tell)."""
        return "warn" if self.browser_tenants == 0 else "fail"

    def browser(self) -> Check:
        from wactl.bot.engines.chromium import (
            browser_version,
            is_headless_shell,
            playwright_chromium,
            resolve_executable,
        )
        from wactl.errors import WactlError

        config = self.app.config
        try:
            # The same choice the engine makes (Playwright's own browser when installed).
            default = None if config.browser.executable_path else playwright_chromium()
            path = resolve_executable(config, playwright_default=default)
        except WactlError as exc:
            return Check("browser", self._needed(), exc.message, exc.hint)
        try:
            version = browser_version(path)
        except WactlError as exc:
            return Check("browser", self._needed(), exc.message, exc.hint)
        detail = f"{path} ({version})"
        if not config.browser.executable_path and not is_headless_shell(path):
            return Check(
                "browser",
                "warn",
                f"{detail}: the full browser, about 57 MB more per tenant than "
                "chromium-headless-shell",
                "install the headless shell (`apt-get install chromium-headless-shell`); the "
                "engine prefers it",
            )
        return _ok("browser", detail)

    def whatsapp(self) -> Check | None:
        """Whether WhatsApp Web (browser.url) resolves and answers from this host, when
        a tenant uses the whatsapp-web engine: without it, every start of such a worker
        fails (`cannot open ...`) and the tenant ends quarantined."""
        if not self.browser_tenants:
            return None
        import socket
        import urllib.error
        import urllib.request
        from urllib.parse import urlsplit

        url = self.app.config.browser.url
        host = urlsplit(url).hostname or ""
        port = urlsplit(url).port or (443 if url.startswith("https:") else 80)
        fix = (
            "whatsapp-web workers cannot link from this host: check its DNS, network and "
            "proxy (HTTPS to web.whatsapp.com must work)"
        )
        try:
            socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            return Check("whatsapp", "fail", f"cannot resolve {host}: {exc}", fix)
        # browser.url is http(s), checked when the configuration is loaded.
        request = urllib.request.Request(  # noqa: S310
            url, headers={"User-Agent": "Mozilla/5.0 wactl doctor"}
        )
        try:
            with urllib.request.urlopen(request, timeout=WHATSAPP_TIMEOUT) as response:  # noqa: S310
                status = response.status
        except urllib.error.HTTPError as exc:
            status = exc.code  # it answers: that is what this checks
            exc.close()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            return Check("whatsapp", "fail", f"{url} does not answer: {reason}", fix)
        return _ok("whatsapp", f"{url} answers (HTTP {status})")

    def _wajs_in_use(self) -> dict[str, tuple[Pin, list[str]]]:
        """Each wa-js version in use (the fleet's, and each whatsapp-web tenant's), with
        its pin and what uses it; only the pinned one when the database cannot say."""
        from wactl import wajs

        if self.engine is None or self.browser_tenants is None:
            return {wajs.PINNED.version: (wajs.PINNED, ["pinned in wactl"])}
        from sqlalchemy import select

        from wactl.db import wajs_releases
        from wactl.db.engine import session_scope
        from wactl.db.models import Tenant
        from wactl.enums import EngineName

        with session_scope(self.engine) as session:
            fleet = wajs_releases.effective(None, wajs_releases.fleet_default(session))
            tenants = list(
                session.scalars(select(Tenant).where(Tenant.engine == EngineName.WHATSAPP_WEB))
            )
            resolved = wajs_releases.all_effective(session, tenants)
        counts: dict[str, int] = {}
        pins = {fleet.version: fleet.pin}
        for each in resolved.values():
            counts[each.version] = counts.get(each.version, 0) + 1
            pins[each.version] = each.pin
        in_use: dict[str, tuple[Pin, list[str]]] = {}
        for version, pin in pins.items():
            uses = ["fleet default"] if version == fleet.version else []
            if pin.is_pinned:
                uses.append("pinned in wactl")
            if counts.get(version):
                uses.append(f"{counts[version]} whatsapp-web tenant(s)")
            in_use[version] = (pin, uses)
        return in_use

    def wajs(self) -> list[Check]:
        from wactl import wajs

        checks: list[Check] = []
        for version, (pin, uses) in self._wajs_in_use().items():
            what = f"{pin.package} {version} ({', '.join(uses)})"
            found = wajs.installed(self.app.config, pin)
            if found is None:
                checks.append(
                    Check(
                        "wa-js",
                        "warn",
                        f"{what} is not installed on this host",
                        f"`{pin.install_command()}` (the whatsapp-web engine also does on "
                        "first use)",
                    )
                )
            elif not found.verified:
                checks.append(
                    Check(
                        "wa-js",
                        self._needed(),
                        f"{what} fails verification: {found.problem}",
                        f"`{pin.install_command(force=True)}`",
                    )
                )
            else:
                checks.append(_ok("wa-js", f"{what}, integrity verified ({found.path})"))
        return checks

    def data_dir(self) -> Check:
        directory = self.app.config.data_dir
        if not directory.exists():
            return Check("data dir", "warn", f"{directory} does not exist yet", "`wactl init`")
        if not os.access(directory, os.W_OK | os.X_OK):
            return Check(
                "data dir",
                "fail",
                f"{directory} is not writable by this user",
                "fix its owner or set paths.data_dir",
            )
        free = shutil.disk_usage(directory).free
        detail = f"{directory}, {free / (1 << 30):.1f} GiB free"
        if free < LOW_DISK_BYTES:
            return Check(
                "data dir",
                "warn",
                detail,
                "free some space, or bound the log with pipeline.retention_days",
            )
        return _ok("data dir", detail)

    def runtime_dir(self) -> Check:
        from wactl.ipc.protocol import socket_path

        path = socket_path(self.app.config.runtime_dir)
        # AF_UNIX paths are limited to 107 bytes; worker sockets add the slug.
        if len(os.fsencode(path)) > 60:
            return Check(
                "runtime dir",
                "warn",
                f"{path} is long; sockets of tenants with long slugs may not fit (107 bytes)",
                "set paths.runtime_dir to a short directory",
            )
        return _ok("runtime dir", str(Path(path).parent))


def report(app: AppContext) -> list[Check]:
    """Every check, in order; the database checks are skipped when it is unreachable."""
    doctor = _Doctor(app)
    doctor.run("config", doctor.config)
    if any(c.status == "fail" for c in doctor.checks):
        return doctor.checks  # nothing else can be read without a configuration
    doctor.run("database", doctor.database)
    doctor.run("schema", doctor.schema)
    doctor.run("daemon", doctor.daemon)
    doctor.run("browser", doctor.browser)
    doctor.run("wa-js", doctor.wajs)
    doctor.run("whatsapp", doctor.whatsapp)
    doctor.run("data dir", doctor.data_dir)
    doctor.run("runtime dir", doctor.runtime_dir)
    return doctor.checks


def doctor(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Check the configuration, database, daemon, browser and wa-js, and say what to fix.

    Changes nothing. Each line is ok, warn or FAIL with what was found; a line that is
    not ok says how to fix it. wa-js has one line per version in use (the fleet's, and
    each whatsapp-web tenant's), saying who uses it and whether it is installed and
    verified on this host. When a tenant uses the whatsapp-web engine, whatsapp checks
    that WhatsApp Web (browser.url) resolves and answers from this host. The browser
    and wa-js are FAIL only when a tenant uses the whatsapp-web engine (or the database
    cannot say); the full Chromium where the
    lighter chromium-headless-shell could run is a warning. Exit status 1 when any
    check failed.
    """
    from wactl.cli.output import emit_json

    app = app_context(ctx)
    checks = report(app)
    failed = any(c.status == "fail" for c in checks)
    if json_output:
        emit_json({"ok": not failed, "checks": [asdict(c) for c in checks]})
    else:
        from wactl.cli.console import Column, print_table

        rows: list[tuple[str, str, str]] = []
        for check in checks:
            rows.append(
                (
                    {"ok": "ok", "warn": "warn", "fail": "FAIL"}[check.status],
                    check.name,
                    check.detail,
                )
            )
            if check.fix:
                rows.append(("", "", f"fix: {check.fix}"))
        # What was found and the fix wrap beside the check's name (paths fold).
        columns = (Column("STATUS"), Column("CHECK"), Column("FOUND", wrap=True))
        print_table(app.console, columns, rows, header=False)
    if failed:
        raise typer.Exit(1)
