"""Commands in context: where a command of a RUN is reported, its options, what it sets."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from dutyguard.core.model import JSONPath
from dutyguard.rules.dockerfile._instructions import triggered
from dutyguard.sources.dockerfile import Dockerfile, Instruction, Invocation, ShellCommand

CURL_VALUES = "AbcCdDeEFHKmoPQrtTuUwxXYyz"
"""curl's short options that take a value."""
WGET_VALUES = "OoaPtTweiBUQlARDIX"
"""wget's short options that take a value."""

_PYTHON = re.compile(r"python[0-9.]*$")
_PIP = re.compile(r"pip[0-9.]*$")


@dataclass(frozen=True, slots=True)
class Run:
    """A command of a RUN (or of the RUN an ONBUILD registers), with where to report it."""

    top: Instruction
    ins: Instruction
    cmd: ShellCommand
    inv: Invocation
    index: int

    @property
    def path(self) -> JSONPath:
        return cmd_path(self.top, self.cmd)

    def later(self) -> Iterator[Run]:
        for k in range(self.index + 1, len(self.ins.commands)):
            c = self.ins.commands[k]
            yield Run(self.top, self.ins, c, c.invocation, k)


def cmd_path(top: Instruction, cmd: ShellCommand) -> JSONPath:
    if cmd.source >= 0:
        return (top.index, "heredoc", cmd.source, "at", cmd.offset)
    return (top.index, "at", cmd.offset)


def runs(df: Dockerfile, stages: Iterable[int] | None = None, *, runtime: bool = False) -> Iterator[Run]:
    """Commands of RUN instructions (and ONBUILD RUN); with ``runtime``, also CMD/ENTRYPOINT/HEALTHCHECK."""
    allowed = None if stages is None else frozenset(stages)
    kinds = ("RUN", "CMD", "ENTRYPOINT", "HEALTHCHECK") if runtime else ("RUN",)
    for top, ins in triggered(df, kinds):
        if allowed is not None and top.stage not in allowed:
            continue
        for k, c in enumerate(ins.commands):
            yield Run(top, ins, c, c.invocation, k)


def run_groups(df: Dockerfile, stages: Iterable[int] | None = None) -> Iterator[list[Run]]:
    """The commands of each RUN, one list per instruction."""
    group: list[Run] = []
    for r in runs(df, stages):
        if group and group[0].top is not r.top:
            yield group
            group = []
        group.append(r)
    if group:
        yield group


@dataclass(frozen=True, slots=True)
class Args:
    positionals: tuple[str, ...]
    shorts: frozenset[str]
    longs: Mapping[str, str | None]
    values: tuple[tuple[str, str], ...]
    """Every option that took a value: ``("-o", "file")``, ``("--setopt", "x=y")``."""

    def has(self, *options: str) -> bool:
        for o in options:
            if o.startswith("--"):
                if o[2:] in self.longs:
                    return True
            elif o.startswith("-") and len(o) == 2 and o[1] in self.shorts:
                return True
        return False

    def value_of(self, *options: str) -> list[str]:
        return [v for o, v in self.values if o in options]

    def settings(self, *options: str) -> Iterator[tuple[str, str, str]]:
        """``(setting, key, value)`` for each ``key=value`` given to ``options`` (``-o``, ``--setopt``)."""
        for setting in self.value_of(*options):
            key, _, value = setting.partition("=")
            yield setting, key, value

    @property
    def subcommand(self) -> str:
        return self.positionals[0] if self.positionals else ""


def parse_args(
    argv: Sequence[str], short_values: str = "", long_values: frozenset[str] = frozenset()
) -> Args:
    """Options and positionals of a command line (getopt-style, clustered short options)."""
    positionals: list[str] = []
    shorts: set[str] = set()
    longs: dict[str, str | None] = {}
    values: list[tuple[str, str]] = []
    i, n = 0, len(argv)
    while i < n:
        a = argv[i]
        if a == "--":
            positionals.extend(argv[i + 1 :])
            break
        if a.startswith("--") and len(a) > 2:
            name, eq, val = a[2:].partition("=")
            if not eq and name in long_values and i + 1 < n:
                i += 1
                val, eq = argv[i], "="
            longs[name] = val if eq else None
            if eq:
                values.append(("--" + name, val))
        elif a.startswith("-") and len(a) > 1:
            for j in range(1, len(a)):
                ch = a[j]
                shorts.add(ch)
                if ch in short_values:
                    val = a[j + 1 :]
                    if not val and i + 1 < n:
                        i += 1
                        val = argv[i]
                    values.append(("-" + ch, val[1:] if val.startswith("=") else val))
                    break
        else:
            positionals.append(a)
        i += 1
    return Args(tuple(positionals), frozenset(shorts), longs, tuple(values))


@functools.lru_cache(maxsize=1024)
def family(program: str) -> str:
    """``pip3.11`` is ``pip``, ``python3`` is ``python``, ``nodejs`` is ``node``."""
    if _PIP.match(program):
        return "pip"
    if _PYTHON.match(program):
        return "python"
    return {"nodejs": "node", "yum-config-manager": "yum", "dnf-config-manager": "dnf"}.get(program, program)


def assignments(r: Run) -> Iterator[tuple[str, str]]:
    """``NAME=value`` a command sets: its prefix, ``env``, ``export``/``declare -x``/``readonly``."""
    words = list(r.inv.env)
    if r.inv.program in ("export", "declare", "typeset", "readonly", "local") or (
        not r.cmd.words and r.cmd.assignments
    ):
        words.extend(w for w in r.inv.args if "=" in w.value and not w.value.startswith("-"))
    for w in words:
        name, _, value = w.expanded.partition("=")
        yield name, value
