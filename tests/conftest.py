"""Fixtures: tests never see the developer's machine, and run on SQLite and PostgreSQL.

- Every test gets its own HOME and XDG directories under tmp_path, no WACTL_*
  variables from outside, NO_COLOR and a fixed terminal width.
- ``db_url`` is parametrised: each test that uses it runs once on SQLite (a file
  under tmp_path) and once on PostgreSQL (a new database copied from a migrated
  template, dropped after the test). Both start at the newest schema.
- ``empty_db_url`` is the same without the schema, for migration and init tests.
- ``pinned_tarball`` is the real pinned wa-js tarball, fetched once per run from the
  npm registry (tests that need it skip, with the reason, when it is unreachable).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from tests.daemon_support import Daemon, daemon_for_cli
from tests.support import Result, pg_database, pg_url, run_cli

if TYPE_CHECKING:
    from tests.oidc_provider import Provider
    from tests.portal_support import RunningPortal


def pytest_configure(config: pytest.Config) -> None:
    """Programs the tests start get Ctrl-C as from a terminal: a test run started in the
    background of a shell (as some CI runners do) has SIGINT ignored, which its children
    would inherit (an ignored signal stays ignored across exec; a handled one does not)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if name.startswith("WACTL_") and name != "WACTL_TEST_PG_URL":
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".local/share"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local/state"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(home / "run"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("TERM", "dumb")
    return home


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A PostgreSQL database migrated to head once per test run, copied for each test."""
    from wactl.db import migrate
    from wactl.db.engine import make_engine

    with pg_database() as name:
        engine = make_engine(pg_url(name))
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()
        yield name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once per test run, copied for each test."""
    from wactl.db import migrate
    from wactl.db.engine import make_engine

    path = tmp_path_factory.mktemp("sqlite-template") / "wactl.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate.upgrade(engine)
        with engine.connect() as connection:
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        engine.dispose()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def empty_db_url(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty database on each backend, set as WACTL_DATABASE_URL."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'data' / 'wactl.db'}"
        (tmp_path / "data").mkdir()
        monkeypatch.setenv("WACTL_DATABASE_URL", url)
        yield url
        return
    with pg_database() as name:
        url = pg_url(name)
        monkeypatch.setenv("WACTL_DATABASE_URL", url)
        yield url


@pytest.fixture
def db_url(
    backend: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[str]:
    """A database at the newest schema on each backend, set as WACTL_DATABASE_URL."""
    if backend == "sqlite":
        import shutil

        template: Path = request.getfixturevalue("sqlite_template")
        target = tmp_path / "data" / "wactl.db"
        target.parent.mkdir()
        shutil.copyfile(template, target)
        url = f"sqlite:///{target}"
        monkeypatch.setenv("WACTL_DATABASE_URL", url)
        yield url
        return
    template_name: str = request.getfixturevalue("pg_template")
    with pg_database(template=template_name) as name:
        url = pg_url(name)
        monkeypatch.setenv("WACTL_DATABASE_URL", url)
        yield url


CLI = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> CLI:
    """``cli("tenant", "list", input="")`` runs wactl in-process and returns a Result."""

    def invoke(*args: str, input: str = "") -> Result:
        return run_cli(capsys, monkeypatch, *args, input=input)

    return invoke


@pytest.fixture
def daemon(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Daemon]:
    """A real daemon (subprocess) on this test's database; the in-process CLI reaches it."""
    with daemon_for_cli(monkeypatch) as started:
        yield started


def skip_or_fail_offline(reason: str) -> NoReturn:
    """CI reaches the npm registry, so there an unreachable registry is a failure (the
    contract test must not go quietly green); a developer offline gets a skip."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the tests that need it", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pinned_tarball() -> bytes:
    """The real `@wppconnect/wa-js` tarball at the pinned version, integrity-checked."""
    from wactl import wajs

    try:
        data = wajs.fetch_over_https(wajs.PINNED, wajs.DEFAULT_REGISTRY, timeout=60)
    except wajs.RegistryUnreachableError as exc:
        skip_or_fail_offline(f"the npm registry is unreachable: {exc.one_line()}")
    wajs.verify_integrity(data, wajs.PINNED, origin=wajs.DEFAULT_REGISTRY)
    return data


# --- the portal's tests: a local OpenID provider and a running portal ------------------------


@pytest.fixture
def provider() -> Iterator[Provider]:
    """A local OpenID provider on loopback (real HTTP, JWKS, signed id_tokens)."""
    from tests.oidc_provider import running_provider

    with running_provider() as running:
        yield running


@pytest.fixture
def roomy_portal(
    db_url: str, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningPortal]:
    """A portal whose rate limits stay out of the way of a few thousand requests."""
    from tests.portal_support import portal_env, running_portal

    portal_env(monkeypatch, provider)
    monkeypatch.setenv("WACTL_PORTAL_SIGNIN_PER_MINUTE", "1000000")
    monkeypatch.setenv("WACTL_PORTAL_POSTS_PER_MINUTE", "1000000")
    with running_portal() as running:
        yield running


@pytest.fixture
def portal(
    db_url: str, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RunningPortal]:
    """`wactl portal serve` on this test's database, signing in at ``provider``."""
    from tests.portal_support import portal_env, running_portal

    portal_env(monkeypatch, provider)
    with running_portal() as running:
        yield running
