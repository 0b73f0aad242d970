"""The whatsapp-web engine's cost: memory (PSS) per tenant and time to the first QR.

Run it from the repository after `make setup`::

    .venv/bin/python bench/browser.py             # table on stdout, progress on stderr
    .venv/bin/python bench/browser.py --json      # the same figures as JSON
    .venv/bin/python bench/browser.py --help      # --tenants, --runs, --settle, --skip-flags...

It is a benchmark, not a test: it prints figures and whether each target is met, and
exits non-zero only when it could not measure (a command failed, a worker never showed
a QR). Everything runs against the local stand-in for WhatsApp Web (tests/wa_standin),
so the page is tiny: the figures are wactl's and Chromium's own cost, not WhatsApp Web's
(whose page alone takes a few hundred MB in a real session).

1. Real workers under a real daemon (SQLite, default settings except ``browser.url`` and
   ``browser.wa_js_path``, which point at the stand-in):

   - one tenant: time from ``POST /v1/start`` to its QR in ``GET /v1/tenants/SLUG/qr``,
     ``--runs`` times (the first on a new profile); then linked, ``--messages`` customers
     writing to it (each reply goes out through sendTextMessage), ``--settle`` seconds,
     and the PSS of the worker's whole process tree (the worker, Playwright's Node.js
     driver, Chromium and all its children), by kind of process;
   - ``--tenants`` tenants started at once: time to each QR and to all of them (the daemon
     starts at most ``daemon.start_concurrency`` at a time), then the same conversation
     with each, and PSS per tenant and total.

   PSS (``psutil.Process.memory_full_info().pss``) divides each shared page among the
   processes that map it, so the sum over all tenants is the machine's real cost, and
   one tenant alone carries all of Chromium's and Node's code while ten share it.
2. Chromium flags (``--skip-flags`` skips it): ``--tenants`` engines at once in this
   process (each with its own driver, as in a worker), with wactl's flags, with
   Playwright's defaults only, with each of wactl's additions taken out in turn, and
   with a few candidates added; each browser answers ``--probes`` liveness probes
   first (the driver's heap grows with traffic), then PSS and USS per browser (driver +
   Chromium tree), median of ``--rounds`` rounds over all variants. Then one browser with
   a netlog for
   ``--net-seconds`` s: how many DNS lookups and requests go to hosts other than the page's,
   with and without the background-networking flag.

Every installation lives under ``/tmp/wbb-*`` (short: AF_UNIX paths are limited to 107
bytes); every process it starts carries ``WACTL_BENCH_RUN=<temp dir>``, and teardown
(also on error, Ctrl-C and SIGTERM) stops the daemon with its workers, kills by pid what
still carries the marker or runs on one of its profiles, and removes the temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the stand-in lives with the tests

from _support import MARKER, BenchError, isolated_env, say, wactl_executable  # noqa: E402
from tests.wa_standin import FAKE_WPP, Session, StandIn, running_standin  # noqa: E402

import wactl  # noqa: E402
from wactl.bot.engines import chromium  # noqa: E402
from wactl.bot.engines.base import InboundMessage  # noqa: E402
from wactl.bot.engines.whatsapp_web import WhatsAppWebEngine  # noqa: E402
from wactl.config.model import BrowserConfig, Config, PathsConfig  # noqa: E402
from wactl.daemon import proctree  # noqa: E402
from wactl.errors import WactlError  # noqa: E402
from wactl.ipc.client import DaemonClient  # noqa: E402

TARGET_PSS_MB = 200.0
TARGET_FIRST_QR_S = 5.0
#: Longest wait for a QR, a link or a command before the run is declared broken.
UP_TIMEOUT = 180.0
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGTERM: unwind like Ctrl-C, so that teardown runs."""


def mb(value: float) -> float:
    return round(value / 1e6, 1)


# --- memory -------------------------------------------------------------------------------


