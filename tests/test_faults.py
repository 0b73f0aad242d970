"""Failing disks and databases, for real (issue 13): what a worker and the daemon do, and
what an operator sees.

- a full disk: the database's (SQLite on an 8 MB tmpfs) and the sandbox outbox's (its
  own tmpfs), filled with a file until writes fail with ENOSPC;
- a database lock held by another process (an `sqlite3` connection in BEGIN IMMEDIATE)
  for longer than the heartbeat timeout;
- a worker stopped by SIGSTOP;
- PostgreSQL going away (the daemon and CLI reach it through a TCP relay the test cuts).

Mounting a tmpfs needs root (CI runs as root); elsewhere those tests skip with the
reason, and in CI they fail instead.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CLI
from tests.daemon_support import Daemon, daemon_for_cli
from tests.support import poll_for
from tests.test_pipeline import NO_LIMITS, MessageLogReader, chat_number, start_linked

SLUG = "shop"
WAIT = 60.0
pytestmark = pytest.mark.timeout(240)


# --- small disks -----------------------------------------------------------------------------


def need_root_for(what: str) -> None:
    if os.geteuid() == 0:
        return
    reason = f"{what} needs root (CI runs as root)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run it", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def small_disk(path: Path, megabytes: int) -> Iterator[Path]:
    """A tmpfs of ``megabytes`` mounted at ``path`` for the block."""
    need_root_for("mounting a tmpfs")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(path)],
        check=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` with one file until it takes no more; the file, to free it."""
    filler = disk / "filler"
    with filler.open("wb") as handle:
        chunk = b"\0" * 65536
        while True:
            try:
                handle.write(chunk)
                handle.flush()
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                break
    return filler


def free(filler: Path) -> None:
    filler.unlink()


def send(daemon: Daemon, text: str, message_id: str, chat: str = chat_number(1)) -> str:
    """A customer writes (the worker answers when it can: this does not wait)."""
    body = {"from": chat, "text": text, "id": message_id, "wait": False}
    answer = daemon.client.request("POST", f"/v1/tenants/{SLUG}/sandbox/send", body)
    return str(answer["status"])


def ps_row(daemon: Daemon) -> dict[str, Any]:
    return daemon.ps()[SLUG]


def problem(daemon: Daemon, area: str) -> str | None:
    for item in ps_row(daemon)["problems"]:
        if item["area"] == area:
            return str(item["message"])
    return None


def outbox_ids(outbox: Path) -> list[str]:
    import json

    if not outbox.exists():
        return []
    return [json.loads(line)["id"] for line in outbox.read_text().splitlines()]


@pytest.fixture
def disks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """The data dir (with the SQLite database) on one 8 MB tmpfs, the sandbox outboxes on
    another, both as WACTL_* settings; the database migrated."""
    from wactl.db import migrate
    from wactl.db.engine import make_engine

    with small_disk(tmp_path / "data", 8) as data, small_disk(tmp_path / "outbox", 1) as outbox:
        (data / "sandbox").symlink_to(outbox)
        url = f"sqlite:///{data / 'wactl.db'}"
        engine = make_engine(url)
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()
        monkeypatch.setenv("WACTL_DATABASE_URL", url)
        monkeypatch.setenv("WACTL_PATHS_DATA_DIR", str(data))
        yield data, outbox


