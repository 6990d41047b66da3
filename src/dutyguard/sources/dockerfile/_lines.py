"""From text to logical lines, the way BuildKit reads them: directives, continuations, heredocs.

Parser directives (``# escape=``, ``# syntax=``) count only at the very top. ``#`` comments are whole
lines, and inside a continuation they (and blank lines) are dropped; the escape character (a
backslash, or a backtick after ``# escape=``) continues a line unless it is itself escaped.
``RUN echo x # y`` keeps ``# y``: there it is the shell's comment, not ours.

Heredocs (``<<EOF``, ``<<-EOF``, quoted delimiters, several on one line) exist for RUN, COPY and ADD
(and an ONBUILD of those) in shell form only, exactly as in BuildKit (``<< EOF`` with a space is not
one). An unterminated heredoc makes BuildKit refuse the file and would swallow the rest of it: it is
refused here too (:class:`InputError`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

from dutyguard.errors import InputError, LimitExceeded
from dutyguard.limits import Limits
from dutyguard.sources.dockerfile._budget import Budget
from dutyguard.sources.dockerfile._lexer import HEREDOC_WORD, Expander, extract_flags, maybe_json, split_words
from dutyguard.sources.dockerfile._model import EMPTY_SCOPE, Heredoc

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_KNOWN_DIRECTIVES = frozenset({"escape", "syntax", "check"})

Problem = Callable[[int, str], None]
"""Records something BuildKit would refuse, at a line, without stopping the reading."""


class LogicalLine(NamedTuple):
    """One instruction's text, with where it came from (a tuple: cheaper to define than a dataclass,
    and it is only handed from the reader to the parser)."""

    text: str
    """Continuations joined, comment and blank continuation lines dropped."""
    original: str
    """The physical lines as written (heredoc bodies excluded)."""
    start: int
    end: int
    """Last line, heredoc terminators included."""
    segments: tuple[tuple[int, int], ...]
    """``(offset in text, physical line)`` for each physical line joined into :attr:`text`."""
    heredocs: tuple[Heredoc, ...]


def _continues(line: str, escape: str) -> tuple[str, bool]:
    """BuildKit's line continuation: a trailing escape (then blanks) that is not itself escaped."""
    stripped = line.rstrip(" \t")
    if not stripped.endswith(escape):
        return line, False
    if len(stripped) == 1:
        return "", True
    if stripped[-2] == escape:
        return line, False
    return stripped[:-1], True


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