def kind_of(proc: psutil.Process) -> str:
    """What a process of a worker's tree is, from its command line."""
    try:
        cmdline = proc.cmdline()
        name = proc.name()
    except psutil.Error:
        return "gone"
    text = " ".join(cmdline)
    if proctree.is_worker(proc):
        return "worker (python)"
    if name == "node" or "run-driver" in cmdline:
        return "driver (node)"
    match = re.search(r"--type=(\S+)", text)
    if match is None:
        return "chromium browser" if "--user-data-dir=" in text else name
    kind = match.group(1)
    sub = re.search(r"--utility-sub-type=(\w+)", text)
    return f"chromium {sub.group(1) if sub else kind}" if kind == "utility" else f"chromium {kind}"


def read_memory(processes: Sequence[psutil.Process]) -> tuple[dict[str, int], int]:
    """PSS by kind of process, and the summed USS (memory no other process maps)."""
    found: Counter[str] = Counter()
    unique = 0
    for proc in processes:
        with contextlib.suppress(psutil.Error):
            full = proc.memory_full_info()
            found[kind_of(proc)] += full.pss
            unique += full.uss
    return dict(found), unique


def tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def settled_pss(groups: dict[str, list[psutil.Process]], samples: int = 3) -> dict[str, Any]:
    """Per group: the median over ``samples`` reads (1 s apart) of the summed PSS, with
    the breakdown by kind and the USS of that read."""
    reads: dict[str, list[tuple[dict[str, int], int]]] = {name: [] for name in groups}
    for i in range(samples):
        if i:
            time.sleep(1.0)
        for name, processes in groups.items():
            reads[name].append(read_memory(processes))
    result = {}
    for name, taken in reads.items():
        ordered = sorted(taken, key=lambda read: sum(read[0].values()))
        by_kind, unique = ordered[len(ordered) // 2]
        result[name] = {
            "pss_mb": mb(sum(by_kind.values())),
            "uss_mb": mb(unique),
            "by_kind_mb": {kind: mb(value) for kind, value in sorted(by_kind.items())},
            "processes": len(groups[name]),
        }
    return result


# --- part 1: real workers under a real daemon ---------------------------------------------

FORK_SERVER = "fork server (share)"


def with_fork_server(measured: dict[str, Any]) -> dict[str, Any]:
    """Each tenant's figures with its share of the fork server the workers were forked
    from (``daemon.fork_workers``): the fork server's PSS divided among the tenants."""
    server = measured.pop(FORK_SERVER, None)
    if server is None or not measured:
        return measured
    share = server["pss_mb"] / len(measured)
    for figures in measured.values():
        figures["pss_mb"] = round(figures["pss_mb"] + share, 1)
        figures["by_kind_mb"][FORK_SERVER] = round(share, 1)
    return measured


@dataclass
class Installation:
    base: Path
    standin: StandIn
    env: dict[str, str] = field(init=False)
    wactl: Path = field(init=False)
    daemon_started: bool = False
    seen_qrs: set[str] = field(default_factory=set)
    #: The stand-in's session (the page) each tenant was linked on.
    sessions: dict[str, Session] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.wactl = wactl_executable()
        env = isolated_env(
            self.base,
            {
                "WACTL_PATHS_DATA_DIR": str(self.data_dir),
                "WACTL_PATHS_RUNTIME_DIR": str(self.base / "r"),
                "WACTL_BROWSER_URL": self.standin.url,
                "WACTL_BROWSER_WA_JS_PATH": str(FAKE_WPP),
            },
        )
        if BROWSER_PATH:
            env["WACTL_BROWSER_EXECUTABLE_PATH"] = BROWSER_PATH
        if not FORK_WORKERS:
            env["WACTL_DAEMON_FORK_WORKERS"] = "false"
        self.env = env

    def fork_server(self) -> dict[str, list[psutil.Process]]:
        """{FORK_SERVER: [the fork server]} when the daemon runs one, else {}."""
        for proc in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if proctree.is_fork_server(proc) and proc.environ().get(MARKER) == str(self.base):
                    return {FORK_SERVER: [proc]}
        return {}

    @property
    def data_dir(self) -> Path:
        return self.base / "data" / "wactl"

    @property
    def client(self) -> DaemonClient:
        return DaemonClient(self.base / "r" / "wactld.sock", timeout=60.0)

    def cli(self, *args: str) -> str:
        try:
            result = subprocess.run(
                [str(self.wactl), *args],
                env=self.env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=UP_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BenchError(f"`wactl {' '.join(args)}` took over {UP_TIMEOUT:g} s") from exc
        if result.returncode != 0:
            raise BenchError(
                f"`wactl {' '.join(args)}` exited {result.returncode}: {result.stderr.strip()}"
            )
        return result.stdout

    def set_up(self, slugs: list[str]) -> None:
        self.cli("init")
        for slug in slugs:
            self.cli(
                "tenant", "create", slug, "--name", f"Bench {slug}", "--engine", "whatsapp-web"
            )
        self.daemon_started = True
        self.cli("daemon", "start")

    def qr(self, slug: str) -> str | None:
        value = self.client.request("GET", f"/v1/tenants/{slug}/qr")["qr"]
        return str(value) if value else None

    def start_and_time_qrs(self, slugs: list[str]) -> dict[str, float]:
        """POST /v1/start for ``slugs`` at once; slug -> seconds until its QR showed.

        Only a code never seen before counts: until a restarted worker says hello, the
        daemon still answers with the QR its previous process showed.
        """
        client = self.client
        begin = time.monotonic()
        client.request("POST", "/v1/start", {"tenants": slugs})
        shown: dict[str, float] = {}
        while len(shown) < len(slugs):
            for slug in slugs:
                qr = None if slug in shown else self.qr(slug)
                if qr and qr not in self.seen_qrs:
                    self.seen_qrs.add(qr)
                    shown[slug] = round(time.monotonic() - begin, 2)
            if time.monotonic() - begin > UP_TIMEOUT:
                missing = sorted(set(slugs) - set(shown))
                raise BenchError(f"no QR within {UP_TIMEOUT:g} s for {', '.join(missing)}")
            time.sleep(0.01)
        return shown

    def link(self, slugs: list[str]) -> None:
        """Scan each tenant's QR (the newest: it may have rotated); wait until linked."""
        for slug in slugs:
            qr = self.qr(slug)
            if qr is None:
                raise BenchError(f"{slug} shows no QR to scan")
            session = self.standin.session_showing(qr)
            self.standin.scan(session.qrs[-1])
            self.sessions[slug] = session
        deadline = time.monotonic() + UP_TIMEOUT
        while True:
            views = {v["slug"]: v for v in self.client.request("GET", "/v1/tenants")}
            if all(views[s]["session_state"] == "CONNECTED" for s in slugs):
                return
            if time.monotonic() > deadline:
                raise BenchError("tenants did not link within the timeout")
            time.sleep(0.05)

    def converse(self, slugs: list[str], messages: int) -> None:
        """``messages`` customers write to each tenant (one message each, so no rate
        limit applies); wait until every one got its reply through sendTextMessage."""
        texts = ("hello", "what are your opening hours?", "menu", "hola", "thanks!")
        for i in range(messages):
            for slug in slugs:
                self.standin.customer_writes(
                    self.sessions[slug], f"+3460000{i:04d}", texts[i % len(texts)]
                )
        self.standin.wait(
            lambda: all(len(self.sessions[slug].sent) >= messages for slug in slugs),
            UP_TIMEOUT,
        )

    def pids(self, slugs: list[str]) -> dict[str, int]:
        views = {v["slug"]: v for v in self.client.request("GET", "/v1/tenants")}
        return {slug: int(views[slug]["pid"]) for slug in slugs}

    def stop(self, slugs: list[str]) -> None:
        self.cli("tenant", "stop", *slugs)

    def tear_down(self) -> list[str]:
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
        problems += kill_leftovers(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        return problems


def kill_leftovers(base: Path) -> list[str]:
    """Kill what still carries the marker or runs on a profile under ``base``."""
    problems = []
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            on_profile = any(str(base) in arg for arg in proc.info["cmdline"] or [])
            if on_profile or proc.environ().get(MARKER) == str(base):
                found.append(proc)
    for proc in found:
        with contextlib.suppress(psutil.Error):
            problems.append(f"killed leftover pid {proc.pid} ({kind_of(proc)})")
            proc.kill()
    psutil.wait_procs(found, timeout=10)
    return problems


@contextlib.contextmanager
def installation(standin: StandIn, slugs: list[str]) -> Iterator[Installation]:
    base = Path(tempfile.mkdtemp(prefix="wbb-", dir="/tmp"))
    install = Installation(base, standin)
    try:
        say(f"setting up in {base}")
        install.set_up(slugs)
        yield install
    finally:
        say("tearing down the installation")
        previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in STOP_SIGNALS}
        try:
            for problem in install.tear_down():
                say(f"teardown: {problem}")
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def workers_part(args: argparse.Namespace) -> dict[str, Any]:
    slugs = [f"b{i:02d}" for i in range(1, args.tenants + 1)]
    one = slugs[0]
    result: dict[str, Any] = {}
    # Customers as WhatsApp addresses them now: most in @lid chats, some without a number.
    with (
        running_standin(lid_share=0.6, hidden_share=0.25) as standin,
        installation(standin, slugs) as install,
    ):
        times = []
        for run in range(args.runs):
            say(f"one tenant: start {run + 1}/{args.runs}")
            times.append(install.start_and_time_qrs([one])[one])
            if run < args.runs - 1:
                install.stop([one])
        result["one_first_qr_s"] = times
        say("one tenant: linking, a conversation, settling, measuring")
        install.link([one])
        install.converse([one], args.messages)
        time.sleep(args.settle)
        pid = install.pids([one])[one]
        result["one"] = with_fork_server(settled_pss({one: tree(pid), **install.fork_server()}))[
            one
        ]
        install.cli("tenant", "logout", one)  # unlinked again: it shows a QR below too
        install.stop([one])
        say(f"{len(slugs)} tenants: starting at once")
        qrs = install.start_and_time_qrs(slugs)
        result["many_qr_s"] = qrs
        install.link(slugs)
        say(f"{len(slugs)} tenants: {args.messages} messages each")
        install.converse(slugs, args.messages)
        time.sleep(args.settle)
        pids = install.pids(slugs)
        say(f"{len(slugs)} tenants: measuring")
        groups = {slug: tree(pid) for slug, pid in pids.items()}
        result["many"] = with_fork_server(settled_pss({**groups, **install.fork_server()}))
        install.stop(slugs)
        result["start_concurrency"] = json.loads(install.cli("config", "show", "--json"))["daemon"][
            "start_concurrency"
        ]
    return result


# --- part 2: flags, with engines in this process ---------------------------------------------


class QrWaiter:
    """The smallest EngineEvents: notes when the first QR shows."""

    def __init__(self) -> None:
        self.qr_at: float | None = None
        self.shown = asyncio.Event()

    async def on_qr(self, qr: str) -> None:
        if self.qr_at is None:
            self.qr_at = time.monotonic()
            self.shown.set()

    async def on_ready(self) -> None:
        pass

    async def on_disconnected(self, reason: str) -> None:
        pass

    async def on_logged_out(self) -> None:
        pass

    async def on_message(self, message: InboundMessage) -> None:
        pass


def without(flags: Sequence[str], *drop: str) -> tuple[str, ...]:
    """``flags`` with the named switches and --disable-features entries taken out."""
    kept = []
    for flag in flags:
        name, _, value = flag.partition("=")
        if name == "--disable-features":
            features = [f for f in value.split(",") if f not in drop]
            kept.append(f"{name}={','.join(features)}")
        elif name not in drop:
            kept.append(flag)
    return tuple(kept)


def variants() -> list[tuple[str, tuple[str, ...], str, str]]:
    """(label, Chromium flags, driver NODE_OPTIONS, browser) for each configuration
    measured; browser "" is the one wactl picks (or --browser)."""
    flags = chromium.CHROMIUM_FLAGS
    node = chromium.DRIVER_NODE_OPTIONS
    full = shutil.which("chromium") or ""
    return [
        ("wactl (all flags)", flags, node, ""),
        ("Playwright defaults only", (), "", ""),
        *([("full chromium instead of the headless shell", flags, node, full)] if full else []),
        ("- WebUIOmniboxPopup,WebUIOmniboxAimPopup", without(flags, *OMNIBOX), node, ""),
        (
            "- SpareRendererForSitePerProcess",
            without(flags, "SpareRendererForSitePerProcess"),
            node,
            "",
        ),
        ("- --disable-gpu --disable-software-rasterizer", without(flags, *GPU), node, ""),
        ("- driver NODE_OPTIONS", flags, "", ""),
        ("- driver --jitless", flags, node.replace("--jitless", "").strip(), ""),
        # Candidates not adopted (see bench/README.md for why).
        ("+ --in-process-gpu", (*flags, "--in-process-gpu"), node, ""),
        ("+ --no-zygote", (*flags, "--no-zygote"), node, ""),
        ("+ --single-process", (*flags, "--single-process"), node, ""),
        ("+ --enable-low-end-device-mode", (*flags, "--enable-low-end-device-mode"), node, ""),
        ("+ --renderer-process-limit=1", (*flags, "--renderer-process-limit=1"), node, ""),
    ]


#: The Chromium to run (--browser); empty: the one wactl picks.
BROWSER_PATH = ""
#: daemon.fork_workers in part 1 (--no-fork-workers turns it off).
FORK_WORKERS = True

OMNIBOX = ("WebUIOmniboxPopup", "WebUIOmniboxAimPopup")
GPU = ("--disable-gpu", "--disable-software-rasterizer")


def engine_config(base: Path, standin: StandIn, executable: str = "") -> Config:
    return dataclasses.replace(
        Config(),
        paths=PathsConfig(data_dir=str(base)),
        browser=BrowserConfig(
            url=standin.url, wa_js_path=str(FAKE_WPP), executable_path=executable or BROWSER_PATH
        ),
    )


async def probe(engine: WhatsAppWebEngine, count: int) -> None:
    page = engine.page
    if page is None:
        raise BenchError(f"{engine.tenant_slug} has no page")
    for _ in range(count):
        await page.evaluate("() => window.__wactl.state()")


async def measure_variant(
    base: Path,
    standin: StandIn,
    flags: tuple[str, ...],
    node: str,
    count: int,
    settle: float,
    probes: int,
    executable: str = "",
) -> dict[str, Any]:
    config = engine_config(base, standin, executable)
    chromium.DRIVER_NODE_OPTIONS = node  # read by each engine when it starts its driver
    engines = []
    waiters = []
    try:
        begin = time.monotonic()
        for i in range(count):
            waiter = QrWaiter()
            engine = WhatsAppWebEngine(f"f{i:02d}", config, waiter, flags=flags)
            engines.append(engine)
            waiters.append(waiter)
        await asyncio.gather(*(e.start() for e in engines))
        await asyncio.wait_for(asyncio.gather(*(w.shown.wait() for w in waiters)), UP_TIMEOUT)
        to_qr = [round((w.qr_at or begin) - begin, 2) for w in waiters]
        # Some traffic, as a working session has (the driver's heap grows with it):
        # each engine answers `probes` probes, hours of them at the default interval.
        await asyncio.gather(*(probe(e, probes) for e in engines))
        await asyncio.sleep(settle)
        groups = {}
        for engine in engines:
            browsers = chromium.profile_processes(engine.profile)
            main = [p for p in browsers if not any(a.startswith("--type=") for a in p.cmdline())]
            driver = [main[0].parent()] if main and main[0].parent() else []
            groups[engine.tenant_slug] = [p for p in driver if p is not None] + browsers
        pss = await asyncio.to_thread(settled_pss, groups)
    finally:
        await asyncio.gather(*(e.stop() for e in engines), return_exceptions=True)
    per_browser = [v["pss_mb"] for v in pss.values()]
    kinds: Counter[str] = Counter()
    for v in pss.values():
        for kind, value in v["by_kind_mb"].items():
            kinds[kind] += value
    return {
        "pss_mb_per_browser": round(statistics.mean(per_browser), 1),
        "uss_mb_per_browser": round(statistics.mean(v["uss_mb"] for v in pss.values()), 1),
        "by_kind_mb": {k: round(v / len(per_browser), 1) for k, v in sorted(kinds.items())},
        "processes_per_browser": round(statistics.mean(v["processes"] for v in pss.values()), 1),
        "all_started_to_all_qrs_s": max(to_qr),
    }


def read_netlog(path: Path) -> dict[str, Any]:
    """A netlog; one cut short (a browser killed while closing) is closed at its last
    complete event, as Chromium's netlog viewer does."""
    text = path.read_text(encoding="utf-8")
    try:
        data: dict[str, Any] = json.loads(text)
    except json.JSONDecodeError:
        complete = text[: text.rfind("},\n") + 1] if "},\n" in text else text
        data = json.loads(complete + "]}")
    return data


def count_background(netlog: Path, page_host: str) -> dict[str, Any]:
    """DNS lookups and URL requests in a netlog for hosts other than ``page_host``."""
    data = read_netlog(netlog)
    types = {number: name for name, number in data["constants"]["logEventTypes"].items()}
    lookups: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    for event in data["events"]:
        kind = types.get(event.get("type"))
        params = event.get("params") or {}
        if kind == "HOST_RESOLVER_MANAGER_JOB" and event.get("phase") == 1:
            host = str(params.get("host", ""))
            host = re.sub(r"^https?://", "", host).split(":")[0]
            if host and host != page_host:
                lookups[host] += 1
        elif kind == "URL_REQUEST_START_JOB":
            match = re.match(r"https?://([^/:]+)", str(params.get("url", "")))
            if match and match.group(1) != page_host:
                requests[match.group(1)] += 1
    return {
        "dns_lookups": sum(lookups.values()),
        "requests": sum(requests.values()),
        "hosts": sorted(set(lookups) | set(requests)),
    }


async def measure_network(
    base: Path, standin: StandIn, flags: tuple[str, ...], seconds: float, label: str
) -> dict[str, Any]:
    netlog = base / f"netlog-{label}.json"
    config = engine_config(base, standin)
    engine = WhatsAppWebEngine(
        f"net-{label}", config, QrWaiter(), flags=(*flags, f"--log-net-log={netlog}")
    )
    await engine.start()
    try:
        await asyncio.sleep(seconds)
    finally:
        await engine.stop()
    return count_background(netlog, "127.0.0.1")


async def flags_part(args: argparse.Namespace) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="wbf-", dir="/tmp"))
    original = chromium.DRIVER_NODE_OPTIONS
    results: dict[str, Any] = {"memory": {}, "network": {}}
    try:
        with running_standin() as standin:
            # Rounds, each over every variant: what else runs on the machine (and maps
            # the same Chromium) moves PSS; interleaving spreads that over the variants.
            rounds: dict[str, list[dict[str, Any]]] = {}
            for round_number in range(args.rounds):
                for label, flags, node, executable in variants():
                    say(
                        f"flags, round {round_number + 1}/{args.rounds}: {label}: "
                        f"{args.tenants} browsers"
                    )
                    shutil.rmtree(base / "profiles", ignore_errors=True)
                    rounds.setdefault(label, []).append(
                        await measure_variant(
                            base,
                            standin,
                            flags,
                            node,
                            args.tenants,
                            args.settle,
                            args.probes,
                            executable,
                        )
                    )
            for label, taken in rounds.items():
                middle = sorted(taken, key=lambda r: float(r["pss_mb_per_browser"]))
                chosen = dict(middle[len(middle) // 2])
                chosen["rounds_pss_mb"] = [r["pss_mb_per_browser"] for r in taken]
                chosen["uss_mb_per_browser"] = statistics.median(
                    r["uss_mb_per_browser"] for r in taken
                )
                results["memory"][label] = chosen
            chromium.DRIVER_NODE_OPTIONS = original
            if args.net_seconds > 0:
                for label, flags in (
                    ("wactl", chromium.CHROMIUM_FLAGS),
                    (
                        "without --host-resolver-rules",
                        without(chromium.CHROMIUM_FLAGS, "--host-resolver-rules"),
                    ),
                ):
                    say(f"network: {label}: {args.net_seconds:g} s")
                    results["network"][label] = await measure_network(
                        base, standin, flags, args.net_seconds, label.split()[0]
                    )
    finally:
        chromium.DRIVER_NODE_OPTIONS = original
        for problem in kill_leftovers(base):
            say(f"teardown: {problem}")
        shutil.rmtree(base, ignore_errors=True)
    return results


# --- the report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    metric: str
    value: str
    target: str = ""
    met: bool | None = None


def rows_for(report: dict[str, Any]) -> list[Row]:
    rows: list[Row] = []
    workers = report.get("workers")
    if workers:
        first = workers["one_first_qr_s"]
        rows.append(
            Row(
                "1 tenant: start -> first QR (new profile)",
                f"{first[0]:.2f} s",
                f"<= {TARGET_FIRST_QR_S:g} s",
                first[0] <= TARGET_FIRST_QR_S,
            )
        )
        if len(first) > 1:
            warm = statistics.median(first[1:])
            rows.append(
                Row(
                    f"1 tenant: start -> QR, restarts (median of {len(first) - 1})",
                    f"{warm:.2f} s",
                    f"<= {TARGET_FIRST_QR_S:g} s",
                    warm <= TARGET_FIRST_QR_S,
                )
            )
        one = workers["one"]
        rows.append(
            Row(
                "1 tenant alone: PSS of the worker's tree",
                f"{one['pss_mb']:.0f} MB ({one['processes']} processes)",
                f"<= {TARGET_PSS_MB:g} MB",
                one["pss_mb"] <= TARGET_PSS_MB,
            )
        )
        for kind, value in one["by_kind_mb"].items():
            rows.append(Row(f"    {kind}", f"{value:.0f} MB"))
        many = workers["many"]
        count = len(many)
        per = [v["pss_mb"] for v in many.values()]
        mean = statistics.mean(per)
        rows.append(
            Row(
                f"{count} tenants: PSS per tenant (mean; min-max)",
                f"{mean:.0f} MB ({min(per):.0f}-{max(per):.0f})",
                f"<= {TARGET_PSS_MB:g} MB",
                max(per) <= TARGET_PSS_MB,
            )
        )
        kinds: Counter[str] = Counter()
        for v in many.values():
            for kind, value in v["by_kind_mb"].items():
                kinds[kind] += value
        for kind, value in sorted(kinds.items()):
            rows.append(Row(f"    {kind}", f"{value / count:.0f} MB"))
        rows.append(Row(f"{count} tenants: PSS total", f"{sum(per):.0f} MB"))
        qrs = sorted(workers["many_qr_s"].values())
        rows.append(
            Row(
                f"{count} tenants: start -> QR (first / median / all)",
                f"{qrs[0]:.1f} / {statistics.median(qrs):.1f} / {qrs[-1]:.1f} s "
                f"(start_concurrency {workers['start_concurrency']})",
            )
        )
    flags = report.get("flags")
    if flags:
        memory = flags["memory"]
        base = memory["wactl (all flags)"]["pss_mb_per_browser"]
        base_uss = memory["wactl (all flags)"]["uss_mb_per_browser"]
        for label, figures in memory.items():
            pss, uss = figures["pss_mb_per_browser"], figures["uss_mb_per_browser"]
            note = (
                ""
                if label.startswith("wactl")
                else f" ({pss - base:+.0f} PSS, {uss - base_uss:+.0f} USS vs wactl)"
            )
            rows.append(
                Row(
                    f"flags: {label}",
                    f"PSS {pss:.0f} MB, USS {uss:.0f} MB, "
                    f"{figures['processes_per_browser']:g} processes{note}",
                )
            )
        for label, figures in flags["network"].items():
            rows.append(
                Row(
                    f"network, {label}",
                    f"{figures['dns_lookups']} DNS lookups, {figures['requests']} requests "
                    f"to other hosts ({', '.join(figures['hosts']) or 'none'})",
                )
            )
    return rows


def render(report: dict[str, Any], rows: list[Row]) -> str:
    m = report["machine"]
    header = ("metric", "value", "target", "met")
    cells = [
        (r.metric, r.value, r.target or "-", {True: "met", False: "NOT MET", None: "-"}[r.met])
        for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *cells]) for i in range(4)]
    lines = [
        "wactl browser benchmark (whatsapp-web engine on the local stand-in page)",
        f"machine: {m['nproc']} CPUs, {m['memory_gb']} GB, load {m['load'][0]} at start; "
        f"{m['platform']}",
        f"wactl {m['wactl']}; {m['chromium']}; playwright {m['playwright']}",
        f"settings: {json.dumps(report['settings'])}",
        "",
        "  ".join(text.ljust(width) for text, width in zip(header, widths, strict=True)),
        "  ".join("-" * width for width in widths),
    ]
    for line in cells:
        lines.append("  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)))
    lines += [
        "",
        "PSS: proportional set size summed over the processes (shared pages divided among",
        "the processes that map them). The stand-in page is tiny: WhatsApp Web's own page",
        "adds its JavaScript heap and DOM on top of these figures.",
        f"run time: {report['run_seconds']:.0f} s",
    ]
    return "\n".join(line.rstrip() for line in lines)


def machine() -> dict[str, Any]:
    try:
        config = dataclasses.replace(Config(), browser=BrowserConfig(executable_path=BROWSER_PATH))
        browser = chromium.browser_version(chromium.resolve_executable(config))
    except WactlError as exc:
        browser = f"no browser ({exc.one_line()})"
    from importlib.metadata import version

    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "wactl": f"{wactl.__version__} ({commit or 'no git'})",
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "platform": platform.platform(),
        "chromium": browser,
        "playwright": version("playwright"),
        "load": [round(x, 2) for x in os.getloadavg()[:2]],
    }


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the whatsapp-web engine: PSS per tenant, time to the first QR."
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--tenants", type=int, default=10, help="tenants at once (default 10)")
    parser.add_argument("--runs", type=int, default=3, help="single-tenant starts (default 3)")
    parser.add_argument(
        "--settle", type=float, default=5.0, help="seconds after linking before measuring"
    )
    parser.add_argument(
        "--net-seconds", type=float, default=20.0, help="netlog window (0 skips it)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds over the flag variants (default 2)"
    )
    parser.add_argument(
        "--messages", type=int, default=20, help="customer messages per tenant (default 20)"
    )
    parser.add_argument(
        "--probes", type=int, default=1500, help="probes per browser in part 2 (default 1500)"
    )
    parser.add_argument(
        "--browser",
        default="",
        metavar="PATH",
        help="the Chromium to run (default: the one wactl picks, as browser.executable_path)",
    )
    parser.add_argument(
        "--no-fork-workers",
        action="store_true",
        help="part 1 with daemon.fork_workers off (each worker its own interpreter)",
    )
    parser.add_argument("--skip-workers", action="store_true", help="skip part 1")
    parser.add_argument("--skip-flags", action="store_true", help="skip part 2")
    args = parser.parse_args(argv)
    if not 1 <= args.tenants <= 50:
        parser.error("--tenants must be between 1 and 50")
    if not 1 <= args.runs <= 20 or not 1 <= args.rounds <= 10:
        parser.error("--runs must be between 1 and 20, --rounds between 1 and 10")
    if not 0 <= args.messages <= 1000 or not 0 <= args.probes <= 100_000:
        parser.error("--messages must be 0-1000 and --probes 0-100000")
    if not 0 <= args.settle <= 120 or not 0 <= args.net_seconds <= 300:
        parser.error("--settle must be 0-120 s and --net-seconds 0-300 s")
    return args


