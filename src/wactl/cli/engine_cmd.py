"""`wactl engine install | status | check | rollout | rollback`: the wa-js library the
whatsapp-web engine injects, and which version the fleet runs.

Thin: parse, call `wactl.wajs` (fetch, verify, store), `wactl.wajs_check` (the contract
check) and `wactl.db.wajs_releases` (what each tenant runs), print. The pinned version
needs no database: `install`, `status` and `check` of it stay as light as `--help`
(no Playwright, no SQLAlchemy); another version is looked up in the database.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from wactl.cli.context import JsonFlag, app_context

if TYPE_CHECKING:
    from wactl.cli.context import AppContext
    from wactl.db.wajs_releases import FleetChange
    from wactl.wajs import InstalledBundle, Pin
    from wactl.wajs_check import CheckReport

app = typer.Typer(
    help="The whatsapp-web engine's wa-js library: install versions, check them against "
    "what wactl uses, and choose which one the tenants run.",
    no_args_is_help=True,
)


class InstallSource(enum.StrEnum):
    """How `wactl engine install` fetches the tarball."""

    AUTO = "auto"  # npm when it is on PATH, else HTTPS
    NPM = "npm"
    HTTPS = "https"


VersionOpt = Annotated[
    str | None,
    typer.Option(
        "--version",
        metavar="VERSION",
        help="A wa-js version other than the one pinned in wactl (default: the pinned one).",
        show_default=False,
    ),
]
NoRestart = Annotated[
    bool,
    typer.Option(
        "--no-restart",
        help="Do not restart the running workers whose version changed; each runs its new "
        "version from its next start.",
    ),
]


def bundle_json(pin: Pin, found: InstalledBundle | None, path: str) -> dict[str, Any]:
    """The `engine install --json` / `engine status --json` object (keys in wactl(1))."""
    return {
        "package": pin.package,
        "version": pin.version,
        "pinned": pin.is_pinned,
        "pinned_integrity": pin.integrity,
        "path": path,
        "installed": found is not None,
        "verified": found is not None and found.verified,
        "problem": found.problem if found is not None else None,
        "integrity": found.integrity if found is not None else None,
        "sha256": found.sha256 if found is not None else None,
        "tarball": str(found.tarball) if found is not None and found.tarball else None,
        "source": found.source if found is not None else None,
        "registry": found.registry if found is not None else None,
        "installed_at": found.installed_at if found is not None else None,
    }


def _pin_to_install(app_ctx: AppContext, version: str | None, integrity: str | None) -> Pin:
    """The pin `install` fetches: the one in wactl, or ``version`` with ``integrity``
    (required), checked against what the database recorded for that version."""
    from wactl import wajs
    from wactl.errors import ConflictError, UsageError

    if version is None or version == wajs.WAJS_VERSION:
        if integrity is not None and integrity != wajs.WAJS_INTEGRITY:
            raise UsageError(
                f"--integrity {integrity} is not the one pinned for wa-js {wajs.WAJS_VERSION} "
                f"({wajs.WAJS_INTEGRITY})",
                hint="leave --integrity out for the pinned version",
            )
        return wajs.PINNED
    wajs.check_version(version)
    if integrity is None:
        raise UsageError(
            f"--integrity is required for wa-js {version} (wactl pins {wajs.WAJS_VERSION})",
            hint="give npm's dist.integrity of that version: "
            f"`npm view {wajs.WAJS_PACKAGE}@{version} dist.integrity`",
        )
    wajs.check_integrity(integrity)
    from wactl.db import wajs_releases
    from wactl.db.models import WajsRelease

    with app_ctx.session() as session:
        release = session.get(WajsRelease, version)
        if release is None:
            return wajs.Pin(wajs.WAJS_PACKAGE, version, integrity)
        if release.integrity != integrity:
            raise ConflictError(
                f"wa-js {version} is recorded with integrity {release.integrity}, not {integrity}",
                hint="one version has one tarball: check the integrity you gave "
                f"(`npm view {wajs.WAJS_PACKAGE}@{version} dist.integrity`)",
            )
        return wajs_releases.pin_of(release)


def _recorded_pin(app_ctx: AppContext, version: str | None) -> Pin:
    """The pin of an installed version: the pinned one, or a recorded release."""
    from wactl import wajs
    from wactl.errors import NotFoundError

    if version is None or version == wajs.WAJS_VERSION:
        return wajs.PINNED
    wajs.check_version(version)
    from wactl.db import wajs_releases

    with app_ctx.session() as session:
        pin = wajs_releases.release_pin(session, version)
    if pin is None:
        raise NotFoundError(
            f"wa-js {version} is not installed (no record of it)",
            hint=f"run `wactl engine install --version {version} --integrity sha512-...`",
        )
    return pin


def _verified(app_ctx: AppContext, pin: Pin) -> InstalledBundle:
    """What is installed for ``pin``: exit 5 when nothing, 1 when it fails verification."""
    from wactl import wajs
    from wactl.errors import NotFoundError

    found = wajs.installed(app_ctx.config, pin)
    if found is None:
        raise NotFoundError(
            f"{pin.spec} is not installed in {wajs.version_dir(app_ctx.config, pin).parent}",
            hint=f"run `{pin.install_command()}` (the whatsapp-web engine also does on first use)",
        )
    if not found.verified:
        raise wajs.WajsInstallError(
            f"the installed {pin.spec} fails verification: {found.problem}",
            hint=f"run `{pin.install_command(force=True)}`",
        )
    return found


def _check(found: InstalledBundle, pin: Pin) -> CheckReport:
    """The contract check of an installed version (raises when its tarball is missing
    or no longer verifies)."""
    from wactl import wajs, wajs_check

    return wajs_check.check_package(wajs.read_tarball(found, pin), pin.version)


def _print_report(app_ctx: AppContext, report: CheckReport) -> None:
    # One line each (soft-wrapped): a difference is copied and searched whole.
    for difference in report.differences:
        app_ctx.console.print(difference.line(), soft_wrap=True)
    app_ctx.console.print(report.summary(), soft_wrap=True)


@app.command("install")
def install(
    ctx: typer.Context,
    version: VersionOpt = None,
    integrity: Annotated[
        str | None,
        typer.Option(
            "--integrity",
            metavar="SRI",
            help="npm's dist.integrity of that version (sha512-...): required for a version "
            "other than the pinned one (`npm view @wppconnect/wa-js@VERSION dist.integrity`).",
            show_default=False,
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Fetch and write it again even when a verified copy exists."),
    ] = False,
    source: Annotated[
        InstallSource,
        typer.Option(
            "--source",
            case_sensitive=False,
            help="How to fetch it: npm pack, a direct HTTPS download of the registry's "
            "tarball, or auto (npm when it is on PATH).",
        ),
    ] = InstallSource.AUTO,
    json_output: JsonFlag = False,
) -> None:
    """Fetch @wppconnect/wa-js from the npm registry, verify it, store it and check it.

    The tarball must match its integrity (pinned in wactl, or given with --integrity)
    before anything is written; the bundle and the verified tarball go to <data
    dir>/wa-js/VERSION/. A failed or mismatching download installs nothing and leaves
    an earlier install as it was. Without --force, a verified install is kept and
    nothing is fetched. A version other than the pinned one is recorded in the
    database, so that workers on any host can fetch and verify it too. Then the
    contract check runs (as `wactl engine check`): a version that fails it stays
    installed, but tenants cannot be moved to it without --force. The whatsapp-web
    engine also installs its version on first use.

    Exit status 0 when installed and the check passes (or cannot run on a pinned
    install an older wactl made); 1 when the download or verification failed, or the
    check found differences; 2 for a missing or malformed --integrity; 6 when the
    database records that version with another integrity.
    """
    from wactl import wajs
    from wactl.db.wajs_releases import ContractMismatchError

    app_ctx = app_context(ctx)
    config = app_ctx.config
    pin = _pin_to_install(app_ctx, version, integrity)
    before = wajs.installed(config, pin)
    fetch = force or before is None or not before.verified
    use_npm = {InstallSource.AUTO: None, InstallSource.NPM: True, InstallSource.HTTPS: False}
    if fetch:
        npm = source is InstallSource.NPM or (
            source is InstallSource.AUTO and wajs.npm_executable() is not None
        )
        app_ctx.err_console.print(
            f"fetching {pin.spec} from {wajs.redact(wajs.registry_url(config))} "
            f"({'npm pack' if npm else 'https download'})",
            markup=False,
        )
    found = wajs.install(config, pin=pin, use_npm=use_npm[source], force=force)
    if fetch:
        app_ctx.changed(f"{pin.spec} was installed")
    if not pin.is_pinned:
        from wactl.db import audit, wajs_releases

        assert found.sha256 is not None, "a verified install records its sha256"
        with app_ctx.session() as session:
            wajs_releases.record_release(session, pin, found.sha256, actor=audit.operator_actor())
    report: CheckReport | None = None
    try:
        report = _check(found, pin)
    except wajs.WajsInstallError as exc:
        if not pin.is_pinned:
            raise
        # A pinned install by an older wactl: the engine runs it; only the check cannot.
        app_ctx.err_console.print(f"cannot check it: {exc.one_line()}", markup=False)
    if json_output:
        from wactl.cli.output import emit_json

        data = bundle_json(pin, found, str(found.path))
        data["check"] = report.as_json() if report is not None else None
        emit_json(data)
    elif not fetch:
        app_ctx.console.print(
            f"{pin.spec} is already installed and verified at {found.path}; "
            "--force fetches it again",
            soft_wrap=True,
            markup=False,
        )
    else:
        app_ctx.console.print(
            f"installed {pin.spec} ({found.integrity}) from {found.source} at {found.path}",
            soft_wrap=True,
            markup=False,
        )
    if report is not None and not json_output:
        _print_report(app_ctx, report)
    if report is not None and not report.ok:
        raise ContractMismatchError(
            f"{pin.spec} is installed, but {len(report.differences)} of its "
            f"{report.checked} checks differ from what wactl uses",
            hint="tenants cannot be moved to it (`tenant edit --wa-js`, `engine rollout`) "
            "without --force; a wactl release that supports it may be needed",
        )


@app.command("status")
def status(ctx: typer.Context, version: VersionOpt = None, json_output: JsonFlag = False) -> None:
    """Show where a wa-js version is installed and whether it still verifies.

    Exits 0 when it is installed and verified, 5 when it is not installed, 1 when the
    files on disk fail verification (the status is printed first in each case).
    """
    from wactl import wajs

    app_ctx = app_context(ctx)
    config = app_ctx.config
    pin = _recorded_pin(app_ctx, version)
    found = wajs.installed(config, pin)
    if json_output:
        from wactl.cli.output import emit_json

        emit_json(bundle_json(pin, found, str(wajs.bundle_path(config, pin))))
    else:
        _print_status(app_ctx, pin, found)
    _verified(app_ctx, pin)


def _print_status(app_ctx: AppContext, pin: Pin, found: InstalledBundle | None) -> None:
    from wactl import wajs
    from wactl.cli.console import print_fields
    from wactl.formatting import or_dash

    row = bundle_json(pin, found, str(wajs.bundle_path(app_ctx.config, pin)))
    if found is None:
        verified = "not installed"
    elif found.verified:
        verified = "yes"
    else:
        verified = f"NO: {found.problem}"
    kind = "pinned" if pin.is_pinned else "installed with --version"
    # A hash or a path too long to sit beside its label gets lines of its own.
    print_fields(
        app_ctx.console,
        [
            ("package", f"{row['package']} {row['version']} ({kind})"),
            ("pinned integrity", row["pinned_integrity"]),
            ("path", row["path"]),
            ("verified", verified),
            ("sha256", or_dash(row["sha256"])),
            ("installed at", or_dash(row["installed_at"])),
            ("source", or_dash(row["source"] and f"{row['source']} ({row['registry']})")),
        ],
    )


@app.command("check")
def check(ctx: typer.Context, version: VersionOpt = None, json_output: JsonFlag = False) -> None:
    """Check an installed wa-js against what wactl uses, offline, and say what changed.

    Reads the package's type declarations (dist/**/*.d.ts) from the tarball kept at
    install, after verifying it again, and compares every function signature, event
    payload, option, field and enum value the engine uses (the list in wactl's
    wajs_api module), then that the bundle emits every event and reports VERSION. Prints
    one line per item that differs (expected and found, or missing, or file missing)
    and a summary.

    Exit status 0 when everything matches; 1 when something differs, or the tarball on
    disk is missing (an install by an older wactl) or no longer verifies; 5 when the
    version is not installed.
    """
    app_ctx = app_context(ctx)
    pin = _recorded_pin(app_ctx, version)
    report = _check(_verified(app_ctx, pin), pin)
    if json_output:
        from wactl.cli.output import emit_json

        emit_json(report.as_json())
    else:
        _print_report(app_ctx, report)
    if not report.ok:
        raise typer.Exit(1)


def _restart_moved(app_ctx: AppContext, change: FleetChange) -> list[str]:
    """Ask the daemon to restart the running workers whose version changed; their slugs."""
    from wactl.cli.daemon_client import client_for
    from wactl.ipc.client import DaemonNotRunning

    moved = {move.slug for move in change.moves}
    if not moved:
        return []
    try:
        client = client_for(app_ctx, autostart=False)
    except DaemonNotRunning:
        app_ctx.err_console.print(
            "the daemon is not running: each worker runs its new version when it starts"
        )
        return []
    views = client.request("GET", "/v1/tenants")
    running = [
        view["slug"]
        for view in views
        if view["slug"] in moved and view["state"] in ("STARTING", "RUNNING", "BACKOFF")
    ]
    if not running:
        app_ctx.err_console.print(
            "none of them is running; each runs its new version when it starts"
        )
        return []
    answer = client.request("POST", "/v1/restart", {"tenants": running}, timeout=120)
    for message in answer.get("errors", []):
        app_ctx.err_console.print(f"error: {message}", markup=False)
    return [worker["slug"] for worker in answer["workers"]]


def _report_change(
    app_ctx: AppContext, change: FleetChange, *, restart: bool, json_output: bool
) -> None:
    """Print what changed (stderr, or the JSON object on stdout), restarting the running
    workers that moved unless not ``restart``."""
    if json_output:
        from wactl.cli.output import emit_json

        restarted = _restart_moved(app_ctx, change) if restart else []
        emit_json({**change.as_json(), "restarted": restarted})
        return
    say = app_ctx.err_console.print
    old, new = change.old_default, change.new_default
    if not change.changed:
        say(f"the fleet already runs {new.describe()}; nothing changed", markup=False)
        return
    say(f"fleet default: {old.describe()} -> {new.describe()}", markup=False)
    for slug, version in change.cleared.items():
        say(f"{slug}: its own wa-js {version} cleared", markup=False)
    for move in change.moves:
        say(f"{move.slug}: {move.old} -> {move.new}", markup=False)
    if not change.moves:
        say("no whatsapp-web tenant changes version", markup=False)
        return
    if not restart:
        return
    restarted = _restart_moved(app_ctx, change)
    if restarted:
        say(f"restarting: {', '.join(restarted)}", markup=False)


@app.command("rollout")
def rollout(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(metavar="VERSION", help="The wa-js version.")],
    force: Annotated[
        bool, typer.Option("--force", help="Roll it out even if `engine check` fails.")
    ] = False,
    no_restart: NoRestart = False,
    json_output: JsonFlag = False,
) -> None:
    """Make every tenant run wa-js VERSION: it becomes the fleet default, and every
    tenant's own version (a canary, `tenant edit --wa-js`) is cleared.

    VERSION must be the pinned one, or installed and verified on this host (`engine
    install --version`) and pass `wactl engine check`. Prints which whatsapp-web tenants
    move from which version to which, and asks the daemon to restart their running
    workers (unless --no-restart). Recorded in the audit trail. The fleet keeps VERSION
    until the next rollout or rollback, also across wactl upgrades.

    Exit status 2 when VERSION is not installed and verified here, 1 when it fails the
    check (see --force).
    """
    from wactl import wajs
    from wactl.db import audit, wajs_releases

    app_ctx = app_context(ctx)
    wajs.check_version(version, option="VERSION")
    with app_ctx.session() as session:
        pin = wajs_releases.vet(app_ctx.config, session, version, force=force)
        change = wajs_releases.rollout(session, pin, actor=audit.operator_actor())
    _report_change(app_ctx, change, restart=not no_restart, json_output=json_output)


@app.command("rollback")
def rollback(
    ctx: typer.Context, no_restart: NoRestart = False, json_output: JsonFlag = False
) -> None:
    """Make every tenant run the wa-js version pinned in this wactl again.

    Clears the fleet default a rollout set and every tenant's own version. Prints which
    whatsapp-web tenants move from which version to which, and asks the daemon to
    restart their running workers (unless --no-restart). Recorded in the audit trail.
    """
    from wactl.db import audit, wajs_releases

    app_ctx = app_context(ctx)
    with app_ctx.session() as session:
        change = wajs_releases.rollback(session, actor=audit.operator_actor())
    _report_change(app_ctx, change, restart=not no_restart, json_output=json_output)
