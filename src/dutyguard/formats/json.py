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

from dutyguard.core.model import Finding, ScanReport, Severity, SuppressionRequest
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


_encode_str = json.encoder.encode_basestring
"""The C string encoder ``json.dumps(..., ensure_ascii=False)`` itself uses."""


def _str(value: str) -> str:
    """One JSON string, hardened (:func:`harden_json` acts on characters inside strings only,
    so hardening each string is hardening the text; ``isascii`` is O(1) in CPython)."""
    text = _encode_str(value)
    if value.isascii() and "\x7f" not in value:
        return text
    return harden_json(text)


def _opt(value: str | None) -> str:
    return "null" if value is None else _str(value)


def _strings(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(map(_str, values)) + "]"


_SEVERITY_TEXT = {s: s.value for s in Severity}  # Enum.value is a descriptor call: 14,000 of them add up


class _FindingEncoder:
    """``harden_json(json.dumps(finding_to_dict(f, report), ensure_ascii=False))``, character for
    character, at a fraction of the cost: what a rule says about every finding (title,
    remediation, controls, tags) is encoded once per rule, where a resource is once per resource,
    and repeated values (field paths, container names) once each (a test holds the two equal)."""

    def __init__(self) -> None:
        self._rules: dict[tuple[str, str, str, tuple[str, ...], tuple[str, ...]], tuple[str, str, str]] = {}
        self._places: dict[tuple[str, str | None, str | None, str | None], tuple[str, str]] = {}
        self._values: dict[str | None, str] = {None: "null"}

    def _value(self, value: str | None) -> str:
        text = self._values.get(value)
        if text is None:
            assert value is not None
            text = self._values[value] = _str(value)
        return text

    def encode(self, f: Finding, blocking: bool) -> str:
        rule = (f.rule_id, f.title, f.remediation, f.controls, f.tags)
        parts = self._rules.get(rule)
        if parts is None:
            parts = self._rules[rule] = (
                f'{{"rule_id": {_str(f.rule_id)}, "title": {_str(f.title)}, "severity": "',
                f', "remediation": {_str(f.remediation)}, "controls": {_strings(f.controls)}, "location": ',
                f', "tags": {_strings(f.tags)}, "waiver": ',
            )
        head, middle, tail = parts
        severity = _SEVERITY_TEXT[f.severity]
        loc = f.location
        where = (loc.file, loc.kind, loc.namespace, loc.name)
        place = self._places.get(where)
        if place is None:
            place = self._places[where] = (
                f'{{"file": {_str(loc.file)}, "line": ',
                f', "kind": {_opt(loc.kind)}, "namespace": {_opt(loc.namespace)}, "name": {_opt(loc.name)}, '
                '"container": ',
            )
        waiver = (
            "null" if f.waiver is None else harden_json(json.dumps(waiver_to_dict(f), ensure_ascii=False))
        )
        return (
            f'{head}{severity}", "message": {_str(f.message)}{middle}'
            f"{place[0]}{'null' if loc.line is None else int(loc.line)}{place[1]}"
            f'{self._value(loc.container)}, "field": {self._value(loc.field)}}}, '
            f'"fingerprint": {_str(f.fingerprint)}{tail}{waiver}, "blocking": {"true" if blocking else "false"}}}'
        )


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


def report_to_dict(report: ScanReport, ctx: FormatContext, with_findings: bool = True) -> dict[str, Any]:
    """The report as JSON values; ``with_findings=False`` leaves ``findings`` empty (for callers
    that encode them row by row)."""
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
        "findings": [finding_to_dict(f, report) for f in report.findings] if with_findings else [],
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


def dumps_report(value: dict[str, Any], encoded: dict[str, list[str]] | None = None) -> str:
    """Like :func:`dumps`, but each element of a top-level list on one compact line.

    Readable and diffable (one finding per line), and fast: ``json.dumps`` with ``indent`` runs
    the pure-Python encoder, which spent most of a 14,000-finding scan's time; without it the C
    encoder does the work. ``encoded`` gives rows already encoded and hardened for some keys
    (hardening an 11 MB report in one pass of regular expressions took 50 ms).
    """
    # One join at the end: with 14,000 rows (11 MB, two bytes a character once any is non-ASCII)
    # every intermediate copy of the text costs milliseconds.
    pieces = ["{\n"]
    encode = json.JSONEncoder(ensure_ascii=False).encode
    for n, (key, item) in enumerate(value.items()):
        if n:
            pieces.append(",\n")
        head = f"  {json.dumps(key, ensure_ascii=False)}: "
        rows_of = encoded.get(key) if encoded else None
        if rows_of is None and isinstance(item, list) and item:
            rows_of = [harden_json(encode(v)) for v in item]
        if rows_of:
            pieces += (head, "[\n    ", ",\n    ".join(rows_of), "\n  ]")
        else:
            body = json.dumps(item, indent=2, ensure_ascii=False).replace("\n", "\n  ")
            pieces.append(harden_json(head + body))
    pieces.append("\n}\n")
    return "".join(pieces)


class JsonFormatter(Formatter):
    def render(self, report: ScanReport, ctx: FormatContext) -> str:
        encode = _FindingEncoder().encode
        is_blocking = report.is_blocking
        rows = [encode(f, is_blocking(f)) for f in report.findings]
        return dumps_report(report_to_dict(report, ctx, with_findings=False), {"findings": rows})
