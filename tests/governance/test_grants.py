"""Sensitive role bindings (approval kind ``role.binding``): which roles, the request, who decides.

The attack: an administrator binds ``security`` to a person they created and redeems that
person's enrollment token. The core makes such a binding a request that the maker, the person
being bound and anyone without ``role.approve`` over its scope cannot decide.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest

from dutyguard.core.model import Severity
from dutyguard.errors import ApprovalRefused, AuthorizationError, ConfigError, GovernanceError, SoDViolation
from dutyguard.governance import (
    ORG,
    SENSITIVE_FLOOR,
    ApprovalKind,
    ApprovalRequest,
    Binding,
    Duty,
    Ownership,
    Principal,
    RequestState,
    Role,
    Scope,
    decide,
    default_policy,
    effective_duties,
    grants,
    load_raci,
    load_roles,
    shipped_raci,
    shipped_roles,
)
from tests.governance.conftest import NOW, person

ADMIN = person("adam", Role.ADMIN, teams=("it",))
SEC = person("sue", Role.SECURITY, teams=("secops",))


def _request(ownership: Ownership, subject_id: str = "mallory", scope: Scope = ORG) -> ApprovalRequest:
    subject = person(subject_id)
    request, payload, mitigated = grants.request_binding(
        "apr-1", ADMIN, subject, Binding(subject_id, Role.SECURITY, scope), ownership, NOW
    )
    assert mitigated == ()
    assert hashlib.sha256(payload.encode()).hexdigest() == request.subject_digest
    return request


def _duties(p: Principal, request: ApprovalRequest, ownership: Ownership) -> frozenset[Duty]:
    """What ``p`` may exercise over the request's scope (what the server passes to decide)."""
    return effective_duties(p, request.scope, ownership)


