"""Real scan reports for the formatter tests, and the hostile strings every format must survive."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from dutyguard.core.model import Finding, ScanReport, Severity, SuppressionRequest
from dutyguard.core.policy import Policy
from dutyguard.formats.interface import FormatContext
from dutyguard.rules import default_registry
from tests.conftest import make_scanner

PRIVILEGED_POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: prod
spec:
  containers:
    - name: app
      image: registry.example.com/web:1.0
      securityContext:
        privileged: true
"""
PRIVILEGED_LINE = 11

CHECKOV_PRIVILEGED = "checkov/tests/kubernetes/checks/example_PrivilegedContainers"
"""Checkov's CKV_K8S_16 fixtures: a privileged DaemonSet and Pod (FAILED), an nginx Deployment (PASSED)."""

HOSTILE = (
    "evil\x1b[2J\x1b]0;pwned\x07|`x`<script>alert(1)</script>&amp;]]>\x00\x9b2J"
    "\n## forged heading @security-team https://evil.example [click](https://evil.example) \u202eRTL"
)
"""Escape sequences (clear screen, window title, 8-bit CSI), markdown/HTML/XML metacharacters,
a CDATA terminator, NUL, a newline that tries to forge a line, a mention, links, a bidi override."""

HOSTILE_YAML_NAME = r"evil\e[2J\e]0;pwned\a|`x`<script>&]]>\0\x9b2J\n## forged @security-team \u202eRTL"
"""The same attack written as a YAML double-quoted scalar, so it arrives through the real loader."""


def ctx(color: bool = False) -> FormatContext:
    return FormatContext(registry=default_registry(), color=color)


def write_privileged(directory: Path, name: str = "pod.yaml") -> Path:
    path = directory / name
    path.write_text(PRIVILEGED_POD, encoding="utf-8")
    return path


def scan(paths: list[Path | str], policy: Policy | None = None) -> ScanReport:
    return make_scanner(policy).scan([str(p) for p in paths])


def privileged(report: ScanReport) -> list[Finding]:
    return [f for f in report.findings if f.rule_id == "pss.privileged"]


def hostile_manifest(directory: Path) -> Path:
    path = directory / "hostile.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n"
        f'  name: "{HOSTILE_YAML_NAME}"\n'
        f'  namespace: "ns{HOSTILE_YAML_NAME}"\n'
        "spec:\n  containers:\n"
        f'    - name: "c{HOSTILE_YAML_NAME}"\n'
        "      image: nginx\n      securityContext:\n        privileged: true\n",
        encoding="utf-8",
    )
    return path


def with_hostile_message(report: ScanReport, long_tail: int = 5_000) -> ScanReport:
    """The real report, plus a finding whose message, title and field are hostile and very long.

    Rules quote scanned values in messages (the secret rules quote file content), so a message
    is as attacker-controlled as a name.
    """
    base = privileged(report)[0]
    evil = dataclasses.replace(
        base,
        message=HOSTILE + "A" * long_tail,
        location=dataclasses.replace(base.location, field=HOSTILE, line=None),
        fingerprint="f" * 32,
    )
    return dataclasses.replace(report, findings=(*report.findings, evil))


def with_suppression(report: ScanReport, file: str, reason: str = "legacy, ask @bob") -> ScanReport:
    request = SuppressionRequest(
        file=file,
        line=3,
        syntax="checkov:skip",
        targets=("CKV_K8S_16",),
        matched_rules=("pss.privileged",),
        reason=reason,
        text="# checkov:skip=CKV_K8S_16: " + reason,
    )
    return dataclasses.replace(report, suppression_requests=(*report.suppression_requests, request))


def mixed_severities(report: ScanReport) -> ScanReport:
    """Adds a low-severity copy of each privileged finding (what a policy override produces)."""
    extra = [
        dataclasses.replace(
            f, severity=Severity.LOW, fingerprint=f.fingerprint[::-1], message="low: " + f.message
        )
        for f in privileged(report)
    ]
    return dataclasses.replace(report, findings=(*report.findings, *extra))
