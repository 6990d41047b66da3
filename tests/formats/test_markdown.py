"""Markdown for PR comments: order, escaping (checked by rendering it), GitHub's size limit."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from dutyguard.core.model import ScanError, ScanReport
from dutyguard.formats.markdown import GITHUB_COMMENT_LIMIT, MarkdownFormatter, md_code, md_inline
from tests.formats._reports import (
    CHECKOV_PRIVILEGED,
    HOSTILE,
    ctx,
    hostile_manifest,
    mixed_severities,
    privileged,
    scan,
    with_hostile_message,
    with_suppression,
    write_privileged,
)

# CommonMark + GFM tables, raw HTML allowed (as GitHub allows a safe subset): anything our
# escaping misses shows up as a tag or an extra cell in the rendered HTML.
RENDERER = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
_UNESCAPED_PIPE = re.compile(r"(?<!\\)\|")


def render(report: ScanReport, limit: int = GITHUB_COMMENT_LIMIT) -> str:
    return MarkdownFormatter(limit=limit).render(report, ctx())


def table_rows(text: str) -> list[list[str]]:
    return [_UNESCAPED_PIPE.split(line)[1:-1] for line in text.splitlines() if line.startswith("|")]


def test_summary_names_decision_counts_and_policy(shared_data: Path) -> None:
    report = scan([shared_data / CHECKOV_PRIVILEGED])
    text = render(report)
    assert text.startswith("## ❌ dutyguard: policy gate failed")
    assert "| Decision | **fail** (exit 1) |" in text
    assert f"| Blocking findings (severity ≥ high) | {len(report.blocking)} |" in text
    counts = report.counts()
    assert f"critical {counts['critical']} · high {counts['high']}" in text
    assert "built-in default policy (unsigned)" in text
    assert "| Suppression requests | 0 (reported, never honoured) |" in text


def test_blocking_findings_come_first_and_the_rest_is_collapsed(tmp_path: Path) -> None:
    report = mixed_severities(scan([write_privileged(tmp_path)]))
    text = render(report)
    blocking_at = text.index("### Blocking findings")
    collapsed_at = text.index("<details><summary>Findings below the fail-on threshold")
    assert blocking_at < collapsed_at
    critical_row = text.index("| **CRITICAL** | `pss.privileged`")
    low_row = text.index("| LOW | `pss.privileged`")
    assert blocking_at < critical_row < collapsed_at < low_row
    fixes = text[text.index("<details><summary>How to fix") : collapsed_at]
    assert "`pss.privileged` Privileged container: Remove securityContext.privileged" in fixes
    assert text.count("<details>") == text.count("</details>")


def test_unreadable_inputs_are_not_collapsed(tmp_path: Path) -> None:
    text = render(scan([write_privileged(tmp_path), tmp_path / "missing.yaml"]))
    assert text.startswith("## ⚠️ dutyguard: some inputs could not be read")
    errors_at = text.index("### ⚠️ Inputs that could not be read (1)")
    assert errors_at < text.index("### Blocking findings")
    assert f"`{tmp_path / 'missing.yaml'}`" in text


def test_suppression_requests_are_listed(tmp_path: Path) -> None:
    path = write_privileged(tmp_path)
    text = render(with_suppression(scan([path]), str(path), reason="ask @bob"))
    assert "Suppression requests (1): reported to Security, never honoured" in text
    assert "`CKV_K8S_16`" in text
    assert "ask @&#8203;bob" in text  # no notification for bob


def test_hostile_strings_cannot_change_the_comment(tmp_path: Path) -> None:
    report = with_hostile_message(scan([hostile_manifest(tmp_path)]))
    report = dataclasses.replace(report, errors=(ScanError("evil|`x`.yaml", HOSTILE),))
    report = with_suppression(report, HOSTILE, reason=HOSTILE)
    text = render(report)
    for raw in ("\x1b", "\x00", "\x9b", "\u202e"):
        assert raw not in text
    # Every table row keeps its column count: no value adds a cell or ends a row.
    for line in text.splitlines():
        assert not line.startswith("## forged"), "a value forged a line"
    header_widths = {len(row) for row in table_rows(text)}
    assert header_widths <= {2, 5}, header_widths
    html = RENDERER.render(text)
    assert "<script>" not in html
    assert 'href="https://evil.example"' not in html
    # Outside code spans (where GitHub links nothing) a mention is split by a zero-width space.
    outside_code = re.sub(r"<code>.*?</code>", "", html, flags=re.DOTALL)
    assert "@security-team" not in outside_code
    assert "@&#8203;security-team" in text
    # The only raw tags are the ones we wrote.
    tags = set(re.findall(r"<(/?[a-z0-9]+)", html))
    assert tags <= {
        "h2",
        "h3",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "/h2",
        "/h3",
        "/table",
        "/thead",
        "/tbody",
        "/tr",
        "/th",
        "/td",
        "strong",
        "/strong",
        "code",
        "/code",
        "p",
        "/p",
        "details",
        "/details",
        "summary",
        "/summary",
        "ul",
        "/ul",
        "li",
        "/li",
        "br",
        "sub",
        "/sub",
        "blockquote",
        "/blockquote",
    }, tags


def test_code_spans_hold_any_backticks() -> None:
    html = RENDERER.render(md_code("a``b`"))
    assert "<code>a``b`</code>" in html
    assert RENDERER.render(md_code("``")).count("<code>") == 1
    cell = RENDERER.render("| x |\n|---|\n| " + md_code("p|q`r", in_table=True) + " |\n")
    assert "<code>p|q`r</code>" in cell


def test_prose_escaping_renders_back_to_the_text() -> None:
    value = "a*b*_c_ <i>x</i> [l](u) ~~s~~ $m$ &amp; \\ |"
    html = RENDERER.render(md_inline(value))
    assert html == "<p>" + value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") + "</p>\n"


def test_comment_fits_githubs_limit_and_says_what_it_left_out(tmp_path: Path) -> None:
    report = with_hostile_message(scan([write_privileged(tmp_path)]))
    (base,) = [f for f in report.findings if f.message.startswith("evil")]
    many = tuple(dataclasses.replace(base, fingerprint=f"{i:032x}") for i in range(1_000))
    report = dataclasses.replace(report, findings=(*privileged(report), *many))
    report = with_suppression(report, "deploy/pod.yaml")
    text = render(report)
    assert len(text.encode("utf-8")) <= GITHUB_COMMENT_LIMIT
    assert "Truncated to fit GitHub's 65,536-character comment limit" in text
    findings_part = text[text.index("### Blocking findings") :]  # the suppression table names the rule too
    shown = len([row for row in table_rows(findings_part) if "`pss.privileged`" in "|".join(row)])
    match = re.search(r"(\d+) findings not shown", text)
    assert match is not None
    assert shown + int(match.group(1)) == len(report.findings)
    assert text.count("<details>") == text.count("</details>")
    # What matters more than the 300th row survives the cut: how to fix, and the bypass attempts.
    assert "<details><summary>How to fix (1 rule)</summary>" in text
    assert "Remove securityContext.privileged" in text
    assert "Suppression requests (1)" in text


@pytest.mark.parametrize("limit", [3_000, 6_000, 12_000])
def test_smaller_budgets_are_honoured(tmp_path: Path, limit: int) -> None:
    report = with_hostile_message(scan([write_privileged(tmp_path)]), long_tail=200)
    (base,) = [f for f in report.findings if f.message.startswith("evil")]
    report = dataclasses.replace(
        report, findings=tuple(dataclasses.replace(base, fingerprint=f"{i:032x}") for i in range(200))
    )
    text = render(report, limit)
    assert len(text.encode("utf-8")) <= limit
    assert "findings not shown" in text


def test_small_report_is_not_truncated(tmp_path: Path) -> None:
    text = render(scan([write_privileged(tmp_path)]))
    assert "Truncated" not in text
    assert "| **CRITICAL** | `pss.privileged` |" in text
