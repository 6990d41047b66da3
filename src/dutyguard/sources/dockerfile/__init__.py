"""Dockerfiles (and Containerfiles), read the way BuildKit reads them, strictly and within bounds.

Decisions, each one a place where a Dockerfile could be read two ways:

- **Lines** follow BuildKit's parser: parser directives (``# escape=``, ``# syntax=``) only at the very
  top; ``#`` comments are whole lines, and inside a continuation they (and blank lines) are dropped;
  the escape character (a backslash, or a backtick after ``# escape=``) continues a line unless it
  is itself escaped. ``RUN echo x # y`` keeps ``# y``: there it is the shell's comment, not ours.
- **Heredocs** (``<<EOF``, ``<<-EOF``, quoted delimiters, several on one line) exist for RUN, COPY and
  ADD in shell form only, exactly as in BuildKit (``<< EOF`` with a space is not one). An unterminated
  heredoc makes BuildKit refuse the file and would swallow the rest of it: we refuse it too.
- **Problems BuildKit refuses to build** (an unknown instruction, an instruction before the first FROM
  other than ARG, no FROM at all, malformed ENV or JSON) are recorded on the resource instead of
  aborting: the rest of the file is still checked, and a rule reports each problem, so nothing passes
  silently. Limits, binary data and invalid UTF-8 are errors (:class:`InputError`) naming the file.
- **Substitution** (``$VAR``, ``${VAR}``, ``${VAR:-x}``, ``${VAR:+x}``, ``-``/``+``/``?`` forms) follows
  BuildKit's scoping: ARGs before the first FROM are global and visible to FROM only; a stage sees its
  own ARGs (a bare ``ARG NAME`` re-imports the global default) and ENVs, which a child stage inherits;
  ENV wins over ARG; an ENV's values are expanded against the variables before it. Nothing is run.
  A build argument without a default has no value we can know: it stays ``${NAME}`` and the value is
  marked unresolved, except that ``${NAME:-default}`` takes the default (the build as written).
  Pattern operators (``${X#y}``, ``${X/a/b}``) are left unresolved rather than evaluated.
- **Shell text** of RUN, CMD, ENTRYPOINT and HEALTHCHECK is split into simple commands by a small POSIX
  shell reader: quotes, escapes, ``&& || ; | &``, newlines, subshells, ``$(...)``, backticks, process
  substitution, ``if/for/while/case`` keywords, assignments, redirections, ``sh -c`` / ``su -c``
  strings, and heredoc bodies that a shell executes. Rules match commands, not substrings, so
  ``echo "sudo"`` is not ``sudo``. It is a reader, not an interpreter: aliases, functions and
  ``eval`` strings are not followed. A SHELL other than a POSIX shell is still read this way.
- **Bounds**: file bytes, logical line bytes, instruction count, expanded bytes (per value and per file),
  variable-scope copies, shell nesting depth and wall-clock time are all bounded.

Values are immutable. A finding's path is ``(instruction_index,)``, optionally followed by
``("at", offset)`` into the instruction's logical text or ``("heredoc", h, "at", offset)`` into a heredoc
body, which :meth:`Dockerfile.locate` maps back to the physical line.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Protocol

from dutyguard.core.model import JSONPath, Location
from dutyguard.core.resource import Resource
from dutyguard.core.rule import Violation
from dutyguard.errors import InputError, LimitExceeded
from dutyguard.limits import Limits
from dutyguard.sources.interface import InputFile, Source

# --------------------------------------------------------------------------------------------------
# File names
# --------------------------------------------------------------------------------------------------

_STEMS = ("dockerfile", "containerfile")
_NOT_DOCKERFILES = (".dockerignore", ".md", ".yaml", ".yml", ".json")
"""``Dockerfile.dockerignore`` is BuildKit's per-Dockerfile ignore file, not a Dockerfile."""


def is_dockerfile_name(filename: str) -> bool:
    """``Dockerfile``, ``Containerfile``, ``Dockerfile.*``, ``*.Dockerfile`` (and the Containerfile
    forms), in any letter case."""
    base = os.path.basename(filename).lower()
    if base.endswith(_NOT_DOCKERFILES):
        return False
    return any(base == s or base.startswith(s + ".") or base.endswith("." + s) for s in _STEMS)


# --------------------------------------------------------------------------------------------------
# Value types
# --------------------------------------------------------------------------------------------------

KNOWN_INSTRUCTIONS = frozenset(
    ("ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM")
) | frozenset(
    (
        "HEALTHCHECK",
        "LABEL",
        "MAINTAINER",
        "ONBUILD",
        "RUN",
        "SHELL",
        "STOPSIGNAL",
        "USER",
        "VOLUME",
        "WORKDIR",
    )
)
PLATFORM_ARGS = frozenset(("TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT")) | frozenset(
    ("BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT")
)
"""Automatic build arguments: known to the builder, not to us (unresolved, never empty)."""

SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "yash", "busybox"})
DEFAULT_SHELL = ("/bin/sh", "-c")


@dataclass(frozen=True, slots=True)
class Variable:
    """A build variable (ARG or ENV) as seen at one instruction."""

    value: str
    resolved: bool
    """False when the value depends on a build argument we cannot know."""
    kind: str
    """``arg`` or ``env``."""
    declared_only: bool = False
    """An ARG without a default: unset unless the builder passes ``--build-arg``."""


Scope = Mapping[str, Variable]
EMPTY_SCOPE: Scope = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Flag:
    """An instruction flag: ``--mount=type=cache,target=/x`` is ``Flag("mount", "type=cache,...")``."""

    name: str
    value: str | None
    expanded: str | None
    resolved: bool = True


@dataclass(frozen=True, slots=True)
class KeyValue:
    """One ``key=value`` of ENV, ARG or LABEL."""

    key: str
    value: str | None
    """As written, quotes included; ``None`` for an ARG without a default."""
    expanded: str | None
    """After quote removal and substitution; ``None`` for an ARG without a default."""
    resolved: bool
    offset: int
    """Where the pair starts in :attr:`Instruction.text`."""


@dataclass(frozen=True, slots=True)
class Heredoc:
    name: str
    body: str
    """The content, one ``\\n`` per line (leading tabs removed for ``<<-``)."""
    expand: bool
    """False when the delimiter was quoted (no substitution in the body)."""
    chomp: bool
    fd: int
    start_line: int
    """Line of the first body line (the terminator's line when the body is empty)."""
    end_line: int
    """Line of the terminator."""
    line_starts: tuple[int, ...] = ()
    """Offset in :attr:`body` where each of its lines starts."""

    def line_at(self, offset: int) -> int:
        k = bisect.bisect_right(self.line_starts, offset) - 1
        return min(self.start_line + max(k, 0), self.end_line)


@dataclass(frozen=True, slots=True)
class ShellWord:
    value: str
    """Quote-removed text; expansions kept as written (``$HOME``, ``$(id -u)``)."""
    expanded: str
    """Like :attr:`value`, with ``$NAME``/``${NAME}`` replaced where the build variable is known."""
    raw: str
    offset: int
    quoted: bool
    substituted: bool = False
    """Holds a ``$(...)``/backtick/``<(...)`` the shell runs before the command (its output is unknown)."""


@dataclass(frozen=True, slots=True)
class Invocation:
    """What a command really runs, once wrappers (``sudo``, ``env``, ``xargs``...) are peeled off."""

    program: str
    """Base name of the program (``/usr/bin/curl`` is ``curl``; ``python -m pip`` is ``pip``)."""
    args: tuple[ShellWord, ...]
    wrappers: tuple[str, ...]
    env: tuple[ShellWord, ...]
    """``NAME=value`` words set for the program (command prefix and ``env NAME=value``)."""
    argv: tuple[str, ...] = ()
    """The arguments' expanded values."""


