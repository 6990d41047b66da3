"""Static segregation of duties: conflict rules, mitigating controls, and the check on every binding.

A conflict rule (``data/sod-rules.yaml``) names two duty lists, each matched as ``any`` (one of
them held) or ``all`` (every one held), the way Okta writes "List 1 AND List 2". A principal
holding both sides, through any of their bindings in any scope, is in conflict: scope does not
dilute a toxic combination because it is the same person acting.

A conflict is refused unless Security records a mitigating control: an owner (someone other
than the person in conflict), a reason, an expiry (at most a year). Rules marked
``mitigable: false`` cannot be mitigated at all (``admin`` × security/devops: DESIGN §1 "may never").

Checked when a rule set is loaded: ids unique, each rule cites sources, the two sides of a rule
never share a duty, and no single role of the role table is in conflict with itself.
Changing the rules is a controlled change (approval kind ``sod.rules.change``), bound to the
rule set's digest.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path

from dutyguard.core.model import Severity
from dutyguard.errors import AuthorizationError, GovernanceError, SoDViolation
from dutyguard.governance._load import Doc, parse_text, read_file
from dutyguard.governance._values import MAX_REASON, check_id, check_text, check_time
from dutyguard.governance.approvals import ApprovalKind, ApprovalRequest, default_policy, open_request
from dutyguard.governance.authz import Binding, Principal, authorize, required_kind
from dutyguard.governance.duties import Duty, Role, RoleTable, read_duties, shipped_roles
from dutyguard.governance.raci import Raci
from dutyguard.governance.scope import ORG, Ownership

_RULE_ID = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*")
MAX_RULES = 500
MAX_MITIGATION = timedelta(days=365)
MIN_REASON = 10


class Match(StrEnum):
    ANY = "any"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class DutyList:
    match: Match
    duties: frozenset[Duty]

    def matched(self, held: frozenset[Duty]) -> frozenset[Duty]:
        """The held duties that satisfy this side, or an empty set when it is not satisfied."""
        hit = held & self.duties
        if self.match is Match.ALL:
            return hit if hit == self.duties else frozenset()
        return hit

    def to_json(self) -> dict[str, list[str]]:
        return {self.match.value: sorted(self.duties)}


@dataclass(frozen=True, slots=True)
class ConflictRule:
    id: str
    title: str
    severity: Severity
    rationale: str
    refs: tuple[str, ...]
    left: DutyList
    right: DutyList
    mitigable: bool = True

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "title": self.title,
            "severity": self.severity.value,
            "rationale": self.rationale,
            "refs": list(self.refs),
            "left": self.left.to_json(),
            "right": self.right.to_json(),
            "mitigable": self.mitigable,
        }


@dataclass(frozen=True, slots=True)
class RuleSet:
    rules: tuple[ConflictRule, ...]
    source: str

    def get(self, rule_id: str) -> ConflictRule | None:
        for r in self.rules:
            if r.id == rule_id:
                return r
        return None

    def to_json(self) -> dict[str, object]:
        return {"version": 1, "rules": [r.to_json() for r in self.rules]}

    def document(self) -> str:
        """Canonical JSON text (sorted keys, no whitespace): what is stored, hashed and approved."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.document().encode("utf-8")).hexdigest()


def _duty_list(doc: Doc, value: object, path: tuple[str | int, ...]) -> DutyList:
    body = doc.mapping(value, path, required=(), optional=("any", "all"))
    if len(body) != 1:
        raise doc.error(path, "give exactly one of 'any' or 'all'")
    (key, raw) = next(iter(body.items()))
    return DutyList(Match(key), read_duties(doc, raw, (*path, key)))


