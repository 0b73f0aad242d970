"""`wactl tui` with 200 sandbox tenants: idle CPU of the dashboard, and how fast a state
change shows in its table.

Run it from the repository after `make setup`::

    .venv/bin/python bench/tui.py             # a table on stdout, progress on stderr
    .venv/bin/python bench/tui.py --json      # the same figures (and samples) as JSON
    .venv/bin/python bench/tui.py --help      # --tenants, --idle-seconds, --changes

It is a benchmark, not a test: it prints figures, ratios to the targets and whether each
is met, and exits non-zero only when it could not measure (a command failed, a worker
never came up, the dashboard never showed its table).

What it does (about 5 minutes on 2 cores with 200 tenants, most of it starting workers):

1. A throwaway home under ``/tmp/wtb*`` (short: AF_UNIX paths are limited to 107 bytes),
   `wactl init`, N sandbox tenants created in one transaction, `wactl daemon start`, and
   ``POST /v1/start {"all": true}``; it waits until every worker is RUNNING (the daemon
   starts them ``daemon.start_concurrency`` at a time).
2. The dashboard runs in its own process (this script with ``--dashboard``): the real
   app from `wactl.tui.app.build_app`, headless (`App.run(headless=True)`, 120x40), on
   default settings (``tui.refresh_seconds`` 2). Its table's sync is wrapped to print a
   line when a row's STATE cell changes, once the screen has been refreshed with it
   (`call_after_refresh`), stamped with CLOCK_MONOTONIC, which every process shares.
3. Idle: after a 5 s settle, the dashboard process's CPU time (user+system, psutil)
   over a window in which nothing changes but the workers' heartbeats and the
   dashboard's own refreshes; as % of one core. The daemon's CPU over the same window
   is shown too (it answers the dashboard's /v1/tenants every 2 s).
4. Latency: ``POST /v1/stop`` then ``POST /v1/start`` of K different tenants, one at a
   time after a random 0-1 s pause; each sample is the time from just before the
   request is written to the dashboard's line saying the row shows the new state
   (STOPPING, then STARTING).

Everything started here carries ``WACTL_BENCH_RUN=<temp dir>`` in its environment;
teardown (also on error and Ctrl-C) stops the dashboard, `wactl daemon stop
--with-workers`, then kills by pid any process still carrying the marker.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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

#: Longest wait for anything to come up before the run is declared broken.
UP_TIMEOUT = 900.0
#: The dashboard's terminal size (headless).
SIZE = (120, 40)
TARGET_IDLE_PERCENT = 5.0
TARGET_LATENCY_SECONDS = 1.0


def poll_until(what: str, condition: Callable[[], bool], timeout: float = UP_TIMEOUT) -> float:
    """Call ``condition`` every 0.5 s until it is true; the seconds it took."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.5)
    return time.monotonic() - start


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


# --- the dashboard process ---------------------------------------------------------------


def run_dashboard() -> int:
    """``--dashboard``: the real app, headless, reporting when a STATE cell is on screen."""
    from wactl.cli.context import AppContext
    from wactl.tui import screens
    from wactl.tui.app import build_app

    app = build_app(AppContext(None))
    shown_state: dict[str, str] = {}
    ready = False
    original_sync = screens.MainScreen.sync

    def report(line: str) -> None:
        sys.stdout.write(f"{line} {time.monotonic():.6f}\n")
        sys.stdout.flush()

    def sync(self: screens.MainScreen, changed: set[str] | None = None) -> None:
        nonlocal ready
        original_sync(self, changed)
        rendered = self._rendered
        for slug in rendered if changed is None else changed:
            cells = rendered.get(slug)
            if cells is None or shown_state.get(slug) == cells[1]:
                continue
            shown_state[slug] = cells[1]
            if ready:
                app.call_after_refresh(report, f"SHOWN {slug} {cells[1]}")
        if not ready and len(rendered) == len(app.model.views) and rendered:
            ready = True
            app.call_after_refresh(report, f"READY {len(rendered)}")

    screens.MainScreen.sync = sync  # type: ignore[method-assign]
    app.run(headless=True, size=SIZE)
    return 0


