"""Maker-checker: named attacks, quorum by severity, expiry, stored-document tampering, and a property test."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dutyguard.core.model import Severity
from dutyguard.errors import ApprovalRefused, GovernanceError
from dutyguard.governance import (
    ORG,
    ApprovalKind,
    ApprovalPolicy,
    ApprovalRequest,
    Duty,
    Ownership,
    RequestState,
    Role,
    Scope,
    decide,
    default_policy,
    effective_duties,
    expire,
    open_request,
    withdraw,
)
from tests.governance.conftest import NOW, person

DIGEST = hashlib.sha256(b"policy bundle v7").hexdigest()
SEC = frozenset({Duty.POLICY_APPROVE, Duty.EXCEPTION_APPROVE, Duty.SOD_RULES_APPROVE, Duty.PLAYBOOK_APPROVE})


def _policy_change(
    ownership: Ownership, severity: Severity = Severity.HIGH, maker: str = "sam"
) -> ApprovalRequest:
    return open_request(
        default_policy(ApprovalKind.POLICY_CHANGE),
        request_id="req-1",
        maker=person(maker, Role.SECURITY, teams=("secops",)),
        subject="policy bundle default v7",
        subject_digest=DIGEST,
        severity=severity,
        scope=ORG,
        now=NOW,
        ownership=ownership,
    )


def _exception(ownership: Ownership, severity: Severity) -> ApprovalRequest:
    return open_request(
        default_policy(ApprovalKind.EXCEPTION),
        request_id="exc-1",
        maker=person("dana", (Role.DEVOPS, Scope.team("payments")), teams=("payments",)),
        subject="exception for pss.privileged in app:shop",
        subject_digest=DIGEST,
        severity=severity,
        scope=Scope.parse("app:shop"),
        now=NOW,
        ownership=ownership,
    )


def _refused(
    code: str, request: ApprovalRequest, actor: str, duties: frozenset[Duty] = SEC, **kw: object
) -> None:
    args: dict[str, object] = {
        "actor_teams": frozenset(),
        "approve": True,
        "now": NOW + timedelta(hours=1),
        "reason": "",
    }
    args.update(kw)
    with pytest.raises(ApprovalRefused) as e:
        decide(request, actor, duties, **args)  # type: ignore[arg-type]
    assert e.value.code == code, e.value.message


def _ok(request: ApprovalRequest, actor: str, approve: bool = True, **kw: object) -> ApprovalRequest:
    args: dict[str, object] = {
        "actor_teams": frozenset(),
        "now": NOW + timedelta(hours=1),
        "reason": "reviewed",
    }
    args.update(kw)
    return decide(request, actor, SEC, approve=approve, **args)  # type: ignore[arg-type]


# -- named attacks -------------------------------------------------------------------------------


def test_self_approval_refused(ownership: Ownership) -> None:
    req = _policy_change(ownership)
    _refused("self_approval", req, "sam")
    # nor may the maker end it by rejecting: that is withdrawing, and it is recorded as such
    _refused("self_approval", req, "sam", approve=False, reason="changed my mind")


def test_approving_twice_refused(ownership: Ownership) -> None:
    req = _policy_change(ownership, Severity.CRITICAL)
    once = _ok(req, "sue")
    assert once.state is RequestState.PENDING
    _refused("duplicate_approval", once, "sue")
    assert once.approvers == ("sue",)


def test_wrong_role_cannot_approve(ownership: Ownership) -> None:
    req = _policy_change(ownership)
    for role in (Role.DEVOPS, Role.COMPLIANCE, Role.ADMIN):
        actor = person("x", role)
        _refused("missing_duty", req, "x", effective_duties(actor, ORG, ownership))


def test_approval_needs_the_duty_over_the_requests_scope(ownership: Ownership) -> None:
    """A security person scoped to team web cannot approve an exception for payments' app."""
    req = _exception(ownership, Severity.HIGH)
    web_sec = person("wes", (Role.SECURITY, Scope.team("web")))
    _refused("missing_duty", req, "wes", effective_duties(web_sec, req.scope, ownership))
    pay_sec = person("pia", (Role.SECURITY, Scope.team("payments")))
    assert effective_duties(pay_sec, req.scope, ownership) >= {Duty.EXCEPTION_APPROVE}


def test_teammate_cannot_approve_when_team_exclusion_on(ownership: Ownership) -> None:
    req = _exception(ownership, Severity.HIGH)
    assert req.exclude_maker_team
    _refused("same_team", req, "pia", actor_teams=frozenset({"payments", "secops"}))
    done = decide(req, "sue", SEC, frozenset({"secops"}), True, NOW + timedelta(hours=1))
    assert done.state is RequestState.APPROVED


def test_teammate_may_approve_when_team_exclusion_off(ownership: Ownership) -> None:
    req = _policy_change(ownership)
    assert not req.exclude_maker_team
    done = decide(req, "sue", SEC, frozenset({"secops"}), True, NOW + timedelta(hours=1))
    assert done.state is RequestState.APPROVED


