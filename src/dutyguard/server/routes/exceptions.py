"""Exceptions (waivers): request (devops), approve or reject (security), revoke, list, show.

The rules, each refused with a stable code and an audit entry:

- the requester needs ``exception.request`` over every asset the scope names (app, namespace,
  cluster; the organisation when it names none);
- the rule must be applied by the *published* bundle, the duration within its ``maxDays`` for
  the rule's severity there; the quorum is the bundle's for that severity, or its
  ``wideScopeQuorum`` when the scope pins neither an app, an image nor a fingerprint;
- approvers: never the requester (``self_approval``), never a member of one of the requester's
  teams (``same_team``), each once (``duplicate_approval``), holding ``exception.approve`` over
  the scope *and* one of the bundle's ``approvers.roles`` (and teams, when it lists some);
  one rejection ends the request;
- the content approvers approve (rule, scope, texts, duration) is bound to a digest: once anyone
  voted it never changes (``immutable_scope``); a different scope is a new request;
- approval and revocation change the exception *generation*, so the next snapshot served is a
  new version; expiry needs no write (the snapshot leaves it out and records it).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.engine import Connection

from dutyguard.audit.canonical import JSONValue
from dutyguard.core.model import Severity
from dutyguard.errors import ApprovalRefused, GovernanceError
from dutyguard.exceptions.model import ExceptionGrant, ExceptionScope, InvalidException
from dutyguard.governance.approvals import (
    ApprovalKind,
    ApprovalPolicy,
    RequestState,
    decide,
    open_request,
    withdraw,
)
from dutyguard.governance.authz import Principal, effective_duties
from dutyguard.governance.duties import Duty
from dutyguard.governance.scope import Scope
from dutyguard.policy.model import PolicyBundle
from dutyguard.server import exception_store, pagination, policy_store, published, store
from dutyguard.server.auditing import record
from dutyguard.server.auth import Caller
from dutyguard.server.authz import Missing, enforce, requires, requires_dynamic
from dutyguard.server.exception_store import ExceptionRecord
from dutyguard.server.problems import Problem
from dutyguard.server.routes._common import RuntimeDep, refusals
from dutyguard.server.routes._review import filtered_page, loaded, record_vote, start_after
from dutyguard.server.routes._state_common import anywhere, principal_now, tampered
from dutyguard.server.runtime import Runtime
from dutyguard.server.schemas import Page, VoteBody, WithdrawBody
from dutyguard.server.state_schemas import ExceptionCreate, ExceptionOut, RevokeBody, ScopeChange, ScopeIn

router = APIRouter(prefix="/exceptions", tags=["exceptions"])

REQUEST_TTL = timedelta(days=7)
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def exception_out(rec: ExceptionRecord, rt: Runtime) -> ExceptionOut:
    a = rec.approval
    return ExceptionOut(
        id=rec.id,
        rule_id=rec.rule_id,
        severity=rec.severity.value,
        scope=dict(rec.scope.to_json()),
        wide=rec.wide,
        status=rec.status(rt.now()),
        requester=rec.requester,
        justification=rec.justification,
        compensating_control=rec.compensating_control,
        days=rec.days,
        bundle_version=rec.bundle_version,
        quorum=a.quorum,
        approvals=list(a.approvers),
        rejected_by=a.rejection.actor if a.rejection else None,
        subject_digest=a.subject_digest,
        created_at=rec.created_at,
        request_expires_at=a.expires_at,
        approved_at=rec.approved_at,
        expires_at=rec.expires_at,
        revoked_at=rec.revoked_at,
        revoked_by=rec.revoked_by,
        revoke_reason=rec.revoke_reason,
        closed_reason=a.closed_reason,
    )


def _scope(body: ScopeIn) -> ExceptionScope:
    scope = ExceptionScope(
        fingerprint=body.fingerprint,
        app=body.app,
        namespace=body.namespace,
        image_digest=body.image_digest,
        cluster=body.cluster,
    )
    try:
        # The value type's own checks, through its public constructor (placeholders elsewhere).
        ExceptionGrant(
            id="check",
            rule_id="check",
            scope=scope,
            requester="check",
            approvers=("checker",),
            justification="check",
            compensating_control="check",
            approved_at=_EPOCH,
            expires=_EPOCH + timedelta(days=1),
        )
    except InvalidException as e:
        raise Problem(
            422,
            "validation",
            "Invalid request",
            e.reason,
            errors=[{"field": "body", "message": e.reason}],
        ) from None
    return scope


def _published_bundle(conn: Connection) -> tuple[int, PolicyBundle]:
    latest = policy_store.latest_version(conn)
    if latest is None:
        raise GovernanceError(
            "no_policy", "no policy bundle is published yet: there is nothing an exception could waive"
        )
    try:
        return latest.version, latest.bundle()
    except GovernanceError as e:
        raise tampered(e) from None


def _severity(bundle: PolicyBundle, rule_id: str) -> Severity:
    if rule_id not in bundle.enabled_rules:
        raise GovernanceError(
            "unknown_rule",
            f"rule {rule_id!r} is not applied by the published bundle: there is nothing to waive",
        )
    override = bundle.severity_overrides.get(rule_id)
    return override if override is not None else policy_store.registry().get(rule_id).meta.severity


def _policy(bundle: PolicyBundle, wide: bool) -> ApprovalPolicy:
    """The maker-checker policy for one request, from the published bundle's exception limits."""
    limits = bundle.exceptions
    return ApprovalPolicy(
        kind=ApprovalKind.EXCEPTION.value,
        maker_duty=Duty.EXCEPTION_REQUEST,
        approver_duty=Duty.EXCEPTION_APPROVE,
        quorum_by_severity={s: limits.required_approvals(s, wide) for s in Severity},
        ttl=REQUEST_TTL,
        exclude_maker_team=True,
    )


