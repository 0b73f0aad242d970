"""A QR code as lines of half-block characters: two module rows per terminal line.

A terminal cell is about twice as tall as it is wide, so one character holding an
upper and a lower module keeps the code square and halves its height: the sandbox's
codes (version 3-4 with a 2-module border) take 17-19 lines and fit an 80×24 terminal
with room for a title and a hint. Dark modules are drawn with the character's glyph,
so the text must be shown dark on light (the screen styles it black on white).
"""

from __future__ import annotations

import segno

#: Modules of quiet zone around the code. The standard asks for 4; phone scanners
#: read 2 well, and it saves 4 lines.
BORDER = 2

_GLYPHS = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}


def qr_lines(payload: str) -> list[str]:
    """The QR of ``payload`` as half-block lines, quiet zone included.

    Error correction L, raised by segno while it does not make the code larger: the
    smallest code a phone reads from a screen.
    """
    code = segno.make(payload, error="l", boost_error=True)
    rows = [[bool(module) for module in row] for row in code.matrix_iter(border=BORDER)]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    return [
        "".join(_GLYPHS[(top, bottom)] for top, bottom in zip(upper, lower, strict=True))
        for upper, lower in zip(rows[::2], rows[1::2], strict=True)
    ]
