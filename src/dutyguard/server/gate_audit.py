"""What the audit trail says about the CI gate's own refusals and about inline suppressions.

Two kinds of evidence come from runners, and neither is trusted for anything but the record:

- ``gate.state_refused`` (outcome ``failed``): a runner refused a bundle or snapshot the control
  plane served it (:func:`refusal_details`). The report is the runner's claim about bytes that
  did not verify; it changes no state and decides nothing.
- ``gate.suppression_requests``: the inline suppressions (``checkov:skip``, ``.trivyignore`` …)
  a gate found, once per accepted attestation submission (:func:`suppression_details`). Each is
  a **bypass attempt** unless every finding it targets is waived by an exception the control
  plane itself reproduced for this submission: what the runner says about coverage is never
  read, only which findings a suppression points at, and those must be findings of a rule it
  names. A suppression that targets nothing found is a bypass attempt too: no approved exception
  matches it (DESIGN §2), and Security decides whether it is harmless.

An audit entry's details are bounded (16 KiB of canonical JSON), so a listing keeps the bypass
attempts first and stops at :data:`LISTING_BUDGET` bytes; the counts always cover every request
submitted, and ``total`` what the scan found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from dutyguard.audit.canonical import JSONValue, canonical_json
from dutyguard.core.model import Waiver
from dutyguard.server.state_schemas import FindingIn, SuppressionIn, VerificationFailureReport

LISTING_BUDGET = 12 * 1024
"""Bytes of canonical JSON the listed requests may take (the entry's other fields fit in the rest)."""
_FILE_CHARS = 256
_TEXT_CHARS = 120
_RULES_LISTED = 8


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _clip_path(text: str, n: int) -> str:
    """The end of a path says more than its start."""
    return text if len(text) <= n else "…" + text[-(n - 1) :]


def refusal_details(report: VerificationFailureReport) -> dict[str, JSONValue]:
    return {
        "document": report.document,
        "check": report.check,
        "reason": report.reason,
        "digest": report.digest,
        "size": report.size,
        "key_ids": list(report.key_ids),
        "claimed_issuer": report.claimed_issuer,
        "claimed_version": report.claimed_version,
        "last_seen_version": report.last_seen_version,
        "app": report.app,
        "cluster": report.cluster,
        "subject": report.subject,
        "source": "runner report (unverified)",
    }


@dataclass(frozen=True, slots=True)
class Judged:
    request: SuppressionIn
    targeted: int
    covered_by: tuple[str, ...]
    bypass_attempt: bool

    def to_json(self) -> dict[str, JSONValue]:
        r = self.request
        return {
            "file": _clip_path(r.file, _FILE_CHARS),
            "line": r.line,
            "syntax": r.syntax,
            "rules": list((r.matched_rules or r.targets)[:_RULES_LISTED]),
            "text": _clip(r.text, _TEXT_CHARS),
            "findings": self.targeted,
            "covered_by": list(self.covered_by),
            "bypass_attempt": self.bypass_attempt,
        }


def _aims_at(request: SuppressionIn, finding: FindingIn) -> bool:
    """A suppression naming rules can only target findings of those rules."""
    if not request.targets and not request.matched_rules:
        return True  # "ignore everything" in that file
    return finding.rule_id in request.matched_rules or finding.rule_id in request.targets


def judge(request: SuppressionIn, findings: list[FindingIn], waivers: Mapping[int, Waiver]) -> Judged:
    """Covered only when it targets something and every finding it targets is waived by an
    exception the control plane reproduced; an index that does not fit is not covered."""
    targeted = sorted(set(request.findings))
    covered = bool(targeted)
    exceptions: set[str] = set()
    for i in targeted:
        waiver = waivers.get(i)
        if i >= len(findings) or waiver is None or not _aims_at(request, findings[i]):
            covered = False
            continue
        exceptions.add(waiver.exception_id)
    return Judged(request, len(targeted), tuple(sorted(exceptions)) if covered else (), not covered)


def suppression_details(
    requests: list[SuppressionIn],
    total: int | None,
    findings: list[FindingIn],
    waivers: Mapping[int, Waiver],
    context: Mapping[str, JSONValue],
) -> dict[str, JSONValue]:
    judged = [judge(r, findings, waivers) for r in requests]
    bypass = sum(j.bypass_attempt for j in judged)
    listed: list[JSONValue] = []
    used = 2
    # Bypass attempts first: if the listing must stop, what it drops is what was covered.
    for j in sorted(judged, key=lambda j: not j.bypass_attempt):
        item = j.to_json()
        size = len(canonical_json(item)) + 1
        if used + size > LISTING_BUDGET:
            break
        listed.append(item)
        used += size
    return {
        **context,
        "total": max(total or 0, len(requests)),
        "submitted": len(requests),
        "bypass_attempts": bypass,
        "bypass_attempt": bypass > 0,
        "listed": len(listed),
        "requests": listed,
    }
