"""The worker as the daemon runs it: ``python -m wactl.bot SLUG`` in its own session.

Every test starts real worker processes against a real database (SQLite and
PostgreSQL), talks to them over their control socket and reads the rows they write.
Waits are blocking socket reads with a timeout or `poll_for`; every process a test
starts is killed (by its process group id) at teardown if it is still running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

from tests.conftest import CLI
from tests.support import poll_for
from wactl.bot.control import MAX_LINE_BYTES
from wactl.bot.engines.sandbox import session_file
from wactl.config import load_config
from wactl.config.model import Config
from wactl.db.engine import make_engine, session_scope
from wactl.db.models import Tenant, WhatsappSession, WorkerProcess
from wactl.enums import SessionState, TenantStatus, WorkerStatus
from wactl.ipc.protocol import WORKER_PROTOCOL_VERSION, worker_log_path, worker_socket_path

SLUG = "shop"
#: Only reached when something is broken.
TIMEOUT = 60.0  # generous: only a failing test waits this long (CI machines get loaded)
#: A stopped worker must be gone well inside the daemon's 10 s grace period.
STOP_SECONDS = 5.0
QR_ROTATE_SECONDS = 0.3


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def config(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Config]:
    """The workers' configuration (through WACTL_* variables, as the daemon passes them)."""
    # AF_UNIX paths hold at most 107 bytes; tmp_path is often longer than that.
    runtime_dir = Path(tempfile.mkdtemp(prefix="wactl-w-", dir="/tmp"))
    monkeypatch.setenv("WACTL_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("WACTL_PATHS_RUNTIME_DIR", str(runtime_dir))
    monkeypatch.setenv("WACTL_DAEMON_HEARTBEAT_INTERVAL_SECONDS", "0.2")
    monkeypatch.setenv("WACTL_DAEMON_HEARTBEAT_TIMEOUT_SECONDS", "2")
    monkeypatch.setenv("WACTL_SANDBOX_QR_ROTATE_SECONDS", str(QR_ROTATE_SECONDS))
    try:
        yield load_config()
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)


@pytest.fixture
def tenant(config: Config, cli: CLI) -> str:
    result = cli("tenant", "create", SLUG, "--name", "Shop")
    assert result.code == 0, result.err
    return SLUG


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


class Workers:
    """Starts workers the way the daemon does and kills what is left at teardown."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.started: list[subprocess.Popen[bytes]] = []
        self.clients: list[Client] = []

    def start(self, slug: str = SLUG) -> subprocess.Popen[bytes]:
        log_path = self.log_path(slug)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "wactl.bot", slug],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(os.environ),
            )
        self.started.append(process)
        return process

    def socket_path(self, slug: str = SLUG) -> Path:
        return worker_socket_path(self.config.runtime_dir, slug)

    def log_path(self, slug: str = SLUG) -> Path:
        return worker_log_path(self.config.log_dir, slug)

    def log_text(self, slug: str = SLUG) -> str:
        return self.log_path(slug).read_text(encoding="utf-8")

    def connect(self, process: subprocess.Popen[bytes], slug: str = SLUG) -> Client:
        """A client of the worker's socket, once it listens (failing if the worker dies)."""
        client: list[Client] = []

        def connected() -> bool:
            if process.poll() is not None:
                pytest.fail(f"worker exited with {process.returncode}:\n{self.log_text(slug)}")
            try:
                client.append(Client(self.socket_path(slug)))
            except (FileNotFoundError, ConnectionRefusedError):
                return False
            return True

        poll_for(connected, TIMEOUT)
        self.clients.append(client[0])  # closed at teardown even if the test fails
        return client[0]

    def cleanup(self) -> None:
        for connected in self.clients:
            connected.close()
        for process in self.started:
            if process.poll() is None:
                # start_new_session: the process group id is the worker's pid.
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(TIMEOUT)


@pytest.fixture
def workers(config: Config) -> Iterator[Workers]:
    launcher = Workers(config)
    try:
        yield launcher
    finally:
        launcher.cleanup()


