"""SARIF 2.1.0 for GitHub code scanning (and any other SARIF consumer).

Choices, each documented in ``docs/output-formats.md``:

- One result per finding. ``ruleId`` is our rule id and ``partialFingerprints`` carries our
  line-independent fingerprint, so an alert follows its resource when lines move.
- ``level`` is ``error`` for a finding that blocks the gate, else derived from severity;
  ``security-severity`` (what GitHub ranks security alerts by) is set on the rule.
- Inline suppression requests are **not** written as ``result.suppressions``. A suppression
  without a status, or with ``accepted``, hides a result in SARIF viewers, and several
  consumers (GitHub upload post-processing scripts, the ``dismiss-alerts`` action) treat any
  non-empty ``suppressions`` array as "dismiss", whatever its status. Nothing a developer
  writes in a file may hide a finding, so suppression requests are reported as
  ``toolConfigurationNotifications`` (an attempt to configure the tool from the source) and
  listed in the properties of the results they target.
- A finding waived by an exception Security approved keeps its result, with an ``external``
  suppression whose status is ``accepted`` and whose justification names the exception and its
  expiry (the standard way to say "reviewed and accepted elsewhere"); ``properties.waiver``
  carries the same. This is the only source of ``result.suppressions``.
- Inputs that could not be read are ``toolExecutionNotifications`` at level ``error`` and make
  ``executionSuccessful`` false.
- GitHub rejects a run with more than 25,000 results: past that, the least severe results are
  left out and a notification says how many.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import quote

from dutyguard.core.model import Finding, ScanReport, Severity, SuppressionRequest
from dutyguard.core.rule import RuleMeta
from dutyguard.formats._text import harden_json
from dutyguard.formats.interface import FormatContext, Formatter

SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
INFORMATION_URI = "https://dutyguard.dev"
SRCROOT = "%SRCROOT%"
FINGERPRINT_KEY = "dutyguard/v1"
"""Our key in ``partialFingerprints``; the version changes only if the fingerprint recipe does."""

MAX_RESULTS = 25_000
"""GitHub's hard limit on results per run."""
MAX_TAGS = 10
"""GitHub keeps at most 10 tags per rule (and rejects more than 20)."""

SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
}
"""GitHub's bands: >= 9.0 critical, 7.0-8.9 high, 4.0-6.9 medium, 0.1-3.9 low. Info has none."""

LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}

NOTIFICATIONS = (
    (
        "dutyguard.input-error",
        "Input could not be read",
        "An input could not be read or evaluated; the gate fails closed.",
    ),
    (
        "dutyguard.suppression-request",
        "Inline suppression request (not honoured)",
        "A suppression comment or file in the scanned source. dutyguard never obeys it; only an exception approved by Security can waive a finding.",
    ),
    (
        "dutyguard.results-truncated",
        "Results left out",
        "More results than GitHub accepts in one run; the least severe were left out.",
    ),
)
_NOTIFICATION_INDEX = {n[0]: i for i, n in enumerate(NOTIFICATIONS)}

_KUSTOMIZE_SUFFIX = " (kustomize)"


def artifact_location(file: str, root: str) -> tuple[dict[str, Any], bool]:
    """The SARIF ``artifactLocation`` of an input, and whether its line numbers are the file's.

    Paths under ``root`` become URI-encoded relative references against ``%SRCROOT%`` (what
    GitHub needs to place an alert). A rendered kustomization points at its directory and has
    no usable lines (they count lines of the rendered output). Stdin has no URI of its own.
    """
    if file == "-":
        return {"uri": "stdin", "description": {"text": "standard input"}}, True
    lines_are_real = True
    if file.endswith(_KUSTOMIZE_SUFFIX):
        file = file[: -len(_KUSTOMIZE_SUFFIX)]
        lines_are_real = False
    path = os.path.normpath(os.path.join(root, file))
    rel = os.path.relpath(path, root) if _is_within(path, root) else None
    if rel is None:
        uri = "file://" + _encode(path.replace(os.sep, "/"))
        loc: dict[str, Any] = {"uri": uri}
    else:
        rel = rel.replace(os.sep, "/")
        if not lines_are_real and rel != ".":
            rel += "/"
        loc = {"uri": _encode(rel if rel != "." else "./"), "uriBaseId": SRCROOT}
    if not lines_are_real:
        loc["description"] = {"text": "output of kubectl kustomize for this directory"}
    return loc, lines_are_real


