"""How long one stuck process holds up the other tenants (issue 13), on SQLite.

Run it from the repository after `make setup`::

    .venv/bin/python bench/stall.py                 # table on stdout, progress on stderr
    .venv/bin/python bench/stall.py --json
    .venv/bin/python bench/stall.py --lock-seconds 50 --trials 5

A real daemon with two sandbox tenants, ``a`` and ``b``, on one SQLite file (default
settings: heartbeat every 5 s, hung after 30 s, busy timeout 5 s):

1. A lock held elsewhere: another process (an `sqlite3` connection in BEGIN IMMEDIATE)
   holds the database's write lock for ``--lock-seconds``, while each tenant gets a
   message a second. Reported: workers killed (target 0: a worker's heartbeat must not
   depend on the database), messages lost (target 0), and how long after the lock's end
   the last of them was answered.
2. A stopped worker: ``a`` answers a steady stream of messages (so it is often inside a
   write transaction), gets SIGSTOP at a random moment, and ``b`` answers one message
   every 100 ms meanwhile. Reported per trial: seconds until the daemon killed ``a``
   (bound: two heartbeat intervals and a tick, 11 s), and ``b``'s longest answer time
   (bounded by that plus a retry delay when ``a`` held the lock; short when it did not).

It is a benchmark, not a test: it prints figures, and exits non-zero only when it could
not measure. Everything lives under /tmp/wst-*; teardown kills every process of the run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _support import (
    BenchError,
    interrupt,
    isolated_env,
    say,
    teardown,
    wactl_executable,
)

from wactl.ipc.client import DaemonClient

TENANTS = ("a", "b")
UP_TIMEOUT = 120.0


class Installation:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.env = isolated_env(
            base,
            {
                "WACTL_PATHS_RUNTIME_DIR": str(base / "r"),
                "WACTL_PIPELINE_CHAT_BURST": "100000",
                "WACTL_PIPELINE_CHAT_PER_MINUTE": "1000000",
                "WACTL_PIPELINE_TENANT_BURST": "100000",
                "WACTL_PIPELINE_TENANT_PER_MINUTE": "1000000",
                # Each trial kills a worker: no crash loop to quarantine.
                "WACTL_DAEMON_MAX_CRASHES": "1000",
            },
        )
        self.client = DaemonClient(base / "r" / "wactld.sock", timeout=120.0)

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [str(wactl_executable()), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"`wactl {' '.join(args)}` exited {done.returncode}: {done.stderr}")
        return done.stdout

    @property
    def database(self) -> Path:
        return self.base / "data" / "wactl" / "wactl.db"

    def set_up(self) -> None:
        self.cli("init")
        for slug in TENANTS:
            self.cli("tenant", "create", slug, "--name", slug.upper(), "--engine", "sandbox")
        self.cli("tenant", "start", *TENANTS)
        for slug in TENANTS:
            self.wait(lambda s=slug: self.view(s)["has_qr"], f"{slug} shows a QR")
            self.cli("sandbox", "scan", slug)

    def view(self, slug: str) -> dict[str, Any]:
        found: dict[str, Any] = self.client.request("GET", f"/v1/tenants/{slug}")
        return found

    def send(self, slug: str, text: str, message_id: str, *, wait: bool) -> dict[str, Any]:
        body = {"from": "+15550001234", "text": text, "id": message_id, "wait": wait}
        answer: dict[str, Any] = self.client.request(
            "POST", f"/v1/tenants/{slug}/sandbox/send", body, timeout=300
        )
        return answer

    def answered(self) -> set[str]:
        with sqlite3.connect(self.database) as connection:
            rows = connection.execute(
                "SELECT wa_message_id FROM message_log WHERE direction = 'IN' "
                "AND state = 'ANSWERED'"
            ).fetchall()
        return {row[0] for row in rows}

    def wait(self, condition: Any, what: str, timeout: float = UP_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise BenchError(f"not within {timeout:g} s: {what}")
            time.sleep(0.05)

    def stop(self) -> None:
        subprocess.run(
            [str(wactl_executable()), "daemon", "stop", "--with-workers"],
            env=self.env,
            capture_output=True,
            timeout=120,
            check=False,
        )


def lock_part(install: Installation, seconds: float) -> dict[str, Any]:
    say(f"a lock held elsewhere for {seconds:g} s")
    pids = {slug: install.view(slug)["pid"] for slug in TENANTS}
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys, time\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('BEGIN IMMEDIATE')\n"
            "print('held', flush=True)\n"
            "time.sleep(float(sys.argv[2]))\n"
            "c.execute('COMMIT')\n",
            str(install.database),
            str(seconds),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=install.env,
    )
    assert holder.stdout is not None
    if holder.stdout.readline() != "held\n":
        raise BenchError("the lock holder did not start")
    sent: list[str] = []
    started = time.monotonic()
    while holder.poll() is None:
        for slug in TENANTS:
            message_id = f"lock-{slug}-{len(sent)}"
            install.send(slug, "hours", message_id, wait=False)
            sent.append(message_id)
        time.sleep(1.0)
    released = time.monotonic()
    holder.stdout.close()
    install.wait(lambda: set(sent) <= install.answered(), "every message answered")
    last = time.monotonic()
    killed = sum(1 for slug in TENANTS if install.view(slug)["pid"] != pids[slug])
    return {
        "lock_s": round(released - started, 1),
        "messages": len(sent),
        "lost": len(set(sent) - install.answered()),
        "workers_killed": killed,
        "answered_after_release_s": round(last - released, 2),
    }


def _keep_busy(install: Installation, trial: int, stop: threading.Event) -> None:
    """Messages to ``a`` as fast as it takes them, until ``stop``."""
    count = 0
    while not stop.is_set():
        count += 1
        try:
            install.send("a", "hours", f"busy-{trial}-{count}", wait=False)
        except Exception:  # the worker is being replaced: keep going
            time.sleep(0.05)


def stop_part(install: Installation, trials: int) -> list[dict[str, Any]]:
    results = []
    for trial in range(trials):
        say(f"a stopped worker: trial {trial + 1}/{trials}")
        victim = install.view("a")["pid"]
        stop = threading.Event()
        busy = threading.Thread(target=_keep_busy, args=(install, trial, stop), daemon=True)
        busy.start()
        time.sleep(random.uniform(1.0, 2.0))  # noqa: S311 - not crypto
        latencies: list[float] = []
        os.kill(victim, signal.SIGSTOP)
        stopped = time.monotonic()
        killed_after = None
        try:
            while killed_after is None or time.monotonic() - stopped < killed_after + 2:
                began = time.monotonic()
                install.send("b", "hours", f"b-{trial}-{len(latencies)}", wait=True)
                latencies.append(time.monotonic() - began)
                if killed_after is None and install.view("a")["pid"] != victim:
                    killed_after = time.monotonic() - stopped
                time.sleep(0.1)
                if time.monotonic() - stopped > 90:
                    raise BenchError("the stopped worker was not replaced within 90 s")
        finally:
            stop.set()
            busy.join(10)
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGCONT)
        install.wait(lambda: install.view("a")["state"] == "RUNNING", "a runs again")
        results.append(
            {
                "killed_after_s": round(killed_after, 2),
                "b_longest_answer_s": round(max(latencies), 2),
                "b_answers": len(latencies),
                "reason": install.view("a")["last_error"],
            }
        )
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--lock-seconds", type=float, default=50.0)
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, interrupt)
    base = Path(tempfile.mkdtemp(prefix="wst-", dir="/tmp"))
    install = Installation(base)
    try:
        say(f"setting up in {base}")
        install.set_up()
        lock = lock_part(install, args.lock_seconds)
        stopped = stop_part(install, args.trials)
    except BenchError as exc:
        say(f"error: {exc}")
        return 1
    finally:
        teardown(base, [install])
    if args.json:
        print(json.dumps({"lock": lock, "stopped": stopped}, indent=2))
        return 0
    print(f"lock held elsewhere:   {lock['lock_s']} s, {lock['messages']} messages during it")
    print(f"  workers killed:      {lock['workers_killed']} (target 0)")
    print(f"  messages lost:       {lock['lost']} (target 0)")
    print(f"  all answered:        {lock['answered_after_release_s']} s after the lock's end")
    kills = [t["killed_after_s"] for t in stopped]
    longest = [t["b_longest_answer_s"] for t in stopped]
    print(f"stopped worker, {len(kills)} trials:")
    median, most = statistics.median(kills), max(kills)
    print(f"  killed after:        median {median} s, max {most} s (bound 11 s)")
    median, most = statistics.median(longest), max(longest)
    print(f"  b's longest answer:  median {median} s, max {most} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
