"""Applying an exception snapshot to findings.

A waived finding is never dropped: it stays in the report, marked with the exception id and
expiry (:class:`dutyguard.core.model.Waiver`), and no longer blocks. An exception applies to a
finding only if all of these hold, at the time of the scan:

- same rule id, and the scope matches (fingerprint, or every selector field given: the app,
  cluster and image digests come from the gate's context, the namespace from the finding);
- it has not expired (``expires`` is after the scan time; an exception expiring mid-scan is
  judged at the start);
- it satisfies the policy bundle in force *for this finding's severity*: enough approvers
  (``quorum``, or ``wideScopeQuorum`` for a wide scope) and a lifetime within ``maxDays``. An
  exception approved for a medium finding does not silently cover the same rule once Security
  raises it to critical.

Speed: with N exceptions, building the index is O(N) once per scan; matching a finding is a
few dictionary lookups (by rule id and fingerprint, by rule id and namespace). Context fields
(app, cluster, image) are the same for a whole scan, so they are filtered out while indexing.
At most ``MAX_CANDIDATES`` exceptions are considered per lookup key: past that (thousands of
exceptions for one rule in one namespace) the rest are ignored, which can only leave a finding
blocking, never waive one.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from dutyguard.core.model import Finding, ScanReport, Severity, Waiver
from dutyguard.exceptions.model import ExceptionGrant
from dutyguard.policy.model import ExceptionPolicy

MAX_CANDIDATES = 64

_K = tuple[str, str | None]


@dataclass(frozen=True, slots=True)
class MatchContext:
    """What the gate knows about the target of this scan (the same for every finding)."""

    app: str | None = None
    cluster: str | None = None
    image_digests: frozenset[str] = field(default_factory=frozenset)


def _preference(e: ExceptionGrant) -> tuple[int, int, float, str]:
    # Narrowest first (a fingerprint, then a pinned app or image), then the most approved, then
    # the latest expiry; the id makes the choice deterministic.
    s = e.scope
    narrowness = 0 if s.fingerprint else (1 if s.app is not None or s.image_digest is not None else 2)
    return (narrowness, -len(e.approvers), -e.expires.timestamp(), e.id)


def _ranked(groups: dict[_K, list[ExceptionGrant]]) -> dict[_K, tuple[ExceptionGrant, ...]]:
    return {
        k: tuple(v) if len(v) == 1 else tuple(sorted(v, key=_preference)[:MAX_CANDIDATES])
        for k, v in groups.items()
    }


class ExceptionMatcher:
    def __init__(
        self,
        exceptions: Iterable[ExceptionGrant],
        policy: ExceptionPolicy,
        context: MatchContext,
        now: datetime,
    ) -> None:
        self.policy = policy
        self.context = context
        self.now = now
        # Per severity, precomputed: matching must cost next to nothing per finding.
        self._quorum = {sev: policy.required_approvals(sev, wide=False) for sev in Severity}
        self._wide_quorum = {sev: policy.required_approvals(sev, wide=True) for sev in Severity}
        self._max_duration = {sev: policy.max_duration(sev) for sev in Severity}
        app, cluster, images = context.app, context.cluster, context.image_digests
        by_fp: dict[tuple[str, str | None], list[ExceptionGrant]] = {}
        by_ns: dict[tuple[str, str | None], list[ExceptionGrant]] = {}
        active = 0
        for e in exceptions:
            s = e.scope
            if (
                e.expires <= now
                or (s.app is not None and s.app != app)
                or (s.cluster is not None and s.cluster != cluster)
                or (s.image_digest is not None and s.image_digest not in images)
            ):
                continue
            active += 1
            if s.fingerprint is not None:
                by_fp.setdefault((e.rule_id, s.fingerprint), []).append(e)
            else:
                by_ns.setdefault((e.rule_id, s.namespace), []).append(e)
        self.active = active
        self._by_fp = _ranked(by_fp)
        self._by_ns = _ranked(by_ns)

    def admits(self, e: ExceptionGrant, f: Finding) -> bool:
        """Whether the bundle's exception policy allows ``e`` for a finding of this severity."""
        sev = f.severity
        needed = self._wide_quorum[sev] if e.wide else self._quorum[sev]
        return len(e.approvers) >= needed and e.expires - e.approved_at <= self._max_duration[sev]

    def match(self, f: Finding) -> ExceptionGrant | None:
        rule = f.rule_id
        for candidates in (
            self._by_fp.get((rule, f.fingerprint)),
            self._by_ns.get((rule, f.location.namespace)) if f.location.namespace is not None else None,
            self._by_ns.get((rule, None)),
        ):
            if candidates:
                for e in candidates:
                    if self.admits(e, f):
                        return e
        return None

    def apply(self, report: ScanReport) -> ScanReport:
        """The report with every matching finding marked waived (order and everything else unchanged)."""
        if not (self._by_fp or self._by_ns):
            return report
        rules = {k[0] for k in self._by_fp} | {k[0] for k in self._by_ns}
        out: list[Finding] = []
        changed = False
        for f in report.findings:
            e = self.match(f) if f.rule_id in rules else None
            if e is None:
                out.append(f)
            else:
                changed = True
                out.append(replace(f, waiver=Waiver(e.id, e.expires)))
        return replace(report, findings=tuple(out)) if changed else report