class Client:
    """A blocking JSON-lines client of a worker's control socket."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT)
        try:
            self.sock.connect(os.fspath(path))
        except OSError:
            self.sock.close()
            raise
        self.reader = self.sock.makefile("rb")
        #: Messages read while looking for something else, oldest first.
        self.unread: list[dict[str, Any]] = []
        self.last_id = 0

    def close(self) -> None:
        self.reader.close()
        self.sock.close()

    def read(self) -> dict[str, Any]:
        line = self.reader.readline()
        if not line:
            raise EOFError("the worker closed the connection")
        message: dict[str, Any] = json.loads(line)
        return message

    def send_line(self, line: bytes) -> None:
        self.sock.sendall(line + b"\n")

    def next(self, matches: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The first message (unread ones included) that ``matches``; others stay unread."""
        for index, message in enumerate(self.unread):
            if matches(message):
                return self.unread.pop(index)
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            message = self.read()
            if matches(message):
                return message
            self.unread.append(message)
        pytest.fail(f"no matching message within {TIMEOUT} s; got {self.unread[-5:]}")

    def event(self, name: str, **fields: Any) -> dict[str, Any]:
        return self.next(
            lambda m: (
                m.get("type") == "event"
                and m.get("event") == name
                and all(m.get(key) == value for key, value in fields.items())
            )
        )

    def reply_to(self, request_id: Any) -> dict[str, Any]:
        return self.next(lambda m: m.get("type") == "reply" and m.get("id") == request_id)

    def request(self, op: str, **args: Any) -> dict[str, Any]:
        self.last_id += 1
        request = {"type": "request", "id": self.last_id, "op": op, "args": args}
        self.send_line(json.dumps(request).encode())
        return self.reply_to(self.last_id)

    def hello(self) -> dict[str, Any]:
        return self.next(lambda m: m.get("type") == "hello")


@dataclass(frozen=True)
class Rows:
    session_state: SessionState
    last_qr: str | None
    last_seen_set: bool
    tenant_status: TenantStatus
    worker_status: WorkerStatus
    worker_pid: int | None
    heartbeat_at: float | None


def rows(db: Engine) -> Rows:
    with session_scope(db) as session:
        tenant = session.scalars(select(Tenant).where(Tenant.slug == SLUG)).one()
        link = session.scalars(
            select(WhatsappSession).where(WhatsappSession.tenant_id == tenant.id)
        ).one()
        worker = session.scalars(
            select(WorkerProcess).where(WorkerProcess.tenant_id == tenant.id)
        ).one()
        return Rows(
            session_state=link.state,
            last_qr=link.last_qr,
            last_seen_set=link.last_seen_at is not None,
            tenant_status=tenant.status,
            worker_status=worker.status,
            worker_pid=worker.pid,
            heartbeat_at=worker.heartbeat_at.timestamp() if worker.heartbeat_at else None,
        )


def stop(process: subprocess.Popen[bytes], signum: int = signal.SIGTERM) -> int:
    """Signal the worker and return its exit code, failing if it takes too long."""
    started = time.monotonic()
    process.send_signal(signum)
    code = process.wait(STOP_SECONDS)
    assert time.monotonic() - started < STOP_SECONDS
    return code


def first_qr(client: Client, hello: dict[str, Any]) -> str:
    qr = hello["qr"] if hello["qr"] is not None else client.event("qr")["qr"]
    assert isinstance(qr, str) and qr.startswith(f"wactl-sandbox:{SLUG}:")
    return qr


# --- tests ----------------------------------------------------------------------------------