@dataclass(frozen=True, slots=True)
class ShellCommand:
    """One simple command of a shell script."""

    words: tuple[ShellWord, ...]
    assignments: tuple[ShellWord, ...]
    """``NAME=value`` words before the command name (or on their own)."""
    offset: int
    source: int
    """-1: the instruction's text; ``h`` >= 0: the body of heredoc ``h``."""
    pipeline: int
    """Commands joined by ``|`` share a pipeline id."""
    position: int
    """Index within the pipeline (0 is the first command)."""
    connector: str
    """The operator before this command (``""``, ``;``, ``&&``, ``||``, ``|``, ``&``, ``\\n``)."""
    parent: int
    """Index of the command this one is nested in (``$(...)``, ``-c`` string, heredoc), or -1."""
    nesting: str
    """How it is nested: ``$(``, a backtick, ``<(``, ``>(``, ``-c``, ``<<`` (a heredoc run by a shell)."""
    stdin_heredoc: int
    """The instruction heredoc fed to this command's stdin, or -1."""
    outputs: tuple[str, ...]
    """Targets of ``>``, ``>>``, ``&>`` redirections."""
    invocation: Invocation
    """What the command runs once wrappers are peeled off (:func:`unwrap`)."""

    @property
    def name(self) -> str:
        return self.words[0].expanded if self.words else ""


@dataclass(frozen=True, slots=True)
class Instruction:
    index: int
    keyword: str
    """Upper-case (``RUN``); an unknown instruction keeps its own spelling, upper-cased."""
    text: str
    """The logical line: continuations joined, comment and blank continuation lines dropped."""
    original: str
    """The physical lines as written (heredoc bodies excluded: see :attr:`heredocs`)."""
    start_line: int
    end_line: int
    """Last line, heredoc terminators included."""
    stage: int
    """Index of the stage, or -1 for ARGs before the first FROM."""
    flags: tuple[Flag, ...]
    args: str
    """Text after the keyword and flags."""
    args_offset: int
    exec_form: bool
    """JSON array form (``RUN ["a", "b"]``)."""
    words: tuple[str, ...]
    """The arguments as BuildKit splits them for this instruction (quotes removed where it removes them)."""
    expanded: tuple[str, ...]
    """:attr:`words` after ARG/ENV substitution, for the instructions the builder substitutes."""
    resolved: bool
    pairs: tuple[KeyValue, ...]
    heredocs: tuple[Heredoc, ...]
    commands: tuple[ShellCommand, ...]
    scope: Scope
    """Build variables visible here."""
    segments: tuple[tuple[int, int], ...]
    """``(offset in text, physical line)`` for each physical line joined into :attr:`text`."""
    known: bool = True
    sub: Instruction | None = None
    """The instruction an ONBUILD registers."""
    identity_key: str = ""
    """Stage, normalised text and occurrence: stable when lines are inserted above."""

    def flag(self, name: str) -> Flag | None:
        for f in self.flags:
            if f.name == name:
                return f
        return None

    def flag_values(self, name: str) -> tuple[str, ...]:
        return tuple(f.expanded or "" for f in self.flags if f.name == name)

    def line_at(self, offset: int) -> int:
        k = bisect.bisect_right(self.segments, (offset, sys.maxsize)) - 1
        return self.segments[k][1] if k >= 0 else self.start_line


@dataclass(frozen=True, slots=True)
class Stage:
    index: int
    name: str | None
    """``AS name``, lower-cased (stage names are case-insensitive)."""
    image: str
    """The base image after substitution (global ARGs), or the earlier stage's name."""
    image_raw: str
    resolved: bool
    parent: int | None
    """The earlier stage this one builds on (``FROM build``), if any."""
    platform: str | None
    from_index: int
    end_index: int
    """One past the stage's last instruction."""

    @property
    def label(self) -> str:
        return self.name or f"#{self.index}"


@dataclass(frozen=True, slots=True)
class ParseProblem:
    line: int
    message: str
    instruction: int = -1


@dataclass(frozen=True, slots=True, eq=False)
class Dockerfile(Resource):
    file: str
    instructions: tuple[Instruction, ...]
    stages: tuple[Stage, ...]
    problems: tuple[ParseProblem, ...] = ()
    escape: str = "\\"
    syntax: str | None = None
    """The ``# syntax=`` frontend image, if any."""
    syntax_line: int = 0
    global_args: Scope = field(default_factory=lambda: EMPTY_SCOPE)

    # --- Resource -----------------------------------------------------------------------------
    @property
    def source(self) -> str:
        return self.file

    def locate(self, path: JSONPath, container: str | None = None) -> Location:
        ins = self._instruction_of(path)
        if ins is None:
            # ("line", n): a finding about a line that is no instruction (a parser directive)
            line = path[1] if len(path) >= 2 and path[0] == "line" and isinstance(path[1], int) else 1
            return Location(file=self.file, line=line, kind="Dockerfile")
        line = ins.start_line
        rest = path[1:]
        if len(rest) >= 2 and rest[0] == "at" and isinstance(rest[1], int):
            line = ins.line_at(rest[1])
        elif len(rest) >= 2 and rest[0] == "heredoc" and isinstance(rest[1], int):
            docs = ins.heredocs if ins.heredocs else (ins.sub.heredocs if ins.sub else ())
            if 0 <= rest[1] < len(docs):
                doc = docs[rest[1]]
                line = doc.start_line
                if len(rest) >= 4 and rest[2] == "at" and isinstance(rest[3], int):
                    line = doc.line_at(rest[3])
        stage = self.stages[ins.stage] if 0 <= ins.stage < len(self.stages) else None
        return Location(
            file=self.file,
            line=line,
            kind="Dockerfile",
            name=stage.name if stage is not None else None,
            container=container,
            field=ins.keyword,
        )

    def identity(self) -> tuple[str, ...]:
        return ("Dockerfile", self.file)

    def fingerprint_parts(self, violation: Violation) -> tuple[str, ...]:
        # Instruction indexes and lines move when lines are inserted above; the stage, the
        # instruction's own text and its occurrence among identical ones do not.
        ins = self._instruction_of(violation.path)
        return (ins.identity_key if ins is not None else "", violation.key)

    # --- Dockerfile ---------------------------------------------------------------------------
    def _instruction_of(self, path: JSONPath) -> Instruction | None:
        if path and isinstance(path[0], int) and 0 <= path[0] < len(self.instructions):
            return self.instructions[path[0]]
        return None

    @property
    def final_stage(self) -> Stage | None:
        return self.stages[-1] if self.stages else None

    def lineage(self, stage: int) -> tuple[int, ...]:
        """The stage and the earlier stages it builds on, nearest first."""
        out: list[int] = []
        cur: int | None = stage
        while cur is not None and 0 <= cur < len(self.stages) and cur not in out:
            out.append(cur)
            cur = self.stages[cur].parent
        return tuple(out)

    def final_lineage(self) -> tuple[int, ...]:
        """Stages whose instructions end up in the final image."""
        final = self.final_stage
        return self.lineage(final.index) if final is not None else ()

    def stage_instructions(self, stage: int) -> tuple[Instruction, ...]:
        st = self.stages[stage]
        return self.instructions[st.from_index : st.end_index]

    def stage_by_name(self, name: str, before: int | None = None) -> Stage | None:
        """The stage called ``name`` (or with that index), as ``COPY --from`` / ``FROM`` resolve it."""
        limit = len(self.stages) if before is None else before
        if name.isdigit():
            idx = int(name)
            return self.stages[idx] if idx < limit else None
        low = name.lower()
        for st in reversed(self.stages[:limit]):
            if st.name == low:
                return st
        return None


