"""The formatter interface and the explicit, exhaustive choice of formats."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import assert_never

from dutyguard import __version__
from dutyguard.core.model import ScanReport
from dutyguard.core.rule import RuleRegistry


@dataclass(frozen=True, slots=True)
class FormatContext:
    registry: RuleRegistry
    color: bool = False
    tool_version: str = __version__


class Formatter(ABC):
    @abstractmethod
    def render(self, report: ScanReport, ctx: FormatContext) -> str: ...


class OutputFormat(enum.Enum):
    TABLE = "table"
    JSON = "json"
    SARIF = "sarif"
    JUNIT = "junit"
    MARKDOWN = "markdown"

    def to_formatter(self) -> Formatter:
        # Imports are local so a scan only pays for the format it prints.
        if self is OutputFormat.TABLE:
            from dutyguard.formats.table import TableFormatter

            return TableFormatter()
        if self is OutputFormat.JSON:
            from dutyguard.formats.json import JsonFormatter

            return JsonFormatter()
        if self is OutputFormat.SARIF:
            from dutyguard.formats.sarif import SarifFormatter

            return SarifFormatter()
        if self is OutputFormat.JUNIT:
            from dutyguard.formats.junit import JUnitFormatter

            return JUnitFormatter()
        if self is OutputFormat.MARKDOWN:
            from dutyguard.formats.markdown import MarkdownFormatter

            return MarkdownFormatter()
        assert_never(self)
