"""The daemon and supervision with real processes and signals, on SQLite and PostgreSQL.

Every wait polls a condition with a timeout; nothing sleeps a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
import threading
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import select

from tests.conftest import CLI
from tests.daemon_support import Daemon, daemon_for_cli, events_in_thread
from tests.support import db_session, poll_for
from wactl.daemon.api import WORKER_SCHEMA
from wactl.db.models import PortalEventLog, Tenant, WorkerProcess

#: What `wactl ps --json` prints for each worker: the API's documented worker shape.
PS_KEYS = set(WORKER_SCHEMA["properties"])


def _create(cli: CLI, *slugs: str) -> None:
    for slug in slugs:
        result = cli("tenant", "create", slug, "--name", slug.title())
        assert result.code == 0, result.err


def _start(cli: CLI, *slugs: str) -> None:
    result = cli("tenant", "start", *slugs)
    assert result.code == 0, result.err


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_socket_status_and_ps(cli: CLI, daemon: Daemon) -> None:
    mode = stat.S_IMODE(daemon.socket.stat().st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(daemon.socket.parent.stat().st_mode) == 0o700
    _create(cli, "alpha", "beta")
    _start(cli, "alpha")
    status = json.loads(cli("daemon", "status", "--json").out)
    assert status["pid"] == daemon.pid
    assert status["socket"] == str(daemon.socket)
    assert status["workers"]["RUNNING"] == 1 and status["workers"]["STOPPED"] == 1
    rows = json.loads(cli("ps", "--json").out)
    assert [r["slug"] for r in rows] == ["alpha", "beta"]
    assert all(set(r) == PS_KEYS for r in rows)
    alpha = rows[0]
    assert alpha["state"] == "RUNNING" and alpha["desired"] == "RUNNING"
    assert _alive(alpha["pid"])
    assert os.getpgid(alpha["pid"]) == alpha["pid"]  # its own process group
    assert os.getsid(alpha["pid"]) == alpha["pid"]  # and its own session
    text = cli("ps").out
    assert "alpha" in text and "RUNNING" in text
    # Sampled CPU and memory arrive within a couple of sample intervals.
    poll_for(lambda: daemon.ps()["alpha"]["memory_uss_bytes"] is not None, timeout=10)
    assert daemon.ps()["alpha"]["memory_uss_bytes"] > 1_000_000
    metrics = daemon.client.request("GET", "/v1/metrics")
    assert 'wactl_worker_up{tenant="alpha"} 1' in metrics
    assert 'wactl_worker_up{tenant="beta"} 0' in metrics
    assert 'wactl_worker_memory_uss_bytes{tenant="alpha"}' in metrics


def test_start_stop_and_audit(cli: CLI, daemon: Daemon, db_url: str) -> None:
    _create(cli, "alpha", "beta")
    _start(cli, "alpha", "beta")
    pids = {slug: row["pid"] for slug, row in daemon.ps().items()}
    result = cli("tenant", "stop", "alpha")
    assert result.code == 0, result.err
    assert "alpha: STOPPED" in result.err
    assert not _alive(pids["alpha"])
    assert daemon.ps()["beta"]["state"] == "RUNNING"
    with db_session(db_url) as session:
        rows = {
            t.slug: (t.status.value, t.worker.status.value, t.worker.desired.value, t.worker.pid)
            for t in session.scalars(select(Tenant))
            if t.worker is not None
        }
        assert rows["alpha"] == ("STOPPED", "STOPPED", "STOPPED", None)
        assert rows["beta"][1:] == ("RUNNING", "RUNNING", pids["beta"])
        events = session.scalars(select(PortalEventLog).order_by(PortalEventLog.id)).all()
        actions = [
            (e.tenant_slug, e.event_type) for e in events if e.event_type.startswith("worker.")
        ]
        assert actions == [
            ("alpha", "worker.start"),
            ("beta", "worker.start"),
            ("alpha", "worker.stop"),
        ]
        assert all(e.actor.startswith("os:") for e in events)
    result = cli("tenant", "stop", "--all")
    assert result.code == 0
    assert all(row["state"] == "STOPPED" for row in daemon.ps().values())


def test_bad_targets(cli: CLI, daemon: Daemon) -> None:
    _create(cli, "alpha")
    result = cli("tenant", "start", "nosuch")
    assert (result.code, result.err) == (5, "error: no tenant 'nosuch'; see `wactl tenant list`\n")
    result = cli("tenant", "start")
    assert result.code == 2
    assert result.err == "error: name at least one tenant, or give --all\n"
    result = cli("tenant", "start", "alpha", "--all")
    assert result.code == 2


def test_unconfigured_tenant_cannot_start(cli: CLI, daemon: Daemon, db_url: str) -> None:
    from wactl.db.tenants import new_tenant_rows
    from wactl.enums import TenantStatus

    with db_session(db_url) as session:
        tenant = Tenant(slug="fresh", name="Fresh", status=TenantStatus.NEW)
        new_tenant_rows(tenant)
        session.add(tenant)
    result = cli("tenant", "start", "fresh")
    assert result.code == 6
    assert result.err.startswith("error: tenant 'fresh' is not set up yet (status NEW)")


def test_kill9_worker_is_restarted(cli: CLI, daemon: Daemon) -> None:
    _create(cli, "alpha")
    _start(cli, "alpha")
    old = daemon.ps()["alpha"]["pid"]
    os.kill(old, signal.SIGKILL)
    poll_for(
        lambda: (
            daemon.ps()["alpha"]["pid"] not in (None, old)
            and daemon.ps()["alpha"]["state"] == "RUNNING"
        ),
        timeout=15,
    )
    row = daemon.ps()["alpha"]
    assert row["restarts"] == 1
    assert row["last_error"] == "killed by SIGKILL"
    assert not _alive(old)


def test_crash_loop_is_quarantined(
    cli: CLI, daemon: Daemon, db_url: str, isolated_env: Path
) -> None:
    _create(cli, "broken")
    session_file = isolated_env / ".local/share/wactl/sandbox/broken/session.json"
    session_file.parent.mkdir(parents=True)
    session_file.write_text("{not json")
    result = cli("tenant", "start", "broken", "--timeout", "30")
    assert result.code == 6
    assert "quarantined (FATAL): broken" in result.err
    row = daemon.ps()["broken"]
    assert row["state"] == "FATAL" and row["pid"] is None
    assert row["restarts"] == 4  # the first start plus 4 restarts = 5 crashes (max_crashes)
    assert row["last_error"].startswith("5 crashes within 300 s; last: exited with code")
    with db_session(db_url) as session:
        tenant = session.scalar(select(Tenant).where(Tenant.slug == "broken"))
        assert tenant is not None and tenant.worker is not None
        assert tenant.status.value == "ERROR"
        assert tenant.worker.status.value == "FATAL"
        assert tenant.worker.last_error == row["last_error"]
    assert not daemon.worker_processes()
    # The operator fixes the cause and starts it again: the quarantine is lifted.
    session_file.unlink()
    _start(cli, "broken")
    assert daemon.ps()["broken"]["state"] == "RUNNING"


@pytest.mark.parametrize(
    ("interval", "reason"),
    [
        # A stopped worker is seen stopped once its heartbeat is two intervals late
        # (test_faults.py tests that it goes before the timeout).
        ("0.2", "stopped by a signal for "),
        # The heartbeat timeout (8 s) comes before two intervals: the timeout applies
        # whatever the process looks like. (3 s spare: a busy machine's late beat is no
        # hang.)
        ("5", "no heartbeat for "),
    ],
)
def test_hung_worker_is_replaced(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch, interval: str, reason: str
) -> None:
    env = {
        "WACTL_DAEMON_HEARTBEAT_INTERVAL_SECONDS": interval,
        "WACTL_DAEMON_HEARTBEAT_TIMEOUT_SECONDS": "8",
    }
    with daemon_for_cli(monkeypatch, env) as daemon:
        _create(cli, "alpha")
        _start(cli, "alpha")
        old = daemon.ps()["alpha"]["pid"]
        os.kill(old, signal.SIGSTOP)
        try:
            poll_for(
                lambda: (
                    daemon.ps()["alpha"]["pid"] not in (None, old)
                    and daemon.ps()["alpha"]["state"] == "RUNNING"
                ),
                timeout=20,
            )
        finally:
            if _alive(old):
                os.kill(old, signal.SIGKILL)
        row = daemon.ps()["alpha"]
        assert row["restarts"] == 1
        assert row["last_error"].startswith(reason) and row["last_error"].endswith("(hung)")
        poll_for(lambda: not _alive(old), timeout=10)


SPAWNER = """
import os, sys, time