# --------------------------------------------------------------------------------------------------
# Wrappers: what a command line really runs
# --------------------------------------------------------------------------------------------------

_WRAPPER_VALUE_OPTS: Mapping[str, frozenset[str]] = {
    "sudo": frozenset({"-u", "-g", "-p", "-C", "-U", "-r", "-t", "-T", "-D", "-h", "--user", "--group"}),
    "doas": frozenset({"-u", "-C"}),
    "env": frozenset({"-u", "-C", "--unset", "--chdir", "-S", "--split-string"}),
    "nice": frozenset({"-n", "--adjustment"}),
    "ionice": frozenset({"-c", "-n", "-p", "--class", "--classdata"}),
    "stdbuf": frozenset({"-i", "-o", "-e"}),
    "timeout": frozenset({"-s", "-k", "--signal", "--kill-after"}),
    "xargs": frozenset({"-I", "-n", "-P", "-d", "-E", "-L", "-s", "-a", "--max-args", "--delimiter"}),
    "exec": frozenset({"-a"}),
    "nohup": frozenset(),
    "command": frozenset(),
    "builtin": frozenset(),
    "time": frozenset({"-f", "-o"}),
    "unbuffer": frozenset(),
    "setsid": frozenset(),
    "tini": frozenset(),
    "dumb-init": frozenset(),
}
_WRAPPER_POSITIONALS = {"timeout": 1, "chroot": 1, "gosu": 1, "su-exec": 1, "chpst": 0}
"""Wrappers that take fixed positional arguments before the command (``timeout 10 cmd``)."""
_PYTHON = re.compile(r"python[0-9.]*$")


