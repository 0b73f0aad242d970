"""Contract: the real pinned wa-js bundle, in real Chromium, has every name wactl uses.

The bundle is installed by `wactl.wajs.install` (from a loopback registry serving the
real tarball, fetched once per run from the npm registry), injected with
``context.add_init_script(path=...)`` as the engine does, into an empty page served for
https://web.whatsapp.com/ by ``context.route`` (nothing leaves the machine: every other
request is aborted). The page has no WhatsApp Web in it, so wa-js only sets itself up;
that is enough to see its version and its API. Event names are strings the bundle
emits, so they are checked in its source.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests import chromium_support
from tests.chromium_support import chromium_executable
from tests.wajs_support import LoopbackRegistry, loopback_registry
from wactl import wajs, wajs_api, wajs_check

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Route

WHATSAPP_WEB = "https://web.whatsapp.com/"
EMPTY_PAGE = "<!doctype html><html><head><title>empty</title></head><body></body></html>"

#: In the page: for each dotted path, its `typeof` ("undefined" when any part is missing).
TYPES_OF = """
(paths) => Object.fromEntries(paths.map((path) => {
    let value = window;
    for (const part of path.split(".")) {
        if (value === undefined || value === null) { break; }
        value = value[part];
    }
    return [path, typeof value];
}))
"""


@pytest.fixture(scope="module")
def bundle(pinned_tarball: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned bundle as `wajs.install` stores it, in a data dir of this module's own."""
    from wactl.config.model import Config, PathsConfig

    data_dir = tmp_path_factory.mktemp("wajs-data")
    config = Config(paths=PathsConfig(data_dir=str(data_dir), runtime_dir=str(data_dir / "run")))
    registry: LoopbackRegistry
    with loopback_registry() as registry:
        registry.publish(wajs.WAJS_VERSION, pinned_tarball)
        found = wajs.install(config, registry=registry.url, use_npm=False)
    assert found.verified
    assert wajs.installed(config) == found
    return found.path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = chromium_executable()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(executable), headless=True)
        try:
            yield launched
        finally:
            launched.close()


@contextlib.contextmanager
def wa_js_page(browser: Browser, bundle: Path, *, before: str = "") -> Iterator[Page]:
    """An empty https://web.whatsapp.com/ page with wa-js injected (after the script
    ``before``, as the engine injects WPPConfig); nothing leaves the machine."""
    errors: list[str] = []

    def serve(route: Route) -> None:
        if route.request.url == WHATSAPP_WEB:
            route.fulfill(status=200, content_type="text/html", body=EMPTY_PAGE)
        else:
            route.abort()

    context = browser.new_context()
    try:
        context.route("**/*", serve)
        if before:
            context.add_init_script(script=before)
        context.add_init_script(path=str(bundle))
        opened = context.new_page()
        opened.on("pageerror", lambda error: errors.append(str(error)))
        opened.goto(WHATSAPP_WEB)
        opened.wait_for_function("() => typeof window.WPP === 'object'", timeout=30_000)
        assert errors == [], errors
        yield opened
    finally:
        context.close()


@pytest.fixture(scope="module")
def page(browser: Browser, bundle: Path) -> Iterator[Page]:
    with wa_js_page(browser, bundle) as opened:
        yield opened


def test_reports_the_pinned_version(page: Page) -> None:
    assert page.evaluate("() => WPP.version") == wajs.WAJS_VERSION == "4.6.0"


def test_every_function_the_engine_calls_exists(page: Page) -> None:
    types: dict[str, Any] = page.evaluate(TYPES_OF, list(wajs_api.FUNCTION_PATHS))
    assert {path: kind for path, kind in types.items() if kind != "function"} == {}


def test_every_value_the_engine_reads_exists(page: Page) -> None:
    types: dict[str, Any] = page.evaluate(TYPES_OF, list(wajs_api.VALUE_PATHS))
    assert types == {f"WPP.{name}": kind for name, kind in wajs_api.VALUES.items()}


def test_the_probe_sees_a_missing_name(page: Page) -> None:
    """The same check fails for names this wa-js does not have (it can fail)."""
    types: dict[str, Any] = page.evaluate(
        TYPES_OF, ["WPP.conn.noSuchFunction", "WPP.noSuchModule.send", "WPP.conn.getAuthCode"]
    )
    assert types == {
        "WPP.conn.noSuchFunction": "undefined",
        "WPP.noSuchModule.send": "undefined",
        "WPP.conn.getAuthCode": "function",
    }


def test_wactls_config_reaches_wa_js(browser: Browser, bundle: Path, page: Page) -> None:
    """window.WPPConfig, set before the bundle as the engine does, is what wa-js runs
    with (config/index.ts merges it over config/defaultConfig.ts when it loads): the
    device name, no analytics, no link-preview servers (an empty list, not null, which
    would mean wa-js's own servers: util/linkPreview.ts)."""
    from wactl.bot.engines.whatsapp_web import wpp_config_script

    script = wpp_config_script("Casa Pepe (wactl)")
    with wa_js_page(browser, bundle, before=script) as configured:
        config = configured.evaluate("() => JSON.parse(JSON.stringify(WPP.config))")
    assert config["deviceName"] == "Casa Pepe (wactl)"
    assert config["disableGoogleAnalytics"] is True
    assert config["linkPreviewApiServers"] == []
    assert config["googleAnalyticsId"] is None and config["poweredBy"] is None
    # Without it, wa-js's defaults: analytics on, its own link-preview servers.
    default = page.evaluate("() => JSON.parse(JSON.stringify(WPP.config))")
    assert default["disableGoogleAnalytics"] is False
    assert default["linkPreviewApiServers"] is None and default["deviceName"] is False


def test_every_event_the_engine_subscribes_to_is_emitted(bundle: Path) -> None:
    emitted = wajs_check.emitted_events(bundle.read_text(encoding="utf-8"))
    assert "conn.online" in emitted  # the scan works on this bundle
    assert set(wajs_api.EVENT_NAMES) - emitted == set()
    assert "conn.no_such_event" not in emitted


def test_listeners_for_every_event_can_be_registered(page: Page) -> None:
    """`WPP.on(name, fn)` takes each event name (the engine's subscription call)."""
    registered = page.evaluate(
        """(events) => events.map((name) => {
            WPP.on(name, () => {});
            return WPP.listenerCount(name);
        })""",
        list(wajs_api.EVENT_NAMES),
    )
    assert registered == [1] * len(wajs_api.EVENT_NAMES)


def test_a_missing_chromium_fails_in_ci_and_skips_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(chromium_support, "DEBIAN_CHROMIUM", tmp_path / "no-chromium")
    expected = (
        "Chromium is not installed (no chromium on PATH); install it with "
        "`apt-get install chromium` (scripts/ensure-chromium does)"
    )
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as failed:
        chromium_executable()
    assert str(failed.value) == f"{expected}; CI must run the browser tests"
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception) as skipped:
        chromium_executable()
    assert str(skipped.value) == expected
