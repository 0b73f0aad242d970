"""Workers forked from the fork server (daemon.fork_workers): what the daemon sees of
them is what it sees of a worker it started itself, and a dead or outdated fork server
is replaced. Real daemon, real fork server, real workers and signals."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

import wactl.bot.forkserver
from tests.conftest import CLI
from tests.daemon_support import Daemon, daemon_for_cli
from tests.support import poll_for
from wactl import worker_names
from wactl.daemon import proctree

WAIT = 30.0


def create_and_start(cli: CLI, *slugs: str) -> None:
    for slug in slugs:
        result = cli("tenant", "create", slug, "--name", slug.title())
        assert result.code == 0, result.err
    result = cli("tenant", "start", *slugs)
    assert result.code == 0, result.err


def fork_server_of(pid: int) -> psutil.Process:
    parent = psutil.Process(pid).parent()
    assert parent is not None
    assert parent.cmdline()[1:3] == ["-m", "wactl.bot.forkserver"]
    return parent


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def restarted(daemon: Daemon, slug: str, old_pid: int) -> dict[str, object]:
    def done() -> bool:
        row = daemon.ps()[slug]
        return row["pid"] not in (None, old_pid) and row["state"] == "RUNNING"

    poll_for(done, timeout=WAIT)
    return daemon.ps()[slug]


def test_workers_are_forked_named_and_report_their_exit(cli: CLI, daemon: Daemon) -> None:
    create_and_start(cli, "alpha", "a-long-shop-name")
    rows = daemon.ps()
    alpha, long_one = rows["alpha"]["pid"], rows["a-long-shop-name"]["pid"]
    server = fork_server_of(alpha)
    assert fork_server_of(long_one).pid == server.pid  # one fork server for all
    assert daemon.fork_servers() == [server]
    # Named for ps and top (15 bytes), each in a session of its own.
    assert comm(alpha) == "alpha"
    assert comm(long_one) == "a-long-~op-name" == worker_names.worker_name("a-long-shop-name")
    assert os.getsid(alpha) == alpha and os.getsid(long_one) == long_one
    assert proctree.is_worker_of(psutil.Process(alpha), "alpha")
    assert not proctree.is_worker_of(psutil.Process(alpha), "beta")
    # They work: the sandbox shows a QR, the worker log has the worker's lines.
    assert cli("tenant", "qr", "alpha").code == 0
    log = cli("tenant", "logs", "alpha", "--worker").out
    assert f"starting the worker of tenant 'alpha' (pid {alpha}" in log
    # The exit status comes through the fork server: a signal, and a plain exit.
    os.kill(alpha, signal.SIGKILL)
    row = restarted(daemon, "alpha", alpha)
    assert row["last_error"] == "killed by SIGKILL"
    second = int(row["pid"])  # type: ignore[call-overload]
    os.kill(second, signal.SIGTERM)  # the worker stops cleanly: exit 0, not asked for
    row = restarted(daemon, "alpha", second)
    assert row["last_error"] == "exited with code 0"
    # Stopping leaves nothing behind; the fork server stays for the next start.
    third = int(row["pid"])  # type: ignore[call-overload]
    assert cli("tenant", "stop", "alpha").code == 0
    poll_for(lambda: not psutil.pid_exists(third) or comm(third) != "alpha", WAIT)
    assert daemon.fork_servers() == [server]


def ps_field(pid: int, field: str) -> str:
    return subprocess.run(
        ["ps", "-o", f"{field}=", "-p", str(pid)], capture_output=True, text=True, check=True
    ).stdout.strip()


def pgrep(*args: str) -> list[int]:
    found = subprocess.run(["pgrep", *args], capture_output=True, text=True, check=False)
    return sorted(int(pid) for pid in found.stdout.split())


@pytest.mark.parametrize("fork_workers", ["true", "false"])
def test_each_worker_is_found_by_its_slug_with_ps_and_pgrep(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch, fork_workers: str
) -> None:
    """Slugs longer than the kernel's 15-byte process name and sharing a long prefix:
    each worker still has its own name, and its command line names its slug, whether it
    was forked or started as `python -m wactl.bot SLUG`."""
    slugs = ["bakery-downtown-north", "bakery-downtown-south", "bakery-do", "b"]
    with daemon_for_cli(monkeypatch, {"WACTL_DAEMON_FORK_WORKERS": fork_workers}) as daemon:
        create_and_start(cli, *slugs)
        pids = {slug: int(daemon.ps()[slug]["pid"]) for slug in slugs}
        names = {slug: ps_field(pid, "comm") for slug, pid in pids.items()}
        assert names == {
            "bakery-downtown-north": "bakery-~n-north",
            "bakery-downtown-south": "bakery-~n-south",
            "bakery-do": "bakery-do",
            "b": "b",
        }
        for slug, pid in pids.items():
            assert ps_field(pid, "args").endswith(f"wactl.bot {slug}")
            assert pgrep("-f", f"wactl\\.bot {slug}$") == [pid]
            assert pgrep("-x", names[slug]) == [pid]
            assert proctree.is_worker_of(psutil.Process(pid), slug)
        assert sorted(p.pid for p in daemon.worker_processes()) == sorted(pids.values())
        # Found again by a new daemon, which adopts them rather than starting copies.
        daemon.kill9()
        daemon.start()
        assert {slug: daemon.ps()[slug]["pid"] for slug in slugs} == pids


def shared_libraries(pid: int) -> set[str]:
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        path = line.split(maxsplit=5)[-1] if line.count(" ") >= 5 else ""
        if ".so" in Path(path).name:
            found.add(path)
    return found


def test_the_fork_server_has_loaded_what_a_worker_needs(cli: CLI, daemon: Daemon) -> None:
    """What a worker loads after the fork is its own; on either database a running,
    talking worker maps no library the fork server had not loaded already."""
    create_and_start(cli, "alpha")
    assert cli("sandbox", "scan", "alpha").code == 0
    assert cli("sandbox", "send", "alpha", "--from", "+15551234567", "hola").code == 0
    alpha = daemon.ps()["alpha"]["pid"]
    server = fork_server_of(alpha)
    assert shared_libraries(alpha) - shared_libraries(server.pid) == set()


def test_a_dead_fork_server_is_replaced_and_its_workers_go_on(cli: CLI, daemon: Daemon) -> None:
    create_and_start(cli, "alpha")
    alpha = daemon.ps()["alpha"]["pid"]
    server = fork_server_of(alpha)
    server.kill()
    server.wait(timeout=WAIT)
    # The worker does not depend on it.
    assert daemon.ps()["alpha"]["state"] == "RUNNING" and psutil.pid_exists(alpha)
    create_and_start(cli, "beta")
    beta = daemon.ps()["beta"]["pid"]
    assert fork_server_of(beta).pid != server.pid
    # alpha's exit status died with the old fork server: the daemon still restarts it.
    os.kill(alpha, signal.SIGKILL)
    row = restarted(daemon, "alpha", alpha)
    assert row["last_error"] == "exited (exit status unknown: adopted from an earlier daemon)"
    assert fork_server_of(int(row["pid"])).pid == fork_server_of(beta).pid  # type: ignore[call-overload]
    assert (
        "the fork server exited; the next worker start runs a new one" in cli("daemon", "logs").out
    )


def test_a_changed_module_replaces_the_fork_server(cli: CLI, daemon: Daemon) -> None:
    """An upgrade changes files the fork server loaded: new workers must run the new
    code, so the fork server is replaced before the next fork."""
    create_and_start(cli, "alpha")
    alpha = daemon.ps()["alpha"]["pid"]
    old = fork_server_of(alpha)
    source = Path(wactl.bot.forkserver.__file__)
    before = source.stat()
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    try:
        create_and_start(cli, "beta")
    finally:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    beta = daemon.ps()["beta"]["pid"]
    assert fork_server_of(beta).pid != old.pid
    poll_for(lambda: not old.is_running() or old.status() == psutil.STATUS_ZOMBIE, WAIT)
    assert daemon.ps()["alpha"]["pid"] == alpha and psutil.pid_exists(alpha)
    assert f"replacing the fork server: {source} changed since the fork server loaded it" in (
        cli("daemon", "logs").out
    )


@pytest.mark.parametrize("backend", ["sqlite"])  # process handling only
def test_without_fork_workers_each_worker_is_its_own_interpreter(
    cli: CLI, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with daemon_for_cli(monkeypatch, {"WACTL_DAEMON_FORK_WORKERS": "false"}) as daemon:
        create_and_start(cli, "alpha")
        alpha = daemon.ps()["alpha"]["pid"]
        assert psutil.Process(alpha).cmdline()[1:] == ["-m", "wactl.bot", "alpha"]
        assert daemon.fork_servers() == []
        assert proctree.is_worker_of(psutil.Process(alpha), "alpha")


def test_the_fork_server_protocol(tmp_path: Path) -> None:
    """Face to face with the fork server: a bad request gets an error, a worker forked
    for a tenant that does not exist exits as `python -m wactl.bot` would, with the same
    code and log lines, and the end of the daemon's socket ends the fork server."""

    def environment(name: str) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path / name),
            "XDG_CONFIG_HOME": str(tmp_path / name / "config"),
            "WACTL_PATHS_DATA_DIR": str(tmp_path / name / "data"),
            "WACTL_PATHS_RUNTIME_DIR": str(tmp_path / name / "run"),
        }

    def logged(name: str) -> list[str]:
        log = tmp_path / name / "data" / "logs" / "tenants" / "nosuch.log"
        # Without the time, the pid and the directory of the run.
        text = log.read_text()
        lines = [line.split(" ", 1)[1].replace(f"/{name}/", "/X/") for line in text.splitlines()]
        return [re.sub(r"pid \d+", "pid N", line) for line in lines]

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server = subprocess.Popen(
        [sys.executable, "-m", "wactl.bot.forkserver", str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
        env=environment("server"),
    )
    theirs.close()
    ours.settimeout(WAIT)
    try:
        assert json.loads(ours.recv(65536)) == {"ready": server.pid}
        output = tmp_path / "output"
        with output.open("ab") as sink:
            socket.send_fds(ours, [b"not json"], [sink.fileno()])
            assert json.loads(ours.recv(65536)) == {"error": "bad request {} with 1 descriptors"}
            request = {"op": "spawn", "slug": "nosuch", "env": environment("forked")}
            socket.send_fds(ours, [json.dumps(request).encode()], [sink.fileno()])
            pid = json.loads(ours.recv(65536))["spawned"]
            exited = json.loads(ours.recv(65536))
        alone = subprocess.run(
            [sys.executable, "-m", "wactl.bot", "nosuch"],
            env=environment("alone"),
            timeout=WAIT,
            check=False,
        )
        assert alone.returncode == 4  # no schema in the (empty) database
        assert exited == {"exited": pid, "code": alone.returncode}
        assert logged("forked") == logged("alone")
        assert "has no wactl schema; run `wactl init`" in "".join(logged("forked"))
        assert output.read_bytes() == b""  # the worker logs to its log file, as alone
    finally:
        ours.close()
    assert server.wait(timeout=WAIT) == 0
