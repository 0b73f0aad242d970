"""How a worker process is named, so that ps, top and pgrep tell tenants apart.

Why this module exists: a worker names itself (`name_worker_process`, called by
``python -m wactl.bot SLUG`` and by the fork server in each child it forks), and the
daemon recognises its workers by those names when it re-adopts them after a restart
(`wactl.daemon.proctree.is_worker_of`). Both sides import this one definition; the bot
does not import the daemon.

Stdlib only; ctypes and setproctitle are imported by `name_worker_process`, which only a
worker calls.
"""

from __future__ import annotations

#: The module of ``python -m wactl.bot SLUG``, a worker started on its own.
WORKER_MODULE = "wactl.bot"
#: The module of the fork server.
FORK_SERVER_MODULE = "wactl.bot.forkserver"
#: The kernel keeps this many bytes of a process name (``comm``).
COMM_BYTES = 15
#: prctl(2) option that names the calling thread (what ps -o comm and top show).
PR_SET_NAME = 15


def worker_title(slug: str) -> str:
    """The command line (``ps -o args``, ``pgrep -f``, htop) of every worker: it ends in
    "wactl.bot SLUG" whether the fork server forked it or it runs as ``python -m
    wactl.bot SLUG``, so ``pgrep -f 'wactl.bot SLUG$'`` finds a tenant's worker."""
    return f"{WORKER_MODULE} {slug}"


def worker_name(slug: str) -> str:
    """The process name (``comm``: ``ps -o comm``, top, ``pgrep`` without -f) of a
    worker: the slug when it fits the kernel's 15 bytes, else its first 7 and last 7
    characters around a "~", so slugs that share a prefix (``bakery-downtown-north``,
    ``bakery-downtown-south``) still get different names."""
    if len(slug) <= COMM_BYTES:
        return slug
    keep = (COMM_BYTES - 1) // 2
    return f"{slug[:keep]}~{slug[-keep:]}"


def name_worker_process(slug: str, *, title: bool) -> None:
    """Give this process a worker's name (`worker_name`) and, with ``title``, its
    command line (`worker_title`).

    A forked worker's command line would otherwise be its fork server's. setproctitle
    rewrites the memory /proc/PID/cmdline is read from (argv, and the environment
    strings after it, which it moves elsewhere first): /proc/PID/environ of a forked
    worker is blank (it only ever showed the fork server's environment). prctl
    (PR_SET_NAME) sets ``comm``."""
    import ctypes

    if title:
        import setproctitle

        setproctitle.setproctitle(worker_title(slug))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_NAME, ctypes.c_char_p(worker_name(slug).encode()), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NAME) failed")
