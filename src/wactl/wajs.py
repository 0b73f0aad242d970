"""wa-js: the `@wppconnect/wa-js` bundle the whatsapp-web engine injects into WhatsApp Web.

Why this module exists: the engine drives WhatsApp Web only through wa-js's public API
(the ``WPP`` object). wa-js is third-party JavaScript that runs with the full power of
the linked phone's session, so every version wactl runs is named with its npm
``dist.integrity`` (a sha512 SRI hash) side by side, in a `Pin`: `PINNED`, the one
this wactl was released with, or one an operator installed with
``wactl engine install --version V --integrity sha512-...`` (recorded in the database,
`wactl.db.wajs_releases`). `install` fetches a pinned version from an npm registry
(``npm pack`` when npm is on PATH, else the registry's tarball over HTTPS with urllib),
checks the tarball against its integrity *before* reading anything out of it, extracts
the one bundle file, and stores it under ``<data dir>/wa-js/<version>/`` with the
verified tarball itself (``package.tgz``, where `wactl engine check` reads the type
declarations, offline) and a small JSON manifest. It is never committed to the
repository. `installed` re-verifies the bundle on disk, `read_tarball` the tarball;
`ensure_installed` is what the engine calls before it starts Chromium ("also run on
first use").

Failure leaves nothing half-installed: the download, the integrity check and the
extraction all happen in memory and in a temporary directory outside the data dir;
only verified bytes are written, each to a temporary file in the target directory that
is then renamed over the final name (the bundle, the tarball, then the manifest). A
directory this module created for an install that then failed is removed again.

What of wa-js's API the engine uses is listed in `wactl.wajs_api`; the contract tests
(tests/test_wajs_contract.py) load the real pinned bundle into Chromium and check it. To
move wactl's pin to a new wa-js release: change `WAJS_VERSION` and `WAJS_INTEGRITY`
together (``npm view @wppconnect/wa-js@VERSION version dist.integrity``), run the tests
(the real-registry test and the contract tests say whether the pin and the API still
hold).

What it must not do: import anything outside the stdlib at module level (the CLI's
``engine status`` path stays light), print (core code raises `WajsInstallError`; the
CLI edge prints), or trust the registry: whatever the registry or npm says, only bytes
that match the pin's integrity are ever written.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import datetime as dt
import hashlib
import hmac
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal

from wactl.errors import UsageError, WactlError

if TYPE_CHECKING:
    from wactl.config import Config

log = logging.getLogger("wactl.wajs")

# --- the pin -------------------------------------------------------------------------------

#: The npm package.
WAJS_PACKAGE = "@wppconnect/wa-js"
#: The one version wactl runs. Change together with `WAJS_INTEGRITY`, never alone.
WAJS_VERSION = "4.6.0"
#: npm's ``dist.integrity`` of that version's tarball (SRI: algorithm, "-", base64 digest).
WAJS_INTEGRITY = "sha512-epf+ucZO9c25dCaGraslVNHB1mRjid7rfijZhKbalXed/gbDzi6u69wdHCgPbcZW9McVpKmVW+3AzffI39p2SQ=="  # noqa: E501 - whole, to compare with `npm view`

#: sha256 of the bundle file inside that tarball, so that `installed` checks the file on
#: disk against this code, not only against the manifest written beside it.
WAJS_BUNDLE_SHA256 = "5bfb88027f14a4d8c9e319374e8bb4083201906881cf8c74f75789b32e4106bd"

#: The registry used when neither the config nor ``npm_config_registry`` names one.
DEFAULT_REGISTRY = "https://registry.npmjs.org"
#: The one member of the tarball wactl reads (npm tarballs put everything under package/).
BUNDLE_MEMBER = "package/dist/wppconnect-wa.js"
#: Its file name on disk, the verified tarball's and the manifest's.
BUNDLE_NAME = "wppconnect-wa.js"
TARBALL_NAME = "package.tgz"
MANIFEST_NAME = "manifest.json"
#: The directory under the data dir that holds one subdirectory per installed version.
WAJS_DIR = "wa-js"

#: Refuse anything larger: the 4.6.0 tarball is 0.27 MB and its bundle 0.52 MB, so these
#: only stop a misbehaving registry from filling memory.
MAX_TARBALL_BYTES = 64 * 1024 * 1024
MAX_BUNDLE_BYTES = 64 * 1024 * 1024

Source = Literal["npm", "https"]


@dataclass(frozen=True)
class Pin:
    """A package version and the integrity its tarball must have."""

    package: str
    version: str
    integrity: str
    #: sha256 of the bundle file, when known (the real pin; tests' made-up pins leave it).
    bundle_sha256: str | None = None

    @property
    def spec(self) -> str:
        """``@wppconnect/wa-js@4.6.0``, as npm takes it."""
        return f"{self.package}@{self.version}"

    @property
    def tarball_name(self) -> str:
        """``wa-js-4.6.0.tgz``: the file name npm registries serve the tarball under."""
        return f"{self.package.rpartition('/')[2]}-{self.version}.tgz"

    @property
    def is_pinned(self) -> bool:
        """The version this wactl was released with (`PINNED`)."""
        return self.package == WAJS_PACKAGE and self.version == WAJS_VERSION

    def install_command(self, *, force: bool = False) -> str:
        """The command that installs this version, for hints."""
        words = ["wactl engine install"]
        if not self.is_pinned:
            words.append(f"--version {self.version} --integrity {self.integrity}")
        if force:
            words.append("--force")
        return " ".join(words)


#: What `install` fetches unless a test passes another pin.
PINNED = Pin(WAJS_PACKAGE, WAJS_VERSION, WAJS_INTEGRITY, WAJS_BUNDLE_SHA256)

#: An npm version (semver, with pre-release and build parts): also a directory name, so
#: nothing else is ever accepted.
VERSION_PATTERN = re.compile(r"\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?")
#: SRI algorithms npm records, with their digest sizes in bytes.
SRI_DIGEST_BYTES = {"sha512": 64, "sha384": 48, "sha256": 32}


def check_version(text: str, *, option: str = "--version") -> str:
    """``text`` when it is an npm version such as 4.7.0 or 4.7.0-beta.1; else UsageError."""
    if len(text) > 64 or not VERSION_PATTERN.fullmatch(text):
        raise UsageError(
            f"{option} '{text}' is not a wa-js version",
            hint="give an npm version, such as 4.6.0 (`npm view @wppconnect/wa-js versions`)",
        )
    return text


def check_integrity(text: str, *, option: str = "--integrity") -> str:
    """``text`` when it is an SRI string as npm's ``dist.integrity`` (sha512-BASE64)."""
    algorithm, sep, digest_b64 = text.partition("-")
    hint = (
        "give npm's dist.integrity of that version: "
        "`npm view @wppconnect/wa-js@VERSION dist.integrity`"
    )
    size = SRI_DIGEST_BYTES.get(algorithm)
    if not sep or size is None:
        raise UsageError(f"{option} '{text}' is not an SRI hash (sha512-...)", hint=hint)
    try:
        digest = base64.b64decode(digest_b64, validate=True)
    except binascii.Error:
        raise UsageError(
            f"{option} '{text}' is not valid base64 after '{algorithm}-'", hint=hint
        ) from None
    if len(digest) != size:
        raise UsageError(
            f"{option} '{text}' holds {len(digest)} bytes, not the {size} of {algorithm}",
            hint=hint,
        )
    return text


