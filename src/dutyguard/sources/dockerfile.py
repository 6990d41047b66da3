"""Placeholder: the Dockerfile parser arrives in its own change."""

from __future__ import annotations

import os
from collections.abc import Sequence

from dutyguard.core.resource import Resource
from dutyguard.limits import Limits
from dutyguard.sources.interface import InputFile, Source


def is_dockerfile_name(filename: str) -> bool:
    base = os.path.basename(filename)
    return (
        base in ("Dockerfile", "Containerfile")
        or base.endswith(".Dockerfile")
        or base.startswith("Dockerfile.")
    )


class DockerfileSource(Source):
    name = "Dockerfile"

    def accepts(self, filename: str) -> bool:
        return is_dockerfile_name(filename)

    def _load(self, f: InputFile, limits: Limits) -> Sequence[Resource]:
        return []
