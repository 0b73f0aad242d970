"""The worker's log: one rotating file per tenant that also catches prints and tracebacks.

The daemon starts a worker with stdout and stderr appended to
`wactl.ipc.protocol.worker_log_path`. The worker logs to that same file through a
size-rotating handler, and every time the handler opens a file (at start and after each
rollover) file descriptors 1 and 2 are pointed at it with ``os.dup2``. Without that, a
traceback or a stray print would keep going to the renamed ``.1`` file, or to no file at
all once it is rotated away. Lines carry a UTC timestamp, the level and the tenant slug,
because operators grep many tenants' logs at once.

Only the standard library; nothing here knows about the database or the engine.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path

from wactl.config.model import Config
from wactl.ipc.protocol import worker_log_path


class UTCFormatter(logging.Formatter):
    """``2026-11-25T10:00:00.123Z INFO shop wactl.bot.worker: message``."""

    def converter(self, seconds: float | None) -> time.struct_time:
        return time.gmtime(seconds)

    default_time_format = "%Y-%m-%dT%H:%M:%S"
    default_msec_format = "%s.%03dZ"


class WorkerLogHandler(logging.handlers.RotatingFileHandler):
    """A rotating file handler that keeps stdout and stderr on the current file."""

    def __init__(self, path: Path, *, max_bytes: int, backups: int) -> None:
        super().__init__(path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        self.redirect_standard_streams()

    def doRollover(self) -> None:
        if self.backupCount == 0:
            # RotatingFileHandler would reopen the same full file, so with no backups
            # to keep the file starts over instead.
            if self.stream is not None:
                self.stream.close()
                self.stream = None
            Path(self.baseFilename).unlink(missing_ok=True)
            self.stream = self._open()
        else:
            super().doRollover()
        self.redirect_standard_streams()

    def redirect_standard_streams(self) -> None:
        """Point fds 1 and 2 at the file this handler writes now."""
        if self.stream is None:
            return
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
        log_fd = self.stream.fileno()
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)


def setup_logging(config: Config, slug: str) -> Path:
    """Send this process's logs, prints and tracebacks to the tenant's log file."""
    path = worker_log_path(config.log_dir, slug)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handler = WorkerLogHandler(
        path, max_bytes=config.daemon.log_max_bytes, backups=config.daemon.log_backups
    )
    handler.setFormatter(UTCFormatter(f"%(asctime)s %(levelname)s {slug} %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    # A print or traceback then lands in the file whole, between log lines.
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    return path