def test_an_unlinked_worker_shows_rotating_qr_codes_and_heartbeats(
    tenant: str, workers: Workers, db: Engine
) -> None:
    process = workers.start()
    client = workers.connect(process)
    hello = client.hello()
    assert hello == {
        "type": "hello",
        "protocol": WORKER_PROTOCOL_VERSION,
        "slug": SLUG,
        "pid": process.pid,
        "engine": "sandbox",
        "wa_js_version": None,
        "started": hello["started"],
        "state": hello["state"],
        "qr": hello["qr"],
        "problems": [],
        "messages_in_1h": 0,
        "messages_out_1h": 0,
        "messages_in_total": 0,
        "messages_out_total": 0,
    }
    assert hello["state"] in ("UNLINKED", "QR_PENDING")
    qr = first_qr(client, hello)
    # The engine has started (the daemon's RUNNING): a client that came before hears a
    # "started" event, a later one reads it in its hello.
    if hello["started"] is not True:
        client.event("started")
    assert workers.connect(process).hello()["started"] is True

    # The QR is in the database and the tenant waits for it to be scanned.
    poll_for(lambda: rows(db).last_qr is not None, TIMEOUT)
    now = rows(db)
    assert now.session_state == SessionState.QR_PENDING
    assert now.tenant_status == TenantStatus.QR_PENDING
    assert now.last_qr is not None and now.last_qr.startswith(f"wactl-sandbox:{SLUG}:")

    # It rotates, on the socket and in the database.
    rotated = client.next(lambda m: m.get("event") == "qr" and m["qr"] != qr)["qr"]
    assert rotated.startswith(f"wactl-sandbox:{SLUG}:")
    poll_for(lambda: rows(db).last_qr not in (None, qr), TIMEOUT)

    # Heartbeats: events to every client, and heartbeat_at moving forward in the database.
    beat = client.event("heartbeat")
    assert beat["at"].endswith("+00:00")
    assert beat["messages_in_1h"] == beat["messages_out_1h"] == 0
    second = workers.connect(process)
    assert second.hello()["pid"] == process.pid
    second.event("heartbeat")
    first_beat = rows(db).heartbeat_at
    assert first_beat is not None
    poll_for(lambda: (rows(db).heartbeat_at or 0) > first_beat, TIMEOUT)
    # The daemon's columns are the daemon's: the worker never writes them.
    assert (rows(db).worker_status, rows(db).worker_pid) == (WorkerStatus.STOPPED, None)

    socket_path = workers.socket_path()
    assert stat.S_ISSOCK(socket_path.stat().st_mode)
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700

    assert client.request("ping") == {
        "type": "reply",
        "id": client.last_id,
        "ok": True,
        "result": {"pid": process.pid, "state": "QR_PENDING"},
    }

    assert stop(process) == 0
    assert not socket_path.exists()
    log = workers.log_text()
    assert f"INFO {SLUG} wactl.bot.worker: starting the worker of tenant '{SLUG}'" in log
    assert "SIGTERM received; stopping" in log
    assert "worker exiting with code 0" in log
    # Clients still connected at the exit are hung up on quietly.
    assert "Traceback" not in log and " ERROR " not in log, log
    client.close()
    second.close()


def test_scanning_links_the_tenant_and_the_link_survives_a_restart(
    tenant: str, workers: Workers, db: Engine, config: Config
) -> None:
    process = workers.start()
    client = workers.connect(process)
    qr = first_qr(client, client.hello())
    client.next(lambda m: m.get("event") == "qr" and m["qr"] != qr)

    expired = client.request("scan", qr=qr)
    assert (expired["ok"], expired["status"], expired["error"]) == (False, 409, "QR expired")

    linked = client.request("scan")
    assert linked["result"] == {"state": "CONNECTED"}
    client.event("state", state="CONNECTED", reason=None)
    now = rows(db)
    assert now.session_state == SessionState.CONNECTED
    assert now.tenant_status == TenantStatus.CONNECTED
    assert now.last_qr is None and now.last_seen_set

    again = client.request("scan")
    assert (again["ok"], again["status"], again["error"]) == (False, 409, "already linked")
    assert stop(process) == 0
    client.close()

    # A new worker finds the saved session: linked without a scan.
    process = workers.start()
    client = workers.connect(process)
    hello = client.hello()
    assert (hello["state"], hello["qr"]) == ("CONNECTED", None)
    assert client.request("ping")["result"] == {"pid": process.pid, "state": "CONNECTED"}
    poll_for(lambda: "sandbox session found" in workers.log_text(), TIMEOUT)
    now = rows(db)
    assert (now.session_state, now.tenant_status) == (
        SessionState.CONNECTED,
        TenantStatus.CONNECTED,
    )

    # Logout unlinks and shows a new QR code.
    assert client.request("logout")["result"] == {"state": "UNLINKED"}
    client.event("state", state="UNLINKED", reason="logged out")
    client.event("state", state="QR_PENDING", reason=None)
    new_qr = client.event("qr")["qr"]
    assert new_qr.startswith(f"wactl-sandbox:{SLUG}:") and new_qr != qr
    assert not session_file(config, SLUG).exists()
    poll_for(lambda: rows(db).last_qr is not None, TIMEOUT)
    now = rows(db)
    assert (now.session_state, now.tenant_status) == (
        SessionState.QR_PENDING,
        TenantStatus.QR_PENDING,
    )
    assert stop(process) == 0
    client.close()


