"""The supervisor: desired state in the database -> worker processes on this machine.

It owns `worker_process.status/pid/create_time/restarts/desired/started_at` and the
tenant statuses that follow from supervision (ERROR on quarantine, STOPPED on stop);
workers own their session state and heartbeat. It is the only code that starts or
signals workers.

How it watches: every worker it starts or adopts gets a pidfd (``os.pidfd_open``) in
the event loop, so an exit is seen at once whether or not the worker is a child of
this daemon (after a daemon restart, workers are not). Heartbeats arrive on each
worker's control socket (`WorkerLink`); a once-a-second tick checks staleness and
every ``SAMPLE_EVERY`` ticks samples CPU and memory of each worker tree.

Workers outlive the daemon: they run in their own session, and a new daemon re-adopts
every live worker whose pid and kernel start time match the database (or that answers
on its control socket), without restarting it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psutil
from sqlalchemy import select
from sqlalchemy.engine import Engine as SAEngine
from sqlalchemy.orm import Session

from wactl.config import Config
from wactl.daemon import proctree
from wactl.daemon.events import EventHub
from wactl.daemon.forkserver import ForkServer, ForkServerError
from wactl.daemon.link import WorkerLink
from wactl.daemon.states import ADOPTED, RestartPolicy, State, WorkerMachine
from wactl.db.base import utcnow
from wactl.db.engine import session_scope
from wactl.db.messages import logged_totals
from wactl.db.models import Tenant, WorkerProcess
from wactl.enums import DesiredState, TenantStatus
from wactl.errors import ConflictError, DatabaseError, NotFoundError
from wactl.ipc.protocol import (
    daemon_log_path,
    worker_exit_path,
    worker_log_path,
    worker_socket_path,
)
from wactl.validation import SLUG_RE

log = logging.getLogger("wactl.daemon.supervisor")

T = TypeVar("T")

#: A worker must say hello on its control socket within this time after it is started.
START_TIMEOUT = 60.0
#: How long the fork server may take to report a forked worker's exit status.
EXIT_CODE_TIMEOUT = 5.0
#: Longest pause between supervision ticks (heartbeat checks and sampling).
MAX_TICK = 1.0
#: Seconds between USS samples of each worker tree (a new worker is sampled at once).
USS_PERIOD = 60.0
#: A worker whose heartbeat is this many intervals late is checked for being stopped
#: (SIGSTOP): then it is killed at once, not after the heartbeat timeout. With the
#: defaults one stopped worker holds SQLite's write lock (and stalls every tenant's
#: writes) for at most 2 x 5 s + one tick (1 s).
STOPPED_AFTER_BEATS = 2.0
#: Tenant statuses that mean "not set up yet": such tenants cannot be started.
UNCONFIGURED = (TenantStatus.NEW, TenantStatus.SETUP_REQUESTED)


@dataclass
class Worker:
    """What the supervisor knows about one tenant's worker."""

    slug: str
    tenant_id: uuid.UUID
    engine: str
    machine: WorkerMachine
    desired: DesiredState = DesiredState.STOPPED
    pid: int | None = None
    create_time: float | None = None
    popen: subprocess.Popen[bytes] | None = None
    #: The fork server is forking this worker (`Supervisor._start_process`).
    spawning: bool = False
    pidfd: int | None = None
    started_mono: float | None = None
    restarts: int = 0
    last_error: str | None = None
    last_heartbeat: float | None = None
    session_state: str | None = None
    qr: str | None = None
    #: The wa-js version the worker said (its hello) it injects; None for other engines.
    wa_js_version: str | None = None
    #: What the running worker says is failing now, by area ({area, message, since}),
    #: until it says it healed.
    problems: dict[str, dict[str, str]] = field(default_factory=dict)
    link: WorkerLink | None = None
    kill_reason: str | None = None
    restart_after_stop: bool = False
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    up: asyncio.Event = field(default_factory=asyncio.Event)
    cpu_percent: float | None = None
    rss: int | None = None
    uss: int | None = None
    processes: int = 0
    _cpu_mark: tuple[float, float] | None = None
    #: Messages in/out in the last hour, as the worker last reported them.
    messages_1h: tuple[int, int] | None = None
    #: Messages in the tenant's log, in and out (Prometheus counters): read from the
    #: database at boot, then as the worker reports them (its totals are the log's too,
    #: `wactl.bot.counters`), so they survive worker and daemon restarts.
    messages_total: tuple[int, int] = (0, 0)
    restart_handle: asyncio.TimerHandle | None = None

    def count_messages(self, report: dict[str, Any]) -> None:
        """Take the message counts of a hello or heartbeat."""
        try:
            hour = (int(report["messages_in_1h"]), int(report["messages_out_1h"]))
            totals = (int(report["messages_in_total"]), int(report["messages_out_total"]))
        except (KeyError, TypeError, ValueError):
            return  # a worker of an older wactl: no counts
        self.messages_1h = hour
        self.messages_total = totals

    def view(self, now: float) -> dict[str, Any]:
        """The stable shape of a worker in the API and `wactl ps --json`."""
        alive = self.pid is not None and self.machine.state in (
            State.STARTING,
            State.RUNNING,
            State.STOPPING,
        )
        return {
            "slug": self.slug,
            "state": self.machine.state.value,
            "desired": self.desired.value,
            "engine": self.engine,
            "wa_js_version": self.wa_js_version if alive else None,
            "pid": self.pid if alive else None,
            "uptime_seconds": round(now - self.started_mono, 1)
            if alive and self.started_mono is not None
            else None,
            "restarts": self.restarts,
            "cpu_percent": self.cpu_percent if alive else None,
            "memory_rss_bytes": self.rss if alive else None,
            "memory_uss_bytes": self.uss if alive else None,
            "processes": self.processes if alive else 0,
            "heartbeat_age_seconds": round(now - self.last_heartbeat, 1)
            if alive and self.last_heartbeat is not None
            else None,
            "messages_in_1h": self.messages_1h[0] if alive and self.messages_1h else None,
            "messages_out_1h": self.messages_1h[1] if alive and self.messages_1h else None,
            "messages_in_total": self.messages_total[0],
            "messages_out_total": self.messages_total[1],
            "session_state": self.session_state,
            "has_qr": self.qr is not None,
            "last_error": self.last_error,
            "problems": list(self.problems.values()) if alive else [],
            "reason": self.machine.reason,
        }

    def take_problems(self, reported: Any) -> None:
        """The problems a worker's hello lists (what was failing before this link)."""
        self.problems = {}
        for item in reported if isinstance(reported, list) else []:
            self.take_problem(item)

    def take_problem(self, item: Any) -> bool:
        if not isinstance(item, dict):
            return False
        area, message, since = item.get("area"), item.get("message"), item.get("since")
        if not (isinstance(area, str) and isinstance(message, str) and isinstance(since, str)):
            return False
        self.problems[area[:40]] = {"area": area[:40], "message": message[:2000], "since": since}
        return True


