"""`wactl.wajs` and `wactl engine install | status`: fetch, verify, store, re-verify.

Everything goes over real HTTP to a registry on loopback (tests/wajs_support.py) or, in
the npm tests, through the real `npm` against that registry. Most tests use a tarball
the test builds and a pin made for it; the CLI tests serve the real pinned tarball
(fetched once per run from the real npm registry by the ``pinned_tarball`` fixture) so
that `wactl engine install` runs with the pin compiled into wactl. One test installs
straight from the real registry: it is what proves the pin is right.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import CLI, skip_or_fail_offline
from tests.wajs_support import (
    BUNDLE,
    CHECKS,
    TEST_VERSION,
    LoopbackRegistry,
    Member,
    good_tarball,
    loopback_registry,
    make_tarball,
    pin_for,
    tree,
)
from wactl import wajs, wajs_api
from wactl.cli import manpage
from wactl.config import Config, load_config
from wactl.errors import ExitCode

needs_npm = pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")


@pytest.fixture
def config() -> Config:
    return load_config()


@pytest.fixture
def registry() -> Iterator[LoopbackRegistry]:
    with loopback_registry() as started:
        yield started


def _install(
    config: Config, registry: LoopbackRegistry, pin: wajs.Pin, **kwargs: object
) -> wajs.InstalledBundle:
    options: dict[str, object] = {"registry": registry.url, "use_npm": False, **kwargs}
    return wajs.install(config, pin=pin, **options)  # type: ignore[arg-type]


def _manifest(config: Config, pin: wajs.Pin) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(
        (wajs.version_dir(config, pin) / wajs.MANIFEST_NAME).read_text(encoding="utf-8")
    )
    return loaded


# --- a good install ---------------------------------------------------------------------------


def test_https_install_stores_the_bundle_and_a_manifest(
    config: Config, registry: LoopbackRegistry
) -> None:
    data = good_tarball()
    pin = pin_for(data)
    registry.publish(TEST_VERSION, data)

    found = _install(config, registry, pin)

    directory = config.data_dir / "wa-js" / TEST_VERSION
    assert found.path == directory / "wppconnect-wa.js" == wajs.bundle_path(config, pin)
    assert found.path.read_bytes() == BUNDLE
    assert found.verified and found.problem is None
    assert (found.source, found.registry, found.integrity) == ("https", registry.url, pin.integrity)
    # Exactly the bundle, the verified tarball and the manifest: no temporary files,
    # nothing extracted from the tarball but the bundle.
    assert sorted(p.name for p in directory.iterdir()) == [
        "manifest.json",
        "package.tgz",
        "wppconnect-wa.js",
    ]
    assert found.path.stat().st_mode & 0o777 == 0o644
    assert found.tarball == directory / "package.tgz"
    assert found.tarball.read_bytes() == data
    assert wajs.read_tarball(found, pin) == data
    manifest = _manifest(config, pin)
    assert list(manifest) == [
        "package",
        "version",
        "integrity",
        "sha256",
        "tarball",
        "source",
        "registry",
        "installed_at",
    ]
    assert manifest["tarball"] == "package.tgz"
    import hashlib

    assert manifest["sha256"] == hashlib.sha256(BUNDLE).hexdigest() == found.sha256
    assert manifest["version"] == TEST_VERSION and manifest["package"] == "@wppconnect/wa-js"
    assert registry.tarball_requests() == [f"/@wppconnect/wa-js/-/wa-js-{TEST_VERSION}.tgz"]
    assert wajs.installed(config, pin) == found


def test_reinstall_is_idempotent_and_force_fetches_again(
    config: Config, registry: LoopbackRegistry
) -> None:
    data = good_tarball()
    pin = pin_for(data)
    registry.publish(TEST_VERSION, data)
    first = _install(config, registry, pin)
    manifest = _manifest(config, pin)

    again = _install(config, registry, pin)
    assert again == first
    assert _manifest(config, pin) == manifest
    assert len(registry.tarball_requests()) == 1  # nothing fetched the second time

    forced = _install(config, registry, pin, force=True)
    assert len(registry.tarball_requests()) == 2
    assert forced.verified and forced.path.read_bytes() == BUNDLE


def test_installs_at_once_fetch_once(config: Config, registry: LoopbackRegistry) -> None:
    """Workers starting together (ensure_installed) queue on a lock: one download."""
    data = good_tarball()
    pin = pin_for(data)
    registry.publish(TEST_VERSION, data)
    results: list[wajs.InstalledBundle] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(_install(config, registry, pin))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(results) == 4 and all(r.verified for r in results)
    assert len(registry.tarball_requests()) == 1
    # The lock file is in the runtime dir, not beside the bundle.
    assert (config.runtime_dir / "wa-js-install.lock").exists()


# --- failures leave nothing half-installed -------------------------------------------------


def test_integrity_mismatch_is_refused_and_nothing_is_written(
    config: Config, registry: LoopbackRegistry
) -> None:
    served = good_tarball(b"/* not the pinned bytes */\n")
    pin = pin_for(good_tarball())
    registry.publish(TEST_VERSION, served)

    with pytest.raises(wajs.WajsInstallError) as caught:
        _install(config, registry, pin)

    url = f"{registry.url}/@wppconnect/wa-js/-/wa-js-{TEST_VERSION}.tgz"
    assert caught.value.one_line() == (
        f"@wppconnect/wa-js@{TEST_VERSION} from {url} does not match the pinned integrity "
        f"(got {wajs.integrity_of(served)}, pinned {pin.integrity}); nothing was installed; "
        "the registry, a mirror or a proxy served other bytes; check wajs.npm_registry and "
        "npm_config_registry, then retry"
    )
    assert caught.value.exit_code == ExitCode.FAILURE
    assert not (config.data_dir / "wa-js").exists()
    assert wajs.installed(config, pin) is None


def test_a_failed_install_leaves_the_previous_one_untouched(
    config: Config, registry: LoopbackRegistry
) -> None:
    data = good_tarball()
    pin = pin_for(data)
    registry.publish(TEST_VERSION, data)
    _install(config, registry, pin)
    before = tree(config.data_dir)
    mtime = wajs.bundle_path(config, pin).stat().st_mtime_ns

    registry.publish(TEST_VERSION, good_tarball(b"/* tampered */\n"))
    with pytest.raises(wajs.WajsInstallError, match="does not match the pinned integrity"):
        _install(config, registry, pin, force=True)

    assert tree(config.data_dir) == before
    assert wajs.bundle_path(config, pin).stat().st_mtime_ns == mtime
    found = wajs.installed(config, pin)
    assert found is not None and found.verified


def test_truncated_download(config: Config, registry: LoopbackRegistry) -> None:
    data = good_tarball()
    pin = pin_for(data)
    registry.publish(TEST_VERSION, data)
    registry.cut_after = len(data) // 2

    with pytest.raises(wajs.WajsInstallError) as caught:
        _install(config, registry, pin)

    url = f"{registry.url}/@wppconnect/wa-js/-/wa-js-{TEST_VERSION}.tgz"
    assert caught.value.one_line() == (
        f"the download of {url} was cut short (got {len(data) // 2} of {len(data)} bytes); "
        "nothing was installed; retry; if it persists, check the registry or proxy"
    )
    assert not (config.data_dir / "wa-js").exists()


BUNDLE_PATH = wajs.BUNDLE_MEMBER
ABSOLUTE_MEMBER = "/tmp/wactl-test-absolute-member.js"


@pytest.mark.parametrize(
    ("members", "message"),
    [
        pytest.param(
            [Member("package/package.json", b"{}"), Member("package/dist/other.js", b"x")],
            f"the @wppconnect/wa-js@{TEST_VERSION} tarball has no package/dist/wppconnect-wa.js; "
            "nothing was installed; the pinned version is not a wa-js release with a bundle",
            id="no-bundle",
        ),
        pytest.param(
            [Member(BUNDLE_PATH, BUNDLE), Member("package/../../../escaped.js", b"evil")],
            f"the @wppconnect/wa-js@{TEST_VERSION} tarball holds 'package/../../../escaped.js', "
            "a path outside the package; refusing it, nothing was installed",
            id="dotdot-member",
        ),
        pytest.param(
            [Member(ABSOLUTE_MEMBER, b"evil"), Member(BUNDLE_PATH, BUNDLE)],
            f"the @wppconnect/wa-js@{TEST_VERSION} tarball holds '{ABSOLUTE_MEMBER}', "
            "a path outside the package; refusing it, nothing was installed",
            id="absolute-member",
        ),
        pytest.param(
            [Member(BUNDLE_PATH, link="/etc/passwd")],
            f"the @wppconnect/wa-js@{TEST_VERSION} tarball: package/dist/wppconnect-wa.js is a "
            "link or special file, not a regular file; refusing it, nothing was installed",
            id="bundle-is-a-symlink",
        ),
        pytest.param(
            [Member(BUNDLE_PATH, BUNDLE), Member(BUNDLE_PATH, b"/* second */")],
            f"the @wppconnect/wa-js@{TEST_VERSION} tarball holds package/dist/wppconnect-wa.js "
            "2 times; refusing it, nothing was installed",
            id="bundle-twice",
        ),
    ],
)
def test_bad_tarballs_are_refused_whole(
    config: Config,
    registry: LoopbackRegistry,
    tmp_path: Path,
    members: list[Member],
    message: str,
) -> None:
    """Even with a matching integrity (a wrong pin), a bad tarball writes nothing anywhere."""
    data = make_tarball(members)
    pin = pin_for(data)
    registry.publish(TEST_VERSION, data)
    everything_before = tree(tmp_path)

    with pytest.raises(wajs.WajsInstallError) as caught:
        _install(config, registry, pin)

    assert caught.value.one_line() == message
    after = tree(tmp_path)
    new = {tmp_path / path for path in set(after) - set(everything_before)}
    # Only the install lock in the runtime dir may appear; no bundle, no escaped file.
    lock = config.runtime_dir / "wa-js-install.lock"
    assert new <= {lock, *lock.parents}, new
    assert not (config.data_dir / "wa-js").exists()
    assert not Path(ABSOLUTE_MEMBER).exists()


def test_not_a_tarball(config: Config, registry: LoopbackRegistry) -> None:
    data = b"<html>a captive portal page</html>"
    pin = pin_for(data)
    registry.publish(TEST_VERSION, data)
    with pytest.raises(wajs.WajsInstallError) as caught:
        _install(config, registry, pin)
    assert caught.value.one_line().startswith(
        f"the @wppconnect/wa-js@{TEST_VERSION} tarball is not a readable gzip tarball ("
    )
    assert caught.value.one_line().endswith("); nothing was installed")
    assert not (config.data_dir / "wa-js").exists()


def test_version_missing_from_the_registry(config: Config, registry: LoopbackRegistry) -> None:
    pin = pin_for(good_tarball())
    with pytest.raises(wajs.WajsInstallError) as caught:
        _install(config, registry, pin)
    url = f"{registry.url}/@wppconnect/wa-js/-/wa-js-{TEST_VERSION}.tgz"
    assert caught.value.one_line() == (
        f"registry answered HTTP 404 Not Found for {url}; nothing was installed; check "
        "wajs.npm_registry (or npm_config_registry) names an npm registry that has "
        f"@wppconnect/wa-js@{TEST_VERSION}"
    )
    assert not isinstance(caught.value, wajs.RegistryUnreachableError)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_unreachable_registry(config: Config) -> None:
    pin = pin_for(good_tarball())
    url = f"http://127.0.0.1:{_closed_port()}"
    with pytest.raises(wajs.RegistryUnreachableError) as caught:
        wajs.install(config, registry=url, use_npm=False, pin=pin)
    assert caught.value.one_line() == (
        f"cannot reach the npm registry at {url} ([Errno 111] Connection refused); nothing "
        "was installed; check the network, or set wajs.npm_registry to a reachable mirror"
    )
    assert not (config.data_dir / "wa-js").exists()


def test_data_dir_that_cannot_hold_it(config: Config, registry: LoopbackRegistry) -> None:
    data = good_tarball()
    pin = pin_for(data)
    registry.publish(TEST_VERSION, data)
    config.data_dir.mkdir(parents=True)
    (config.data_dir / "wa-js").write_text("a file where the directory should be\n")

    with pytest.raises(wajs.WajsInstallError) as caught:
        _install(config, registry, pin)

    directory = config.data_dir / "wa-js" / TEST_VERSION
    assert caught.value.one_line() == (
        f"cannot create {directory}: Not a directory; nothing was installed; check "
        "paths.data_dir and its permissions"
    )
    assert (config.data_dir / "wa-js").read_text() == "a file where the directory should be\n"


# --- npm -----------------------------------------------------------------------------------


@needs_npm
def test_npm_install(config: Config, registry: LoopbackRegistry) -> None:
    data = good_tarball()
    pin = pin_for(data)
    registry.publish(TEST_VERSION, data)

    found = wajs.install(config, registry=registry.url, use_npm=True, pin=pin)

    assert found.verified and found.source == "npm" and found.path.read_bytes() == BUNDLE
    assert "/@wppconnect%2fwa-js" in registry.requests  # npm read the packument
    assert registry.tarball_requests() == [f"/@wppconnect/wa-js/-/wa-js-{TEST_VERSION}.tgz"]


@needs_npm
def test_npm_download_is_checked_against_the_pin_too(
    config: Config, registry: LoopbackRegistry
) -> None:
    """npm checks the registry's own integrity; wactl still refuses bytes it did not pin."""
    served = good_tarball(b"/* a registry that signs its own bytes */\n")
    pin = pin_for(good_tarball())
    registry.publish(TEST_VERSION, served)

    with pytest.raises(wajs.WajsInstallError) as caught:
        wajs.install(config, registry=registry.url, use_npm=True, pin=pin)

    assert caught.value.one_line().startswith(
        f"@wppconnect/wa-js@{TEST_VERSION} from npm pack ({registry.url}) does not match the "
        f"pinned integrity (got {wajs.integrity_of(served)}, pinned {pin.integrity})"
    )
    assert not (config.data_dir / "wa-js").exists()


