"""wactld next to supervisord: status latency, kill -9 recovery, idle cost, start time.

Run it from the repository after `make setup`::

    .venv/bin/python bench/supervise.py            # a table on stdout, progress on stderr
    .venv/bin/python bench/supervise.py --json     # the same figures as JSON

It is a benchmark, not a test: it prints medians, ratios and whether each target is met,
and never fails because of a timing. It exits non-zero only when it could not measure
(a command failed, a worker did not come up).

What it does, in one run (about 4 minutes on 2 cores, longer on a busy machine):

1. Makes a throwaway home under ``/tmp/wb*`` (short, because AF_UNIX paths are limited
   to 107 bytes): XDG dirs, ``WACTL_PATHS_DATA_DIR`` and ``WACTL_PATHS_RUNTIME_DIR``;
   runs `wactl init`, creates N sandbox tenants, `wactl daemon start`, then times
   `wactl tenant start --all` (which returns once every worker is RUNNING).
2. Starts supervisord (from its own venv, ``.bench-venv``, made here when missing)
   with N programs. supervisord cannot run a real wactl worker (the worker needs the
   daemon's control protocol), so each program is a stand-in: the real worker's
   imports (``import wactl.bot.worker``), then a sleep loop waking every 5 s, as often
   as a worker heartbeats. ``startsecs=0``, ``autorestart=true``.
3. Status latency: `wactl ps --json` and `supervisorctl status`, each a fresh process,
   interleaved, after warm-up runs.
4. kill -9 -> new pid: SIGKILL one worker and time until its supervisor has a new child
   process, seen by reading ``/proc/<supervisor>/task/*/children`` every millisecond
   (passive: it does not wake either supervisor). Then the same through each
   supervisor's API (``GET /v1/tenants/SLUG``, XML-RPC ``getProcessInfo``), every
   millisecond. Each kill hits a different worker: wactl restarts a worker's first
   crash at once and backs off from the second, supervisord restarts every time.
5. Idle: both supervisors' CPU time over the same 60 s window (the bench sleeps; wactl's
   sampling ticks are included), then USS of each supervisor and of its workers.

Everything started here carries ``WACTL_BENCH_RUN=<temp dir>`` in its environment;
teardown (also on error and Ctrl-C) stops wactld with its workers, shuts supervisord
down, then kills by pid any process that still carries the marker.

It must not touch the developer's wactl: no command runs without the throwaway
``HOME``/``XDG_*``/``WACTL_*`` environment.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import psutil
from _support import (
    BenchError,
    interrupt,
    isolated_env,
    run_seconds,
    say,
    teardown,
    wactl_executable,
)

REPO = Path(__file__).resolve().parent.parent
#: supervisord's own venv (gitignored), made on first use.
SUPERVISOR_VENV = REPO / ".bench-venv"
SUPERVISOR_REQUIREMENT = "supervisor>=4.2,<5"
#: How often the kill -9 loops look for the new process.
POLL_SECONDS = 0.001
#: Longest wait for anything to come up before the run is declared broken.
UP_TIMEOUT = 120.0
MB = 1024 * 1024

STAND_IN_WORKER = '''\
"""supervisord's stand-in for a wactl worker: the worker's imports, then a sleep loop."""
import time

import wactl.bot.worker  # noqa: F401 - the real worker's import graph, for its footprint

while True:
    time.sleep(5.0)  # as often as a wactl worker heartbeats (the daemon's default)
'''


class Side(Protocol):
    """What teardown and error reports need from each supervisor under test."""

    def stop(self) -> None: ...

    def diagnose(self) -> None: ...


def poll_until(what: str, condition: Callable[[], bool], timeout: float = UP_TIMEOUT) -> float:
    """Call ``condition`` every 20 ms until it is true; the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def wait_for_pid(what: str, probe: Callable[[], int | None], timeout: float) -> tuple[float, int]:
    """Call ``probe`` every 20 ms until it names a pid; the seconds it took and the pid."""
    start = time.monotonic()
    while True:
        pid = probe()
        if pid is not None:
            return time.monotonic() - start, pid
        if time.monotonic() - start > timeout:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.02)


# --- processes ---------------------------------------------------------------------------


