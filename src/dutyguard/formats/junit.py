"""JUnit XML for CI test reports (GitLab ``artifacts:reports:junit``, Jenkins ``junit``).

Mapping, chosen so the CI's test counts agree with the gate:

- one ``<testsuite>`` per scanned file that has findings or errors, named after the file;
- one ``<testcase>`` per finding (rule × resource × field): a blocking finding has a
  ``<failure>``; a finding below the threshold passes and says so in ``<system-out>``;
- an input that could not be read is a test case with an ``<error>``;
- suppression requests are passing test cases in their own suite (visible, never a bypass);
- a ``dutyguard`` suite always holds a summary case, so a clean scan is never an empty
  report (Jenkins fails a build on an empty one).

XML 1.0 cannot carry most control characters even as references, so values go through
:func:`dutyguard.formats._text.xml_text` first; ElementTree escapes markup (``<``, ``&``,
``]]>`` cannot end anything: there is no CDATA).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence

from dutyguard.core.model import Finding, ScanError, ScanReport, SuppressionRequest
from dutyguard.formats._text import clip, xml_text
from dutyguard.formats.interface import FormatContext, Formatter

_ATTR_CHARS = 1_000
"""Attributes are shown in one line by every viewer; bodies keep the full text."""


def _attr(value: str) -> str:
    return clip(xml_text(value), _ATTR_CHARS)


def _element(parent: ET.Element, tag: str, **attrs: str) -> ET.Element:
    return ET.SubElement(parent, tag, {k: _attr(v) for k, v in attrs.items()})


def _case_name(f: Finding) -> str:
    loc = f.location
    ident = "/".join(p for p in (loc.namespace, loc.name) if p)
    what = " ".join(p for p in (loc.kind, ident) if p)
    if loc.container:
        what += f" container {loc.container}"
    if loc.field:
        what += f" {loc.field}"
    return f"[{f.severity.value.upper()}] {f.title}: {what.strip() or loc.file}"


def _details(f: Finding, blocking: bool) -> str:
    loc = f.location
    lines = [
        f"rule: {f.rule_id} ({f.title})",
        f"severity: {f.severity.value}{' (blocking)' if blocking else _not_blocking(f)}",
        f"message: {f.message}",
        f"location: {loc.file}{'' if loc.line is None else f':{loc.line}'}",
    ]
    for key in ("kind", "namespace", "name", "container", "field"):
        value = getattr(loc, key)
        if value:
            lines.append(f"{key}: {value}")
    lines += [
        f"remediation: {f.remediation}",
        f"controls: {', '.join(f.controls)}",
        f"fingerprint: {f.fingerprint}",
    ]
    return xml_text("\n".join(lines))


def _not_blocking(f: Finding) -> str:
    if f.waiver is None:
        return " (below the fail-on threshold)"
    until = f.waiver.expires.strftime("%Y-%m-%dT%H:%M:%SZ")
    return f" (waived by approved exception {f.waiver.exception_id} until {until})"


class _Suite:
    def __init__(self, parent: ET.Element, name: str) -> None:
        self.element = _element(parent, "testsuite", name=name)
        self.tests = self.failures = self.errors = 0

    def case(self, classname: str, name: str, file: str | None = None, line: int | None = None) -> ET.Element:
        self.tests += 1
        attrs = {"classname": classname, "name": name, "time": "0"}
        if file is not None:
            attrs["file"] = file
        if line is not None:
            attrs["line"] = str(line)
        return _element(self.element, "testcase", **attrs)

    def finish(self) -> None:
        for key, value in (("tests", self.tests), ("failures", self.failures), ("errors", self.errors)):
            self.element.set(key, str(value))
        self.element.set("skipped", "0")
        self.element.set("time", "0")


def _finding_cases(suite: _Suite, findings: Sequence[Finding], report: ScanReport) -> None:
    for f in findings:
        blocking = report.is_blocking(f)
        case = suite.case(f.rule_id, _case_name(f), f.location.file, f.location.line)
        if blocking:
            suite.failures += 1
            failure = _element(case, "failure", message=f.message, type=f.severity.value)
            failure.text = _details(f, blocking)
        else:
            out = ET.SubElement(case, "system-out")
            out.text = _details(f, blocking)


def _error_cases(suite: _Suite, errors: Sequence[ScanError]) -> None:
    for e in errors:
        case = suite.case("dutyguard.input", f"read {e.source}", e.source)
        suite.errors += 1
        error = _element(case, "error", message=e.message, type="input-error")
        error.text = xml_text(e.message)


def _suppression_cases(suite: _Suite, requests: Sequence[SuppressionRequest]) -> None:
    for s in requests:
        targets = ", ".join(s.targets) or "every rule"
        case = suite.case(
            "dutyguard.suppression-request", f"{s.syntax} for {targets} (not honoured)", s.file, s.line
        )
        out = ET.SubElement(case, "system-out")
        lines = [
            f"{s.file}:{s.line}: {s.syntax} suppression request for {targets}",
            f"matched rules: {', '.join(s.matched_rules) or '-'}",
            f"reason: {s.reason or '-'}",
            f"text: {s.text}",
            "Inline suppressions are reported to Security and never honoured; only an approved exception waives a finding.",
        ]
        out.text = xml_text("\n".join(lines))


class JUnitFormatter(Formatter):
    def render(self, report: ScanReport, ctx: FormatContext) -> str:
        root = ET.Element("testsuites", {"name": "dutyguard"})
        suites: list[_Suite] = []

        summary = _Suite(root, "dutyguard")
        suites.append(summary)
        decision = {0: "pass", 1: "fail", 2: "error"}[report.exit_code]
        case = summary.case("dutyguard", f"policy gate: {decision} (fail on {report.fail_on.value})")
        out = ET.SubElement(case, "system-out")
        counts = report.counts()
        out.text = xml_text(
            "\n".join(
                [
                    f"decision: {decision} (exit {report.exit_code})",
                    f"findings: {len(report.findings)} ("
                    + ", ".join(f"{k} {v}" for k, v in counts.items())
                    + f"), blocking: {len(report.blocking)}",
                    f"scanned: {report.stats.files} files, {report.stats.resources} resources, "
                    f"{report.stats.skipped} skipped",
                    f"suppression requests: {len(report.suppression_requests)} (never honoured)",
                    f"errors: {len(report.errors)}",
                    f"policy: {report.policy_source}, PSS {report.pss_level}",
                    f"dutyguard {ctx.tool_version}",
                ]
            )
        )

        by_file: dict[str, list[Finding]] = {}
        for f in report.findings:
            by_file.setdefault(f.location.file, []).append(f)
        errors_by_file: dict[str, list[ScanError]] = {}
        for e in report.errors:
            errors_by_file.setdefault(e.source, []).append(e)
        for file in sorted(set(by_file) | set(errors_by_file)):
            suite = _Suite(root, file)
            suites.append(suite)
            _error_cases(suite, errors_by_file.get(file, []))
            _finding_cases(suite, by_file.get(file, []), report)

        if report.suppression_requests:
            suite = _Suite(root, "suppression requests")
            suites.append(suite)
            _suppression_cases(suite, report.suppression_requests)

        for s in suites:
            s.finish()
        root.set("tests", str(sum(s.tests for s in suites)))
        root.set("failures", str(sum(s.failures for s in suites)))
        root.set("errors", str(sum(s.errors for s in suites)))
        root.set("time", "0")
        ET.indent(root)
        return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
