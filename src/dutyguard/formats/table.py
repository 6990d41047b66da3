"""Placeholder table output; the grouped, coloured table arrives in its own change."""

from __future__ import annotations

from dutyguard.core.model import ScanReport
from dutyguard.formats.interface import FormatContext, Formatter


class TableFormatter(Formatter):
    def render(self, report: ScanReport, ctx: FormatContext) -> str:
        lines = [
            f"{f.severity.value:<8} {f.rule_id:<28} {f.location.file}:{f.location.line}  {f.message}"
            for f in report.findings
        ]
        return "\n".join(lines) + "\n"
