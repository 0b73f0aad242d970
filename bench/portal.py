"""The owners' portal under 50 concurrent users: latency of the status page and the logs API.

Run it from the repository after `make setup`::

    .venv/bin/python bench/portal.py              # table on stdout, progress on stderr
    .venv/bin/python bench/portal.py --json       # the same figures as JSON
    .venv/bin/python bench/portal.py --help       # --users, --seconds, --messages, --think

It is a benchmark, not a test: it prints figures and whether the target is met, and
never fails because of a timing. It exits non-zero only when it could not measure.

Setup: a throwaway installation under ``/tmp/wpp-*`` (HOME, XDG dirs,
``WACTL_PATHS_DATA_DIR``), `wactl init` (SQLite, and the portal's session secret),
then ``--users`` owners made the way the portal's first sign-in makes them
(`wactl.db.portal.sign_in`), each tenant with ``--messages`` logged messages. Each
virtual user gets a session cookie signed with the portal's secret, the cookie a
sign-in sets (the sign-in itself needs Google, which the benchmark does not call).

The portal runs as `wactl portal serve` (a subprocess, access log on, as in
production). The load generator runs in this process: one asyncio task and one
keep-alive HTTP/1.1 connection per user, raw sockets (no HTTP library, so that the
generator costs little CPU next to the server on the same machine).

1. **50 users** (the target): each user, in a loop for ``--seconds``, asks for the
   status page (``GET /``, the dashboard, HTML), the status API (what the phone page
   polls) and the logs API (``GET /api/portal/tenant/current/logs``, 50 messages),
   pausing a random 0.5-1.5 × ``--think`` seconds between requests, as a person or the
   phone page's script would. p50/p90/p99/max per endpoint; target p99 ≤ 50 ms for the
   status page and the logs API.
2. **Saturation** (no target): the same users with no pause, for a third of the time:
   the most requests per second one portal process serves, and latency then (mostly
   queueing).

Every process started carries ``WACTL_BENCH_RUN=<temp dir>``; teardown (also on error,
Ctrl-C and SIGTERM) stops the portal and kills by pid whatever still carries the
marker, then removes the temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
WACTL = [sys.executable, "-m", "wactl"]
TARGET_P99_MS = 50.0
ENDPOINTS = {
    "status page": "/",
    "status API": "/api/portal/tenant/current/status",
    "logs API": "/api/portal/tenant/current/logs?limit=50",
}
TARGETED = ("status page", "logs API")


def say(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


@dataclass
class Install:
    root: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    url: str = ""

    def wactl(self, *args: str) -> str:
        done = subprocess.run(
            [*WACTL, *args], env=self.env, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise SystemExit(f"wactl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout


@contextlib.contextmanager
def throwaway() -> Iterator[Install]:
    root = Path(tempfile.mkdtemp(prefix="wpp-", dir="/tmp"))
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("WACTL_", "XDG_"))
    }
    env.update(
        HOME=str(root / "home"),
        XDG_CONFIG_HOME=str(root / "home/.config"),
        XDG_DATA_HOME=str(root / "home/.local/share"),
        XDG_STATE_HOME=str(root / "home/.local/state"),
        XDG_RUNTIME_DIR=str(root / "run"),
        WACTL_PATHS_DATA_DIR=str(root / "data"),
        WACTL_BENCH_RUN=str(root),
    )
    install = Install(root=root, env=env)

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield install
    finally:
        signal.signal(signal.SIGTERM, previous)
        if install.process is not None and install.process.poll() is None:
            install.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                install.process.wait(timeout=20)
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if proc.environ().get("WACTL_BENCH_RUN") == str(root):
                    say(f"teardown: killing leftover pid {proc.pid} (a bug)")
                    proc.kill()
        shutil.rmtree(root, ignore_errors=True)


def seed(install: Install, users: int, messages: int) -> tuple[list[str], str]:
    """Owners and their conversation logs; returns session cookies and the secret."""
    import itsdangerous
    from sqlalchemy import insert

    from wactl.config import load_config
    from wactl.db import portal as store
    from wactl.db.engine import make_engine, session_scope
    from wactl.db.models import MessageLog
    from wactl.enums import Direction, EngineName, MessageState

    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(install.env)
    try:
        config = load_config()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    engine = make_engine(config.database_url)
    cookies: list[str] = []
    signer = itsdangerous.TimestampSigner(config.portal.session_secret)
    start = time.time() - messages * 30
    try:
        for number in range(users):
            with session_scope(engine) as session:
                signed = store.sign_in(
                    session,
                    issuer="https://accounts.bench.example",
                    subject=f"bench-owner-{number}",
                    email=f"owner{number}@bench.example",
                    name=f"Owner {number}",
                    engine=EngineName.SANDBOX,
                )
                chat = f"+1555{number:07d}"
                rows = [
                    {
                        "tenant_id": signed.tenant_id,
                        "direction": Direction.IN if n % 2 == 0 else Direction.OUT,
                        "from_number": chat if n % 2 == 0 else "sandbox:bot",
                        "to_number": "sandbox:bot" if n % 2 == 0 else chat,
                        "chat": chat,
                        "message_text": f"message {n} of a conversation about opening hours",
                        "wa_message_id": f"bench-{number}-{n}",
                        "state": MessageState.ANSWERED if n % 2 == 0 else MessageState.SENT,
                        "created_at": _utc(start + n * 30),
                    }
                    for n in range(messages)
                ]
                if rows:
                    session.execute(insert(MessageLog), rows)
            payload = {"uid": str(signed.user_id), "csrf": secrets.token_urlsafe(32)}
            data = base64.b64encode(json.dumps(payload).encode())
            cookies.append(signer.sign(data).decode())
    finally:
        engine.dispose()
    return cookies, config.portal.session_secret


def _utc(stamp: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(stamp, dt.UTC)


def start_portal(install: Install) -> None:
    log = (install.root / "portal.log").open("wb")
    install.process = subprocess.Popen(
        [*WACTL, "portal", "serve", "--port", "0"],
        env=install.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = (install.root / "portal.log").read_text(errors="replace")
        match = re.search(r"listening on (http://\S+)", text)
        if match:
            install.url = match[1]
            return
        if install.process.poll() is not None:
            raise SystemExit(f"the portal exited:\n{text}")
        time.sleep(0.05)
    raise SystemExit("the portal did not start within 60 s")


class Connection:
    """One keep-alive HTTP/1.1 connection (Content-Length bodies only, as the portal's)."""

    def __init__(self, host: str, port: int, cookie: str) -> None:
        self.host, self.port, self.cookie = host, port, cookie
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Cookie: wactl_portal={self.cookie}\r\nAccept: */*\r\n\r\n"
        )
        self.writer.write(request.encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


@dataclass
class Phase:
    name: str
    seconds: float
    think: float
    samples: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in ENDPOINTS})
    errors: int = 0
    server_cpu: float = 0.0
    wall: float = 0.0

    @property
    def requests(self) -> int:
        return sum(len(v) for v in self.samples.values())


async def _user(phase: Phase, url: str, cookie: str, stop_at: float, rng: random.Random) -> None:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    connection = Connection(host, int(port), cookie)
    order = list(ENDPOINTS)
    rng.shuffle(order)
    try:
        if phase.think:
            await asyncio.sleep(rng.uniform(0, phase.think))  # users do not start in step
        turn = 0
        while time.monotonic() < stop_at:
            name = order[turn % len(order)]
            turn += 1
            began = time.perf_counter()
            status = await connection.get(ENDPOINTS[name])
            elapsed = (time.perf_counter() - began) * 1000
            if status != 200:
                phase.errors += 1
            else:
                phase.samples[name].append(elapsed)
            if phase.think:
                await asyncio.sleep(rng.uniform(0.5, 1.5) * phase.think)
    finally:
        await connection.close()


def run_phase(phase: Phase, install: Install, cookies: list[str]) -> Phase:
    assert install.process is not None
    server = psutil.Process(install.process.pid)
    before = server.cpu_times()
    began = time.monotonic()
    stop_at = began + phase.seconds

    async def everyone() -> None:
        rng = random.Random(7)  # noqa: S311 - think times, not secrets
        await asyncio.gather(
            *(
                _user(phase, install.url, c, stop_at, random.Random(rng.random()))  # noqa: S311
                for c in cookies
            )
        )

    asyncio.run(everyone())
    phase.wall = time.monotonic() - began
    after = server.cpu_times()
    phase.server_cpu = (after.user + after.system) - (before.user + before.system)
    return phase


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))
    return ordered[index]


def summary(phase: Phase) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for name, values in phase.samples.items():
        rows[name] = {
            "requests": len(values),
            "p50_ms": round(percentile(values, 0.50), 2),
            "p90_ms": round(percentile(values, 0.90), 2),
            "p99_ms": round(percentile(values, 0.99), 2),
            "max_ms": round(max(values), 2) if values else None,
        }
    return {
        "phase": phase.name,
        "seconds": round(phase.wall, 1),
        "requests": phase.requests,
        "requests_per_second": round(phase.requests / phase.wall, 1) if phase.wall else 0,
        "errors": phase.errors,
        "server_cpu_ms_per_request": round(phase.server_cpu * 1000 / phase.requests, 2)
        if phase.requests
        else None,
        "endpoints": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/portal.py", description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=50, help="concurrent users (default 50)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the load (30)")
    parser.add_argument(
        "--think", type=float, default=1.0, help="mean pause between a user's requests, s (1)"
    )
    parser.add_argument(
        "--messages", type=int, default=2000, help="logged messages per tenant (2000)"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    say(f"load average at start: {os.getloadavg()[0]:.2f} (2 cores: above 0.5 is busy)")
    with throwaway() as install:
        say(f"setting up {install.root} (SQLite) ...")
        install.wactl("init")
        cookies, _ = seed(install, args.users, args.messages)
        say(f"{args.users} owners, {args.users * args.messages} logged messages")
        start_portal(install)
        say(f"portal at {install.url}; warming up ...")
        run_phase(Phase("warm-up", 3.0, 0.0), install, cookies[:5])
        say(f"{args.users} users, {args.seconds:g} s, ~{args.think:g} s between requests ...")
        load = summary(run_phase(Phase("users", args.seconds, args.think), install, cookies))
        say("saturation: the same users without pauses ...")
        saturation = summary(
            run_phase(Phase("saturation", max(5.0, args.seconds / 3), 0.0), install, cookies)
        )
    met = all(load["endpoints"][name]["p99_ms"] <= TARGET_P99_MS for name in TARGETED)
    report = {
        "users": args.users,
        "messages_per_tenant": args.messages,
        "target": {"p99_ms": TARGET_P99_MS, "endpoints": list(TARGETED), "met": met},
        "load": load,
        "saturation": saturation,
        "load_average_end": round(os.getloadavg()[0], 2),
    }
    if args.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return 0
    out = sys.stdout
    for phase in (load, saturation):
        out.write(
            f"\n{phase['phase']}: {phase['requests']} requests in {phase['seconds']} s "
            f"({phase['requests_per_second']}/s), {phase['errors']} errors, portal CPU "
            f"{phase['server_cpu_ms_per_request']} ms/request\n"
        )
        out.write(
            f"  {'endpoint':<12} {'requests':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
            f"{'max ms':>8}\n"
        )
        for name, row in phase["endpoints"].items():
            target = ""
            if phase is load and name in TARGETED:
                target = f"   target p99 ≤ {TARGET_P99_MS:g} ms: " + (
                    "met" if row["p99_ms"] <= TARGET_P99_MS else "NOT met"
                )
            out.write(
                f"  {name:<12} {row['requests']:>8} {row['p50_ms']:>8.1f} {row['p90_ms']:>8.1f} "
                f"{row['p99_ms']:>8.1f} {row['max_ms']:>8.1f}{target}\n"
            )
    out.write(f"\nload average at end: {report['load_average_end']}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
