"""Placeholder: filled in by its own change."""

from __future__ import annotations

from dutyguard.core.rule import AnyRule


def rules(gitleaks_file: str | None = None) -> list[AnyRule]:
    return []
