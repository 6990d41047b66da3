"""Placeholder: filled in by its own change."""

from __future__ import annotations

from dutyguard.core.rule import AnyRule


def rules() -> list[AnyRule]:
    return []