# --- errors ---------------------------------------------------------------------------------


class WajsInstallError(WactlError):
    """wa-js could not be fetched, did not match its pin, or could not be stored.

    Exit code 1 (FAILURE): nothing was installed and whatever was installed before is
    untouched; the message says which step failed.
    """


class RegistryUnreachableError(WajsInstallError):
    """The registry could not be reached at all (no route, DNS, refused, timeout)."""


# --- what is installed ----------------------------------------------------------------------


@dataclass(frozen=True)
class InstalledBundle:
    """What is on disk for one pinned version, as `installed` found it.

    ``verified`` is true when the manifest names the pinned version and integrity and the
    bundle's sha256 is the one recorded at install; otherwise ``problem`` says why not.
    """

    package: str
    version: str
    #: The integrity of the tarball the bundle came from, as the manifest records it.
    integrity: str | None
    path: Path
    #: sha256 (hex) of the bundle file, as recorded at install.
    sha256: str | None
    source: str | None
    registry: str | None
    installed_at: str | None
    verified: bool
    problem: str | None = None
    #: The verified tarball kept beside the bundle; None when the manifest names none
    #: (an install by a wactl that did not keep it).
    tarball: Path | None = None


def version_dir(config: Config, pin: Pin = PINNED) -> Path:
    """``<data dir>/wa-js/<version>``: where one version's bundle and manifest live."""
    return config.data_dir / WAJS_DIR / pin.version


