"""The table for people: grouping, summary, and a terminal no manifest can repaint."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from dutyguard.core.model import ScanError, SuppressionRequest
from dutyguard.formats.table import TableFormatter
from tests.formats._reports import (
    CHECKOV_PRIVILEGED,
    HOSTILE,
    PRIVILEGED_LINE,
    ctx,
    hostile_manifest,
    mixed_severities,
    scan,
    with_hostile_message,
    with_suppression,
    write_privileged,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
"""SGR (colour) sequences: the only escape sequences the table itself may print."""


def render(report, color: bool = False, width: int = 140) -> str:  # type: ignore[no-untyped-def]
    return TableFormatter(width=width).render(report, ctx(color=color))


def test_colour_off_prints_no_escape_sequences(shared_data: Path) -> None:
    text = render(scan([shared_data / CHECKOV_PRIVILEGED]))
    assert "\x1b" not in text
    assert "CRITICAL *" in text
    assert "pss.privileged" in text


def test_colour_on_uses_only_colour_sequences(tmp_path: Path) -> None:
    text = render(scan([write_privileged(tmp_path)]), color=True)
    assert ANSI.search(text), "expected colour"
    assert "\x1b" not in ANSI.sub("", text)


def test_grouped_by_file_then_severity(shared_data: Path, tmp_path: Path) -> None:
    fixtures = shared_data / CHECKOV_PRIVILEGED
    mine = write_privileged(tmp_path)
    report = mixed_severities(scan([mine, fixtures]))
    text = render(report)
    lines = text.splitlines()
    daemonset = lines.index(str(fixtures / "privilegedDaemonSet-FAILED.yaml"))
    pod = lines.index(str(fixtures / "privilegedPod-FAILED.yaml"))
    own = lines.index(str(mine))
    assert daemonset < pod  # files in order, each heading once
    assert sum(1 for line in lines if line == str(mine)) == 1
    section = lines[own + 1 :]
    # A file's table ends at the first blank line; whatever follows (another file, "How to fix") is not its own.
    section = section[: section.index("")]
    section = [line for line in section if "pss.privileged" in line]
    assert section[0].startswith("CRITICAL *")
    assert f" {PRIVILEGED_LINE} " in section[0]
    assert section[-1].startswith("LOW")  # below the threshold: no blocking mark
    assert "LOW *" not in text


def test_summary_shows_counts_policy_and_decision(tmp_path: Path) -> None:
    path = write_privileged(tmp_path)
    report = with_suppression(scan([path, tmp_path / "missing.yaml"]), str(path))
    text = render(report)
    summary = text[text.index("Decision") :]
    assert re.search(r"Decision\s+ERROR: 1 input could not be read \(exit 2\)", summary)
    counts = report.counts()
    assert f"critical {counts['critical']} · high {counts['high']}" in summary
    assert re.search(rf"Blocking\s+{len(report.blocking)} \(fail on high\)", summary)
    assert re.search(r"Scanned\s+1 file, \d+ resources?", summary)
    assert re.search(r"Suppression requests\s+1 \(reported, never honoured\)", summary)
    assert re.search(r"Errors\s+1", summary)
    assert "built-in default policy (unsigned)" in summary
    assert "missing.yaml: no such file or directory" in text
    assert "checkov:skip → CKV_K8S_16" in text


def test_passing_scan_says_so(tmp_path: Path) -> None:
    report = dataclasses.replace(scan([write_privileged(tmp_path)]), findings=())
    text = render(report)
    assert re.search(r"Decision\s+PASS: nothing at or above high \(exit 0\)", text)
    assert "How to fix" not in text


def test_remediation_listed_once_per_rule(shared_data: Path) -> None:
    text = render(scan([shared_data / CHECKOV_PRIVILEGED]))
    assert len(re.findall(r"pss\.privileged\s+Remove securityContext\.privileged", text)) == 1


def test_manifest_cannot_repaint_the_terminal(tmp_path: Path) -> None:
    report = with_hostile_message(scan([hostile_manifest(tmp_path)]))
    report = dataclasses.replace(
        report,
        errors=(ScanError("evil\x1b[2J.yaml", HOSTILE),),
        suppression_requests=(
            SuppressionRequest(
                file="x\x1b]0;t\x07", line=1, syntax="#trivy:ignore", targets=(), reason=HOSTILE
            ),
        ),
    )
    for color in (False, True):
        text = render(report, color=color)
        residue = ANSI.sub("", text) if color else text
        assert "\x1b" not in residue, "an escape sequence from the input reached the terminal"
        for raw in ("\x07", "\x00", "\x9b", "\u202e"):
            assert raw not in text
        # The clear-screen and window-title sequences in the name are removed, not shown. (Other
        # rules may quote the name with repr(), which is harmless text.)
        assert "evil|`x`<script>" in residue
        # Controls that are not escape sequences are shown, so the reader sees something odd.
        assert "\\x00" in residue
        assert "\\u202e" in residue
        # A newline in a value cannot forge a line of the report.
        assert not any(line.startswith("## forged") for line in residue.splitlines())


def test_very_long_values_are_clipped(tmp_path: Path) -> None:
    report = with_hostile_message(scan([write_privileged(tmp_path)]), long_tail=100_000)
    text = render(report)
    assert "A" * 3_000 not in text.replace("\n", "").replace(" ", "")
    assert "chars)" in text
