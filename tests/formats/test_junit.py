"""JUnit XML: parsed back with ElementTree; counts agree with the gate; hostile strings stay well-formed."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path

from dutyguard.core.model import ScanError, ScanReport, Severity
from dutyguard.core.policy import Policy
from dutyguard.formats.junit import JUnitFormatter
from tests.formats._reports import (
    CHECKOV_PRIVILEGED,
    HOSTILE,
    PRIVILEGED_LINE,
    ctx,
    hostile_manifest,
    privileged,
    scan,
    with_hostile_message,
    with_suppression,
    write_privileged,
)


def parse(report: ScanReport) -> ET.Element:
    text = JUnitFormatter().render(report, ctx())
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    return ET.fromstring(text.encode("utf-8"))


def suites(root: ET.Element) -> dict[str, ET.Element]:
    return {s.get("name", ""): s for s in root.findall("testsuite")}


def test_counts_agree_with_the_gate(shared_data: Path, tmp_path: Path) -> None:
    report = scan([shared_data / CHECKOV_PRIVILEGED, tmp_path / "missing.yaml"])
    root = parse(report)
    assert root.tag == "testsuites"
    assert int(root.get("failures", "-1")) == len(report.blocking)
    assert int(root.get("errors", "-1")) == len(report.errors) == 1
    cases = root.findall("testsuite/testcase")
    # one per finding, one per unreadable input, one summary
    assert int(root.get("tests", "-1")) == len(cases) == len(report.findings) + 1 + 1
    for suite in root.findall("testsuite"):
        assert int(suite.get("tests", "-1")) == len(suite.findall("testcase"))
        assert int(suite.get("failures", "-1")) == len(suite.findall("testcase/failure"))
        assert int(suite.get("errors", "-1")) == len(suite.findall("testcase/error"))


def test_privileged_findings_are_failures_in_their_files_suite(shared_data: Path) -> None:
    fixtures = shared_data / CHECKOV_PRIVILEGED
    root = parse(scan([fixtures]))
    by_name = suites(root)
    daemonset = by_name[str(fixtures / "privilegedDaemonSet-FAILED.yaml")]
    (case,) = [c for c in daemonset.findall("testcase") if c.get("classname") == "pss.privileged"]
    assert "DaemonSet privileged" in case.get("name", "")
    assert case.get("file") == str(fixtures / "privilegedDaemonSet-FAILED.yaml")
    failure = case.find("failure")
    assert failure is not None
    assert failure.get("type") == "critical"
    assert "busybox" in failure.get("message", "")
    assert "remediation: " in (failure.text or "")
    # The passing nginx Deployment has no pss.privileged case at all.
    nginx = by_name.get(str(fixtures / "nginx-deployment-PASSED.yaml"))
    assert nginx is None or not [
        c for c in nginx.findall("testcase") if c.get("classname") == "pss.privileged"
    ]


def test_finding_below_threshold_passes_and_says_why(tmp_path: Path) -> None:
    policy = Policy(
        enabled_rules=frozenset({"pss.privileged"}), severity_overrides={"pss.privileged": Severity.MEDIUM}
    )
    path = write_privileged(tmp_path)
    root = parse(scan([path], policy))
    (case,) = suites(root)[str(path)].findall("testcase")
    assert case.find("failure") is None
    assert case.get("line") == str(PRIVILEGED_LINE)
    out = case.find("system-out")
    assert out is not None
    assert "below the fail-on threshold" in (out.text or "")
    assert root.get("failures") == "0"


def test_unreadable_input_is_an_error_case(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    root = parse(scan([missing]))
    (case,) = suites(root)[str(missing)].findall("testcase")
    error = case.find("error")
    assert error is not None
    assert error.get("type") == "input-error"
    assert "no such file" in error.get("message", "")


def test_clean_scan_is_never_an_empty_report(tmp_path: Path) -> None:
    report = dataclasses.replace(scan([write_privileged(tmp_path)]), findings=())
    root = parse(report)
    (case,) = root.findall("testsuite/testcase")
    assert case.get("name", "").startswith("policy gate: pass")
    assert root.get("tests") == "1"
    assert root.get("failures") == "0"


def test_suppression_requests_are_visible_passing_cases(tmp_path: Path) -> None:
    path = write_privileged(tmp_path)
    root = parse(with_suppression(scan([path]), str(path)))
    (case,) = suites(root)["suppression requests"].findall("testcase")
    assert case.find("failure") is None
    assert "not honoured" in case.get("name", "")
    assert "CKV_K8S_16" in case.get("name", "")
    assert "never honoured" in (case.findtext("system-out") or "")


def test_hostile_strings_give_well_formed_xml(tmp_path: Path) -> None:
    report = with_hostile_message(scan([hostile_manifest(tmp_path)]))
    report = dataclasses.replace(report, errors=(ScanError("evil]]>\x00<x>.yaml", HOSTILE),))
    text = JUnitFormatter().render(report, ctx())
    for raw in ("\x1b", "\x00", "\x9b", "\x07"):
        assert raw not in text, f"{raw!r} is not allowed in XML 1.0"
    assert "]]>" not in text  # escaped as ]]&gt; (ElementTree), there is no CDATA to close
    root = ET.fromstring(text.encode("utf-8"))  # well-formed despite everything
    messages = [f.get("message", "") for f in root.iter("failure")]
    hostile = [m for m in messages if m.startswith("evil")]
    assert hostile, messages
    # Markup survives as text; control characters are shown, not dropped.
    assert "|`x`<script>alert(1)</script>&amp;]]>\\x00" in hostile[0]
    assert "\n## forged heading" in hostile[0]  # attributes keep newlines (as &#10;)
    error = next(root.iter("error"))
    expected = HOSTILE
    for gone in ("\x1b[2J", "\x1b]0;pwned\x07", "\x9b2J"):  # escape sequences are removed
        expected = expected.replace(gone, "")
    expected = expected.replace("\x00", "\\x00").replace("\u202e", "\\u202e")  # other controls are shown
    assert error.get("message") == expected
    assert suites(root)["evil]]>\\x00<x>.yaml"] is not None


def test_very_long_message_is_clipped_in_the_attribute_only(tmp_path: Path) -> None:
    report = with_hostile_message(scan([write_privileged(tmp_path)]), long_tail=50_000)
    root = parse(report)
    (failure,) = [f for f in root.iter("failure") if f.get("message", "").startswith("evil")]
    assert len(failure.get("message", "")) <= 1_000
    assert "chars)" in failure.get("message", "")
    assert "A" * 50_000 in (failure.text or "")


def test_privileged_finding_detail_is_complete(tmp_path: Path) -> None:
    path = write_privileged(tmp_path)
    report = scan([path], Policy(enabled_rules=frozenset({"pss.privileged"})))
    (f,) = privileged(report)
    root = parse(report)
    failure = next(root.iter("failure"))
    body = failure.text or ""
    for expected in (
        f"location: {path}:{PRIVILEGED_LINE}",
        "field: spec.containers[0].securityContext.privileged",
        f"fingerprint: {f.fingerprint}",
        "controls: pss:privileged",
    ):
        assert expected in body
