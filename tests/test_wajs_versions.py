"""Moving wa-js without a wactl release: install another version, check it, try it on
one tenant, roll it out to all or roll back (issue 12).

Real SQLite and PostgreSQL (``db_url``), real HTTP to a loopback npm registry serving
releases made from the real pinned tarball (`as_version`: the bundle and package.json
say the new version; one of them with a changed declaration), the CLI through its real
edge. The last test runs real workers under a real daemon on the WhatsApp Web
stand-in, to see the versions they run and the restarts a rollback asks for.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import CLI
from tests.support import db_session, poll_for
from tests.wajs_support import (
    CHECKS,
    LoopbackRegistry,
    as_version,
    loopback_registry,
    replace,
)
from wactl import wajs
from wactl.cli import manpage
from wactl.config import load_config
from wactl.config.model import Config, PathsConfig, WajsConfig
from wactl.db import wajs_releases
from wactl.db.models import PortalEventLog, WajsRelease
from wactl.errors import ExitCode

#: A release that declares everything as 4.6.0 does, and one whose sendTextMessage's
#: options became required.
GOOD = "4.7.0-wactl.1"
BAD = "4.8.0-wactl.1"
SEND_TEXT = "dist/chat/functions/sendTextMessage.d.ts"
DECLARED = (
    "export declare function sendTextMessage(chatId: any, content: any, "
    "options{}: TextMessageOptions): Promise<SendMessageReturn>;"
)
BAD_LINE = (
    f"function chat.sendTextMessage in {SEND_TEXT}: expected `{DECLARED.format('?')}`, "
    f"found `{DECLARED.format('')}`"
)


@pytest.fixture
def registry(pinned_tarball: bytes, monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackRegistry]:
    """The loopback registry with the pinned tarball, GOOD and BAD; wactl fetches there."""
    with loopback_registry() as started:
        started.publish(wajs.WAJS_VERSION, pinned_tarball)
        started.publish(GOOD, as_version(pinned_tarball, GOOD))
        started.publish(
            BAD,
            as_version(
                pinned_tarball,
                BAD,
                {SEND_TEXT: replace("options?: TextMessageOptions", "options: TextMessageOptions")},
            ),
        )
        monkeypatch.setenv("WACTL_WAJS_NPM_REGISTRY", started.url)
        yield started


def integrity(registry: LoopbackRegistry, version: str) -> str:
    return wajs.integrity_of(registry.tarballs[version])


def install(cli: CLI, registry: LoopbackRegistry, version: str, *more: str) -> Any:
    return cli(
        "engine",
        "install",
        "--version",
        version,
        "--integrity",
        integrity(registry, version),
        "--source",
        "https",
        *more,
    )


def pin_of(registry: LoopbackRegistry, version: str) -> wajs.Pin:
    return wajs.Pin(wajs.WAJS_PACKAGE, version, integrity(registry, version))


def host(root: Path, registry: LoopbackRegistry) -> Config:
    """The configuration of another host: its own data dir, the same registry."""
    return Config(
        paths=PathsConfig(data_dir=str(root / "data"), runtime_dir=str(root / "run")),
        wajs=WajsConfig(npm_registry=registry.url),
    )


def create(cli: CLI, slug: str, engine: str = "whatsapp-web") -> None:
    result = cli("tenant", "create", slug, "--name", slug.title(), "--engine", engine)
    assert result.code == 0, result.err


def shown(cli: CLI, slug: str) -> dict[str, Any]:
    result = cli("tenant", "show", slug, "--json")
    assert result.code == 0, result.err
    wa_js: dict[str, Any] = json.loads(result.out)["wa_js"]
    return wa_js


def events(db_url: str, event_type: str) -> list[PortalEventLog]:
    with db_session(db_url) as session:
        query = select(PortalEventLog).where(PortalEventLog.event_type == event_type)
        return list(session.scalars(query.order_by(PortalEventLog.id)))


# --- installing another version --------------------------------------------------------------


def test_install_another_version_records_it_keeps_the_tarball_and_checks_it(
    cli: CLI, db_url: str, registry: LoopbackRegistry
) -> None:
    sri = integrity(registry, GOOD)
    result = install(cli, registry, GOOD)

    config = load_config()
    path = wajs.bundle_path(config, pin_of(registry, GOOD))
    assert result.code == 0, result.err
    assert result.err == f"fetching @wppconnect/wa-js@{GOOD} from {registry.url} (https download)\n"
    assert result.out == (
        f"installed @wppconnect/wa-js@{GOOD} ({sri}) from https at {path}\n"
        f"@wppconnect/wa-js {GOOD}: all {CHECKS} checks match\n"
    )
    # The verified tarball is kept beside the bundle; the manifest names both.
    found = wajs.installed(config, pin_of(registry, GOOD))
    assert found is not None and found.verified
    assert found.tarball == path.with_name("package.tgz")
    assert found.tarball.read_bytes() == registry.tarballs[GOOD]
    # The database records it, with the bundle's sha256 from the install.
    with db_session(db_url) as session:
        release = session.get(WajsRelease, GOOD)
        assert release is not None
        assert (release.integrity, release.bundle_sha256) == (sri, found.sha256)
        assert release.actor.startswith("os:")
    [installed] = events(db_url, "wa_js.installed")
    assert installed.payload_json == {
        "version": GOOD,
        "integrity": sri,
        "bundle_sha256": found.sha256,
    }

    checked = cli("engine", "check", "--version", GOOD)
    assert (checked.code, checked.err) == (0, "")
    assert checked.out == f"@wppconnect/wa-js {GOOD}: all {CHECKS} checks match\n"
    as_json = json.loads(cli("engine", "check", "--version", GOOD, "--json").out)
    assert list(as_json) == [key for key, _ in manpage.WAJS_CHECK_KEYS][:5]
    assert as_json == {
        "package": "@wppconnect/wa-js",
        "version": GOOD,
        "ok": True,
        "checked": CHECKS,
        "differences": [],
    }
    status = cli("engine", "status", "--version", GOOD, "--json")
    assert status.code == 0, status.err
    assert json.loads(status.out) | {"installed_at": None} == {
        "package": "@wppconnect/wa-js",
        "version": GOOD,
        "pinned": False,
        "pinned_integrity": sri,
        "path": str(path),
        "installed": True,
        "verified": True,
        "problem": None,
        "integrity": sri,
        "sha256": found.sha256,
        "tarball": str(found.tarball),
        "source": "https",
        "registry": registry.url,
        "installed_at": None,
    }

    # Again: nothing fetched, nothing recorded twice.
    again = install(cli, registry, GOOD)
    assert again.code == 0, again.err
    assert again.out.startswith(f"@wppconnect/wa-js@{GOOD} is already installed and verified")
    assert len(registry.tarball_requests()) == 1
    assert len(events(db_url, "wa_js.installed")) == 1


def test_a_changed_declaration_is_reported_and_the_version_stays_installed(
    cli: CLI, db_url: str, registry: LoopbackRegistry
) -> None:
    result = install(cli, registry, BAD)

    path = wajs.bundle_path(load_config(), pin_of(registry, BAD))
    summary = f"@wppconnect/wa-js {BAD}: 1 of {CHECKS} checks differs from what wactl uses"
    assert result.code == ExitCode.FAILURE
    assert result.out == (
        f"installed @wppconnect/wa-js@{BAD} ({integrity(registry, BAD)}) from https at {path}\n"
        f"{BAD_LINE}\n{summary}\n"
    )
    assert result.err.splitlines()[-1] == (
        f"error: @wppconnect/wa-js@{BAD} is installed, but 1 of its {CHECKS} checks differ "
        "from what wactl uses; tenants cannot be moved to it (`tenant edit --wa-js`, `engine "
        "rollout`) without --force; a wactl release that supports it may be needed"
    )
    found = wajs.installed(load_config(), pin_of(registry, BAD))
    assert found is not None and found.verified  # installed, and recorded
    with db_session(db_url) as session:
        assert session.get(WajsRelease, BAD) is not None

    checked = cli("engine", "check", "--version", BAD)
    assert checked.code == ExitCode.FAILURE
    assert (checked.out, checked.err) == (f"{BAD_LINE}\n{summary}\n", "")
    as_json = json.loads(cli("engine", "check", "--version", BAD, "--json").out)
    assert as_json["ok"] is False
    assert as_json["differences"] == [
        {
            "kind": "function",
            "name": "chat.sendTextMessage",
            "file": SEND_TEXT,
            "problem": "differs",
            "expected": DECLARED.format("?"),
            "found": DECLARED.format(""),
        }
    ]
    assert list(as_json["differences"][0]) == [
        key.removeprefix("differences[].")
        for key, _ in manpage.WAJS_CHECK_KEYS
        if key.startswith("differences[].")
    ]


def test_what_a_package_declares_is_printed_as_data(
    cli: CLI, db_url: str, registry: LoopbackRegistry, pinned_tarball: bytes
) -> None:
    """A declaration with terminal escapes and Rich markup in it: shown, not obeyed."""
    version = "4.9.0-wactl.1"
    registry.publish(
        version,
        as_version(
            pinned_tarball,
            version,
            {SEND_TEXT: replace("options?: TextMessageOptions", "o: '\x1b]0;x\x07[bold]b[/bold]'")},
        ),
    )
    assert install(cli, registry, version).code == ExitCode.FAILURE
    checked = cli("engine", "check", "--version", version)
    assert checked.code == ExitCode.FAILURE
    assert "found `export declare function sendTextMessage(chatId: any, content: any, o: " in (
        checked.out
    )
    assert "'\\x1b]0;x\\x07[bold]b[/bold]')" in checked.out
    assert "\x1b" not in checked.out and "\x07" not in checked.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        pytest.param(
            ["--version", GOOD],
            f"--integrity is required for wa-js {GOOD} (wactl pins 4.6.0); give npm's "
            f"dist.integrity of that version: `npm view @wppconnect/wa-js@{GOOD} dist.integrity`",
            id="no-integrity",
        ),
        pytest.param(
            ["--version", GOOD, "--integrity", "sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk="],
            "--integrity 'sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk=' is not an SRI hash (sha512-...); "
            "give npm's dist.integrity of that version: "
            "`npm view @wppconnect/wa-js@VERSION dist.integrity`",
            id="not-sri",
        ),
        pytest.param(
            ["--version", GOOD, "--integrity", "sha512-not*base64"],
            "--integrity 'sha512-not*base64' is not valid base64 after 'sha512-'; give npm's "
            "dist.integrity of that version: `npm view @wppconnect/wa-js@VERSION dist.integrity`",
            id="not-base64",
        ),
        pytest.param(
            ["--version", GOOD, "--integrity", "sha512-" + "A" * 43 + "="],
            f"--integrity 'sha512-{'A' * 43}=' holds 32 bytes, not the 64 of sha512; give "
            "npm's dist.integrity of that version: "
            "`npm view @wppconnect/wa-js@VERSION dist.integrity`",
            id="short-digest",
        ),
        pytest.param(
            ["--version", "../../etc", "--integrity", wajs.WAJS_INTEGRITY],
            "--version '../../etc' is not a wa-js version; give an npm version, such as 4.6.0 "
            "(`npm view @wppconnect/wa-js versions`)",
            id="not-a-version",
        ),
        pytest.param(
            ["--version", "4.6.0", "--integrity", "sha512-" + "A" * 86 + "=="],
            f"--integrity sha512-{'A' * 86}== is not the one pinned for wa-js 4.6.0 "
            f"({wajs.WAJS_INTEGRITY}); leave --integrity out for the pinned version",
            id="pinned-with-another-integrity",
        ),
    ],
)
def test_bad_install_input_is_one_line_and_fetches_nothing(
    cli: CLI, registry: LoopbackRegistry, args: list[str], message: str
) -> None:
    result = cli("engine", "install", *args)
    assert (result.code, result.out, result.err) == (ExitCode.USAGE, "", f"error: {message}\n")
    assert registry.requests == []
    assert not (load_config().data_dir / "wa-js").exists()


def test_the_pinned_version_may_name_its_own_integrity(
    cli: CLI, registry: LoopbackRegistry
) -> None:
    result = cli(
        "engine", "install", "--version", "4.6.0", "--integrity", wajs.WAJS_INTEGRITY, "--json"
    )
    assert result.code == 0, result.err
    assert json.loads(result.out)["pinned"] is True


def test_a_wrong_integrity_installs_and_records_nothing(
    cli: CLI, db_url: str, registry: LoopbackRegistry
) -> None:
    claimed = integrity(registry, BAD)  # well formed, but of other bytes
    result = cli(
        "engine", "install", "--version", GOOD, "--integrity", claimed, "--source", "https"
    )
    url = f"{registry.url}/@wppconnect/wa-js/-/wa-js-{GOOD}.tgz"
    assert result.code == ExitCode.FAILURE
    assert result.err.splitlines()[-1] == (
        f"error: @wppconnect/wa-js@{GOOD} from {url} does not match the pinned integrity (got "
        f"{integrity(registry, GOOD)}, pinned {claimed}); nothing was installed; the registry, "
        "a mirror or a proxy served other bytes; check wajs.npm_registry and "
        "npm_config_registry, then retry"
    )
    assert not (load_config().data_dir / "wa-js").exists()
    with db_session(db_url) as session:
        assert session.scalars(select(WajsRelease)).all() == []


def test_one_version_has_one_tarball(cli: CLI, db_url: str, registry: LoopbackRegistry) -> None:
    assert install(cli, registry, GOOD).code == 0
    recorded = integrity(registry, GOOD)
    other = integrity(registry, BAD)
    result = cli("engine", "install", "--version", GOOD, "--integrity", other)
    assert (result.code, result.out) == (ExitCode.CONFLICT, "")
    assert result.err == (
        f"error: wa-js {GOOD} is recorded with integrity {recorded}, not {other}; one version "
        "has one tarball: check the integrity you gave "
        f"(`npm view @wppconnect/wa-js@{GOOD} dist.integrity`)\n"
    )
    assert len(registry.tarball_requests()) == 1


def test_files_changed_on_disk_are_refused(
    cli: CLI, db_url: str, registry: LoopbackRegistry
) -> None:
    assert install(cli, registry, GOOD).code == 0
    pin = pin_of(registry, GOOD)
    found = wajs.installed(load_config(), pin)
    assert found is not None and found.tarball is not None
    repair = f"run `wactl engine install --version {GOOD} --integrity {pin.integrity} --force`"

    tampered = found.tarball.read_bytes() + b"\0"
    found.tarball.write_bytes(tampered)
    message = (
        f"the package tarball {found.tarball} was changed after install (integrity "
        f"{wajs.integrity_of(tampered)[:19]}..., recorded {pin.integrity[:19]}...); {repair}"
    )
    checked = cli("engine", "check", "--version", GOOD)
    assert (checked.code, checked.out, checked.err) == (
        ExitCode.FAILURE,
        "",
        f"error: {message}\n",
    )
    create(cli, "shop")
    edited = cli("tenant", "edit", "shop", "--wa-js", GOOD)
    assert (edited.code, edited.err) == (ExitCode.USAGE, f"error: {message}\n")

    found.tarball.unlink()
    checked = cli("engine", "check", "--version", GOOD)
    assert checked.err == f"error: the package tarball {found.tarball} is missing; {repair}\n"

    found.path.write_bytes(b"window.stolen = true;\n")
    checked = cli("engine", "check", "--version", GOOD)
    assert checked.code == ExitCode.FAILURE
    assert checked.err.startswith(
        f"error: the installed @wppconnect/wa-js@{GOOD} fails verification: the bundle "
        f"{found.path} was changed after install (sha256 "
    )
    assert checked.err.endswith(f"; {repair}\n")

    assert install(cli, registry, GOOD, "--force").code == 0
    assert cli("engine", "check", "--version", GOOD).code == 0
    assert cli("tenant", "edit", "shop", "--wa-js", GOOD).code == 0


def test_a_pinned_install_by_an_older_wactl_still_runs_and_check_says_what_to_do(
    cli: CLI, registry: LoopbackRegistry
) -> None:
    assert cli("engine", "install", "--source", "https").code == 0
    config = load_config()
    directory = wajs.version_dir(config)
    # What wactl before this change left: no tarball, a manifest without it.
    (directory / "package.tgz").unlink()
    manifest = json.loads((directory / "manifest.json").read_text())
    del manifest["tarball"]
    (directory / "manifest.json").write_text(json.dumps(manifest))

    assert cli("engine", "status").code == 0
    assert wajs.ensure_installed(config).verified  # what the engine calls: no fetch
    assert len(registry.tarball_requests()) == 1
    message = (
        f"@wppconnect/wa-js@4.6.0 in {directory} has no package tarball (an older wactl "
        "installed it without one); run `wactl engine install --force`"
    )
    checked = cli("engine", "check")
    assert (checked.code, checked.out, checked.err) == (
        ExitCode.FAILURE,
        "",
        f"error: {message}\n",
    )
    kept = cli("engine", "install")
    assert kept.code == 0, kept.err
    assert kept.err == f"cannot check it: {message}\n"

    assert cli("engine", "install", "--force", "--source", "https").code == 0
    assert cli("engine", "check").out == f"@wppconnect/wa-js 4.6.0: all {CHECKS} checks match\n"


def test_check_of_a_version_that_is_not_installed(cli: CLI, db_url: str) -> None:
    result = cli("engine", "check", "--version", "9.9.9")
    assert (result.code, result.err) == (
        ExitCode.NOT_FOUND,
        "error: wa-js 9.9.9 is not installed (no record of it); run `wactl engine install "
        "--version 9.9.9 --integrity sha512-...`\n",
    )
    pinned = cli("engine", "check")
    assert pinned.code == ExitCode.NOT_FOUND
    assert pinned.err.startswith("error: @wppconnect/wa-js@4.6.0 is not installed in ")


def test_another_host_installs_a_release_from_its_record(
    cli: CLI, db_url: str, registry: LoopbackRegistry, tmp_path: Path
) -> None:
    """A worker elsewhere needs only the database: the record is the pin it fetches and
    verifies with (integrity and bundle sha256), whatever the registry serves."""
    assert install(cli, registry, GOOD).code == 0
    with db_session(db_url) as session:
        pin = wajs_releases.release_pin(session, GOOD)
    assert pin is not None and pin.bundle_sha256 is not None
    found = wajs.ensure_installed(host(tmp_path / "b", registry), pin)
    assert found.verified
    assert found.path.read_bytes() == wajs.bundle_path(load_config(), pin).read_bytes()

    registry.publish(GOOD, registry.tarballs[BAD])
    with pytest.raises(wajs.WajsInstallError, match="does not match the pinned integrity"):
        wajs.ensure_installed(host(tmp_path / "c", registry), pin)
    assert not (tmp_path / "c" / "wa-js").exists()


# --- a canary -----------------------------------------------------------------------------------


def test_one_tenant_runs_another_version(cli: CLI, db_url: str, registry: LoopbackRegistry) -> None:
    from wactl.bot.worker import load_tenant
    from wactl.db.engine import make_engine

    assert install(cli, registry, GOOD).code == 0
    for slug in ("alpha", "beta"):
        create(cli, slug)

    result = cli("tenant", "edit", "alpha", "--wa-js", GOOD)
    assert result.code == 0, result.err
    assert result.err == (
        f"alpha: wa_js: default -> {GOOD}\n"
        "alpha: the worker runs it from its next start (`wactl tenant restart alpha`)\n"
    )
    assert shown(cli, "alpha") == {"version": GOOD, "source": "tenant"}
    assert shown(cli, "beta") == {"version": "4.6.0", "source": "pinned"}
    human = cli("tenant", "show", "alpha").out
    assert f"wa-js          {GOOD} (canary; the fleet runs 4.6.0)" in human
    with db_session(db_url) as session:
        [edited] = session.scalars(
            select(PortalEventLog).where(PortalEventLog.event_type == "tenant.edited")
        ).all()
        assert (edited.tenant_slug, edited.payload_json) == (
            "alpha",
            {"wa_js": {"old": None, "new": GOOD}},
        )
        assert edited.actor.startswith("os:")

    # The worker resolves the same: the release's pin, bundle sha256 included.
    engine = make_engine(db_url)
    try:
        alpha, beta = load_tenant(engine, "alpha"), load_tenant(engine, "beta")
    finally:
        engine.dispose()
    assert alpha.wa_js == wajs.Pin(
        wajs.WAJS_PACKAGE, GOOD, integrity(registry, GOOD), alpha.wa_js.bundle_sha256
    )
    assert alpha.wa_js.bundle_sha256 is not None
    assert beta.wa_js == wajs.PINNED

    again = cli("tenant", "edit", "alpha", "--wa-js", GOOD)
    assert again.err == "alpha: already like that; nothing changed\n"
    back = cli("tenant", "edit", "alpha", "--wa-js", "default", "--json")
    assert json.loads(back.out) == {"wa_js": {"old": GOOD, "new": None}}
    assert shown(cli, "alpha") == {"version": "4.6.0", "source": "pinned"}


def test_a_sandbox_tenant_keeps_a_version_for_later(
    cli: CLI, db_url: str, registry: LoopbackRegistry
) -> None:
    assert install(cli, registry, GOOD).code == 0
    create(cli, "play", engine="sandbox")
    result = cli("tenant", "edit", "play", "--wa-js", GOOD)
    assert result.code == 0, result.err
    assert result.err.splitlines()[-1] == (
        "play: the sandbox engine runs no wa-js; the version applies once the tenant uses "
        "whatsapp-web"
    )
    assert shown(cli, "play") == {"version": GOOD, "source": "tenant"}
    assert (
        f"{GOOD} (canary; the fleet runs 4.6.0); unused by the sandbox engine"
        in cli("tenant", "show", "play").out
    )


def test_a_canary_must_be_installed_verified_and_pass_the_check(
    cli: CLI, db_url: str, registry: LoopbackRegistry
) -> None:
    create(cli, "shop")

    def edit(version: str, *more: str) -> Any:
        return cli("tenant", "edit", "shop", "--wa-js", version, *more)

    unknown = edit("9.9.9")
    assert (unknown.code, unknown.err) == (
        ExitCode.USAGE,
        "error: wa-js 9.9.9 is not installed (no record of it); install it first: `wactl "
        "engine install --version 9.9.9 --integrity sha512-...`\n",
    )
    malformed = edit("latest")
    assert (malformed.code, malformed.err) == (
        ExitCode.USAGE,
        "error: --wa-js 'latest' is not a wa-js version; give an npm version, such as 4.6.0 "
        "(`npm view @wppconnect/wa-js versions`)\n",
    )

    assert install(cli, registry, BAD).code == ExitCode.FAILURE
    failing = edit(BAD)
    assert (failing.code, failing.err) == (
        ExitCode.FAILURE,
        f"error: wa-js {BAD} differs from what wactl uses: {BAD_LINE}; see `wactl engine check "
        f"--version {BAD}`; --force uses it anyway\n",
    )
    assert shown(cli, "shop")["source"] == "pinned"
    forced = edit(BAD, "--force")
    assert forced.code == 0, forced.err
    assert shown(cli, "shop") == {"version": BAD, "source": "tenant"}

    # Recorded (installed on another host), but not installed on this one.
    assert install(cli, registry, GOOD).code == 0
    shutil.rmtree(wajs.version_dir(load_config(), pin_of(registry, GOOD)))
    elsewhere = edit(GOOD)
    assert (elsewhere.code, elsewhere.err) == (
        ExitCode.USAGE,
        f"error: wa-js {GOOD} is not installed on this host; run `wactl engine install "
        f"--version {GOOD} --integrity {integrity(registry, GOOD)}`\n",
    )
    assert cli("tenant", "edit", "nobody", "--wa-js", "4.6.0").code == ExitCode.NOT_FOUND


def test_the_pinned_version_is_recorded_when_a_tenant_names_it(
    cli: CLI, db_url: str, registry: LoopbackRegistry
) -> None:
    """Named explicitly, 4.6.0 must stay fetchable by a host whose wactl pins another."""
    create(cli, "shop")
    result = cli("tenant", "edit", "shop", "--wa-js", "4.6.0")
    assert result.code == 0, result.err
    assert registry.requests == []  # the pinned version needs nothing on this host now
    with db_session(db_url) as session:
        release = session.get(WajsRelease, "4.6.0")
        assert release is not None
        assert (release.integrity, release.bundle_sha256) == (
            wajs.WAJS_INTEGRITY,
            wajs.WAJS_BUNDLE_SHA256,
        )
    assert shown(cli, "shop") == {"version": "4.6.0", "source": "tenant"}


# --- the whole fleet ------------------------------------------------------------------------------


def test_rollout_and_rollback(cli: CLI, db_url: str, registry: LoopbackRegistry) -> None:
    assert install(cli, registry, GOOD).code == 0
    for slug in ("alpha", "beta"):
        create(cli, slug)
    create(cli, "play", engine="sandbox")
    assert cli("tenant", "edit", "alpha", "--wa-js", GOOD).code == 0
    assert cli("tenant", "edit", "play", "--wa-js", GOOD).code == 0

    out = cli("engine", "rollout", GOOD)
    assert out.code == 0, out.err
    assert out.err == (
        f"fleet default: 4.6.0 (pinned in wactl) -> {GOOD} (fleet default)\n"
        f"alpha: its own wa-js {GOOD} cleared\n"
        f"play: its own wa-js {GOOD} cleared\n"
        f"beta: 4.6.0 -> {GOOD}\n"
        "the daemon is not running: each worker runs its new version when it starts\n"
    )
    for slug in ("alpha", "beta", "play"):
        assert shown(cli, slug) == {"version": GOOD, "source": "fleet"}
    [rolled_out] = events(db_url, "wa_js.rolled_out")
    assert rolled_out.tenant_slug is None and rolled_out.actor.startswith("os:")
    assert rolled_out.payload_json == {
        "fleet_default": {
            "old": {"version": "4.6.0", "source": "pinned"},
            "new": {"version": GOOD, "source": "fleet"},
        },
        "cleared": [{"tenant": "alpha", "version": GOOD}, {"tenant": "play", "version": GOOD}],
        "moves": [{"tenant": "beta", "from": "4.6.0", "to": GOOD}],
    }
    assert [(e.tenant_slug, e.payload_json) for e in events(db_url, "wa_js.moved")] == [
        ("beta", {"from": "4.6.0", "to": GOOD, "by": "wa_js.rolled_out"})
    ]

    same = cli("engine", "rollout", GOOD, "--no-restart")
    assert same.err == f"the fleet already runs {GOOD} (fleet default); nothing changed\n"
    assert len(events(db_url, "wa_js.rolled_out")) == 1

    # A failing version is refused and nothing changes.
    assert install(cli, registry, BAD).code == ExitCode.FAILURE
    refused = cli("engine", "rollout", BAD)
    assert refused.code == ExitCode.FAILURE
    assert refused.err.startswith(f"error: wa-js {BAD} differs from what wactl uses: ")
    assert cli("engine", "rollout", "9.9.9").code == ExitCode.USAGE
    assert shown(cli, "beta") == {"version": GOOD, "source": "fleet"}

    back = cli("engine", "rollback", "--no-restart", "--json")
    assert back.code == 0, back.err
    change = json.loads(back.out)
    assert list(change) == [key for key, _ in manpage.WAJS_FLEET_KEYS]
    assert change == {
        "fleet_default": {
            "old": {"version": GOOD, "source": "fleet"},
            "new": {"version": "4.6.0", "source": "pinned"},
        },
        "cleared": [],
        "moves": [
            {"tenant": "alpha", "from": GOOD, "to": "4.6.0"},
            {"tenant": "beta", "from": GOOD, "to": "4.6.0"},
        ],
        "restarted": [],
    }
    for slug in ("alpha", "beta", "play"):
        assert shown(cli, slug) == {"version": "4.6.0", "source": "pinned"}
    assert len(events(db_url, "wa_js.rolled_back")) == 1
    again = cli("engine", "rollback")
    assert again.err == "the fleet already runs 4.6.0 (pinned in wactl); nothing changed\n"

    # The pinned version by name: the fleet keeps it even when wactl pins another later.
    pinned = cli("engine", "rollout", "4.6.0", "--no-restart")
    assert pinned.err.splitlines() == [
        "fleet default: 4.6.0 (pinned in wactl) -> 4.6.0 (fleet default)",
        "no whatsapp-web tenant changes version",
    ]
    assert shown(cli, "alpha") == {"version": "4.6.0", "source": "fleet"}


def test_effective_is_override_then_fleet_then_pinned() -> None:
    def release(version: str) -> WajsRelease:
        return WajsRelease(version=version, integrity="sha512-x", bundle_sha256="ab" * 32)

    assert wajs_releases.effective(None, None) == wajs_releases.Effective(
        wajs.PINNED, "pinned", "4.6.0"
    )
    fleet = wajs_releases.effective(None, release("4.7.0"))
    assert (fleet.version, fleet.source, fleet.is_canary) == ("4.7.0", "fleet", False)
    assert fleet.pin == wajs.Pin(wajs.WAJS_PACKAGE, "4.7.0", "sha512-x", "ab" * 32)
    canary = wajs_releases.effective(release("4.8.0"), release("4.7.0"))
    assert (canary.version, canary.source, canary.is_canary) == ("4.8.0", "tenant", True)
    assert canary.describe() == "4.8.0 (canary; the fleet runs 4.7.0)"
    # A record of the pinned version resolves to the pin in the code.
    assert wajs_releases.effective(release("4.6.0"), None).pin is wajs.PINNED


def test_doctor_lists_the_versions_in_use(
    cli: CLI, db_url: str, registry: LoopbackRegistry
) -> None:
    assert cli("init").code == 0
    assert install(cli, registry, GOOD).code == 0
    for slug in ("alpha", "beta"):
        create(cli, slug)
    assert cli("tenant", "edit", "alpha", "--wa-js", GOOD).code == 0
    result = cli("doctor", "--json")
    lines = [c for c in json.loads(result.out)["checks"] if c["name"] == "wa-js"]
    path = wajs.bundle_path(load_config(), pin_of(registry, GOOD))
    assert lines == [
        {
            "name": "wa-js",
            "status": "warn",
            "detail": "@wppconnect/wa-js 4.6.0 (fleet default, pinned in wactl, 1 whatsapp-web "
            "tenant(s)) is not installed on this host",
            "fix": "`wactl engine install` (the whatsapp-web engine also does on first use)",
        },
        {
            "name": "wa-js",
            "status": "ok",
            "detail": f"@wppconnect/wa-js {GOOD} (1 whatsapp-web tenant(s)), integrity "
            f"verified ({path})",
            "fix": None,
        },
    ]


# --- the dashboard ------------------------------------------------------------------------------


def test_the_detail_pane_marks_a_canary() -> None:
    from wactl.tui.data import TenantDetail
    from wactl.tui.screens import _wa_js_text

    fleet = TenantDetail("shop", wa_js=GOOD, wa_js_fleet="4.6.0")
    assert _wa_js_text(GOOD, fleet).plain == f"{GOOD} (canary)"
    assert _wa_js_text("4.6.0", TenantDetail("shop", wa_js="4.6.0", wa_js_fleet="4.6.0")).plain == (
        "4.6.0"
    )
    # Rolled back while it ran: what it runs now, and what its next start runs.
    moved = TenantDetail("shop", wa_js="4.6.0", wa_js_fleet="4.6.0")
    assert _wa_js_text(GOOD, moved).plain == f"{GOOD} (canary)  4.6.0 from its next start"


# --- real workers -------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_workers_report_their_version_and_a_rollback_restarts_the_moved_ones(
    cli: CLI,
    db_url: str,
    registry: LoopbackRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A whatsapp-web worker on the stand-in and a sandbox worker under a real daemon:
    `ps --json` shows what each injects; a rollback restarts only the worker it moves."""
    from tests.chromium_support import chromium_executable
    from tests.daemon_support import daemon_for_cli
    from tests.wa_standin import FAKE_WPP, running_standin

    chromium_executable()
    assert install(cli, registry, GOOD).code == 0
    create(cli, "web")
    create(cli, "play", engine="sandbox")
    with running_standin() as standin:
        env = {
            "WACTL_BROWSER_URL": standin.url,
            "WACTL_BROWSER_WA_JS_PATH": str(FAKE_WPP),
            "WACTL_DAEMON_HEARTBEAT_TIMEOUT_SECONDS": "15",
        }
        with daemon_for_cli(monkeypatch, env) as daemon:
            assert cli("tenant", "start", "web", "play").code == 0

            def ps() -> dict[str, dict[str, Any]]:
                return daemon.ps()

            poll_for(lambda: ps()["web"]["wa_js_version"] == "4.6.0", timeout=60)
            assert ps()["play"]["wa_js_version"] is None
            listed = json.loads(cli("ps", "--json").out)
            assert {row["slug"]: row["wa_js_version"] for row in listed} == {
                "web": "4.6.0",
                "play": None,
            }

            assert cli("tenant", "edit", "web", "--wa-js", GOOD).code == 0
            assert cli("tenant", "restart", "web").code == 0
            poll_for(lambda: ps()["web"]["wa_js_version"] == GOOD, timeout=60)
            pids = {slug: row["pid"] for slug, row in ps().items()}

            # The canary's version becomes the fleet's: nobody moves, nobody restarts.
            rolled = cli("engine", "rollout", GOOD)
            assert rolled.code == 0, rolled.err
            assert rolled.err.splitlines()[-1] == "no whatsapp-web tenant changes version"
            assert {slug: row["pid"] for slug, row in ps().items()} == pids

            back = cli("engine", "rollback", "--json")
            assert back.code == 0, back.err
            assert json.loads(back.out)["restarted"] == ["web"]
            poll_for(
                lambda: (
                    ps()["web"]["wa_js_version"] == "4.6.0"
                    and ps()["web"]["pid"] not in (None, pids["web"])
                ),
                timeout=60,
            )
            assert ps()["play"]["pid"] == pids["play"]
            assert cli("tenant", "stop", "web", "play").code == 0
    restarts = [e for e in events(db_url, "worker.restart") if e.tenant_slug == "web"]
    assert len(restarts) == 2  # the operator's, then the rollback's