def bundle_path(config: Config, pin: Pin = PINNED) -> Path:
    """The bundle file the engine passes to ``context.add_init_script(path=...)``."""
    return version_dir(config, pin) / BUNDLE_NAME


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def installed(config: Config, pin: Pin = PINNED) -> InstalledBundle | None:
    """What is installed for ``pin``, re-verified now; None when nothing is there.

    Never raises for what it finds: a missing or damaged manifest or bundle is reported
    in ``problem`` with ``verified`` false.
    """
    directory = version_dir(config, pin)
    path = directory / BUNDLE_NAME
    manifest_path = directory / MANIFEST_NAME
    if not path.exists() and not manifest_path.exists():
        return None
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError("not an object")
    except FileNotFoundError:
        return _unverified(pin, path, f"its manifest {manifest_path} is missing")
    except (OSError, ValueError) as exc:
        return _unverified(pin, path, f"its manifest {manifest_path} is unreadable ({exc})")

    def text(key: str) -> str | None:
        value = manifest.get(key)
        return value if isinstance(value, str) else None

    tarball = text("tarball")

    found = InstalledBundle(
        package=pin.package,
        version=pin.version,
        integrity=text("integrity"),
        path=path,
        sha256=text("sha256"),
        source=text("source"),
        registry=text("registry"),
        installed_at=text("installed_at"),
        verified=False,
        # Only its own file name: a manifest must not point anywhere else.
        tarball=directory / TARBALL_NAME if tarball == TARBALL_NAME else None,
    )
    problem = _check(found, manifest, pin)
    if problem is not None:
        return dataclasses.replace(found, problem=problem)
    return dataclasses.replace(found, verified=True)


def _check(found: InstalledBundle, manifest: Mapping[str, object], pin: Pin) -> str | None:
    if manifest.get("package") != pin.package or manifest.get("version") != pin.version:
        return (
            f"its manifest names {manifest.get('package')} {manifest.get('version')}, "
            f"not {pin.package} {pin.version}"
        )
    if found.integrity != pin.integrity:
        return f"its manifest records integrity {found.integrity}, not the pinned {pin.integrity}"
    if found.sha256 is None:
        return "its manifest records no sha256"
    try:
        actual = _sha256_file(found.path)
    except FileNotFoundError:
        return f"the bundle {found.path} is missing"
    except OSError as exc:
        return f"the bundle {found.path} is unreadable ({exc.strerror or exc})"
    if not hmac.compare_digest(actual, found.sha256):
        return (
            f"the bundle {found.path} was changed after install "
            f"(sha256 {actual[:12]}..., recorded {found.sha256[:12]}...)"
        )
    if pin.bundle_sha256 is not None and not hmac.compare_digest(actual, pin.bundle_sha256):
        return (
            f"the bundle {found.path} is not the pinned one "
            f"(sha256 {actual[:12]}..., pinned {pin.bundle_sha256[:12]}...)"
        )
    return None


def _unverified(pin: Pin, path: Path, problem: str) -> InstalledBundle:
    return InstalledBundle(
        package=pin.package,
        version=pin.version,
        integrity=None,
        path=path,
        sha256=None,
        source=None,
        registry=None,
        installed_at=None,
        verified=False,
        problem=problem,
    )


