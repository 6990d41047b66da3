"""The Dockerfile source: which files are Dockerfiles, and the :class:`~dutyguard.sources.interface.Source`."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from dutyguard.core.resource import Resource
from dutyguard.limits import Limits
from dutyguard.sources.dockerfile._model import Dockerfile, Instruction
from dutyguard.sources.dockerfile._parser import parse_dockerfile
from dutyguard.sources.interface import InputFile, Source

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