def _sensitive_edit(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced by ``new`` in the sensitive_bindings section only."""
    head, tail = text.split("\nsensitive_bindings:")
    assert old in tail
    return head + "\nsensitive_bindings:" + tail.replace(old, new)


# -- which roles are sensitive: from the data -----------------------------------------------------------


def test_sensitive_roles_are_derived_from_the_shipped_data() -> None:
    table = shipped_roles()
    assert table.sensitive_duties >= SENSITIVE_FLOOR
    assert table.sensitive_roles == {Role.SECURITY}
    for role in Role:
        assert table.is_sensitive(role) == bool(table.duties_of(role) & table.sensitive_duties)


def test_every_approver_duty_is_sensitive() -> None:
    """Whoever can approve a controlled change is never bound by one person alone."""
    table = shipped_roles()
    for kind in ApprovalKind:
        assert default_policy(kind).approver_duty in table.sensitive_duties, kind


def test_only_security_holds_role_approve_and_only_it_may_sign_it_off() -> None:
    assert shipped_roles().roles_with(Duty.ROLE_APPROVE) == {Role.SECURITY}
    raci = shipped_raci()
    process = raci.governing(Duty.ROLE_APPROVE)
    assert process is not None and process.id == "risk-evaluation"
    assert Duty.ROLE_APPROVE in process.signoff
    assert [r for r in Role if raci.permits(r, Duty.ROLE_APPROVE)] == [Role.SECURITY]


def test_widening_the_list_makes_another_role_sensitive(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    """Security may add duties: listing token.manage makes every admin binding wait for approval."""
    text = _sensitive_edit(
        shipped_text["roles.yaml"],
        "    - breakglass.review\n",
        "    - breakglass.review\n    - token.manage\n",
    )
    f = tmp_path / "roles.yaml"
    f.write_text(text)
    table = load_roles(f)
    assert table.sensitive_roles == {Role.SECURITY, Role.ADMIN}
    assert grants.needs_approval(Role.ADMIN, table)


@pytest.mark.parametrize("duty", sorted(SENSITIVE_FLOOR))
def test_narrowing_below_the_floor_is_refused(
    tmp_path: Path, shipped_text: dict[str, str], duty: Duty
) -> None:
    """A one-line edit must not turn the admin -> security path back on."""
    f = tmp_path / "roles.yaml"
    f.write_text(_sensitive_edit(shipped_text["roles.yaml"], f"    - {duty.value}\n", ""))
    with pytest.raises(ConfigError) as e:
        load_roles(f)
    msg = str(e.value)
    assert str(f) in msg and "sensitive_bindings.duties" in msg and duty.value in msg, msg


def test_missing_sensitive_section_is_refused(tmp_path: Path, shipped_text: dict[str, str]) -> None:
    f = tmp_path / "roles.yaml"
    f.write_text(shipped_text["roles.yaml"].split("\nsensitive_bindings:")[0] + "\n")
    with pytest.raises(ConfigError, match="missing required key 'sensitive_bindings'"):
        load_roles(f)


def test_emergency_duty_in_the_sensitive_list_is_refused(
    tmp_path: Path, shipped_text: dict[str, str]
) -> None:
    text = _sensitive_edit(
        shipped_text["roles.yaml"],
        "    - breakglass.review\n",
        "    - breakglass.review\n    - enforcement.override\n",
    )
    f = tmp_path / "roles.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match="emergency duties are held by no role"):
        load_roles(f)


def test_role_approve_for_admin_is_refused_by_the_raci_matrix(
    tmp_path: Path, shipped_text: dict[str, str]
) -> None:
    """Giving the maker's role the checker's duty is caught at load, not at the first request."""
    roles = shipped_text["roles.yaml"].replace(
        "      - role.assign\n", "      - role.assign\n      - role.approve\n"
    )
    (tmp_path / "roles.yaml").write_text(roles)
    table = load_roles(tmp_path / "roles.yaml")
    (tmp_path / "raci.yaml").write_text(shipped_text["raci.yaml"])
    with pytest.raises(ConfigError) as e:
        load_raci(tmp_path / "raci.yaml", table)
    assert "role.approve" in str(e.value) and "admin" in str(e.value)


# -- the request -------------------------------------------------------------------------------------------


def test_request_names_the_binding_scope_subject_and_digest(ownership: Ownership) -> None:
    request = _request(ownership, scope=Scope.team("payments"))
    assert request.kind == "role.binding"
    assert request.maker == "adam"
    assert request.scope == Scope.team("payments")
    assert request.excluded == {"mallory"}
    assert request.approver_duty is Duty.ROLE_APPROVE
    assert (request.quorum, request.severity) == (1, Severity.HIGH)
    assert request.expires_at - request.created_at == timedelta(days=3)
    assert request.subject == "bind security@team:payments to mallory"
    assert _request(ownership).severity is Severity.CRITICAL  # organisation-wide


def test_request_runs_the_whole_grant_check_first(ownership: Ownership) -> None:
    devops = person("dave", (Role.DEVOPS, Scope.team("payments")), teams=("payments",))
    with pytest.raises(SoDViolation) as e:
        grants.request_binding("apr-1", ADMIN, devops, Binding("dave", Role.SECURITY, ORG), ownership, NOW)
    assert e.value.code == "conflict"
    with pytest.raises(SoDViolation, match="admin-security-devops"):
        grants.request_binding("apr-1", ADMIN, ADMIN, Binding("adam", Role.SECURITY, ORG), ownership, NOW)
    with pytest.raises(AuthorizationError):
        # security cannot even ask: it holds no role.assign
        grants.request_binding(
            "apr-1", SEC, person("bob"), Binding("bob", Role.SECURITY, ORG), ownership, NOW
        )
    team_admin = person("tia", (Role.ADMIN, Scope.team("payments")))
    with pytest.raises(AuthorizationError):
        grants.request_binding(
            "apr-1", team_admin, person("bob"), Binding("bob", Role.SECURITY, ORG), ownership, NOW
        )


def test_non_sensitive_role_is_not_parked(ownership: Ownership) -> None:
    with pytest.raises(GovernanceError) as e:
        grants.request_binding(
            "apr-1", ADMIN, person("bob"), Binding("bob", Role.DEVOPS, ORG), ownership, NOW
        )
    assert e.value.code == "not_sensitive"


# -- who decides ---------------------------------------------------------------------------------------------


def test_admin_cannot_approve_own_sensitive_binding_request(ownership: Ownership) -> None:
    """Even holding role.approve (which the role table never gives an admin), the maker is refused."""
    request = _request(ownership)
    with pytest.raises(ApprovalRefused) as e:
        decide(request, "adam", frozenset({Duty.ROLE_APPROVE}), frozenset({"it"}), True, NOW)
    assert e.value.code == "self_approval"
    with pytest.raises(ApprovalRefused) as e:
        decide(request, "adam", _duties(ADMIN, request, ownership), frozenset(), True, NOW)
    assert e.value.code == "self_approval"


def test_subject_cannot_approve_own_sensitive_binding(ownership: Ownership) -> None:
    request = _request(ownership, subject_id="bob", scope=Scope.team("secops"))
    bob = person("bob", Role.SECURITY, teams=("secops",))  # already security: holds the duty
    assert Duty.ROLE_APPROVE in _duties(bob, request, ownership)
    for approve in (True, False):
        with pytest.raises(ApprovalRefused) as e:
            decide(request, "bob", _duties(bob, request, ownership), bob.teams, approve, NOW, "mine")
        assert e.value.code == "self_approval"


def test_devops_cannot_approve_sensitive_binding(ownership: Ownership) -> None:
    request = _request(ownership)
    for who in (
        person("dave", Role.DEVOPS),
        person("carol", Role.COMPLIANCE),
        person("adele", Role.ADMIN),
        person("tess", (Role.SECURITY, Scope.team("payments"))),  # security, but not over org:*
    ):
        with pytest.raises(ApprovalRefused) as e:
            decide(request, who.id, _duties(who, request, ownership), who.teams, True, NOW)
        assert e.value.code == "missing_duty", who.id


def test_security_approver_other_than_maker_and_subject_approves(ownership: Ownership) -> None:
    request = _request(ownership)
    done = decide(request, "sue", _duties(SEC, request, ownership), SEC.teams, True, NOW + timedelta(hours=1))
    assert done.state is RequestState.APPROVED
    assert done.approvers == ("sue",)


def test_team_security_approves_inside_its_team_only(ownership: Ownership) -> None:
    tess = person("tess", (Role.SECURITY, Scope.team("payments")))
    inside = _request(ownership, scope=Scope.parse("app:shop"))
    assert decide(inside, "tess", _duties(tess, inside, ownership), tess.teams, True, NOW).state is (
        RequestState.APPROVED
    )
    outside = _request(ownership, scope=Scope.parse("app:storefront"))
    with pytest.raises(ApprovalRefused, match=r"lacks role\.approve over app:storefront"):
        decide(outside, "tess", _duties(tess, outside, ownership), tess.teams, True, NOW)


def test_eligible_approvers_exclude_maker_subject_and_uncovered(ownership: Ownership) -> None:
    request = _request(ownership, subject_id="bob")
    people = [
        ADMIN,
        SEC,
        person("bob", (Role.SECURITY, Scope.team("web"))),
        person("tess", (Role.SECURITY, Scope.team("payments"))),
        person("dave", Role.DEVOPS),
    ]
    assert grants.eligible_approvers(request, people, ownership) == ("sue",)
    assert grants.eligible_approvers(request, [ADMIN, people[2]], ownership) == ()


# -- the stored request -----------------------------------------------------------------------------------


def test_stored_request_with_the_subjects_vote_is_refused(ownership: Ownership) -> None:
    """A database edit adding the excluded person's approval does not load."""
    request = _request(ownership)
    doc = request.to_json()
    assert doc["excluded"] == ["mallory"]
    assert ApprovalRequest.from_json(doc) == request
    forged = {
        **doc,
        "state": "approved",
        "closed_at": NOW.isoformat(),
        "approvals": [{"actor": "mallory", "approve": True, "at": NOW.isoformat(), "reason": ""}],
    }
    with pytest.raises(GovernanceError, match="a person the request is about voted on it"):
        ApprovalRequest.from_json(forged)
    # dropping the exclusion to make the vote load is refused as well: excluded, if present, names someone
    with pytest.raises(GovernanceError, match="excluded is written only when it names someone"):
        ApprovalRequest.from_json({**forged, "excluded": []})


def test_requests_of_other_kinds_keep_their_stored_form(ownership: Ownership) -> None:
    """Documents written before exclusions existed (no ``excluded`` key) still load unchanged."""
    from dutyguard.governance import open_request

    request = open_request(
        default_policy(ApprovalKind.SOD_RULES_CHANGE),
        request_id="apr-2",
        maker=SEC,
        subject="rules",
        subject_digest="ab" * 32,
        severity=Severity.MEDIUM,
        scope=ORG,
        now=NOW,
        ownership=ownership,
    )
    doc = request.to_json()
    assert "excluded" not in doc
    assert ApprovalRequest.from_json(doc) == request


def test_maker_cannot_be_listed_as_excluded(ownership: Ownership) -> None:
    doc = _request(ownership).to_json()
    with pytest.raises(GovernanceError, match="other than the maker"):
        ApprovalRequest.from_json({**doc, "excluded": ["adam", "mallory"]})
    with pytest.raises(GovernanceError, match="names someone twice"):
        ApprovalRequest.from_json({**doc, "excluded": ["mallory", "mallory"]})


@pytest.mark.parametrize(
    "payload",
    [
        '{"identity":"bob","role":"security","scope":"org:*","sudo":true}',
        '{"identity":"bob","role":"security"}',
        '{"identity":"bob","role":"root","scope":"org:*"}',
        '{"identity":"Bob","role":"security","scope":"org:*"}',
        '{"scope":"org:*","role":"security","identity":"bob"}',  # same content, not the approved text
        '{"identity": "bob", "role": "security", "scope": "org:*"}',
        '{"identity":"bob","role":"security","scope":"org"}',
        '{"identity":["bob"],"role":"security","scope":"org:*"}',
        "not json",
    ],
)
def test_stored_payload_must_be_the_canonical_binding(payload: str) -> None:
    with pytest.raises(GovernanceError):
        grants.parse_binding_payload(payload, "apr-1")


def test_payload_round_trips() -> None:
    b = Binding("bob", Role.SECURITY, Scope.parse("namespace:shop-prod"))
    text = grants.binding_payload(b)
    assert json.loads(text) == {"identity": "bob", "role": "security", "scope": "namespace:shop-prod"}
    assert grants.parse_binding_payload(text, "apr-1") == b


# -- bootstrap -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "scope", "approver_exists", "window_open", "expected"),
    [
        (Role.SECURITY, ORG, False, True, True),  # the first security member of a new installation
        (Role.SECURITY, ORG, True, True, False),  # someone can approve: ask them
        (Role.SECURITY, ORG, False, False, False),  # window used: removing every approver does not reopen it
        (Role.SECURITY, Scope.team("secops"), False, True, False),  # would leave the org without approver
        (Role.DEVOPS, ORG, False, True, False),  # not a role that can approve
    ],
)
def test_bootstrap_binding_only_for_the_first_organisation_wide_approver(
    role: Role, scope: Scope, approver_exists: bool, window_open: bool, expected: bool
) -> None:
    b = Binding("alice", role, scope)
    assert (
        grants.is_bootstrap_binding(b, approver_exists=approver_exists, window_open=window_open) is expected
    )
