"""The conversation pipeline under load: messages per second and inbound->reply latency.

Run it from the repository after `make setup`::

    .venv/bin/python bench/pipeline.py                        # part 1 on both, part 2 on SQLite
    .venv/bin/python bench/pipeline.py --backend sqlite       # everything on SQLite only
    .venv/bin/python bench/pipeline.py --backend both --json  # everything on both, as JSON

It is a benchmark, not a test: it prints figures and whether each target is met, and
never fails because of a timing. It exits non-zero only when it could not measure (a
command failed, a worker did not come up, PostgreSQL is not reachable).

What it measures, with the sandbox engine (no typing delay: pacing is off for sandbox
tenants by default) and every rate limit raised out of reach through
``WACTL_PIPELINE_*`` variables, so that each message gets a reply:

1. One worker, driven directly over its control socket (`wactl.bot.control`): a request
   ``send`` resolves when the pipeline has recorded the message, sent the reply and
   logged it, so latency = from writing the request line to reading its reply.

   - throughput: a closed loop keeping ``--window`` requests in flight over ``--chats``
     chats (one connection per request in flight: the worker answers one connection's
     requests one after another), ``--messages`` messages after a warm-up;
   - latency at saturation, from that same loop (mostly queueing: window / throughput);
   - latency at a moderate load: an open loop at ``--open-rate`` msg/s with sends at
     scheduled times (not waiting for replies). The p99 target refers to this one.

   On SQLite, and on PostgreSQL unless ``--backend sqlite``.
2. ``--tenants`` workers at ``--tenant-rate`` msg/s each for ``--seconds`` s, an open loop
   with one asyncio task per tenant (phases staggered so the sum is an even stream):
   latency over all messages, requests sent vs "replied", and in the database that every
   tenant has as many OUT rows as IN rows (nothing lost, nothing doubled). SQLite unless
   ``--backend postgresql|both``.

Each backend gets a throwaway installation under ``/tmp/wpb-*`` (short, because AF_UNIX
paths are limited to 107 bytes): HOME, XDG dirs, ``WACTL_PATHS_DATA_DIR`` (the SQLite
file lives there) and ``WACTL_PATHS_RUNTIME_DIR``; on PostgreSQL (127.0.0.1:5432, trust,
user postgres) a database ``wactl_bench_<random>`` made for the run. `wactl init`,
`wactl tenant create` and `wactl daemon start` set it up; workers are started and
linked through the daemon's API. Every process started here carries
``WACTL_BENCH_RUN=<temp dir>``; teardown (also on error, Ctrl-C and SIGTERM) stops the
daemon with its workers, kills by pid whatever still carries the marker, drops the
PostgreSQL database and removes the temp dir.

The load generator runs in this process, on the same machine: on a small machine it
competes with the workers for CPU. It keeps at most 64 requests in flight per worker (one
connection each); an open loop's request that finds them all busy waits in the
generator. The "send lag" rows (request written vs scheduled) show both that waiting
and the generator's own scheduling delays; latency is counted from the write, so when
the lag is large the worker was overloaded and the latency rows understate the delay a
customer would see (lag + latency).

It must not touch the developer's wactl: no command runs without the throwaway
``HOME``/``XDG_*``/``WACTL_*`` environment.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import psycopg
import sqlalchemy
from _support import BenchError, isolated_env, marked_processes, say, wactl_executable
from psycopg import sql

import wactl
from wactl.errors import ConflictError, WactlError
from wactl.ipc.client import DaemonClient
from wactl.ipc.protocol import WORKER_PROTOCOL_VERSION, worker_socket_path

PG_SERVER = "postgresql://postgres@127.0.0.1:5432"
#: Rate limits out of reach, so every message is answered (the limiter still runs).
UNLIMITED = {
    "WACTL_PIPELINE_CHAT_BURST": "1000000",
    "WACTL_PIPELINE_CHAT_PER_MINUTE": "1000000000",
    "WACTL_PIPELINE_TENANT_BURST": "1000000",
    "WACTL_PIPELINE_TENANT_PER_MINUTE": "1000000000",
    # The default already; stated so that a changed default cannot slow the bench down.
    "WACTL_PIPELINE_PACING_IN_SANDBOX": "false",
}
#: What customers write, in turn: a greeting, menu picks, a question, thanks. Nothing
#: that asks for a person (that pauses the chat and the bot stays silent).
TEXTS = ("hello", "1", "3", "what are your opening hours?", "2", "thanks!")
#: A request not answered within this long counts as "no reply" (the DB check tells
#: late from lost).
REQUEST_TIMEOUT = 30.0
#: A closed loop stops taking new messages after this long (a slow machine stays bounded).
CLOSED_LOOP_DEADLINE = 120.0
#: Longest wait for a command or a worker before the run is declared broken.
UP_TIMEOUT = 120.0
#: Tenants created at the same time (each `wactl tenant create` is a ~0.6 s process).
CREATE_PARALLELISM = 4
#: Connections opened per tenant before an open loop starts (more open on demand).
POOL_START_SIZE = 4
#: At most this many connections (so requests in flight) per worker. Past it, an open
#: loop's requests wait in the load generator, which shows as send lag: an overloaded
#: worker would otherwise get hundreds of connections and stop accepting them.
POOL_MAX_LINKS = 64

# Targets: for one worker on SQLite; for many tenants on whichever backend runs them.
TARGET_MSG_PER_S = 500.0
TARGET_ONE_WORKER_P99_MS = 20.0
TARGET_TENANTS_P99_MS = 50.0
#: Signals that end the run early (teardown still runs).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGTERM: unwind like Ctrl-C, so that teardown runs."""


