"""Names and numbers shared by the daemon, its clients and the workers. Stdlib only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: Bumped when the /v1 API changes incompatibly; the client checks it first.
PROTOCOL_VERSION = 1
#: The worker control protocol (daemon <-> worker, JSON lines on the worker's socket).
WORKER_PROTOCOL_VERSION = 1
#: Header every client sends, and the daemon echoes.
PROTOCOL_HEADER = "X-Wactl-Protocol"
#: Header naming who acts (``os:<login>``), recorded in the audit trail by the daemon.
ACTOR_HEADER = "X-Wactl-Actor"


def socket_path(runtime_dir: Path) -> Path:
    return runtime_dir / "wactld.sock"


def pid_path(runtime_dir: Path) -> Path:
    return runtime_dir / "wactld.pid"


def worker_socket_path(runtime_dir: Path, slug: str) -> Path:
    return runtime_dir / "workers" / f"{slug}.sock"


def worker_exit_path(runtime_dir: Path, slug: str) -> Path:
    """Where a worker that fails leaves its reason, in one line, for the daemon (which
    reads and removes it when the worker has exited)."""
    return runtime_dir / "workers" / f"{slug}.exit"


def daemon_log_path(log_dir: Path) -> Path:
    return log_dir / "wactld.log"


def worker_log_path(log_dir: Path, slug: str) -> Path:
    return log_dir / "tenants" / f"{slug}.log"


#: The longest pause an operator can set on one chat (a year, in minutes): the daemon's
#: API and the worker both hold to it.
MAX_PAUSE_MINUTES = 366 * 24 * 60


def worker_error_text(view: Mapping[str, Any]) -> str:
    """A worker view's LAST ERROR as `wactl ps` and the dashboard show it: what the
    worker says fails now ("now: ...", until it works again), else the last thing that
    went wrong with it (its own reason when it exited)."""
    problems = view.get("problems") or []
    if problems and isinstance(problems[0], Mapping) and problems[0].get("message"):
        return f"now: {problems[0]['message']}"
    return str(view.get("last_error") or "")
