"""Finding Chromium for browser tests: Debian's package, never `playwright install`.

In CI (the ``CI`` environment variable set, as .ci/run's caller does) a missing Chromium
fails the test with what to run: `make test` installs it (scripts/ensure-chromium), so
its absence is a broken setup, not a reason to skip. On a developer's machine the test
is skipped with that reason instead.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

#: Where Debian's chromium package puts the browser.
DEBIAN_CHROMIUM = Path("/usr/bin/chromium")

HOW_TO_INSTALL = "install it with `apt-get install chromium` (scripts/ensure-chromium does)"


def chromium_executable() -> Path:
    """The Chromium to launch; fails (CI) or skips (elsewhere) when there is none."""
    found = shutil.which("chromium")
    if found:
        return Path(found)
    if DEBIAN_CHROMIUM.exists():
        return DEBIAN_CHROMIUM
    message = f"Chromium is not installed (no chromium on PATH); {HOW_TO_INSTALL}"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run the browser tests", pytrace=False)
    pytest.skip(message)


def require_headless_shell() -> None:
    """The engine's default choice must be the headless shell (what operators run); fails
    (CI) or skips (elsewhere) when it is not installed."""
    from wactl.bot.engines import chromium
    from wactl.config.model import Config

    if chromium.is_headless_shell(chromium.resolve_executable(Config())):
        return
    message = (
        "chromium-headless-shell is not installed; install it with "
        "`apt-get install chromium-headless-shell` (scripts/ensure-chromium does)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must run the browser tests on it", pytrace=False)
    pytest.skip(message)