def _check_duration(bundle: PolicyBundle, severity: Severity, days: int) -> None:
    limit = bundle.exceptions.max_days[severity]
    if days > limit:
        raise GovernanceError(
            "bad_duration",
            f"the published bundle allows {severity.value} exceptions for at most {limit} days, not {days}",
        )


@router.post("", status_code=201)
def request_exception(
    body: ExceptionCreate,
    request: Request,
    caller: Annotated[
        Caller,
        Depends(
            requires(
                Duty.EXCEPTION_REQUEST,
                any_scope=True,
                note="every app, namespace and cluster the scope names (the organisation if none)",
            )
        ),
    ],
    rt: RuntimeDep,
) -> ExceptionOut:
    """Ask for an exception to one rule within a narrow scope, with a justification and a control."""
    scope = _scope(body)
    now = rt.now().replace(microsecond=0)
    exception_id = store.new_id("exc")
    targets = exception_store.targets_of(scope)
    for target in targets:
        enforce(rt, request, caller, Duty.EXCEPTION_REQUEST, target)
    obj = f"exception:{exception_id}"
    with refusals(rt, caller, "exception.request", obj, {"rule": body.rule_id}), rt.db.write() as conn:
        version, bundle = _published_bundle(conn)
        severity = _severity(bundle, body.rule_id)
        _check_duration(bundle, severity, body.days)
        content = exception_store.content_digest(
            exception_id,
            body.rule_id,
            severity,
            scope,
            caller.id,
            body.justification,
            body.compensating_control,
            body.days,
        )
        maker = principal_now(conn, caller)
        approval = open_request(
            _policy(bundle, scope.wide),
            request_id=exception_id,
            maker=maker,
            subject=f"exception {exception_id}: {body.rule_id} for {scope.describe()}"[:500],
            subject_digest=content,
            severity=severity,
            scope=targets[0],
            now=now,
            ownership=store.ownership_for(conn, [maker], targets),
            roles=rt.roles,
            raci=rt.raci,
        )
        rec = ExceptionRecord(
            id=exception_id,
            rule_id=body.rule_id,
            severity=severity,
            scope=scope,
            requester=caller.id,
            justification=body.justification,
            compensating_control=body.compensating_control,
            days=body.days,
            bundle_version=version,
            created_at=now,
            approval=approval,
        )
        exception_store.insert(conn, rec)
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="exception.request",
            obj=obj,
            details={
                "rule": rec.rule_id,
                "severity": severity.value,
                "scope": dict(scope.to_json()),
                "wide": scope.wide,
                "days": rec.days,
                "quorum": approval.quorum,
                "bundle_version": version,
                "subject_digest": approval.subject_digest,
            },
        )
    return exception_out(rec, rt)


