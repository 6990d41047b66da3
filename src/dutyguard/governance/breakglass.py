"""Break-glass: an emergency path that is allowed, loud and reviewed.

A person holding ``breakglass.open`` over a scope may open a grant there with a reason. While
the grant is open (at most ``breakglass.max_duration_minutes`` of ``roles.yaml``, never
extended: open a new one, which is a new alert), the opener holds the emergency duties
(``enforcement.override``) inside the scope. The server records an audit entry and sends the
notification the moment :func:`open_grant` returns.

State machine (every transition returns a new value; none goes backwards)::

    open ──(closed by opener or a reviewer)──► closed ──┐
      └───────────(expires_at passes)────────► expired ─┴─(review by someone else with
                                                             breakglass.review)──► reviewed

Invariants: one open grant per opener; the opener never reviews their own grant; a review
happens after the grant has ended, once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from dutyguard.errors import BreakglassRefused, GovernanceError
from dutyguard.governance._values import MAX_NOTES, MAX_REASON, check_id, check_text, check_time
from dutyguard.governance.authz import Principal, authorize
from dutyguard.governance.duties import Duty, RoleTable, shipped_roles
from dutyguard.governance.raci import Raci
from dutyguard.governance.scope import Ownership, Scope

MIN_REASON = 10
"""A reason an on-call reviewer can act on; "x" or "fix" is refused."""


class ReviewOutcome(StrEnum):
    JUSTIFIED = "justified"
    UNJUSTIFIED = "unjustified"


class GrantState(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    EXPIRED = "expired"
    REVIEWED = "reviewed"


@dataclass(frozen=True, slots=True)
class Review:
    reviewer: str
    outcome: ReviewOutcome
    notes: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Grant:
    id: str
    opener: str
    reason: str
    scope: Scope
    opened_at: datetime
    expires_at: datetime
    closed_at: datetime | None = None
    closed_by: str | None = None
    review: Review | None = None

    def __post_init__(self) -> None:
        check_id(self.id, "grant id")
        check_id(self.opener, "opener")
        check_time(self.opened_at, "opened_at")
        check_time(self.expires_at, "expires_at")
        if self.expires_at <= self.opened_at:
            raise GovernanceError("invalid_time", f"grant {self.id} expires before it opens")
        if self.closed_at is not None:
            check_time(self.closed_at, "closed_at")

    def is_active(self, now: datetime) -> bool:
        return self.closed_at is None and self.opened_at <= now < self.expires_at

    def ended_at(self, now: datetime) -> datetime | None:
        if self.closed_at is not None:
            return self.closed_at
        return self.expires_at if now >= self.expires_at else None

    def state(self, now: datetime) -> GrantState:
        if self.review is not None:
            return GrantState.REVIEWED
        if self.closed_at is not None:
            return GrantState.CLOSED
        return GrantState.EXPIRED if now >= self.expires_at else GrantState.OPEN

    def review_due(self, now: datetime) -> bool:
        return self.review is None and not self.is_active(now)


def open_grant(
    grant_id: str,
    opener: Principal,
    reason: str,
    scope: Scope,
    duration: timedelta,
    now: datetime,
    ownership: Ownership,
    *,
    open_grants: Iterable[Grant] = (),
    roles: RoleTable | None = None,
    raci: Raci | None = None,
) -> Grant:
    """Open an emergency grant for ``opener`` over ``scope``; :class:`BreakglassRefused` otherwise."""
    table = roles if roles is not None else shipped_roles()
    check_time(now, "now")
    decision = authorize(opener, Duty.BREAKGLASS_OPEN, scope, ownership, roles=table, raci=raci)
    if not decision.allowed:
        raise BreakglassRefused("missing_duty", decision.reason)
    try:
        text = check_text(reason, "a break-glass reason", max_len=MAX_REASON, code="reason_required")
    except GovernanceError as e:
        raise BreakglassRefused(e.code, e.message) from None
    if len(text) < MIN_REASON:
        raise BreakglassRefused(
            "reason_required", f"a break-glass reason needs at least {MIN_REASON} characters"
        )
    limit = table.breakglass.max_duration
    if duration <= timedelta(0) or duration > limit:
        raise BreakglassRefused(
            "bad_duration", f"a grant lasts more than 0 and at most {limit}, not {duration}"
        )
    for g in open_grants:
        if g.opener == opener.id and g.is_active(now):
            raise BreakglassRefused("already_open", f"{opener.id} already has open grant {g.id}")
    return Grant(grant_id, opener.id, text, scope, now, now + duration)


def close_grant(grant: Grant, actor_id: str, actor_duties: frozenset[Duty], now: datetime) -> Grant:
    """End a grant early: the opener, or someone who may review grants."""
    check_time(now, "now")
    if not grant.is_active(now):
        raise BreakglassRefused("closed", f"grant {grant.id} is already {grant.state(now)}")
    if actor_id != grant.opener and Duty.BREAKGLASS_REVIEW not in actor_duties:
        raise BreakglassRefused(
            "missing_duty", f"only {grant.opener} or a reviewer may close grant {grant.id}"
        )
    return replace(grant, closed_at=now, closed_by=actor_id)


def review_grant(
    grant: Grant,
    reviewer_id: str,
    reviewer_duties: frozenset[Duty],
    outcome: ReviewOutcome,
    notes: str,
    now: datetime,
) -> Grant:
    """Record the after-the-fact review: someone other than the opener, with ``breakglass.review``."""
    check_time(now, "now")
    if reviewer_id == grant.opener:
        raise BreakglassRefused("self_review", f"{reviewer_id} opened grant {grant.id} and cannot review it")
    if Duty.BREAKGLASS_REVIEW not in reviewer_duties:
        raise BreakglassRefused("missing_duty", f"{reviewer_id} lacks breakglass.review")
    if grant.review is not None:
        raise BreakglassRefused(
            "already_reviewed", f"grant {grant.id} was reviewed by {grant.review.reviewer}"
        )
    if grant.is_active(now):
        raise BreakglassRefused("still_open", f"grant {grant.id} is still open; close it first")
    if not isinstance(outcome, ReviewOutcome):
        raise BreakglassRefused("invalid_outcome", f"unknown review outcome {outcome!r}")
    try:
        text = check_text(notes, "review notes", max_len=MAX_NOTES, code="notes_required")
    except GovernanceError as e:
        raise BreakglassRefused(e.code, e.message) from None
    return replace(grant, review=Review(check_id(reviewer_id, "reviewer"), outcome, text, now))
