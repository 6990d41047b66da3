"""Exception (waiver) requests: records and queries.

A request's maker-checker record binds to the digest of its content (rule, scope, requester,
texts, duration, severity): the columns are checked against it on every load, so a scope widened
or a duration lengthened in the database is refused as tampered instead of being signed into a
snapshot. The approved exception (:class:`~dutyguard.exceptions.model.ExceptionGrant`) is derived
from the columns and the approval's votes, never stored separately: there is one truth to check.

Status, as shown: ``pending``; ``active`` (approved, unexpired, not revoked); ``expired``
(approved, past its expiry: nothing is written, the next snapshot leaves it out); ``revoked``;
``rejected``; ``withdrawn``; ``lapsed`` (still pending when the request expired).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dutyguard.audit.canonical import canonical_json
from dutyguard.core.model import Severity
from dutyguard.errors import GovernanceError
from dutyguard.exceptions.model import ExceptionGrant, ExceptionScope, InvalidException
from dutyguard.governance.approvals import ApprovalRequest, RequestState, expire
from dutyguard.governance.scope import ORG, Scope, ScopeKind
from dutyguard.server import tables as t
from dutyguard.server.policy_store import approval_json, load_approval

REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class ExceptionRecord:
    id: str
    rule_id: str
    severity: Severity
    scope: ExceptionScope
    requester: str
    justification: str
    compensating_control: str
    days: int
    bundle_version: int
    created_at: datetime
    approval: ApprovalRequest
    approved_at: datetime | None = None
    expires_at: datetime | None = None
    revoked_at: datetime | None = None
    revoked_by: str | None = None
    revoke_reason: str | None = None

    @property
    def wide(self) -> bool:
        return self.scope.wide

    def content_digest(self) -> str:
        return content_digest(
            self.id,
            self.rule_id,
            self.severity,
            self.scope,
            self.requester,
            self.justification,
            self.compensating_control,
            self.days,
        )

    def status(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return REVOKED
        state = expire(self.approval, now).state
        if state is RequestState.APPROVED:
            assert self.expires_at is not None
            return "active" if now < self.expires_at else "expired"
        if state is RequestState.EXPIRED:
            return "lapsed"
        return state.value

    def grant(self) -> ExceptionGrant:
        """The approved exception as it goes into a signed snapshot."""
        a = self.approval
        if a.state is not RequestState.APPROVED or a.closed_at is None:
            raise GovernanceError("not_approved", f"exception {self.id} is {a.state.value}")
        approved_at = a.closed_at
        return ExceptionGrant(
            id=self.id,
            rule_id=self.rule_id,
            scope=self.scope,
            requester=self.requester,
            approvers=a.approvers,
            justification=self.justification,
            compensating_control=self.compensating_control,
            approved_at=approved_at,
            expires=approved_at + timedelta(days=self.days),
        )

    def targets(self) -> list[Scope]:
        return targets_of(self.scope)


def content_digest(
    exception_id: str,
    rule_id: str,
    severity: Severity,
    scope: ExceptionScope,
    requester: str,
    justification: str,
    compensating_control: str,
    days: int,
) -> str:
    """sha256 (hex) of what approvers approve: never changes once anyone voted."""
    content = {
        "id": exception_id,
        "ruleId": rule_id,
        "severity": severity.value,
        "scope": dict(scope.to_json()),
        "requester": requester,
        "justification": justification,
        "compensatingControl": compensating_control,
        "days": days,
    }
    return hashlib.sha256(canonical_json(content)).hexdigest()


def targets_of(scope: ExceptionScope) -> list[Scope]:
    """The assets a scope names: the requester needs the duty over each (the organisation if none)."""
    out = []
    if scope.app is not None:
        out.append(Scope(ScopeKind.APP, scope.app))
    if scope.namespace is not None:
        out.append(Scope(ScopeKind.NAMESPACE, scope.namespace))
    if scope.cluster is not None:
        out.append(Scope(ScopeKind.CLUSTER, scope.cluster))
    return out or [ORG]


def _record(m: sa.RowMapping) -> ExceptionRecord:
    what = f"exception {m['id']}"
    approval = load_approval(m["approval"], what)
    try:
        scope = ExceptionScope(
            fingerprint=m["fingerprint"],
            app=m["app"],
            namespace=m["namespace"],
            image_digest=m["image_digest"],
            cluster=m["cluster"],
        )
        severity = Severity.parse(m["severity"])
    except ValueError as e:
        raise GovernanceError("tampered", f"{what}: {e}") from None
    rec = ExceptionRecord(
        id=m["id"],
        rule_id=m["rule_id"],
        severity=severity,
        scope=scope,
        requester=m["requester"],
        justification=m["justification"],
        compensating_control=m["compensating_control"],
        days=m["days"],
        bundle_version=m["bundle_version"],
        created_at=m["created_at"],
        approval=approval,
        approved_at=m["approved_at"],
        expires_at=m["expires_at"],
        revoked_at=m["revoked_at"],
        revoked_by=m["revoked_by"],
        revoke_reason=m["revoke_reason"],
    )
    _check(rec, m)
    return rec


def _check(rec: ExceptionRecord, m: sa.RowMapping) -> None:
    """The row must be what its approval record vouches for (a database edit shows up here)."""
    what = f"exception {rec.id}"
    a = rec.approval
    state = REVOKED if rec.revoked_at is not None else a.state.value
    if a.id != rec.id or a.maker != rec.requester or state != m["state"]:
        raise GovernanceError("tampered", f"{what}: columns disagree with its approval record")
    if rec.content_digest() != a.subject_digest:
        raise GovernanceError(
            "tampered", f"{what}: its rule, scope, texts or duration differ from what was approved"
        )
    if bool(rec.wide) != bool(m["wide"]):
        raise GovernanceError("tampered", f"{what}: the recorded width disagrees with its scope")
    if a.state is RequestState.APPROVED:
        try:
            grant = rec.grant()
        except InvalidException as e:
            raise GovernanceError("tampered", f"{what}: {e.reason}") from None
        if rec.approved_at != grant.approved_at or rec.expires_at != grant.expires:
            raise GovernanceError(
                "tampered", f"{what}: approval or expiry time differs from its approval record"
            )
    elif rec.approved_at is not None or rec.expires_at is not None or rec.revoked_at is not None:
        raise GovernanceError("tampered", f"{what}: carries approval times but was never approved")


def insert(conn: Connection, rec: ExceptionRecord) -> None:
    conn.execute(
        t.exception_requests.insert().values(
            id=rec.id,
            state=rec.approval.state.value,
            rule_id=rec.rule_id,
            severity=rec.severity.value,
            fingerprint=rec.scope.fingerprint,
            app=rec.scope.app,
            namespace=rec.scope.namespace,
            image_digest=rec.scope.image_digest,
            cluster=rec.scope.cluster,
            wide=rec.wide,
            requester=rec.requester,
            justification=rec.justification,
            compensating_control=rec.compensating_control,
            days=rec.days,
            bundle_version=rec.bundle_version,
            created_at=rec.created_at,
            approval=approval_json(rec.approval),
        )
    )


def update_approval(conn: Connection, rec: ExceptionRecord, request: ApprovalRequest) -> ExceptionRecord:
    """Record a vote (and, once approved, the approval and expiry times derived from it)."""
    values: dict[str, object] = {"state": request.state.value, "approval": approval_json(request)}
    approved_at = expires_at = None
    if request.state is RequestState.APPROVED:
        assert request.closed_at is not None
        approved_at = request.closed_at
        expires_at = approved_at + timedelta(days=rec.days)
        values.update(approved_at=approved_at, expires_at=expires_at)
    conn.execute(t.exception_requests.update().where(t.exception_requests.c.id == rec.id).values(**values))
    from dataclasses import replace

    return replace(rec, approval=request, approved_at=approved_at, expires_at=expires_at)


def update_scope(conn: Connection, rec: ExceptionRecord) -> None:
    """A pending request nobody voted on, re-scoped by its requester (its digest changes with it)."""
    conn.execute(
        t.exception_requests.update()
        .where(t.exception_requests.c.id == rec.id)
        .values(
            fingerprint=rec.scope.fingerprint,
            app=rec.scope.app,
            namespace=rec.scope.namespace,
            image_digest=rec.scope.image_digest,
            cluster=rec.scope.cluster,
            wide=rec.wide,
            approval=approval_json(rec.approval),
        )
    )


def revoke(conn: Connection, exception_id: str, actor: str, reason: str, now: datetime) -> None:
    conn.execute(
        t.exception_requests.update()
        .where(t.exception_requests.c.id == exception_id)
        .values(state=REVOKED, revoked_at=now, revoked_by=actor, revoke_reason=reason)
    )


def get(conn: Connection, exception_id: str, *, for_update: bool = False) -> ExceptionRecord | None:
    q = sa.select(t.exception_requests).where(t.exception_requests.c.id == exception_id)
    if for_update:
        q = q.with_for_update()
    row = conn.execute(q).first()
    return _record(row._mapping) if row else None


_STATE_FILTER = {
    "pending": (RequestState.PENDING.value,),
    "active": (RequestState.APPROVED.value,),
    "expired": (RequestState.APPROVED.value,),
    "revoked": (REVOKED,),
    "rejected": (RequestState.REJECTED.value,),
    "withdrawn": (RequestState.WITHDRAWN.value,),
    "lapsed": (RequestState.PENDING.value, RequestState.EXPIRED.value),
}
STATUSES = tuple(_STATE_FILTER)


def list_page(
    conn: Connection,
    after: str | None,
    limit: int,
    *,
    status: str | None = None,
    app: str | None = None,
    rule_id: str | None = None,
    now: datetime,
) -> list[ExceptionRecord]:
    q = sa.select(t.exception_requests).order_by(t.exception_requests.c.id).limit(limit)
    if after is not None:
        q = q.where(t.exception_requests.c.id > after)
    if status is not None:
        q = q.where(t.exception_requests.c.state.in_(_STATE_FILTER[status]))
        if status == "active":
            q = q.where(t.exception_requests.c.expires_at > now)
        elif status == "expired":
            q = q.where(t.exception_requests.c.expires_at <= now)
    if app is not None:
        q = q.where(t.exception_requests.c.app == app)
    if rule_id is not None:
        q = q.where(t.exception_requests.c.rule_id == rule_id)
    return [_record(r._mapping) for r in conn.execute(q)]


_ACTIVE = (
    sa.select(t.exception_requests)
    .where(
        t.exception_requests.c.state == RequestState.APPROVED.value,
        t.exception_requests.c.expires_at > sa.bindparam("now", type_=t.UTCDateTime()),
    )
    .order_by(t.exception_requests.c.id)
)


def active(conn: Connection, now: datetime) -> list[ExceptionRecord]:
    """Approved, unexpired, unrevoked: what the next snapshot carries (each row checked)."""
    return [_record(r._mapping) for r in conn.execute(_ACTIVE, {"now": now})]


_EXPIRED_BETWEEN = (
    sa.select(t.exception_requests.c.id, t.exception_requests.c.rule_id, t.exception_requests.c.expires_at)
    .where(
        t.exception_requests.c.state == RequestState.APPROVED.value,
        t.exception_requests.c.expires_at > sa.bindparam("since", type_=t.UTCDateTime()),
        t.exception_requests.c.expires_at <= sa.bindparam("until", type_=t.UTCDateTime()),
    )
    .order_by(t.exception_requests.c.expires_at, t.exception_requests.c.id)
)


def expired_between(conn: Connection, since: datetime, until: datetime) -> list[tuple[str, str, datetime]]:
    return [(r[0], r[1], r[2]) for r in conn.execute(_EXPIRED_BETWEEN, {"since": since, "until": until})]