@router.get(
    "", dependencies=[Depends(anywhere(Duty.EXCEPTION_READ, "every exception is in the signed snapshot"))]
)
def list_exceptions(
    rt: RuntimeDep,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(exception_store.STATUSES) + ")$")] = None,
    app: Annotated[str | None, Query(max_length=253)] = None,
    rule: Annotated[str | None, Query(max_length=128)] = None,
    limit: pagination.LimitParam = 50,
    cursor: pagination.CursorParam = None,
) -> Page[ExceptionOut]:
    after = start_after(cursor)
    now = rt.now()
    with rt.db.read() as conn:

        def fetch(after: str | None) -> list[ExceptionRecord]:
            try:
                return exception_store.list_page(
                    conn, after, limit, status=status, app=app, rule_id=rule, now=now
                )
            except GovernanceError as e:
                raise tampered(e) from None

        items, next_cursor = filtered_page(
            after,
            limit,
            fetch,
            lambda rec: rec.id,
            lambda rec: exception_out(rec, rt),
            lambda out: status is None or out.status == status,
        )
    return Page[ExceptionOut](items=items, next_cursor=next_cursor)


@router.get(
    "/{exception_id}",
    dependencies=[Depends(anywhere(Duty.EXCEPTION_READ, "every exception is in the signed snapshot"))],
)
def show_exception(exception_id: str, rt: RuntimeDep) -> ExceptionOut:
    with rt.db.read() as conn:
        rec = loaded(lambda: exception_store.get(conn, exception_id), f"exception {exception_id!r}")
    return exception_out(rec, rt)


def _stored_scope(conn: Connection, request: Request) -> Scope | Missing:
    """The stored exception's approval scope, or :class:`Missing` (the routes declare ``could``:
    whoever holds their duty nowhere is refused before this runs, for every id alike)."""
    exception_id = str(request.path_params.get("exception_id", ""))
    try:
        rec = exception_store.get(conn, exception_id)
    except GovernanceError as e:
        raise tampered(e) from None
    return Missing(f"exception {exception_id!r}") if rec is None else rec.approval.scope


def _approver(
    rt: Runtime, conn: Connection, request: Request, caller: Caller
) -> tuple[Duty, Scope] | Missing:
    """`exception.approve` on the exception's scope (its app, else namespace, cluster, organisation)"""
    scope = _stored_scope(conn, request)
    return scope if isinstance(scope, Missing) else (Duty.EXCEPTION_APPROVE, scope)


def _revoker(rt: Runtime, conn: Connection, request: Request, caller: Caller) -> tuple[Duty, Scope] | Missing:
    """`exception.revoke` on the exception's scope"""
    scope = _stored_scope(conn, request)
    return scope if isinstance(scope, Missing) else (Duty.EXCEPTION_REVOKE, scope)


def _requester(
    rt: Runtime, conn: Connection, request: Request, caller: Caller
) -> tuple[Duty, Scope] | Missing:
    """`exception.request` on the exception's scope; only its requester may withdraw or re-scope it"""
    scope = _stored_scope(conn, request)
    return scope if isinstance(scope, Missing) else (Duty.EXCEPTION_REQUEST, scope)


_APPROVER = requires_dynamic(_approver, could=Duty.EXCEPTION_APPROVE)
_REVOKER = requires_dynamic(_revoker, could=Duty.EXCEPTION_REVOKE)
_REQUESTER = requires_dynamic(_requester, could=Duty.EXCEPTION_REQUEST)


