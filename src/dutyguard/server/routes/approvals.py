"""Generic maker-checker endpoints: list, show, approve, reject, withdraw.

The duty each route needs comes from the stored request: reading needs the kind's read duty,
voting needs the request's approver duty over its scope, withdrawing the kind's maker duty. The
governance core then refuses self-approval, a second vote by the same checker, a vote from the
maker's team where the kind excludes it, and votes on closed or expired requests; each refusal
is an audit entry. The vote that reaches the quorum applies the change in the same transaction.

``GET /approvals/{id}`` adds what the kind says a checker should know (``details``): for a
``role.binding`` request, the person being bound and whether their enrollment token was already
redeemed, when and from where.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.engine import Connection

from dutyguard.audit.canonical import JSONValue
from dutyguard.errors import GovernanceError
from dutyguard.governance.approvals import RequestState, decide, expire, withdraw
from dutyguard.governance.authz import effective_duties
from dutyguard.governance.duties import Duty
from dutyguard.governance.scope import ORG, Scope
from dutyguard.server import pagination, store
from dutyguard.server.approval_kinds import KindHandler
from dutyguard.server.auditing import record, record_refusal
from dutyguard.server.auth import Caller
from dutyguard.server.authz import Missing, authenticated, requires_dynamic
from dutyguard.server.authz import decide as authz_decide
from dutyguard.server.problems import Problem, not_found
from dutyguard.server.routes._common import RuntimeDep, refusals
from dutyguard.server.routes._state_common import tampered
from dutyguard.server.runtime import Runtime
from dutyguard.server.schemas import ApprovalOut, Page, VoteBody, WithdrawBody

router = APIRouter(tags=["approvals"])


def approval_out(
    stored: store.StoredRequest, rt: Runtime, details: dict[str, JSONValue] | None = None
) -> ApprovalOut:
    r = expire(stored.request, rt.now())
    return ApprovalOut(
        id=r.id,
        kind=r.kind,
        subject=r.subject,
        subject_digest=r.subject_digest,
        scope=str(r.scope),
        maker=r.maker,
        severity=r.severity.value,
        state=r.state.value,
        quorum=r.quorum,
        approvals=list(r.approvers),
        rejected_by=r.rejection.actor if r.rejection else None,
        approver_duty=r.approver_duty.value,
        created_at=r.created_at,
        expires_at=r.expires_at,
        closed_at=r.closed_at,
        closed_reason=r.closed_reason,
        applied_at=stored.applied_at,
        details=details,
    )


def _load(
    rt: Runtime, conn: Connection, request: Request, caller: Caller
) -> tuple[store.StoredRequest, KindHandler] | Missing:
    request_id = str(request.path_params.get("approval_id", ""))
    try:
        stored = store.get_request(conn, request_id)
    except GovernanceError as e:
        # A stored request that breaks its own invariants was edited outside dutyguard.
        record_refusal(
            rt,
            actor=caller.id,
            principal=caller.principal,
            action="approval.load",
            obj=f"approval:{request_id}",
            details={"code": e.code, "reason": e.message},
        )
        raise Problem(
            409, "tampered", "Stored request is invalid", e.message, extra={"code": e.code}
        ) from None
    if stored is None:
        return Missing(f"approval request {request_id!r}")
    handler = rt.approval_kinds.get(stored.request.kind)
    if handler is None:
        raise Problem(
            409, "unknown-kind", "Unknown approval kind", f"no handler for kind {stored.request.kind!r}"
        )
    return stored, handler


def _stored_duty(
    pick: Callable[[store.StoredRequest, KindHandler], Duty], doc: str
) -> Callable[[Runtime, Connection, Request, Caller], tuple[Duty, Scope] | Missing]:
    """The resolver of a route whose duty comes from the stored request, over its scope;
    ``doc`` is what the route table says of it."""

    def resolve(
        rt: Runtime, conn: Connection, request: Request, caller: Caller
    ) -> tuple[Duty, Scope] | Missing:
        found = _load(rt, conn, request, caller)
        if isinstance(found, Missing):
            return found
        stored, handler = found
        return pick(stored, handler), stored.request.scope

    resolve.__doc__ = doc
    return resolve


_read_duty = _stored_duty(
    lambda _s, h: h.read_duty,
    "the read duty of the request's kind (`sod.read` for `sod.rules.change`) on its scope",
)
_approver_duty = _stored_duty(
    lambda s, _h: s.request.approver_duty,
    "the request's approver duty (`sod.rules.approve` for `sod.rules.change`) on its scope",
)
_maker_duty = _stored_duty(
    lambda _s, h: h.policy.maker_duty,
    "the maker duty of the request's kind (`sod.rules.propose`); only the maker may withdraw",
)


# The kind, hence the duty, is known once the request is read: whoever holds none of the
# duties of any kind is refused first, alike for every id (see server.authz).
_READ = requires_dynamic(_read_duty, could=lambda rt: {h.read_duty for h in rt.approval_kinds})
_VOTE = requires_dynamic(_approver_duty, could=lambda rt: {h.policy.approver_duty for h in rt.approval_kinds})
_WITHDRAW = requires_dynamic(_maker_duty, could=lambda rt: {h.policy.maker_duty for h in rt.approval_kinds})


@router.get("/approvals")
def list_approvals(
    caller: Annotated[Caller, Depends(authenticated(note="lists only kinds whose read duty it holds"))],
    rt: RuntimeDep,
    state: Annotated[RequestState | None, Query()] = None,
    limit: pagination.LimitParam = 50,
    cursor: pagination.CursorParam = None,
) -> Page[ApprovalOut]:
    """Requests of the kinds whose read duty the caller holds (others are not listed)."""
    readable = [
        h.kind for h in rt.approval_kinds if authz_decide(rt, caller.principal, h.read_duty, ORG).allowed
    ]
    key = pagination.decode(cursor, 1)
    after = str(key[0]) if key else None
    items: list[ApprovalOut] = []
    exhausted = not readable
    with rt.db.read() as conn:
        # Expiry is computed, not stored: filter on the computed state, reading until the page is full.
        while not exhausted and len(items) < limit:
            rows = store.list_requests(conn, after, limit, readable)
            exhausted = len(rows) < limit
            for s in rows:
                after = s.request.id
                out = approval_out(s, rt)
                if state is None or out.state == state.value:
                    items.append(out)
                    if len(items) == limit:
                        break
    next_cursor = pagination.encode([after]) if len(items) == limit and after else None
    return Page[ApprovalOut](items=items, next_cursor=next_cursor)


@router.get("/approvals/{approval_id}")
def show_approval(approval_id: str, caller: Annotated[Caller, Depends(_READ)], rt: RuntimeDep) -> ApprovalOut:
    with rt.db.read() as conn:
        stored = store.get_request(conn, approval_id)
        if stored is None:
            raise not_found(f"approval request {approval_id!r}")
        handler = rt.approval_kinds.get(stored.request.kind)
        try:
            details = handler.describe(rt, conn, stored) if handler and handler.describe else None
        except GovernanceError as e:
            raise tampered(e) from None
    return approval_out(stored, rt, details)


def _vote(rt: Runtime, caller: Caller, approval_id: str, body: VoteBody, approve: bool) -> ApprovalOut:
    verb = "approve" if approve else "reject"
    obj = f"approval:{approval_id}"
    now = rt.now()
    with refusals(rt, caller, f"approval.{verb}", obj), rt.db.write() as conn:
        stored = store.get_request(conn, approval_id, for_update=True)
        if stored is None:
            raise not_found(f"approval request {approval_id!r}")
        handler = rt.approval_kinds.get(stored.request.kind)
        if handler is None:
            raise Problem(
                409, "unknown-kind", "Unknown approval kind", f"no handler for {stored.request.kind!r}"
            )
        identity = store.get_identity(conn, caller.id)
        assert identity is not None
        actor = store.load_principal(conn, identity)
        ownership = store.ownership_for(conn, [actor], [stored.request.scope])
        duties = effective_duties(actor, stored.request.scope, ownership, roles=rt.roles, raci=rt.raci)
        decided = decide(
            stored.request,
            caller.id,
            duties,
            actor.teams,
            approve,
            now,
            body.reason,
            seen_digest=body.seen_digest,
        )
        details: dict[str, JSONValue] = {
            "kind": decided.kind,
            "subject_digest": decided.subject_digest,
            "state": decided.state.value,
            "approvals": len(decided.approvals),
            "quorum": decided.quorum,
        }
        applied_at = None
        applied: dict[str, JSONValue] = {}
        if decided.state is RequestState.APPROVED:
            applied = handler.apply(rt, conn, store.StoredRequest(decided, stored.payload, None), now)
            applied_at = now
        store.update_request(conn, decided, applied_at)
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action=f"approval.{verb}",
            obj=obj,
            details=details,
        )
        if applied_at is not None:
            record(
                rt,
                conn,
                actor=caller.id,
                principal=caller.principal,
                action=f"{decided.kind}.apply",
                obj=obj,
                details={**applied, "subject_digest": decided.subject_digest, "maker": decided.maker},
            )
        after = store.get_request(conn, approval_id)
    assert after is not None
    return approval_out(after, rt)


@router.post("/approvals/{approval_id}/approve")
def approve(
    approval_id: str, body: VoteBody, caller: Annotated[Caller, Depends(_VOTE)], rt: RuntimeDep
) -> ApprovalOut:
    """Approve someone else's request; the vote that reaches the quorum applies it."""
    return _vote(rt, caller, approval_id, body, True)


@router.post("/approvals/{approval_id}/reject")
def reject(
    approval_id: str, body: VoteBody, caller: Annotated[Caller, Depends(_VOTE)], rt: RuntimeDep
) -> ApprovalOut:
    """Reject someone else's request (a reason is required); one rejection ends it."""
    return _vote(rt, caller, approval_id, body, False)


@router.post("/approvals/{approval_id}/withdraw")
def withdraw_request(
    approval_id: str, body: WithdrawBody, caller: Annotated[Caller, Depends(_WITHDRAW)], rt: RuntimeDep
) -> ApprovalOut:
    """The maker takes back a pending request."""
    obj = f"approval:{approval_id}"
    with refusals(rt, caller, "approval.withdraw", obj), rt.db.write() as conn:
        stored = store.get_request(conn, approval_id, for_update=True)
        if stored is None:
            raise not_found(f"approval request {approval_id!r}")
        done = withdraw(stored.request, caller.id, rt.now(), body.reason)
        store.update_request(conn, done)
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="approval.withdraw",
            obj=obj,
            details={"kind": done.kind},
        )
        after = store.get_request(conn, approval_id)
    assert after is not None
    return approval_out(after, rt)