class LineReader:
    """Reads the directives, then yields one :class:`LogicalLine` per instruction, within the limits.

    The lines are read lazily: whoever iterates handles each instruction before the next is read, so
    errors surface in file order.
    """

    def __init__(self, name: str, text: str, limits: Limits, budget: Budget, problem: Problem) -> None:
        self.name = name
        self.limits = limits
        self.budget = budget
        self.problem = problem
        self.lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
        self.escape = "\\"
        self.syntax: str | None = None
        self.syntax_line = 0

    def check_length(self, text: str, line: int) -> None:
        limit = self.limits.max_line_bytes
        if len(text) > limit // 4 and len(text.encode("utf-8", "surrogatepass")) > limit:
            raise LimitExceeded(
                self.name, f"line {line}: logical line longer than {limit} bytes (the limit for Dockerfiles)"
            )

    def directives(self) -> int:
        """Read the parser directives at the top; return the index of the first line after them."""
        seen: set[str] = set()
        for i, raw in enumerate(self.lines):
            m = _DIRECTIVE.match(raw.lstrip())
            if m is None or m.group(1).lower() not in _KNOWN_DIRECTIVES:
                return i
            key, value = m.group(1).lower(), m.group(2)
            if key in seen:
                self.problem(i + 1, f"only one {key} parser directive can be used")
                continue
            seen.add(key)
            if key == "escape":
                if value in ("\\", "`"):
                    self.escape = value
                else:
                    self.problem(i + 1, f"invalid escape token {value!r} does not match ` or \\")
            elif key == "syntax":
                self.syntax = value
                self.syntax_line = i + 1
        return len(self.lines)

    def logical_lines(self, i: int) -> Iterator[LogicalLine]:
        """The instructions' lines from line index ``i`` (after the directives) to the end."""
        lines = self.lines
        n = len(lines)
        max_line = self.limits.max_line_bytes
        count = 0
        while i < n:
            raw = lines[i]
            i += 1
            if not i & 0xFFFF:
                self.budget.clock(i)
            first = raw.lstrip()
            if not first or first[0] == "#":
                continue
            if len(raw) > max_line:
                self.check_length(raw, i)
            line, more = _continues(first, self.escape)
            if not more and not line.strip():
                continue
            start = i
            parts = [line]
            size = len(line)
            segments = [(0, start)]
            while more and i < n:
                raw = lines[i]
                i += 1
                if not i & 0xFFFF:
                    self.budget.clock(i)
                if len(raw) > self.limits.max_line_bytes:
                    self.check_length(raw, i)
                if _is_comment(raw) or not raw.strip():
                    continue
                part, more = _continues(raw, self.escape)
                segments.append((size, i))
                parts.append(part)
                size += len(part)
                if size > self.limits.max_line_bytes:
                    self.check_length("".join(parts), start)
            text = "".join(parts).rstrip()
            self.check_length(text, start)
            original = "\n".join(lines[start - 1 : i])
            if count >= self.limits.max_instructions:
                raise LimitExceeded(
                    self.name, f"line {start}: more than {self.limits.max_instructions} instructions"
                )
            count += 1
            heredocs, i = self._heredocs(text, start, i)
            yield LogicalLine(text, original, start, i, tuple(segments), tuple(heredocs))

    # --- heredocs -----------------------------------------------------------------------------
    def _heredocs(self, text: str, start: int, i: int) -> tuple[list[Heredoc], int]:
        """The heredoc bodies an instruction opens, read from line index ``i`` on."""
        m = re.match(r"\S+", text)
        keyword_raw = m.group(0) if m else ""
        keyword = keyword_raw.upper()
        if keyword in ("RUN", "COPY", "ADD") or (keyword == "ONBUILD" and self._onbuild_heredocs(text)):
            specs = self._heredoc_specs(text)
            if specs and not self._is_exec_form(text, len(keyword_raw)):
                return self._read_heredocs(specs, start, i)
        return [], i

    @staticmethod
    def _onbuild_heredocs(text: str) -> bool:
        parts = text.split(None, 2)
        return len(parts) > 1 and parts[1].upper() in ("RUN", "COPY", "ADD")

    @staticmethod
    def _is_exec_form(text: str, after: int) -> bool:
        _, pos = extract_flags(text, after)
        elements, _ = maybe_json(text[pos:])
        return elements is not None

    def _heredoc_specs(self, text: str) -> list[tuple[str, bool, bool, int]]:
        specs: list[tuple[str, bool, bool, int]] = []
        for word, _ in split_words(text, "\\"):
            m = HEREDOC_WORD.match(word)
            if m is None or not m.group(3):
                continue
            rest = m.group(3)
            words = split_words(rest, "\\")
            if len(words) != 1:
                continue
            name = Expander(EMPTY_SCOPE, "\\", self.budget, 0).word(rest)
            quoted = any(q in rest for q in "'\"")
            specs.append((name, not quoted, m.group(2) == "-", int(m.group(1) or 0)))
        return specs

    def _read_heredocs(
        self, specs: Sequence[tuple[str, bool, bool, int]], start: int, i: int
    ) -> tuple[list[Heredoc], int]:
        docs: list[Heredoc] = []
        lines = self.lines
        n = len(lines)
        for name, expand, chomp, fd in specs:
            body: list[str] = []
            first = i + 1
            while True:
                if i >= n:
                    raise InputError(
                        self.name,
                        f"line {start}: unterminated heredoc <<{name} (no line {name!r} before the end of the file)",
                    )
                raw = lines[i]
                i += 1
                if not i & 0xFFFF:
                    self.budget.clock(i)
                check = raw.lstrip("\t") if chomp else raw
                if check == name:
                    break
                body.append(raw.lstrip("\t") if chomp else raw)
            starts: list[int] = []
            pos = 0
            for b in body:
                starts.append(pos)
                pos += len(b) + 1
            text = "".join(b + "\n" for b in body)
            docs.append(Heredoc(name, text, expand, chomp, fd, first, i, tuple(starts)))
        return docs, i
