"""Helpers shared by the tests: running the CLI in-process, polling, PostgreSQL admin."""

from __future__ import annotations

import io
import os
import socketserver
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine
    from sqlalchemy.orm import Session

#: Where the tests find a PostgreSQL server they may create and drop databases on.
PG_ADMIN_URL = os.environ.get(
    "WACTL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


T = TypeVar("T")


def run_cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    input: str = "",
) -> Result:
    """Run ``wactl ARGS`` in this process through the real CLI edge (`wactl.cli.app.run`)."""
    from wactl.cli.app import run

    capsys.readouterr()  # drop anything printed before
    monkeypatch.setattr("sys.stdin", io.StringIO(input))
    code = run(list(args))
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def run_wactl(*args: str, **options: Any) -> subprocess.CompletedProcess[Any]:
    """``python -m wactl ARGS`` as a process of its own, in this test's environment;
    ``options`` go to `subprocess.run` (what to do with its output)."""
    return subprocess.run(
        [sys.executable, "-m", "wactl", *args],
        timeout=60,
        env=dict(os.environ),
        check=False,
        **options,
    )


def poll_for(condition: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> None:
    """Wait until ``condition()`` is true, failing the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s: {condition}")
        time.sleep(interval)


def run_crash_traffic(
    deliver: Callable[[list[T]], None],
    lanes: list[list[T]],
    kill: Callable[[], None],
    stop: threading.Event,
) -> None:
    """The crash tests' traffic: ``deliver`` each lane and ``kill`` workers, all at once in
    threads, until all are done; ``stop`` is set at the end (or at the first failure),
    and the first failure is raised."""
    with ThreadPoolExecutor(len(lanes) + 1) as pool:
        killer = pool.submit(kill)
        senders = [pool.submit(deliver, lane) for lane in lanes]
        try:
            for sender in senders:
                sender.result()
            killer.result()
        finally:
            stop.set()


def _admin_engine() -> Engine:
    from sqlalchemy import create_engine

    return create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")


def pg_url(database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(PG_ADMIN_URL).set(database=database).render_as_string(hide_password=False)


@contextmanager
def pg_database(template: str | None = None) -> Iterator[str]:
    """A new PostgreSQL database (optionally copied from ``template``), dropped afterwards."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    name = f"wactl_test_{uuid.uuid4().hex[:12]}"
    engine = _admin_engine()
    try:
        with engine.connect() as connection:
            clause = f' TEMPLATE "{template}"' if template else ""
            connection.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    except OperationalError as exc:
        engine.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc.orig}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
            "or point WACTL_TEST_PG_URL at a server"
        )
    try:
        yield name
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@contextmanager
def db_session(url: str) -> Iterator[Session]:
    """A committed-on-exit session on ``url``, for arranging and checking rows directly."""
    from wactl.db.engine import make_engine, session_scope

    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            yield session
    finally:
        engine.dispose()


@contextmanager
def serving(server: socketserver.BaseServer, name: str) -> Iterator[None]:
    """Run a loopback HTTP (or any socketserver) server on a thread for the block;
    then shut it down, close it and join the thread. The server looks for the shutdown
    every 20 ms (socketserver's default, 0.5 s, cost every test that used one 0.25 s)."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, name=name, daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def every_case(cases: Iterable[tuple[Any, ...]], check: Callable[..., None]) -> None:
    """``check(*case)`` for every case, in one test (where a test per case would set up
    the same portal or daemon again for each); every failing case is reported, by its
    values, not only the first."""
    failed = []
    for case in cases:
        try:
            check(*case)
        except AssertionError as exc:
            failed.append(f"{case!r}: {exc}")
    assert failed == []
