"""Static segregation of duties: the shipped conflict rules, mitigations, and the binding check."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from dutyguard.core.model import Severity
from dutyguard.errors import AuthorizationError, ConfigError, GovernanceError, SoDViolation
from dutyguard.governance import (
    ORG,
    READ_ONLY_DUTIES,
    ApprovalKind,
    Binding,
    Duty,
    Mitigation,
    Ownership,
    Role,
    RuleSet,
    Scope,
    check_grant,
    decide,
    duties_of,
    effective_duties,
    find_conflicts,
    load_rules,
    parse_rules_text,
    propose_rules_change,
    record_mitigation,
    role_conflicts,
    rules_change_severity,
    shipped_rules,
    sod_report,
)
from dutyguard.governance.sod import ConflictRule, DutyList, Match
from tests.governance.conftest import NOW, person, service

REQ_APPROVE = "sod.exception-request-approve"
OPERATE_AUTHOR = "sod.operate-author-policy"
BUILD_PROMOTE = "sod.build-promote"
ACCESS_AUDIT = "sod.access-admin-audit"
AUDIT_INDEPENDENCE = "sod.audit-independence"
ADMIN_RULE = "sod.admin-security-devops"

PEOPLE = (Role.SECURITY, Role.DEVOPS, Role.COMPLIANCE, Role.ADMIN)

# Which shipped rules a person holding both roles breaks. Every pair of person roles conflicts:
# nobody holds two of security / devops / compliance / admin without a recorded mitigation.
EXPECTED_PAIRS: dict[frozenset[Role], set[str]] = {
    frozenset({Role.SECURITY, Role.DEVOPS}): {REQ_APPROVE, OPERATE_AUTHOR, BUILD_PROMOTE},
    frozenset({Role.SECURITY, Role.COMPLIANCE}): {AUDIT_INDEPENDENCE},
    frozenset({Role.SECURITY, Role.ADMIN}): {ADMIN_RULE},
    frozenset({Role.DEVOPS, Role.COMPLIANCE}): {AUDIT_INDEPENDENCE},
    frozenset({Role.DEVOPS, Role.ADMIN}): {ADMIN_RULE},
    frozenset({Role.COMPLIANCE, Role.ADMIN}): {ACCESS_AUDIT},
}


def test_shipped_rules_carry_sources_and_ids() -> None:
    rules = shipped_rules()
    assert [r.id for r in rules.rules] == [
        REQ_APPROVE,
        OPERATE_AUTHOR,
        BUILD_PROMOTE,
        ACCESS_AUDIT,
        AUDIT_INDEPENDENCE,
        ADMIN_RULE,
    ]
    for rule in rules.rules:
        assert len(rule.refs) >= 2, rule.id
        assert any("800-53" in ref or "800-190" in ref or "ISO" in ref for ref in rule.refs), rule.id
    assert any("CA-8(1)" in ref for ref in rules.get(AUDIT_INDEPENDENCE).refs)  # type: ignore[union-attr]
    assert any("AC-5" in ref for ref in rules.get(ACCESS_AUDIT).refs)  # type: ignore[union-attr]


@pytest.mark.parametrize(("a", "b"), list(itertools.combinations(PEOPLE, 2)))
def test_each_rule_fires_on_the_right_role_pairs_only(a: Role, b: Role) -> None:
    bindings = [Binding("pat", a, ORG), Binding("pat", b, ORG)]
    got = {c.rule.id for c in find_conflicts(bindings, "pat", None, (), NOW)}
    assert got == EXPECTED_PAIRS[frozenset({a, b})]
    assert set(role_conflicts(a, b)) == got


@pytest.mark.parametrize("role", list(Role))
def test_no_role_conflicts_with_itself(role: Role) -> None:
    assert find_conflicts([Binding("pat", role, ORG)], "pat", None, (), NOW) == []


def test_machine_roles_do_not_conflict_with_each_other() -> None:
    assert role_conflicts(Role.CI, Role.CLUSTER) == ()
    assert role_conflicts(Role.CI, Role.DEVOPS) == ()


def test_admin_rule_covers_every_security_and_devops_duty() -> None:
    rule = shipped_rules().get(ADMIN_RULE)
    assert rule is not None
    assert not rule.mitigable
    assert rule.severity is Severity.CRITICAL
    assert rule.left.duties == duties_of(Role.ADMIN) - READ_ONLY_DUTIES
    assert rule.right.duties == (duties_of(Role.SECURITY) | duties_of(Role.DEVOPS)) - READ_ONLY_DUTIES
    independence = shipped_rules().get(AUDIT_INDEPENDENCE)
    assert independence is not None
    assert independence.right.duties == rule.right.duties


def test_one_writing_duty_is_enough_for_the_admin_rule() -> None:
    """A hand-made role granting admin plus only scan.submit still trips the rule (``any``)."""
    rule = shipped_rules().get(ADMIN_RULE)
    assert rule is not None
    for duty in rule.right.duties:
        assert rule.right.matched(frozenset({duty})) == {duty}
    assert rule.right.matched(READ_ONLY_DUTIES) == frozenset()


def test_all_match_needs_every_duty() -> None:
    both = DutyList(Match.ALL, frozenset({Duty.POLICY_PROPOSE, Duty.POLICY_APPROVE}))
    assert both.matched(frozenset({Duty.POLICY_PROPOSE})) == frozenset()
    assert (
        both.matched(frozenset({Duty.POLICY_PROPOSE, Duty.POLICY_APPROVE, Duty.POLICY_READ})) == both.duties
    )


def test_scope_does_not_dilute_a_conflict() -> None:
    """Devops for one team and security for another is still one person holding both sides."""
    bindings = [
        Binding("pat", Role.DEVOPS, Scope.team("payments")),
        Binding("pat", Role.SECURITY, Scope.team("web")),
    ]
    conflicts = find_conflicts(bindings, "pat", None, (), NOW)
    assert {c.rule.id for c in conflicts} == EXPECTED_PAIRS[frozenset({Role.SECURITY, Role.DEVOPS})]
    req = next(c for c in conflicts if c.rule.id == REQ_APPROVE)
    assert req.left == {Duty.EXCEPTION_REQUEST}
    assert req.right == {Duty.EXCEPTION_APPROVE}
    assert set(req.bindings) == set(bindings)
    assert "pat: sod.exception-request-approve [critical]" in req.describe()


def test_other_principals_bindings_are_ignored() -> None:
    bindings = [Binding("pat", Role.DEVOPS, ORG), Binding("sam", Role.SECURITY, ORG)]
    assert find_conflicts(bindings, "pat", None, (), NOW) == []


# -- the binding check ---------------------------------------------------------------------------


def test_admin_granting_self_security_is_a_conflict(ownership: Ownership) -> None:
    ada = person("ada", Role.ADMIN)
    with pytest.raises(SoDViolation) as e:
        check_grant(ada, ada, Binding("ada", Role.SECURITY, ORG), ownership, NOW)
    assert e.value.code == "conflict"
    assert e.value.rule_ids == (ADMIN_RULE,)
    assert "ada" in e.value.message
    assert "security@org:*" in e.value.message


def test_admin_granting_self_anything_is_refused(ownership: Ownership) -> None:
    """Even a role with no conflict: request, approve and grant access are separate (ISO A.5.3)."""
    ada = person("ada", (Role.ADMIN, ORG))
    with pytest.raises(SoDViolation) as e:
        check_grant(ada, ada, Binding("ada", Role.ADMIN, Scope.team("payments")), ownership, NOW)
    assert e.value.code == "self_grant"


def test_toxic_binding_refused_and_clean_one_allowed(ownership: Ownership) -> None:
    ada = person("ada", Role.ADMIN)
    dana = person("dana", (Role.DEVOPS, Scope.team("payments")))
    with pytest.raises(SoDViolation) as e:
        check_grant(ada, dana, Binding("dana", Role.SECURITY, Scope.team("web")), ownership, NOW)
    assert set(e.value.rule_ids) == {REQ_APPROVE, OPERATE_AUTHOR, BUILD_PROMOTE}
    assert check_grant(ada, dana, Binding("dana", Role.DEVOPS, Scope.team("web")), ownership, NOW) == ()


def test_grant_needs_role_assign_over_the_scope(ownership: Ownership) -> None:
    team_admin = person("tom", (Role.ADMIN, Scope.team("payments")))
    dana = person("dana")
    assert (
        check_grant(team_admin, dana, Binding("dana", Role.DEVOPS, Scope.parse("app:shop")), ownership, NOW)
        == ()
    )
    for scope in (ORG, Scope.team("web"), Scope.parse("app:storefront")):
        with pytest.raises(AuthorizationError) as e:
            check_grant(team_admin, dana, Binding("dana", Role.DEVOPS, scope), ownership, NOW)
        assert e.value.code == "forbidden"
    with pytest.raises(AuthorizationError):
        check_grant(person("sam", Role.SECURITY), dana, Binding("dana", Role.DEVOPS, ORG), ownership, NOW)


def test_machine_role_cannot_be_granted_to_a_person(ownership: Ownership) -> None:
    ada = person("ada", Role.ADMIN)
    with pytest.raises(SoDViolation) as e:
        check_grant(ada, person("dana"), Binding("dana", Role.CI, ORG), ownership, NOW)
    assert e.value.code == "role_kind"
    with pytest.raises(SoDViolation) as e:
        check_grant(ada, service("ci-shop"), Binding("ci-shop", Role.SECURITY, ORG), ownership, NOW)
    assert e.value.code == "role_kind"
    assert check_grant(ada, service("ci-shop"), Binding("ci-shop", Role.CI, ORG), ownership, NOW) == ()


def test_duplicate_binding_refused(ownership: Ownership) -> None:
    with pytest.raises(GovernanceError) as e:
        check_grant(
            person("ada", Role.ADMIN),
            person("dana", Role.DEVOPS),
            Binding("dana", Role.DEVOPS, ORG),
            ownership,
            NOW,
        )
    assert e.value.code == "duplicate_binding"


# -- mitigations -----------------------------------------------------------------------------------


def _mitigate(ownership: Ownership, rule_id: str = REQ_APPROVE, **kw: object) -> Mitigation:
    args: dict[str, object] = {
        "mitigation_id": "mit-1",
        "recorder": person("sam", Role.SECURITY),
        "rule_id": rule_id,
        "principal_id": "pat",
        "owner": "olga",
        "reason": "two-person team; weekly review of pat's approvals by olga",
        "expires_at": NOW + timedelta(days=90),
        "now": NOW,
        "ownership": ownership,
    }
    args.update(kw)
    return record_mitigation(**args)  # type: ignore[arg-type]


def test_mitigated_conflict_is_allowed_and_reported(ownership: Ownership) -> None:
    pat = person("pat", Role.SECURITY)
    mits = [
        _mitigate(ownership, rule_id=r, mitigation_id=f"mit-{i}")
        for i, r in enumerate(sorted(EXPECTED_PAIRS[frozenset({Role.SECURITY, Role.DEVOPS})]))
    ]
    kept = check_grant(
        person("ada", Role.ADMIN), pat, Binding("pat", Role.DEVOPS, ORG), ownership, NOW, mitigations=mits
    )
    assert {c.rule.id for c in kept} == {REQ_APPROVE, OPERATE_AUTHOR, BUILD_PROMOTE}
    assert all(c.mitigated for c in kept)
    report = sod_report(
        [pat.with_binding(Binding("pat", Role.DEVOPS, ORG))], None, mits, NOW + timedelta(days=1)
    )
    assert len(report.conflicts) == 3
    assert report.unmitigated == ()
    # once they lapse, the same person shows up unmitigated
    later = sod_report(
        [pat.with_binding(Binding("pat", Role.DEVOPS, ORG))], None, mits, NOW + timedelta(days=91)
    )
    assert {c.rule.id for c in later.unmitigated} == {REQ_APPROVE, OPERATE_AUTHOR, BUILD_PROMOTE}
    assert len(later.lapsed_mitigations) == 3


def test_partial_mitigation_still_refuses(ownership: Ownership) -> None:
    with pytest.raises(SoDViolation) as e:
        check_grant(
            person("ada", Role.ADMIN),
            person("pat", Role.SECURITY),
            Binding("pat", Role.DEVOPS, ORG),
            ownership,
            NOW,
            mitigations=[_mitigate(ownership)],
        )
    assert set(e.value.rule_ids) == {OPERATE_AUTHOR, BUILD_PROMOTE}


def test_revoked_or_other_persons_mitigation_does_not_count(ownership: Ownership) -> None:
    m = _mitigate(ownership)
    bindings = [Binding("pat", Role.SECURITY, ORG), Binding("pat", Role.DEVOPS, ORG)]
    gone = replace(m, revoked_at=NOW + timedelta(hours=1), revoked_by="sam")
    at = NOW + timedelta(hours=2)
    assert not next(
        c for c in find_conflicts(bindings, "pat", None, [gone], at) if c.rule.id == REQ_APPROVE
    ).mitigated
    other = replace(m, principal_id="quinn")
    assert not next(
        c for c in find_conflicts(bindings, "pat", None, [other], at) if c.rule.id == REQ_APPROVE
    ).mitigated
    assert next(
        c for c in find_conflicts(bindings, "pat", None, [m], at) if c.rule.id == REQ_APPROVE
    ).mitigated


def test_unmitigable_rule_ignores_mitigation(ownership: Ownership) -> None:
    with pytest.raises(SoDViolation) as e:
        _mitigate(ownership, rule_id=ADMIN_RULE)
    assert e.value.code == "not_mitigable"
    # even a mitigation smuggled into storage does not count
    forged = Mitigation("mit-x", ADMIN_RULE, "ada", "olga", "forged row", NOW + timedelta(days=9), NOW, "sam")
    conflicts = find_conflicts(
        [Binding("ada", Role.ADMIN, ORG), Binding("ada", Role.SECURITY, ORG)], "ada", None, [forged], NOW
    )
    assert [c.rule.id for c in conflicts] == [ADMIN_RULE]
    assert not conflicts[0].mitigated


def test_self_mitigation_refused(ownership: Ownership) -> None:
    with pytest.raises(SoDViolation) as e:
        _mitigate(ownership, principal_id="sam")
    assert e.value.code == "self_mitigation"


@pytest.mark.parametrize(
    ("kw", "code"),
    [
        ({"owner": "pat"}, "owner_is_subject"),
        ({"rule_id": "sod.nope"}, "unknown_rule"),
        ({"reason": "ok"}, "reason_required"),
        ({"reason": "   "}, "reason_required"),
        ({"expires_at": NOW}, "bad_expiry"),
        ({"expires_at": NOW + timedelta(days=366)}, "bad_expiry"),
    ],
)
def test_bad_mitigations_refused(ownership: Ownership, kw: dict[str, object], code: str) -> None:
    with pytest.raises(SoDViolation) as e:
        _mitigate(ownership, **kw)
    assert e.value.code == code


def test_mitigation_needs_security(ownership: Ownership) -> None:
    for recorder in (person("ada", Role.ADMIN), person("cora", Role.COMPLIANCE), person("dana", Role.DEVOPS)):
        with pytest.raises(AuthorizationError):
            _mitigate(ownership, recorder=recorder)


# -- strict parsing ----------------------------------------------------------------------------------


def _refused(tmp_path: Path, text: str, *fragments: str) -> None:
    f = tmp_path / "sod-rules.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_rules(f)
    for frag in (str(f), *fragments):
        assert frag in str(e.value), str(e.value)


def test_unknown_key_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["sod-rules.yaml"].replace(
        "    severity: high\n", "    severity: high\n    enabled: false\n", 1
    )
    _refused(tmp_path, text, "rules[1].enabled", "unknown key 'enabled'")


def test_duplicate_rule_id_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["sod-rules.yaml"].replace("id: sod.build-promote", "id: sod.operate-author-policy")
    _refused(tmp_path, text, "rules[2].id", "duplicate rule id 'sod.operate-author-policy'")


def test_empty_rule_set_refused(tmp_path: Path) -> None:
    _refused(tmp_path, "version: 1\nrules: []\n", "non-empty list")


def test_rule_without_refs_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["sod-rules.yaml"]
    start = text.index("    refs:\n", text.index("id: sod.build-promote"))
    end = text.index("    left:", start)
    _refused(tmp_path, text[:start] + "    refs: []\n" + text[end:], "rules[2].refs", "must not be empty")


def test_both_any_and_all_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["sod-rules.yaml"].replace(
        "      any: [exception.request]\n", "      any: [exception.request]\n      all: [scan.submit]\n"
    )
    _refused(tmp_path, text, "rules[0].left", "exactly one of 'any' or 'all'")


def test_unknown_duty_in_rule_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["sod-rules.yaml"].replace("any: [exception.request]", "any: [exception.requests]")
    _refused(tmp_path, text, "rules[0].left.any[0]", "unknown duty 'exception.requests'")


def test_rule_that_makes_a_single_role_toxic_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["sod-rules.yaml"].replace(
        "      any: [exception.approve]\n", "      any: [exception.read]\n"
    )
    _refused(tmp_path, text, "role devops on its own violates sod.exception-request-approve")


def test_duty_conflicting_with_itself_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["sod-rules.yaml"].replace(
        "      any: [exception.approve]\n", "      any: [exception.approve, exception.request]\n"
    )
    _refused(tmp_path, text, "cannot conflict with itself", "exception.request")


def test_unknown_severity_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    text = shipped_text["sod-rules.yaml"].replace("severity: critical", "severity: catastrophic", 1)
    _refused(tmp_path, text, "rules[0].severity", "unknown severity 'catastrophic'")


def test_document_round_trips_and_digest_is_stable() -> None:
    rules = shipped_rules()
    again = parse_rules_text(rules.document(), "stored")
    assert again.rules == rules.rules
    assert again.digest == rules.digest
    assert len(rules.digest) == 64


# -- changing the rules is a controlled change --------------------------------------------------------


def _without_first(rules: RuleSet) -> RuleSet:
    return RuleSet(rules.rules[1:], "proposal")


def test_rules_change_needs_a_second_security_approver(ownership: Ownership) -> None:
    current = shipped_rules()
    proposed = _without_first(current)
    sam, sue = person("sam", Role.SECURITY), person("sue", Role.SECURITY)
    req = propose_rules_change("chg-1", sam, current, proposed, NOW, ownership)
    assert req.kind == ApprovalKind.SOD_RULES_CHANGE
    assert req.subject_digest == proposed.digest
    assert req.severity is Severity.CRITICAL  # a rule removed: may weaken SoD
    assert req.quorum == 1
    assert req.approver_duty is Duty.SOD_RULES_APPROVE
    with pytest.raises(GovernanceError) as e:
        decide(req, "sam", effective_duties(sam, ORG, ownership), sam.teams, True, NOW)
    assert e.value.code == "self_approval"
    ada = person("ada", Role.ADMIN)
    with pytest.raises(GovernanceError) as e:
        decide(req, "ada", effective_duties(ada, ORG, ownership), ada.teams, True, NOW)
    assert e.value.code == "missing_duty"
    done = decide(
        req, "sue", effective_duties(sue, ORG, ownership), sue.teams, True, NOW, seen_digest=proposed.digest
    )
    assert done.state == "approved"


def test_only_security_may_propose_rules_changes(ownership: Ownership) -> None:
    current = shipped_rules()
    for role in (Role.ADMIN, Role.DEVOPS, Role.COMPLIANCE):
        with pytest.raises(GovernanceError) as e:
            propose_rules_change("chg-1", person("x", role), current, _without_first(current), NOW, ownership)
        assert e.value.code == "missing_duty"


def test_identical_rules_are_not_a_change(ownership: Ownership) -> None:
    with pytest.raises(GovernanceError) as e:
        propose_rules_change(
            "chg-1", person("sam", Role.SECURITY), shipped_rules(), shipped_rules(), NOW, ownership
        )
    assert e.value.code == "no_change"


def test_change_severity_classification() -> None:
    current = shipped_rules()
    extra = ConflictRule(
        "sod.extra",
        "extra",
        Severity.LOW,
        "why",
        ("ref a", "ref b"),
        DutyList(Match.ANY, frozenset({Duty.TEAM_MANAGE})),
        DutyList(Match.ANY, frozenset({Duty.AUDIT_READ})),
    )
    assert rules_change_severity(current, RuleSet((*current.rules, extra), "p")) is Severity.MEDIUM
    assert rules_change_severity(current, _without_first(current)) is Severity.CRITICAL
    loosened = replace(current.rules[0], mitigable=False, severity=Severity.LOW)
    assert rules_change_severity(current, RuleSet((loosened, *current.rules[1:]), "p")) is Severity.CRITICAL
