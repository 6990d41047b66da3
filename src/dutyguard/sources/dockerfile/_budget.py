"""Bounds on the work one Dockerfile may cost: nesting, expansion, variable copies and time."""

from __future__ import annotations

import time

from dutyguard.errors import LimitExceeded
from dutyguard.limits import Limits

MAX_NESTING = 32
"""Depth of ``$(``/subshell/``sh -c`` nesting we follow; deeper is hostile, not a Dockerfile."""
MAX_SCOPE_ENTRIES = 1_000_000
"""Variables copied into per-instruction scopes across one file."""


class Budget:
    """What one file may still cost; shared by the line reader, substitution and the shell reader."""

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