def read_tarball(found: InstalledBundle, pin: Pin = PINNED) -> bytes:
    """The package tarball kept beside ``found``'s bundle, re-verified now against
    ``pin``'s integrity before anything is read from it.

    Raises `WajsInstallError` when there is none (an install by an older wactl, or a
    deleted file) or it no longer matches; both are repaired by installing again.
    """
    repair = f"run `{pin.install_command(force=True)}`"
    if found.tarball is None:
        raise WajsInstallError(
            f"{pin.spec} in {found.path.parent} has no package tarball (an older wactl "
            "installed it without one)",
            hint=repair,
        )
    try:
        with found.tarball.open("rb") as handle:
            data = handle.read(MAX_TARBALL_BYTES + 1)
    except FileNotFoundError:
        raise WajsInstallError(
            f"the package tarball {found.tarball} is missing", hint=repair
        ) from None
    except OSError as exc:
        raise WajsInstallError(
            f"the package tarball {found.tarball} is unreadable ({exc.strerror or exc})",
            hint=repair,
        ) from None
    algorithm = pin.integrity.partition("-")[0]
    actual = integrity_of(data, algorithm) if algorithm in SRI_DIGEST_BYTES else ""
    if len(data) > MAX_TARBALL_BYTES or not hmac.compare_digest(actual, pin.integrity):
        raise WajsInstallError(
            f"the package tarball {found.tarball} was changed after install "
            f"(integrity {actual[:19]}..., recorded {pin.integrity[:19]}...)",
            hint=repair,
        )
    return data


# --- where to fetch from ------------------------------------------------------------------


def registry_url(config: Config, environ: Mapping[str, str] | None = None) -> str:
    """The registry to fetch from, without a trailing slash.

    ``wajs.npm_registry`` (or WACTL_WAJS_NPM_REGISTRY) when set, else npm's own
    ``npm_config_registry`` environment variable, else `DEFAULT_REGISTRY`.
    """
    env = os.environ if environ is None else environ
    configured = config.wajs.npm_registry
    if configured:
        return configured.rstrip("/")
    from_npm = env.get("npm_config_registry") or env.get("NPM_CONFIG_REGISTRY")
    if from_npm:
        if not from_npm.startswith(("https://", "http://")):
            raise WajsInstallError(
                f"npm_config_registry '{redact(from_npm)}' is not an http:// or https:// URL",
                hint="fix or unset it, or set wajs.npm_registry",
            )
        return from_npm.rstrip("/")
    return DEFAULT_REGISTRY


def tarball_url(registry: str, pin: Pin = PINNED) -> str:
    """Where npm registries serve a version's tarball: ``REGISTRY/@scope/name/-/name-V.tgz``."""
    return f"{registry.rstrip('/')}/{pin.package}/-/{pin.tarball_name}"


def redact(url: str) -> str:
    """``url`` with the password of its user info (``https://user:pass@host``) as ***.

    Not `wactl.config.redact_url`: that one reads database URLs, where everything up
    to the last "@" may be a password, and an npm path holds "@scope".
    """
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


# --- checking and extracting ------------------------------------------------------------------


def integrity_of(data: bytes, algorithm: str = "sha512") -> str:
    """The SRI string of ``data`` (what npm records as ``dist.integrity``)."""
    digest = hashlib.new(algorithm, data).digest()
    return f"{algorithm}-{base64.b64encode(digest).decode('ascii')}"


def verify_integrity(data: bytes, pin: Pin, *, origin: str) -> None:
    """Raise unless ``data`` matches ``pin.integrity``; ``origin`` says where it came from."""
    algorithm, sep, expected_b64 = pin.integrity.partition("-")
    if not sep or algorithm not in {"sha256", "sha384", "sha512"}:
        raise WajsInstallError(f"pinned integrity '{pin.integrity}' is not an SRI sha512 string")
    try:
        expected = base64.b64decode(expected_b64, validate=True)
    except binascii.Error:
        raise WajsInstallError(f"pinned integrity '{pin.integrity}' is not valid base64") from None
    actual = hashlib.new(algorithm, data).digest()
    if not hmac.compare_digest(actual, expected):
        raise WajsInstallError(
            f"{pin.spec} from {origin} does not match the pinned integrity "
            f"(got {integrity_of(data, algorithm)}, pinned {pin.integrity}); nothing was "
            "installed",
            hint="the registry, a mirror or a proxy served other bytes; check "
            "wajs.npm_registry and npm_config_registry, then retry",
        )