def _on_sigterm(signum: int, _frame: object) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str]) -> int:
    global BROWSER_PATH, FORK_WORKERS
    args = parse_args(argv)
    BROWSER_PATH = args.browser
    FORK_WORKERS = not args.no_fork_workers
    signal.signal(signal.SIGTERM, _on_sigterm)
    start = time.monotonic()
    report: dict[str, Any] = {
        "machine": machine(),
        "settings": {
            "tenants": args.tenants,
            "runs": args.runs,
            "rounds": args.rounds,
            "messages": args.messages,
            "probes": args.probes,
            "settle_s": args.settle,
            "net_seconds": args.net_seconds,
            "fork_workers": FORK_WORKERS,
            "browser": args.browser or "wactl's choice",
        },
    }
    try:
        if not args.skip_workers:
            report["workers"] = workers_part(args)
        if not args.skip_flags:
            report["flags"] = asyncio.run(flags_part(args))
    except (KeyboardInterrupt, Interrupted):
        say("interrupted; everything started was torn down")
        return 130
    except (BenchError, WactlError, OSError, TimeoutError) as exc:
        say(f"error: {type(exc).__name__}: {exc}")
        return 1
    report["run_seconds"] = round(time.monotonic() - start, 1)
    rows = rows_for(report)
    if args.json:
        report["table"] = [dataclasses.asdict(row) for row in rows]
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(report, rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