def parse_rules(doc: Doc, roles: RoleTable | None = None) -> RuleSet:
    table = roles if roles is not None else shipped_roles()
    top = doc.mapping(doc.value, (), required=("version", "rules"))
    doc.integer(top["version"], ("version",), lo=1, hi=1)
    raw = top["rules"]
    if not isinstance(raw, list) or not raw:
        # an empty rule set would allow every combination: fail closed
        raise doc.error(("rules",), "expected a non-empty list of conflict rules")
    if len(raw) > MAX_RULES:
        raise doc.error(("rules",), f"more than {MAX_RULES} rules")
    rules: list[ConflictRule] = []
    for i, item in enumerate(raw):
        path: tuple[str | int, ...] = ("rules", i)
        body = doc.mapping(
            item,
            path,
            required=("id", "title", "severity", "rationale", "refs", "left", "right"),
            optional=("mitigable",),
        )
        rid = doc.string(body["id"], (*path, "id"), max_len=64)
        if not _RULE_ID.fullmatch(rid):
            raise doc.error((*path, "id"), f"rule id {rid!r} must be lower-case words joined by . or -")
        if any(r.id == rid for r in rules):
            raise doc.error((*path, "id"), f"duplicate rule id {rid!r}")
        rule = ConflictRule(
            id=rid,
            title=doc.string(body["title"], (*path, "title"), max_len=200),
            severity=doc.choice(body["severity"], (*path, "severity"), Severity.parse, "severity"),
            rationale=doc.string(body["rationale"], (*path, "rationale")),
            refs=doc.unique_list(body["refs"], (*path, "refs"), lambda v, p: doc.string(v, p, max_len=300)),
            left=_duty_list(doc, body["left"], (*path, "left")),
            right=_duty_list(doc, body["right"], (*path, "right")),
            mitigable=doc.boolean(body["mitigable"], (*path, "mitigable")) if "mitigable" in body else True,
        )
        shared = rule.left.duties & rule.right.duties
        if shared:
            raise doc.error(
                (*path, "right"), f"a duty cannot conflict with itself: {', '.join(sorted(shared))}"
            )
        for role, spec in table.specs.items():
            if _fires(rule, spec.duties):
                raise doc.error(
                    path, f"role {role} on its own violates {rid}; fix {table.source} or the rule"
                )
        rules.append(rule)
    return RuleSet(tuple(rules), doc.source)


def load_rules(path: Path | None = None, roles: RoleTable | None = None) -> RuleSet:
    """Load ``path`` (default: the shipped ``sod-rules.yaml``), checked against ``roles``."""
    return parse_rules(read_file(path, "sod-rules.yaml"), roles)


def parse_rules_text(text: str, source: str, roles: RoleTable | None = None) -> RuleSet:
    """A proposed rule set (YAML or the JSON of :meth:`RuleSet.document`), checked like the shipped one."""
    return parse_rules(parse_text(text, source), roles)


@functools.cache
def shipped_rules() -> RuleSet:
    return load_rules()


def _fires(rule: ConflictRule, held: frozenset[Duty]) -> bool:
    return bool(rule.left.matched(held)) and bool(rule.right.matched(held))


@dataclass(frozen=True, slots=True)
class Mitigation:
    """A recorded mitigating control for one rule and one principal. Create with :func:`record_mitigation`."""

    id: str
    rule_id: str
    principal_id: str
    owner: str
    """Who operates the control (a monitor, a review): never the person in conflict."""
    reason: str
    expires_at: datetime
    created_at: datetime
    created_by: str
    revoked_at: datetime | None = None
    revoked_by: str | None = None

    def __post_init__(self) -> None:
        for value, what in (
            (self.id, "mitigation id"),
            (self.principal_id, "principal"),
            (self.owner, "owner"),
        ):
            check_id(value, what)
        check_id(self.created_by, "created_by")
        check_time(self.expires_at, "expires_at")
        check_time(self.created_at, "created_at")
        if self.revoked_at is not None:
            check_time(self.revoked_at, "revoked_at")

    def is_active(self, now: datetime) -> bool:
        if self.revoked_at is not None and self.revoked_at <= now:
            return False
        return self.created_at <= now < self.expires_at


@dataclass(frozen=True, slots=True)
class Conflict:
    rule: ConflictRule
    principal_id: str
    left: frozenset[Duty]
    right: frozenset[Duty]
    bindings: tuple[Binding, ...]
    """The principal's bindings that contribute a duty to either side."""
    mitigation: Mitigation | None = None

    @property
    def mitigated(self) -> bool:
        return self.mitigation is not None

    def describe(self) -> str:
        via = ", ".join(str(b) for b in self.bindings)
        state = (
            f" (mitigated by {self.mitigation.id} until {self.mitigation.expires_at:%Y-%m-%d})"
            if self.mitigation
            else ""
        )
        return (
            f"{self.principal_id}: {self.rule.id} [{self.rule.severity.value}] {self.rule.title}: "
            f"{', '.join(sorted(self.left))} × {', '.join(sorted(self.right))} via {via}{state}"
        )


def _rules_of(rules: RuleSet | Iterable[ConflictRule] | None) -> tuple[ConflictRule, ...]:
    if rules is None:
        return shipped_rules().rules
    if isinstance(rules, RuleSet):
        return rules.rules
    return tuple(rules)