def extract_bundle(data: bytes, pin: Pin = PINNED) -> bytes:
    """The bytes of `BUNDLE_MEMBER` in the (already verified) gzip tarball ``data``.

    Nothing is written to disk: the member is read into memory and the caller writes
    it to a path of its own choosing, so no name inside the tarball can choose where
    anything lands. A tarball with an absolute or ``..`` member, a bundle that is a
    link or appears twice, or no bundle at all is refused whole.
    """
    where = f"the {pin.spec} tarball"
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            members = archive.getmembers()
            for member in members:
                parts = PurePosixPath(member.name).parts
                if member.name.startswith("/") or ".." in parts:
                    raise WajsInstallError(
                        f"{where} holds '{member.name}', a path outside the package; "
                        "refusing it, nothing was installed"
                    )
            found = [m for m in members if m.name == BUNDLE_MEMBER]
            if not found:
                raise WajsInstallError(
                    f"{where} has no {BUNDLE_MEMBER}; nothing was installed",
                    hint="the pinned version is not a wa-js release with a bundle",
                )
            if len(found) > 1:
                raise WajsInstallError(
                    f"{where} holds {BUNDLE_MEMBER} {len(found)} times; refusing it, "
                    "nothing was installed"
                )
            member = found[0]
            if not member.isfile():
                raise WajsInstallError(
                    f"{where}: {BUNDLE_MEMBER} is a link or special file, not a regular "
                    "file; refusing it, nothing was installed"
                )
            if member.size > MAX_BUNDLE_BYTES:
                raise WajsInstallError(
                    f"{where}: {BUNDLE_MEMBER} is {member.size} bytes, over the "
                    f"{MAX_BUNDLE_BYTES} byte limit; nothing was installed"
                )
            handle = archive.extractfile(member)
            assert handle is not None, "a regular file member always has a file object"
            with handle:
                bundle = handle.read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise WajsInstallError(
            f"{where} is not a readable gzip tarball ({exc}); nothing was installed"
        ) from exc
    if len(bundle) != member.size:
        raise WajsInstallError(f"{where}: {BUNDLE_MEMBER} is cut short; nothing was installed")
    return bundle


# --- fetching -------------------------------------------------------------------------------


def fetch_over_https(pin: Pin, registry: str, *, timeout: float) -> bytes:
    """The tarball of ``pin`` from ``registry`` with urllib (no npm needed)."""
    import http.client
    import urllib.error
    import urllib.request

    import wactl

    url = tarball_url(registry, pin)
    shown = redact(url)
    if not url.startswith(("https://", "http://")):
        raise WajsInstallError(f"registry URL {shown} is not http:// or https://")
    request = urllib.request.Request(  # noqa: S310 - the scheme was just checked
        url, headers={"User-Agent": f"wactl/{wactl.__version__}"}
    )
    log.info("downloading %s from %s", pin.spec, shown)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            declared = response.headers.get("Content-Length")
            data: bytes = response.read(MAX_TARBALL_BYTES + 1)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response and its socket
        raise WajsInstallError(
            f"registry answered HTTP {exc.code} {exc.reason} for {shown}; nothing was installed",
            hint="check wajs.npm_registry (or npm_config_registry) names an npm registry "
            f"that has {pin.spec}",
        ) from None
    except urllib.error.URLError as exc:
        raise RegistryUnreachableError(
            f"cannot reach the npm registry at {redact(registry)} ({exc.reason}); "
            "nothing was installed",
            hint="check the network, or set wajs.npm_registry to a reachable mirror",
        ) from None
    except TimeoutError:
        raise RegistryUnreachableError(
            f"downloading {shown} took longer than {timeout:g} s; nothing was installed",
            hint="retry, or raise wajs.download_timeout_seconds",
        ) from None
    except (http.client.HTTPException, OSError) as exc:
        raise WajsInstallError(
            f"downloading {shown} failed ({type(exc).__name__}: {exc}); nothing was installed",
            hint="retry; if it persists, check the registry or proxy",
        ) from None
    if len(data) > MAX_TARBALL_BYTES:
        raise WajsInstallError(
            f"{shown} is larger than {MAX_TARBALL_BYTES} bytes; refusing it, nothing was installed"
        )
    if declared is not None and declared.isdigit() and int(declared) != len(data):
        raise WajsInstallError(
            f"the download of {shown} was cut short (got {len(data)} of {declared} bytes); "
            "nothing was installed",
            hint="retry; if it persists, check the registry or proxy",
        )
    return data


def npm_executable() -> str | None:
    """The npm on PATH, or None."""
    return shutil.which("npm")


