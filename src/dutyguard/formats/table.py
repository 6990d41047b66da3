"""The report for people: findings grouped by file, then severity; what to fix; a summary.

Colour only when the caller says so (a TTY without ``NO_COLOR``). Every scanned value goes
through :func:`dutyguard.formats._text.terminal` and into rich as a plain ``Text`` (never as
markup), so a manifest cannot inject escape sequences or rich markup into the terminal.
rich is imported here only, so other formats never pay for it.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable
from typing import TYPE_CHECKING

from dutyguard.core.model import Finding, ScanReport, Severity
from dutyguard.formats._text import plural, terminal
from dutyguard.formats.interface import FormatContext, Formatter

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}
_DECISION_STYLE = {0: "bold green", 1: "bold red", 2: "bold magenta"}
# The same styles as SGR sequences, for the findings columns written without rich.
_SGR = {
    Severity.CRITICAL: "\x1b[1;37;41m",
    Severity.HIGH: "\x1b[1;31m",
    Severity.MEDIUM: "\x1b[33m",
    Severity.LOW: "\x1b[36m",
    Severity.INFO: "\x1b[2m",
}
_SGR_HEADING = "\x1b[1;4m"
_SGR_RESET = "\x1b[0m"

_SHORT = 200
_LONG = 2_000
MIN_WIDTH = 60


def _t(value: str | None, limit: int = _SHORT, style: str = "") -> Text:
    from rich.text import Text

    return Text(terminal(value or "", limit), style=style)


def _resource(f: Finding) -> str:
    loc = f.location
    ident = "/".join(p for p in (loc.namespace, loc.name) if p)
    out = " ".join(p for p in (loc.kind, ident) if p)
    if loc.container:
        out += f" [{loc.container}]" if out else f"container {loc.container}"
    return out


def _by_file(findings: Iterable[Finding]) -> dict[str, list[Finding]]:
    groups: dict[str, list[Finding]] = {}
    for f in findings:
        groups.setdefault(f.location.file, []).append(f)
    for items in groups.values():
        items.sort(key=lambda f: (-f.severity.rank, f.location.line or 0, f.rule_id))
    return dict(sorted(groups.items()))


class TableFormatter(Formatter):
    def __init__(self, width: int | None = None) -> None:
        self._width = width

    def render(self, report: ScanReport, ctx: FormatContext) -> str:
        buf = io.StringIO()
        width = max(self._width or shutil.get_terminal_size(fallback=(120, 24)).columns, MIN_WIDTH)
        self._findings(buf, report, ctx.color, width)
        console = self._console(buf, ctx.color, width)
        self._fixes(console, report)
        self._suppressions(console, report)
        self._errors(console, report)
        self._summary(console, report)
        text = buf.getvalue()
        if not ctx.color:
            # rich pads every cell to the column width; plain logs are easier to read and diff without.
            text = "\n".join(line.rstrip() for line in text.split("\n"))
        return text

    def _console(self, buf: io.StringIO, color: bool, width: int) -> Console:
        from rich.console import Console

        return Console(
            file=buf,
            width=width,
            force_terminal=color,
            force_interactive=False,
            color_system="standard" if color else None,
            no_color=not color,
            highlight=False,
            markup=False,
            emoji=False,
            legacy_windows=False,
            soft_wrap=False,
        )

    def _findings(self, buf: io.StringIO, report: ScanReport, color: bool, width: int) -> None:
        # Laid out by hand (formats/_columns.py): rich measured 14,000 rows for 5.8 s.
        from dutyguard.formats._columns import Column, layout

        columns = (
            Column("SEVERITY"),
            Column("LINE", right=True),
            Column("RULE"),
            Column("RESOURCE", wraps=True, share=0.35),
            Column("MESSAGE", wraps=True),
        )
        for file, findings in _by_file(report.findings).items():
            # A file name is an identifier people copy and grep for: never wrap it.
            heading = terminal(file, _LONG)
            buf.write(f"{_SGR_HEADING}{heading}{_SGR_RESET}\n" if color else f"{heading}\n")
            rows: list[tuple[str, ...]] = []
            styles: list[tuple[str, str]] = []
            for f in findings:
                sev = f.severity.value.upper()
                message = f.message
                if report.is_blocking(f):
                    sev += " *"
                elif f.waiver is not None:
                    sev += " (waived)"
                    until = f.waiver.expires.strftime("%Y-%m-%d")
                    message = f"[waived by exception {f.waiver.exception_id} until {until}] {message}"
                rows.append(
                    (
                        sev,
                        str(f.location.line) if f.location.line is not None else "-",
                        terminal(f.rule_id, _SHORT),
                        terminal(_resource(f), _SHORT),
                        terminal(message, _LONG),
                    )
                )
                styles.append((_SGR[f.severity], _SGR_RESET))
            buf.write("\n".join(layout(columns, rows, width, styles if color else ())))
            buf.write("\n\n")

    def _fixes(self, console: Console, report: ScanReport) -> None:
        if not report.findings:
            return
        from rich.table import Table
        from rich.text import Text

        console.print(Text("How to fix", style="bold"))
        grid = Table.grid(padding=(0, 2), pad_edge=True)
        grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold", ratio=1)
        seen: set[str] = set()
        for f in report.findings:
            if f.rule_id in seen:
                continue
            seen.add(f.rule_id)
            fix = _t(f.remediation, _LONG)
            fix.append_text(_t(f"  ({', '.join(f.controls)})", _LONG, "dim"))
            grid.add_row(_t(f.rule_id, style=_STYLE[f.severity]), fix)
        console.print(grid)
        console.print()

    def _suppressions(self, console: Console, report: ScanReport) -> None:
        requests = report.suppression_requests
        if not requests:
            return
        from rich.text import Text

        console.print(
            Text(
                f"Suppression requests ({len(requests)}): reported to Security, never honoured",
                style="bold yellow",
            )
        )
        for s in requests:
            targets = ", ".join(s.targets) or "every rule"
            line = Text("  ")
            line.append_text(_t(f"{s.file}:{s.line}", _LONG))
            line.append_text(_t(f"  {s.syntax} → {targets}"))
            if s.reason:
                line.append_text(_t(f"  reason: {s.reason}", _LONG, "dim"))
            console.print(line)
        console.print()

    def _errors(self, console: Console, report: ScanReport) -> None:
        if not report.errors:
            return
        from rich.text import Text

        console.print(
            Text(
                f"Inputs that could not be read ({len(report.errors)}): the gate fails closed",
                style="bold magenta",
            )
        )
        for e in report.errors:
            line = Text("  ")
            line.append_text(_t(e.message, _LONG))
            console.print(line)
        console.print()

    def _summary(self, console: Console, report: ScanReport) -> None:
        from rich import box
        from rich.table import Table

        code = report.exit_code
        blocking = len(report.blocking)
        if code == 0:
            decision = f"PASS: nothing at or above {report.fail_on.value}"
        elif code == 1:
            decision = f"FAIL: {plural(blocking, 'finding')} at or above {report.fail_on.value} (marked *)"
        else:
            decision = f"ERROR: {plural(len(report.errors), 'input')} could not be read"
        counts = report.counts()
        by_sev = " · ".join(f"{name} {counts[name]}" for name in (s.value for s in Severity))
        stats = report.stats
        scanned = f"{plural(stats.files, 'file')}, {plural(stats.resources, 'resource')}"
        if stats.skipped:
            scanned += f", {stats.skipped} skipped"

        table = Table(
            box=box.SIMPLE, show_header=False, show_edge=False, pad_edge=False, title_justify="left"
        )
        table.add_column(no_wrap=True, style="bold")
        table.add_column(overflow="fold")
        table.add_row(_t("Decision"), _t(f"{decision} (exit {code})", style=_DECISION_STYLE[code]))
        table.add_row(_t("Findings"), _t(f"{len(report.findings)}: {by_sev}"))
        table.add_row(_t("Blocking"), _t(f"{blocking} (fail on {report.fail_on.value})"))
        if report.waived:
            table.add_row(_t("Waived"), _t(f"{len(report.waived)} (approved exceptions; still shown above)"))
        table.add_row(_t("Scanned"), _t(scanned))
        table.add_row(
            _t("Suppression requests"),
            _t(f"{len(report.suppression_requests)} (reported, never honoured)"),
        )
        table.add_row(_t("Errors"), _t(str(len(report.errors))))
        table.add_row(_t("Policy"), _t(f"{report.policy_source} · PSS {report.pss_level}", _LONG))
        console.print(table)