def _is_within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives, or mixing absolute and relative
        return False


def _encode(path: str) -> str:
    # Undecodable bytes in a file name (surrogate escapes) are encoded as the original bytes.
    raw = path.encode("utf-8", "surrogateescape")
    return quote(raw, safe="/")


def _message(text: str) -> dict[str, str]:
    """A plain-text SARIF message.

    SARIF viewers turn ``[text](destination)`` in a message into a link (SARIF 2.1.0
    §3.11.6); a scanned value must not smuggle a link into an alert, so when one could form,
    the brackets are escaped as the spec prescribes (``\\[``, ``\\]``).
    """
    if "](" in text:
        text = text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    return {"text": text or "(no message)"}


class SarifFormatter(Formatter):
    def __init__(self, root: str | None = None) -> None:
        self._root = root

    def render(self, report: ScanReport, ctx: FormatContext) -> str:
        # Compact: GitHub refuses files over 10 MB (gzipped); SARIF viewers lay it out themselves.
        doc = self.to_sarif(report, ctx)
        return harden_json(json.dumps(doc, separators=(",", ":"), ensure_ascii=False)) + "\n"

    def to_sarif(self, report: ScanReport, ctx: FormatContext) -> dict[str, Any]:
        root = os.path.abspath(self._root or os.getcwd())
        kept = report.findings[:MAX_RESULTS]  # already most severe first
        dropped = len(report.findings) - len(kept)

        rule_ids: list[str] = []
        for f in kept:
            if f.rule_id not in rule_ids:
                rule_ids.append(f.rule_id)
        rule_index = {rid: i for i, rid in enumerate(rule_ids)}
        by_rule: dict[str, list[Finding]] = {rid: [] for rid in rule_ids}
        for f in kept:
            by_rule[f.rule_id].append(f)
        rules = [_rule_descriptor(rid, by_rule[rid], ctx) for rid in rule_ids]

        # Per file, computed once: where it is (path arithmetic) and which suppression requests
        # it holds (matching each finding against every request was quadratic).
        places: dict[str, tuple[dict[str, Any], bool]] = {}
        requests: dict[str, list[SuppressionRequest]] = {}
        for s in report.suppression_requests:
            requests.setdefault(s.file, []).append(s)
        results = []
        for f in kept:
            place = places.get(f.location.file)
            if place is None:
                place = places[f.location.file] = artifact_location(f.location.file, root)
            results.append(
                self._result(f, rule_index[f.rule_id], report, place, requests.get(f.location.file, ()))
            )

        execution = [self._input_error(e.source, e.message, root) for e in report.errors]
        if dropped:
            execution.append(
                _notification(
                    "dutyguard.results-truncated",
                    "warning",
                    f"{dropped} of {len(report.findings)} findings were left out of this SARIF file "
                    f"(GitHub accepts at most {MAX_RESULTS} results per run); the JSON report has all of them.",
                )
            )
        configuration = [self._suppression(s, root, rule_index) for s in report.suppression_requests]

        invocation: dict[str, Any] = {
            "executionSuccessful": not report.errors,
            "exitCode": report.exit_code,
            "toolExecutionNotifications": execution,
            "toolConfigurationNotifications": configuration,
        }
        run: dict[str, Any] = {
            "tool": {
                "driver": {
                    "name": "dutyguard",
                    "fullName": "dutyguard policy gate",
                    "version": ctx.tool_version,
                    "semanticVersion": ctx.tool_version,
                    "informationUri": INFORMATION_URI,
                    "rules": rules,
                    "notifications": [
                        {
                            "id": nid,
                            "name": _pascal(nid.split(".", 1)[1]),
                            "shortDescription": {"text": short},
                            "fullDescription": {"text": full},
                        }
                        for nid, short, full in NOTIFICATIONS
                    ],
                }
            },
            "invocations": [invocation],
            "results": results,
            "columnKind": "utf16CodeUnits",
            "properties": {
                "policy": {
                    "source": report.policy_source,
                    "pssLevel": report.pss_level,
                    "failOn": report.fail_on.value,
                },
                "summary": {
                    "decision": {0: "pass", 1: "fail", 2: "error"}[report.exit_code],
                    "files": report.stats.files,
                    "resources": report.stats.resources,
                    "findings": len(report.findings),
                    "blocking": len(report.blocking),
                    "suppressionRequests": len(report.suppression_requests),
                    "errors": len(report.errors),
                },
            },
        }
        return {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [run]}

    # --- pieces ---------------------------------------------------------------------------------
    def _result(
        self,
        f: Finding,
        index: int,
        report: ScanReport,
        place: tuple[dict[str, Any], bool],
        in_file: Sequence[SuppressionRequest],
    ) -> dict[str, Any]:
        loc = f.location
        blocking = report.is_blocking(f)
        artifact, lines_are_real = place
        physical: dict[str, Any] = {"artifactLocation": dict(artifact)}
        if lines_are_real and loc.line is not None and loc.line >= 1:
            physical["region"] = {"startLine": loc.line}
        location: dict[str, Any] = {"physicalLocation": physical}
        logical = _logical_location(f)
        if logical is not None:
            location["logicalLocations"] = [logical]

        properties: dict[str, Any] = {"severity": f.severity.value, "blocking": blocking}
        for key in ("kind", "namespace", "name", "container", "field"):
            value = getattr(loc, key)
            if value is not None:
                properties[key] = value
        requests = [s for s in in_file if _targets(s, f)]
        if requests:
            properties["suppressionRequests"] = [
                {"line": s.line, "syntax": s.syntax, "honoured": False} for s in requests
            ]
        suppressions: list[dict[str, Any]] = []
        if f.waiver is not None:
            expires = f.waiver.expires.strftime("%Y-%m-%dT%H:%M:%SZ")
            properties["waiver"] = {"exceptionId": f.waiver.exception_id, "expires": expires}
            suppressions.append(
                {
                    "kind": "external",
                    "status": "accepted",
                    "justification": f"waived by approved exception {f.waiver.exception_id} until {expires}",
                }
            )
        result: dict[str, Any] = {
            "ruleId": f.rule_id,
            "ruleIndex": index,
            "level": "error" if blocking else LEVEL[f.severity],
            "message": _message(f.message),
            "locations": [location],
            "partialFingerprints": {FINGERPRINT_KEY: f.fingerprint},
            "properties": properties,
        }
        if suppressions:
            result["suppressions"] = suppressions
        return result

    def _input_error(self, source: str, message: str, root: str) -> dict[str, Any]:
        note = _notification("dutyguard.input-error", "error", message)
        artifact, _ = artifact_location(source, root)
        note["locations"] = [{"physicalLocation": {"artifactLocation": artifact}}]
        return note

    def _suppression(self, s: SuppressionRequest, root: str, rule_index: dict[str, int]) -> dict[str, Any]:
        targets = ", ".join(s.targets) if s.targets else "every rule"
        text = f"{s.syntax} suppression request for {targets} is not honoured"
        if s.reason:
            text += f" (reason given: {s.reason})"
        note = _notification("dutyguard.suppression-request", "warning", text + ".")
        artifact, lines_are_real = artifact_location(s.file, root)
        physical: dict[str, Any] = {"artifactLocation": artifact}
        if lines_are_real and s.line >= 1:
            physical["region"] = {"startLine": s.line}
        note["locations"] = [{"physicalLocation": physical}]
        note["properties"] = {
            "syntax": s.syntax,
            "targets": list(s.targets),
            "matchedRules": list(s.matched_rules),
            "honoured": False,
        }
        matched = [r for r in s.matched_rules if r in rule_index]
        if len(matched) == 1:
            note["associatedRule"] = {"id": matched[0], "index": rule_index[matched[0]]}
        return note


