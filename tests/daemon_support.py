"""A real daemon for tests: started as a subprocess on a short socket path, polled until
it answers, and always torn down with every worker it started (STYLE.md 12)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support import poll_for
from wactl.daemon import proctree
from wactl.ipc.client import DaemonClient, DaemonNotRunning

#: Settings that make supervision fast enough to test without long waits.
FAST = {
    "WACTL_DAEMON_HEARTBEAT_INTERVAL_SECONDS": "0.2",
    "WACTL_DAEMON_HEARTBEAT_TIMEOUT_SECONDS": "2",
    "WACTL_DAEMON_STOP_GRACE_SECONDS": "5",
    "WACTL_DAEMON_BACKOFF_INITIAL_SECONDS": "0.1",
    "WACTL_DAEMON_BACKOFF_MAX_SECONDS": "0.5",
    "WACTL_DAEMON_SAMPLE_INTERVAL_SECONDS": "0.5",
    "WACTL_SANDBOX_QR_ROTATE_SECONDS": "0.5",
}


@dataclass
class Daemon:
    runtime_dir: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    seen_workers: set[int] = field(default_factory=set)

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "wactld.sock"

    @property
    def client(self) -> DaemonClient:
        return DaemonClient(self.socket, timeout=30.0)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "wactl.daemon"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"the daemon exited with {self.process.returncode}")
            try:
                self.client.check_version()
            except DaemonNotRunning:
                return False
            return True

        poll_for(answers, timeout=30)

    def kill9(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def ps(self) -> dict[str, dict[str, Any]]:
        rows = self.client.request("GET", "/v1/tenants")
        for row in rows:
            if row["pid"]:
                self.seen_workers.add(row["pid"])
        return {row["slug"]: row for row in rows}

    def wait_state(self, slug: str, state: str, timeout: float = 30) -> dict[str, Any]:
        result: dict[str, Any] = {}

        def reached() -> bool:
            result.update(self.ps()[slug])
            return bool(result["state"] == state)

        poll_for(reached, timeout=timeout)
        return result

    def worker_processes(self) -> list[psutil.Process]:
        """Every live worker (`python -m wactl.bot`, or forked by the fork server and
        named "wactl SLUG") started for this daemon's runtime dir."""
        return self._ours(proctree.is_worker)

    def fork_servers(self) -> list[psutil.Process]:
        """The live fork servers (`wactl.bot.forkserver`) of this daemon's runtime dir."""
        return [
            proc
            for proc in self._ours(proctree.is_fork_server)
            if proc.status() != psutil.STATUS_ZOMBIE
        ]

    def _ours(self, kind: Callable[[psutil.Process], bool]) -> list[psutil.Process]:
        """The processes of ``kind`` started for this daemon's runtime dir: by their
        environment, or (a forked worker, whose title took the memory its environment
        is read from) by the control socket it listens on there."""
        found = []
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if kind(proc) and (
                    proc.environ().get("WACTL_PATHS_RUNTIME_DIR") == str(self.runtime_dir)
                    or any(
                        Path(str(c.laddr)).parent == self.runtime_dir / "workers"
                        for c in proc.net_connections(kind="unix")
                    )
                ):
                    found.append(proc)
        return found

    def stop_everything(self) -> None:
        """Stop whichever daemon answers on the socket (ours, or one the CLI started),
        with its workers, then kill anything of this runtime dir that is left."""
        try:
            pid = int(self.client.check_version()["pid"])
            self.client.request("POST", "/v1/shutdown", {"stop_workers": True}, timeout=30)
            poll_for(lambda: not _running(pid), timeout=30)
        except Exception:  # noqa: S110 - best effort; the kills below make sure
            pass
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
        for proc in self.worker_processes():
            with contextlib.suppress(psutil.Error, ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(psutil.Error):
                proc.kill()
        for pid in self.seen_workers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        for proc in self.fork_servers():
            with contextlib.suppress(psutil.Error):
                proc.kill()


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@contextlib.contextmanager
def running_daemon(extra_env: dict[str, str] | None = None) -> Iterator[Daemon]:
    """A started daemon using the current WACTL_* environment plus FAST and ``extra_env``."""
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path is too long for them.
    runtime = Path(tempfile.mkdtemp(prefix="wt", dir="/tmp"))
    env = dict(os.environ)
    env.update(FAST)
    env.update(extra_env or {})
    env["WACTL_PATHS_RUNTIME_DIR"] = str(runtime)
    daemon = Daemon(runtime_dir=runtime, env=env)
    try:
        daemon.start()
        yield daemon
    finally:
        daemon.stop_everything()
        shutil.rmtree(runtime, ignore_errors=True)


@contextlib.contextmanager
def daemon_for_cli(
    monkeypatch: pytest.MonkeyPatch, extra_env: dict[str, str] | None = None
) -> Iterator[Daemon]:
    """`running_daemon`, with its WACTL_* settings exported to this test's environment
    so that the in-process CLI (the `cli` fixture) reaches the same daemon."""
    with running_daemon(extra_env) as daemon:
        for name, value in daemon.env.items():
            if name.startswith("WACTL_"):
                monkeypatch.setenv(name, value)
        yield daemon


def events_in_thread(client: DaemonClient, sink: list[dict[str, Any]]) -> None:
    """Collect SSE events into ``sink`` until the daemon closes the stream."""
    with contextlib.suppress(Exception):
        for event in client.events():
            sink.append(event)


def dump(value: Any) -> str:
    return json.dumps(value, indent=1, default=str)