def find_conflicts(
    bindings_after_change: Iterable[Binding],
    principal_id: str,
    rules: RuleSet | Iterable[ConflictRule] | None,
    mitigations: Iterable[Mitigation],
    now: datetime,
    *,
    roles: RoleTable | None = None,
) -> list[Conflict]:
    """Conflicts of ``principal_id`` under the given bindings (others' bindings are ignored).

    Mitigated conflicts are returned too, flagged, so reports show them; a mitigation counts
    only while active and only for a mitigable rule.
    """
    check_time(now, "now")
    table = roles if roles is not None else shipped_roles()
    mine = tuple(sorted(b for b in bindings_after_change if b.principal_id == principal_id))
    held: dict[Duty, list[Binding]] = {}
    for b in mine:
        for d in table.duties_of(b.role):
            held.setdefault(d, []).append(b)
    held_set = frozenset(held)
    active = [m for m in mitigations if m.principal_id == principal_id and m.is_active(now)]
    out: list[Conflict] = []
    for rule in _rules_of(rules):
        left = rule.left.matched(held_set)
        right = rule.right.matched(held_set)
        if not left or not right:
            continue
        contributing = tuple(sorted({b for d in left | right for b in held[d]}))
        mitigation = None
        if rule.mitigable:
            mitigation = next((m for m in sorted(active, key=lambda m: m.id) if m.rule_id == rule.id), None)
        out.append(Conflict(rule, principal_id, left, right, contributing, mitigation))
    return sorted(out, key=lambda c: c.rule.id)


def check_grant(
    actor: Principal,
    subject: Principal,
    binding: Binding,
    ownership: Ownership,
    now: datetime,
    *,
    rules: RuleSet | Iterable[ConflictRule] | None = None,
    mitigations: Iterable[Mitigation] = (),
    roles: RoleTable | None = None,
    raci: Raci | None = None,
) -> tuple[Conflict, ...]:
    """May ``actor`` add ``binding`` to ``subject``? Returns the (mitigated) conflicts it leaves, else raises.

    Refusals: :class:`AuthorizationError` ``forbidden`` (no ``role.assign`` over the scope);
    :class:`SoDViolation` ``role_kind`` (a machine role on a person or the reverse), ``conflict``
    (an unmitigated conflict after the change, listing the rules), ``self_grant`` (nobody grants
    themselves a role: request, approve and grant access are separate duties, ISO A.5.3).
    """
    if binding.principal_id != subject.id:
        raise GovernanceError(
            "invalid_binding", f"binding {binding} is for {binding.principal_id}, not {subject.id}"
        )
    if required_kind(binding.role) is not subject.kind:
        raise SoDViolation(
            "role_kind",
            f"role {binding.role} is for {required_kind(binding.role)} identities; {subject.id} is a {subject.kind}",
        )
    decision = authorize(actor, Duty.ROLE_ASSIGN, binding.scope, ownership, roles=roles, raci=raci)
    if not decision.allowed:
        raise AuthorizationError("forbidden", decision.reason)
    if binding in subject.bindings:
        raise GovernanceError("duplicate_binding", f"{subject.id} already has {binding}")
    conflicts = find_conflicts((*subject.bindings, binding), subject.id, rules, mitigations, now, roles=roles)
    open_ = [c for c in conflicts if not c.mitigated]
    if open_:
        raise SoDViolation(
            "conflict",
            f"binding {binding} to {subject.id} is refused: " + "; ".join(c.describe() for c in open_),
            tuple(c.rule.id for c in open_),
        )
    if actor.id == subject.id:
        raise SoDViolation("self_grant", f"{actor.id} cannot grant a role to themselves")
    return tuple(conflicts)


