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
#: 156, ten browsers at once on the stand-in page; PSS per browser, driver included:
#: the headless shell 145 MB with every flag here, 186 MB with Playwright's defaults
#: only; the full chromium 206 and 287). These two matter only for the full chromium:
#: the headless shell has neither an address bar nor spare renderers.
WACTL_DISABLED_FEATURES = (
    # The address bar's suggestion popup is a WebUI page that Chromium preloads in a
    # renderer of its own, even headless: one process, 40 MB PSS, for nothing.
    "WebUIOmniboxPopup",
    "WebUIOmniboxAimPopup",
    # A spare renderer kept warm for the next site: one process, 6 MB PSS; a bot never
    # opens a second site.
    "SpareRendererForSitePerProcess",
)

#: Hosts the full Chromium contacts on its own although Playwright turned background
#: networking off (netlog, 20 s of an idle page: ListAccounts on accounts.google.com and
#: the component updater on update.googleapis.com; the headless shell contacts none).
#: Mapped to "not found", they resolve locally and nothing leaves the machine.
BACKGROUND_HOSTS = ("accounts.google.com", "update.googleapis.com")

#: Command-line switches added to Playwright's defaults (which already turn off sync,
#: component updates, default apps, crash reports, first-run and background networking,
#: and add --no-sandbox). Each is measured by bench/browser.py; see bench/README.md,
#: also for the candidates not taken (--single-process, --in-process-gpu, --no-zygote,
#: --enable-low-end-device-mode, --renderer-process-limit=1).
CHROMIUM_FLAGS: tuple[str, ...] = (
    "--disable-features=" + ",".join(PLAYWRIGHT_DISABLED_FEATURES + WACTL_DISABLED_FEATURES),
    # The page is never shown: no GPU work. The GPU process stays (it composites in
    # software) but shrinks from 22 to 11 MB PSS (headless shell): 11 MB less per browser.
    "--disable-gpu",
    "--disable-software-rasterizer",
    # Background lookups of Google hosts (BACKGROUND_HOSTS): 11 DNS lookups in 20 s of
    # an idle page without it, 0 with it; no effect on memory.
    "--host-resolver-rules=" + ", ".join(f"MAP {host} ~NOTFOUND" for host in BACKGROUND_HOSTS),
)

#: Environment of the Playwright driver (a Node.js process per worker); bench/browser.py,
#: ten browsers, after 1500 calls into each page:
#: - a 1 MB young generation instead of up to 16 MB: 72 MB PSS per driver instead of 96;
#: - --jitless (V8 interprets, compiles nothing): 6 MB less again, for 0.15 ms more CPU
#:   per call into the page (310 -> 450 us; a tenant makes a few calls per message).
#: Start to QR is unchanged by both. (--lite-mode would save 2 MB more but Node refuses it
#: in NODE_OPTIONS; --max-old-space-size has no effect at this size.)
DRIVER_NODE_OPTIONS = "--max-semi-space-size=1 --jitless"

#: Chromium's own profile lock files; stale after a crash, they make the next start fail
#: with "The profile appears to be in use by another Chromium process".
SINGLETON_FILES = ("SingletonLock", "SingletonSocket", "SingletonCookie")

#: Executables looked up on PATH, in order, when no other browser is configured. The
#: headless shell (Debian's chromium-headless-shell, the build Playwright itself runs
#: headless) has no browser UI: 77 MB PSS per browser instead of 134 (bench/browser.py,
#: ten at once), 8 processes either way, the first QR as fast.
HEADLESS_SHELL = "chromium-headless-shell"
PATH_CANDIDATES = (
    HEADLESS_SHELL,
    "chromium",
    "chromium-browser",
    "google-chrome-stable",
    "google-chrome",
)

#: Scripts on PATH that run (not exec) a browser binary, and that binary: the engine runs
#: the binary itself (one process fewer, and signals reach the browser). Debian's
#: chromium-headless-shell script only does that; its chromium script also reads
#: /etc/chromium.d, so it stays.
WRAPPED_BINARIES = {
    Path("/usr/bin") / HEADLESS_SHELL: Path("/usr/lib/chromium") / HEADLESS_SHELL,
}

#: What desktop Chrome on Linux sends (its reduced form: only the major version).
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/{major}.0.0.0 Safari/537.36"
)


class BrowserNotFoundError(ConfigError):
    """No Chromium to run: none configured, none from Playwright, none on PATH."""


# --- which Chromium -----------------------------------------------------------------------


def resolve_executable(config: Config, *, playwright_default: str | None = None) -> Path:
    """The Chromium the engine runs: ``browser.executable_path``, else the headless shell
    on PATH, else Playwright's own browser (``playwright_default``, when installed), else
    the rest of `PATH_CANDIDATES` on PATH (a script in `WRAPPED_BINARIES` as its binary).

    The headless shell comes before Playwright's browser (DESIGN.md names Playwright's
    first) because it takes 57 MB less per tenant (bench/browser.py).

    Raises `BrowserNotFoundError` naming what was tried and how to fix it.
    """
    configured = config.browser.executable_path
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise BrowserNotFoundError(
                f"browser.executable_path {path} is not an executable file",
                hint="install Chromium (`apt-get install chromium-headless-shell`) or fix the path "
                "(`wactl config set browser.executable_path PATH`)",
            )
        return path
    shell = _on_path(HEADLESS_SHELL)
    if shell is not None:
        return shell
    if playwright_default and os.access(playwright_default, os.X_OK):
        return Path(playwright_default)
    for name in PATH_CANDIDATES:
        found = _on_path(name)
        if found is not None:
            return found
    raise BrowserNotFoundError(
        "no Chromium found: browser.executable_path is empty, Playwright has no browser "
        f"installed, and none of {', '.join(PATH_CANDIDATES)} is on PATH",
        hint="install one (`apt-get install chromium-headless-shell`) or set "
        "browser.executable_path",
    )


def _on_path(name: str) -> Path | None:
    """``name`` on PATH (a script in `WRAPPED_BINARIES` as its binary), or None."""
    found = shutil.which(name)
    if found is None:
        return None
    binary = WRAPPED_BINARIES.get(Path(found))
    if binary is not None and os.access(binary, os.X_OK):
        return binary
    return Path(found)


def is_headless_shell(path: Path) -> bool:
    return path.name == HEADLESS_SHELL


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


def user_agent_for(version_line: str) -> str:
    """Desktop Chrome's User-Agent for the browser whose `browser_version` is given.

    Headless Chromium says "HeadlessChrome/..." and WhatsApp Web answers that with an
    "update your browser" page instead of a QR; the engine passes this one instead.
    """
    match = re.search(r"(\d+)(\.\d+)+", version_line)
    if match is None:
        raise ConfigError(
            f"cannot tell the browser's version from {version_line!r}",
            hint="set browser.user_agent",
        )
    return USER_AGENT.format(major=match.group(1))


def user_agent(config: Config, executable: Path) -> str:
    """``browser.user_agent``, or desktop Chrome's for ``executable`` (runs --version)."""
    return config.browser.user_agent or user_agent_for(browser_version(executable))


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
    """Live processes started on ``profile``: the browser (its command line names the
    profile with --user-data-dir) and every process below it. Chromium passes the flag on
    to its children, chromium-headless-shell does not, so the children are found as
    descendants; they stay the browser's children when the worker above it dies."""
    marker = f"--user-data-dir={profile}"
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if marker in (proc.info["cmdline"] or []):
                for member in (proc, *proc.children(recursive=True)):
                    found.setdefault(member.pid, member)
    alive = []
    for proc in found.values():
        with contextlib.suppress(psutil.Error):
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
    return alive


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
