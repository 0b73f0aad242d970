"""The last lines of a log file, read from its end.

Why this module exists: `wactl tenant logs --worker` and the dashboard's log tab both
show the tail of a worker's log, which may be many megabytes; only the blocks holding
those lines are read. Stdlib only.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO


def last_lines(path: Path, count: int) -> list[str]:
    """The last ``count`` lines of ``path`` (decoded, newlines kept), read from its end.

    Only the blocks holding those lines are read, so a dashboard can show the tail of
    a 10 MB log every second. Raises FileNotFoundError when there is no file.
    """
    with path.open("rb") as handle:
        return tail_lines(handle, count)


def tail_lines(handle: BinaryIO, count: int, block: int = 65536) -> list[str]:
    """The last ``count`` lines of an open file; leaves it positioned at the end read."""
    end = handle.seek(0, 2)
    if count <= 0:
        return []
    data = b""
    position = end
    while position > 0 and data.count(b"\n") <= count:
        position = max(0, position - block)
        handle.seek(position)
        data = handle.read(end - position)
    lines = data.splitlines(keepends=True)
    if position > 0:
        lines = lines[1:]  # it may have started before the first byte read
    return [line.decode("utf-8", "replace") for line in lines[-count:]]
