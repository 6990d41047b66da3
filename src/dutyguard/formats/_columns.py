"""Plain column layout for the findings table: thousands of rows in milliseconds.

rich lays a table out by measuring and wrapping every cell several times (14,000 findings took
5.8 s); this does one greedy pass per cell. Widths are terminal cells (a CJK character takes
two), text is wrapped at spaces and folded inside words longer than the column, and the caller
has already made every value safe for a terminal (:func:`dutyguard.formats._text.terminal`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len, get_character_cell_size

GAP = "  "


def width_of(text: str) -> int:
    return len(text) if text.isascii() else cell_len(text)


def _fold(word: str, width: int) -> list[str]:
    """A word longer than the column, cut into pieces of at most ``width`` cells."""
    if word.isascii():
        return [word[i : i + width] for i in range(0, len(word), width)]
    out: list[str] = []
    cur: list[str] = []
    used = 0
    for ch in word:
        w = get_character_cell_size(ch)
        if used + w > width and cur:
            out.append("".join(cur))
            cur, used = [], 0
        cur.append(ch)
        used += w
    if cur:
        out.append("".join(cur))
    return out


def wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap to ``width`` cells; never returns an empty list."""
    width = max(width, 1)
    if width_of(text) <= width:
        return [text]
    lines: list[str] = []
    cur = ""
    cur_w = 0
    for word in text.split(" "):
        w = width_of(word)
        if cur and cur_w + 1 + w <= width:
            cur += " " + word
            cur_w += 1 + w
            continue
        if cur:
            lines.append(cur)
        if w <= width:
            cur, cur_w = word, w
        else:
            *full, cur = _fold(word, width)
            lines.extend(full)
            cur_w = width_of(cur)
    lines.append(cur)
    return lines


@dataclass(frozen=True, slots=True)
class Column:
    header: str
    right: bool = False
    wraps: bool = False
    share: float = 0.0
    """For a wrapping column: the largest part of the free width it may take (the last wrapping
    column takes whatever is left)."""


def layout(
    columns: Sequence[Column],
    rows: Sequence[Sequence[str]],
    total: int,
    styles: Sequence[tuple[str, str]] = (),
) -> list[str]:
    """Header, a rule, then each row, wrapped into ``total`` cells where the wrapping columns allow.

    ``styles[i]`` = (start, end) escape sequences for row ``i``'s first cell (colour), added
    after padding is measured.
    """
    natural = [max([width_of(c.header), *(width_of(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    widths = list(natural)
    fixed = sum(w for w, c in zip(natural, columns, strict=True) if not c.wraps)
    free = max(total - fixed - len(GAP) * (len(columns) - 1), 0)
    wrapping = [i for i, c in enumerate(columns) if c.wraps]
    for n, i in enumerate(wrapping):
        if n == len(wrapping) - 1:
            widths[i] = max(min(natural[i], free), 12)
        else:
            widths[i] = max(min(natural[i], int(free * columns[i].share)), 12)
            free -= widths[i]
    out = [
        _line([c.header for c in columns], columns, widths),
        "─" * (sum(widths) + len(GAP) * (len(widths) - 1)),
    ]
    for n, row in enumerate(rows):
        cells = [wrap(v, widths[i]) if columns[i].wraps else [v] for i, v in enumerate(row)]
        style = styles[n] if n < len(styles) else None
        for k in range(max(len(c) for c in cells)):
            out.append(
                _line([c[k] if k < len(c) else "" for c in cells], columns, widths, style if k == 0 else None)
            )
    return out


def _line(
    values: Sequence[str],
    columns: Sequence[Column],
    widths: Sequence[int],
    style: tuple[str, str] | None = None,
) -> str:
    parts = []
    for i, (v, c, w) in enumerate(zip(values, columns, widths, strict=True)):
        pad = " " * max(w - width_of(v), 0)
        cell = pad + v if c.right else v + pad
        if i == 0 and style is not None and v:
            cell = f"{style[0]}{v}{style[1]}{pad}"
        parts.append(cell)
    return GAP.join(parts).rstrip()