def child_pids(pid: int) -> set[int]:
    """Direct children of ``pid`` from /proc (every thread's ``children`` file)."""
    found: set[int] = set()
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        with contextlib.suppress(OSError):
            found.update(int(part) for part in (task / "children").read_text().split())
    return found


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def uss_bytes(pid: int) -> int:
    return int(psutil.Process(pid).memory_full_info().uss)


# --- talking HTTP on a Unix socket (wactld's API, supervisord's XML-RPC) ----------------


class UnixHTTPConnection(http.client.HTTPConnection):
    """One HTTP/1.1 connection over a Unix socket (both clients open one per request)."""

    def __init__(self, path: Path, timeout: float = 10.0) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.unix_path))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def get_json(path: Path, url: str) -> Any:
    """GET ``url`` from the HTTP server on the Unix socket ``path``; the decoded JSON."""
    connection = UnixHTTPConnection(path)
    try:
        connection.request("GET", url, headers={"Accept": "application/json"})
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise BenchError(f"GET {url} on {path}: HTTP {response.status}: {body[:200]!r}")
    return json.loads(body)


class UnixTransport(xmlrpc.client.Transport):
    """XML-RPC over a Unix socket, a new connection per call, the previous one closed."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.unix_path = path
        self._last: http.client.HTTPConnection | None = None

    def make_connection(self, host: tuple[str, dict[str, str]] | str) -> http.client.HTTPConnection:
        if self._last is not None:
            self._last.close()
        self._last = UnixHTTPConnection(self.unix_path)
        return self._last


# --- the two sides -----------------------------------------------------------------------


@dataclass
class WactlSide:
    """wactl with its own throwaway home, data dir and short runtime dir."""

    base: Path
    env: dict[str, str] = field(init=False)
    wactl: Path = field(init=False)
    daemon_pid: int | None = None

    def __post_init__(self) -> None:
        self.wactl = wactl_executable()
        self.env = isolated_env(
            self.base,
            {
                "WACTL_PATHS_DATA_DIR": str(self.base / "data" / "wactl"),
                "WACTL_PATHS_RUNTIME_DIR": str(self.runtime_dir),
                "COLUMNS": "200",
            },
        )

    @property
    def runtime_dir(self) -> Path:
        return self.base / "r"

    @property
    def socket(self) -> Path:
        return self.runtime_dir / "wactld.sock"

    def cli(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.wactl), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise BenchError(
                f"`wactl {' '.join(args)}` exited {result.returncode}: {result.stderr.strip()}"
            )
        return result

    def views(self) -> dict[str, dict[str, Any]]:
        rows: list[dict[str, Any]] = get_json(self.socket, "/v1/tenants")
        return {row["slug"]: row for row in rows}

    def view(self, slug: str) -> dict[str, Any]:
        row: dict[str, Any] = get_json(self.socket, f"/v1/tenants/{slug}")
        return row

    def running_pids(self) -> dict[str, int]:
        """slug -> pid of every RUNNING worker."""
        return {
            slug: int(row["pid"])
            for slug, row in self.views().items()
            if row["state"] == "RUNNING" and row["pid"]
        }

    def diagnose(self) -> None:
        """After a failed run: keep the logs, and show what is not RUNNING and why."""
        logs = self.base / "data" / "wactl" / "logs"
        if not logs.exists():
            return
        kept = Path(tempfile.mkdtemp(prefix="wb-logs-", dir="/tmp"))
        shutil.copytree(logs, kept, dirs_exist_ok=True)
        say(f"wactl logs kept in {kept}")
        try:
            views = self.views()
        except (OSError, BenchError, ValueError) as exc:
            say(f"wactl: the daemon does not answer: {exc}")
            views = {}
        for slug, row in views.items():
            if row["state"] == "RUNNING":
                continue
            say(
                f"wactl {slug}: {row['state']} pid {row['pid']} restarts {row['restarts']} "
                f"last error {row['last_error']!r}"
            )
            _tail(logs / "tenants" / f"{slug}.log", 8)
        _tail(logs / "wactld.log", 15)

    def stop(self) -> None:
        subprocess.run(
            [str(self.wactl), "daemon", "stop", "--with-workers", "--timeout", "60"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=90,
            check=False,
        )


@dataclass
class SupervisordSide:
    """supervisord from .bench-venv, with one stand-in program per tenant."""

    base: Path
    slugs: list[str]
    env: dict[str, str] = field(init=False)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.env = isolated_env(self.base, {"COLUMNS": "200"})

    @property
    def directory(self) -> Path:
        return self.base / "s"

    @property
    def config_path(self) -> Path:
        return self.directory / "supervisord.conf"

    @property
    def socket(self) -> Path:
        return self.directory / "supervisor.sock"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise BenchError("supervisord is not running")
        return self.process.pid

    def write_config(self) -> None:
        self.directory.mkdir(parents=True)
        (self.directory / "logs").mkdir()
        stand_in = self.directory / "stand_in_worker.py"
        stand_in.write_text(STAND_IN_WORKER)
        sections = [
            f"[unix_http_server]\nfile={self.socket}\nchmod=0700\n",
            "[supervisord]\n"
            f"logfile={self.directory / 'supervisord.log'}\n"
            f"pidfile={self.directory / 'supervisord.pid'}\n"
            f"childlogdir={self.directory / 'logs'}\n"
            "nodaemon=true\nsilent=true\n",
            "[rpcinterface:supervisor]\n"
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n",
            f"[supervisorctl]\nserverurl=unix://{self.socket}\n",
        ]
        for slug in self.slugs:
            sections.append(
                f"[program:{slug}]\n"
                f"command={sys.executable} {stand_in} {slug}\n"
                "startsecs=0\nautorestart=true\n"
                # Like a wactl worker: output to a per-tenant log file.
                f"stdout_logfile={self.directory / 'logs' / slug}.log\n"
                "redirect_stderr=true\n"
                f"directory={self.directory}\n"
            )
        self.config_path.write_text("\n".join(sections))

    def start(self) -> None:
        self.process = subprocess.Popen(
            [str(SUPERVISOR_VENV / "bin" / "supervisord"), "-n", "-c", str(self.config_path)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def rpc(self) -> Any:
        """A proxy for supervisord's XML-RPC interface (``.supervisor.getProcessInfo``...)."""
        return xmlrpc.client.ServerProxy("http://localhost", transport=UnixTransport(self.socket))

    def running_pids(self) -> dict[str, int]:
        try:
            infos: list[dict[str, Any]] = self.rpc().supervisor.getAllProcessInfo()
        except OSError:
            return {}
        return {
            info["name"]: int(info["pid"])
            for info in infos
            if info["statename"] == "RUNNING" and info["pid"]
        }

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SUPERVISOR_VENV / "bin" / "supervisorctl"), "-c", str(self.config_path), *args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def diagnose(self) -> None:
        _tail(self.directory / "supervisord.log", 15)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.ctl("shutdown")
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def _tail(path: Path, lines: int) -> None:
    """The last ``lines`` lines of a log file, on stderr."""
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return
    say(f"--- {path.name} (last {len(text)} lines)")
    for line in text:
        sys.stderr.write(f"    {line}\n")