def fetch_with_npm(npm: str, pin: Pin, registry: str, *, timeout: float) -> bytes:
    """The tarball of ``pin`` as ``npm pack`` downloads it (npm's cache, proxy and auth)."""
    with tempfile.TemporaryDirectory(prefix="wactl-npm-pack-") as tmp:
        command = [
            npm,
            "pack",
            pin.spec,
            "--registry",
            registry + "/",
            "--pack-destination",
            tmp,
            "--json",
            "--ignore-scripts",
            "--loglevel=error",
            "--no-fund",
            "--no-audit",
            "--no-update-notifier",
        ]
        log.info("running npm pack %s from %s", pin.spec, redact(registry))
        env = {**os.environ, "npm_config_update_notifier": "false"}
        try:
            completed = subprocess.run(
                command,
                cwd=tmp,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise RegistryUnreachableError(
                f"npm pack {pin.spec} did not finish within {timeout:g} s; nothing was installed",
                hint="retry, or raise wajs.download_timeout_seconds",
            ) from None
        except OSError as exc:
            raise WajsInstallError(f"cannot run {npm}: {exc.strerror or exc}") from None
        if completed.returncode != 0:
            reason = _npm_error_line(completed.stderr) or f"exit status {completed.returncode}"
            error = (
                RegistryUnreachableError
                if _npm_network_failure(completed.stderr)
                else WajsInstallError
            )
            raise error(
                f"npm pack {pin.spec} failed: {reason}; nothing was installed",
                hint="check the registry (wajs.npm_registry), or run `wactl engine install "
                "--source https` to fetch without npm",
            )
        tarballs = sorted(Path(tmp).glob("*.tgz"))
        if len(tarballs) != 1:
            raise WajsInstallError(
                f"npm pack {pin.spec} succeeded but left {len(tarballs)} tarballs; "
                "nothing was installed"
            )
        if tarballs[0].stat().st_size > MAX_TARBALL_BYTES:
            raise WajsInstallError(
                f"npm pack {pin.spec} gave a tarball larger than {MAX_TARBALL_BYTES} bytes; "
                "refusing it, nothing was installed"
            )
        return tarballs[0].read_bytes()


def _npm_error_line(stderr: str) -> str | None:
    """The most telling line of npm's error output (not the code, not the log file)."""
    lines = [line.strip() for line in stderr.splitlines()]
    errors = [
        line
        for line in lines
        if line.startswith(("npm error", "npm ERR!"))
        and not line.split(maxsplit=2)[-1].startswith(("code ", "A complete log", "errno "))
    ]
    for line in errors:
        text = line.split(maxsplit=2)[2] if len(line.split(maxsplit=2)) > 2 else ""
        if text:
            return text
    return None


def _npm_network_failure(stderr: str) -> bool:
    markers = ("ECONNREFUSED", "ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNRESET", "ENETUNREACH")
    return any(marker in stderr for marker in markers)


# --- installing -----------------------------------------------------------------------------


def install(
    config: Config,
    *,
    registry: str | None = None,
    use_npm: bool | None = None,
    force: bool = False,
    pin: Pin = PINNED,
) -> InstalledBundle:
    """Fetch, verify and store the bundle of ``pin``; return what is installed.

    ``registry`` overrides `registry_url`. ``use_npm``: None uses npm when it is on
    PATH, True requires it, False always downloads over HTTP(S). Without ``force``, a
    verified install is kept as it is and nothing is fetched. Raises
    `WajsInstallError` (nothing installed, any earlier install untouched).
    """
    if not force:
        current = installed(config, pin)
        if current is not None and current.verified:
            return current
    source_registry = (registry or registry_url(config)).rstrip("/")
    if not source_registry.startswith(("https://", "http://")):
        raise WajsInstallError(
            f"registry '{redact(source_registry)}' is not an http:// or https:// URL"
        )
    npm = npm_executable() if use_npm is not False else None
    if use_npm is True and npm is None:
        raise WajsInstallError(
            "npm is not on PATH",
            hint="install npm (Debian: apt-get install npm), or use --source https",
        )
    timeout = config.wajs.download_timeout_seconds
    with _install_lock(config):
        if not force:
            # Another process may have installed it while this one waited for the lock.
            current = installed(config, pin)
            if current is not None and current.verified:
                return current
        source: Source
        if npm is not None:
            data = fetch_with_npm(npm, pin, source_registry, timeout=timeout)
            source, origin = "npm", f"npm pack ({redact(source_registry)})"
        else:
            data = fetch_over_https(pin, source_registry, timeout=timeout)
            source, origin = "https", redact(tarball_url(source_registry, pin))
        verify_integrity(data, pin, origin=origin)
        bundle = extract_bundle(data, pin)
        actual = hashlib.sha256(bundle).hexdigest()
        if pin.bundle_sha256 is not None and not hmac.compare_digest(actual, pin.bundle_sha256):
            raise WajsInstallError(
                f"the bundle in {pin.spec} from {origin} has sha256 {actual[:12]}..., "
                f"not the pinned {pin.bundle_sha256[:12]}...; nothing was installed",
                hint="the pins in wactl/wajs.py disagree with each other: report it",
            )
        _store(config, pin, bundle, data, source=source, registry=redact(source_registry))
    result = installed(config, pin)
    if result is None or not result.verified:
        problem = result.problem if result is not None else "it is missing"
        raise WajsInstallError(f"{pin.spec} was written but does not verify: {problem}")
    log.info("installed %s at %s", pin.spec, result.path)
    return result


def ensure_installed(config: Config, pin: Pin = PINNED) -> InstalledBundle:
    """The verified bundle, installing it first when it is missing or damaged.

    What the whatsapp-web engine calls before it starts Chromium; it uses npm when
    present and the configured registry, as `wactl engine install` does.
    """
    current = installed(config, pin)
    if current is not None and current.verified:
        return current
    return install(config, pin=pin)


@contextlib.contextmanager
def _install_lock(config: Config) -> Iterator[None]:
    """One install at a time per user: workers starting together fetch once.

    The lock file lives in the runtime dir, not under data_dir/wa-js, so that a failed
    install leaves nothing there. Without fcntl (not Linux), installs are not serialised,
    which is still safe: each writes whole files by rename.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - wactl runs on Linux
        yield
        return
    directory = config.runtime_dir
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    with (directory / "wa-js-install.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _store(
    config: Config, pin: Pin, bundle: bytes, tarball: bytes, *, source: Source, registry: str
) -> None:
    """Write the bundle, the tarball, then the manifest, each atomically; undo created
    dirs on failure."""
    directory = version_dir(config, pin)
    missing: list[Path] = []
    for path in (directory, *directory.parents):
        if path.is_dir():
            break
        missing.append(path)
    created: list[Path] = []
    for path in reversed(missing):  # outermost first
        try:
            path.mkdir(mode=0o755)
        except FileExistsError:
            continue  # another process made it just now
        except OSError as exc:
            _remove_dirs(created)
            raise WajsInstallError(
                f"cannot create {path}: {exc.strerror or exc}; nothing was installed",
                hint="check paths.data_dir and its permissions",
            ) from None
        created.append(path)
    manifest = {
        "package": pin.package,
        "version": pin.version,
        "integrity": pin.integrity,
        "sha256": hashlib.sha256(bundle).hexdigest(),
        "tarball": TARBALL_NAME,
        "source": source,
        "registry": registry,
        "installed_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    try:
        _write_atomically(directory / BUNDLE_NAME, bundle)
        _write_atomically(directory / TARBALL_NAME, tarball)
        _write_atomically(
            directory / MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
        )
    except OSError as exc:
        # The bytes are verified, so files replaced in an existing directory are the
        # same as before; in a directory this install created, remove them again.
        if directory in created:
            for name in (BUNDLE_NAME, TARBALL_NAME):
                (directory / name).unlink(missing_ok=True)
        _remove_dirs(created)
        raise WajsInstallError(
            f"cannot write {pin.spec} to {directory}: {exc.strerror or exc}; "
            "nothing new was installed",
            hint="check the free space and permissions of paths.data_dir",
        ) from None


def _write_atomically(path: Path, data: bytes) -> None:
    """A temporary file in the same directory, flushed to disk, then renamed over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_dirs(created: list[Path]) -> None:
    """Remove the directories this install created (deepest first), if still empty."""
    for path in reversed(created):
        with contextlib.suppress(OSError):
            path.rmdir()
