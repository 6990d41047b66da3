"""BuildKit's lexer: words, flags, the JSON form, and ``$`` substitution against build variables.

Substitution (``$VAR``, ``${VAR}``, ``${VAR:-x}``, ``${VAR:+x}``, ``-``/``+``/``?`` forms) follows
BuildKit. A build argument without a default has no value we can know: it stays ``${NAME}`` and the
value is marked unresolved, except that ``${NAME:-default}`` takes the default (the build as
written). Pattern operators (``${X#y}``, ``${X/a/b}``) are left unresolved rather than evaluated.
"""

from __future__ import annotations

import json
import re

from dutyguard.sources.dockerfile._budget import MAX_NESTING, Budget
from dutyguard.sources.dockerfile._model import Scope

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
WS = re.compile(r"[\t\v\f\r ]+")
HEREDOC_WORD = re.compile(r"^(\d*)<<(-?)([^<]*)$")


def split_words(text: str, escape: str) -> list[tuple[str, int]]:
    """Whitespace-separated words, quotes kept (BuildKit's ``parseWords``), with their offsets.

    An unterminated quote runs to the end, as in BuildKit's splitter (its later processing may
    refuse it; we read it rather than guess).
    """
    out: list[tuple[str, int]] = []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            break
        start = i
        quote = ""
        while i < n:
            c = text[i]
            if quote:
                if c == quote:
                    quote = ""
                elif c == escape and quote != "'" and i + 1 < n:
                    i += 1
            elif c.isspace():
                break
            elif c in "'\"":
                quote = c
            elif c == escape and i + 1 < n:
                i += 1
            i += 1
        out.append((text[start:i], start))
    return out


def maybe_json(args: str) -> tuple[tuple[str, ...] | None, str | None]:
    """JSON array form: (elements, None), or (None, problem) when it is a JSON array of non-strings."""
    s = args.lstrip()
    if not s.startswith("["):
        return None, None
    try:
        value = json.loads(s)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(value, list):
        return None, None
    if not all(isinstance(v, str) for v in value):
        return None, "when using JSON array syntax, arrays must be comprised of strings only"
    return tuple(value), None


def extract_flags(text: str, pos: int) -> tuple[list[tuple[str, int]], int]:
    """Leading ``--flag[=value]`` words (quotes removed), as BuildKit's extractBuilderFlags."""
    flags: list[tuple[str, int]] = []
    n = len(text)
    while True:
        while pos < n and text[pos].isspace():
            pos += 1
        if not text.startswith("--", pos):
            return flags, pos
        start = pos
        word: list[str] = []
        quote = ""
        while pos < n:
            c = text[pos]
            if quote:
                if c == quote:
                    quote = ""
                elif c == "\\" and pos + 1 < n:
                    pos += 1
                    word.append(text[pos])
                else:
                    word.append(c)
            elif c.isspace():
                break
            elif c in "'\"":
                quote = c
            elif c == "\\" and pos + 1 < n:
                pos += 1
                word.append(text[pos])
            else:
                word.append(c)
            pos += 1
        w = "".join(word)
        if w == "--":
            return flags, pos
        flags.append((w, start))


def unquote_key(key: str) -> str:
    """ENV/LABEL keys may be quoted (``LABEL "a b"=c``)."""
    if key[:1] in ("'", '"') and key[-1:] == key[:1] and len(key) >= 2:
        return key[1:-1]
    return key