def ensure_supervisor_venv() -> str:
    """Make .bench-venv with supervisor when it is missing; the installed version."""
    supervisord = SUPERVISOR_VENV / "bin" / "supervisord"
    if not supervisord.exists():
        say(f"making {SUPERVISOR_VENV} with {SUPERVISOR_REQUIREMENT} (from PyPI)")
        subprocess.run([sys.executable, "-m", "venv", str(SUPERVISOR_VENV)], check=True)
        subprocess.run(
            [
                str(SUPERVISOR_VENV / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                SUPERVISOR_REQUIREMENT,
            ],
            check=True,
        )
    version = subprocess.run(
        [str(supervisord), "--version"], capture_output=True, text=True, check=True
    )
    return version.stdout.strip()


# --- measurements ------------------------------------------------------------------------


def timed(command: Callable[[], object]) -> float:
    start = time.perf_counter()
    command()
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8]


def status_latencies(
    wactl: WactlSide, supervisord: SupervisordSide, runs: int, workers: int
) -> tuple[list[float], list[float]]:
    """Wall time of `wactl ps --json` and `supervisorctl status`, fresh processes,
    interleaved so that both see the same machine; each answer is checked."""

    def wactl_ps() -> None:
        rows = json.loads(wactl.cli("ps", "--json").stdout)
        if len(rows) != workers:
            raise BenchError(f"`wactl ps --json` listed {len(rows)} workers, not {workers}")

    def supervisorctl_status() -> None:
        result = supervisord.ctl("status")
        lines = [line for line in result.stdout.splitlines() if "RUNNING" in line]
        if result.returncode != 0 or len(lines) != workers:
            raise BenchError(
                f"`supervisorctl status` exited {result.returncode} with {len(lines)} RUNNING"
            )

    for _ in range(3):  # warm-up: page cache, .pyc files
        wactl_ps()
        supervisorctl_status()
    wactl_times: list[float] = []
    supervisor_times: list[float] = []
    for index in range(runs):
        pair = [(wactl_ps, wactl_times), (supervisorctl_status, supervisor_times)]
        if index % 2:
            pair.reverse()
        for command, sink in pair:
            sink.append(timed(command))
    return wactl_times, supervisor_times