def _basename(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def unwrap(words: Sequence[ShellWord], assignments: Sequence[ShellWord] = ()) -> Invocation:
    """Peel ``sudo``, ``env``, ``nohup``, ``xargs``... and ``busybox``/``python -m`` off a command line."""
    wrappers: list[str] = []
    env: list[ShellWord] = list(assignments)
    i = 0
    n = len(words)
    for _ in range(16):  # wrappers of wrappers, bounded
        if i >= n:
            break
        prog = _basename(words[i].expanded)
        if prog == "busybox" and i + 1 < n:
            wrappers.append(prog)
            i += 1
            continue
        if prog in _WRAPPER_VALUE_OPTS or prog in _WRAPPER_POSITIONALS:
            wrappers.append(prog)
            i += 1
            value_opts = _WRAPPER_VALUE_OPTS.get(prog, frozenset())
            while i < n:
                w = words[i].expanded
                if w == "--":
                    i += 1
                    break
                if prog == "env" and "=" in w and not w.startswith("-"):
                    env.append(words[i])
                    i += 1
                    continue
                if not w.startswith("-") or w == "-":
                    break
                i += 2 if w in value_opts else 1
            for _ in range(_WRAPPER_POSITIONALS.get(prog, 0)):
                if i < n:
                    i += 1
            continue
        break
    if i >= n:
        return Invocation("", (), tuple(wrappers), tuple(env))
    program = _basename(words[i].expanded)
    args = tuple(words[i + 1 :])
    if _PYTHON.match(program) and len(args) >= 2 and args[0].expanded == "-m":
        wrappers.append(program)
        program, args = _basename(args[1].expanded), args[2:]
    return Invocation(program, args, tuple(wrappers), tuple(env), tuple(w.expanded for w in args))


# --------------------------------------------------------------------------------------------------
# Budget
# --------------------------------------------------------------------------------------------------

_MAX_NESTING = 32
"""Depth of ``$(``/subshell/``sh -c`` nesting we follow; deeper is hostile, not a Dockerfile."""
_MAX_SCOPE_ENTRIES = 1_000_000
"""Variables copied into per-instruction scopes across one file."""


class _Budget:
    __slots__ = ("deadline", "expanded", "limits", "max_expanded", "name", "scope_entries", "ticks")

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self.deadline = time.monotonic() + limits.file_seconds
        self.expanded = 0
        # A Dockerfile's substitutions may legitimately repeat values; four times the file limit
        # is far beyond any real file and still cheap.
        self.max_expanded = 4 * limits.max_file_bytes
        self.scope_entries = 0
        self.ticks = 0

    def fail(self, line: int, reason: str) -> LimitExceeded:
        return LimitExceeded(self.name, f"line {line}: {reason}" if line > 0 else reason)

    def clock(self, line: int) -> None:
        if time.monotonic() > self.deadline:
            raise self.fail(line, f"reading took longer than {self.limits.file_seconds} s")

    def value(self, size: int, line: int) -> None:
        if size > self.limits.max_line_bytes:
            raise self.fail(
                line, f"substitution expands beyond {self.limits.max_line_bytes} bytes (expansion bomb?)"
            )

    def spend(self, size: int, line: int) -> None:
        self.expanded += size
        if self.expanded > self.max_expanded:
            raise self.fail(line, f"substitutions expand to more than {self.max_expanded} bytes in total")


# --------------------------------------------------------------------------------------------------
# Words and substitution (BuildKit's lexer)
# --------------------------------------------------------------------------------------------------

_NAME_START = re.compile(r"[A-Za-z_]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WS = re.compile(r"[\t\v\f\r ]+")
_HEREDOC_WORD = re.compile(r"^(\d*)<<(-?)([^<]*)$")
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_KNOWN_DIRECTIVES = frozenset({"escape", "syntax", "check"})


def _split_words(text: str, escape: str) -> list[tuple[str, int]]:
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


class _Expander:
    """BuildKit's word processing: quote removal and ``$`` substitution against a scope."""

    __slots__ = ("budget", "escape", "line", "quotes", "resolved", "scope")

    def __init__(self, scope: Scope, escape: str, budget: _Budget, line: int, quotes: bool = True) -> None:
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
        if depth > _MAX_NESTING:
            raise self.budget.fail(self.line, f"substitutions nested deeper than {_MAX_NESTING}")
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


# --------------------------------------------------------------------------------------------------
# Shell reader
# --------------------------------------------------------------------------------------------------

_OPERATOR_TEXT = ";;& &>> <<< <<- && || ;; ;& |& &> >> << <> >& <& >| | & ; < > ( )"
_OPERATORS = tuple(sorted(_OPERATOR_TEXT.split(" "), key=len, reverse=True))
"""Longest first, so that ``&&`` is not read as two ``&``."""
_OPS_BY_CHAR = {c: tuple(op for op in _OPERATORS if op[0] == c) for c in ";&|<>()"}
_OP_CHARS = frozenset(";&|<>()")
_SEPARATORS = frozenset({"&&", "||", ";", ";;", ";&", ";;&", "&", "|", "|&"})
_OUTPUT_REDIRECTS = frozenset({">", ">>", "&>", "&>>", ">|", "<>"})
_SKIP_KEYWORDS = frozenset(
    {"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}", "time", "coproc"}
)
_PLAIN = re.compile(r"[^\s;&|<>()\\'\"$`]+")
_WORD_END = frozenset(" \t\n\r\f\v;&|<>()")
_FD_PREFIX = re.compile(r"\d+(?=[<>])")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=")
_SPECIAL_PARAMS = frozenset("@*#?$!-0123456789")


@dataclass(slots=True)
class _Cmd:
    words: list[ShellWord]
    assigns: list[ShellWord]
    offset: int
    source: int
    pipeline: int
    position: int
    connector: str
    seq: int
    parent: _Cmd | None = None
    nesting: str = ""
    stdin_heredoc: int = -1
    outputs: list[str] = field(default_factory=list)
    inv: Invocation | None = None


@dataclass(slots=True)
class _Ctx:
    text: str
    end: int
    source: int
    multiline: bool
    override: int | None
    depth: int


class _ShellReader:
    """Splits shell text into simple commands. Never executes, never fails on odd syntax."""

    def __init__(self, budget: _Budget, scope: Scope, line: int, heredoc_names: Sequence[str]) -> None:
        self.budget = budget
        self.scope = scope
        self.line = line
        self.all: list[_Cmd] = []
        self.pipelines = 0
        self.seq = 0
        self.heredoc_names = tuple(heredoc_names)
        self.heredoc_next = 0

    # --- entry points -------------------------------------------------------------------------
    def script(
        self,
        text: str,
        start: int,
        *,
        source: int,
        multiline: bool,
        depth: int = 0,
        override: int | None = None,
        parent: _Cmd | None = None,
        nesting: str = "",
    ) -> None:
        if depth > _MAX_NESTING:
            raise self.budget.fail(self.line, f"shell commands nested deeper than {_MAX_NESTING}")
        mark = len(self.all)
        cx = _Ctx(text, len(text), source, multiline, override, depth)
        self._list(cx, start, None)
        self._adopt(mark, len(self.all), parent, nesting)

    def argv(self, words: Sequence[str], offset: int, source: int) -> None:
        """An exec-form command (``RUN ["a", "b"]``): one command, no shell involved."""
        sw = [ShellWord(w, w, w, offset, False) for w in words]
        self.pipelines += 1
        self.seq += 1
        self.all.append(_Cmd(sw, [], offset, source, self.pipelines, 0, "", self.seq))

    def finish(self) -> tuple[ShellCommand, ...]:
        # A bare redirection ("done < list", "> file") runs no program: not a command.
        kept = (c for c in self.all if c.words or c.assigns)
        ordered = sorted(kept, key=lambda c: (c.source + 1, c.offset, c.seq))
        index = {id(c): i for i, c in enumerate(ordered)}
        return tuple(
            ShellCommand(
                words=tuple(c.words),
                assignments=tuple(c.assigns),
                offset=c.offset,
                source=c.source,
                pipeline=c.pipeline,
                position=c.position,
                connector=c.connector,
                parent=index.get(id(c.parent), -1),
                nesting=c.nesting,
                stdin_heredoc=c.stdin_heredoc,
                outputs=tuple(c.outputs),
                invocation=c.inv if c.inv is not None else unwrap(c.words, c.assigns),
            )
            for c in ordered
        )

    # --- helpers ------------------------------------------------------------------------------
    def _adopt(self, start: int, end: int, parent: _Cmd | None, nesting: str) -> None:
        if parent is None:
            return
        for c in self.all[start:end]:
            if c.parent is None and c is not parent:
                c.parent = parent
                c.nesting = nesting

    def _off(self, cx: _Ctx, i: int) -> int:
        return cx.override if cx.override is not None else i

    def _list(self, cx: _Ctx, i: int, closer: str | None) -> int:
        """Read commands from ``i`` until ``closer`` (consumed) or the end; return the position after."""
        t, end = cx.text, cx.end
        cmd: _Cmd | None = None
        connector = ""
        last_pipeline, last_position = 0, -1
        heredocs: list[tuple[str, bool]] = []
        subs: list[tuple[str, int, int]] = []
        header = False  # for/select word list: not commands
        case_stack: list[bool] = []  # True while reading a case pattern
        case_header = False
        skip_name = False  # after "function"

        def start_cmd(at: int) -> _Cmd:
            nonlocal last_pipeline, last_position
            if connector in ("|", "|&") and last_position >= 0:
                pipeline, position = last_pipeline, last_position + 1
            else:
                self.pipelines += 1
                pipeline, position = self.pipelines, 0
            last_pipeline, last_position = pipeline, position
            self.seq += 1
            return _Cmd([], [], self._off(cx, at), cx.source, pipeline, position, connector, self.seq)

        def finish() -> None:
            nonlocal cmd
            if cmd is not None:
                for nesting, a, b in subs:
                    self._adopt(a, b, cmd, nesting)
                self.all.append(cmd)
                cmd = None
            subs.clear()

        budget = self.budget
        while i < end:
            budget.ticks += 1
            if not budget.ticks & 0xFFF:
                budget.clock(self.line)
            c = t[i]
            if c in " \t\r\f\v":
                i += 1
                continue
            if c == "\\" and i + 1 < end and t[i + 1] == "\n":
                i += 2
                continue
            if c == "\n":
                if cmd is not None or connector not in ("&&", "||", "|", "|&"):
                    finish()
                    connector = "\n"
                header = False
                i += 1
                if heredocs and cx.multiline:
                    i = self._skip_bodies(t, i, end, heredocs)
                    heredocs.clear()
                continue
            if c == "#" and (i == 0 or t[i - 1] in " \t\n;&|()"):
                j = t.find("\n", i, end)
                i = end if j < 0 else j
                continue
            if closer is not None and c == closer and not case_stack:
                finish()
                return i + 1
            if case_stack and case_stack[-1]:
                # inside a case pattern: everything up to ")" is the pattern
                if c == ")":
                    case_stack[-1] = False
                    i += 1
                    continue
                if c in _OP_CHARS:
                    i += 1
                    continue
                word, i = self._word(cx, i, subs)
                if word.value == "esac" and not word.quoted:
                    case_stack.pop()
                continue
            if c in "<>" and i + 1 < end and t[i + 1] == "(":
                if cmd is None:
                    cmd = start_cmd(i)
                word, i = self._word(cx, i, subs)
                cmd.words.append(word)
                continue
            op = self._operator(t, i, end)
            if op is not None:
                if op in _SEPARATORS:
                    finish()
                    connector = op
                    header = False
                    i += len(op)
                    if op in (";;", ";&", ";;&") and case_stack:
                        case_stack[-1] = True
                    continue
                if op == "(":
                    if cmd is not None and cmd.words:
                        j = i + 1
                        while j < end and t[j] in " \t":
                            j += 1
                        if j < end and t[j] == ")":  # name() { ... }: a function definition
                            cmd = None
                            subs.clear()
                            i = j + 1
                            continue
                    finish()
                    if cx.depth + 1 > _MAX_NESTING:
                        raise self.budget.fail(self.line, f"subshells nested deeper than {_MAX_NESTING}")
                    inner = _Ctx(t, end, cx.source, cx.multiline, cx.override, cx.depth + 1)
                    i = self._list(inner, i + 1, ")")
                    continue
                if op == ")":
                    i += 1
                    continue
                # a redirection: the next word is its target, not an argument
                i += len(op)
                while i < end and t[i] in " \t":
                    i += 1
                if cmd is None:
                    cmd = start_cmd(i)
                if i >= end or t[i] in "\n;&|()":
                    continue
                target, i = self._word(cx, i, subs)
                if op in ("<<", "<<-"):
                    if cx.multiline:
                        heredocs.append((target.value, op == "<<-"))
                    elif self.heredoc_next < len(self.heredoc_names) and (
                        self.heredoc_names[self.heredoc_next] == target.value
                    ):
                        cmd.stdin_heredoc = self.heredoc_next
                        self.heredoc_next += 1
                elif op in _OUTPUT_REDIRECTS:
                    cmd.outputs.append(target.expanded)
                continue
            m = _FD_PREFIX.match(t, i)
            if m is not None:
                i = m.end()
                continue
            at = i
            word, i = self._word(cx, i, subs)
            at_command = cmd is None or (not cmd.words and not cmd.assigns)
            if header:
                continue
            if case_header:
                if word.value == "in" and not word.quoted:
                    case_header = False
                    case_stack.append(True)
                continue
            if skip_name:
                skip_name = False
                continue
            if at_command and not word.quoted:
                if word.value in _SKIP_KEYWORDS or (word.value == "esac" and case_stack):
                    if word.value == "esac" and case_stack:
                        case_stack.pop()
                    continue
                if word.value in ("for", "select"):
                    header = True
                    continue
                if word.value == "case":
                    case_header = True
                    continue
                if word.value == "function":
                    skip_name = True
                    continue
            if cmd is None:
                cmd = start_cmd(at)
            if not cmd.words and _ASSIGNMENT.match(word.raw):
                cmd.assigns.append(word)
            else:
                cmd.words.append(word)
        finish()
        return end

    @staticmethod
    def _operator(t: str, i: int, end: int) -> str | None:
        for op in _OPS_BY_CHAR.get(t[i], ()):
            if t.startswith(op, i) and i + len(op) <= end:
                return op
        return None

    @staticmethod
    def _skip_bodies(t: str, i: int, end: int, heredocs: Sequence[tuple[str, bool]]) -> int:
        for delim, strip_tabs in heredocs:
            while i < end:
                j = t.find("\n", i, end)
                line_end = end if j < 0 else j
                line = t[i:line_end].rstrip("\r")
                i = end if j < 0 else j + 1
                if (line.lstrip("\t") if strip_tabs else line) == delim:
                    break
        return i

    def _lookup(self, name: str) -> str | None:
        var = self.scope.get(name)
        if var is None or not var.resolved or var.declared_only:
            return None
        return var.value

    def _word(self, cx: _Ctx, i: int, subs: list[tuple[str, int, int]]) -> tuple[ShellWord, int]:
        """One shell word from ``i``: quotes removed, substitutions read (and their commands kept)."""
        t, end = cx.text, cx.end
        start = i
        m = _PLAIN.match(t, i, end)
        if m is not None and (m.end() >= end or t[m.end()] in _WORD_END):
            w = m.group(0)  # the common case: no quotes, no expansions
            return ShellWord(w, w, w, self._off(cx, start), False), m.end()
        val: list[str] = []
        exp: list[str] = []
        size = 0
        quoted = False
        subs_before = len(subs)

        def put(v: str, e: str | None = None, /) -> None:
            nonlocal size
            val.append(v)
            e = v if e is None else e
            exp.append(e)
            size += len(e)
            if size > self.budget.limits.max_line_bytes:
                self.budget.value(size, self.line)

        if t[i] in "<>" and i + 1 < end and t[i + 1] == "(":
            kind = t[i : i + 2]
            j = self._substitute(cx, i + 2, ")", kind, subs)
            put(t[i:j])
            i = j
        while i < end:
            c = t[i]
            if c in " \t\n\r\f\v" or c in _OP_CHARS:
                break
            if c == "\\":
                if i + 1 < end:
                    if t[i + 1] != "\n":
                        put(t[i + 1])
                        quoted = True
                    i += 2
                else:
                    i += 1
            elif c == "'":
                j = t.find("'", i + 1, end)
                j = end if j < 0 else j
                put(t[i + 1 : j])
                quoted = True
                i = j + 1
            elif c == '"':
                quoted = True
                i += 1
                while i < end and t[i] != '"':
                    d = t[i]
                    if d == "\\" and i + 1 < end and t[i + 1] in '$`"\\\n':
                        if t[i + 1] != "\n":
                            put(t[i + 1])
                        i += 2
                    elif d == "$":
                        i = self._dollar(cx, i, put, subs)
                    elif d == "`":
                        i = self._backtick(cx, i, put, subs)
                    else:
                        j = i + 1
                        while j < end and t[j] not in '"\\$`':
                            j += 1
                        put(t[i:j])
                        i = j
                i += 1
            elif c == "$":
                if i + 1 < end and t[i + 1] == "'":
                    j = i + 2
                    while j < end and t[j] != "'":
                        j += 2 if t[j] == "\\" else 1
                    put(t[i + 2 : min(j, end)])
                    quoted = True
                    i = j + 1
                else:
                    i = self._dollar(cx, i, put, subs)
            elif c == "`":
                i = self._backtick(cx, i, put, subs)
            else:
                j = i + 1
                while j < end and t[j] not in " \t\n\r\f\v;&|<>()\\'\"$`":
                    j += 1
                put(t[i:j])
                i = j
        value = "".join(val)
        expanded = "".join(exp)
        self.budget.spend(len(expanded), self.line)
        word = ShellWord(value, expanded, t[start:i], self._off(cx, start), quoted, len(subs) > subs_before)
        return word, min(i, end)

    def _substitute(self, cx: _Ctx, i: int, closer: str, kind: str, subs: list[tuple[str, int, int]]) -> int:
        if cx.depth + 1 > _MAX_NESTING:
            raise self.budget.fail(self.line, f"command substitutions nested deeper than {_MAX_NESTING}")
        mark = len(self.all)
        inner = _Ctx(cx.text, cx.end, cx.source, cx.multiline, cx.override, cx.depth + 1)
        j = self._list(inner, i, closer)
        subs.append((kind, mark, len(self.all)))
        return j

    def _dollar(self, cx: _Ctx, i: int, put: _Put, subs: list[tuple[str, int, int]]) -> int:
        t, end = cx.text, cx.end
        if i + 1 >= end:
            put("$")
            return i + 1
        c = t[i + 1]
        if t.startswith("$((", i):
            j, level = i + 3, 2
            while j < end and level > 0:
                if t[j] == "(":
                    level += 1
                elif t[j] == ")":
                    level -= 1
                j += 1
            put(t[i:j])
            return j
        if c == "(":
            j = self._substitute(cx, i + 2, ")", "$(", subs)
            put(t[i:j])
            return j
        if c == "{":
            j, level = i + 2, 1
            while j < end and level > 0:
                if t[j] == "{":
                    level += 1
                elif t[j] == "}":
                    level -= 1
                j += 1
            raw = t[i:j]
            inner = raw[2:-1]
            known = self._lookup(inner) if _NAME.fullmatch(inner) else None
            put(raw, known)
            return j
        m = _NAME.match(t, i + 1)
        if m is not None:
            raw = t[i : m.end()]
            put(raw, self._lookup(m.group(0)))
            return m.end()
        if c in _SPECIAL_PARAMS:
            put(t[i : i + 2])
            return i + 2
        put("$")
        return i + 1

    def _backtick(self, cx: _Ctx, i: int, put: _Put, subs: list[tuple[str, int, int]]) -> int:
        t, end = cx.text, cx.end
        j = i + 1
        while j < end and t[j] != "`":
            j += 2 if t[j] == "\\" else 1
        j = min(j, end)
        inner = re.sub(r"\\([`$\\])", r"\1", t[i + 1 : j])
        if cx.depth + 1 > _MAX_NESTING:
            raise self.budget.fail(self.line, f"command substitutions nested deeper than {_MAX_NESTING}")
        mark = len(self.all)
        sub_cx = _Ctx(inner, len(inner), cx.source, cx.multiline, self._off(cx, i), cx.depth + 1)
        self._list(sub_cx, 0, None)
        subs.append(("`", mark, len(self.all)))
        put(t[i : j + 1])
        return j + 1


class _Put(Protocol):
    """The shell reader's ``put(value, expanded)`` callback (``expanded`` None: same as value)."""

    def __call__(self, value: str, expanded: str | None = None, /) -> None: ...


def _shell_c_script(inv: Invocation) -> ShellWord | None:
    """The command string of ``sh -c '...'`` / ``su -c '...'`` / ``runuser -c``, if any."""
    args = inv.args
    if inv.program in ("su", "runuser"):
        for k, w in enumerate(args[:-1]):
            if w.expanded in ("-c", "--command"):
                return args[k + 1]
            if w.expanded.startswith("--command="):
                return ShellWord(w.value[10:], w.expanded[10:], w.raw, w.offset, w.quoted)
        return None
    if inv.program not in SHELLS:
        return None
    has_c = False
    skip = False
    for w in args:
        e = w.expanded
        if skip:
            skip = False
            continue
        if e in ("-o", "+o", "-O", "+O", "--rcfile", "--init-file"):
            skip = True
            continue
        if e.startswith("--"):
            continue
        if e.startswith("-") and len(e) > 1:
            if "c" in e[1:]:
                has_c = True
            continue
        if e.startswith("+"):
            continue
        return w if has_c else None
    return None


def _is_shell_reading_stdin(inv: Invocation) -> bool:
    if inv.program not in SHELLS:
        return False
    return all(not (w.expanded.startswith("-") and "c" in w.expanded[1:]) for w in inv.args[:4])


def _shebang_is_shell(body: str) -> bool:
    if not body.startswith("#!"):
        return True
    first = body.split("\n", 1)[0][2:].strip().split()
    if not first:
        return True
    prog = _basename(first[0])
    if prog == "env" and len(first) > 1:
        prog = _basename(first[1])
    return prog in SHELLS


def read_shell(
    text: str,
    start: int,
    *,
    scope: Scope = EMPTY_SCOPE,
    heredocs: Sequence[Heredoc] = (),
    script_heredoc: int = -1,
    exec_words: Sequence[str] | None = None,
    limits: Limits | None = None,
    name: str = "-",
    line: int = 0,
    budget: _Budget | None = None,
) -> tuple[ShellCommand, ...]:
    """The simple commands of a RUN-like instruction (public for tests and for other sources)."""
    b = budget or _Budget(name, limits or Limits())
    reader = _ShellReader(b, scope, line, [h.name for h in heredocs])
    if exec_words is not None:
        reader.argv(exec_words, start, -1)
    elif script_heredoc >= 0:
        body = heredocs[script_heredoc].body
        if _shebang_is_shell(body):
            reader.script(body, 0, source=script_heredoc, multiline=True)
    else:
        reader.script(text, start, source=-1, multiline=False)
    # Follow what a shell runs: "sh -c 'script'", and heredoc bodies fed to a shell's stdin.
    done = 0
    while done < len(reader.all):
        cmd = reader.all[done]
        done += 1
        if not done & 0xFFF:
            b.clock(line)
        inv = cmd.inv = unwrap(cmd.words, cmd.assigns)
        script = _shell_c_script(inv)
        depth = _nesting_depth(cmd)
        if script is not None and not script.substituted:
            # A $(...) in the string was already read as part of the outer command; what the
            # inner shell then runs is its output, which nobody can know before the build.
            reader.script(
                script.value,
                0,
                source=cmd.source,
                multiline=True,
                depth=depth + 1,
                override=script.offset,
                parent=cmd,
                nesting="-c",
            )
        elif 0 <= cmd.stdin_heredoc < len(heredocs) and _is_shell_reading_stdin(inv):
            reader.script(
                heredocs[cmd.stdin_heredoc].body,
                0,
                source=cmd.stdin_heredoc,
                multiline=True,
                depth=depth + 1,
                parent=cmd,
                nesting="<<",
            )
    return reader.finish()


def _nesting_depth(cmd: _Cmd) -> int:
    depth = 0
    cur = cmd.parent
    while cur is not None and depth <= _MAX_NESTING:
        depth += 1
        cur = cur.parent
    return depth


# --------------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------------


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


def _maybe_json(args: str) -> tuple[tuple[str, ...] | None, str | None]:
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


def _extract_flags(text: str, pos: int) -> tuple[list[tuple[str, int]], int]:
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


class _Parser:
    def __init__(self, f: InputFile, text: str, limits: Limits) -> None:
        self.name = f.name
        self.limits = limits
        self.budget = _Budget(f.name, limits)
        self.lines = [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]
        self.escape = "\\"
        self.syntax: str | None = None
        self.syntax_line = 0
        self.problems: list[ParseProblem] = []
        self.instructions: list[Instruction] = []
        self.stages: list[Stage] = []
        self.global_args: dict[str, Variable] = {
            name: Variable("${" + name + "}", False, "arg", declared_only=False) for name in PLATFORM_ARGS
        }
        self.args: dict[str, Variable] = {}
        self.env: dict[str, Variable] = {}
        self.stage_env: list[dict[str, Variable]] = []
        self.stage_shell: list[tuple[str, ...]] = []
        self.shell: tuple[str, ...] = DEFAULT_SHELL
        self.scope: Scope = MappingProxyType(dict(self.global_args))
        self.scope_dirty = False
        self.seen_keys: dict[str, int] = {}

    # --- errors -------------------------------------------------------------------------------
    def error(self, line: int, reason: str) -> InputError:
        return InputError(self.name, f"line {line}: {reason}")

    def problem(self, line: int, message: str, index: int = -1) -> None:
        if len(self.problems) < 1000:
            self.problems.append(ParseProblem(line, message, index))

    def check_length(self, text: str, line: int) -> None:
        limit = self.limits.max_line_bytes
        if len(text) > limit // 4 and len(text.encode("utf-8", "surrogatepass")) > limit:
            raise LimitExceeded(
                self.name, f"line {line}: logical line longer than {limit} bytes (the limit for Dockerfiles)"
            )

    # --- reading ------------------------------------------------------------------------------
    def parse(self) -> Dockerfile:
        lines = self.lines
        n = len(lines)
        i = self._directives()
        max_line = self.limits.max_line_bytes
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
            if len(self.instructions) >= self.limits.max_instructions:
                raise LimitExceeded(
                    self.name, f"line {start}: more than {self.limits.max_instructions} instructions"
                )
            i = self._instruction(text, original, start, i, tuple(segments))
        if not self.stages:
            self.problem(1, "no FROM instruction")
        self._close_stage()
        return Dockerfile(
            file=self.name,
            instructions=tuple(self.instructions),
            stages=tuple(self.stages),
            problems=tuple(self.problems),
            escape=self.escape,
            syntax=self.syntax,
            syntax_line=self.syntax_line,
            global_args=MappingProxyType(dict(self.global_args)),
        )

    def _directives(self) -> int:
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

    def _heredoc_specs(self, text: str) -> list[tuple[str, bool, bool, int]]:
        specs: list[tuple[str, bool, bool, int]] = []
        for word, _ in _split_words(text, "\\"):
            m = _HEREDOC_WORD.match(word)
            if m is None or not m.group(3):
                continue
            rest = m.group(3)
            words = _split_words(rest, "\\")
            if len(words) != 1:
                continue
            name = _Expander(EMPTY_SCOPE, "\\", self.budget, 0).word(rest)
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
                    raise self.error(
                        start, f"unterminated heredoc <<{name} (no line {name!r} before the end of the file)"
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

    # --- one instruction ----------------------------------------------------------------------
    def _instruction(
        self, text: str, original: str, start: int, i: int, segments: tuple[tuple[int, int], ...]
    ) -> int:
        index = len(self.instructions)
        m = re.match(r"\S+", text)
        keyword_raw = m.group(0) if m else ""
        keyword = keyword_raw.upper()
        heredocs: list[Heredoc] = []
        if keyword in ("RUN", "COPY", "ADD") or (keyword == "ONBUILD" and self._onbuild_heredocs(text)):
            specs = self._heredoc_specs(text)
            if specs and not self._is_exec_form(text, len(keyword_raw)):
                heredocs, i = self._read_heredocs(specs, start, i)
        ins = self._build(text, original, start, i, segments, index, tuple(heredocs), top=True)
        self.instructions.append(ins)
        return i

    @staticmethod
    def _onbuild_heredocs(text: str) -> bool:
        parts = text.split(None, 2)
        return len(parts) > 1 and parts[1].upper() in ("RUN", "COPY", "ADD")

    @staticmethod
    def _is_exec_form(text: str, after: int) -> bool:
        _, pos = _extract_flags(text, after)
        elements, _ = _maybe_json(text[pos:])
        return elements is not None

    def _build(
        self,
        text: str,
        original: str,
        start: int,
        end_line: int,
        segments: tuple[tuple[int, int], ...],
        index: int,
        heredocs: tuple[Heredoc, ...],
        *,
        top: bool,
        base: int = 0,
    ) -> Instruction:
        m = re.match(r"\s*(\S+)", text[base:])
        keyword_raw = m.group(1) if m else ""
        keyword = keyword_raw.upper()
        after = base + (m.end() if m else 0)
        raw_flags, args_pos = _extract_flags(text, after)
        args = text[args_pos:].strip()
        while args_pos < len(text) and text[args_pos].isspace():
            args_pos += 1
        known = keyword in KNOWN_INSTRUCTIONS
        if not known:
            self.problem(start, f"unknown instruction: {keyword_raw}", index)
        elif top and keyword not in ("FROM", "ARG") and not self.stages:
            self.problem(start, f"{keyword} before the first FROM (only ARG may come first)", index)

        scope = self._scope() if top else EMPTY_SCOPE
        from_scope: Scope = MappingProxyType(self.global_args) if keyword == "FROM" else scope
        flags = tuple(self._flag(w, from_scope, start) for w, _ in raw_flags)

        exec_form = False
        words: tuple[str, ...] = ()
        expanded: tuple[str, ...] = ()
        resolved = True
        pairs: tuple[KeyValue, ...] = ()
        commands: tuple[ShellCommand, ...] = ()
        sub: Instruction | None = None

        if keyword == "FROM":
            words = tuple(w for w in _WS.split(args) if w)
            exp = _Expander(from_scope, self.escape, self.budget, start)
            expanded = tuple(exp.word(w) for w in words[:1]) + words[1:]
            resolved = exp.resolved
        elif keyword in ("ARG", "ENV", "LABEL"):
            pairs = self._pairs(keyword, args, args_pos, scope, start, index)
            words = tuple(p.key if p.value is None else f"{p.key}={p.value}" for p in pairs)
            expanded = tuple(p.key if p.expanded is None else f"{p.key}={p.expanded}" for p in pairs)
            resolved = all(p.resolved for p in pairs)
        elif keyword in ("RUN", "CMD", "ENTRYPOINT", "SHELL"):
            elements, bad = _maybe_json(args)
            if bad:
                self.problem(start, bad, index)
            exec_form = elements is not None
            words = elements if elements is not None else (args,)
            expanded = words
            if keyword == "SHELL" and not exec_form:
                self.problem(start, "SHELL requires the arguments to be in JSON form", index)
            if keyword != "SHELL" and (args or exec_form):
                commands = self._commands(text, args_pos, elements, heredocs, scope, start)
        elif keyword == "HEALTHCHECK":
            hm = re.match(r"(\S+)\s*", args)
            kind = hm.group(1).upper() if hm else ""
            rest_pos = args_pos + (hm.end() if hm else 0)
            rest = text[rest_pos:].strip()
            if kind == "CMD":
                elements, bad = _maybe_json(rest)
                if bad:
                    self.problem(start, bad, index)
                exec_form = elements is not None
                words = ("CMD", *(elements if elements is not None else (rest,)))
                commands = self._commands(text, rest_pos, elements, (), scope, start)
            else:
                words = (kind,) if kind else ()
                if kind != "NONE":
                    self.problem(start, "HEALTHCHECK needs CMD or NONE", index)
            expanded = words
        elif keyword in ("COPY", "ADD", "VOLUME"):
            elements, bad = _maybe_json(args)
            if bad:
                self.problem(start, bad, index)
            exec_form = elements is not None
            words = elements if elements is not None else tuple(w for w in _WS.split(args) if w)
            exp = _Expander(scope, self.escape, self.budget, start)
            expanded = tuple(w if _HEREDOC_WORD.match(w) else exp.word(w) for w in words)
            resolved = exp.resolved
        elif keyword == "EXPOSE":
            words = tuple(w for w in _WS.split(args) if w)
            exp = _Expander(scope, self.escape, self.budget, start)
            expanded = tuple(exp.word(w) for w in words)
            resolved = exp.resolved
        elif keyword in ("USER", "WORKDIR", "STOPSIGNAL"):
            words = (args,) if args else ()
            exp = _Expander(scope, self.escape, self.budget, start)
            expanded = tuple(exp.word(w) for w in words)
            resolved = exp.resolved
        elif keyword == "MAINTAINER":
            words = expanded = (args,) if args else ()
        elif keyword == "ONBUILD":
            words = expanded = (args,) if args else ()
            if args:
                inner_kw = args.split(None, 1)[0].upper()
                if inner_kw in ("ONBUILD", "FROM", "MAINTAINER"):
                    self.problem(start, f"{inner_kw} isn't allowed as an ONBUILD trigger", index)
                sub = self._build(
                    text, original, start, end_line, segments, index, heredocs, top=False, base=args_pos
                )

        ins = Instruction(
            index=index,
            keyword=keyword,
            text=text,
            original=original,
            start_line=start,
            end_line=end_line,
            stage=len(self.stages) - 1 if keyword != "FROM" else len(self.stages),
            flags=flags,
            args=args,
            args_offset=args_pos,
            exec_form=exec_form,
            words=words,
            expanded=expanded,
            resolved=resolved,
            pairs=pairs,
            heredocs=heredocs,
            commands=commands,
            scope=scope if keyword != "FROM" else MappingProxyType(dict(self.global_args)),
            segments=segments,
            known=known,
            sub=sub,
        )
        if top:
            ins = self._effects(ins)
        return ins

    def _flag(self, word: str, scope: Scope, line: int) -> Flag:
        name, sep, value = word[2:].partition("=")
        if not sep:
            return Flag(name, None, None)
        exp = _Expander(scope, self.escape, self.budget, line, quotes=False)
        expanded = exp.word(value)
        return Flag(name, value, expanded, exp.resolved)

    def _commands(
        self,
        text: str,
        pos: int,
        elements: tuple[str, ...] | None,
        heredocs: Sequence[Heredoc],
        scope: Scope,
        line: int,
    ) -> tuple[ShellCommand, ...]:
        script_heredoc = -1
        if elements is None and heredocs:
            words = _split_words(text[pos:], "\\")
            if len(words) == 1 and _HEREDOC_WORD.match(words[0][0]):
                script_heredoc = 0
        return read_shell(
            text,
            pos,
            scope=scope,
            heredocs=heredocs,
            script_heredoc=script_heredoc,
            exec_words=elements,
            line=line,
            budget=self.budget,
        )

    def _pairs(
        self, keyword: str, args: str, args_pos: int, scope: Scope, line: int, index: int
    ) -> tuple[KeyValue, ...]:
        words = _split_words(args, self.escape)
        if not words:
            self.problem(line, f"{keyword} requires at least one argument", index)
            return ()
        out: list[KeyValue] = []
        if keyword == "ARG":
            # ARG defaults see the ARGs declared before them in the same instruction.
            local = dict(scope)
            for w, off in words:
                key, sep, raw = w.partition("=")
                if not sep:
                    out.append(KeyValue(key, None, None, True, args_pos + off))
                    continue
                exp = _Expander(local, self.escape, self.budget, line)
                value = exp.word(raw)
                local[key] = Variable(value, exp.resolved, "arg")
                out.append(KeyValue(key, raw, value, exp.resolved, args_pos + off))
            return tuple(out)
        if "=" not in words[0][0]:
            # the legacy form: "ENV NAME the rest of the line"
            parts = _WS.split(args, maxsplit=1)
            if len(parts) < 2:
                self.problem(line, f"{keyword} must have two arguments", index)
                return ()
            exp = _Expander(scope, self.escape, self.budget, line)
            value = exp.word(parts[1])
            return (KeyValue(parts[0], parts[1], value, exp.resolved, args_pos),)
        for w, off in words:
            key, sep, raw = w.partition("=")
            if not sep:
                self.problem(line, f"can't find = in {w!r}; must be of the form name=value", index)
                continue
            # Every value of one ENV sees the variables as they were before the instruction.
            exp = _Expander(scope, self.escape, self.budget, line)
            value = exp.word(raw)
            out.append(KeyValue(_unquote_key(key), raw, value, exp.resolved, args_pos + off))
        return tuple(out)

    # --- scopes and stages --------------------------------------------------------------------
    def _scope(self) -> Scope:
        if self.scope_dirty:
            merged = dict(self.global_args) if not self.stages else {**self.args, **self.env}
            self.budget.scope_entries += len(merged)
            if self.budget.scope_entries > _MAX_SCOPE_ENTRIES:
                raise self.budget.fail(
                    0, f"more than {_MAX_SCOPE_ENTRIES} variable definitions across instructions"
                )
            self.scope = MappingProxyType(merged)
            self.scope_dirty = False
        return self.scope

    def _close_stage(self) -> None:
        if not self.stages:
            return
        last = self.stages[-1]
        if last.end_index < 0:
            self.stages[-1] = _replace_end(last, len(self.instructions))
            self.stage_env.append(self.env)
            self.stage_shell.append(self.shell)

    def _effects(self, ins: Instruction) -> Instruction:
        kw = ins.keyword
        if kw == "FROM":
            self._close_stage()
            words = ins.words
            image_raw = words[0] if words else ""
            image = ins.expanded[0] if ins.expanded else ""
            name: str | None = None
            if len(words) == 3 and words[1].lower() == "as":
                name = words[2].lower()
            elif len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
                self.problem(ins.start_line, "FROM requires either one or three arguments", ins.index)
            parent = None
            if image:
                ref = self._stage_named(image.lower())
                parent = ref
            platform = next((f.expanded for f in ins.flags if f.name == "platform"), None)
            stage = Stage(
                index=len(self.stages),
                name=name,
                image=image,
                image_raw=image_raw,
                resolved=ins.resolved,
                parent=parent,
                platform=platform,
                from_index=ins.index,
                end_index=-1,
            )
            self.stages.append(stage)
            self.args = {}
            self.env = dict(self.stage_env[parent]) if parent is not None else {}
            self.shell = self.stage_shell[parent] if parent is not None else DEFAULT_SHELL
            self.scope_dirty = True
        elif kw == "ARG":
            target = self.global_args if not self.stages else self.args
            for p in ins.pairs:
                if p.expanded is not None:
                    target[p.key] = Variable(p.expanded, p.resolved, "arg")
                elif self.stages and p.key in self.global_args:
                    g = self.global_args[p.key]
                    target[p.key] = Variable(g.value, g.resolved, "arg", g.declared_only)
                elif p.key in PLATFORM_ARGS:
                    target[p.key] = Variable("${" + p.key + "}", False, "arg")
                else:
                    target[p.key] = Variable("${" + p.key + "}", False, "arg", declared_only=True)
            self.scope_dirty = True
        elif kw == "ENV" and self.stages:
            for p in ins.pairs:
                self.env[p.key] = Variable(p.expanded or "", p.resolved, "env")
            self.scope_dirty = True
        elif kw == "SHELL" and ins.exec_form and ins.words:
            self.shell = ins.words
        key = self._identity_key(ins)
        return _with_identity(ins, key)

    def _stage_named(self, name: str) -> int | None:
        for st in reversed(self.stages):
            if st.name == name:
                return st.index
        return None

    def _identity_key(self, ins: Instruction) -> str:
        label = (self.stages[-1].name or f"#{len(self.stages) - 1}") if self.stages else "global"
        h = hashlib.sha256(f"{ins.keyword} {' '.join(ins.text.split()[1:])}".encode("utf-8", "surrogatepass"))
        for doc in ins.heredocs:
            h.update(b"\x00" + " ".join(doc.body.split()).encode("utf-8", "surrogatepass"))
        norm = f"{label}\x00{h.hexdigest()[:32]}"
        n = self.seen_keys.get(norm, 0)
        self.seen_keys[norm] = n + 1
        return f"{norm}\x00{n}"


def _unquote_key(key: str) -> str:
    """ENV/LABEL keys may be quoted (``LABEL "a b"=c``)."""
    if key[:1] in ("'", '"') and key[-1:] == key[:1] and len(key) >= 2:
        return key[1:-1]
    return key


def _replace_end(stage: Stage, end: int) -> Stage:
    return Stage(
        index=stage.index,
        name=stage.name,
        image=stage.image,
        image_raw=stage.image_raw,
        resolved=stage.resolved,
        parent=stage.parent,
        platform=stage.platform,
        from_index=stage.from_index,
        end_index=end,
    )


def _with_identity(ins: Instruction, key: str) -> Instruction:
    return replace(ins, identity_key=key)


# --------------------------------------------------------------------------------------------------
# The source
# --------------------------------------------------------------------------------------------------


def parse_dockerfile(f: InputFile, limits: Limits) -> Dockerfile:
    """Parse one Dockerfile; raises :class:`InputError` (naming the file and line) when it cannot."""
    f.check_size(limits.max_file_bytes, "Dockerfiles")
    nul = f.data.find(b"\x00")
    if nul >= 0:
        raise InputError(f.name, f"binary data (NUL byte at offset {nul}), not a Dockerfile")
    text = f.text()
    try:
        return _Parser(f, text, limits).parse()
    except RecursionError:
        raise LimitExceeded(f.name, "nesting too deep") from None


class DockerfileSource(Source):
    name = "Dockerfile"

    def accepts(self, filename: str) -> bool:
        return is_dockerfile_name(filename)

    def _load(self, f: InputFile, limits: Limits) -> Sequence[Resource]:
        return [parse_dockerfile(f, limits)]


def iter_runs(df: Dockerfile) -> Iterator[tuple[Instruction, Instruction]]:
    """``(instruction, run)`` for every RUN, including the RUN an ONBUILD registers."""
    for ins in df.instructions:
        if ins.keyword == "RUN":
            yield ins, ins
        elif ins.keyword == "ONBUILD" and ins.sub is not None and ins.sub.keyword == "RUN":
            yield ins, ins.sub
