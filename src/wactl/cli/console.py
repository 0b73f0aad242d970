"""The consoles wactl prints with, and the layouts of its lists and details.

`DataConsole` is the Rich console behind ``AppContext.console`` and ``err_console``:
on it a string is never markup (``[link=...]`` and ``[/bold]`` stay text) nor an emoji
code, and every control character or bidi override in it is shown as an escape
(`wactl.display.printable`). So text from owners, customers or files can be printed
like any other string, and no display of it can fail or drive the terminal.

`print_table`, `print_fields` and `print_hanging` fit the console's width (80 columns
included): a table drops its least important columns first and keeps the essential
ones whole; its free-text column wraps in the room left; long last columns (an error,
an event's actor and details) move to lines of their own under the row; a value wraps
under itself beside its label, or, too long to sit there, gets its own lines. Nothing
is cut one character per line, and no line ends in padding.

Imported only by commands that print (Rich costs ~25 ms), never at `--help` time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

from wactl.display import printable

#: Spaces between two columns.
GAP = 2
#: A wrapping column narrower than this reads badly: columns are dropped before.
MIN_WRAP_WIDTH = 16
#: A last column that folds under its row stays beside it only with this much room
#: (or room for all of it); one that is cut, only with room for all of it.
MIN_BESIDE_WIDTH = 40
#: How far the lines under a row are indented.
INDENT = 2


class DataConsole(Console):
    """A Rich console on which every string is data (see the module docstring)."""

    def render_str(self, text: str, **options: Any) -> Text:
        options["markup"] = False
        options["emoji"] = False
        return super().render_str(printable(text, multiline=True), **options)


@dataclass(frozen=True)
class Column:
    header: str
    #: Numbers: aligned to the right.
    right: bool = False
    #: Free text (a name): wraps in the width the other columns leave.
    wrap: bool = False
    #: When the console is too narrow for every column, the columns with the highest
    #: ``drop`` go first; 0: always shown.
    drop: int = 0
    #: Only for the last columns: shown beside the row while there is room, otherwise
    #: under it on lines of their own, labelled; "cut" ends it with an ellipsis at the
    #: edge (an error), "fold" keeps all of it (event details).
    below: Literal["cut", "fold"] | None = None


def print_table(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[object]],
    *,
    header: bool = True,
) -> None:
    """A list for people, fitted to ``console.width``; each cell is data (`printable`).
    Without ``header``, the headers only name the columns for the layout."""
    cells = [[printable(value) for value in row] for row in rows]
    natural = [
        max([cell_len(column.header) if header else 0, *(cell_len(row[i]) for row in cells)])
        for i, column in enumerate(columns)
    ]

    def promised(i: int) -> int:
        """The width a column needs to be shown (a free-text column may get more)."""
        how = columns[i].below
        if how == "cut":  # cut beside its row, an error would hide what a line shows
            return natural[i]
        if how == "fold":
            return min(natural[i], MIN_BESIDE_WIDTH)
        return min(natural[i], MIN_WRAP_WIDTH) if columns[i].wrap else natural[i]

    def needed(indexes: list[int]) -> int:
        return sum(promised(i) for i in indexes) + GAP * (len(indexes) - 1)

    width = console.width
    movable = [i for i, column in enumerate(columns) if column.below]
    shown = [i for i in range(len(columns)) if i not in movable]
    while needed(shown) > width and any(columns[i].drop for i in shown):
        shown.remove(max(shown, key=lambda i: columns[i].drop))
    # The last columns stay beside the row while they fit, in order; the others go
    # under it.
    under = list(movable)
    while under and needed([*shown, under[0]]) <= width:
        shown.append(under.pop(0))
    # What is left goes to the free-text columns (and those beside), left to right.
    widths = {i: promised(i) for i in shown}
    left = width - needed(shown)
    for i in shown:
        if columns[i].wrap or columns[i].below:
            extra = min(natural[i] - widths[i], max(left, 0))
            widths[i] += extra
            left -= extra

    def line(texts: list[Text]) -> Text:
        return Text(" " * GAP).join(texts)

    out = []
    if header:
        heads = [_fit(Text(columns[i].header, style="bold"), widths[i], columns[i]) for i in shown]
        out.append(line([part[0] for part in heads]))
    for row in cells:
        parts = [_fit(Text(row[i]), widths[i], columns[i], console) for i in shown]
        height = max(len(part) for part in parts)
        for number in range(height):
            out.append(
                line(
                    [
                        part[number] if number < len(part) else Text(" " * widths[i])
                        for part, i in zip(parts, shown, strict=True)
                    ]
                )
            )
        for i in under:
            if row[i]:
                label = Text(f"{columns[i].header.lower()}: ", style="bold")
                out.extend(_under(console, label + Text(row[i]), columns[i].below))
    for each in out:
        each.rstrip()
    console.print(Text("\n").join(out), soft_wrap=True)


def _fit(text: Text, width: int, column: Column, console: Console | None = None) -> list[Text]:
    """A cell as lines of exactly ``width`` cells: wrapped (free text, a last column
    beside its row) or cut (an error beside its row), or padded; numbers to the
    right."""
    if cell_len(text.plain) > width and console is not None:
        if column.below == "cut":
            text.truncate(width, overflow="ellipsis")
        else:
            lines = list(text.wrap(console, width, overflow="fold"))
            for each in lines:
                each.pad_right(width - each.cell_len)
            return lines
    text.align("right" if column.right else "left", width)
    return [text]


def _under(
    console: Console, text: Text, how: Literal["cut", "fold"] | None, *, hang: bool = True
) -> list[Text]:
    """Text on its own lines under a row or a label: indented (its continuation lines
    twice as far when ``hang``, after a label of its own); cut with an ellipsis at the
    edge, or folded."""
    if how == "cut":
        text.truncate(max(console.width - INDENT, MIN_WRAP_WIDTH), overflow="ellipsis")
        return [Text(" " * INDENT) + text]
    rest = 2 * INDENT if hang else INDENT
    lines = list(text.wrap(console, max(console.width - rest, MIN_WRAP_WIDTH)))
    return [
        Text(" " * (INDENT if number == 0 else rest)) + each for number, each in enumerate(lines)
    ]


def print_fields(console: Console, fields: Sequence[tuple[str, object]]) -> None:
    """``label  value`` lines (a detail view); each value is data (`printable`).

    A value wraps beside its label, under itself (a word too long for that room is
    folded there); a value that is one such word (a hash, a path) gets lines of its
    own under the label instead, indented.
    """
    rows = [(Text(label, style="bold"), value) for label, value in fields]
    _print_labelled(console, rows, gap=GAP, lone_word="under")


def print_hanging(console: Console, rows: Sequence[tuple[str, str]]) -> None:
    """``lead text`` lines (a conversation): each text wraps beside its lead, under
    itself, a word too long for that room folded; both are data (`printable`)."""
    _print_labelled(console, [(Text(printable(lead)), text) for lead, text in rows], gap=1)


def _print_labelled(
    console: Console,
    rows: Sequence[tuple[Text, object]],
    *,
    gap: int,
    lone_word: Literal["under", "fold"] = "fold",
) -> None:
    lead_width = max((lead.cell_len for lead, _ in rows), default=0)
    room = console.width - lead_width - gap
    out: list[Text] = []
    for lead, value in rows:
        text = Text(printable(value, multiline=True))
        words = text.plain.split()
        lone = len(words) == 1 and cell_len(words[0]) > room
        if room < MIN_WRAP_WIDTH or (lone_word == "under" and lone):
            out.append(lead)
            out.extend(_under(console, text, "fold", hang=False))
            continue
        lines = list(text.wrap(console, room, overflow="fold")) or [Text("")]
        margin = Text(" " * (lead_width + gap))
        lead.align("left", lead_width + gap)
        out.append(lead + lines[0])
        out.extend(margin + each for each in lines[1:])
    for each in out:
        each.rstrip()
    console.print(Text("\n").join(out), soft_wrap=True)


def print_wrapped(console: Console, text: str) -> None:
    """``text`` (data) wrapped at the console's width, its own line breaks kept."""
    lines = Text(printable(text, multiline=True)).wrap(console, console.width)
    for each in lines:
        each.rstrip()
    console.print(Text("\n").join(lines), soft_wrap=True)