def test_one_rejection_ends_request(ownership: Ownership) -> None:
    req = _policy_change(ownership, Severity.CRITICAL)
    one = _ok(req, "sue")
    rejected = _ok(one, "sid", approve=False, reason="widens the exemption list")
    assert rejected.state is RequestState.REJECTED
    assert rejected.rejection is not None
    assert rejected.rejection.actor == "sid"
    assert rejected.closed_reason == "widens the exemption list"
    # a later approval cannot resurrect it
    _refused("closed", rejected, "sky")


def test_rejection_needs_a_reason(ownership: Ownership) -> None:
    _refused("reason_required", _policy_change(ownership), "sue", approve=False, reason="  ")


def test_approval_binds_to_the_content_seen(ownership: Ownership) -> None:
    req = _policy_change(ownership)
    other = hashlib.sha256(b"policy bundle v7, swapped after review").hexdigest()
    _refused("stale_subject", req, "sue", seen_digest=other)
    assert _ok(req, "sue", seen_digest=DIGEST).state is RequestState.APPROVED


# -- quorum by severity ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("severity", "quorum"),
    [(Severity.CRITICAL, 2), (Severity.HIGH, 1), (Severity.MEDIUM, 1), (Severity.LOW, 1), (Severity.INFO, 1)],
)
def test_quorum_by_severity(ownership: Ownership, severity: Severity, quorum: int) -> None:
    req = _exception(ownership, severity)
    assert req.quorum == quorum
    voters = ["sue", "sid", "sky"]
    for i in range(quorum - 1):
        req = _ok(req, voters[i])
        assert req.state is RequestState.PENDING
        assert req.remaining == quorum - 1 - i
    req = _ok(req, voters[quorum - 1])
    assert req.state is RequestState.APPROVED
    assert req.closed_at == NOW + timedelta(hours=1)


def test_policy_quorum_is_copied_when_the_request_opens(ownership: Ownership) -> None:
    """Changing a policy later never changes a pending request."""
    req = _policy_change(ownership, Severity.CRITICAL)
    assert req.quorum == 2
    assert default_policy(ApprovalKind.POLICY_CHANGE).quorum(Severity.CRITICAL) == 2


@pytest.mark.parametrize(
    "quorum",
    [
        {"critical": 0, "high": 1, "medium": 1, "low": 1, "info": 1},
        {"critical": 2, "high": 1, "medium": 1, "low": 1},
        {"critical": 1, "high": 2, "medium": 1, "low": 1, "info": 1},
        {"critical": 2, "high": 1, "medium": 1, "low": 1, "info": 1, "severe": 3},
        {"critical": True, "high": 1, "medium": 1, "low": 1, "info": 1},
    ],
)
def test_unsafe_policies_refused(quorum: dict[str, int]) -> None:
    with pytest.raises(GovernanceError) as e:
        ApprovalPolicy(
            "policy.change", Duty.POLICY_PROPOSE, Duty.POLICY_APPROVE, quorum, timedelta(days=1), False
        )  # type: ignore[arg-type]
    assert e.value.code == "invalid_policy"


def test_read_duty_cannot_approve() -> None:
    with pytest.raises(GovernanceError):
        ApprovalPolicy.uniform("x", Duty.POLICY_PROPOSE, Duty.POLICY_READ, 1, timedelta(days=1), False)


def test_maker_needs_the_maker_duty(ownership: Ownership) -> None:
    with pytest.raises(ApprovalRefused) as e:
        open_request(
            default_policy(ApprovalKind.POLICY_CHANGE),
            request_id="req-1",
            maker=person("dana", Role.DEVOPS),
            subject="let me in",
            subject_digest=DIGEST,
            severity=Severity.LOW,
            scope=ORG,
            now=NOW,
            ownership=ownership,
        )
    assert e.value.code == "missing_duty"


# -- expiry and withdrawal -----------------------------------------------------------------------------


def test_expiry(ownership: Ownership) -> None:
    req = _policy_change(ownership)
    assert req.expires_at == NOW + timedelta(days=7)
    _refused("expired", req, "sue", now=req.expires_at)
    assert expire(req, req.expires_at - timedelta(seconds=1)) is req
    gone = expire(req, req.expires_at)
    assert gone.state is RequestState.EXPIRED
    _refused("closed", gone, "sue", now=req.expires_at - timedelta(seconds=1))
    approved = _ok(req, "sue")
    assert expire(approved, req.expires_at + timedelta(days=1)) is approved


def test_vote_before_creation_refused(ownership: Ownership) -> None:
    _refused("expired", _policy_change(ownership), "sue", now=NOW - timedelta(seconds=1))


def test_withdraw_only_by_maker(ownership: Ownership) -> None:
    req = _policy_change(ownership)
    with pytest.raises(ApprovalRefused) as e:
        withdraw(req, "sue", NOW, "not mine")
    assert e.value.code == "not_maker"
    out = withdraw(req, "sam", NOW, "superseded by req-2")
    assert out.state is RequestState.WITHDRAWN
    _refused("closed", out, "sue")


# -- stored documents ------------------------------------------------------------------------------------


def test_json_round_trip(ownership: Ownership) -> None:
    req = _ok(_policy_change(ownership, Severity.CRITICAL), "sue")
    assert ApprovalRequest.from_json(req.to_json()) == req


