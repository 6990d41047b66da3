"""Placeholder: text files for the secret rules arrive in their own change."""

from __future__ import annotations

from collections.abc import Sequence

from dutyguard.core.resource import Resource
from dutyguard.limits import Limits
from dutyguard.sources.interface import InputFile, Source


class TextSource(Source):
    name = "text"
    reads_streams = True

    def accepts(self, filename: str) -> bool:
        return True

    def _load(self, f: InputFile, limits: Limits) -> Sequence[Resource]:
        return []
