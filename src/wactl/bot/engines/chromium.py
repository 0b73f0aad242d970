"""Chromium for the whatsapp-web engine: which binary, which flags, and one owner per profile.

Each whatsapp-web tenant has one Chromium profile, ``<data dir>/profiles/<slug>``: it
holds WhatsApp Web's keys, so it is the linked device. Only one browser may use it at a
time: the worker that owns it holds an ``fcntl`` lock on ``<slug>.lock`` beside it (the
lock dies with the worker, whatever kills it). Before launching, the owner kills what a
dead worker may have left on that profile (Playwright starts Chromium in a session of
its own, so a ``kill -9`` of the worker's process group does not reach it) and removes
Chromium's stale ``Singleton*`` files.

Stdlib and psutil only: `wactl doctor` imports `resolve_executable` and
`browser_version` without loading Playwright.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import IO

import psutil

from wactl.config.model import Config
from wactl.errors import ConfigError, ConflictError

log = logging.getLogger(__name__)

#: The features Playwright itself turns off (playwright 1.65, `chromiumSwitches`).
#: Chromium reads only the last ``--disable-features`` of a command line, and ours comes
#: after Playwright's, so ours must repeat them; tests/test_whatsapp_web.py fails when
#: a Playwright upgrade adds one that is missing here.
PLAYWRIGHT_DISABLED_FEATURES = (
    "AimEnabled",
    "AvoidCorsURLLoaderRestartOnRedirect",
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsFirstBalancedModeAutoEnable",
    "HttpsUpgrades",
    "LensOverlay",
    "MediaRouter",
    "NetworkTimeServiceQuerying",
    "OptimizationHints",
    "PaintHolding",
    "PreconnectToSearch",
    "TcpPortRandomizationWin",
    "ThirdPartyStoragePartitioning",
    "msEdgeUpdateLaunchServicesPreferredVersion",
    "msForceBrowserSignIn",
)

#: Features wactl turns off on top of Playwright's. Figures: bench/browser.py (Chromium
#: 156, ten browsers at once on the stand-in page; PSS per browser, driver included,
#: 206 MB with every flag here, 287 MB with Playwright's defaults only).
WACTL_DISABLED_FEATURES = (
    # The address bar's suggestion popup is a WebUI page that Chromium preloads in a
    # renderer of its own, even headless: one process, 40 MB PSS, for nothing.
    "WebUIOmniboxPopup",
    "WebUIOmniboxAimPopup",
    # A spare renderer kept warm for the next site: one process, 6 MB PSS; a bot never
    # opens a second site.
    "SpareRendererForSitePerProcess",
)

#: Hosts Chromium contacts on its own although Playwright turned background networking
#: off (netlog, 20 s of an idle page: ListAccounts on accounts.google.com and the
#: component updater on update.googleapis.com). Mapped to "not found", they resolve
#: locally and nothing leaves the machine.
BACKGROUND_HOSTS = ("accounts.google.com", "update.googleapis.com")

#: Command-line switches added to Playwright's defaults (which already turn off sync,
#: component updates, default apps, crash reports, first-run and background networking,
#: and add --no-sandbox). Each is measured by bench/browser.py; see bench/README.md,
#: also for the candidates not taken (--single-process, --in-process-gpu, --no-zygote,
#: --enable-low-end-device-mode, --renderer-process-limit=1).
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--disable-features=" + ",".join(PLAYWRIGHT_DISABLED_FEATURES + WACTL_DISABLED_FEATURES),
    # The page is never shown: no GPU work. The GPU process stays (it composites in
    # software) but shrinks from 26 to 15 MB PSS: 11 MB less per browser.
    "--disable-gpu",
    "--disable-software-rasterizer",
    # Background lookups of Google hosts (BACKGROUND_HOSTS): 11 DNS lookups in 20 s of
    # an idle page without it, 0 with it; no effect on memory.
    "--host-resolver-rules=" + ", ".join(f"MAP {host} ~NOTFOUND" for host in BACKGROUND_HOSTS),
)

#: Environment of the Playwright driver (a Node.js process per worker). A 1 MB young
#: generation instead of up to 16 MB: after 1500 calls into the page the driver holds
#: 72 MB PSS instead of 96 (24 MB less per tenant); start to QR unchanged.
DRIVER_NODE_OPTIONS = "--max-semi-space-size=1"

#: Chromium's own profile lock files; stale after a crash, they make the next start fail
#: with "The profile appears to be in use by another Chromium process".
SINGLETON_FILES = ("SingletonLock", "SingletonSocket", "SingletonCookie")

#: Executables looked up on PATH, in order, when no other browser is configured.
PATH_CANDIDATES = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")


class BrowserNotFoundError(ConfigError):
    """No Chromium to run: none configured, none from Playwright, none on PATH."""


# --- which Chromium -----------------------------------------------------------------------


def resolve_executable(config: Config, *, playwright_default: str | None = None) -> Path:
    """The Chromium the engine runs, by ``browser.executable_path``, then Playwright's own
    browser (``playwright_default``, when installed), then `PATH_CANDIDATES` on PATH.

    Raises `BrowserNotFoundError` naming what was tried and how to fix it.
    """
    configured = config.browser.executable_path
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise BrowserNotFoundError(
                f"browser.executable_path {path} is not an executable file",
                hint="install Chromium (`apt-get install chromium`) or fix the path "
                "(`wactl config set browser.executable_path PATH`)",
            )
        return path
    if playwright_default and os.access(playwright_default, os.X_OK):
        return Path(playwright_default)
    for name in PATH_CANDIDATES:
        found = shutil.which(name)
        if found:
            return Path(found)
    raise BrowserNotFoundError(
        "no Chromium found: browser.executable_path is empty, Playwright has no browser "
        f"installed, and none of {', '.join(PATH_CANDIDATES)} is on PATH",
        hint="install one (`apt-get install chromium`) or set browser.executable_path",
    )


def playwright_chromium() -> str | None:
    """Where Playwright's own Chromium is (whether installed or not), or None when
    Playwright cannot say. Starts Playwright's driver: ~0.5 s; for `wactl doctor`."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    try:
        with sync_playwright() as playwright:
            return playwright.chromium.executable_path
    except Exception as exc:
        log.debug("Playwright cannot name its Chromium: %s", exc)
        return None