class Expander:
    """BuildKit's word processing: quote removal and ``$`` substitution against a scope."""

    __slots__ = ("budget", "escape", "line", "quotes", "resolved", "scope")

    def __init__(self, scope: Scope, escape: str, budget: Budget, line: int, quotes: bool = True) -> None:
        self.scope = scope
        self.escape = escape
        self.budget = budget
        self.line = line
        self.quotes = quotes
        """False for text whose quotes are already removed (instruction flags)."""
        self.resolved = True

    def word(self, text: str) -> str:
        out, _ = self._until(text, 0, "", 0)
        self.budget.spend(len(out), self.line)
        return out

    def _emit(self, parts: list[str], size: int, piece: str) -> int:
        size += len(piece)
        self.budget.value(size, self.line)
        parts.append(piece)
        return size

    def _until(self, s: str, i: int, stop: str, depth: int) -> tuple[str, int]:
        """Process ``s`` from ``i`` up to an unquoted ``stop`` character (or the end)."""
        if depth > MAX_NESTING:
            raise self.budget.fail(self.line, f"substitutions nested deeper than {MAX_NESTING}")
        parts: list[str] = []
        size = 0
        n = len(s)
        esc = self.escape
        quotes = ("'", '"') if self.quotes else ()
        while i < n:
            c = s[i]
            if stop and c == stop:
                return "".join(parts), i
            if c == esc and self.quotes:
                if i + 1 < n:
                    size = self._emit(parts, size, s[i + 1])
                i += 2
            elif c == "'" and quotes:
                j = s.find("'", i + 1)
                j = n if j < 0 else j
                size = self._emit(parts, size, s[i + 1 : j])
                i = j + 1
            elif c == '"' and quotes:
                i += 1
                while i < n and s[i] != '"':
                    d = s[i]
                    if d == esc and i + 1 < n and s[i + 1] in ('"', "$", esc):
                        size = self._emit(parts, size, s[i + 1])
                        i += 2
                    elif d == "$":
                        piece, i = self._dollar(s, i, depth)
                        size = self._emit(parts, size, piece)
                    else:
                        size = self._emit(parts, size, d)
                        i += 1
                i += 1
            elif c == "$":
                piece, i = self._dollar(s, i, depth)
                size = self._emit(parts, size, piece)
            else:
                j = i + 1
                while j < n and s[j] not in ("$", "'", '"', esc) and not (stop and s[j] == stop):
                    j += 1
                if not self.quotes and j < n and s[j] != "$" and not (stop and s[j] == stop):
                    j += 1
                size = self._emit(parts, size, s[i:j])
                i = j
        return "".join(parts), n

    def _dollar(self, s: str, i: int, depth: int) -> tuple[str, int]:
        n = len(s)
        if i + 1 >= n:
            return "$", i + 1
        c = s[i + 1]
        if c == "{":
            return self._braced(s, i, depth)
        m = _NAME.match(s, i + 1)
        if m is None:
            if c.isdigit():
                return "", i + 2
            return "$", i + 1
        return self._lookup(m.group(0), None, "", depth), m.end()

    def _braced(self, s: str, i: int, depth: int) -> tuple[str, int]:
        start = i
        m = _NAME.match(s, i + 2)
        if m is None:
            end = self._close_brace(s, i + 2)
            self.resolved = False
            return s[start:end], end
        name = m.group(0)
        j = m.end()
        n = len(s)
        if j < n and s[j] == "}":
            return self._lookup(name, None, "", depth), j + 1
        op = ""
        if s.startswith((":-", ":+", ":?"), j):
            op = s[j : j + 2]
        elif j < n and s[j] in "-+?":
            op = s[j]
        if not op:
            # ${X#pat}, ${X%pat}, ${X/a/b}...: not evaluated (patterns are a regex-bomb surface)
            end = self._close_brace(s, j)
            self.resolved = False
            return s[start:end], end
        word, k = self._until(s, j + len(op), "}", depth + 1)
        end = k + 1 if k < n else n
        return self._lookup(name, op, word, depth, raw=s[start:end]), end

    @staticmethod
    def _close_brace(s: str, i: int) -> int:
        level = 1
        n = len(s)
        while i < n:
            if s[i] == "{":
                level += 1
            elif s[i] == "}":
                level -= 1
                if level == 0:
                    return i + 1
            i += 1
        return n

    def _lookup(self, name: str, op: str | None, word: str, depth: int, raw: str = "") -> str:
        var = self.scope.get(name)
        if var is not None and var.declared_only:
            if op in (":-", "-"):
                return word
            self.resolved = False
            return raw or "${" + name + "}"
        if var is not None and not var.resolved:
            self.resolved = False
        if op is None:
            return var.value if var is not None else ""
        is_set = var is not None
        non_empty = is_set and var is not None and var.value != ""
        if op == ":-":
            return var.value if non_empty and var is not None else word
        if op == "-":
            return var.value if is_set and var is not None else word
        if op == ":+":
            return word if non_empty else ""
        if op == "+":
            return word if is_set else ""
        return var.value if var is not None else ""  # :? and ? (BuildKit errors when unset)