def request_latencies(
    wactl: WactlSide, supervisord: SupervisordSide, runs: int
) -> tuple[list[float], list[float]]:
    """One in-process request each (no interpreter start): the server's share of a status."""
    rpc = supervisord.rpc()
    wactl_times: list[float] = []
    supervisor_times: list[float] = []
    for _ in range(runs):
        wactl_times.append(timed(lambda: get_json(wactl.socket, "/v1/tenants")))
        supervisor_times.append(timed(lambda: rpc.supervisor.getAllProcessInfo()))
    return wactl_times, supervisor_times


@dataclass
class KillTrial:
    side: str
    slug: str
    method: str
    old_pid: int
    #: The supervisor's first new child after the kill.
    new_pid: int
    #: The pid that was RUNNING afterwards (another one if ``new_pid`` died too).
    running_pid: int
    seconds: float
    back_running_seconds: float


def kill_and_watch_children(parent: int, victim: int) -> tuple[float, int]:
    """SIGKILL ``victim`` and time until ``parent`` has a child it did not have before."""
    before = child_pids(parent)
    if victim not in before:
        raise BenchError(f"pid {victim} is not a child of {parent}")
    start = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    while True:
        new = child_pids(parent) - before
        if new:
            return time.perf_counter() - start, min(new)
        if time.perf_counter() - start > UP_TIMEOUT:
            raise BenchError(f"no new child of {parent} within {UP_TIMEOUT:g} s")
        time.sleep(POLL_SECONDS)


def kill_and_poll_api(
    parent: int, victim: int, current_pid: Callable[[], int | None]
) -> tuple[float, int]:
    """SIGKILL ``victim`` and time until the supervisor's API reports another live pid."""
    if victim not in child_pids(parent):
        raise BenchError(f"pid {victim} is not a child of {parent}")
    start = time.perf_counter()
    os.kill(victim, signal.SIGKILL)
    while True:
        pid = current_pid()
        if pid and pid != victim:
            return time.perf_counter() - start, pid
        if time.perf_counter() - start > UP_TIMEOUT:
            raise BenchError(f"the API showed no new pid within {UP_TIMEOUT:g} s")
        time.sleep(POLL_SECONDS)