@needs_npm
def test_npm_failure_is_one_line(config: Config, registry: LoopbackRegistry) -> None:
    pin = pin_for(good_tarball())  # never published
    with pytest.raises(wajs.WajsInstallError) as caught:
        wajs.install(config, registry=registry.url, use_npm=True, pin=pin)
    assert caught.value.one_line() == (
        f"npm pack @wppconnect/wa-js@{TEST_VERSION} failed: notarget No matching version "
        f"found for @wppconnect/wa-js@{TEST_VERSION}.; nothing was installed; check the "
        "registry (wajs.npm_registry), or run `wactl engine install --source https` to "
        "fetch without npm"
    )
    assert not (config.data_dir / "wa-js").exists()


def test_npm_required_but_missing(
    config: Config, registry: LoopbackRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(wajs.WajsInstallError) as caught:
        wajs.install(config, registry=registry.url, use_npm=True, pin=pin_for(good_tarball()))
    assert caught.value.one_line() == (
        "npm is not on PATH; install npm (Debian: apt-get install npm), or use --source https"
    )


def test_auto_falls_back_to_https_without_npm(
    config: Config, registry: LoopbackRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = good_tarball()
    pin = pin_for(data)
    registry.publish(TEST_VERSION, data)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    found = wajs.install(config, registry=registry.url, pin=pin)
    assert found.source == "https" and found.verified


# --- what is installed -------------------------------------------------------------------------


def test_installed_detects_damage(config: Config, registry: LoopbackRegistry) -> None:
    data = good_tarball()
    pin = pin_for(data)
    registry.publish(TEST_VERSION, data)
    assert wajs.installed(config, pin) is None
    found = _install(config, registry, pin)
    import hashlib

    recorded = hashlib.sha256(BUNDLE).hexdigest()

    found.path.write_bytes(BUNDLE + b"window.stolen = true;\n")
    damaged = wajs.installed(config, pin)
    assert damaged is not None and not damaged.verified
    actual = hashlib.sha256(BUNDLE + b"window.stolen = true;\n").hexdigest()
    assert damaged.problem == (
        f"the bundle {found.path} was changed after install "
        f"(sha256 {actual[:12]}..., recorded {recorded[:12]}...)"
    )

    found.path.unlink()
    gone = wajs.installed(config, pin)
    assert gone is not None and gone.problem == f"the bundle {found.path} is missing"

    manifest = wajs.version_dir(config, pin) / "manifest.json"
    manifest.write_text("{not json", encoding="utf-8")
    unreadable = wajs.installed(config, pin)
    assert unreadable is not None and not unreadable.verified
    assert unreadable.problem is not None
    assert unreadable.problem.startswith(f"its manifest {manifest} is unreadable (")

    other = {"package": "@wppconnect/wa-js", "version": "1.0.0", "sha256": recorded}
    manifest.write_text(json.dumps(other), encoding="utf-8")
    wrong = wajs.installed(config, pin)
    assert wrong is not None
    assert wrong.problem == (
        f"its manifest names @wppconnect/wa-js 1.0.0, not @wppconnect/wa-js {TEST_VERSION}"
    )


def test_ensure_installed(
    registry: LoopbackRegistry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """What the engine calls: the configured registry; installs, keeps, repairs."""
    data = good_tarball()
    pin = pin_for(data)
    registry.publish(TEST_VERSION, data)
    monkeypatch.setenv("WACTL_WAJS_NPM_REGISTRY", registry.url)
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm: the https path (npm's is tested above)
    config = load_config()

    first = wajs.ensure_installed(config, pin)  # missing: installs
    assert first.verified and first.registry == registry.url
    assert len(registry.tarball_requests()) == 1
    assert wajs.ensure_installed(config, pin) == first  # present: nothing fetched
    assert len(registry.tarball_requests()) == 1
    first.path.write_bytes(b"damaged")
    repaired = wajs.ensure_installed(config, pin)  # damaged: fetched again
    assert repaired.verified and repaired.path.read_bytes() == BUNDLE
    assert len(registry.tarball_requests()) == 2


def test_registry_resolution(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    assert wajs.registry_url(config, {}) == "https://registry.npmjs.org"
    assert wajs.registry_url(config, {"npm_config_registry": "https://mirror.test/npm/"}) == (
        "https://mirror.test/npm"
    )
    assert wajs.registry_url(config, {"NPM_CONFIG_REGISTRY": "http://127.0.0.1:4873"}) == (
        "http://127.0.0.1:4873"
    )
    with pytest.raises(wajs.WajsInstallError) as caught:
        wajs.registry_url(config, {"npm_config_registry": "registry.npmjs.org"})
    assert caught.value.one_line() == (
        "npm_config_registry 'registry.npmjs.org' is not an http:// or https:// URL; "
        "fix or unset it, or set wajs.npm_registry"
    )
    monkeypatch.setenv("WACTL_WAJS_NPM_REGISTRY", "https://npm.example.com/")
    configured = load_config()
    assert wajs.registry_url(configured, {"npm_config_registry": "https://other.test"}) == (
        "https://npm.example.com"
    )
    assert wajs.tarball_url("https://npm.example.com") == (
        "https://npm.example.com/@wppconnect/wa-js/-/wa-js-4.6.0.tgz"
    )


def test_the_wa_js_api_is_one_list_of_unique_names() -> None:
    assert len(set(wajs_api.FUNCTION_PATHS)) == len(wajs_api.FUNCTIONS)
    assert len(set(wajs_api.EVENT_NAMES)) == len(wajs_api.EVENTS)
    assert all(path.startswith("WPP.") for path in wajs_api.FUNCTION_PATHS)
    assert not any(name.startswith("WPP.") for name in wajs_api.EVENT_NAMES)
    for function in wajs_api.FUNCTIONS:
        for declaration in function.declarations:
            assert declaration.startswith(f"export declare function {function.name}("), function
    # The link is never decided from main_ready (it fires on the QR screen too).
    assert "conn.main_ready" not in wajs_api.EVENT_NAMES
    assert "WPP.conn.isMainReady" not in wajs_api.FUNCTION_PATHS
    # Every option the engine sends is declared, and wa-js's deprecated one is gone.
    options = {
        m.name for m in wajs_api.MEMBERS if m.owner in ("SendMessageOptions", "LinkPreviewOptions")
    }
    assert set(wajs_api.SEND_OPTIONS) == options - {"messageId"}
    assert "createChat" not in options
    config = {m.name for m in wajs_api.MEMBERS if m.owner == "Config"}
    assert set(wajs_api.WPP_CONFIG) | {"deviceName"} == config


# --- the CLI ------------------------------------------------------------------------------------


@pytest.fixture
def pinned_registry(
    registry: LoopbackRegistry, pinned_tarball: bytes, monkeypatch: pytest.MonkeyPatch
) -> LoopbackRegistry:
    """The loopback registry serving the real pinned tarball, configured for the CLI."""
    registry.publish(wajs.WAJS_VERSION, pinned_tarball)
    monkeypatch.setenv("WACTL_WAJS_NPM_REGISTRY", registry.url)
    return registry


def _keys(shape: tuple[tuple[str, str], ...]) -> list[str]:
    return [key for key, _ in shape]


@pytest.mark.parametrize("source", ["https", "npm"])
def test_cli_install_and_status(cli: CLI, pinned_registry: LoopbackRegistry, source: str) -> None:
    if source == "npm" and shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    config = load_config()
    path = wajs.bundle_path(config)

    installed = cli("engine", "install", "--source", source)
    assert installed.code == 0, installed.err
    how = "npm pack" if source == "npm" else "https download"
    assert installed.err == f"fetching @wppconnect/wa-js@4.6.0 from {pinned_registry.url} ({how})\n"
    checked = f"@wppconnect/wa-js 4.6.0: all {CHECKS} checks match\n"
    assert installed.out == (
        f"installed @wppconnect/wa-js@4.6.0 ({wajs.WAJS_INTEGRITY}) from {source} at {path}\n"
        + checked
    )

    again = cli("engine", "install")
    assert again.code == 0 and again.err == ""
    assert again.out == (
        f"@wppconnect/wa-js@4.6.0 is already installed and verified at {path}; "
        "--force fetches it again\n" + checked
    )

    status = cli("engine", "status", "--json")
    assert status.code == 0, status.err
    shown = json.loads(status.out)
    assert list(shown) == _keys(manpage.WAJS_KEYS)
    assert shown["verified"] is True and shown["installed"] is True
    assert shown["path"] == str(path) and shown["source"] == source
    assert shown["integrity"] == shown["pinned_integrity"] == wajs.WAJS_INTEGRITY

    human = cli("engine", "status")
    assert human.code == 0
    assert "verified          yes" in human.out


def test_cli_install_json_and_force(cli: CLI, pinned_registry: LoopbackRegistry) -> None:
    first = cli("engine", "install", "--source", "https", "--json")
    assert first.code == 0, first.err
    shown = json.loads(first.out)
    assert list(shown) == [*_keys(manpage.WAJS_KEYS), "check"]
    assert list(shown["check"]) == _keys(manpage.WAJS_CHECK_KEYS)[:5]
    assert shown["check"]["ok"] is True and shown["check"]["checked"] == CHECKS
    forced = cli("engine", "install", "--source", "https", "--force", "--json")
    assert forced.code == 0, forced.err
    assert json.loads(forced.out)["verified"] is True
    assert len(pinned_registry.tarball_requests()) == 2


def test_cli_integrity_mismatch(
    cli: CLI, registry: LoopbackRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline: a registry serving other bytes as 4.6.0 is refused by the real pin."""
    served = good_tarball()
    registry.publish(wajs.WAJS_VERSION, served)
    monkeypatch.setenv("WACTL_WAJS_NPM_REGISTRY", registry.url)

    result = cli("engine", "install", "--source", "https")

    url = f"{registry.url}/@wppconnect/wa-js/-/wa-js-4.6.0.tgz"
    assert result.code == ExitCode.FAILURE
    assert result.out == ""
    assert result.err.splitlines()[-1] == (
        f"error: @wppconnect/wa-js@4.6.0 from {url} does not match the pinned integrity "
        f"(got {wajs.integrity_of(served)}, pinned {wajs.WAJS_INTEGRITY}); nothing was "
        "installed; the registry, a mirror or a proxy served other bytes; check "
        "wajs.npm_registry and npm_config_registry, then retry"
    )
    config = load_config()
    assert not (config.data_dir / "wa-js").exists()

    status = cli("engine", "status", "--json")
    assert status.code == ExitCode.NOT_FOUND
    assert json.loads(status.out)["installed"] is False
    assert status.err == (
        f"error: @wppconnect/wa-js@4.6.0 is not installed in {config.data_dir / 'wa-js'}; "
        "run `wactl engine install` (the whatsapp-web engine also does on first use)\n"
    )


def test_cli_status_of_a_damaged_install(cli: CLI, pinned_registry: LoopbackRegistry) -> None:
    assert cli("engine", "install", "--source", "https").code == 0
    path = wajs.bundle_path(load_config())
    path.write_bytes(path.read_bytes().replace(b"4.6.0", b"4.6.1"))

    status = cli("engine", "status", "--json")

    assert status.code == ExitCode.FAILURE
    shown = json.loads(status.out)
    assert shown["installed"] is True and shown["verified"] is False
    assert shown["problem"].startswith(f"the bundle {path} was changed after install (sha256 ")
    assert status.err == (
        f"error: the installed @wppconnect/wa-js@4.6.0 fails verification: {shown['problem']}; "
        "run `wactl engine install --force`\n"
    )
    human = cli("engine", "status")
    assert human.code == ExitCode.FAILURE
    assert "verified          NO: the bundle" in human.out

    repaired = cli("engine", "install", "--source", "https")
    assert repaired.code == 0, repaired.err
    assert cli("engine", "status").code == 0


def test_a_bundle_and_manifest_rewritten_together_fail_against_the_pin(
    cli: CLI, pinned_registry: LoopbackRegistry
) -> None:
    """Whoever can write the data dir could change the bundle and its manifest's sha256
    together; the bundle's sha256 pinned in the code still tells."""
    assert cli("engine", "install", "--source", "https").code == 0
    config = load_config()
    path = wajs.bundle_path(config)
    forged = path.read_bytes().replace(b"4.6.0", b"4.6.1")
    path.write_bytes(forged)
    manifest_path = path.with_name(wajs.MANIFEST_NAME)
    manifest = json.loads(manifest_path.read_text())
    manifest["sha256"] = hashlib.sha256(forged).hexdigest()
    manifest_path.write_text(json.dumps(manifest))

    found = wajs.installed(config)
    assert found is not None and not found.verified
    assert found.problem is not None
    assert found.problem.startswith(f"the bundle {path} is not the pinned one (sha256 ")
    assert cli("engine", "status").code == ExitCode.FAILURE


def test_cli_bad_registry_setting(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WACTL_WAJS_NPM_REGISTRY", "ftp://mirror.example.com")
    result = cli("engine", "install")
    assert result.code == ExitCode.CONFIG
    config_file = Path(os.environ["XDG_CONFIG_HOME"]) / "wactl" / "config.toml"
    assert result.err == (
        f"error: config file {config_file} (with WACTL_* environment overrides): "
        "wajs.npm_registry 'ftp://mirror.example.com' is not an http:// or https:// URL; "
        'e.g. "https://registry.npmjs.org", or empty for the default\n'
    )


def test_cli_bad_source(cli: CLI) -> None:
    result = cli("engine", "install", "--source", "git")
    assert result.code == ExitCode.USAGE
    assert result.err.startswith("error: Invalid value for '--source': 'git' is not one of ")


# --- the truth: the real registry ------------------------------------------------------------


@pytest.mark.network
def test_the_pin_matches_the_real_npm_registry(config: Config) -> None:
    """Fetch the pinned version from registry.npmjs.org over HTTPS and install it.

    Runs in CI: it is what proves WAJS_VERSION and WAJS_INTEGRITY belong together.
    When the registry cannot be reached at all: skipped with the reason, failed in CI.
    """
    try:
        found = wajs.install(config, registry=wajs.DEFAULT_REGISTRY, use_npm=False)
    except wajs.RegistryUnreachableError as exc:
        skip_or_fail_offline(f"registry.npmjs.org is unreachable: {exc.one_line()}")
    assert found.verified and found.source == "https"
    assert found.integrity == wajs.WAJS_INTEGRITY
    head = found.path.read_bytes()[:200]
    assert b"wppconnect-team/wa-js v4.6.0" in head