def test_bad_requests_get_error_replies_and_the_worker_goes_on(
    tenant: str, workers: Workers
) -> None:
    process = workers.start()
    client = workers.connect(process)
    client.hello()

    def refused(line: bytes, request_id: Any = None) -> tuple[int, str]:
        client.send_line(line)
        reply = client.reply_to(request_id)
        assert reply["ok"] is False
        return reply["status"], reply["error"]

    # Blank lines get no reply: the first reply is the one to the line after them.
    client.send_line(b"")
    client.send_line(b"   ")
    assert refused(b"[1, 2]") == (400, "a request must be a JSON object")
    status, error = refused(b"this is not json")
    assert (status, error.split(":")[0]) == (400, "not a JSON line")
    assert refused(b"\xff\xfe")[0] == 400
    assert refused(b'{"type": "request", "op": "ping"}') == (
        400,
        "a request needs an integer or string 'id'",
    )
    assert refused(b'{"type": "hello", "id": 3}', 3) == (
        400,
        "expected type 'request', not 'hello'",
    )
    assert refused(b'{"type": "request", "id": 4, "op": "nope"}', 4) == (
        400,
        "unknown op 'nope' (ops: logout, pause, ping, scan, send)",
    )
    assert refused(b'{"type": "request", "id": 5, "op": "scan", "args": []}', 5) == (
        400,
        "'args' must be a JSON object",
    )
    assert refused(b'{"type": "request", "id": 6, "op": "scan", "args": {"qr": 7}}', 6) == (
        400,
        "'qr' must be a string or null",
    )
    assert refused(b'{"type": "request", "id": "x", "op": "ping", "args": {"a": 1}}', "x") == (
        400,
        "unknown argument 'a'",
    )
    assert refused(b'{"type": "request", "id": 8, "op": "logout"}', 8) == (409, "not linked")

    # A client that hangs up in the middle of a line, and one that sends a line too long
    # to frame (it is told, then dropped), harm nobody else.
    rude = workers.connect(process)
    rude.sock.sendall(b'{"type": "request", "id": 1, "op"')
    rude.close()
    flood = workers.connect(process)
    flood.hello()
    # Just over the limit: the rest fits the socket buffer once the worker gives up.
    flood.sock.sendall(b"x" * (MAX_LINE_BYTES + 10_000))
    assert flood.next(lambda m: m.get("type") == "reply") == {
        "type": "reply",
        "id": None,
        "ok": False,
        "status": 400,
        "error": "line too long",
    }
    flood.close()

    assert client.request("ping")["result"]["pid"] == process.pid
    assert process.poll() is None
    assert stop(process, signal.SIGINT) == 0
    assert not workers.socket_path().exists()
    client.close()


def test_database_failures_become_problems_and_the_worker_goes_on(
    tenant: str, workers: Workers, cli: CLI
) -> None:
    process = workers.start()
    client = workers.connect(process)
    first_qr(client, client.hello())
    # Deleted under a running worker (the daemon would stop it): its next writes fail.
    assert cli("tenant", "delete", SLUG, "--yes").code == 0
    problem = client.event("problem")
    assert problem["area"] == "database"
    assert problem["message"].startswith("cannot record qr in the database: IntegrityError: ")
    assert "\n" not in problem["message"]
    client.event("heartbeat")
    poll_for(lambda: "has no worker_process row; heartbeat not recorded" in workers.log_text())
    assert client.request("ping")["ok"] is True
    assert stop(process) == 0
    client.close()


def test_a_stop_request_during_startup_exits_0(monkeypatch: pytest.MonkeyPatch) -> None:
    # A "database" that accepts connections and never answers holds the worker in its
    # startup (the schema check) for as long as the test needs.
    with socket.create_server(("127.0.0.1", 0)) as silent_server:
        port = silent_server.getsockname()[1]
        monkeypatch.setenv("WACTL_DATABASE_URL", f"postgresql+psycopg://wactl@127.0.0.1:{port}/x")
        workers = Workers(load_config())
        try:
            process = workers.start()
            connection, _ = silent_server.accept()  # the worker is checking the schema now
            with connection:
                os.killpg(process.pid, signal.SIGTERM)  # as the daemon stops a worker
                assert process.wait(STOP_SECONDS) == 0
        finally:
            workers.cleanup()
    assert "SIGTERM received during startup; exiting" in workers.log_text()


def test_a_worker_on_an_out_of_date_schema_exits_4(
    tenant: str, workers: Workers, db: Engine
) -> None:
    from wactl.db import migrate

    migrate.downgrade(db, "0001")
    process = workers.start()
    assert process.wait(TIMEOUT) == 4
    log = workers.log_text()
    assert "is at revision 0001 but this wactl needs" in log
    assert "run `wactl db upgrade`" in log
    assert not workers.socket_path().exists()