def kill_trials(
    wactl: WactlSide, supervisord: SupervisordSide, slugs: list[str], method: str
) -> list[KillTrial]:
    """One kill per slug on each side, alternating sides; waits for RUNNING after each."""
    rpc = supervisord.rpc()
    trials: list[KillTrial] = []

    def wactl_pid(slug: str) -> int | None:
        pid = wactl.view(slug)["pid"]
        return int(pid) if pid else None

    # wactl's workers are children of its fork server (daemon.fork_workers), or of the
    # daemon itself with that off: whichever started the first one starts the new ones.
    first = wactl_pid(slugs[0])
    if first is None:
        raise BenchError(f"wactl: {slugs[0]} has no live pid before the kills")
    wactl_parent = psutil.Process(first).ppid()

    def supervisord_pid(slug: str) -> int | None:
        return int(rpc.supervisor.getProcessInfo(slug)["pid"]) or None

    def wactl_running(slug: str, old: int) -> int | None:
        row = wactl.view(slug)
        running = row["state"] == "RUNNING" and row["pid"] not in (None, old)
        return int(row["pid"]) if running else None

    def supervisord_running(slug: str, old: int) -> int | None:
        info = rpc.supervisor.getProcessInfo(slug)
        running = info["statename"] == "RUNNING" and info["pid"] not in (0, old)
        return int(info["pid"]) if running else None

    Contender = tuple[str, int, Callable[[str], int | None], Callable[[str, int], int | None]]
    sides: list[Contender] = [
        ("wactl", wactl_parent, wactl_pid, wactl_running),
        ("supervisord", supervisord.pid, supervisord_pid, supervisord_running),
    ]
    # Looking the pid up wakes supervisord, whose loop then sleeps a full second in
    # poll(): killing right after would always land at the same point of that second.
    # A random pause puts each kill at a random point of it (seeded: runs repeat).
    phase = random.Random(1)  # noqa: S311 - timing jitter, not cryptography
    for index, slug in enumerate(slugs):
        order = sides if index % 2 == 0 else sides[::-1]
        for side, parent, pid_of, running_pid in order:
            old = pid_of(slug)
            if old is None:
                raise BenchError(f"{side}: {slug} has no live pid before the kill")
            if method == "children":
                time.sleep(phase.random())
                seconds, new = kill_and_watch_children(parent, old)
            else:
                seconds, new = kill_and_poll_api(parent, old, partial(pid_of, slug))
            # RUNNING again under any new pid: if the first replacement dies too, the
            # supervisor starts another, and the trial records it (running_pid != new_pid).
            # wactl gives a silent starting worker START_TIMEOUT (60 s) before killing it.
            waited, running = wait_for_pid(
                f"{side} {slug} RUNNING again", partial(running_pid, slug, old), timeout=150
            )
            settled = seconds + waited
            trials.append(KillTrial(side, slug, method, old, new, running, seconds, settled))
            time.sleep(0.05)
    return trials


@dataclass
class Idle:
    seconds: float
    daemon_cpu_percent: float
    workers_cpu_percent: float


def idle_cpu(pids: dict[str, tuple[int, list[int]]], seconds: float) -> dict[str, Idle]:
    """CPU of each supervisor (and, summed, of its workers) over one shared window."""
    before = {
        side: (cpu_seconds(daemon), sum(cpu_seconds(pid) for pid in workers))
        for side, (daemon, workers) in pids.items()
    }
    start = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - start
    result = {}
    for side, (daemon, workers) in pids.items():
        daemon_then, workers_then = before[side]
        result[side] = Idle(
            seconds=wall,
            daemon_cpu_percent=100 * (cpu_seconds(daemon) - daemon_then) / wall,
            workers_cpu_percent=100
            * (sum(cpu_seconds(pid) for pid in workers) - workers_then)
            / wall,
        )
    return result


# --- the report --------------------------------------------------------------------------


@dataclass
class Row:
    metric: str
    unit: str
    wactl: float | None
    supervisord: float | None
    target: str = ""
    #: True/False when the row has a target; None when it is for information.
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if self.wactl is None or not self.supervisord:
            return None
        return self.wactl / self.supervisord


def _number(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    digits = {"ms": 1, "s": 2, "%": 3, "MB": 1, "": 0}[unit]
    return f"{value:.{digits}f} {unit}".strip()


def render_table(rows: list[Row]) -> str:
    header = ("metric", "wactl", "supervisord", "ratio", "target", "met")
    cells = [header]
    for row in rows:
        verdict = "-" if row.met is None else ("met" if row.met else "NOT MET")
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}×"
        cells.append(
            (
                row.metric,
                _number(row.wactl, row.unit),
                _number(row.supervisord, row.unit),
                ratio,
                row.target or "-",
                verdict,
            )
        )
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = []
    for number, line in enumerate(cells):
        lines.append(
            "  ".join(
                cell.ljust(widths[i]) if i in (0, 4, 5) else cell.rjust(widths[i])
                for i, cell in enumerate(line)
            ).rstrip()
        )
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict)
    elapsed_seconds: float = 0.0

    def as_json(self) -> str:
        rows = [{**asdict(row), "ratio": row.ratio} for row in self.rows]
        return json.dumps(
            {
                "setup": self.setup,
                "rows": rows,
                "notes": self.notes,
                "samples": self.samples,
                "elapsed_seconds": round(self.elapsed_seconds, 1),
            },
            indent=2,
        )

    def as_text(self) -> str:
        setup = "\n".join(f"  {key}: {value}" for key, value in self.setup.items())
        notes = "\n".join(f"  - {note}" for note in self.notes)
        return (
            f"setup:\n{setup}\n\n{render_table(self.rows)}\n\nnotes:\n{notes}\n\n"
            f"run took {self.elapsed_seconds:.0f} s\n"
        )


