"""Which instructions a rule looks at: ONBUILD triggers, ARG/ENV pairs, the final image, COPY sources."""

from __future__ import annotations

import re
from collections.abc import Container, Iterator

from dutyguard.core.model import JSONPath
from dutyguard.sources.dockerfile import Dockerfile, Instruction, KeyValue

_HEREDOC_WORD = re.compile(r"^\d*<<-?")
URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^git@")
"""A COPY/ADD source the builder fetches (a URL or a git remote), not a file of the context."""


def triggered(df: Dockerfile, keywords: Container[str]) -> Iterator[tuple[Instruction, Instruction]]:
    """``(top, ins)`` for every instruction with one of ``keywords``, also where an ONBUILD registers it.

    ``ins`` is what the builder runs; ``top`` is the line in this file a finding points at.
    """
    for top in df.instructions:
        ins = top.sub if top.keyword == "ONBUILD" and top.sub is not None else top
        if ins.keyword in keywords:
            yield top, ins


def variables(df: Dockerfile) -> Iterator[tuple[Instruction, KeyValue]]:
    """Every ``NAME=value`` an ARG or ENV declares, in file order."""
    for ins in df.instructions:
        if ins.keyword in ("ENV", "ARG"):
            for kv in ins.pairs:
                yield ins, kv


def pair_path(ins: Instruction, kv: KeyValue) -> JSONPath:
    return (ins.index, "at", kv.offset)


def last_in_image(df: Dockerfile, keyword: str) -> Instruction | None:
    """The ``keyword`` instruction that decides the final image: the last one in the final stage,
    else in the stages it is built ``FROM`` (nearest first), or ``None``."""
    final = df.final_stage
    if final is None:
        return None
    for stage in df.lineage(final.index):
        for ins in reversed(df.stage_instructions(stage)):
            if ins.keyword == keyword:
                return ins
    return None


def copy_sources(ins: Instruction) -> tuple[str, ...]:
    """Sources of COPY/ADD (the last word is the destination; heredocs are not files)."""
    words = ins.expanded[:-1] if len(ins.expanded) > 1 else ()
    return tuple(w for w in words if not _HEREDOC_WORD.match(w))