def test_a_worker_for_an_unknown_tenant_exits_5(config: Config, workers: Workers) -> None:
    process = workers.start("nosuch")
    assert process.wait(TIMEOUT) == 5
    assert "ERROR nosuch wactl.bot.worker: no tenant 'nosuch'" in workers.log_text("nosuch")


def test_a_corrupt_sandbox_session_crashes_the_worker_at_every_start(
    tenant: str, workers: Workers, config: Config, db: Engine
) -> None:
    path = session_file(config, SLUG)
    path.parent.mkdir(parents=True)
    path.write_text("{half a session", encoding="utf-8")
    for _ in range(2):
        process = workers.start()
        assert process.wait(TIMEOUT) == 1
        assert not workers.socket_path().exists()
    log = workers.log_text()
    assert log.count(f"sandbox session file {path} is corrupt: not JSON") == 2
    assert "delete it to unlink the sandbox and show a new QR code" in log
    assert rows(db).session_state == SessionState.UNLINKED


def test_a_whatsapp_web_tenant_without_a_browser_exits_3(
    tenant: str, workers: Workers, cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("tenant", "edit", SLUG, "--engine", "whatsapp-web").code == 0
    bundle = tmp_path / "wa.js"
    bundle.write_text("// a wa-js stand-in\n")
    missing = tmp_path / "no-chromium"
    monkeypatch.setenv("WACTL_BROWSER_WA_JS_PATH", str(bundle))
    monkeypatch.setenv("WACTL_BROWSER_EXECUTABLE_PATH", str(missing))
    process = workers.start()
    assert process.wait(TIMEOUT) == 3
    assert (
        f"browser.executable_path {missing} is not an executable file; install Chromium "
        "(`apt-get install chromium-headless-shell`)" in workers.log_text()
    )
    assert not workers.socket_path().exists()


def test_a_second_worker_for_a_tenant_exits_6_and_a_stale_socket_is_replaced(
    tenant: str, workers: Workers
) -> None:
    path = workers.socket_path()
    path.parent.mkdir(mode=0o700, parents=True)
    # A stale socket file: bound by a process that is gone (nobody listens).
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(path))
    stale.close()

    process = workers.start()
    client = workers.connect(process)
    assert client.hello()["pid"] == process.pid

    intruder = workers.start()
    assert intruder.wait(TIMEOUT) == 6
    assert "another worker already listens on" in workers.log_text()
    assert client.request("ping")["ok"] is True  # the first one still owns the socket
    assert stop(process) == 0
    client.close()


def test_the_log_rotates_and_takes_stdout_and_stderr_along(
    tenant: str, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WACTL_DAEMON_LOG_MAX_BYTES", "3000")
    monkeypatch.setenv("WACTL_DAEMON_LOG_BACKUPS", "2")
    process = workers.start()
    client = workers.connect(process)
    client.hello()
    log_path = workers.log_path()

    def descriptor_inode(fd: int) -> int:
        return Path(f"/proc/{process.pid}/fd/{fd}").stat().st_ino

    # At start the worker's stdout and stderr are its own handle on the log file.
    assert descriptor_inode(1) == descriptor_inode(2) == log_path.stat().st_ino
    for request_id in range(60):  # each refusal is a ~150-byte WARNING line
        client.send_line(b'{"type": "request", "id": %d, "op": "nope"}' % request_id)
        client.reply_to(request_id)
    backups = [log_path.with_name(f"{log_path.name}.{n}") for n in (1, 2, 3)]
    assert backups[0].exists() and backups[1].exists() and not backups[2].exists()
    assert log_path.stat().st_size < 3000
    assert descriptor_inode(1) == descriptor_inode(2) == log_path.stat().st_ino
    assert stop(process) == 0
    assert "worker exiting with code 0" in workers.log_text()
    client.close()


def test_the_worker_imports_nothing_it_does_not_need() -> None:
    probe = (
        "import sys, wactl.bot.__main__, wactl.bot.worker, wactl.bot.engines.sandbox\n"
        "import json\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(completed.stdout))
    heavy = {"typer", "rich", "textual", "starlette", "uvicorn", "playwright", "alembic"}
    assert loaded & heavy == set()