def test_a_full_disk_is_a_problem_until_it_heals_and_nothing_is_lost(
    cli: CLI, disks: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replies that cannot be sent (the outbox's disk is full) are tried again by the
    running worker, in order, and go out once the disk has room; ps says what fails
    while it fails and forgets it when it heals; a message given up on is handled again
    when it comes again; with the database's disk full, `tenant restart` says so."""
    data, outbox_disk = disks
    env = {**NO_LIMITS, "WACTL_PIPELINE_RETRY_MINUTES": "0.2"}  # gives up after 12 s
    with daemon_for_cli(monkeypatch, env) as daemon:
        start_linked(cli, daemon, SLUG, "other")
        reader = MessageLogReader(os.environ["WACTL_DATABASE_URL"])
        try:
            # The outbox's disk is full (no outbox file yet, so no page of it has room):
            # two messages of one chat wait, in order.
            outbox = outbox_disk / SLUG / "outbox.jsonl"
            filler = fill(outbox_disk)
            send(daemon, "hours", "m1")
            send(daemon, "menu", "m2")
            poll_for(lambda: problem(daemon, "replies") is not None, timeout=WAIT)
            assert "No space left on device" in (problem(daemon, "replies") or "")
            assert ps_row(daemon)["state"] == "RUNNING"
            shown = cli("ps")
            assert shown.code == 0 and "now: message m1 from" in shown.out
            free(filler)
            poll_for(lambda: len(outbox_ids(outbox)) == 2, timeout=WAIT)
            poll_for(lambda: problem(daemon, "replies") is None, timeout=WAIT)
            inbound = {r.wa_id: r for r in reader.inbound()}
            assert outbox_ids(outbox) == [f"wactl-shop-{inbound[m].id}" for m in ("m1", "m2")]
            assert all(r.state == "ANSWERED" for r in inbound.values())

            # Given up on (FAILED), then the same message comes again: answered once.
            other = outbox_disk / "other" / "outbox.jsonl"
            filler = fill(outbox_disk)
            body = {"from": chat_number(2), "text": "where", "id": "m3", "wait": False}
            path = "/v1/tenants/other/sandbox/send"
            daemon.client.request("POST", path, body)
            poll_for(
                lambda: any(
                    r.wa_id == "m3" and r.state == "FAILED" for r in reader.inbound("other")
                ),
                timeout=WAIT,
            )
            poll_for(
                lambda: "given up after" in (daemon.ps()["other"]["last_error"] or ""),
                timeout=WAIT,
            )
            free(filler)
            assert daemon.client.request("POST", path, body)["status"] == "queued"
            poll_for(
                lambda: any(
                    r.wa_id == "m3" and r.state == "ANSWERED" for r in reader.inbound("other")
                ),
                timeout=WAIT,
            )
            assert len(outbox_ids(other)) == 1
            again = {**body, "wait": True}
            assert daemon.client.request("POST", path, again)["status"] == "duplicate"

            # The database's disk full: a restart says what is wrong, exit 4.
            filler = fill(data)
            result = cli("tenant", "restart", SLUG)
            assert result.code == 4, result.err
            assert "database or disk is full" in result.err
            assert "the disk that holds the database is full" in result.err
            assert cli("ps").code == 0
            free(filler)
        finally:
            reader.engine.dispose()
    for slug, count in ((SLUG, 2), ("other", 1)):
        replies = [r for r in reader.replies(slug) if r.state == "SENT"]
        assert len(replies) == len({r.reply_to for r in replies}) == count


def test_a_torn_outbox_record_is_cut_off_and_the_others_are_kept(tmp_path: Path) -> None:
    """A record cut inside an emoji (the disk filled mid-write) at the end, and a broken
    one in the middle: recovery reads every other record and the file is whole again."""
    import asyncio
    import dataclasses

    from tests.test_sandbox_engine import Recorder
    from wactl.bot.engines.sandbox import SandboxEngine, outbox_file
    from wactl.config.model import Config, PathsConfig

    config = dataclasses.replace(Config(), paths=PathsConfig(data_dir=str(tmp_path)))
    path = outbox_file(config, SLUG)
    path.parent.mkdir(parents=True)
    whole = '{"id": "a", "text": "hola 😀"}\n{"id": "b"}\n{broken\n{"id": "c"}\n'.encode()
    torn = '{"id": "d", "text": "😀'.encode()[:-2]
    path.write_bytes(whole + torn)

    async def scenario() -> None:
        engine = SandboxEngine(SLUG, config, Recorder())
        assert [await engine.was_sent(i) for i in "abcd"] == [True, True, True, False]

    asyncio.run(scenario())
    assert path.read_bytes() == whole


# --- a lock held elsewhere, a stopped worker ---------------------------------------------------


def test_a_database_lock_held_elsewhere_stops_no_worker(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Another process holds SQLite's write lock for twice the heartbeat timeout: the
    worker keeps answering its heartbeats (its database work waits on a thread, not on
    its event loop), is not killed as hung, reports the lock while it lasts, and
    answers the message that came meanwhile once the lock is gone."""
    if not db_url.startswith("sqlite"):
        pytest.skip("SQLite's lock")
    database = db_url.removeprefix("sqlite:///")
    env = {
        **NO_LIMITS,
        "WACTL_DAEMON_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        # Shorter than database.busy_timeout_ms (5 s): a loop waiting out the lock would
        # miss its heartbeats.
        "WACTL_DAEMON_HEARTBEAT_TIMEOUT_SECONDS": "3",
    }
    release = tmp_path / "release"
    holder_code = (
        "import sqlite3, sys, time, pathlib\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE')\n"
        "print('held', flush=True)\n"
        "while not pathlib.Path(sys.argv[2]).exists(): time.sleep(0.05)\n"
        "c.execute('COMMIT')\n"
    )
    with daemon_for_cli(monkeypatch, env) as daemon:
        start_linked(cli, daemon, SLUG)
        worker = ps_row(daemon)["pid"]
        holder = subprocess.Popen(
            [sys.executable, "-c", holder_code, database, str(release)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            send(daemon, "hours", "locked-1")
            poll_for(lambda: problem(daemon, "database") is not None, timeout=WAIT)
            assert "database is locked" in (problem(daemon, "database") or "")
            # Twice the heartbeat timeout with the lock held: the worker lives on.
            held_since = time.monotonic()
            poll_for(lambda: time.monotonic() - held_since > 6, timeout=WAIT, interval=0.5)
            assert ps_row(daemon)["pid"] == worker and ps_row(daemon)["restarts"] == 0
        finally:
            release.touch()
            holder.wait(10)
            if holder.stdout is not None:
                holder.stdout.close()
        reader = MessageLogReader(db_url)
        try:
            poll_for(
                lambda: any(
                    r.wa_id == "locked-1" and r.state == "ANSWERED" for r in reader.inbound()
                ),
                timeout=WAIT,
            )
        finally:
            reader.engine.dispose()
        poll_for(lambda: problem(daemon, "database") is None, timeout=WAIT)
        assert ps_row(daemon)["pid"] == worker


def test_a_stopped_worker_is_killed_before_the_heartbeat_timeout(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGSTOP: the worker would hold what it holds (SQLite's write lock) until the
    heartbeat timeout; seen stopped once its heartbeat is two intervals late, it is
    killed then (the reason says so) and started again."""
    env = {
        "WACTL_DAEMON_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "WACTL_DAEMON_HEARTBEAT_TIMEOUT_SECONDS": "600",
    }
    with daemon_for_cli(monkeypatch, env) as daemon:
        start_linked(cli, daemon, SLUG)
        worker = ps_row(daemon)["pid"]
        os.kill(worker, signal.SIGSTOP)
        try:
            poll_for(lambda: ps_row(daemon)["pid"] not in (None, worker), timeout=WAIT)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGCONT)
        assert ps_row(daemon)["last_error"].startswith("stopped by a signal for ")


# --- PostgreSQL away -----------------------------------------------------------------------


class Relay:
    """A TCP relay to PostgreSQL that the test can cut (every connection closed, new ones
    refused) and mend: the database going away without stopping the shared server."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        self.open = False
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def mend(self) -> None:
        self.open = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_ps_answers_while_postgresql_is_away(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the database gone, `wactl ps` still shows the daemon's view (exit 0) and
    says the database fails; a command that needs the database says it is the database
    (exit 4, not "daemon unreachable"); the worker is not killed; all heals."""
    from sqlalchemy.engine import make_url

    url = make_url(db_url)
    relay = Relay((url.host or "127.0.0.1", url.port or 5432))
    relayed = url.set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)
    monkeypatch.setenv("WACTL_DATABASE_URL", relayed)
    try:
        with daemon_for_cli(monkeypatch, NO_LIMITS) as daemon:
            start_linked(cli, daemon, SLUG)
            worker = ps_row(daemon)["pid"]
            relay.cut()
            result = cli("ps")
            assert result.code == 0, result.err
            assert SLUG in result.out and "RUNNING" in result.out
            assert "the daemon's database fails (since " in result.err
            assert cli("ps", "--json").code == 0
            restart = cli("tenant", "restart", SLUG)
            assert restart.code == 4, restart.err
            assert restart.err.startswith("error: cannot use database postgresql+psycopg://")
            relay.mend()
            poll_for(lambda: cli("ps").err == "", timeout=WAIT)
            assert ps_row(daemon)["pid"] == worker
            assert send(daemon, "hi", "after-1") == "queued"
    finally:
        relay.close()
