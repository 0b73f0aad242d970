"""Text that did not come from wactl, made safe to show on a terminal.

Business names, owners' notes, customers' messages, OIDC claims, worker log lines,
paths from the config file: any of them may hold characters that drive the terminal
showing them (ESC starts a sequence that can clear the screen, retitle the window or
plant a clickable link; NUL, BEL, CR and the other C0 and C1 controls), or the Unicode
bidirectional overrides that reorder what is shown around them. `printable` shows each
such character as a visible escape instead, so the operator reads what is stored.

This is the one rule: the CLI (`wactl.cli.console`, which also turns Rich markup off)
and the TUI use it for every string that is data. Stdlib only: `wactl ps --json`'s fast
path and the TUI import it.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: C0 controls, DEL, C1 controls, and the bidirectional embeddings, overrides and
#: isolates (the characters `wactl.validation.validate_name` refuses in names).
_OTHERS = "\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_UNSAFE_RE = re.compile(f"[\x00-\x1f{_OTHERS}]")
#: The same but the line break: for text whose lines are its own layout.
_UNSAFE_BUT_NEWLINE_RE = re.compile(f"[\x00-\x09\x0b-\x1f{_OTHERS}]")
#: What JSON and TOML writers may leave raw inside their strings (both escape C0).
_RAW_IN_SERIALISED_RE = re.compile(f"[{_OTHERS}]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: object, *, multiline: bool = False) -> str:
    """``text`` with every control character and bidi override shown as an escape
    (``\\x1b``, ``\\x00``, ``\\u202e``), so that printing it cannot drive the terminal.

    ``multiline`` keeps line breaks (a message, a log); otherwise they are shown too
    and the result is one line (a table cell, a one-line error). Print the result
    with Rich markup off (`wactl.cli.console` does), so that ``[link=...]`` stays text.
    """
    pattern = _UNSAFE_BUT_NEWLINE_RE if multiline else _UNSAFE_RE
    return pattern.sub(_visible, str(text))


def escape_serialised(text: str) -> str:
    """JSON or TOML text with the characters their writers leave raw in strings (DEL,
    C1 controls, bidi overrides) escaped as ``\\uXXXX``: the same document, but safe
    to print. Those characters only occur inside strings, where both formats read
    ``\\uXXXX`` back as the character itself."""
    return _RAW_IN_SERIALISED_RE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def json_text(data: Any, *, indent: int | None = None) -> str:
    """JSON as wactl prints it (one line unless ``indent``): keys in their order, UTF-8
    as is but for the characters that could drive a terminal (`escape_serialised`)."""
    return escape_serialised(json.dumps(data, indent=indent, ensure_ascii=False, default=str))