def spawn():
    marker = os.environ["WACTL_TEST_DESCENDANTS"]
    if os.fork() == 0:
        # A child that stays in the worker's process group...
        if os.fork() == 0:
            # ...and a grandchild that leaves it, as a browser's helpers may.
            os.setsid()
            with open(marker + ".grandchild", "w") as f:
                f.write(str(os.getpid()))
            while True:
                time.sleep(60)
        with open(marker + ".child", "w") as f:
            f.write(str(os.getpid()))
        while True:
            time.sleep(60)


def patch_worker_main():
    import wactl.bot.worker as worker

    original = worker.main

    def main(argv):
        spawn()
        return original(argv)

    worker.main = main


if "wactl.bot.forkserver" in sys.orig_argv:
    # Workers are forked from here: spawn once the fork has become a worker.
    os.register_at_fork(after_in_child=patch_worker_main)
elif "wactl.bot" in sys.orig_argv:
    spawn()
"""


def test_stop_leaves_no_descendant(
    db_url: str, cli: CLI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SPAWNER)
    marker = tmp_path / "desc"
    extra = {"PYTHONPATH": str(site), "WACTL_TEST_DESCENDANTS": str(marker)}
    with daemon_for_cli(monkeypatch, extra) as daemon:
        _create(cli, "alpha")
        _start(cli, "alpha")
        worker = daemon.ps()["alpha"]["pid"]
        child_file = Path(str(marker) + ".child")
        grandchild_file = Path(str(marker) + ".grandchild")
        poll_for(lambda: child_file.exists() and grandchild_file.exists(), timeout=10)
        child = int(child_file.read_text())
        grandchild = int(grandchild_file.read_text())
        assert os.getpgid(child) == worker and os.getpgid(grandchild) != worker
        poll_for(lambda: daemon.ps()["alpha"]["processes"] >= 3, timeout=10)
        result = cli("tenant", "stop", "alpha")
        assert result.code == 0, result.err
        poll_for(lambda: not any(_alive(p) for p in (worker, child, grandchild)), timeout=10)


def test_daemon_kill9_readopts_workers(cli: CLI, daemon: Daemon) -> None:
    slugs = ["alpha", "beta", "gamma"]
    _create(cli, *slugs)
    _start(cli, *slugs)
    before = daemon.ps()
    daemon.kill9()
    assert all(_alive(before[s]["pid"]) for s in slugs)  # workers outlive the daemon
    daemon.start()
    after = daemon.ps()
    for slug in slugs:
        assert after[slug]["state"] == "RUNNING"
        assert after[slug]["pid"] == before[slug]["pid"]
        assert after[slug]["restarts"] == 0
        assert after[slug]["reason"] == "re-adopted after a daemon restart"
    # Exactly one worker process per tenant: no second copy was started.
    workers = daemon.worker_processes()
    assert sorted(p.pid for p in workers) == sorted(before[s]["pid"] for s in slugs)
    # The re-adopted workers are supervised for real: a crash is still noticed.
    os.kill(before["beta"]["pid"], signal.SIGKILL)
    poll_for(
        lambda: daemon.ps()["beta"]["restarts"] == 1 and daemon.ps()["beta"]["state"] == "RUNNING",
        timeout=15,
    )
    # And heartbeats flow again over the re-opened control connections.
    poll_for(lambda: (daemon.ps()["alpha"]["heartbeat_age_seconds"] or 99) < 1, timeout=10)


def test_daemon_restart_with_20_workers_restarts_none(cli: CLI, daemon: Daemon) -> None:
    slugs = [f"shop-{n:02d}" for n in range(20)]
    _create(cli, *slugs)
    result = cli("tenant", "start", "--all", "--timeout", "120")
    assert result.code == 0, result.err
    before = daemon.ps()
    assert all(before[s]["state"] == "RUNNING" for s in slugs)
    result = cli("daemon", "restart")
    assert result.code == 0, result.err
    assert "workers kept running" in result.err
    new_pid = json.loads(cli("daemon", "status", "--json").out)["pid"]
    assert new_pid != daemon.pid
    assert daemon.process is not None
    daemon.process.wait(timeout=10)  # the old daemon, our child, has exited: reap it
    daemon.process = None  # the CLI started the new one; the teardown finds it by socket
    after = daemon.ps()
    for slug in slugs:
        assert (after[slug]["pid"], after[slug]["restarts"], after[slug]["state"]) == (
            before[slug]["pid"],
            0,
            "RUNNING",
        )
    assert len(daemon.worker_processes()) == 20
    cli("daemon", "stop", "--with-workers")
    assert not daemon.worker_processes()


def test_reboot_brings_back_exactly_the_running_tenants(cli: CLI, daemon: Daemon) -> None:
    _create(cli, "alpha", "beta", "gamma")
    _start(cli, "alpha", "beta")
    assert cli("tenant", "stop", "beta").code == 0
    pids = [p.pid for p in daemon.worker_processes()]
    # A power cut: the daemon and every worker die at once.
    daemon.kill9()
    for pid in pids:
        os.killpg(pid, signal.SIGKILL)
    poll_for(lambda: not daemon.worker_processes(), timeout=10)
    daemon.start()
    daemon.wait_state("alpha", "RUNNING")
    rows = daemon.ps()
    assert rows["beta"]["state"] == "STOPPED" and rows["gamma"]["state"] == "STOPPED"
    assert rows["alpha"]["pid"] not in pids


def test_memory_ceiling_restarts_gracefully(
    db_url: str, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    with daemon_for_cli(monkeypatch, {"WACTL_DAEMON_MEMORY_LIMIT_MB": "1"}) as daemon:
        _create(cli, "alpha")
        _start(cli, "alpha")
        first = daemon.ps()["alpha"]["pid"]
        row: dict[str, Any] = {}

        def restarted() -> bool:
            # The count goes up when the old process has exited; the new pid follows.
            row.update(daemon.ps()["alpha"])
            return bool(row["restarts"] >= 1 and row["pid"] not in (None, first))

        poll_for(restarted, timeout=20)
        assert "over the 1 MB ceiling; restarted gracefully" in (row["last_error"] or "")
        poll_for(lambda: not _alive(first), timeout=10)


def test_sandbox_link_flow(cli: CLI, daemon: Daemon, db_url: str) -> None:
    _create(cli, "alpha")
    _start(cli, "alpha")
    poll_for(lambda: daemon.ps()["alpha"]["has_qr"], timeout=10)
    first_qr = daemon.client.request("GET", "/v1/tenants/alpha/qr")["qr"]
    assert first_qr
    drawn = cli("tenant", "qr", "alpha")
    assert drawn.code == 0 and "█" in drawn.out
    # The QR rotates like WhatsApp's.
    poll_for(
        lambda: daemon.client.request("GET", "/v1/tenants/alpha/qr")["qr"] != first_qr, timeout=10
    )
    with db_session(db_url) as session:
        tenant = session.scalar(select(Tenant).where(Tenant.slug == "alpha"))
        assert tenant is not None and tenant.session is not None
        assert tenant.status.value == "QR_PENDING" and tenant.session.last_qr
    # `tenant qr --wait` returns once the phone links.
    results: list[Any] = []
    waiter = threading.Thread(
        target=lambda: results.append(daemon.client.request("GET", "/v1/tenants/alpha/qr"))
    )
    waiter.start()
    waiter.join()
    assert cli("sandbox", "scan", "alpha").code == 0
    assert cli("tenant", "qr", "alpha", "--wait", "--timeout", "10").code == 0
    assert daemon.ps()["alpha"]["session_state"] == "CONNECTED"
    assert cli("sandbox", "scan", "alpha").code == 6  # already linked
    # The link survives a restart of the worker, like a real session.
    assert cli("tenant", "restart", "alpha").code == 0
    poll_for(lambda: daemon.ps()["alpha"]["session_state"] == "CONNECTED", timeout=10)
    assert "CONNECTED (its worker said so " in cli("tenant", "show", "alpha").out
    # Stopped, the link is only what the worker said when it last ran, and how long ago.
    assert cli("tenant", "stop", "alpha").code == 0
    shown = cli("tenant", "show", "alpha").out
    assert re.search(
        r"whatsapp +CONNECTED when its worker last ran, \S+ ago \(it does not run", shown
    )
    assert cli("tenant", "start", "alpha").code == 0
    poll_for(lambda: daemon.ps()["alpha"]["session_state"] == "CONNECTED", timeout=10)
    assert cli("tenant", "logout", "alpha").code == 0
    poll_for(lambda: daemon.ps()["alpha"]["has_qr"], timeout=10)
    with db_session(db_url) as session:
        tenant = session.scalar(select(Tenant).where(Tenant.slug == "alpha"))
        assert tenant is not None
        assert tenant.status.value == "QR_PENDING"


def test_qr_wait_times_out(cli: CLI, daemon: Daemon) -> None:
    _create(cli, "alpha")
    _start(cli, "alpha")
    result = cli("tenant", "qr", "alpha", "--wait", "--timeout", "0.5")
    assert result.code == 9
    assert result.err.endswith("error: alpha: not linked after 0.5 s\n")
    poll_for(lambda: daemon.ps()["alpha"]["has_qr"], timeout=10)
    assert cli("tenant", "stop", "alpha").code == 0
    # The code belonged to the stopped process: nobody shows it any more.
    assert daemon.ps()["alpha"]["has_qr"] is False
    assert daemon.client.request("GET", "/v1/tenants/alpha/qr")["qr"] is None
    result = cli("tenant", "qr", "alpha")
    assert result.code == 6
    assert "is not running (state STOPPED)" in result.err


def test_events_stream(cli: CLI, daemon: Daemon) -> None:
    _create(cli, "alpha")
    events: list[dict[str, Any]] = []
    reader = threading.Thread(target=events_in_thread, args=(daemon.client, events), daemon=True)
    reader.start()
    poll_for(lambda: daemon.client.request("GET", "/v1/status")["event_subscribers"] == 1)
    _start(cli, "alpha")
    poll_for(lambda: any(e["event"] == "qr" for e in events), timeout=10)
    states = [e["state"] for e in events if e["event"] == "worker" and e["slug"] == "alpha"]
    assert states[:2] == ["STARTING", "RUNNING"]
    daemon.client.request("POST", "/v1/shutdown", {"stop_workers": True})
    reader.join(timeout=15)
    assert not reader.is_alive()
    assert events[-1]["event"] == "shutdown"


def test_autostart_and_stop(cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil
    import tempfile

    runtime = Path(tempfile.mkdtemp(prefix="wt", dir="/tmp"))
    monkeypatch.setenv("WACTL_PATHS_RUNTIME_DIR", str(runtime))
    try:
        result = cli("daemon", "status")
        assert result.code == 7
        assert result.err == (
            f"error: the daemon is not running (no socket at {runtime}/wactld.sock); "
            "run `wactl daemon start`\n"
        )
        result = cli("ps", "--json")
        assert result.code == 0, result.err
        assert result.err.startswith("wactl: the daemon was not running; started it (pid ")
        assert cli("daemon", "start").err.startswith("the daemon is already running (pid ")
        result = cli("daemon", "stop")
        assert (result.code, result.err) == (0, "daemon stopped; workers keep running\n")
        assert not (runtime / "wactld.sock").exists()
        assert cli("daemon", "stop").err == "the daemon was not running\n"
    finally:
        cli("daemon", "stop", "--with-workers")
        shutil.rmtree(runtime, ignore_errors=True)


def test_second_daemon_refuses(daemon: Daemon) -> None:
    import subprocess
    import sys

    second = subprocess.run(
        [sys.executable, "-m", "wactl.daemon"],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode == 7
    assert second.stderr == (
        f"error: a daemon is already running (pid {daemon.pid}) for "
        f"{daemon.runtime_dir}; see `wactl daemon status`\n"
    )
    assert daemon.client.check_version()["pid"] == daemon.pid


def test_workers_rows_track_supervision(cli: CLI, daemon: Daemon, db_url: str) -> None:
    _create(cli, "alpha")
    _start(cli, "alpha")
    pid = daemon.ps()["alpha"]["pid"]

    def row() -> WorkerProcess:
        with db_session(db_url) as session:
            found: WorkerProcess | None = session.scalar(select(WorkerProcess))
            assert found is not None
            return found

    poll_for(lambda: row().heartbeat_at is not None, timeout=10)
    current = row()
    assert current.pid == pid
    assert current.create_time == pytest.approx(psutil.Process(pid).create_time(), abs=0.05)
    assert current.started_at is not None


def test_delete_stops_the_worker_first(cli: CLI, daemon: Daemon, db_url: str) -> None:
    _create(cli, "alpha", "beta")
    _start(cli, "alpha", "beta")
    pid = daemon.ps()["alpha"]["pid"]
    result = cli("tenant", "delete", "alpha", "--yes")
    assert result.code == 0, result.err
    assert "stopped the worker of 'alpha'" in result.err
    assert not _alive(pid)
    assert set(daemon.ps()) == {"beta"}
    with db_session(db_url) as session:
        assert session.scalar(select(WorkerProcess).where(WorkerProcess.pid == pid)) is None


def test_start_concurrency_is_bounded(
    db_url: str, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    with daemon_for_cli(monkeypatch, {"WACTL_DAEMON_START_CONCURRENCY": "1"}) as daemon:
        slugs = ["alpha", "beta", "gamma", "delta"]
        _create(cli, *slugs)
        events: list[dict[str, Any]] = []
        reader = threading.Thread(
            target=events_in_thread, args=(daemon.client, events), daemon=True
        )
        reader.start()
        poll_for(lambda: daemon.client.request("GET", "/v1/status")["event_subscribers"] == 1)
        _start(cli, "--all")
        poll_for(
            lambda: (
                {
                    e["slug"]
                    for e in list(events)
                    if e["event"] == "worker" and e["state"] == "RUNNING"
                }
                == set(slugs)
            ),
            timeout=10,
        )
        starting: set[str] = set()
        most = 0
        for event in [e for e in events if e["event"] == "worker"]:
            if event["state"] == "STARTING" and event["pid"]:
                starting.add(event["slug"])
            elif event["state"] == "RUNNING":
                starting.discard(event["slug"])
            most = max(most, len(starting))
        assert most == 1
        assert {e["slug"] for e in events if e["event"] == "worker"} == set(slugs)


def test_metrics_on_tcp(db_url: str, cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with daemon_for_cli(monkeypatch, {"WACTL_DAEMON_METRICS_ADDRESS": f"127.0.0.1:{port}"}):
        _create(cli, "alpha")
        _start(cli, "alpha")

        def scrape() -> str:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                body: bytes = r.read()
                assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                return body.decode()

        poll_for(lambda: 'wactl_worker_up{tenant="alpha"} 1' in scrape(), timeout=10)
        # Only metrics on TCP: no control endpoint is reachable there.
        try:
            urllib.request.urlopen(
                urllib.request.Request(f"http://127.0.0.1:{port}/v1/stop", data=b"{}"), timeout=5
            )
        except urllib.error.HTTPError as exc:
            assert exc.code == 404
        else:
            pytest.fail("the TCP metrics address served a control endpoint")


def test_stop_while_queued_for_a_start_slot(
    db_url: str, cli: CLI, monkeypatch: pytest.MonkeyPatch
) -> None:
    with daemon_for_cli(monkeypatch, {"WACTL_DAEMON_START_CONCURRENCY": "1"}) as daemon:
        slugs = [f"q-{n}" for n in range(4)]
        _create(cli, *slugs)
        assert cli("tenant", "start", "--all", "--no-wait").code == 0
        result = cli("tenant", "stop", "--all")
        assert result.code == 0, result.err
        rows = daemon.ps()
        assert {rows[s]["state"] for s in slugs} == {"STOPPED"}
        poll_for(lambda: not daemon.worker_processes(), timeout=15)


def test_handoff_raises_an_event(cli: CLI, daemon: Daemon) -> None:
    _create(cli, "alpha")
    _start(cli, "alpha")
    poll_for(lambda: daemon.ps()["alpha"]["has_qr"], timeout=10)
    assert cli("sandbox", "scan", "alpha").code == 0
    events: list[dict[str, Any]] = []
    reader = threading.Thread(target=events_in_thread, args=(daemon.client, events), daemon=True)
    reader.start()
    poll_for(lambda: daemon.client.request("GET", "/v1/status")["event_subscribers"] == 1)
    result = cli("sandbox", "send", "alpha", "--from", "+15551234567", "I want to talk to a person")
    assert result.code == 0, result.err
    poll_for(lambda: any(e["event"] == "handoff" for e in list(events)), timeout=10)
    handoff = next(e for e in events if e["event"] == "handoff")
    assert handoff["slug"] == "alpha" and handoff["chat"] == "+15551234567"


#: What asyncio logs when a future's or task's exception was dropped: an error nobody saw.
DROPPED = ("exception was never retrieved", "Task was destroyed but it is pending")


def test_no_future_or_task_error_is_dropped(
    cli: CLI, daemon: Daemon, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Starts, stops, crashes (of workers mid-request, of the fork server, a crash loop
    to quarantine), restarts of the daemon: every failure is handled or logged with its
    cause, never left for the garbage collector to report."""
    import concurrent.futures

    from wactl.errors import WactlError

    _create(cli, "alpha", "beta", "broken")
    _start(cli, "alpha", "beta")
    for slug in ("alpha", "beta"):
        assert cli("sandbox", "scan", slug).code == 0
    session_file = isolated_env / ".local/share/wactl/sandbox/broken/session.json"
    session_file.parent.mkdir(parents=True)
    session_file.write_text("{not json")
    assert cli("tenant", "start", "broken", "--timeout", "30").code == 6  # quarantined

    def send(slug: str, n: int) -> None:
        body = {"from": f"+1555030{n:04d}", "text": "hi", "id": f"{slug}-{n}"}
        with contextlib.suppress(WactlError):
            daemon.client.request("POST", f"/v1/tenants/{slug}/sandbox/send", body, timeout=30)

    # Workers killed while requests to them are in flight, again and again.
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for round_ in range(6):
            sends = [
                pool.submit(send, slug, round_ * 10 + n)
                for slug in ("alpha", "beta")
                for n in range(3)
            ]
            victim = ("alpha", "beta")[round_ % 2]  # 3 crashes each: below quarantine
            pid = daemon.ps()[victim]["pid"]
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            for future in sends:
                future.result()
            daemon.wait_state(victim, "RUNNING")
    # The fork server dies; workers are started and stopped meanwhile.
    for server in daemon.fork_servers():
        server.kill()
    _start(cli, "alpha", "beta")
    assert cli("tenant", "restart", "beta").code == 0
    assert cli("tenant", "stop", "alpha").code == 0
    # The daemon restarts, re-adopts, and stops with its workers.
    assert cli("daemon", "restart").code == 0
    assert daemon.process is not None
    daemon.process.wait(timeout=10)
    daemon.process = None
    assert cli("tenant", "restart", "beta").code == 0
    assert cli("daemon", "stop", "--with-workers").code == 0
    log = (isolated_env / ".local/share/wactl/logs/wactld.log").read_text()
    assert "daemon stopped" in log
    dropped = [line for line in log.splitlines() if any(text in line for text in DROPPED)]
    assert dropped == [], log


