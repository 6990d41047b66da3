"""Break-glass: time box, reason, one open grant, review only by someone else with security duties."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dutyguard.errors import BreakglassRefused
from dutyguard.governance import (
    ORG,
    Duty,
    GrantState,
    Ownership,
    ReviewOutcome,
    Role,
    Scope,
    close_grant,
    effective_duties,
    open_grant,
    review_grant,
    shipped_roles,
)
from dutyguard.governance.breakglass import Grant
from tests.governance.conftest import NOW, person

PAYMENTS = Scope.team("payments")
REASON = "checkout down; hotfix image blocked by pss.privileged false positive"
DANA = person("dana", (Role.DEVOPS, PAYMENTS), teams=("payments",))
SAM = person("sam", Role.SECURITY)


def _open(ownership: Ownership, **kw: object) -> Grant:
    args: dict[str, object] = {
        "grant_id": "bg-1",
        "opener": DANA,
        "reason": REASON,
        "scope": PAYMENTS,
        "duration": timedelta(hours=1),
        "now": NOW,
        "ownership": ownership,
    }
    args.update(kw)
    return open_grant(**args)  # type: ignore[arg-type]


def _refused(code: str, fn: object, *args: object, **kw: object) -> None:
    with pytest.raises(BreakglassRefused) as e:
        fn(*args, **kw)  # type: ignore[operator]
    assert e.value.code == code, e.value.message


def test_open_grant_is_time_boxed(ownership: Ownership) -> None:
    g = _open(ownership)
    assert g.expires_at == NOW + timedelta(hours=1)
    assert g.is_active(NOW)
    assert g.state(NOW + timedelta(minutes=59)) is GrantState.OPEN
    assert g.state(NOW + timedelta(hours=1)) is GrantState.EXPIRED
    assert not g.is_active(NOW + timedelta(hours=1))


@pytest.mark.parametrize(
    "duration", [timedelta(0), timedelta(seconds=-1), timedelta(hours=4, seconds=1), timedelta(days=30)]
)
def test_duration_outside_the_time_box_refused(ownership: Ownership, duration: timedelta) -> None:
    assert shipped_roles().breakglass.max_duration == timedelta(hours=4)
    _refused("bad_duration", _open, ownership, duration=duration)


@pytest.mark.parametrize("reason", ["", "   ", "fix", "urgent\x00now please", "x" * 2001])
def test_reason_required(ownership: Ownership, reason: str) -> None:
    _refused("reason_required", _open, ownership, reason=reason)


def test_only_devops_over_the_scope_may_open(ownership: Ownership) -> None:
    _refused("missing_duty", _open, ownership, scope=Scope.team("web"))
    _refused("missing_duty", _open, ownership, scope=ORG)
    for role in (Role.SECURITY, Role.COMPLIANCE, Role.ADMIN):
        _refused("missing_duty", _open, ownership, opener=person("x", role))


def test_one_open_grant_per_opener(ownership: Ownership) -> None:
    first = _open(ownership)
    _refused(
        "already_open", _open, ownership, grant_id="bg-2", open_grants=[first], now=NOW + timedelta(minutes=5)
    )
    later = _open(ownership, grant_id="bg-2", open_grants=[first], now=NOW + timedelta(hours=2))
    assert later.id == "bg-2"


def test_opener_cannot_review(ownership: Ownership) -> None:
    g = close_grant(_open(ownership), "dana", frozenset(), NOW + timedelta(minutes=30))
    # even if dana somehow held breakglass.review
    _refused(
        "self_review",
        review_grant,
        g,
        "dana",
        frozenset({Duty.BREAKGLASS_REVIEW}),
        ReviewOutcome.JUSTIFIED,
        "ok",
        NOW + timedelta(hours=1),
    )


def test_non_security_cannot_review(ownership: Ownership) -> None:
    g = close_grant(_open(ownership), "dana", frozenset(), NOW + timedelta(minutes=30))
    at = NOW + timedelta(hours=1)
    for role in (Role.DEVOPS, Role.COMPLIANCE, Role.ADMIN):
        duties = effective_duties(person("rita", role), PAYMENTS, ownership)
        _refused("missing_duty", review_grant, g, "rita", duties, ReviewOutcome.JUSTIFIED, "looked at it", at)


def test_security_reviews_after_the_grant_ends(ownership: Ownership) -> None:
    g = _open(ownership)
    duties = effective_duties(SAM, PAYMENTS, ownership)
    _refused(
        "still_open",
        review_grant,
        g,
        "sam",
        duties,
        ReviewOutcome.JUSTIFIED,
        "fine",
        NOW + timedelta(minutes=10),
    )
    assert g.review_due(NOW + timedelta(hours=1))
    done = review_grant(
        g, "sam", duties, ReviewOutcome.UNJUSTIFIED, "no incident ticket; escalated", NOW + timedelta(hours=2)
    )
    assert done.review is not None
    assert done.review.reviewer == "sam"
    assert done.state(NOW + timedelta(hours=2)) is GrantState.REVIEWED
    assert not done.review_due(NOW + timedelta(hours=3))
    _refused(
        "already_reviewed",
        review_grant,
        done,
        "sue",
        duties,
        ReviewOutcome.JUSTIFIED,
        "again",
        NOW + timedelta(hours=3),
    )


def test_review_needs_notes(ownership: Ownership) -> None:
    g = close_grant(_open(ownership), "dana", frozenset(), NOW + timedelta(minutes=1))
    _refused(
        "notes_required",
        review_grant,
        g,
        "sam",
        frozenset({Duty.BREAKGLASS_REVIEW}),
        ReviewOutcome.JUSTIFIED,
        " ",
        NOW + timedelta(hours=1),
    )


def test_close_by_opener_or_reviewer_only(ownership: Ownership) -> None:
    g = _open(ownership)
    at = NOW + timedelta(minutes=5)
    _refused("missing_duty", close_grant, g, "eve", frozenset({Duty.BREAKGLASS_OPEN}), at)
    by_sec = close_grant(g, "sam", frozenset({Duty.BREAKGLASS_REVIEW}), at)
    assert by_sec.closed_by == "sam"
    assert not by_sec.is_active(at)
    _refused("closed", close_grant, by_sec, "dana", frozenset(), at)
    _refused("closed", close_grant, g, "dana", frozenset(), NOW + timedelta(hours=2))