@pytest.mark.parametrize(
    ("edit", "fragment"),
    [
        (lambda d: d["approvals"].append({**d["approvals"][0], "actor": "sam"}), "maker voted"),
        (lambda d: d["approvals"].append(dict(d["approvals"][0])), "voted twice"),
        (lambda d: d.update(state="approved"), "does not match"),
        (lambda d: d.update(quorum=0), "quorum"),
        (lambda d: d.update(admin_override=True), "unknown keys admin_override"),
        (lambda d: d.pop("maker"), "missing keys maker"),
        (lambda d: d.update(created_at="2026-03-02T09:00:00"), "timezone-aware"),
        (lambda d: d.update(subject_digest="abc"), "sha256"),
        (lambda d: d.update(maker="Sam"), "not a valid id"),
        (
            lambda d: d["approvals"][0].update(at="2027-01-01T00:00:00+00:00"),
            "outside the request's lifetime",
        ),
    ],
)
def test_tampered_stored_request_refused(ownership: Ownership, edit: object, fragment: str) -> None:
    doc = _ok(_policy_change(ownership, Severity.CRITICAL), "sue").to_json()
    edit(doc)  # type: ignore[operator]
    with pytest.raises(GovernanceError) as e:
        ApprovalRequest.from_json(doc)
    assert fragment in e.value.message


# -- property: no sequence of decisions lets the maker count or one person reach quorum 2 -----------------

ACTORS = ["sam", "sue", "sid", "sky"]  # sam is the maker
_step = st.tuples(
    st.sampled_from(ACTORS),
    st.booleans(),  # approve?
    st.booleans(),  # holds the approver duty?
    st.sampled_from([frozenset(), frozenset({"secops"}), frozenset({"payments"})]),
    st.integers(min_value=0, max_value=10 * 24 * 3600),  # seconds after opening
    st.sampled_from(["", "looks fine", "no"]),
)


@settings(max_examples=300, deadline=None)
@given(
    severity=st.sampled_from(list(Severity)),
    exclude_team=st.booleans(),
    steps=st.lists(_step, max_size=12),
)
def test_no_sequence_lets_maker_count_or_one_approver_reach_quorum_two(
    severity: Severity, exclude_team: bool, steps: list[tuple[str, bool, bool, frozenset[str], int, str]]
) -> None:
    policy = ApprovalPolicy(
        "exception",
        Duty.EXCEPTION_REQUEST,
        Duty.EXCEPTION_APPROVE,
        {Severity.CRITICAL: 2, Severity.HIGH: 2, Severity.MEDIUM: 1, Severity.LOW: 1, Severity.INFO: 1},
        timedelta(days=7),
        exclude_team,
    )
    own = Ownership.build(["payments", "secops"])
    req = open_request(
        policy,
        request_id="req-p",
        maker=person("sam", Role.DEVOPS, teams=("payments",)),
        subject="exception",
        subject_digest=DIGEST,
        severity=severity,
        scope=ORG,
        now=NOW,
        ownership=own,
    )
    counted: list[str] = []
    for actor, approve, has_duty, teams, offset, reason in steps:
        duties = frozenset({Duty.EXCEPTION_APPROVE}) if has_duty else frozenset({Duty.EXCEPTION_READ})
        before = req
        try:
            req = decide(req, actor, duties, teams, approve, NOW + timedelta(seconds=offset), reason)
        except ApprovalRefused:
            assert req is before
            continue
        # an accepted vote: by a checker with the duty, never the maker, never twice
        assert actor != "sam"
        assert has_duty
        assert before.state is RequestState.PENDING
        if exclude_team:
            assert not teams & {"payments"}
        if approve:
            counted.append(actor)
        ApprovalRequest.from_json(req.to_json())  # every reachable state is a valid stored document
    assert "sam" not in req.approvers
    assert len(set(req.approvers)) == len(req.approvers) == len(counted)
    if req.state is RequestState.APPROVED:
        assert len(set(req.approvers)) >= req.quorum
        assert req.rejection is None
    if req.quorum == 2:
        assert not (req.state is RequestState.APPROVED and len(set(req.approvers)) < 2)
    assert req.state in (RequestState.PENDING, RequestState.APPROVED, RequestState.REJECTED)


def test_property_test_reaches_approval_at_all() -> None:
    """Guard against a vacuous property: the happy path through the same policy does approve."""
    own = Ownership.build(["payments"])
    req = open_request(
        default_policy(ApprovalKind.EXCEPTION),
        request_id="req-p",
        maker=person("sam", Role.DEVOPS, teams=("payments",)),
        subject="exception",
        subject_digest=DIGEST,
        severity=Severity.CRITICAL,
        scope=ORG,
        now=NOW,
        ownership=own,
    )
    at = datetime(2026, 3, 2, 10, tzinfo=UTC)
    req = decide(req, "sue", frozenset({Duty.EXCEPTION_APPROVE}), frozenset(), True, at)
    req = decide(req, "sid", frozenset({Duty.EXCEPTION_APPROVE}), frozenset(), True, at)
    assert req.state is RequestState.APPROVED