def _notification(descriptor: str, level: str, text: str) -> dict[str, Any]:
    return {
        "descriptor": {"id": descriptor, "index": _NOTIFICATION_INDEX[descriptor]},
        "level": level,
        "message": _message(text),
    }


def _targets(s: SuppressionRequest, f: Finding) -> bool:
    if s.file != f.location.file:
        return False
    return not s.targets or f.rule_id in s.matched_rules or f.rule_id in s.targets


def _logical_location(f: Finding) -> dict[str, Any] | None:
    loc = f.location
    if not loc.kind and not loc.name:
        return None
    parts = [p for p in (loc.namespace, loc.kind, loc.name) if p]
    fqn = "/".join(parts)
    if loc.container:
        fqn += f"/{loc.container}"
    return {"name": loc.name or loc.kind or "", "fullyQualifiedName": fqn, "kind": "object"}


def _effective_severity(findings: Sequence[Finding], meta: RuleMeta | None) -> Severity:
    """The severity a rule has in this report: the policy may override the rule's default."""
    severities = {f.severity for f in findings}
    if len(severities) == 1:
        return severities.pop()
    if severities:
        return max(severities, key=lambda s: s.rank)
    return meta.severity if meta is not None else Severity.MEDIUM


def _rule_descriptor(rule_id: str, findings: Sequence[Finding], ctx: FormatContext) -> dict[str, Any]:
    meta = ctx.registry.get(rule_id).meta if rule_id in ctx.registry else None
    first = findings[0]
    severity = _effective_severity(findings, meta)
    title = meta.title if meta else first.title
    description = meta.description if meta else first.title
    remediation = meta.remediation if meta else first.remediation
    controls = meta.controls if meta else first.controls
    pack = meta.pack if meta else None
    equivalents = dict(meta.equivalents) if meta else {}

    properties: dict[str, Any] = {
        "tags": _tags(("security", *((pack,) if pack else ()), *controls)),
        "precision": "high",
        "problem.severity": LEVEL[severity] if severity is not Severity.INFO else "recommendation",
        "severity": severity.value,
        "controls": list(controls),
    }
    if severity in SECURITY_SEVERITY:
        properties["security-severity"] = SECURITY_SEVERITY[severity]
    if equivalents:
        properties["equivalents"] = {k: list(v) for k, v in sorted(equivalents.items())}
    return {
        "id": rule_id,
        "name": _pascal(rule_id),
        "shortDescription": {"text": title},
        "fullDescription": {"text": description},
        "help": {
            "text": _help_text(rule_id, title, description, remediation, controls, equivalents),
            "markdown": _help_markdown(title, description, remediation, controls, equivalents),
        },
        "defaultConfiguration": {"level": LEVEL[severity]},
        "properties": properties,
    }