class Dashboard:
    """The dashboard process, and the lines it prints (read by a thread)."""

    def __init__(self, env: dict[str, str], base: Path) -> None:
        self.log = base / "dashboard.err"
        with self.log.open("wb") as errors:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--dashboard"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
            )
        self.lines: list[tuple[str, float]] = []
        self._condition = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            text, _, stamp = raw.decode().rstrip("\n").rpartition(" ")
            with self._condition:
                self.lines.append((text, float(stamp)))
                self._condition.notify_all()

    def wait_for(self, text: str, after: int, timeout: float) -> float:
        """The time stamp of the first line ``text`` from index ``after`` on."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while True:
                for line, stamp in self.lines[after:]:
                    if line == text:
                        return stamp
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise BenchError(f"the dashboard never printed {text!r}; see {self.log}")
                self._condition.wait(left)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


# --- wactl -------------------------------------------------------------------------------


@dataclass
class Wactl:
    base: Path
    env: dict[str, str]

    @property
    def wactl(self) -> str:
        return str(wactl_executable())

    def cli(self, *args: str, timeout: float = 120.0) -> str:
        result = subprocess.run(
            [self.wactl, *args],
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
        return result.stdout

    def client(self) -> Any:
        from wactl.ipc.client import DaemonClient

        return DaemonClient(self.base / "r" / "wactld.sock", timeout=120.0)

    def create_tenants(self, slugs: list[str]) -> None:
        """All tenants in one transaction, through the same code as `wactl tenant create`."""
        from wactl.config import load_config
        from wactl.db import tenants
        from wactl.db.engine import make_engine, session_scope
        from wactl.enums import EngineName, Language, TemplateType

        config = load_config(None)
        engine = make_engine(config.database_url)
        try:
            with session_scope(engine) as session:
                for slug in slugs:
                    tenants.create_tenant(
                        session,
                        slug=slug,
                        name=f"Shop {slug}",
                        template=TemplateType.RESTAURANT,
                        language=Language.EN,
                        timezone="UTC",
                        engine=EngineName.SANDBOX,
                        phone_number=None,
                        actor="os:bench",
                    )
        finally:
            engine.dispose()

    def states(self) -> dict[str, str]:
        return {row["slug"]: row["state"] for row in self.client().request("GET", "/v1/tenants")}

    def daemon_pid(self) -> int:
        return int(self.client().check_version()["pid"])

    def stop(self) -> None:
        subprocess.run(
            [self.wactl, "daemon", "stop", "--with-workers", "--timeout", "120"],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=180,
            check=False,
        )


# --- the report --------------------------------------------------------------------------


@dataclass
class Row:
    metric: str
    value: float | None
    unit: str
    target: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.target:
            return None
        return self.value / self.target

    @property
    def met(self) -> bool | None:
        return None if self.ratio is None else self.ratio <= 1.0


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    setup: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    samples: dict[str, Any] = field(default_factory=dict)
    elapsed_seconds: float = 0.0

    def as_json(self) -> str:
        rows = [{**asdict(r), "ratio": r.ratio, "met": r.met} for r in self.rows]
        data = {
            "setup": self.setup,
            "rows": rows,
            "notes": self.notes,
            "samples": self.samples,
            "elapsed_seconds": round(self.elapsed_seconds, 1),
        }
        return json.dumps(data, indent=2)

    def as_text(self) -> str:
        header = ("metric", "value", "target", "value/target", "met")
        cells = [header]
        for row in self.rows:
            digits = 3 if row.unit == "s" else 2
            value = "-" if row.value is None else f"{row.value:.{digits}f} {row.unit}"
            target = "-" if row.target is None else f"≤ {row.target:g} {row.unit}"
            ratio = "-" if row.ratio is None else f"{row.ratio:.2f}"
            met = "-" if row.met is None else ("met" if row.met else "NOT MET")
            cells.append((row.metric, value, target, ratio, met))
        widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
        lines = []
        for number, line in enumerate(cells):
            lines.append(
                "  ".join(
                    cell.ljust(widths[i]) if i in (0, 4) else cell.rjust(widths[i])
                    for i, cell in enumerate(line)
                ).rstrip()
            )
            if number == 0:
                lines.append("  ".join("-" * width for width in widths))
        setup = "\n".join(f"  {key}: {value}" for key, value in self.setup.items())
        notes = "\n".join(f"  - {note}" for note in self.notes)
        return (
            f"setup:\n{setup}\n\n" + "\n".join(lines) + f"\n\nnotes:\n{notes}\n\n"
            f"run took {self.elapsed_seconds:.0f} s\n"
        )


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


# --- the run -----------------------------------------------------------------------------


def run(args: argparse.Namespace, base: Path, report: Report, cleanup: list[Any]) -> None:
    env = isolated_env(
        base,
        {
            "WACTL_PATHS_DATA_DIR": str(base / "data" / "wactl"),
            "WACTL_PATHS_RUNTIME_DIR": str(base / "r"),
        },
    )
    os.environ.clear()
    os.environ.update(env)  # this process talks to the throwaway wactl only
    wactl = Wactl(base, env)
    slugs = [f"shop-{number:03d}" for number in range(1, args.tenants + 1)]
    report.setup.update(
        {
            "machine": f"{os.cpu_count()} cores, Linux {os.uname().release}, "
            f"Python {sys.version.split()[0]}",
            "tenants": args.tenants,
            "dashboard": f"headless {SIZE[0]}x{SIZE[1]}, tui.refresh_seconds 2 (default)",
            "load average at start": _load(),
        }
    )
    say(f"wactl init and {args.tenants} tenants in {base}")
    wactl.cli("init")
    wactl.create_tenants(slugs)
    cleanup.append(wactl)
    wactl.cli("daemon", "start")
    started = time.monotonic()
    wactl.client().request("POST", "/v1/start", {"all": True}, timeout=120)
    say(f"starting {args.tenants} workers (the daemon starts 4 at a time)")

    def all_running() -> bool:
        states = wactl.states()
        if any(state == "FATAL" for state in states.values()):
            raise BenchError("a worker was quarantined (FATAL) while starting")
        return sum(state == "RUNNING" for state in states.values()) == len(slugs)

    poll_until(f"{args.tenants} RUNNING workers", all_running)
    report.setup["start all workers"] = f"{time.monotonic() - started:.0f} s"
    say("all RUNNING; starting the dashboard")
    dashboard = Dashboard(env, base)
    cleanup.append(dashboard)
    dashboard.wait_for(f"READY {args.tenants}", 0, timeout=120)
    say(f"dashboard up; settling 5 s, then idle for {args.idle_seconds:g} s")
    time.sleep(5.0)
    pid = dashboard.process.pid
    daemon = wactl.daemon_pid()
    before = (cpu_seconds(pid), cpu_seconds(daemon), psutil.cpu_times())
    window_start = time.monotonic()
    time.sleep(args.idle_seconds)
    window = time.monotonic() - window_start
    after = (cpu_seconds(pid), cpu_seconds(daemon), psutil.cpu_times())
    tui_percent = 100.0 * (after[0] - before[0]) / window
    daemon_percent = 100.0 * (after[1] - before[1]) / window
    machine_before, machine_after = before[2], after[2]
    idle_delta = (machine_after.idle + machine_after.iowait) - (
        machine_before.idle + machine_before.iowait
    )
    busy = 100.0 * (1 - idle_delta / (sum(machine_after) - sum(machine_before)))
    uss = psutil.Process(pid).memory_full_info().uss / 1e6

    say(f"latency: stop then start {args.changes} tenants, one at a time")
    client = wactl.client()
    stop_samples: list[float] = []
    start_samples: list[float] = []
    for slug in random.sample(slugs, args.changes):
        for action, state, sink in (
            ("stop", "STOPPING", stop_samples),
            ("start", "STARTING", start_samples),
        ):
            time.sleep(random.random())  # noqa: S311 - a pause, not a secret
            mark = len(dashboard.lines)
            sent = time.monotonic()
            client.request("POST", f"/v1/{action}", {"tenants": [slug]}, timeout=120)
            shown = dashboard.wait_for(f"SHOWN {slug} {state}", mark, timeout=60)
            sink.append(shown - sent)

        def running_again(slug: str = slug) -> bool:
            return wactl.states()[slug] == "RUNNING"

        poll_until(f"{slug} RUNNING again", running_again, 120)
    both = stop_samples + start_samples
    report.rows += [
        Row("idle dashboard CPU, % of one core", tui_percent, "%", TARGET_IDLE_PERCENT),
        Row("  daemon CPU in the same window", daemon_percent, "%"),
        Row("  machine busy in the window (all cores)", busy, "%"),
        Row("  dashboard USS", uss, "MB"),
        Row("state change -> on screen, p50", statistics.median(both), "s"),
        Row("state change -> on screen, p90", _percentile(both, 0.9), "s"),
        Row("state change -> on screen, max", max(both), "s", TARGET_LATENCY_SECONDS),
        Row("  stop -> STOPPING shown, median", statistics.median(stop_samples), "s"),
        Row("  start -> STARTING shown, median", statistics.median(start_samples), "s"),
    ]
    report.setup["load average at end"] = _load()
    report.notes += [
        f"idle: CPU time of the dashboard process over {window:.0f} s with "
        f"{args.tenants} RUNNING workers heartbeating; the dashboard re-reads /v1/tenants "
        "every 2 s and the selected tenant's detail (database + log file) as often.",
        f"latency: {len(both)} samples ({args.changes} stops, {args.changes} starts), from "
        "just before the request is written to the dashboard's report that the screen was "
        "refreshed with the new STATE cell; the target applies to the worst sample.",
        "the dashboard runs headless: Textual composes every frame as it would for a "
        "terminal, and writes it nowhere.",
    ]
    report.samples = {
        "stop_seconds": stop_samples,
        "start_seconds": start_samples,
        "idle_window_seconds": window,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--tenants", type=int, default=200, help="sandbox tenants (200)")
    parser.add_argument("--idle-seconds", type=float, default=45.0, help="idle CPU window (45 s)")
    parser.add_argument(
        "--changes", type=int, default=10, help="tenants stopped and started again (10)"
    )
    parser.add_argument("--dashboard", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dashboard:
        return run_dashboard()
    if args.tenants < 2 or args.changes < 1 or args.changes > args.tenants:
        parser.error("need --tenants >= 2 and 1 <= --changes <= --tenants")
    signal.signal(signal.SIGTERM, interrupt)
    # AF_UNIX paths are limited to 107 bytes: a short directory directly under /tmp.
    base = Path(tempfile.mkdtemp(prefix="wtb", dir="/tmp"))
    report = Report()
    cleanup: list[Any] = []
    try:
        run(args, base, report, cleanup)
    except BenchError as exc:
        say(f"error: {exc}")
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
