"""Dockerfiles (and Containerfiles), read the way BuildKit reads them, strictly and within bounds.

Each place where a Dockerfile could be read two ways is decided, and explained, in the module that
reads it:

- ``_lines``: parser directives, continuations, comments and heredocs (physical to logical lines);
- ``_lexer``: BuildKit's words, flags, JSON form and ``$`` substitution;
- ``_scope``: stages, and ARG/ENV scoping across them;
- ``_parser``: each instruction's keyword, flags and arguments, and the problems BuildKit refuses;
- ``_shell`` and ``_commands``: the shell text of RUN/CMD/ENTRYPOINT/HEALTHCHECK as simple commands,
  and what each really runs (``sudo``, ``env``, ``sh -c``... peeled off);
- ``_model``: the immutable value types and :class:`Dockerfile` as a resource;
- ``_budget``: bounds. File bytes, logical line bytes, instruction count, expanded bytes (per value
  and per file), variable-scope copies, shell nesting depth and wall-clock time are all bounded.

This package is the source (:class:`DockerfileSource`) and exports what rules and tests use; the
modules behind it are private, and the readers load with the first Dockerfile.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from dutyguard.core.resource import Resource
from dutyguard.limits import Limits
from dutyguard.sources.dockerfile._model import (
    DEFAULT_SHELL,
    EMPTY_SCOPE,
    KNOWN_INSTRUCTIONS,
    PLATFORM_ARGS,
    SHELLS,
    Dockerfile,
    Flag,
    Heredoc,
    Instruction,
    Invocation,
    KeyValue,
    ParseProblem,
    Scope,
    ShellCommand,
    ShellWord,
    Stage,
    Variable,
)
from dutyguard.sources.interface import InputFile, Source

if TYPE_CHECKING:
    from dutyguard.sources.dockerfile._commands import unwrap
    from dutyguard.sources.dockerfile._parser import parse_dockerfile
    from dutyguard.sources.dockerfile._shell import read_shell

_READERS = {"parse_dockerfile": "_parser", "read_shell": "_shell", "unwrap": "_commands"}
"""Loaded on first use (PEP 562): the rules need only the value types, a scan without Dockerfiles
never imports the readers."""


def __getattr__(name: str) -> object:
    module = _READERS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


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


class DockerfileSource(Source):
    name = "Dockerfile"
    produces = Dockerfile

    def accepts(self, filename: str) -> bool:
        return is_dockerfile_name(filename)

    def _load(self, f: InputFile, limits: Limits) -> Sequence[Resource]:
        # The readers load with the first Dockerfile: a scan without one never imports them.
        from dutyguard.sources.dockerfile._parser import parse_dockerfile

        return [parse_dockerfile(f, limits)]


def iter_runs(df: Dockerfile) -> Iterator[tuple[Instruction, Instruction]]:
    """``(instruction, run)`` for every RUN, including the RUN an ONBUILD registers."""
    for ins in df.instructions:
        if ins.keyword == "RUN":
            yield ins, ins
        elif ins.keyword == "ONBUILD" and ins.sub is not None and ins.sub.keyword == "RUN":
            yield ins, ins.sub


__all__ = [
    "DEFAULT_SHELL",
    "EMPTY_SCOPE",
    "KNOWN_INSTRUCTIONS",
    "PLATFORM_ARGS",
    "SHELLS",
    "Dockerfile",
    "DockerfileSource",
    "Flag",
    "Heredoc",
    "Instruction",
    "Invocation",
    "KeyValue",
    "ParseProblem",
    "Scope",
    "ShellCommand",
    "ShellWord",
    "Stage",
    "Variable",
    "is_dockerfile_name",
    "iter_runs",
    "parse_dockerfile",
    "read_shell",
    "unwrap",
]