def record_mitigation(
    mitigation_id: str,
    recorder: Principal,
    rule_id: str,
    principal_id: str,
    owner: str,
    reason: str,
    expires_at: datetime,
    now: datetime,
    ownership: Ownership,
    *,
    rules: RuleSet | Iterable[ConflictRule] | None = None,
    roles: RoleTable | None = None,
    raci: Raci | None = None,
) -> Mitigation:
    """Security records a mitigating control; refused for oneself, one's own control, or unmitigable rules."""
    check_time(now, "now")
    check_time(expires_at, "expires_at")
    decision = authorize(recorder, Duty.SOD_MITIGATE, ORG, ownership, roles=roles, raci=raci)
    if not decision.allowed:
        raise AuthorizationError("forbidden", decision.reason)
    if recorder.id == principal_id:
        raise SoDViolation("self_mitigation", f"{recorder.id} cannot mitigate their own conflict", (rule_id,))
    if owner == principal_id:
        raise SoDViolation(
            "owner_is_subject", f"the control's owner must be someone other than {principal_id}", (rule_id,)
        )
    rule = next((r for r in _rules_of(rules) if r.id == rule_id), None)
    if rule is None:
        raise SoDViolation("unknown_rule", f"no conflict rule {rule_id!r}", (rule_id,))
    if not rule.mitigable:
        raise SoDViolation("not_mitigable", f"{rule_id} ({rule.title}) cannot be mitigated", (rule_id,))
    try:
        text = check_text(reason, "a mitigation reason", max_len=MAX_REASON, code="reason_required")
    except GovernanceError as e:
        raise SoDViolation(e.code, e.message, (rule_id,)) from None
    if len(text) < MIN_REASON:
        raise SoDViolation(
            "reason_required", f"a mitigation reason needs at least {MIN_REASON} characters", (rule_id,)
        )
    if not now < expires_at <= now + MAX_MITIGATION:
        raise SoDViolation(
            "bad_expiry", f"a mitigation expires after now and within {MAX_MITIGATION.days} days", (rule_id,)
        )
    return Mitigation(
        id=mitigation_id,
        rule_id=rule_id,
        principal_id=principal_id,
        owner=owner,
        reason=text,
        expires_at=expires_at,
        created_at=now,
        created_by=recorder.id,
    )


@dataclass(frozen=True, slots=True)
class SodReport:
    conflicts: tuple[Conflict, ...]
    active_mitigations: tuple[Mitigation, ...]
    lapsed_mitigations: tuple[Mitigation, ...]

    @property
    def unmitigated(self) -> tuple[Conflict, ...]:
        return tuple(c for c in self.conflicts if not c.mitigated)


def sod_report(
    principals: Iterable[Principal],
    rules: RuleSet | Iterable[ConflictRule] | None,
    mitigations: Sequence[Mitigation],
    now: datetime,
    *,
    roles: RoleTable | None = None,
) -> SodReport:
    """Every conflict in the organisation (mitigated or not) and the state of each mitigation."""
    rule_list = _rules_of(rules)
    conflicts: list[Conflict] = []
    for p in sorted(principals, key=lambda p: p.id):
        conflicts.extend(find_conflicts(p.bindings, p.id, rule_list, mitigations, now, roles=roles))
    active = tuple(m for m in mitigations if m.is_active(now))
    lapsed = tuple(m for m in mitigations if not m.is_active(now))
    return SodReport(tuple(conflicts), active, lapsed)


def role_conflicts(
    role_a: Role, role_b: Role, rules: RuleSet | None = None, roles: RoleTable | None = None
) -> tuple[str, ...]:
    """Ids of the rules a person holding both roles would break (for the docs and ``sod report``)."""
    table = roles if roles is not None else shipped_roles()
    held = table.duties_of(role_a) | table.duties_of(role_b)
    return tuple(r.id for r in _rules_of(rules) if _fires(r, held))


def rules_change_severity(current: RuleSet, proposed: RuleSet) -> Severity:
    """``critical`` when a rule is removed or altered (it may weaken SoD), ``medium`` for additions only."""
    before = {r.id: r for r in current.rules}
    after = {r.id: r for r in proposed.rules}
    if any(rid not in after or after[rid] != rule for rid, rule in before.items()):
        return Severity.CRITICAL
    return Severity.MEDIUM if set(after) - set(before) else Severity.INFO


def propose_rules_change(
    request_id: str,
    maker: Principal,
    current: RuleSet,
    proposed: RuleSet,
    now: datetime,
    ownership: Ownership,
    *,
    roles: RoleTable | None = None,
    raci: Raci | None = None,
) -> ApprovalRequest:
    """Open the controlled change that replaces the conflict rules; approvals bind to ``proposed.digest``."""
    if proposed.digest == current.digest:
        raise GovernanceError("no_change", "the proposed conflict rules are identical to the current ones")
    severity = rules_change_severity(current, proposed)
    return open_request(
        default_policy(ApprovalKind.SOD_RULES_CHANGE),
        request_id=request_id,
        maker=maker,
        subject=f"conflict rules {current.digest[:12]} -> {proposed.digest[:12]} ({len(proposed.rules)} rules)",
        subject_digest=proposed.digest,
        severity=severity,
        scope=ORG,
        now=now,
        ownership=ownership,
        roles=roles,
        raci=raci,
    )