class Supervisor:
    def __init__(self, config: Config, db: SAEngine, hub: EventHub) -> None:
        self.config = config
        self.db = db
        self.hub = hub
        d = config.daemon
        self.policy = RestartPolicy(
            backoff_initial=d.backoff_initial_seconds,
            backoff_max=d.backoff_max_seconds,
            max_crashes=d.max_crashes,
            crash_window=d.crash_window_seconds,
            stable_after=d.stable_after_seconds,
        )
        self.workers: dict[str, Worker] = {}
        self._db_pool = ThreadPoolExecutor(1, thread_name_prefix="wactl-db")
        self._start_slots = asyncio.Semaphore(d.start_concurrency)
        self._tick_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticks = 0
        self.started_at = time.time()
        #: The database's last failure and since when (wall clock), while it lasts.
        self._database_problem: tuple[str, float] | None = None
        self.forkserver: ForkServer | None = None
        if d.fork_workers:
            # Its own output (nothing, unless it fails) goes to the daemon's log.
            self.forkserver = ForkServer(self._environment(), daemon_log_path(config.log_dir))

    # --- plumbing -------------------------------------------------------------------

    def _spawn_task(self, coro: Any, name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    async def _db(self, fn: Callable[[Session], T]) -> T:
        """Run ``fn(session)`` in one transaction on the database thread."""

        def run() -> T:
            with session_scope(self.db) as session:
                return fn(session)

        return await asyncio.get_running_loop().run_in_executor(self._db_pool, run)

    def _persist(self, worker: Worker, tenant_status: TenantStatus | None = None) -> None:
        """Write the worker's bookkeeping (and maybe the tenant status), in order, later."""
        values = {
            "status": worker.machine.state,
            "desired": worker.desired,
            "pid": worker.pid,
            "create_time": worker.create_time,
            "restarts": worker.restarts,
            "last_error": worker.last_error,
        }

        def write(session: Session) -> None:
            row = session.scalar(
                select(WorkerProcess).where(WorkerProcess.tenant_id == worker.tenant_id)
            )
            if row is None:
                tenant = session.get(Tenant, worker.tenant_id)
                if tenant is None:
                    return  # deleted meanwhile
                row = WorkerProcess(tenant_id=worker.tenant_id, name=f"wactl-bot-{worker.slug}")
                session.add(row)
            for key, value in values.items():
                setattr(row, key, value)
            if values["status"] is State.STARTING:
                row.started_at = utcnow()
            if tenant_status is not None:
                tenant = session.get(Tenant, worker.tenant_id)
                if tenant is not None:
                    tenant.status = tenant_status

        self._spawn_task(self._db(write), f"persist-{worker.slug}")

    def _publish(self, worker: Worker) -> None:
        self.hub.publish("worker", **worker.view(time.monotonic()))

    # --- boot and shutdown ----------------------------------------------------------

    async def boot(self) -> None:
        """Load every tenant, re-adopt live workers, restore desired=RUNNING ones."""

        def load(
            session: Session,
        ) -> tuple[list[tuple[Tenant, WorkerProcess | None]], dict[uuid.UUID, tuple[int, int]]]:
            tenants = session.scalars(select(Tenant).order_by(Tenant.slug)).all()
            return [(t, t.worker) for t in tenants], logged_totals(session)

        rows, totals = await self._db(load)
        to_start: list[Worker] = []
        for tenant, row in rows:
            worker = self._new_worker(tenant)
            worker.messages_total = totals.get(tenant.id, (0, 0))
            self.workers[tenant.slug] = worker
            if row is None:
                continue
            worker.desired = row.desired
            worker.restarts = row.restarts
            worker.last_error = row.last_error
            pid = await self._find_live_worker(tenant.slug, row)
            if pid is not None:
                self._adopt(worker, pid)
                if worker.desired is DesiredState.STOPPED:
                    self._spawn_task(self.stop(worker.slug), f"stop-{worker.slug}")
                continue
            if row.status is State.FATAL:
                worker.machine.transition(State.FATAL, row.last_error)
                continue
            if worker.desired is DesiredState.RUNNING:
                to_start.append(worker)
            elif row.pid is not None or row.status is not State.STOPPED:
                worker.pid = worker.create_time = None
                self._persist(worker)
        for worker in to_start:
            worker.machine.started()
            self._spawn_task(self._start_process(worker), f"start-{worker.slug}")
        self._tick_task = asyncio.get_running_loop().create_task(self._tick_loop(), name="tick")
        log.info(
            "booted: %d tenants, %d adopted, %d to start",
            len(self.workers),
            sum(1 for w in self.workers.values() if w.machine.state is State.RUNNING),
            len(to_start),
        )

    async def _find_live_worker(self, slug: str, row: WorkerProcess) -> int | None:
        """The pid of a live worker for ``slug``, by the database's record or its socket."""
        if (
            row.pid is not None
            and row.create_time is not None
            and proctree.identity_matches(row.pid, row.create_time, slug)
        ):
            return row.pid
        # The daemon may have died between starting a worker and recording it: a worker
        # that answers on its socket is adopted too, so no second copy is ever started.
        path = worker_socket_path(self.config.runtime_dir, slug)
        if not path.exists():
            return None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(path)), 2.0)
        except (OSError, TimeoutError):
            return None
        try:
            import json

            line = await asyncio.wait_for(reader.readline(), 2.0)
            hello = json.loads(line)
            pid = int(hello["pid"])
        except (OSError, TimeoutError, ValueError, KeyError, TypeError):
            return None
        finally:
            writer.close()
        try:
            create_time = psutil.Process(pid).create_time()
        except psutil.Error:
            return None
        return pid if proctree.identity_matches(pid, create_time, slug) else None

    def _new_worker(self, tenant: Tenant) -> Worker:
        return Worker(
            slug=tenant.slug,
            tenant_id=tenant.id,
            engine=tenant.engine.value,
            machine=WorkerMachine(self.policy, clock=time.monotonic),
        )

    def _adopt(self, worker: Worker, pid: int) -> None:
        proc = psutil.Process(pid)
        worker.pid = pid
        worker.create_time = proc.create_time()
        # Uptime from the kernel's start time, converted to this process's monotonic clock.
        worker.started_mono = time.monotonic() - (time.time() - worker.create_time)
        worker.last_heartbeat = time.monotonic()  # a fresh window after the daemon's absence
        # STARTING until its hello says its engine has started (it may have been
        # adopted in the middle of its start); then RUNNING.
        worker.machine.transition(State.STARTING, ADOPTED)
        worker.up.set()
        self._watch(worker)
        self._connect(worker)
        self._persist(worker)
        log.info("re-adopted worker %s (pid %d)", worker.slug, pid)

    async def shutdown(self, *, stop_workers: bool) -> None:
        """Stop supervising. Workers keep running unless ``stop_workers``."""
        if self._tick_task is not None:
            self._tick_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tick_task
        if stop_workers:
            await asyncio.gather(
                *(self._stop_process(w) for w in self.workers.values() if w.pid is not None)
            )
        for worker in self.workers.values():
            if worker.restart_handle is not None:
                worker.restart_handle.cancel()
            self._unwatch(worker)
            if worker.link is not None:
                await worker.link.close()
                worker.link = None
        for task in list(self._tasks):
            if task.get_name().startswith("persist-"):
                with contextlib.suppress(Exception):
                    await task
            else:
                task.cancel()
        if self.forkserver is not None:
            await self.forkserver.close()
        self._db_pool.shutdown(wait=True)

    # --- operator actions -----------------------------------------------------------

    async def audit(
        self, actor: str, event_type: str, slug: str | None, payload: dict[str, Any]
    ) -> None:
        """Record an operator action in the audit trail (portal_event_log)."""
        from wactl.db import audit

        worker = self.workers.get(slug) if slug else None

        def write(session: Session) -> None:
            tenant = session.get(Tenant, worker.tenant_id) if worker else None
            audit.record(
                session, actor=actor, event_type=event_type, tenant=tenant, payload=payload
            )

        await self._db(write)

    def database_health(self) -> dict[str, Any]:
        """What /v1/status says of the database: ok, or what fails and since when."""
        problem = self._database_problem
        return {
            "ok": problem is None,
            "problem": problem[0] if problem else None,
            "since": dt.datetime.fromtimestamp(problem[1], dt.UTC).isoformat(timespec="seconds")
            if problem
            else None,
        }

    def _database_failed(self, exc: DatabaseError) -> None:
        if self._database_problem is None:
            log.warning("the database fails; serving what this daemon knows: %s", exc.one_line())
            self._database_problem = (exc.one_line(), time.time())
        else:
            self._database_problem = (exc.one_line(), self._database_problem[1])

    def _database_works(self) -> None:
        if self._database_problem is not None:
            log.info("the database works again")
            self._database_problem = None

    async def refresh(self) -> None:
        """Learn tenants created since boot and forget deleted ones that are not running.
        With the database failing, what this daemon knows stands (`database_health`
        says so)."""

        def load(session: Session) -> list[Tenant]:
            return list(session.scalars(select(Tenant)))

        try:
            tenants = await self._db(load)
        except DatabaseError as exc:
            self._database_failed(exc)
            return
        self._database_works()
        seen = set()
        for tenant in tenants:
            seen.add(tenant.slug)
            worker = self.workers.get(tenant.slug)
            if worker is None or (worker.tenant_id != tenant.id and worker.pid is None):
                self.workers[tenant.slug] = self._new_worker(tenant)
            else:
                worker.engine = tenant.engine.value
        for slug in list(self.workers):
            if slug not in seen and self.workers[slug].pid is None:
                del self.workers[slug]

    async def worker_for(self, slug: str) -> Worker:
        """The worker of ``slug`` (learning the tenant from the database if new)."""
        if not SLUG_RE.fullmatch(slug):
            # No tenant can have it; and a NUL or a lone surrogate must not reach the
            # database driver (PostgreSQL rejects NUL with a DataError).
            shown = slug.encode("utf-8", "backslashreplace").decode("utf-8")
            raise NotFoundError(f"no tenant '{shown}'", hint="see `wactl tenant list`")
        worker = self.workers.get(slug)

        def load(session: Session) -> Tenant | None:
            return session.scalar(select(Tenant).where(Tenant.slug == slug))

        try:
            tenant = await self._db(load)
        except DatabaseError as exc:
            self._database_failed(exc)
            if worker is not None:
                return worker  # as this daemon knows it
            raise
        self._database_works()
        if tenant is None:
            if worker is not None and worker.pid is None:
                del self.workers[slug]
            raise NotFoundError(f"no tenant '{slug}'", hint="see `wactl tenant list`")
        if worker is None or worker.tenant_id != tenant.id:
            worker = self._new_worker(tenant)
            self.workers[slug] = worker
        worker.engine = tenant.engine.value
        return worker

    async def start(self, slug: str) -> Worker:
        worker = await self.worker_for(slug)
        await self._check_configured(worker)
        worker.desired = DesiredState.RUNNING
        state = worker.machine.state
        if state in (State.STOPPED, State.FATAL):
            worker.machine.operator_start()
            worker.last_error = None if state is State.FATAL else worker.last_error
            self._spawn_task(self._start_process(worker), f"start-{slug}")
        elif state is State.BACKOFF:
            # An operator start during the delay starts it now.
            if worker.restart_handle is not None:
                worker.restart_handle.cancel()
            worker.machine.transition(State.STARTING)
            self._spawn_task(self._start_process(worker), f"start-{slug}")
        elif state is State.STOPPING:
            worker.restart_after_stop = True
        self._persist(worker)
        return worker

    async def _check_configured(self, worker: Worker) -> None:
        def status(session: Session) -> TenantStatus | None:
            tenant = session.get(Tenant, worker.tenant_id)
            return tenant.status if tenant is not None else None

        current = await self._db(status)
        if current in UNCONFIGURED:
            assert current is not None
            raise ConflictError(
                f"tenant '{worker.slug}' is not set up yet (status {current.value})",
                hint="approve its setup request first (`wactl requests list`)",
            )

    async def stop(self, slug: str) -> Worker:
        worker = await self.worker_for(slug)
        worker.desired = DesiredState.STOPPED
        worker.restart_after_stop = False
        state = worker.machine.state
        if state is State.BACKOFF:
            if worker.restart_handle is not None:
                worker.restart_handle.cancel()
            worker.machine.transition(State.STOPPED, "stopped by the operator")
            self._persist(worker, TenantStatus.STOPPED)
            self._publish(worker)
        elif state is State.FATAL:
            worker.machine.transition(State.STOPPED, "stopped by the operator")
            self._persist(worker, TenantStatus.STOPPED)
            self._publish(worker)
        elif state in (State.STARTING, State.RUNNING, State.STOPPING):
            await self._stop_process(worker)
        else:
            self._persist(worker)
        return worker

    async def restart(self, slug: str) -> Worker:
        """Stop (gracefully) and start again; an operator restart forgives past crashes."""
        worker = await self.worker_for(slug)
        await self._check_configured(worker)
        if worker.machine.state in (State.STARTING, State.RUNNING, State.STOPPING):
            await self._stop_process(worker)
        return await self.start(slug)

    async def request(self, slug: str, op: str, args: dict[str, Any] | None = None) -> Any:
        """Forward a request (scan, logout, ...) to a running worker."""
        worker = await self.worker_for(slug)
        if worker.link is None or worker.machine.state not in (State.STARTING, State.RUNNING):
            raise ConflictError(
                f"tenant '{slug}' is not running (state {worker.machine.state.value})",
                hint=f"start it with `wactl tenant start {slug}`",
            )
        return await worker.link.request(op, args)

    async def pause_chat(self, slug: str, chat: str, minutes: float) -> dict[str, Any]:
        """Pause the bot in one chat for ``minutes`` (0: hand it back now): through the
        running worker, which keeps its chats' pauses in memory, or in the database when
        it does not run."""
        worker = await self.worker_for(slug)
        if worker.link is not None and worker.machine.state is State.RUNNING:
            result: dict[str, Any] = await worker.link.request(
                "pause", {"chat": chat, "minutes": minutes}
            )
            return result
        from wactl.db import chats

        until = utcnow() + dt.timedelta(minutes=minutes) if minutes else None

        def write(session: Session) -> None:
            chats.set_pause(session, worker.tenant_id, chat, until, "operator")

        await self._db(write)
        return {"chat": chat, "paused_until": until.isoformat() if until else None}

    # --- processes ------------------------------------------------------------------

    def _command(self, slug: str) -> list[str]:
        return [sys.executable, "-m", "wactl.bot", slug]

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env["WACTL_CONFIG"] = str(self.config.source)
        return env

    async def _start_process(self, worker: Worker) -> None:
        """Start the worker process and wait (holding a start slot) until it says hello."""
        async with self._start_slots:
            if worker.spawning or not self._still_wanted(worker):
                return
            self._reap_leftovers(worker)
            log_path = worker_log_path(self.config.log_dir, worker.slug)
            log_path.parent.mkdir(parents=True, exist_ok=True)
            worker.exited = asyncio.Event()
            worker.up = asyncio.Event()
            worker.kill_reason = None
            popen = None
            with log_path.open("ab") as output:
                # The fork is awaited: no second start of this worker meanwhile, and a
                # stop that came meanwhile ends the new process at once.
                worker.spawning = True
                try:
                    pid = await self._fork(worker, output)
                finally:
                    worker.spawning = False
                if pid is not None and not self._still_wanted(worker):
                    self._discard_forked(pid)
                    return
                if pid is None:
                    try:
                        popen = subprocess.Popen(
                            self._command(worker.slug),
                            stdin=subprocess.DEVNULL,
                            stdout=output,
                            stderr=subprocess.STDOUT,
                            env=self._environment(),
                            start_new_session=True,
                            close_fds=True,
                        )
                    except OSError as exc:
                        self._crashed(worker, f"could not start: {exc}")
                        return
                    pid = popen.pid
            worker.popen = popen
            worker.pid = pid
            try:
                worker.create_time = psutil.Process(pid).create_time()
            except psutil.Error:
                worker.create_time = None
            worker.started_mono = time.monotonic()
            worker.last_heartbeat = None
            worker.cpu_percent = worker.rss = worker.uss = None
            worker._cpu_mark = None
            self._watch(worker)
            self._persist(worker)
            self._publish(worker)
            log.info(
                "started worker %s (pid %d%s)",
                worker.slug,
                pid,
                "" if popen is not None else ", forked",
            )
            self._connect(worker)
            up = asyncio.ensure_future(worker.up.wait())
            exited = asyncio.ensure_future(worker.exited.wait())
            try:
                done, _ = await asyncio.wait(
                    {up, exited}, timeout=START_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                # Also when this start is cancelled (the daemon shuts down): no waiter
                # is left pending for the loop to destroy.
                up.cancel()
                exited.cancel()
            if not done and worker.pid is not None:
                worker.kill_reason = f"did not start within {START_TIMEOUT:g} s"
                proctree.kill_tree(worker.pid)

    @staticmethod
    def _still_wanted(worker: Worker) -> bool:
        return worker.desired is DesiredState.RUNNING and worker.machine.state is State.STARTING

    def _discard_forked(self, pid: int) -> None:
        """A worker forked for a start that was called off while it was being forked."""
        assert self.forkserver is not None
        log.info("stopping pid %d at once: its start was called off while it was forked", pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        self._spawn_task(self.forkserver.exit_code(pid, EXIT_CODE_TIMEOUT), f"discard-{pid}")

    async def _fork(self, worker: Worker, output: Any) -> int | None:
        """The worker forked by the fork server, or None to start it with `_command`
        (``daemon.fork_workers`` off, or the fork server failing: logged)."""
        if self.forkserver is None:
            return None
        try:
            return await self.forkserver.spawn(worker.slug, output, self._environment())
        except ForkServerError as exc:
            log.warning("%s; starting worker %s as its own process", exc.message, worker.slug)
            return None

    def _reap_leftovers(self, worker: Worker) -> None:
        """Kill what a previous, dead worker of this tenant left (its group, its socket)."""
        previous = worker.pid
        if previous is not None and worker.create_time is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(previous, signal.SIGKILL)
        path = worker_socket_path(self.config.runtime_dir, worker.slug)
        with contextlib.suppress(FileNotFoundError):
            if not worker.link:
                path.unlink()

    def _watch(self, worker: Worker) -> None:
        assert worker.pid is not None
        try:
            pidfd = os.pidfd_open(worker.pid)
        except ProcessLookupError:
            asyncio.get_running_loop().call_soon(self._on_exit, worker, None)
            return
        worker.pidfd = pidfd
        asyncio.get_running_loop().add_reader(pidfd, self._on_exit, worker, pidfd)

    def _unwatch(self, worker: Worker) -> None:
        if worker.pidfd is not None:
            asyncio.get_running_loop().remove_reader(worker.pidfd)
            os.close(worker.pidfd)
            worker.pidfd = None

    def _connect(self, worker: Worker) -> None:
        path = worker_socket_path(self.config.runtime_dir, worker.slug)
        worker.link = WorkerLink(worker.slug, path, self._on_worker_message)
        worker.link.start()

    def _engine_started(self, worker: Worker) -> None:
        """The worker's engine has started: STARTING becomes RUNNING."""
        if worker.machine.state is State.STARTING:
            worker.machine.up()
            self._persist(worker)
            self._publish(worker)

    def _on_worker_message(self, slug: str, message: dict[str, Any]) -> None:
        worker = self.workers.get(slug)
        if worker is None:
            return
        worker.last_heartbeat = time.monotonic()
        kind = message.get("type")
        if kind == "hello" or message.get("event") in ("heartbeat", "messages"):
            worker.count_messages(message)
        if kind == "hello":
            worker.session_state = message.get("state")
            worker.qr = message.get("qr")
            worker.take_problems(message.get("problems"))
            version = message.get("wa_js_version")
            worker.wa_js_version = version if isinstance(version, str) else None
            # RUNNING once the engine has started (a worker from before this field
            # existed says hello only when it is long started: an adopted one).
            if message.get("started", True) is True:
                self._engine_started(worker)
            worker.up.set()
            return
        if kind != "event":
            return
        event = message.get("event")
        if event == "started":
            self._engine_started(worker)
        elif event == "qr":
            worker.qr = message.get("qr")
            worker.session_state = "QR_PENDING"
            self.hub.publish("qr", slug=slug, qr=worker.qr)
        elif event == "state":
            worker.session_state = message.get("state")
            if worker.session_state != "QR_PENDING":
                worker.qr = None
            self.hub.publish(
                "session", slug=slug, state=worker.session_state, reason=message.get("reason")
            )
        elif event == "error":
            # The worker wrote it to worker_process.last_error; keep our copy the same,
            # so `wactl ps` shows it and our next write does not undo it.
            worker.last_error = str(message.get("message") or "")[:2000] or worker.last_error
            self.hub.publish("error", slug=slug, message=message.get("message"))
        elif event == "problem":
            # Failing now (the database, sending): shown until the worker says it healed.
            if worker.take_problem(message):
                self.hub.publish(
                    "problem", slug=slug, area=message.get("area"), message=message.get("message")
                )
                self._publish(worker)  # its view lists the problems (the dashboard's row)
        elif event == "healed":
            area = message.get("area")
            if isinstance(area, str) and worker.problems.pop(area, None) is not None:
                self.hub.publish("healed", slug=slug, area=area)
                self._publish(worker)
        elif event in ("handoff", "takeover"):
            # A customer asked for a person, or the owner answered by hand: the bot is
            # quiet in that chat now, and whoever watches (the TUI) should know.
            data = {k: v for k, v in message.items() if k not in ("type", "event")}
            self.hub.publish(str(event), slug=slug, **data)

    def _on_exit(self, worker: Worker, pidfd: int | None) -> None:
        """The worker process ended (pidfd readable): decide what follows."""
        if pidfd is not None and worker.pidfd != pidfd:
            return  # a stale notification for an older process
        self._unwatch(worker)
        code: int | None = None
        if worker.popen is not None:
            code = worker.popen.poll()
            if code is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = worker.popen.wait(timeout=0.1)
            worker.popen = None
        elif self.forkserver is not None and worker.pid is not None:
            # Forked: its exit status comes from the fork server, which reaps it.
            self._spawn_task(self._forked_exit(worker, worker.pid), f"exit-{worker.slug}")
            return
        self._exited(worker, code)

    async def _forked_exit(self, worker: Worker, pid: int) -> None:
        assert self.forkserver is not None
        code = await self.forkserver.exit_code(pid, EXIT_CODE_TIMEOUT)
        if worker.pid == pid:
            self._exited(worker, code)

    def _exited(self, worker: Worker, code: int | None) -> None:
        """What follows a worker's end, by its exit code (None: unknown)."""
        pid = worker.pid
        if pid is not None:
            # Nothing of this worker outlives it: its group and any escaped descendant.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if worker.link is not None:
            self._spawn_task(worker.link.close(), f"unlink-{worker.slug}")
            worker.link = None
        worker.exited.set()
        worker.qr = None  # the code was that process's: nobody can scan it any more
        worker.problems = {}  # that process's; its exit says what became of it
        if worker.machine.state is State.STOPPING:
            worker.machine.transition(State.STOPPED, "stopped")
            worker.pid = worker.create_time = None
            if worker.restart_after_stop:
                worker.restart_after_stop = False
                worker.restarts += 1
                worker.machine.transition(State.STARTING, worker.kill_reason)
                self._persist(worker)
                self._publish(worker)
                self._spawn_task(self._start_process(worker), f"start-{worker.slug}")
                return
            self._persist(worker, TenantStatus.STOPPED)
            self._publish(worker)
            return
        said = self._reason_left(worker)
        if worker.kill_reason is not None:
            reason = worker.kill_reason
        elif code is None:
            reason = "exited (exit status unknown: adopted from an earlier daemon)"
        elif code < 0:
            reason = f"killed by {signal.Signals(-code).name}"
        else:
            reason = f"exited with code {code}"
        if said and worker.kill_reason is None:
            reason = f"{reason}: {said}"
        self._crashed(worker, reason)

    def _reason_left(self, worker: Worker) -> str | None:
        """The one line a failing worker left for us (`wactl.bot.worker`), read once."""
        path = worker_exit_path(self.config.runtime_dir, worker.slug)
        try:
            with path.open("rb") as handle:
                said = handle.read(2000).decode("utf-8", "replace").strip()
            path.unlink()
        except OSError:
            return None
        return " ".join(said.split()) or None

    def _crashed(self, worker: Worker, reason: str) -> None:
        log.warning("worker %s %s", worker.slug, reason)
        worker.pid = worker.create_time = None
        worker.last_error = reason
        state = worker.machine.crashed(reason)
        if state is State.FATAL:
            worker.last_error = worker.machine.reason
            self._persist(worker, TenantStatus.ERROR)
            self._publish(worker)
            self.hub.publish("error", slug=worker.slug, message=worker.machine.reason)
            return
        self._persist(worker)
        self._publish(worker)
        assert worker.machine.restart_at is not None
        delay = max(0.0, worker.machine.restart_at - time.monotonic())
        worker.restart_handle = asyncio.get_running_loop().call_later(
            delay, self._restart_due, worker
        )

    def _restart_due(self, worker: Worker) -> None:
        worker.restart_handle = None
        if worker.machine.state is not State.BACKOFF or worker.desired is not DesiredState.RUNNING:
            return
        worker.restarts += 1
        worker.machine.transition(State.STARTING, worker.machine.reason)
        self._spawn_task(self._start_process(worker), f"start-{worker.slug}")

    async def _stop_process(self, worker: Worker) -> None:
        """SIGTERM to the group, the grace period, then SIGKILL to the group and strays."""
        if worker.pid is None:
            if worker.machine.state is State.STARTING:
                # Still waiting for a start slot: there is no process to signal.
                worker.machine.transition(State.STOPPING, "stopping")
                worker.machine.transition(State.STOPPED, "stopped before it started")
                self._persist(worker, TenantStatus.STOPPED)
                self._publish(worker)
            return
        pid = worker.pid
        if worker.machine.state is not State.STOPPING:
            worker.machine.transition(State.STOPPING, "stopping")
            self._persist(worker)
            self._publish(worker)
        survivors = []
        for member in proctree.tree_pids(pid):
            with contextlib.suppress(psutil.Error):
                survivors.append(psutil.Process(member))
        with contextlib.suppress(ProcessLookupError, PermissionError):
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                # Forked a moment ago: not yet the leader of its own session.
                os.kill(pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(worker.exited.wait(), self.config.daemon.stop_grace_seconds)
        except TimeoutError:
            log.warning(
                "worker %s ignored SIGTERM for %gs; killing it",
                worker.slug,
                self.config.daemon.stop_grace_seconds,
            )
            proctree.kill_tree(pid)
            await worker.exited.wait()
        for proc in survivors:
            # is_running() compares the start time, so a reused pid is never hit.
            with contextlib.suppress(psutil.Error):
                if proc.is_running():
                    proc.kill()

    # --- the tick: heartbeats, sampling, memory ceiling -----------------------------

    async def _tick_loop(self) -> None:
        d = self.config.daemon
        # Often enough to notice a silent worker within ~1/4 of the timeout and to sample
        # on time; idle cost is a loop over the workers (~1 us each).
        tick = min(MAX_TICK, d.heartbeat_timeout_seconds / 4, d.sample_interval_seconds)
        next_sample = time.monotonic() + d.sample_interval_seconds
        # USS reads each process's smaps_rollup: ~1 ms per worker against ~0.1 ms for
        # CPU and RSS (bench/supervise.py: 44-50 ms vs 4 ms per round of 50 workers).
        # Once a minute keeps `wactl ps` informative and the daemon's idle cost low.
        uss_every = max(1, round(USS_PERIOD / d.sample_interval_seconds))
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            sample = now >= next_sample
            if sample:
                next_sample = now + d.sample_interval_seconds
                self._ticks += 1
            try:
                self._tick(now, sample=sample, with_uss=sample and self._ticks % uss_every == 0)
            except Exception:
                log.exception("supervision tick failed")

    def _tick(self, now: float, *, sample: bool, with_uss: bool) -> None:
        timeout = self.config.daemon.heartbeat_timeout_seconds
        late = STOPPED_AFTER_BEATS * self.config.daemon.heartbeat_interval_seconds
        for worker in self.workers.values():
            if worker.pid is None or worker.machine.state is not State.RUNNING:
                continue
            age = now - worker.last_heartbeat if worker.last_heartbeat is not None else 0.0
            if age > timeout:
                self._kill_hung(worker, f"no heartbeat for {age:.0f} s (hung)")
                continue
            if age > late and proctree.is_stopped(worker.pid):
                # Stopped by a signal (SIGSTOP, a debugger): it would hold whatever it
                # holds (SQLite's write lock: every tenant's writes wait) until the
                # heartbeat timeout; a stopped worker does nothing, so it goes now.
                self._kill_hung(worker, f"stopped by a signal for {age:.0f} s (hung)")
                continue
            if sample:
                self._sample(worker, now, with_uss=with_uss or worker.uss is None)

    def _kill_hung(self, worker: Worker, reason: str) -> None:
        assert worker.pid is not None
        worker.kill_reason = reason
        worker.last_heartbeat = None
        proctree.kill_tree(worker.pid)

    def _sample(self, worker: Worker, now: float, *, with_uss: bool) -> None:
        assert worker.pid is not None
        sample = proctree.sample_tree(worker.pid, with_uss=with_uss)
        if sample is None:
            return
        worker.processes = sample.processes
        worker.rss = sample.rss
        if sample.uss is not None:
            worker.uss = sample.uss
        if worker._cpu_mark is not None:
            then, cpu_then = worker._cpu_mark
            if now > then:
                worker.cpu_percent = round(100 * (sample.cpu_seconds - cpu_then) / (now - then), 1)
        worker._cpu_mark = (now, sample.cpu_seconds)
        limit = self.config.daemon.memory_limit_mb
        if limit and sample.rss > limit * 1024 * 1024 and worker.machine.state is State.RUNNING:
            worker.kill_reason = (
                f"memory {sample.rss // (1024 * 1024)} MB over the {limit} MB ceiling; "
                "restarted gracefully"
            )
            worker.last_error = worker.kill_reason
            worker.restart_after_stop = True
            self._spawn_task(self._stop_process(worker), f"memory-restart-{worker.slug}")

    # --- views ----------------------------------------------------------------------

    def views(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [self.workers[slug].view(now) for slug in sorted(self.workers)]

    def counts(self) -> dict[str, int]:
        result = {state.value: 0 for state in State}
        for worker in self.workers.values():
            result[worker.machine.state.value] += 1
        return result

    def uptime(self) -> float:
        return time.time() - self.started_at
