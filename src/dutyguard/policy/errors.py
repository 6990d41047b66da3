"""Errors of policy bundles."""

from __future__ import annotations

from collections.abc import Sequence

from dutyguard.errors import InputError
from dutyguard.policy._strict import Problem


class PolicyBundleError(InputError):
    """A policy bundle is not valid. ``problems`` names every field that is wrong, with its line."""

    def __init__(self, source: str, problems: Sequence[Problem], dropped: int = 0) -> None:
        self.problems = tuple(problems)
        self.dropped = dropped
        n = len(self.problems) + dropped
        super().__init__(source, f"invalid policy bundle ({n} problem{'s' if n != 1 else ''})")

    def diagnostics(self) -> str:
        lines = [f"{self.source}: {p.render()}" for p in self.problems]
        if self.dropped:
            lines.append(f"{self.source}: ... and {self.dropped} more problems")
        return "\n".join(lines) or super().diagnostics()
