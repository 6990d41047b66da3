"""A waived finding is still shown, in every output format, with the exception id and its expiry.

The report is a real scan of checkov's node-exporter DaemonSet at Pod Security baseline (five
blocking findings, docs in test_matcher.py) with one approved exception applied: it waives
pss.host-ports on line 33 and nothing else. Each format must keep that finding, say it is waived
by ``exc-ports`` until 2025-06-04, stop counting it as blocking, and leave the other four blocking.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import pytest

from dutyguard.core.model import ScanReport
from dutyguard.core.policy import Policy, PSSLevel
from dutyguard.exceptions.matcher import ExceptionMatcher, MatchContext
from dutyguard.formats.interface import FormatContext, OutputFormat
from dutyguard.policy.model import DEFAULT_EXCEPTION_POLICY
from dutyguard.rules import default_registry
from tests.conftest import make_scanner
from tests.trust.simulator import NOW, grant

NODE_EXPORTER = "checkov/tests/kubernetes/checks/example_HostPort/DS-node-exporter-FAILED.yaml"
EXPIRES = "2025-06-04T12:00:00Z"


@pytest.fixture(scope="module")
def report(shared_data: Path) -> ScanReport:
    scanner = make_scanner(Policy(pss_level=PSSLevel.BASELINE, enabled_rules=None))
    scanned = scanner.scan([str(shared_data / NODE_EXPORTER)])
    waiver = grant("exc-ports", "pss.host-ports", app="node-exporter", expires=NOW + timedelta(days=3))
    out = ExceptionMatcher((waiver,), DEFAULT_EXCEPTION_POLICY, MatchContext(app="node-exporter"), NOW).apply(
        scanned
    )
    assert [(f.rule_id, f.location.line) for f in out.waived] == [("pss.host-ports", 33)]
    assert len([f for f in out.blocking if f.rule_id.startswith("pss.")]) == 4
    return out


def render(report: ScanReport, fmt: OutputFormat) -> str:
    return fmt.to_formatter().render(report, FormatContext(registry=default_registry()))


def test_json_keeps_the_finding_with_its_waiver(report: ScanReport) -> None:
    doc = json.loads(render(report, OutputFormat.JSON))
    (waived,) = [f for f in doc["findings"] if f["waiver"] is not None]
    assert (waived["rule_id"], waived["location"]["line"], waived["blocking"]) == (
        "pss.host-ports",
        33,
        False,
    )
    assert waived["waiver"] == {"exception_id": "exc-ports", "expires": EXPIRES}
    assert doc["summary"]["waived"] == 1


def test_sarif_marks_it_accepted_externally_naming_the_exception(report: ScanReport) -> None:
    (run,) = json.loads(render(report, OutputFormat.SARIF))["runs"]
    suppressed = [r for r in run["results"] if r.get("suppressions")]
    (result,) = suppressed  # the only source of result.suppressions
    assert result["ruleId"] == "pss.host-ports"
    assert result["locations"][0]["physicalLocation"]["region"]["startLine"] == 33
    (suppression,) = result["suppressions"]
    assert (suppression["kind"], suppression["status"]) == ("external", "accepted")
    assert "exc-ports" in suppression["justification"] and EXPIRES in suppression["justification"]
    assert result["properties"]["waiver"] == {"exceptionId": "exc-ports", "expires": EXPIRES}
    assert result["properties"]["blocking"] is False
    # SARIF's level stays the severity's (error for high); the accepted suppression is what
    # viewers act on, and our own property says it does not block.
    blocking = {
        (r["ruleId"], r["locations"][0]["physicalLocation"]["region"]["startLine"])
        for r in run["results"]
        if r["properties"]["blocking"] and r["ruleId"].startswith("pss.")
    }
    assert blocking == {
        ("pss.host-namespaces", 53),
        ("pss.host-namespaces", 54),
        ("pss.host-path-volumes", 63),
        ("pss.host-path-volumes", 67),
    }


def _cases(xml: str) -> list[tuple[ET.Element, str]]:
    root = ET.fromstring(xml)
    out: list[tuple[ET.Element, str]] = []
    for case in root.iter("testcase"):
        text = " ".join(e.text or "" for e in case.iter() if e.tag in ("failure", "system-out"))
        out.append((case, text))
    return out


def test_junit_passes_it_with_the_exception_in_the_details(report: ScanReport) -> None:
    cases = _cases(render(report, OutputFormat.JUNIT))
    waived = [(c, t) for c, t in cases if "waived by approved exception exc-ports" in t]
    assert len(waived) == 1
    case, text = waived[0]
    assert case.find("failure") is None
    assert f"until {EXPIRES}" in text
    assert (case.get("classname"), case.get("line")) == ("pss.host-ports", "33")
    failing = {(c.get("classname"), c.get("line")) for c, _ in cases if c.find("failure") is not None}
    assert {f for f in failing if str(f[0]).startswith("pss.")} == {
        ("pss.host-namespaces", "53"),
        ("pss.host-namespaces", "54"),
        ("pss.host-path-volumes", "63"),
        ("pss.host-path-volumes", "67"),
    }


def test_markdown_lists_it_as_waived(report: ScanReport) -> None:
    text = render(report, OutputFormat.MARKDOWN)
    (row,) = [line for line in text.splitlines() if "**waived**" in line]
    assert "exc-ports" in row and "2025-06-04" in row and "pss.host-ports" in row


def test_table_marks_it_waived(report: ScanReport, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "120")  # the table fits the terminal; CI's differs from a laptop's
    lines = render(report, OutputFormat.TABLE).splitlines()
    (i,) = [n for n, line in enumerate(lines) if "(waived)" in line]
    assert lines[i].split()[:4] == ["HIGH", "(waived)", "33", "pss.host-ports"]
    # The message and object columns wrap onto continuation lines, side by side.
    cell = " ".join(" ".join(lines[i : i + 4]).split())
    assert "[waived by exception exc-ports" in cell and "until 2025-06-04]" in cell
    assert "Waived 1 (approved exceptions; still shown above)" in " ".join(" ".join(lines).split())


@pytest.mark.parametrize("fmt", list(OutputFormat), ids=lambda f: f.value)
def test_a_waiver_is_never_dropped_silently(report: ScanReport, fmt: OutputFormat) -> None:
    # Whatever the format, the exception id is in the output: a reader sees what was waived.
    assert "exc-ports" in render(report, fmt)
