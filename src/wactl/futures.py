"""Futures and tasks whose failure must never be lost (stdlib only).

asyncio reports a future's exception that nobody retrieved only when the future is
garbage-collected ("Future exception was never retrieved", "Task exception was never
retrieved"): late, without context, and only if the collector runs. Every future or
task that wactl sets an error on, or starts and does not await, gets one of these done
callbacks, so the error is either awaited by its owner or logged with its name.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any


def mark_retrieved(future: asyncio.Future[Any]) -> None:
    """Done callback for a future whose waiter may be gone by the time it fails (a
    request whose connection broke): whoever still awaits it gets the exception; if
    nobody does, it was expected and is not reported."""
    if not future.cancelled():
        future.exception()


def log_failure(logger: logging.Logger, what: str) -> Any:
    """Done callback for a task nobody awaits: its exception is logged as ``what``."""

    def done(task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.error("%s failed", what, exc_info=error)

    return done
