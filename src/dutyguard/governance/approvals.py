"""Maker-checker: the one approval mechanism every controlled change goes through.

A request is opened by its *maker* (who must hold the kind's maker duty over the request's
scope) and decided by *checkers* holding the approver duty. The policy in force is copied into
the request when it opens (quorum for its severity, approver duty, team exclusion, expiry), so
changing a policy never changes a pending request.

Invariants, checked on every value (also one read back from storage, so a row edited in the
database to add the maker's vote is refused on load):

- the maker never votes (approving or rejecting: withdrawing is the maker's way out);
- nor does anyone the request names as *excluded*: the person a change is about (the identity a
  sensitive role is being bound to cannot approve their own access);
- each checker votes once; approvals are counted per distinct checker;
- one rejection ends the request (state ``rejected``);
- ``approved`` iff the number of approvals reached the quorum before expiry;
- a decided, expired or withdrawn request never changes again.

State machine::

    pending ──quorum reached──► approved
       │ ──one rejection─────► rejected
       │ ──expires_at passed─► expired      (by expire(), or refused votes after it)
       └ ──maker withdraws───► withdrawn
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import assert_never

from dutyguard.core.model import Severity
from dutyguard.errors import ApprovalRefused, GovernanceError
from dutyguard.governance._values import MAX_REASON, check_id, check_text, check_time
from dutyguard.governance.authz import Principal, authorize
from dutyguard.governance.duties import Duty, RoleTable
from dutyguard.governance.raci import Raci
from dutyguard.governance.scope import Ownership, Scope

MAX_QUORUM = 10
MAX_TTL = timedelta(days=30)
_KIND = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*")
_DIGEST = re.compile(r"[0-9a-f]{64}")


class ApprovalKind(StrEnum):
    """The controlled changes the core knows; features may define more policies with their own kinds."""

    POLICY_CHANGE = "policy.change"
    PLAYBOOK_CHANGE = "playbook.change"
    EXCEPTION = "exception"
    SOD_RULES_CHANGE = "sod.rules.change"
    ROLE_BINDING = "role.binding"


class RequestState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    kind: str
    maker_duty: Duty
    approver_duty: Duty
    quorum_by_severity: Mapping[Severity, int]
    """Approvals needed (the maker never counts). Every severity must be listed; it never falls as severity rises."""
    ttl: timedelta
    exclude_maker_team: bool

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not _KIND.fullmatch(self.kind):
            raise GovernanceError("invalid_policy", f"approval kind {self.kind!r} is not lower-case words")
        if not isinstance(self.maker_duty, Duty) or not isinstance(self.approver_duty, Duty):
            raise GovernanceError(
                "invalid_policy", f"{self.kind}: maker and approver duties must be Duty values"
            )
        if self.approver_duty.read_only:
            raise GovernanceError("invalid_policy", f"{self.kind}: approving needs a duty that changes state")
        quorum: dict[Severity, int] = {}
        for key, n in self.quorum_by_severity.items():
            try:
                sev = key if isinstance(key, Severity) else Severity.parse(key)
            except (ValueError, AttributeError):
                raise GovernanceError("invalid_policy", f"{self.kind}: unknown severity {key!r}") from None
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_QUORUM:
                # a quorum of 0 would approve without a checker
                raise GovernanceError(
                    "invalid_policy", f"{self.kind}: quorum for {sev.value} must be 1..{MAX_QUORUM}"
                )
            quorum[sev] = n
        missing = [s.value for s in Severity if s not in quorum]
        if missing:
            raise GovernanceError("invalid_policy", f"{self.kind}: no quorum for {', '.join(missing)}")
        ordered = sorted(Severity, key=lambda s: s.rank)
        for lower, higher in itertools.pairwise(ordered):
            if quorum[higher] < quorum[lower]:
                raise GovernanceError(
                    "invalid_policy", f"{self.kind}: {higher.value} needs fewer approvals than {lower.value}"
                )
        object.__setattr__(self, "quorum_by_severity", MappingProxyType(quorum))
        if not timedelta(0) < self.ttl <= MAX_TTL:
            raise GovernanceError(
                "invalid_policy", f"{self.kind}: ttl must be more than 0 and at most {MAX_TTL}"
            )

    def quorum(self, severity: Severity) -> int:
        return self.quorum_by_severity[severity]

    @classmethod
    def uniform(
        cls,
        kind: str,
        maker_duty: Duty,
        approver_duty: Duty,
        quorum: int,
        ttl: timedelta,
        exclude_maker_team: bool,
    ) -> ApprovalPolicy:
        return cls(kind, maker_duty, approver_duty, dict.fromkeys(Severity, quorum), ttl, exclude_maker_team)


_WEEK = timedelta(days=7)
_ACCESS_PENDING = timedelta(days=3)
"""An access request that nobody looked at for three days is stale: ask again (GCP PAM: 24 h)."""


def default_policy(kind: ApprovalKind) -> ApprovalPolicy:
    """The shipped policy for each core approval kind."""
    two_for_critical = {
        Severity.CRITICAL: 2,
        Severity.HIGH: 1,
        Severity.MEDIUM: 1,
        Severity.LOW: 1,
        Severity.INFO: 1,
    }
    match kind:
        case ApprovalKind.POLICY_CHANGE:
            return ApprovalPolicy(
                kind, Duty.POLICY_PROPOSE, Duty.POLICY_APPROVE, two_for_critical, _WEEK, False
            )
        case ApprovalKind.PLAYBOOK_CHANGE:
            return ApprovalPolicy(
                kind, Duty.PLAYBOOK_PROPOSE, Duty.PLAYBOOK_APPROVE, two_for_critical, _WEEK, False
            )
        case ApprovalKind.EXCEPTION:
            # the requester's own team is never the one that waives its findings
            return ApprovalPolicy(
                kind, Duty.EXCEPTION_REQUEST, Duty.EXCEPTION_APPROVE, two_for_critical, _WEEK, True
            )
        case ApprovalKind.SOD_RULES_CHANGE:
            # a second security approver besides the proposer, whatever the change (CM-5(4))
            return ApprovalPolicy.uniform(
                kind, Duty.SOD_RULES_PROPOSE, Duty.SOD_RULES_APPROVE, 1, _WEEK, False
            )
        case ApprovalKind.ROLE_BINDING:
            # an administrator asks, one security approver (not the person bound) decides
            return ApprovalPolicy.uniform(
                kind, Duty.ROLE_ASSIGN, Duty.ROLE_APPROVE, 1, _ACCESS_PENDING, False
            )
        case _:  # pragma: no cover - exhaustive
            assert_never(kind)


@dataclass(frozen=True, slots=True)
class Vote:
    actor: str
    approve: bool
    at: datetime
    reason: str = ""

    def __post_init__(self) -> None:
        check_id(self.actor, "voter")
        check_time(self.at, "vote time")
        if not isinstance(self.approve, bool):
            raise GovernanceError("invalid_request", "a vote approves (true) or rejects (false)")

    def to_json(self) -> dict[str, object]:
        return {
            "actor": self.actor,
            "approve": self.approve,
            "at": self.at.isoformat(),
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    id: str
    kind: str
    subject: str
    """What is to change, in words and ids (``policy bundle default v7``, ``exception for sha256:...``)."""
    subject_digest: str
    """sha256 (hex) of the exact content to be applied: an approval binds to it."""
    scope: Scope
    maker: str
    maker_teams: frozenset[str]
    severity: Severity
    created_at: datetime
    expires_at: datetime
    quorum: int
    approver_duty: Duty
    exclude_maker_team: bool
    approvals: tuple[Vote, ...] = ()
    rejection: Vote | None = None
    state: RequestState = RequestState.PENDING
    closed_at: datetime | None = None
    closed_reason: str = field(default="")
    excluded: frozenset[str] = frozenset()
    """Who may not vote besides the maker: the people the change is about."""

    def __post_init__(self) -> None:
        bad = _invariant_violation(self)
        if bad:
            raise GovernanceError("invalid_request", f"approval request {self.id!r}: {bad}")

    @property
    def approvers(self) -> tuple[str, ...]:
        return tuple(v.actor for v in self.approvals)

    @property
    def remaining(self) -> int:
        return max(0, self.quorum - len(self.approvals))

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {
            "id": self.id,
            "kind": self.kind,
            "subject": self.subject,
            "subject_digest": self.subject_digest,
            "scope": str(self.scope),
            "maker": self.maker,
            "maker_teams": sorted(self.maker_teams),
            "severity": self.severity.value,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "quorum": self.quorum,
            "approver_duty": self.approver_duty.value,
            "exclude_maker_team": self.exclude_maker_team,
            "approvals": [v.to_json() for v in self.approvals],
            "rejection": self.rejection.to_json() if self.rejection else None,
            "state": self.state.value,
            "closed_at": self.closed_at.isoformat() if self.closed_at else None,
            "closed_reason": self.closed_reason,
        }
        if self.excluded:
            # only when set, so the stored documents of kinds without exclusions stay as they were
            doc["excluded"] = sorted(self.excluded)
        return doc

    @classmethod
    def from_json(cls, data: object) -> ApprovalRequest:
        """Strictly rebuild a stored request; any unknown key, wrong type or broken invariant is refused."""
        return _request_from_json(data)


def _invariant_violation(r: ApprovalRequest) -> str | None:
    check_id(r.id, "request id")
    check_id(r.maker, "maker")
    for t in r.maker_teams:
        check_id(t, "team")
    if not isinstance(r.excluded, frozenset) or r.maker in r.excluded:
        # the maker is excluded by definition; naming them again would be a second spelling
        return "excluded must be a set of ids other than the maker"
    for x in r.excluded:
        check_id(x, "excluded voter")
    check_time(r.created_at, "created_at")
    check_time(r.expires_at, "expires_at")
    if not isinstance(r.kind, str) or not _KIND.fullmatch(r.kind):
        return f"kind {r.kind!r} is not lower-case words"
    if not isinstance(r.subject, str) or not r.subject.strip() or len(r.subject) > 500:
        return "subject must be 1..500 characters"
    if not isinstance(r.subject_digest, str) or not _DIGEST.fullmatch(r.subject_digest):
        return "subject_digest must be a lower-case sha256 hex digest"
    typed: tuple[tuple[object, type], ...] = (
        (r.scope, Scope),
        (r.severity, Severity),
        (r.approver_duty, Duty),
        (r.state, RequestState),
    )
    if not all(isinstance(value, kind) for value, kind in typed):
        return "scope, severity, approver duty and state must be typed values"
    if isinstance(r.quorum, bool) or not isinstance(r.quorum, int) or not 1 <= r.quorum <= MAX_QUORUM:
        return f"quorum must be 1..{MAX_QUORUM}"
    if r.expires_at <= r.created_at:
        return "expires before it was created"
    voters = [v.actor for v in r.approvals]
    if r.rejection is not None:
        if r.rejection.approve:
            return "the rejection is an approving vote"
        voters.append(r.rejection.actor)
    if r.maker in voters:
        return "the maker voted on their own request"
    if r.excluded & set(voters):
        return "a person the request is about voted on it"
    if len(set(voters)) != len(voters):
        return "a checker voted twice"
    if any(not v.approve for v in r.approvals):
        return "a rejecting vote is listed among approvals"
    votes = (*r.approvals, *((r.rejection,) if r.rejection else ()))
    if any(not r.created_at <= v.at < r.expires_at for v in votes):
        return "a vote lies outside the request's lifetime"
    reached = len(r.approvals) >= r.quorum
    closed = r.closed_at is not None
    if closed:
        check_time(r.closed_at, "closed_at")
    match r.state:
        case RequestState.PENDING:
            ok = not reached and r.rejection is None and not closed
        case RequestState.APPROVED:
            ok = reached and r.rejection is None and closed
        case RequestState.REJECTED:
            ok = not reached and r.rejection is not None and closed
        case RequestState.EXPIRED | RequestState.WITHDRAWN:
            ok = not reached and r.rejection is None and closed
        case _:  # pragma: no cover - exhaustive
            assert_never(r.state)
    return None if ok else f"state {r.state.value} does not match its votes"


def open_request(
    policy: ApprovalPolicy,
    *,
    request_id: str,
    maker: Principal,
    subject: str,
    subject_digest: str,
    severity: Severity,
    scope: Scope,
    now: datetime,
    ownership: Ownership,
    roles: RoleTable | None = None,
    raci: Raci | None = None,
    excluded: frozenset[str] = frozenset(),
) -> ApprovalRequest:
    """Open a request; the maker must hold ``policy.maker_duty`` over ``scope``.

    ``excluded``: people who may not decide it besides the maker (whom the change is about)."""
    check_time(now, "now")
    decision = authorize(maker, policy.maker_duty, scope, ownership, roles=roles, raci=raci)
    if not decision.allowed:
        raise ApprovalRefused("missing_duty", decision.reason)
    return ApprovalRequest(
        id=request_id,
        kind=policy.kind,
        subject=subject,
        subject_digest=subject_digest,
        scope=scope,
        maker=maker.id,
        maker_teams=maker.teams,
        severity=severity,
        created_at=now,
        expires_at=now + policy.ttl,
        quorum=policy.quorum(severity),
        approver_duty=policy.approver_duty,
        exclude_maker_team=policy.exclude_maker_team,
        excluded=frozenset(excluded),
    )


def decide(
    request: ApprovalRequest,
    actor_id: str,
    actor_duties: frozenset[Duty],
    actor_teams: frozenset[str],
    approve: bool,
    now: datetime,
    reason: str = "",
    *,
    seen_digest: str | None = None,
) -> ApprovalRequest:
    """Record one checker's vote; :class:`ApprovalRefused` with a stable code when it may not count.

    ``actor_duties`` are the actor's duties over ``request.scope``
    (:func:`dutyguard.governance.authz.effective_duties`). ``seen_digest``, when given, must equal
    the request's subject digest: the checker approves the content they saw, not a later one.
    Codes: ``closed``, ``expired``, ``self_approval`` (the maker, or someone the request
    excludes), ``duplicate_approval``, ``missing_duty``,
    ``same_team``, ``stale_subject``, ``reason_required``.
    """
    check_time(now, "now")
    check_id(actor_id, "approver")
    if request.state is not RequestState.PENDING:
        raise ApprovalRefused("closed", f"request {request.id} is {request.state.value}")
    if now >= request.expires_at:
        raise ApprovalRefused("expired", f"request {request.id} expired at {request.expires_at.isoformat()}")
    if now < request.created_at:
        raise ApprovalRefused("expired", f"request {request.id} does not exist yet at {now.isoformat()}")
    if actor_id == request.maker:
        raise ApprovalRefused("self_approval", f"{actor_id} made request {request.id} and cannot decide it")
    if actor_id in request.excluded:
        # approving a change about oneself is self-approval too (ISO A.5.3: request / approve access)
        raise ApprovalRefused(
            "self_approval", f"request {request.id} is about {actor_id}, who cannot decide it"
        )
    if actor_id in request.approvers:
        raise ApprovalRefused("duplicate_approval", f"{actor_id} already approved request {request.id}")
    if request.approver_duty not in actor_duties:
        raise ApprovalRefused(
            "missing_duty", f"{actor_id} lacks {request.approver_duty} over {request.scope}"
        )
    if request.exclude_maker_team and actor_teams & request.maker_teams:
        shared = ", ".join(sorted(actor_teams & request.maker_teams))
        raise ApprovalRefused("same_team", f"{actor_id} shares team {shared} with the maker of {request.id}")
    if seen_digest is not None and seen_digest != request.subject_digest:
        raise ApprovalRefused(
            "stale_subject", f"request {request.id} is about different content than was reviewed"
        )
    if approve:
        text = reason.strip() if isinstance(reason, str) else ""
        if len(text) > MAX_REASON:
            raise ApprovalRefused("reason_required", f"reason longer than {MAX_REASON} characters")
        vote = Vote(actor_id, True, now, text)
        approvals = (*request.approvals, vote)
        if len(approvals) >= request.quorum:
            return replace(request, approvals=approvals, state=RequestState.APPROVED, closed_at=now)
        return replace(request, approvals=approvals)
    try:
        text = check_text(reason, "a rejection reason", max_len=MAX_REASON, code="reason_required")
    except GovernanceError as e:
        raise ApprovalRefused(e.code, e.message) from None
    vote = Vote(actor_id, False, now, text)
    return replace(request, rejection=vote, state=RequestState.REJECTED, closed_at=now, closed_reason=text)


def withdraw(request: ApprovalRequest, actor_id: str, now: datetime, reason: str) -> ApprovalRequest:
    """The maker takes back a pending request."""
    check_time(now, "now")
    if request.state is not RequestState.PENDING:
        raise ApprovalRefused("closed", f"request {request.id} is {request.state.value}")
    if actor_id != request.maker:
        raise ApprovalRefused("not_maker", f"only {request.maker} may withdraw request {request.id}")
    try:
        text = check_text(reason, "a withdrawal reason", max_len=MAX_REASON, code="reason_required")
    except GovernanceError as e:
        raise ApprovalRefused(e.code, e.message) from None
    return replace(request, state=RequestState.WITHDRAWN, closed_at=now, closed_reason=text)


def expire(request: ApprovalRequest, now: datetime) -> ApprovalRequest:
    """``expired`` if still pending at or after ``expires_at``; otherwise unchanged."""
    check_time(now, "now")
    if request.state is RequestState.PENDING and now >= request.expires_at:
        return replace(
            request, state=RequestState.EXPIRED, closed_at=request.expires_at, closed_reason="expired"
        )
    return request


# -- strict JSON round trip -------------------------------------------------------------------

_REQUEST_KEYS = frozenset(
    {
        "id",
        "kind",
        "subject",
        "subject_digest",
        "scope",
        "maker",
        "maker_teams",
        "severity",
        "created_at",
        "expires_at",
        "quorum",
        "approver_duty",
        "exclude_maker_team",
        "approvals",
        "rejection",
        "state",
        "closed_at",
        "closed_reason",
    }
)
_OPTIONAL_REQUEST_KEYS = frozenset({"excluded"})
_VOTE_KEYS = frozenset({"actor", "approve", "at", "reason"})


def _bad(message: str) -> GovernanceError:
    return GovernanceError("invalid_request", f"stored approval request: {message}")


def _obj(
    value: object, keys: frozenset[str], what: str, optional: frozenset[str] = frozenset()
) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _bad(f"{what} must be an object")
    extra = set(value) - keys - optional
    missing = keys - set(value)
    if extra:
        raise _bad(f"{what}: unknown keys {', '.join(sorted(map(str, extra)))}")
    if missing:
        raise _bad(f"{what}: missing keys {', '.join(sorted(missing))}")
    return value


def _str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise _bad(f"{what} must be a string")
    return value


def _time(value: object, what: str) -> datetime:
    try:
        return check_time(datetime.fromisoformat(_str(value, what)), what)
    except ValueError:
        raise _bad(f"{what} is not an ISO 8601 time") from None


def _bool(value: object, what: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(f"{what} must be true or false")
    return value


def _vote(value: object, what: str) -> Vote:
    v = _obj(value, _VOTE_KEYS, what)
    return Vote(
        _str(v["actor"], f"{what}.actor"),
        _bool(v["approve"], f"{what}.approve"),
        _time(v["at"], f"{what}.at"),
        _str(v["reason"], f"{what}.reason"),
    )


def _request_from_json(data: object) -> ApprovalRequest:
    d = _obj(data, _REQUEST_KEYS, "request", _OPTIONAL_REQUEST_KEYS)
    teams = d["maker_teams"]
    approvals = d["approvals"]
    excluded = d.get("excluded", [])
    if not isinstance(teams, list) or not isinstance(approvals, list) or not isinstance(excluded, list):
        raise _bad("maker_teams, approvals and excluded must be lists")
    if "excluded" in d and not excluded:
        raise _bad("excluded is written only when it names someone")
    if len(set(map(str, excluded))) != len(excluded):
        raise _bad("excluded names someone twice")
    quorum = d["quorum"]
    if isinstance(quorum, bool) or not isinstance(quorum, int):
        raise _bad("quorum must be an integer")
    try:
        severity = Severity.parse(_str(d["severity"], "severity"))
        duty = Duty(_str(d["approver_duty"], "approver_duty"))
        state = RequestState(_str(d["state"], "state"))
    except ValueError as e:
        raise _bad(str(e)) from None
    return ApprovalRequest(
        id=_str(d["id"], "id"),
        kind=_str(d["kind"], "kind"),
        subject=_str(d["subject"], "subject"),
        subject_digest=_str(d["subject_digest"], "subject_digest"),
        scope=Scope.parse(_str(d["scope"], "scope")),
        maker=_str(d["maker"], "maker"),
        maker_teams=frozenset(_str(t, "maker_teams[]") for t in teams),
        severity=severity,
        created_at=_time(d["created_at"], "created_at"),
        expires_at=_time(d["expires_at"], "expires_at"),
        quorum=quorum,
        approver_duty=duty,
        exclude_maker_team=_bool(d["exclude_maker_team"], "exclude_maker_team"),
        approvals=tuple(_vote(v, f"approvals[{i}]") for i, v in enumerate(approvals)),
        rejection=None if d["rejection"] is None else _vote(d["rejection"], "rejection"),
        state=state,
        closed_at=None if d["closed_at"] is None else _time(d["closed_at"], "closed_at"),
        closed_reason=_str(d["closed_reason"], "closed_reason"),
        excluded=frozenset(_str(x, "excluded[]") for x in excluded),
    )