@dataclass(frozen=True)
class Settings:
    """The load, as given on the command line."""

    messages: int
    warmup: int
    window: int
    chats: int
    open_rate: float
    open_seconds: float
    tenants: int
    tenant_rate: float
    seconds: float
    tenant_chats: int


# --- the machine ------------------------------------------------------------------------


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def filesystem_of(path: Path) -> str:
    """The type and device of the mount holding ``path`` (longest matching mount point)."""
    best = ("", "unknown", "?")
    target = str(path.resolve())
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind = line.split()[:3]
            inside = target == mount or target.startswith(mount.rstrip("/") + "/")
            if inside and len(mount) > len(best[0]):
                best = (mount, kind, device)
    return f"{best[1]} ({best[2]} on {best[0]})"


def wactl_revision() -> str:
    """The checkout measured: wactl's version, commit, and whether src/ has local changes."""
    repo = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--", "src"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return wactl.__version__
    return f"{wactl.__version__} ({commit}{', src/ modified' if dirty else ''})"


def machine() -> dict[str, Any]:
    load1, load5, _ = os.getloadavg()
    return {
        "wactl": wactl_revision(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "tmp_filesystem": filesystem_of(Path(tempfile.gettempdir())),
        "load_average_at_start": [round(load1, 2), round(load5, 2)],
    }


# --- figures ----------------------------------------------------------------------------


def percentile(ordered: list[float], fraction: float) -> float:
    """Nearest-rank percentile of an ascending list (0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Latency:
    """A latency distribution, in milliseconds."""

    count: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float

    @classmethod
    def of(cls, seconds: list[float]) -> Latency:
        ordered = sorted(seconds)
        mean = sum(ordered) / len(ordered) if ordered else 0.0
        return cls(
            count=len(ordered),
            p50_ms=round(percentile(ordered, 0.50) * 1000, 2),
            p90_ms=round(percentile(ordered, 0.90) * 1000, 2),
            p99_ms=round(percentile(ordered, 0.99) * 1000, 2),
            max_ms=round((ordered[-1] if ordered else 0.0) * 1000, 2),
            mean_ms=round(mean * 1000, 2),
        )


@dataclass(frozen=True)
class Sample:
    """One request: its outcome and how long it took."""

    latency: float
    status: str
    kind: str | None = None
    #: How late the request was written against its scheduled time (open loops).
    lag: float = 0.0
    #: When it was written (perf_counter), 0 when it never was.
    sent_at: float = 0.0


def statuses(samples: list[Sample]) -> dict[str, int]:
    return dict(sorted(Counter(s.status for s in samples).items()))


# --- PostgreSQL -------------------------------------------------------------------------


@dataclass
class PostgresDatabase:
    """A database of its own for one run, dropped at teardown."""

    name: str = field(default_factory=lambda: f"wactl_bench_{secrets.token_hex(4)}")
    created: bool = False

    @property
    def url(self) -> str:
        return f"{PG_SERVER.replace('postgresql://', 'postgresql+psycopg://')}/{self.name}"

    def _admin(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            raise BenchError(
                f"PostgreSQL is not reachable at {PG_SERVER} ({str(exc).strip()}); "
                "run scripts/ensure-postgres, or use --backend sqlite"
            ) from exc

    def create(self) -> None:
        with self._admin() as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.name)))
        self.created = True

    def drop(self) -> None:
        if not self.created:
            return
        with self._admin() as connection:
            # FORCE: a worker killed a moment ago may still hold a connection.
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )
        self.created = False


# --- one throwaway wactl installation ---------------------------------------------------


@dataclass
class Installation:
    """wactl with its own home, data dir, short runtime dir and database."""

    backend: str
    base: Path
    database: PostgresDatabase | None = None
    env: dict[str, str] = field(init=False)
    wactl: Path = field(init=False)
    daemon_started: bool = False

    def __post_init__(self) -> None:
        self.wactl = wactl_executable()
        env = isolated_env(
            self.base,
            {
                "WACTL_PATHS_DATA_DIR": str(self.data_dir),
                "WACTL_PATHS_RUNTIME_DIR": str(self.runtime_dir),
                "COLUMNS": "200",
                **UNLIMITED,
            },
        )
        if self.database is not None:
            env["WACTL_DATABASE_URL"] = self.database.url
        self.env = env

    @property
    def data_dir(self) -> Path:
        return self.base / "data" / "wactl"

    @property
    def runtime_dir(self) -> Path:
        return self.base / "r"

    @property
    def database_url(self) -> str:
        if self.database is not None:
            return self.database.url
        return f"sqlite:///{self.data_dir / 'wactl.db'}"

    @property
    def client(self) -> DaemonClient:
        return DaemonClient(self.runtime_dir / "wactld.sock", timeout=60.0)

    def socket_of(self, slug: str) -> Path:
        return worker_socket_path(self.runtime_dir, slug)

    def cli(self, *args: str, timeout: float = UP_TIMEOUT) -> str:
        """Run `wactl ARGS` in this installation; its stdout."""
        try:
            result = subprocess.run(
                [str(self.wactl), *args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"`wactl {' '.join(args)}` took over {timeout:g} s") from exc
        if result.returncode != 0:
            raise BenchError(
                f"`wactl {' '.join(args)}` exited {result.returncode}: {result.stderr.strip()}"
            )
        return result.stdout

    def set_up(self) -> None:
        if self.database is not None:
            self.database.create()
        self.cli("init")
        self.daemon_started = True  # from here on, teardown asks the daemon to stop
        self.cli("daemon", "start")

    def effective_config(self) -> dict[str, Any]:
        """What the daemon and workers run with (same environment): `wactl config show`."""
        shown: dict[str, Any] = json.loads(self.cli("config", "show", "--json"))
        return shown

    def create_tenants(self, slugs: list[str]) -> None:
        def create(slug: str) -> None:
            self.cli("tenant", "create", slug, "--name", f"Bench {slug}", "--engine", "sandbox")

        with ThreadPoolExecutor(CREATE_PARALLELISM) as pool:
            list(pool.map(create, slugs))

    def start_and_link(self, slugs: list[str]) -> dict[str, int]:
        """Start the workers (`wactl tenant start` waits until they run), link each
        through the daemon's sandbox scan; slug -> worker pid."""
        self.cli("tenant", "start", *slugs, "--timeout", str(UP_TIMEOUT))
        client = self.client
        for slug in slugs:
            deadline = time.monotonic() + 30
            while True:
                try:
                    client.request("POST", f"/v1/tenants/{slug}/sandbox/scan", {})
                    break
                except ConflictError as exc:
                    if "already linked" in str(exc):
                        break
                    # "no QR code is showing yet": the worker is up, its engine not quite.
                    if time.monotonic() > deadline:
                        raise BenchError(f"cannot link tenant {slug}: {exc}") from exc
                    time.sleep(0.05)
        pids = {}
        for slug in slugs:
            view = client.request("GET", f"/v1/tenants/{slug}")
            if view["state"] != "RUNNING" or not view["pid"]:
                raise BenchError(f"worker {slug} is {view['state']} ({view['reason']})")
            pids[slug] = int(view["pid"])
        return pids

    def stop_workers(self, slugs: list[str]) -> None:
        self.cli("tenant", "stop", *slugs)

    def message_counts(self) -> dict[str, dict[str, int]]:
        """slug -> {"IN": n, "OUT": n, "IN ANSWERED": n, "OUT SENT": n, ...} from the log."""
        engine = sqlalchemy.create_engine(self.database_url)
        try:
            with engine.connect() as connection:
                rows = connection.execute(
                    sqlalchemy.text(
                        "SELECT t.slug, m.direction, m.state, COUNT(*) FROM message_log m "
                        "JOIN tenant t ON t.id = m.tenant_id "
                        "GROUP BY t.slug, m.direction, m.state"
                    )
                ).all()
        finally:
            engine.dispose()
        counts: dict[str, Counter[str]] = {}
        for slug, direction, state, count in rows:
            tally = counts.setdefault(str(slug), Counter())
            tally[str(direction)] += int(count)
            tally[f"{direction} {state}"] += int(count)
        return {slug: dict(sorted(tally.items())) for slug, tally in counts.items()}

    def tear_down(self) -> list[str]:
        """Stop everything this installation started; the problems met, if any."""
        problems: list[str] = []
        if self.daemon_started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                subprocess.run(
                    [str(self.wactl), "daemon", "stop", "--with-workers", "--timeout", "60"],
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=90,
                    check=False,
                )
        leftovers = list(marked_processes(self.base))
        for proc in leftovers:
            with contextlib.suppress(psutil.Error):
                what = " ".join(proc.cmdline()[-2:])
                proc.kill()
                problems.append(f"killed leftover pid {proc.pid} ({what})")
        psutil.wait_procs(leftovers, timeout=10)
        if self.database is not None:
            try:
                self.database.drop()
            except (psycopg.Error, BenchError) as exc:
                problems.append(f"could not drop database {self.database.name}: {exc}")
        shutil.rmtree(self.base, ignore_errors=True)
        return problems


def balanced(counts: dict[str, int], expected: int) -> bool:
    """Every message logged IN has its reply logged OUT, and nothing else is there."""
    return counts.get("IN", -1) == counts.get("OUT", -2) == expected


def settled_counts(
    install: Installation, expected: dict[str, int], timeout: float = REQUEST_TIMEOUT
) -> tuple[dict[str, dict[str, int]], float]:
    """The message log's counts once every tenant is balanced, or after ``timeout`` (a
    request the bench gave up on may still be answered late); (counts, seconds waited)."""
    start = time.monotonic()
    while True:
        counts = install.message_counts()
        everything = {slug: counts.get(slug, {}) for slug in expected}
        done = all(balanced(everything[slug], n) for slug, n in expected.items())
        waited = time.monotonic() - start
        if done or waited > timeout:
            return everything, round(waited, 1)
        time.sleep(0.5)


@dataclass
class CpuWindow:
    """CPU time used over a stretch of wall time: by some processes, by this process (the
    load generator), and by the whole machine."""

    pids: list[int]
    wall: float = 0.0
    processes: float = 0.0
    generator: float = 0.0
    machine_busy: float = 0.0

    @contextlib.contextmanager
    def measure(self) -> Iterator[None]:
        wall, procs, own = time.perf_counter(), cpu_seconds(self.pids), time.process_time()
        machine = psutil.cpu_times()
        yield
        self.wall = time.perf_counter() - wall
        self.processes = cpu_seconds(self.pids) - procs
        self.generator = time.process_time() - own
        after = psutil.cpu_times()
        total = sum(after) - sum(machine)
        self.machine_busy = 1 - (after.idle - machine.idle) / total if total > 0 else 0.0

    def summary(self, messages: int) -> dict[str, Any]:
        cores = len(os.sched_getaffinity(0))
        return {
            "cpu_ms_per_msg": round(self.processes / messages * 1000, 3) if messages else None,
            "generator_cpu_ms_per_msg": round(self.generator / messages * 1000, 3)
            if messages
            else None,
            "cpu_percent_of_machine": round(self.processes / self.wall / cores * 100, 1),
            "generator_percent_of_machine": round(self.generator / self.wall / cores * 100, 1),
            "machine_busy_percent": round(self.machine_busy * 100, 1),
            # The daemon, PostgreSQL, and whatever else runs on the machine.
            "others_percent_of_machine": round(
                max(0.0, self.machine_busy - (self.processes + self.generator) / self.wall / cores)
                * 100,
                1,
            ),
        }


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


# --- talking to a worker ----------------------------------------------------------------


class WorkerLink:
    """One connection to a worker's control socket. The worker answers a connection's
    requests one after another, so a link carries one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._next_id = 0

    @classmethod
    async def open(cls, path: Path) -> WorkerLink:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=1 << 20), REQUEST_TIMEOUT
        )
        try:
            hello = json.loads(await asyncio.wait_for(reader.readline(), REQUEST_TIMEOUT))
        except BaseException:
            writer.close()
            raise
        if hello.get("type") != "hello" or hello.get("protocol") != WORKER_PROTOCOL_VERSION:
            writer.close()
            raise BenchError(f"{path} does not speak worker protocol {WORKER_PROTOCOL_VERSION}")
        return cls(reader, writer)

    async def send(self, sender: str, text: str, message_id: str) -> tuple[float, dict[str, Any]]:
        """Play a customer's message; (seconds from writing it to its reply, result)."""
        self._next_id += 1
        request_id = self._next_id
        line = json.dumps(
            {
                "type": "request",
                "id": request_id,
                "op": "send",
                "args": {"from": sender, "text": text, "id": message_id},
            },
            separators=(",", ":"),
        ).encode()
        start = time.perf_counter()
        self.writer.write(line + b"\n")
        while True:
            raw = await self.reader.readline()
            if not raw:
                raise ConnectionResetError("the worker closed the connection")
            message = json.loads(raw)
            # Events (heartbeats) are pushed to every client; skip them.
            if message.get("type") == "reply" and message.get("id") == request_id:
                break
        latency = time.perf_counter() - start
        if not message.get("ok"):
            return latency, {"status": f"error {message.get('status')}"}
        result: dict[str, Any] = message["result"]
        return latency, result

    def close(self) -> None:
        self.writer.close()


class LinkPool:
    """Idle links to one worker; a request takes one, or opens a new one if none is idle."""

    def __init__(self, path: Path, max_links: int = POOL_MAX_LINKS) -> None:
        self.path = path
        self._idle: list[WorkerLink] = []
        self._all: list[WorkerLink] = []
        self._slots = asyncio.Semaphore(max_links)
        #: Requests written to the worker (each one must end up logged IN and OUT).
        self.written = 0

    async def _open(self) -> WorkerLink:
        link = await WorkerLink.open(self.path)
        self._all.append(link)
        return link

    async def fill(self, size: int) -> None:
        while len(self._idle) < size:
            self._idle.append(await self._open())

    async def send(self, index: int, chats: int, prefix: str, due: float | None = None) -> Sample:
        """Send message ``index``; ``due``: when an open loop scheduled it (perf_counter)."""
        async with self._slots:
            lag = 0.0 if due is None else time.perf_counter() - due
            return await self._send(index, chats, prefix, lag)

    async def _send(self, index: int, chats: int, prefix: str, lag: float) -> Sample:
        try:
            link = self._idle.pop() if self._idle else await self._open()
        except (TimeoutError, OSError, ValueError) as exc:
            # Never written: the worker did not accept (or greet) a new connection in time.
            return Sample(REQUEST_TIMEOUT, f"not sent (connect: {type(exc).__name__})", lag=lag)
        chat = index % chats
        sender = f"+1555{chat:07d}"
        text = TEXTS[(index // chats) % len(TEXTS)]
        self.written += 1
        sent_at = time.perf_counter()
        try:
            latency, result = await asyncio.wait_for(
                link.send(sender, text, f"{prefix}-{index}"), REQUEST_TIMEOUT
            )
        except TimeoutError:
            link.close()  # its stream is out of step now; never reuse it
            return Sample(
                REQUEST_TIMEOUT, f"no reply within {REQUEST_TIMEOUT:g} s", lag=lag, sent_at=sent_at
            )
        except (OSError, ValueError) as exc:
            link.close()
            error = f"connection error ({type(exc).__name__})"
            return Sample(REQUEST_TIMEOUT, error, lag=lag, sent_at=sent_at)
        self._idle.append(link)
        return Sample(latency, str(result.get("status")), result.get("kind"), lag, sent_at)

    def close(self) -> None:
        for link in self._all:
            link.close()
        self._all.clear()
        self._idle.clear()


async def closed_loop(pool: LinkPool, *, count: int, window: int, chats: int, prefix: str) -> Run:
    """``count`` messages with ``window`` of them in flight at all times (fewer if
    CLOSED_LOOP_DEADLINE passes first)."""
    await pool.fill(window)
    indexes = iter(range(count))
    samples: list[Sample] = []
    start = time.perf_counter()
    deadline = start + CLOSED_LOOP_DEADLINE

    async def lane() -> None:
        for index in indexes:  # shared by every lane: each index is sent once
            samples.append(await pool.send(index, chats, prefix))
            if time.perf_counter() > deadline:
                return

    await asyncio.gather(*(lane() for _ in range(window)))
    return Run(samples, time.perf_counter() - start)


async def open_loop(
    pools: list[LinkPool], *, rate: float, seconds: float, chats: int, prefix: str
) -> Run:
    """Each pool gets ``rate`` msg/s for ``seconds``, sent at scheduled times whether or
    not earlier messages were answered; pool i's schedule is shifted by i/(n*rate) so
    that together they make one even stream."""
    for pool in pools:
        await pool.fill(POOL_START_SIZE)
    per_pool = round(rate * seconds)
    start = time.perf_counter() + 0.2

    async def one(pool: LinkPool, index: int, due: float, tag: str) -> Sample:
        return await pool.send(index, chats, tag, due=due)

    async def tenant(number: int, pool: LinkPool) -> list[Sample]:
        phase = number / (len(pools) * rate)
        pending: list[asyncio.Task[Sample]] = []
        for index in range(per_pool):
            due = start + phase + index / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.create_task(one(pool, index, due, f"{prefix}-{number}")))
        return list(await asyncio.gather(*pending))

    results = await asyncio.gather(*(tenant(n, pool) for n, pool in enumerate(pools)))
    elapsed = time.perf_counter() - start
    return Run([sample for samples in results for sample in samples], elapsed)


@dataclass(frozen=True)
class Run:
    samples: list[Sample]
    elapsed: float

    def send_rate(self) -> float:
        """Requests written per second, first write to last."""
        times = [s.sent_at for s in self.samples if s.sent_at]
        span = max(times, default=0.0) - min(times, default=0.0)
        return (len(times) - 1) / span if span > 0 else 0.0

    @property
    def replied(self) -> int:
        return sum(1 for s in self.samples if s.status == "replied")

    def latency(self) -> Latency:
        return Latency.of([s.latency for s in self.samples if s.status == "replied"])

    def lag(self) -> Latency:
        return Latency.of([max(0.0, s.lag) for s in self.samples])


# --- the two parts ----------------------------------------------------------------------


async def drive_one_worker(socket: Path, settings: Settings) -> tuple[dict[str, Run], int]:
    """The three loops on one worker; (runs, requests written)."""
    pool = LinkPool(socket, max_links=max(settings.window, POOL_MAX_LINKS))
    tag = secrets.token_hex(3)
    try:
        warm = await closed_loop(
            pool,
            count=settings.warmup,
            window=settings.window,
            chats=settings.chats,
            prefix=f"w{tag}",
        )
        saturated = await closed_loop(
            pool,
            count=settings.messages,
            window=settings.window,
            chats=settings.chats,
            prefix=f"c{tag}",
        )
        moderate = await open_loop(
            [pool],
            rate=settings.open_rate,
            seconds=settings.open_seconds,
            chats=settings.chats,
            prefix=f"o{tag}",
        )
    finally:
        pool.close()
    return {"warmup": warm, "saturated": saturated, "moderate": moderate}, pool.written


def one_worker(install: Installation, settings: Settings) -> dict[str, Any]:
    slug = "solo"
    install.create_tenants([slug])
    pid = install.start_and_link([slug])[slug]
    say(
        f"{install.backend}: one worker (pid {pid}): {settings.warmup} warm-up, "
        f"{settings.messages} at window {settings.window}, then {settings.open_rate:g} msg/s "
        f"for {settings.open_seconds:g} s"
    )
    cpu = CpuWindow([pid])
    with cpu.measure():
        runs, written = asyncio.run(drive_one_worker(install.socket_of(slug), settings))
    sent = sum(len(run.samples) for run in runs.values())
    counts, settle = settled_counts(install, {slug: written})
    install.stop_workers([slug])
    replied = sum(run.replied for run in runs.values())
    saturated, moderate = runs["saturated"], runs["moderate"]
    return {
        "worker_pid": pid,
        "throughput_msg_per_s": round(len(saturated.samples) / saturated.elapsed, 1),
        "saturated": {
            "messages": len(saturated.samples),
            "window": settings.window,
            "chats": settings.chats,
            "seconds": round(saturated.elapsed, 2),
            "statuses": statuses(saturated.samples),
            "latency": asdict(saturated.latency()),
        },
        "moderate": {
            "rate_msg_per_s": settings.open_rate,
            "messages": len(moderate.samples),
            "seconds": round(moderate.elapsed, 2),
            "statuses": statuses(moderate.samples),
            "latency": asdict(moderate.latency()),
            "send_lag": asdict(moderate.lag()),
        },
        "sent": sent,
        "replied": replied,
        "statuses": statuses([sample for run in runs.values() for sample in run.samples]),
        "db": counts[slug],
        "written": written,
        "db_in_equals_out": balanced(counts[slug], written),
        "db_settle_seconds": settle,
        "cpu": cpu.summary(written),
    }


async def drive_tenants(sockets: list[Path], settings: Settings) -> tuple[Run, list[int]]:
    """Warm-up, then the open loop over every tenant; (run, requests written per tenant)."""
    pools = [LinkPool(path) for path in sockets]
    tag = secrets.token_hex(3)
    try:
        # Warm-up: every tenant answers each of its chats once (greetings, DB pools).
        await asyncio.gather(
            *(
                closed_loop(pool, count=settings.tenant_chats, window=1, chats=10**6, prefix=tag)
                for pool in pools
            )
        )
        run = await open_loop(
            pools,
            rate=settings.tenant_rate,
            seconds=settings.seconds,
            chats=settings.tenant_chats,
            prefix=f"m{tag}",
        )
        return run, [pool.written for pool in pools]
    finally:
        for pool in pools:
            pool.close()


def many_tenants(install: Installation, settings: Settings) -> dict[str, Any]:
    slugs = [f"t{n:02d}" for n in range(1, settings.tenants + 1)]
    say(f"{install.backend}: creating {len(slugs)} tenants")
    install.create_tenants(slugs)
    say(f"{install.backend}: starting and linking {len(slugs)} workers")
    pids = install.start_and_link(slugs)
    say(
        f"{install.backend}: {len(slugs)} tenants x {settings.tenant_rate:g} msg/s for "
        f"{settings.seconds:g} s"
    )
    cpu = CpuWindow(list(pids.values()))
    with cpu.measure():
        run, written = asyncio.run(
            drive_tenants([install.socket_of(slug) for slug in slugs], settings)
        )
    expected = dict(zip(slugs, written, strict=True))
    counts, settle = settled_counts(install, expected)
    good = [slug for slug in slugs if balanced(counts[slug], expected[slug])]
    install.stop_workers(slugs)
    sent = len(run.samples)
    return {
        "tenants": len(slugs),
        "rate_per_tenant_msg_per_s": settings.tenant_rate,
        "seconds": settings.seconds,
        "elapsed_seconds": round(run.elapsed, 2),
        "sent": sent,
        "replied": run.replied,
        "statuses": statuses(run.samples),
        "achieved_msg_per_s": round(run.send_rate(), 1),
        "latency": asdict(run.latency()),
        "send_lag": asdict(run.lag()),
        "db_tenants_in_equals_out": len(good),
        "written": sum(written),
        "db_unbalanced": {slug: counts[slug] for slug in slugs if slug not in good},
        # Logged IN but no OUT yet (still queued, or lost) / written but never logged IN.
        "db_unanswered": sum(counts[s].get("IN", 0) - counts[s].get("OUT", 0) for s in slugs),
        "db_missing": sum(expected[s] - counts[s].get("IN", 0) for s in slugs),
        "db_settle_seconds": settle,
        # Warm-up included (one message per chat per tenant), like in "written".
        "cpu": cpu.summary(sum(written)),
    }


# --- the report -------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    metric: str
    value: str
    target: str = ""
    #: True met, False not met, None no target.
    met: bool | None = None


def rows_for(results: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    for backend, part in results.get("one_worker", {}).items():
        sqlite = backend == "sqlite"
        head = f"1 worker, {backend}:"
        throughput = part["throughput_msg_per_s"]
        rows.append(
            Row(
                f"{head} throughput (closed loop, window {part['saturated']['window']})",
                f"{throughput:.0f} msg/s",
                f">= {TARGET_MSG_PER_S:.0f} msg/s" if sqlite else "",
                throughput >= TARGET_MSG_PER_S if sqlite else None,
            )
        )
        sat = part["saturated"]["latency"]
        rows.append(
            Row(
                f"{head} latency p50 / p99 at saturation",
                f"{sat['p50_ms']:.1f} / {sat['p99_ms']:.1f} ms",
            )
        )
        mod = part["moderate"]["latency"]
        rate = part["moderate"]["rate_msg_per_s"]
        rows.append(
            Row(
                f"{head} latency p50 / p99 at {rate:g} msg/s (open loop)",
                f"{mod['p50_ms']:.1f} / {mod['p99_ms']:.1f} ms",
                f"p99 <= {TARGET_ONE_WORKER_P99_MS:.0f} ms" if sqlite else "",
                mod["p99_ms"] <= TARGET_ONE_WORKER_P99_MS if sqlite else None,
            )
        )
        lag = part["moderate"]["send_lag"]
        rows.append(Row(f"{head} send lag p99 / max (load generator)", _ms_pair(lag)))
        rows.append(Row(f"{head} CPU per message; machine", _cpu(part["cpu"])))
        rows.append(
            Row(
                f"{head} replied / sent; DB IN = OUT = written",
                f"{part['replied']} / {part['sent']}{_others(part['statuses'])}; "
                f"{_yes(part['db_in_equals_out'])}",
                "all; yes",
                part["replied"] == part["sent"] and part["db_in_equals_out"],
            )
        )
    for backend, part in results.get("many_tenants", {}).items():
        head = f"{part['tenants']} tenants, {backend}:"
        rows.append(
            Row(
                f"{head} offered / achieved send rate",
                f"{part['tenants'] * part['rate_per_tenant_msg_per_s']:g} / "
                f"{part['achieved_msg_per_s']:g} msg/s",
            )
        )
        lat = part["latency"]
        rows.append(
            Row(
                f"{head} latency p50 / p99",
                f"{lat['p50_ms']:.1f} / {lat['p99_ms']:.1f} ms",
                f"p99 <= {TARGET_TENANTS_P99_MS:.0f} ms",
                lat["p99_ms"] <= TARGET_TENANTS_P99_MS,
            )
        )
        rows.append(Row(f"{head} latency max", f"{lat['max_ms']:.1f} ms"))
        rows.append(Row(f"{head} send lag p99 / max (load generator)", _ms_pair(part["send_lag"])))
        rows.append(
            Row(
                f"{head} replied / sent",
                f"{part['replied']} / {part['sent']}{_others(part['statuses'])}",
                "all",
                part["replied"] == part["sent"],
            )
        )
        rows.append(
            Row(
                f"{head} tenants with DB IN = OUT = written",
                f"{part['db_tenants_in_equals_out']} / {part['tenants']}{_db_gaps(part)}",
                "all",
                part["db_tenants_in_equals_out"] == part["tenants"],
            )
        )
        rows.append(Row(f"{head} CPU per message (all workers); machine", _cpu(part["cpu"])))
    return rows


def _db_gaps(part: dict[str, Any]) -> str:
    """What the unbalanced tenants lack, as " (n IN without OUT, n written not IN)"."""
    gaps = []
    if part["db_unanswered"]:
        gaps.append(f"{part['db_unanswered']} IN without OUT after {part['db_settle_seconds']} s")
    if part["db_missing"]:
        gaps.append(f"{part['db_missing']} written but not IN")
    return f" ({', '.join(gaps)})" if gaps else ""


def _others(counted: dict[str, int]) -> str:
    """The outcomes other than "replied", as " (n status, ...)"; empty when none."""
    others = [f"{n} {status}" for status, n in counted.items() if status != "replied"]
    return f" ({', '.join(others)})" if others else ""


def _cpu(cpu: dict[str, Any]) -> str:
    return (
        f"{cpu['cpu_ms_per_msg']:.2f} ms; {cpu['machine_busy_percent']:g}% busy = "
        f"{cpu['cpu_percent_of_machine']:g} worker(s) + {cpu['generator_percent_of_machine']:g} "
        f"load generator + {cpu['others_percent_of_machine']:g} others"
    )


def _ms_pair(latency: dict[str, Any]) -> str:
    return f"{latency['p99_ms']:.1f} / {latency['max_ms']:.1f} ms"


def _yes(value: bool) -> str:
    return "yes" if value else "NO"


def render_table(rows: list[Row]) -> str:
    header = ("metric", "value", "target", "met")
    cells = [
        (r.metric, r.value, r.target or "-", {True: "met", False: "NOT MET", None: "-"}[r.met])
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(4)]
    lines = ["  ".join(text.ljust(width) for text, width in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * width for width in widths))
    for line in cells:
        lines.append("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)))
    return "\n".join(line.rstrip() for line in lines)


def render_text(report: dict[str, Any]) -> str:
    m = report["machine"]
    parts = [
        "wactl pipeline benchmark",
        f"machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, "
        f"load {m['load_average_at_start'][0]} at start; {m['platform']}",
        f"python:  {m['python']}; wactl {m['wactl']}; data dirs on {m['tmp_filesystem']}",
        f"load:    {json.dumps(report['settings'])}",
    ]
    for backend, config in report["config"].items():
        parts.append(f"config ({backend}): {json.dumps(config)}")
    if m["load_average_at_start"][0] > 0.5:
        parts.append(
            "warning: the machine was not idle at start (load "
            f"{m['load_average_at_start'][0]}); figures may be pessimistic"
        )
    parts += ["", render_table(report["rows_table"])]
    parts.append("")
    parts.append(
        "Throughput: closed loop, messages / wall time. The 1-worker p99 target refers to "
        "the open loop at a moderate rate; saturation latency is mostly queueing. Send lag:\n"
        "how late the load generator wrote requests against their schedule. CPU: 'others'\n"
        "is the daemon, PostgreSQL and anything else running; if it is large, or the machine\n"
        "is ~100% busy, the latency figures measure the machine more than wactl."
    )
    parts.append(f"run time: {report['run_seconds']:.0f} s")
    return "\n".join(parts)


# --- running it -------------------------------------------------------------------------


@contextlib.contextmanager
def installation(backend: str) -> Iterator[Installation]:
    base = Path(tempfile.mkdtemp(prefix="wpb-", dir="/tmp"))
    database = PostgresDatabase() if backend == "postgresql" else None
    install = Installation(backend, base, database)
    try:
        say(f"{backend}: setting up in {base}" + (f" ({database.name})" if database else ""))
        install.set_up()
        yield install
    finally:
        say(f"{backend}: tearing down")
        # A second Ctrl-C must not cut teardown short (it is bounded: ~90 s at worst).
        previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
        try:
            for problem in install.tear_down():
                say(f"{backend}: teardown: {problem}")
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def config_summary(install: Installation) -> dict[str, Any]:
    shown = install.effective_config()
    pipeline = dict(shown.get("pipeline", {}))
    daemon = shown.get("daemon", {})
    return {
        "database": "sqlite (WAL, synchronous=NORMAL)"
        if install.database is None
        else f"postgresql 127.0.0.1:5432/{install.database.name}",
        "pipeline": pipeline,
        "heartbeat_interval_seconds": daemon.get("heartbeat_interval_seconds"),
        "env": UNLIMITED,
    }


def plan(backend: str | None) -> tuple[list[str], list[str]]:
    """(backends for part 1, backends for part 2)."""
    if backend is None:
        return ["sqlite", "postgresql"], ["sqlite"]
    chosen = ["sqlite", "postgresql"] if backend == "both" else [backend]
    return chosen, chosen


def run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    one_on, many_on = plan(args.backend)
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": asdict(settings),
        "config": {},
        "results": {"one_worker": {}, "many_tenants": {}},
    }
    for backend in dict.fromkeys(one_on + many_on):
        with installation(backend) as install:
            report["config"][backend] = config_summary(install)
            if backend in one_on and not args.skip_one:
                report["results"]["one_worker"][backend] = one_worker(install, settings)
            if backend in many_on and not args.skip_many:
                report["results"]["many_tenants"][backend] = many_tenants(install, settings)
    return report


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, Settings]:
    parser = argparse.ArgumentParser(
        description="Measure the conversation pipeline: msg/s and latency, 1 and N workers.",
    )
    parser.add_argument(
        "--backend",
        choices=("sqlite", "postgresql", "both"),
        help="database for both parts (default: part 1 on both, part 2 on sqlite)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    one = parser.add_argument_group("part 1: one worker")
    one.add_argument("--messages", type=int, default=3000, help="closed-loop messages")
    one.add_argument("--warmup", type=int, default=300, help="warm-up messages")
    one.add_argument("--window", type=int, default=64, help="requests in flight")
    one.add_argument("--chats", type=int, default=50, help="customers writing")
    one.add_argument("--open-rate", type=float, default=200.0, help="open-loop msg/s")
    one.add_argument("--open-seconds", type=float, default=10.0, help="open-loop duration")
    one.add_argument("--skip-one", action="store_true", help="skip part 1")
    many = parser.add_argument_group("part 2: many tenants")
    many.add_argument("--tenants", type=int, default=50, help="tenants (workers)")
    many.add_argument("--tenant-rate", type=float, default=10.0, help="msg/s per tenant")
    many.add_argument("--seconds", type=float, default=60.0, help="duration")
    many.add_argument("--tenant-chats", type=int, default=10, help="customers per tenant")
    many.add_argument("--skip-many", action="store_true", help="skip part 2")
    args = parser.parse_args(argv)
    bounded = {
        "--messages": (args.messages, 1, 100_000),
        "--warmup": (args.warmup, 1, 100_000),
        "--window": (args.window, 1, 1000),
        "--chats": (args.chats, 1, 10_000),
        "--open-rate": (args.open_rate, 0.1, 10_000),
        "--open-seconds": (args.open_seconds, 0.1, 600),
        "--tenants": (args.tenants, 1, 200),
        "--tenant-rate": (args.tenant_rate, 0.1, 1000),
        "--seconds": (args.seconds, 0.1, 600),
        "--tenant-chats": (args.tenant_chats, 1, 1000),
    }
    for name, (value, low, high) in bounded.items():
        if not low <= value <= high:
            parser.error(f"{name} must be between {low:g} and {high:g}")
    settings = Settings(
        messages=args.messages,
        warmup=args.warmup,
        window=args.window,
        chats=args.chats,
        open_rate=args.open_rate,
        open_seconds=args.open_seconds,
        tenants=args.tenants,
        tenant_rate=args.tenant_rate,
        seconds=args.seconds,
        tenant_chats=args.tenant_chats,
    )
    return args, settings


def _on_sigterm(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    args, settings = parse_args(argv)
    signal.signal(signal.SIGTERM, _on_sigterm)
    start = time.monotonic()
    try:
        report = run(args, settings)
    except (KeyboardInterrupt, Interrupted):
        say("interrupted; everything started was torn down")
        return 130
    except (BenchError, WactlError, OSError, psycopg.Error, sqlalchemy.exc.SQLAlchemyError) as exc:
        say(f"error: {type(exc).__name__}: {exc}")
        return 1
    report["run_seconds"] = round(time.monotonic() - start, 1)
    rows = rows_for(report["results"])
    if args.json:
        report["table"] = [asdict(row) for row in rows]
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        report["rows_table"] = rows
        sys.stdout.write(render_text(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
