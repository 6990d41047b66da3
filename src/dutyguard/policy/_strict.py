"""A strict reader for Security's documents: every problem named by field path and line.

Parsing goes on after a problem so that ``policy lint`` reports all of them at once; each
method returns ``None`` for a value it refused (having recorded why) and callers skip it.
``bool`` is never an integer here, and unknown keys are always an error (a misspelt key
silently ignored is a control silently not configured).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from dutyguard.core.model import JSONPath, render_path

MAX_PROBLEMS = 100
"""Past this many problems the rest are summarised: the first ones are what needs fixing."""


@dataclass(frozen=True, slots=True)
class Problem:
    path: JSONPath
    line: int | None
    message: str

    def render(self) -> str:
        where = render_path(self.path) or "(document)"
        if self.line is not None:
            return f"line {self.line}: {where}: {self.message}"
        return f"{where}: {self.message}"


def suggest(word: str, choices: Collection[str]) -> str:
    """`` (did you mean 'x'?)`` when a choice is close to ``word``."""
    import difflib  # only when a problem is being reported

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Reader:
    def __init__(self, lines: Mapping[JSONPath, int] | None = None, line: int | None = None) -> None:
        self._lines = lines or {}
        self._line = line
        self.problems: list[Problem] = []
        self.dropped = 0

    def line_of(self, path: JSONPath) -> int | None:
        for n in range(len(path), 0, -1):
            hit = self._lines.get(path[:n])
            if hit is not None:
                return hit
        return self._line

    def error(self, path: JSONPath, message: str) -> None:
        if len(self.problems) >= MAX_PROBLEMS:
            self.dropped += 1
            return
        self.problems.append(Problem(path, self.line_of(path), message))

    # --- shapes ---------------------------------------------------------------------------------
    def mapping(
        self,
        value: object,
        path: JSONPath,
        *,
        required: Collection[str] = (),
        optional: Collection[str] = (),
        open_keys: bool = False,
    ) -> dict[str, object] | None:
        """A mapping with exactly the allowed keys (``open_keys``: any key, checked by the caller)."""
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {_kind(value)}")
            return None
        out: dict[str, object] = {}
        allowed = (*required, *optional)
        for key, item in value.items():
            if not isinstance(key, str):  # JSON keys are strings; YAML ones may not be
                self.error(path, f"key {key!r} is not a string")
                continue
            if not open_keys and key not in allowed:
                names = ", ".join(allowed) or "none"
                self.error((*path, key), f"unknown field{suggest(key, allowed)}; allowed here: {names}")
                continue
            out[key] = item
        for key in required:
            if key not in out:
                self.error(path, f"missing required field {key!r}")
        return out

    def sequence(
        self, value: object, path: JSONPath, *, max_items: int, min_items: int = 0
    ) -> list[object] | None:
        if not isinstance(value, list):
            self.error(path, f"expected a list, got {_kind(value)}")
            return None
        if len(value) > max_items:
            self.error(path, f"more than {max_items} items")
            return None
        if len(value) < min_items:
            self.error(path, f"needs at least {min_items} item{'s' if min_items != 1 else ''}")
            return None
        return value

    def string(
        self,
        value: object,
        path: JSONPath,
        *,
        pattern: re.Pattern[str] | None = None,
        what: str = "",
        max_len: int = 256,
        allow_empty: bool = False,
    ) -> str | None:
        if not isinstance(value, str):
            self.error(path, f"expected a string, got {_kind(value)}")
            return None
        if not value and not allow_empty:
            self.error(path, "must not be empty")
            return None
        if len(value) > max_len:
            self.error(path, f"longer than {max_len} characters")
            return None
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value if c not in "\n\t"):
            self.error(path, "contains control characters")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.error(path, f"{value!r} is not {what or 'valid here'}")
            return None
        return value

    def integer(self, value: object, path: JSONPath, *, lo: int, hi: int) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            self.error(path, f"expected an integer, got {_kind(value)}")
            return None
        if not lo <= value <= hi:
            self.error(path, f"{value} is outside {lo}..{hi}")
            return None
        return value

    def choice(self, value: object, path: JSONPath, choices: Collection[str]) -> str | None:
        if not isinstance(value, str) or value not in choices:
            shown = (
                repr(value) if isinstance(value, str | int | float | bool) or value is None else _kind(value)
            )
            hint = suggest(value, choices) if isinstance(value, str) else ""
            self.error(path, f"{shown} is not one of {', '.join(choices)}{hint}")
            return None
        return value

    def unique_strings(
        self, value: object, path: JSONPath, *, pattern: re.Pattern[str], what: str, max_items: int
    ) -> tuple[str, ...] | None:
        items = self.sequence(value, path, max_items=max_items)
        if items is None:
            return None
        out: list[str] = []
        for i, item in enumerate(items):
            s = self.string(item, (*path, i), pattern=pattern, what=what)
            if s is None:
                continue
            if s in out:
                self.error((*path, i), f"{s!r} is listed twice")
                continue
            out.append(s)
        return tuple(out)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__
