"""Reading what a person hands wactl: a file they name, stdin, TOML text.

Only regular files are read: a named pipe would block the command forever and a
device (/dev/zero) never ends. Nothing is read past a limit, counted while reading
(a file's size can change between a stat and the read, and /proc files claim 0).
Every way the TOML parser can fail (a syntax error, an integer of thousands of digits,
arrays nested deeper than Python's stack) becomes one `ValueError` with a message.

Stdlib only; callers map the errors into their own `WactlError` (a bad tenant file is
bad input, a bad config file is a config error).
"""

from __future__ import annotations

import os
import stat
import sys
import tomllib
from pathlib import Path
from typing import Any

#: The most a file or stdin may hold for the commands that read one: `wactl tenant
#: config apply` and the config file. A tenant's whole document (hours, texts, menu)
#: is a few kilobytes; a megabyte is far beyond any real one.
MAX_INPUT_BYTES = 1024 * 1024
MAX_INPUT_TEXT = "1 MiB"


class InputFileError(Exception):
    """A named file cannot be read as text; the message says why (what, not where)."""


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_text_file(path: Path, *, limit: int = MAX_INPUT_BYTES) -> str:
    """The UTF-8 text of the regular file ``path``, at most ``limit`` bytes.

    Raises FileNotFoundError when there is no such file (callers decide whether that
    is an error), and `InputFileError` for everything else that is wrong.
    """
    # O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except IsADirectoryError:
        raise InputFileError("is a directory, not a regular file") from None
    except PermissionError:
        raise InputFileError("cannot be read: permission denied") from None
    except OSError as exc:
        raise InputFileError(f"cannot be read: {exc.strerror or exc}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = next((name for test, name in _KINDS if test(mode)), "an unusual file")
        raise InputFileError(f"is {kind}, not a regular file")
    with os.fdopen(fd, "rb") as handle:
        os.set_blocking(fd, True)
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise InputFileError(f"cannot be read: {exc.strerror or exc}") from None
    return _decode(data, limit)


def read_stdin_text(*, limit: int = MAX_INPUT_BYTES) -> str:
    """All of stdin as text, at most ``limit`` bytes (a pipe or a terminal is fine)."""
    binary = getattr(sys.stdin, "buffer", None)
    if binary is not None:
        return _decode(binary.read(limit + 1), limit)
    # A text stream without bytes underneath (tests replace sys.stdin with StringIO).
    text: str = sys.stdin.read(limit + 1)
    return _decode(text.encode("utf-8", "surrogatepass"), limit)


def _decode(data: bytes, limit: int) -> str:
    if len(data) > limit:
        raise InputFileError(f"is larger than {_size(limit)}, the limit")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputFileError("is not UTF-8 text") from None


def _size(limit: int) -> str:
    return MAX_INPUT_TEXT if limit == MAX_INPUT_BYTES else f"{limit} bytes"


def parse_toml(text: str) -> dict[str, Any]:
    """``tomllib.loads``, with every failure a `ValueError` whose message says what."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(str(exc)) from None
    except ValueError:
        # An integer longer than int() takes (4300 digits by default).
        raise ValueError("a number has too many digits") from None
    except RecursionError:
        raise ValueError("arrays or tables are nested too deeply") from None