def _tags(candidates: Iterable[str]) -> list[str]:
    out: list[str] = []
    for tag in candidates:
        if tag and tag not in out:
            out.append(tag)
    return out[:MAX_TAGS]


def _pascal(identifier: str) -> str:
    words = re.split(r"[._-]+", identifier)
    return "".join(w[:1].upper() + w[1:] for w in words if w) or identifier


def _help_text(
    rule_id: str,
    title: str,
    description: str,
    remediation: str,
    controls: Sequence[str],
    equivalents: dict[str, tuple[str, ...]],
) -> str:
    lines = [
        f"{rule_id}: {title}",
        description,
        f"Remediation: {remediation}",
        f"Controls: {', '.join(controls)}",
    ]
    if equivalents:
        peers = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(equivalents.items()))
        lines.append(f"Same check elsewhere: {peers}")
    lines.append("Inline suppressions are not honoured; ask Security for an exception.")
    return "\n".join(lines)


def _help_markdown(
    title: str,
    description: str,
    remediation: str,
    controls: Sequence[str],
    equivalents: dict[str, tuple[str, ...]],
) -> str:
    # Rule metadata is ours (or Security's policy), not the scanned input's: plain escaping of
    # the few characters that would change the structure is enough.
    from dutyguard.formats.markdown import md_code, md_inline

    parts = [
        f"**{md_inline(title)}**",
        "",
        md_inline(description),
        "",
        f"**Remediation:** {md_inline(remediation)}",
        "",
        "**Controls:** " + ", ".join(md_code(c) for c in controls),
    ]
    if equivalents:
        peers = "; ".join(
            f"{md_inline(k)}: {', '.join(md_inline(i) for i in v)}" for k, v in sorted(equivalents.items())
        )
        parts += ["", f"**Same check elsewhere:** {peers}"]
    parts += ["", "Inline suppressions are not honoured; ask Security for an exception."]
    return "\n".join(parts)
