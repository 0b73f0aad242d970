"""Process trees of workers, read from /proc directly where psutil would scan everything.

psutil's ``Process.children()`` walks every pid on the machine (~5 ms with a few hundred
processes); the kernel's per-thread ``children`` files name a process's children
directly, so a worker's tree costs a few small reads. Linux only, like the daemon.

Workers are told apart from other processes by the names they give themselves
(`wactl.worker_names`, the one definition the bot imports too).
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

import psutil

from wactl.worker_names import COMM_BYTES, FORK_SERVER_MODULE, WORKER_MODULE


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads), or [] when it is gone."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            text = (task / "children").read_text()
        except OSError:
            continue
        found.extend(int(part) for part in text.split())
    return found


def tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants, parents first."""
    order = [pid]
    index = 0
    while index < len(order):
        order.extend(child_pids(order[index]))
        index += 1
    return order


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal a worker's process group and any descendant that left it."""
    targets = set(tree_pids(pid))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    for target in targets:
        try:
            os.kill(target, sig)
        except (ProcessLookupError, PermissionError):
            continue


@dataclass
class TreeSample:
    """Resources of one worker tree at one moment."""

    processes: int = 0
    cpu_seconds: float = 0.0
    rss: int = 0
    uss: int | None = None


def sample_tree(pid: int, *, with_uss: bool) -> TreeSample | None:
    """CPU time and memory of a worker and its descendants; None when the worker is gone."""
    sample = TreeSample()
    for member in tree_pids(pid):
        try:
            proc = psutil.Process(member)
            with proc.oneshot():
                times = proc.cpu_times()
                sample.cpu_seconds += times.user + times.system
                if with_uss:
                    full = proc.memory_full_info()
                    sample.rss += full.rss
                    sample.uss = (sample.uss or 0) + full.uss
                else:
                    sample.rss += proc.memory_info().rss
            sample.processes += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            if member == pid:
                return None
    return sample


def identity_matches(pid: int, create_time: float, slug: str) -> bool:
    """True when ``pid`` is still the worker for ``slug`` that started at ``create_time``.

    Pids are reused; the kernel's start time together with the command line is what
    tells the worker the database remembers from an unrelated process with its pid.
    """
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > 0.05:
            return False
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return is_worker_of(proc, slug)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


#: How workers forked by wactl 0.x before process titles were named: "wactl " and the
#: first 9 bytes of the slug, with the fork server's command line (still recognised, so
#: that a daemon upgraded under running workers re-adopts them).
LEGACY_NAME_PREFIX = "wactl "


def is_worker_of(proc: psutil.Process, slug: str) -> bool:
    """Whether ``proc`` is a worker of ``slug``: its command line is ``python -m
    wactl.bot SLUG`` or its title `wactl.worker_names.worker_title` (or it is a legacy
    forked worker)."""
    cmdline = _arguments(proc)
    if WORKER_MODULE in cmdline:
        return slug in cmdline
    return FORK_SERVER_MODULE in cmdline and _comm(proc.pid) == _legacy_name(slug)


def is_worker(proc: psutil.Process) -> bool:
    """Whether ``proc`` is a worker of any tenant (see `is_worker_of`)."""
    cmdline = _arguments(proc)
    return WORKER_MODULE in cmdline or (
        FORK_SERVER_MODULE in cmdline and _comm(proc.pid).startswith(LEGACY_NAME_PREFIX)
    )


def is_fork_server(proc: psutil.Process) -> bool:
    """Whether ``proc`` is a fork server (not a legacy worker forked from one)."""
    return FORK_SERVER_MODULE in _arguments(proc) and not _comm(proc.pid).startswith(
        LEGACY_NAME_PREFIX
    )


def _arguments(proc: psutil.Process) -> list[str]:
    """The words of ``proc``'s command line. A title set by setproctitle is one string
    padded with NULs, which psutil returns as one argument followed by empty ones."""
    return " ".join(proc.cmdline()).split()


def _legacy_name(slug: str) -> str:
    return f"{LEGACY_NAME_PREFIX}{slug}"[:COMM_BYTES]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return ""


def is_stopped(pid: int) -> bool:
    """Whether ``pid`` is stopped by a signal (SIGSTOP, SIGTSTP) or a tracer."""
    try:
        return psutil.Process(pid).status() in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP)
    except psutil.Error:
        return False