def browser_version(path: Path) -> str:
    """The browser's version line, e.g. "Chromium 156.0.8078.108"; raises ConfigError when
    it does not run."""
    try:
        completed = subprocess.run(
            [os.fspath(path), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(
            f"cannot run {path} --version: {exc}", hint="check browser.executable_path"
        ) from exc
    match = re.search(r"(Chromium|Google Chrome|Chrome)[^\n]*?\d+(\.\d+)+", completed.stdout)
    if completed.returncode != 0 or match is None:
        detail = (completed.stderr or completed.stdout).strip().splitlines()
        raise ConfigError(
            f"{path} --version did not print a Chromium version "
            f"(exit {completed.returncode}{': ' + detail[-1] if detail else ''})",
            hint="point browser.executable_path at Chromium or Chrome",
        )
    return match.group(0)


# --- profiles -----------------------------------------------------------------------------


def profiles_dir(config: Config) -> Path:
    return config.data_dir / "profiles"


def profile_dir(config: Config, tenant_slug: str) -> Path:
    """A whatsapp-web tenant's Chromium profile: its linked WhatsApp device."""
    return profiles_dir(config) / tenant_slug


class ProfileLock:
    """The one-owner lock of a profile: ``flock`` on ``<profile>.lock`` beside it.

    The file stays; the lock is the kernel's and ends with the process that holds it
    (the file descriptor is not inherited by the browser: Python opens it close-on-exec).
    """

    def __init__(self, profile: Path) -> None:
        self.profile = profile
        self.path = profile.with_name(profile.name + ".lock")
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock, or raise `ConflictError` naming the worker that holds it."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        handle = self.path.open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            raise ConflictError(
                f"the browser profile {self.profile} is in use by another worker (pid {holder})",
                hint="stop it first (`wactl tenant stop`); two browsers on one profile "
                "would corrupt the linked session",
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing the descriptor releases the flock
            self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None


def profile_processes(profile: Path) -> list[psutil.Process]:
    """Live processes started on ``profile`` (Chromium passes --user-data-dir to all its
    children: zygotes, renderers, utilities)."""
    marker = f"--user-data-dir={profile}"
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            cmdline = proc.info["cmdline"] or []
            if marker in cmdline and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
    return found


def reap_leftovers(profile: Path, *, timeout: float = 5.0) -> list[int]:
    """Kill every process still running on ``profile`` and remove Chromium's stale
    profile locks; returns the pids killed. Call it only while holding the
    `ProfileLock`: then none of them belongs to a live worker."""
    leftovers = profile_processes(profile)
    killed = []
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGKILL)
            killed.append(proc.pid)
    if leftovers:
        _gone, alive = psutil.wait_procs(leftovers, timeout=timeout)
        if alive:
            log.warning("leftover browser processes survived SIGKILL: %s", [p.pid for p in alive])
        log.warning(
            "killed %d browser processes a previous worker left on %s: %s",
            len(killed),
            profile,
            killed,
        )
    for name in SINGLETON_FILES:
        path = profile / name
        if path.is_symlink() or path.exists():
            path.unlink(missing_ok=True)
            log.info("removed the stale profile lock %s", path)
    return killed


def wipe_profile(profile: Path) -> None:
    """Delete the profile (the linked device) entirely; the browser must be closed."""
    if profile.exists():
        shutil.rmtree(profile)
        log.info("profile %s wiped", profile)
