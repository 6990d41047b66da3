"""What a parsed Dockerfile is: immutable value types, and :class:`Dockerfile` as a resource.

A finding's path is ``(instruction_index,)``, optionally followed by ``("at", offset)`` into the
instruction's logical text or ``("heredoc", h, "at", offset)`` into a heredoc body, which
:meth:`Dockerfile.locate` maps back to the physical line. ``("line", n)`` points at a line that is
no instruction (a parser directive).
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from dutyguard.core.model import JSONPath, Location
from dutyguard.core.resource import Resource
from dutyguard.core.rule import Violation

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
