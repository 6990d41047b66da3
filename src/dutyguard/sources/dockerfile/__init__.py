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

This package exports what sources, rules and tests use; the modules behind it are private.
"""

from __future__ import annotations

from dutyguard.sources.dockerfile._commands import unwrap
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
from dutyguard.sources.dockerfile._parser import parse_dockerfile
from dutyguard.sources.dockerfile._shell import read_shell
from dutyguard.sources.dockerfile._source import DockerfileSource, is_dockerfile_name, iter_runs

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