def _check_approver_rules(
    bundle: PolicyBundle, actor: Principal, rec: ExceptionRecord, duties: frozenset[Duty], conn: Connection
) -> None:
    """The published bundle may narrow who approves: roles (and teams) listed under ``approvers``."""
    limits = bundle.exceptions
    scope = rec.approval.scope
    ownership = store.ownership_for(conn, [actor], [scope])
    roles = {b.role.value for b in actor.bindings if ownership.covers(b.scope, scope)}
    if Duty.EXCEPTION_APPROVE in duties and not roles & set(limits.approver_roles):
        raise ApprovalRefused(
            "missing_duty",
            f"the published bundle lets only {', '.join(limits.approver_roles)} approve exceptions",
        )
    if limits.approver_teams and not actor.teams & set(limits.approver_teams):
        raise ApprovalRefused(
            "missing_duty",
            f"the published bundle lets only members of {', '.join(limits.approver_teams)} approve exceptions",
        )


def _vote(rt: Runtime, caller: Caller, exception_id: str, body: VoteBody, approve: bool) -> ExceptionOut:
    verb = "approve" if approve else "reject"
    obj = f"exception:{exception_id}"
    now = rt.now().replace(microsecond=0)
    granted = False
    with refusals(rt, caller, f"exception.{verb}", obj), rt.db.write() as conn:
        rec = loaded(
            lambda: exception_store.get(conn, exception_id, for_update=True), f"exception {exception_id!r}"
        )
        _, bundle = _published_bundle(conn)
        actor = principal_now(conn, caller)
        scope = rec.approval.scope
        duties = effective_duties(
            actor, scope, store.ownership_for(conn, [actor], [scope]), roles=rt.roles, raci=rt.raci
        )
        if actor.id != rec.requester and actor.id not in rec.approval.approvers:
            _check_approver_rules(bundle, actor, rec, duties, conn)
        decided = decide(
            rec.approval,
            caller.id,
            duties,
            actor.teams,
            approve,
            now,
            body.reason,
            seen_digest=body.seen_digest,
        )
        rec = exception_store.update_approval(conn, rec, decided)
        granted = decided.state is RequestState.APPROVED
        if granted:
            published.bump_generation(conn, now)
        record_vote(
            rt,
            conn,
            caller,
            f"exception.{verb}",
            obj,
            decided,
            approve,
            {"rule": rec.rule_id},
            {"subject_digest": decided.subject_digest},
        )
        if granted:
            assert rec.expires_at is not None
            record(
                rt,
                conn,
                actor=caller.id,
                principal=caller.principal,
                action="exception.grant",
                obj=obj,
                details={
                    "rule": rec.rule_id,
                    "scope": dict(rec.scope.to_json()),
                    "requester": rec.requester,
                    "approvers": list(decided.approvers),
                    "expires": rec.expires_at.isoformat(),
                },
            )
    if granted:
        rt.notifier.send(
            {
                "event": "exception.approved",
                "exception": exception_id,
                "rule": rec.rule_id,
                "scope": dict(rec.scope.to_json()),
                "requester": rec.requester,
                "approvers": list(rec.approval.approvers),
                "expires": rec.expires_at.isoformat() if rec.expires_at else None,
            }
        )
    return exception_out(rec, rt)


@router.post("/{exception_id}/approve")
def approve(
    exception_id: str,
    body: VoteBody,
    caller: Annotated[Caller, Depends(_APPROVER)],
    rt: RuntimeDep,
) -> ExceptionOut:
    """Approve someone else's request (not your team's); the vote that reaches the quorum grants it."""
    return _vote(rt, caller, exception_id, body, True)


@router.post("/{exception_id}/reject")
def reject(
    exception_id: str,
    body: VoteBody,
    caller: Annotated[Caller, Depends(_APPROVER)],
    rt: RuntimeDep,
) -> ExceptionOut:
    """Reject a request (a reason is required); one rejection ends it."""
    return _vote(rt, caller, exception_id, body, False)


