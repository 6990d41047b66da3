"""GitHub-flavoured markdown for pull-request comments.

Order of importance: the decision and summary, unreadable inputs, blocking findings with their
remediation, then (collapsed) the findings below the threshold and the suppression requests.

Every scanned value is hostile. Identifiers (files, names, fields) go in code spans, where
markdown, HTML, links, mentions and math are inert; prose (messages) is backslash-escaped and
``@`` is split with a zero-width space so a resource name cannot ping a team. Nothing can end a
table row early: ``|`` is escaped and newlines are shown as ``\\n``.

GitHub refuses a comment longer than 65,536 characters, so the comment is built within a byte
budget (a UTF-8 byte is never less than a character) and says how much it left out.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

from dutyguard.core.model import Finding, ScanError, ScanReport, Severity, SuppressionRequest
from dutyguard.formats._text import plural, terminal
from dutyguard.formats.interface import FormatContext, Formatter

GITHUB_COMMENT_LIMIT = 65_536
_RESERVE = 2_000
"""Bytes kept back for closing tags and the truncation note."""

_NAME_CHARS = 160
_FILE_CHARS = 240
_PROSE_CHARS = 600

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~$&])")
"""What can start markup inside a line: code, emphasis, links/images, HTML, tables, strike, math,
entities. Line-start syntax (``#``, ``-``, ``>``) cannot occur: values never start a line."""
_AUTOLINK = re.compile(r"(?i)(://|www\.)")
_BACKTICKS = re.compile(r"`+")
_MENTION = "@&#8203;"


def md_inline(text: str, limit: int = _PROSE_CHARS) -> str:
    """Prose for a markdown line or table cell: every markdown/HTML metacharacter escaped."""
    safe = _MD_SPECIAL.sub(r"\\\1", terminal(text, limit))
    # A zero-width space (as an entity) breaks mentions and bare-URL autolinks invisibly.
    safe = _AUTOLINK.sub(lambda m: m.group()[0] + "&#8203;" + m.group()[1:], safe)
    return safe.replace("@", _MENTION)


def md_code(text: str, limit: int = _NAME_CHARS, *, in_table: bool = False) -> str:
    """A code span holding ``text`` literally, whatever backticks it contains."""
    safe = terminal(text, limit)
    if not safe:
        return "∅"
    longest = max((len(m.group()) for m in _BACKTICKS.finditer(safe)), default=0)
    fence = "`" * (longest + 1)
    if safe.startswith(("`", " ")) or safe.endswith(("`", " ")):
        safe = f" {safe} "
    if in_table:
        # GFM splits table cells on "|" before it sees code spans; "\|" is its escape even there.
        safe = safe.replace("|", "\\|")
    return f"{fence}{safe}{fence}"


def html_inline(text: str, limit: int = _PROSE_CHARS) -> str:
    """Text inside raw HTML (``<summary>``), where markdown escapes do not apply."""
    return html.escape(terminal(text, limit), quote=True).replace("@", _MENTION)


class _Budget:
    """Appends blocks while they fit. A block that does not fit is left out (and noted); a later,
    smaller block may still fit, so a long table does not hide the sections after it."""

    def __init__(self, limit: int) -> None:
        self.parts: list[str] = []
        self.used = 0
        self.limit = max(limit - _RESERVE, 0)
        self.held = 0
        self.truncated = False

    def add(self, text: str) -> bool:
        size = len(text.encode("utf-8"))
        if self.used + self.held + size > self.limit:
            self.truncated = True
            return False
        self.parts.append(text)
        self.used += size
        return True

    def hold(self, size: int) -> None:
        """Keep ``size`` bytes free for a block that must come later but matters more."""
        self.held = min(size, max(self.limit - self.used, 0))

    def release(self) -> None:
        self.held = 0

    def close(self, text: str) -> None:
        """Closing markup: always written (paid for by the reserve)."""
        self.parts.append(text)

    def text(self) -> str:
        return "".join(self.parts)


def _where(f: Finding, *, in_table: bool) -> str:
    loc = f.location
    spot = loc.file if loc.line is None else f"{loc.file}:{loc.line}"
    return md_code(spot, _FILE_CHARS, in_table=in_table)


def _resource(f: Finding, *, in_table: bool) -> str:
    loc = f.location
    parts: list[str] = []
    if loc.kind or loc.name:
        ident = "/".join(p for p in (loc.namespace, loc.name) if p)
        kind = md_inline(loc.kind, _NAME_CHARS) if loc.kind else ""
        parts.append(" ".join(p for p in (kind, md_code(ident, in_table=in_table) if ident else "") if p))
    if loc.container:
        parts.append("container " + md_code(loc.container, in_table=in_table))
    return " · ".join(parts) or "—"


def _severity(s: Severity) -> str:
    return f"**{s.value.upper()}**" if s.rank >= Severity.HIGH.rank else s.value.upper()


def _finding_row(f: Finding) -> str:
    message = md_inline(f.message)
    if f.waiver is not None:
        until = f.waiver.expires.strftime("%Y-%m-%d")
        message = f"**waived** by exception {md_code(f.waiver.exception_id, in_table=True)} until {until} · {message}"
    return (
        f"| {_severity(f.severity)} | {md_code(f.rule_id, in_table=True)} | {_where(f, in_table=True)} "
        f"| {_resource(f, in_table=True)} | {message} |\n"
    )


_FINDINGS_HEADER = "| Severity | Rule | Location | Resource | Message |\n|---|---|---|---|---|\n"


def _fixes(findings: Sequence[Finding], budget: int) -> str:
    """How to fix each rule among ``findings``, once per rule, most severe first, within ``budget``."""
    first: dict[str, Finding] = {}
    for f in findings:
        first.setdefault(f.rule_id, f)
    rules = list(first.values())
    items: list[str] = []
    used = 0
    for f in rules:
        item = (
            f"- {md_code(f.rule_id)} {md_inline(f.title, _NAME_CHARS)}: {md_inline(f.remediation)}  \n"
            "  Controls: " + ", ".join(md_code(c) for c in f.controls) + "\n"
        )
        used += len(item.encode("utf-8"))
        if used > budget:
            items.append(f"- … and {len(rules) - len(items)} more rules (see `dutyguard rules show ID`)\n")
            break
        items.append(item)
    head = f"<details><summary>How to fix ({len(rules)} rule{'s' if len(rules) != 1 else ''})</summary>\n\n"
    return head + "".join(items) + "\n</details>\n\n"


def _title(report: ScanReport) -> str:
    code = report.exit_code
    if code == 0:
        return "## ✅ dutyguard: policy gate passed\n\n"
    if code == 1:
        return "## ❌ dutyguard: policy gate failed\n\n"
    return "## ⚠️ dutyguard: some inputs could not be read (the gate fails closed)\n\n"


def _summary(report: ScanReport) -> str:
    counts = report.counts()
    by_sev = " · ".join(f"{name} {counts[name]}" for name in (s.value for s in Severity))
    stats = report.stats
    scanned = f"{plural(stats.files, 'file')}, {plural(stats.resources, 'resource')}"
    if stats.skipped:
        scanned += f" ({stats.skipped} skipped)"
    decision = {0: "pass", 1: "fail", 2: "error"}[report.exit_code]
    rows = [
        ("Decision", f"**{decision}** (exit {report.exit_code})"),
        (f"Blocking findings (severity ≥ {report.fail_on.value})", str(len(report.blocking))),
        ("Findings by severity", by_sev),
        *((("Waived by approved exceptions", str(len(report.waived))),) if report.waived else ()),
        ("Scanned", scanned),
        ("Suppression requests", f"{len(report.suppression_requests)} (reported, never honoured)"),
        ("Errors", str(len(report.errors))),
        ("Policy", f"{md_inline(report.policy_source)} · PSS {md_inline(report.pss_level)}"),
    ]
    return "| | |\n|---|---|\n" + "".join(f"| {k} | {v} |\n" for k, v in rows) + "\n"


def _errors(out: _Budget, errors: Sequence[ScanError]) -> int:
    if not errors or not out.add(
        f"### ⚠️ Inputs that could not be read ({len(errors)})\n\n| Input | Error |\n|---|---|\n"
    ):
        return len(errors)
    shown = 0
    for e in errors:
        if not out.add(f"| {md_code(e.source, _FILE_CHARS, in_table=True)} | {md_inline(e.message)} |\n"):
            break
        shown += 1
    out.close("\n")
    return len(errors) - shown


def _table(out: _Budget, findings: Sequence[Finding]) -> int:
    """Rows that fit; returns how many findings were left out."""
    if not out.add(_FINDINGS_HEADER):
        return len(findings)
    shown = 0
    for f in findings:
        if not out.add(_finding_row(f)):
            break
        shown += 1
    out.close("\n")
    return len(findings) - shown


def _suppressions(out: _Budget, requests: Sequence[SuppressionRequest]) -> None:
    if not requests:
        return
    if not out.add(
        f"<details><summary>Suppression requests ({len(requests)}): reported to Security, never honoured"
        "</summary>\n\n| Location | Syntax | Targets | Matched rules | Reason |\n|---|---|---|---|---|\n"
    ):
        return
    for s in requests:
        targets = ", ".join(md_code(t, in_table=True) for t in s.targets) or "everything"
        matched = ", ".join(md_code(r, in_table=True) for r in s.matched_rules) or "—"
        row = (
            f"| {md_code(f'{s.file}:{s.line}', _FILE_CHARS, in_table=True)} | {md_code(s.syntax, in_table=True)} "
            f"| {targets} | {matched} | {md_inline(s.reason) or '—'} |\n"
        )
        if not out.add(row):
            break
    out.close("\n</details>\n\n")


class MarkdownFormatter(Formatter):
    def __init__(self, limit: int = GITHUB_COMMENT_LIMIT) -> None:
        self._limit = limit

    def render(self, report: ScanReport, ctx: FormatContext) -> str:
        out = _Budget(self._limit)
        out.add(_title(report))
        out.add(_summary(report))
        omitted_errors = _errors(out, report.errors)
        # Bypass attempts go before the findings tables: a long table must not push them out.
        _suppressions(out, report.suppression_requests)

        blocking = report.blocking
        others = [f for f in report.findings if not report.is_blocking(f)]
        omitted = 0
        if blocking:
            if out.add(f"### Blocking findings ({len(blocking)})\n\n"):
                # The remediation of every blocking rule matters more than the 500th row.
                fixes = _fixes(blocking, out.limit // 3)
                out.hold(len(fixes.encode("utf-8")))
                omitted += _table(out, blocking)
                out.release()
                out.add(fixes)
            else:
                omitted += len(blocking)
        elif report.findings:
            out.add("No finding is at or above the fail-on threshold.\n\n")
        if others:
            what = "below the fail-on threshold or waived" if report.waived else "below the fail-on threshold"
            summary = html_inline(f"Findings {what} ({len(others)})")
            if out.add(f"<details><summary>{summary}</summary>\n\n"):
                omitted += _table(out, others)
                out.close("</details>\n\n")
            else:
                omitted += len(others)

        if out.truncated:
            missing = []
            if omitted:
                missing.append(f"{omitted} findings")
            if omitted_errors:
                missing.append(f"{omitted_errors} errors")
            what = " and ".join(missing) or "some details"
            out.close(
                f"\n> [!WARNING]\n> Truncated to fit GitHub's {GITHUB_COMMENT_LIMIT:,}-character comment limit: "
                f"{what} not shown. The JSON or SARIF report has everything.\n"
            )
        out.close(f"\n<sub>dutyguard {html.escape(ctx.tool_version)}</sub>\n")
        return out.text()