# --- the run -----------------------------------------------------------------------------


def run(args: argparse.Namespace, base: Path, report: Report, cleanup: list[Side]) -> None:
    slugs = [f"shop-{number:02d}" for number in range(1, args.workers + 1)]
    kills = min(args.kills, args.workers // 2)
    report.setup.update(
        {
            "machine": f"{os.cpu_count()} cores, Linux {os.uname().release}, "
            f"Python {sys.version.split()[0]}",
            "supervisord": ensure_supervisor_venv(),
            "workers per side": args.workers,
            "temp dir": str(base),
            "load average at start (1, 5, 15 min)": _load(),
        }
    )

    wactl = WactlSide(base)
    cleanup.append(wactl)
    say("wactl init")
    wactl.cli("init")
    config = json.loads(wactl.cli("config", "show", "--json").stdout)
    report.setup["wactl config"] = (
        "defaults except paths (WACTL_PATHS_DATA_DIR, WACTL_PATHS_RUNTIME_DIR); "
        + ", ".join(f"{key}={value}" for key, value in config["daemon"].items())
    )
    say(f"creating {len(slugs)} sandbox tenants")
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        create_seconds = timed(
            lambda: list(
                pool.map(
                    lambda slug: wactl.cli(
                        "tenant", "create", slug, "--name", slug.title(), "--engine", "sandbox"
                    ),
                    slugs,
                )
            )
        )
    say("wactl daemon start")
    daemon_start = timed(lambda: wactl.cli("daemon", "start"))
    wactl.daemon_pid = int(json.loads(wactl.cli("daemon", "status", "--json").stdout)["pid"])
    say("wactl tenant start --all")
    start_all = timed(
        lambda: wactl.cli("tenant", "start", "--all", "--timeout", "120", timeout=180)
    )
    if len(wactl.running_pids()) != len(slugs):
        raise BenchError("`wactl tenant start --all` returned before every worker was RUNNING")

    supervisord = SupervisordSide(base, slugs)
    cleanup.append(supervisord)
    supervisord.write_config()
    say(f"supervisord with {len(slugs)} stand-in programs")
    supervisord_up = timed(supervisord.start) + poll_until(
        "supervisord's programs RUNNING",
        lambda: len(supervisord.running_pids()) == len(slugs),
    )
    say("settling for 5 s (the stand-ins import the worker's modules)")
    time.sleep(5)

    say(f"status latency, {args.runs} runs each")
    wactl_status, supervisor_status = status_latencies(wactl, supervisord, args.runs, len(slugs))
    wactl_request, supervisor_request = request_latencies(wactl, supervisord, args.runs)

    say(f"kill -9 -> new pid, {kills} kills each, watching /proc children")
    passive = kill_trials(wactl, supervisord, slugs[:kills], "children")
    say(f"kill -9 -> new pid, {kills} kills each, polling the APIs")
    polled = kill_trials(wactl, supervisord, slugs[kills : 2 * kills], "api")

    poll_until(
        "every worker RUNNING again",
        lambda: (
            len(wactl.running_pids()) == len(slugs)
            and len(supervisord.running_pids()) == len(slugs)
        ),
    )
    time.sleep(2)
    wactl_workers = wactl.running_pids()
    supervisor_workers = supervisord.running_pids()
    say(f"idle: {args.idle_seconds:g} s of CPU time, both supervisors at once (bench asleep)")
    psutil.cpu_percent()  # starts the machine-wide measurement the next call reads
    idle = idle_cpu(
        {
            "wactl": (wactl.daemon_pid, list(wactl_workers.values())),
            "supervisord": (supervisord.pid, list(supervisor_workers.values())),
        },
        args.idle_seconds,
    )
    report.setup["machine CPU busy during the idle window"] = f"{psutil.cpu_percent():.1f} %"
    report.setup["load average at the end (1, 5, 15 min)"] = _load()
    if wactl.running_pids() != wactl_workers:
        report.notes.append("a wactl worker was restarted during the idle window (see ps)")
    wactl_uss = [uss_bytes(pid) / MB for pid in wactl_workers.values()]
    supervisor_uss = [uss_bytes(pid) / MB for pid in supervisor_workers.values()]
    wactl_daemon_uss = uss_bytes(wactl.daemon_pid) / MB
    supervisor_daemon_uss = uss_bytes(supervisord.pid) / MB

    def ms(values: list[float]) -> list[float]:
        return [1000 * value for value in values]

    def kill_seconds(trials: list[KillTrial], side: str, attribute: str) -> list[float]:
        return [getattr(t, attribute) for t in trials if t.side == side]

    status_ratio = median(wactl_status) / median(supervisor_status)
    kill_w = median(ms(kill_seconds(passive, "wactl", "seconds")))
    kill_s = median(ms(kill_seconds(passive, "supervisord", "seconds")))
    report.rows = [
        Row(
            "status, fresh process, median",
            "ms",
            1000 * median(wactl_status),
            1000 * median(supervisor_status),
            "≤ 1.0× supervisorctl",
            status_ratio <= 1.0,
        ),
        Row(
            "status, fresh process, p90",
            "ms",
            1000 * p90(wactl_status),
            1000 * p90(supervisor_status),
        ),
        Row(
            "status, one in-process request, median",
            "ms",
            1000 * median(wactl_request),
            1000 * median(supervisor_request),
        ),
        Row(
            "kill -9 -> new child process, median",
            "ms",
            kill_w,
            kill_s,
            "≤ 2× supervisord",
            kill_w <= 2 * kill_s,
        ),
        Row(
            "kill -9 -> new child process, max",
            "ms",
            max(ms(kill_seconds(passive, "wactl", "seconds"))),
            max(ms(kill_seconds(passive, "supervisord", "seconds"))),
        ),
        Row(
            "kill -9 -> new pid in the API, median",
            "ms",
            median(ms(kill_seconds(polled, "wactl", "seconds"))),
            median(ms(kill_seconds(polled, "supervisord", "seconds"))),
        ),
        Row(
            "kill -9 -> RUNNING again (API polled), median",
            "ms",
            median(ms(kill_seconds(polled, "wactl", "back_running_seconds"))),
            median(ms(kill_seconds(polled, "supervisord", "back_running_seconds"))),
        ),
        Row(
            "kill -9 -> RUNNING again, max of all kills",
            "ms",
            max(ms(kill_seconds(passive + polled, "wactl", "back_running_seconds"))),
            max(ms(kill_seconds(passive + polled, "supervisord", "back_running_seconds"))),
        ),
        Row(
            f"supervisor idle CPU over {idle['wactl'].seconds:.0f} s",
            "%",
            idle["wactl"].daemon_cpu_percent,
            idle["supervisord"].daemon_cpu_percent,
            "≤ 0.5 % of a core",
            idle["wactl"].daemon_cpu_percent <= 0.5,
        ),
        Row(
            f"all {len(slugs)} workers' idle CPU, summed",
            "%",
            idle["wactl"].workers_cpu_percent,
            idle["supervisord"].workers_cpu_percent,
        ),
        Row(
            "supervisor USS",
            "MB",
            wactl_daemon_uss,
            supervisor_daemon_uss,
            "≤ 50 MB",
            wactl_daemon_uss <= 50,
        ),
        Row(
            "worker USS, median",
            "MB",
            median(wactl_uss),
            median(supervisor_uss),
            "≤ 40 MB",
            median(wactl_uss) <= 40,
        ),
        Row(
            f"start --all -> {len(slugs)} RUNNING",
            "s",
            start_all,
            supervisord_up,
            "≤ 10 s",
            start_all <= 10,
        ),
        Row("daemon start (`wactl daemon start`)", "s", daemon_start, None),
        Row(f"create {len(slugs)} tenants (CLI, 2 at a time)", "s", create_seconds, None),
    ]
    everything = passive + polled
    slow = [t for t in everything if t.back_running_seconds > 5]
    if slow:
        report.notes.append(
            f"{len(slow)} kill trial(s) took over 5 s to be RUNNING again: "
            + ", ".join(f"{t.side} {t.slug} {t.back_running_seconds:.1f} s" for t in slow)
        )
    replaced_twice = [t for t in everything if t.running_pid != t.new_pid]
    if replaced_twice:
        report.notes.append(
            "the first replacement died too (another process came up): "
            + ", ".join(f"{t.side} {t.slug}" for t in replaced_twice)
        )
    report.notes += [
        "supervisord runs stand-ins, not wactl workers (a worker needs wactld's control "
        "socket): each imports wactl.bot.worker, then sleeps in a 5 s loop. Worker rows "
        "compare a real worker with an idle process of the same imports.",
        "supervisord: startsecs=0, autorestart=true, so it calls a program RUNNING on its "
        "first loop pass after spawning it; wactl calls a worker RUNNING once it says on "
        "its control socket that its engine has started (database loaded, engine "
        "started), at most daemon.start_concurrency (4) starting at once. The start rows "
        "measure different things.",
        "kill -9: each kill hits a different worker (wactl restarts a first crash at once, "
        "then backs off from 1 s; supervisord restarts every time). 'new child process' is "
        f"seen in /proc every {1000 * POLL_SECONDS:g} ms without talking to either "
        "supervisor, each kill after a random 0-1 s pause (supervisord's loop sleeps up to "
        "1 s in poll() and restarts an EXITED program one loop later); 'new pid in the API' "
        "polls GET /v1/tenants/SLUG and XML-RPC getProcessInfo at the same rate (each "
        "request also wakes the supervisor, so supervisord restarts at once).",
        f"status: {args.runs} runs each after 3 warm-ups, interleaved; `wactl ps --json` "
        "and `supervisorctl status` as fresh processes (wall time, interpreter start "
        "included). The in-process row is one GET /v1/tenants vs one getAllProcessInfo.",
        "idle: CPU time (user+system) of the supervisor process over one shared window "
        "in which the bench sleeps; wactl's sampling ticks fall inside it.",
    ]
    report.samples = {
        "status_seconds": {"wactl": wactl_status, "supervisord": supervisor_status},
        "request_seconds": {"wactl": wactl_request, "supervisord": supervisor_request},
        "kill_trials": [asdict(trial) for trial in passive + polled],
        "idle": {side: asdict(value) for side, value in idle.items()},
        "worker_uss_mb": {"wactl": wactl_uss, "supervisord": supervisor_uss},
    }


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--workers", type=int, default=50, help="workers per side (50)")
    parser.add_argument("--runs", type=int, default=30, help="status runs per side (30)")
    parser.add_argument("--kills", type=int, default=20, help="kills per side and method (20)")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle CPU window (60)")
    args = parser.parse_args(argv)
    if args.workers < 2 or args.runs < 2 or args.kills < 1:
        parser.error("need --workers >= 2, --runs >= 2 and --kills >= 1")
    signal.signal(signal.SIGTERM, interrupt)
    # AF_UNIX paths are limited to 107 bytes: a short directory directly under /tmp.
    base = Path(tempfile.mkdtemp(prefix="wb", dir="/tmp"))
    report = Report()
    cleanup: list[Side] = []
    try:
        run(args, base, report, cleanup)
    except BenchError as exc:
        say(f"error: {exc}")
        for side in cleanup:
            side.diagnose()
        return 1
    except KeyboardInterrupt:
        say("interrupted")
        return 130
    finally:
        say("teardown")
        teardown(base, cleanup)
    report.elapsed_seconds = run_seconds()
    sys.stdout.write(report.as_json() + "\n" if args.json else report.as_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