def _serving(db_url: str) -> Any:
    from wactl.db.daemon_claim import serving_daemon
    from wactl.db.engine import make_engine

    engine = make_engine(db_url)
    try:
        return serving_daemon(engine)
    finally:
        engine.dispose()


def _where(db_url: str) -> str:
    from wactl.db.engine import display_url, normalize_url

    return display_url(normalize_url(db_url))


def test_one_daemon_per_database_whatever_its_runtime_dir(
    cli: CLI, daemon: Daemon, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A system service (runtime dir /run/wactl) and an operator's shell (another
    runtime dir) on one database: the second daemon refuses, naming the first; the
    operator's commands use the running daemon and start none; a dead daemon's record
    needs no cleanup."""
    import shutil
    import subprocess
    import sys
    import tempfile

    holder = _serving(db_url)
    assert (holder.pid, holder.socket_path) == (daemon.pid, str(daemon.socket))
    other = Path(tempfile.mkdtemp(prefix="wt", dir="/tmp"))
    try:
        second = subprocess.run(
            [sys.executable, "-m", "wactl.daemon"],
            env={**daemon.env, "WACTL_PATHS_RUNTIME_DIR": str(other)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (second.returncode, second.stderr) == (
            6,
            f"error: another daemon already serves the database {_where(db_url)}: "
            f"{holder.describe()}; use that one (wactl finds it), or stop it first "
            f"(`wactl daemon stop`, as {holder.os_user})\n",
        )
        monkeypatch.setenv("WACTL_PATHS_RUNTIME_DIR", str(other))
        _create(cli, "alpha")
        _start(cli, "alpha")
        listed = cli("ps", "--json")
        assert (listed.code, listed.err) == (0, "")  # no "started it": the running one
        assert [row["slug"] for row in json.loads(listed.out)] == ["alpha"]
        status = json.loads(cli("daemon", "status", "--json").out)
        assert (status["pid"], status["socket"]) == (daemon.pid, str(daemon.socket))
        assert cli("daemon", "start").err == f"the daemon is already running (pid {daemon.pid})\n"
        assert not (other / "wactld.sock").exists()
        assert daemon.ps()["alpha"]["state"] == "RUNNING"
        # The daemon dies; its record stays, stale: the next command starts a new daemon
        # (which adopts the worker), with no cleanup by anyone.
        worker = daemon.ps()["alpha"]["pid"]
        daemon.kill9()
        listed = cli("ps", "--json")
        assert listed.code == 0, listed.err
        assert listed.err.startswith("wactl: the daemon was not running; started it (pid ")
        assert json.loads(listed.out)[0]["pid"] == worker
        holder = _serving(db_url)
        assert holder.pid != daemon.pid and holder.socket_path == str(other / "wactld.sock")
    finally:
        cli("daemon", "stop", "--with-workers")
        shutil.rmtree(other, ignore_errors=True)


@contextlib.contextmanager
def _claim_held_elsewhere(db_url: str, host: str, pid: int) -> Any:
    """Another PostgreSQL session (this test's) holds the daemon claim, and the record
    names ``host`` and ``pid``: as a daemon elsewhere, or a dead one, would leave it."""
    import datetime as dt

    from sqlalchemy import text

    from wactl.db.daemon_claim import LOCK_KEYS
    from wactl.db.engine import make_engine
    from wactl.db.models import ServingDaemon

    engine = make_engine(db_url)
    connection = engine.connect()
    try:
        keys = {"k1": LOCK_KEYS[0], "k2": LOCK_KEYS[1]}
        assert connection.execute(text("SELECT pg_try_advisory_lock(:k1, :k2)"), keys).scalar()
        backend = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
        connection.commit()
        with db_session(db_url) as session:
            session.add(
                ServingDaemon(
                    id=1,
                    host=host,
                    pid=pid,
                    process_start=1.0,
                    socket_path="/run/wactl/wactld.sock",
                    os_user="wactl",
                    version="0.1.0",
                    backend_pid=backend,
                    started_at=dt.datetime(2026, 12, 1, 8, 0, tzinfo=dt.UTC),
                )
            )
        yield connection
    finally:
        connection.invalidate()
        connection.close()
        engine.dispose()


def test_a_daemon_on_another_host_is_never_taken_over(
    cli: CLI, db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: a daemon on another host serves this database. Several daemons on one
    database are not supported yet (issue 15): a second one refuses, and the CLI says
    where the running one is instead of starting one."""
    import subprocess
    import sys

    if backend == "sqlite":
        pytest.skip("a SQLite database is one host's file")
    with _claim_held_elsewhere(db_url, "db-host-2.example", 4242):
        started = subprocess.run(
            [sys.executable, "-m", "wactl.daemon"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        described = (
            "pid 4242 on db-host-2.example (user wactl, wactl 0.1.0, "
            "socket /run/wactl/wactld.sock, since 2026-12-01 08:00:00Z)"
        )
        assert (started.returncode, started.stderr) == (
            6,
            f"error: a daemon on another host already serves the database {_where(db_url)}: "
            f"{described}; several daemons on one database are not supported yet (issue 15); "
            "run wactl on db-host-2.example, or stop that daemon first\n",
        )
        listed = cli("ps")
        assert (listed.code, listed.err) == (
            7,
            f"error: the daemon serving this database is {described}, another host; run "
            "this on db-host-2.example; several daemons on one database are not supported "
            "yet (issue 15)\n",
        )


def test_a_dead_daemon_s_lingering_session_is_ended(
    cli: CLI, db_url: str, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL: the claim is held by a session whose daemon (on this host) is gone,
    as after a crash the server has not noticed yet. The next daemon ends that session
    and serves the database; nobody cleans up by hand."""
    import socket

    if backend == "sqlite":
        pytest.skip("a SQLite lock file is freed by the kernel with its process")
    dead = subprocess_pid_that_exited()
    with _claim_held_elsewhere(db_url, socket.gethostname(), dead):
        assert _serving(db_url) is None  # the CLI sees it is stale, too
        with daemon_for_cli(monkeypatch) as daemon:
            holder = _serving(db_url)
            assert (holder.pid, holder.socket_path) == (daemon.pid, str(daemon.socket))
            _create(cli, "alpha")
            _start(cli, "alpha")


def subprocess_pid_that_exited() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid
