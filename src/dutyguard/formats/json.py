"""JSON output. The schema is documented in docs/json-schema.md and versioned by ``schema``."""

from __future__ import annotations

import json
from typing import Any

from dutyguard.core.model import Finding, ScanReport, SuppressionRequest
from dutyguard.formats.interface import FormatContext, Formatter

SCHEMA = "https://dutyguard.dev/schema/scan-report/v1"


def finding_to_dict(f: Finding) -> dict[str, Any]:
    loc = f.location
    return {
        "rule_id": f.rule_id,
        "title": f.title,
        "severity": f.severity.value,
        "message": f.message,
        "remediation": f.remediation,
        "controls": list(f.controls),
        "location": {
            "file": loc.file,
            "line": loc.line,
            "kind": loc.kind,
            "namespace": loc.namespace,
            "name": loc.name,
            "container": loc.container,
            "field": loc.field,
        },
        "fingerprint": f.fingerprint,
    }


def suppression_to_dict(s: SuppressionRequest) -> dict[str, Any]:
    return {
        "file": s.file,
        "line": s.line,
        "syntax": s.syntax,
        "targets": list(s.targets),
        "matched_rules": list(s.matched_rules),
        "reason": s.reason,
        "text": s.text,
        "honoured": False,
    }


def report_to_dict(report: ScanReport, ctx: FormatContext) -> dict[str, Any]:
    return {
        "schema": SCHEMA,
        "tool": {"name": "dutyguard", "version": ctx.tool_version},
        "policy": {
            "source": report.policy_source,
            "pss_level": report.pss_level,
            "fail_on": report.fail_on.value,
        },
        "summary": {
            "decision": {0: "pass", 1: "fail", 2: "error"}[report.exit_code],
            "exit_code": report.exit_code,
            "files": report.stats.files,
            "resources": report.stats.resources,
            "skipped": report.stats.skipped,
            "findings": len(report.findings),
            "blocking": len(report.blocking),
            "by_severity": report.counts(),
            "suppression_requests": len(report.suppression_requests),
            "errors": len(report.errors),
        },
        "findings": [finding_to_dict(f) for f in report.findings],
        "suppression_requests": [suppression_to_dict(s) for s in report.suppression_requests],
        "errors": [{"source": e.source, "message": e.message} for e in report.errors],
    }


class JsonFormatter(Formatter):
    def render(self, report: ScanReport, ctx: FormatContext) -> str:
        return json.dumps(report_to_dict(report, ctx), indent=2, ensure_ascii=False) + "\n"
