"""JSON output: the machine-readable report.

The layout is a stable contract, versioned by ``schema``, described field by field in
``docs/output-formats.md`` and by the JSON Schema shipped as package data
(``dutyguard/data/scan-report.schema.json``, see :func:`load_schema`). Within one schema
version fields are only ever added, never renamed, retyped or removed.
"""

from __future__ import annotations

import json
from datetime import UTC
from typing import Any

from dutyguard.core.model import Finding, ScanReport, SuppressionRequest
from dutyguard.formats._text import harden_json
from dutyguard.formats.interface import FormatContext, Formatter

SCHEMA = "https://dutyguard.dev/schema/scan-report/v1"
SCHEMA_RESOURCE = "scan-report.schema.json"

DECISIONS = {0: "pass", 1: "fail", 2: "error"}


def finding_to_dict(f: Finding, report: ScanReport | None = None) -> dict[str, Any]:
    loc = f.location
    out: dict[str, Any] = {
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
        "tags": list(f.tags),
        "waiver": waiver_to_dict(f),
    }
    if report is not None:
        out["blocking"] = report.is_blocking(f)
    return out


def waiver_to_dict(f: Finding) -> dict[str, str] | None:
    """The approved exception that waives this finding (it is still reported, no longer blocking)."""
    if f.waiver is None:
        return None
    return {
        "exception_id": f.waiver.exception_id,
        "expires": f.waiver.expires.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
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
            "decision": DECISIONS[report.exit_code],
            "exit_code": report.exit_code,
            "files": report.stats.files,
            "resources": report.stats.resources,
            "skipped": report.stats.skipped,
            "findings": len(report.findings),
            "blocking": len(report.blocking),
            "waived": len(report.waived),
            "by_severity": report.counts(),
            "suppression_requests": len(report.suppression_requests),
            "errors": len(report.errors),
        },
        "findings": [finding_to_dict(f, report) for f in report.findings],
        "suppression_requests": [suppression_to_dict(s) for s in report.suppression_requests],
        "errors": [{"source": e.source, "message": e.message} for e in report.errors],
    }


def dumps(value: object) -> str:
    """JSON text that is valid UTF-8 and harmless when printed (see :func:`harden_json`)."""
    return harden_json(json.dumps(value, indent=2, ensure_ascii=False)) + "\n"


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) every report of this version validates against."""
    from importlib.resources import files

    text = files("dutyguard").joinpath("data", SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def dumps_report(value: dict[str, Any]) -> str:
    """Like :func:`dumps`, but each element of a top-level list on one compact line.

    Readable and diffable (one finding per line), and fast: ``json.dumps`` with ``indent`` runs
    the pure-Python encoder, which spent most of a 14,000-finding scan's time; without it the C
    encoder does the work.
    """
    parts = []
    for key, item in value.items():
        head = f"  {json.dumps(key, ensure_ascii=False)}: "
        if isinstance(item, list) and item:
            rows = ",\n".join("    " + json.dumps(v, ensure_ascii=False) for v in item)
            parts.append(f"{head}[\n{rows}\n  ]")
        else:
            body = json.dumps(item, indent=2, ensure_ascii=False).replace("\n", "\n  ")
            parts.append(head + body)
    return harden_json("{\n" + ",\n".join(parts) + "\n}") + "\n"


class JsonFormatter(Formatter):
    def render(self, report: ScanReport, ctx: FormatContext) -> str:
        return dumps_report(report_to_dict(report, ctx))