@router.post("/{exception_id}/withdraw")
def withdraw_exception(
    exception_id: str,
    body: WithdrawBody,
    caller: Annotated[Caller, Depends(_REQUESTER)],
    rt: RuntimeDep,
) -> ExceptionOut:
    obj = f"exception:{exception_id}"
    with refusals(rt, caller, "exception.withdraw", obj), rt.db.write() as conn:
        rec = loaded(
            lambda: exception_store.get(conn, exception_id, for_update=True), f"exception {exception_id!r}"
        )
        done = withdraw(rec.approval, caller.id, rt.now(), body.reason)
        rec = exception_store.update_approval(conn, rec, done)
        record(rt, conn, actor=caller.id, principal=caller.principal, action="exception.withdraw", obj=obj)
    return exception_out(rec, rt)


@router.put("/{exception_id}/scope")
def change_scope(
    exception_id: str,
    body: ScopeChange,
    request: Request,
    caller: Annotated[Caller, Depends(_REQUESTER)],
    rt: RuntimeDep,
) -> ExceptionOut:
    """Correct the scope of one's own request before anyone voted; refused (and audited) after.

    Approvers approve a scope: an approved exception's scope never changes, and neither does a
    pending one's once a vote was cast. A different scope is a new request.
    """
    new_scope = _scope(body)
    obj = f"exception:{exception_id}"
    details: dict[str, JSONValue] = {"scope": dict(new_scope.to_json()), "reason": body.reason[:500]}
    with refusals(rt, caller, "exception.scope", obj, details), rt.db.write() as conn:
        rec = loaded(
            lambda: exception_store.get(conn, exception_id, for_update=True), f"exception {exception_id!r}"
        )
        if rec.requester != caller.id:
            raise ApprovalRefused("not_maker", f"only {rec.requester} may change the scope of {exception_id}")
        a = rec.approval
        if a.state is not RequestState.PENDING or a.approvals or rec.revoked_at is not None:
            raise GovernanceError(
                "immutable_scope",
                f"exception {exception_id} is {rec.status(rt.now())} with {len(a.approvals)} approval(s): its "
                "scope was approved as it is and cannot change; request a new exception for another scope",
            )
        changed = replace(rec, scope=new_scope)
        for target in changed.targets():
            enforce(rt, request, caller, Duty.EXCEPTION_REQUEST, target)
        if changed.wide != rec.wide:
            raise GovernanceError(
                "immutable_scope",
                f"exception {exception_id}: a {'wide' if changed.wide else 'narrow'} scope needs another quorum; "
                "request a new exception",
            )
        changed = replace(changed, approval=replace(a, subject_digest=changed.content_digest()))
        exception_store.update_scope(conn, changed)
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="exception.scope",
            obj=obj,
            details={**details, "previous": dict(rec.scope.to_json())},
        )
    return exception_out(changed, rt)


@router.post("/{exception_id}/revoke")
def revoke(
    exception_id: str,
    body: RevokeBody,
    caller: Annotated[Caller, Depends(_REVOKER)],
    rt: RuntimeDep,
) -> ExceptionOut:
    """End an active exception now; the next snapshot leaves it out."""
    obj = f"exception:{exception_id}"
    now = rt.now()
    with refusals(rt, caller, "exception.revoke", obj), rt.db.write() as conn:
        rec = loaded(
            lambda: exception_store.get(conn, exception_id, for_update=True), f"exception {exception_id!r}"
        )
        status = rec.status(now)
        if status != "active":
            raise GovernanceError(
                "closed", f"exception {exception_id} is {status}: only an active one is revoked"
            )
        exception_store.revoke(conn, exception_id, caller.id, body.reason, now)
        published.bump_generation(conn, now)
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="exception.revoke",
            obj=obj,
            details={"rule": rec.rule_id, "reason": body.reason[:500], "requester": rec.requester},
        )
        after = exception_store.get(conn, exception_id)
    assert after is not None
    rt.notifier.send({"event": "exception.revoked", "exception": exception_id, "by": caller.id})
    return exception_out(after, rt)
