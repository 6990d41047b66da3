"""Break-glass: open (devops, with a reason, time-boxed), close, and the after-the-fact review.

Opening is loud: an audit entry in the same transaction and, once committed, a notification
to ``DUTYGUARD_NOTIFY_WEBHOOK`` (sent off the request path). The review can only be done by
someone else holding ``breakglass.review``.
"""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.engine import Connection

from dutyguard.governance.authz import effective_duties
from dutyguard.governance.breakglass import Grant, ReviewOutcome, close_grant, open_grant, review_grant
from dutyguard.governance.duties import Duty
from dutyguard.governance.scope import ORG, Scope
from dutyguard.server import pagination, store
from dutyguard.server.auditing import record
from dutyguard.server.auth import Caller
from dutyguard.server.authz import Missing, requires, requires_dynamic
from dutyguard.server.problems import not_found
from dutyguard.server.routes._common import RuntimeDep, refusals
from dutyguard.server.runtime import Runtime
from dutyguard.server.schemas import BreakglassOpen, BreakglassReview, Empty, GrantOut, Page

router = APIRouter(prefix="/breakglass", tags=["break-glass"])


def grant_out(g: Grant, rt: Runtime) -> GrantOut:
    return GrantOut(
        id=g.id,
        opener=g.opener,
        reason=g.reason,
        scope=str(g.scope),
        state=g.state(rt.now()).value,
        opened_at=g.opened_at,
        expires_at=g.expires_at,
        closed_at=g.closed_at,
        closed_by=g.closed_by,
        reviewer=g.review.reviewer if g.review else None,
        review_outcome=g.review.outcome.value if g.review else None,
        review_notes=g.review.notes if g.review else None,
        reviewed_at=g.review.at if g.review else None,
    )


def _close_duty(
    rt: Runtime, conn: Connection, request: Request, caller: Caller
) -> tuple[Duty, Scope] | Missing:
    """`breakglass.open` on the grant's scope for its opener; `breakglass.review` for anyone else"""
    grant_id = str(request.path_params.get("grant_id", ""))
    grant = store.get_grant(conn, grant_id)
    if grant is None:
        # Not the caller's own grant (they know those): refused as another's would be.
        return Missing(f"break-glass grant {grant_id!r}", unowned=(Duty.BREAKGLASS_REVIEW, ORG))
    if grant.opener == caller.id:
        return Duty.BREAKGLASS_OPEN, grant.scope
    return Duty.BREAKGLASS_REVIEW, ORG


@router.get("", dependencies=[Depends(requires(Duty.BREAKGLASS_READ))])
def list_grants(
    rt: RuntimeDep,
    pending_review: Annotated[bool, Query()] = False,
    limit: pagination.LimitParam = 50,
    cursor: pagination.CursorParam = None,
) -> Page[GrantOut]:
    key = pagination.decode(cursor, 1)
    with rt.db.read() as conn:
        rows = store.list_grants(conn, str(key[0]) if key else None, limit + 1, pending_review, rt.now())
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[GrantOut](
        items=[grant_out(g, rt) for g in rows], next_cursor=pagination.encode([rows[-1].id]) if more else None
    )


@router.get("/{grant_id}", dependencies=[Depends(requires(Duty.BREAKGLASS_READ))])
def show_grant(grant_id: str, rt: RuntimeDep) -> GrantOut:
    with rt.db.read() as conn:
        grant = store.get_grant(conn, grant_id)
    if grant is None:
        raise not_found(f"break-glass grant {grant_id!r}")
    return grant_out(grant, rt)


@router.post("", status_code=201)
def open_(
    body: BreakglassOpen,
    caller: Annotated[
        Caller, Depends(requires(Duty.BREAKGLASS_OPEN, any_scope=True, note="the grant's scope"))
    ],
    rt: RuntimeDep,
) -> GrantOut:
    """Open an emergency grant: alerts at once and opens a review only someone else can close."""
    scope = Scope.parse(body.scope)
    now = rt.now()
    grant_id = store.new_id("bg")
    obj = f"breakglass:{grant_id}"
    with refusals(rt, caller, "breakglass.open", obj, {"scope": str(scope)}), rt.db.write() as conn:
        ownership = store.ownership_for(conn, [caller.principal], [scope])
        grant = open_grant(
            grant_id,
            caller.principal,
            body.reason,
            scope,
            timedelta(minutes=body.duration_minutes),
            now,
            ownership,
            open_grants=store.grants_of(conn, caller.id, now),
            roles=rt.roles,
            raci=rt.raci,
        )
        store.insert_grant(conn, grant)
        seq = record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="breakglass.open",
            obj=obj,
            details={
                "scope": str(scope),
                "reason": grant.reason,
                "expires_at": grant.expires_at.isoformat(),
                "duties": sorted(rt.roles.breakglass.duties),
            },
        )
    # Committed: now the alarm may go out (never for a grant that was rolled back).
    rt.notifier.send(
        {
            "event": "breakglass.opened",
            "grant": grant.id,
            "opener": grant.opener,
            "scope": str(grant.scope),
            "reason": grant.reason,
            "opened_at": grant.opened_at.astimezone(UTC).isoformat(),
            "expires_at": grant.expires_at.astimezone(UTC).isoformat(),
            "audit_seq": seq,
        }
    )
    return grant_out(grant, rt)


@router.post("/{grant_id}/close")
def close(
    grant_id: str,
    body: Empty,
    caller: Annotated[Caller, Depends(requires_dynamic(_close_duty))],
    rt: RuntimeDep,
) -> GrantOut:
    """End a grant early (its opener, or a reviewer); the review stays due."""
    obj = f"breakglass:{grant_id}"
    now = rt.now()
    with refusals(rt, caller, "breakglass.close", obj), rt.db.write() as conn:
        grant = store.get_grant(conn, grant_id, for_update=True)
        if grant is None:
            raise not_found(f"break-glass grant {grant_id!r}")
        ownership = store.ownership_for(conn, [caller.principal], [ORG])
        duties = effective_duties(caller.principal, ORG, ownership, roles=rt.roles, raci=rt.raci)
        closed = close_grant(grant, caller.id, duties, now)
        store.update_grant(conn, closed)
        record(rt, conn, actor=caller.id, principal=caller.principal, action="breakglass.close", obj=obj)
    rt.notifier.send({"event": "breakglass.closed", "grant": grant_id, "closed_by": caller.id})
    return grant_out(closed, rt)


@router.post("/{grant_id}/review")
def review(
    grant_id: str,
    body: BreakglassReview,
    caller: Annotated[Caller, Depends(requires(Duty.BREAKGLASS_REVIEW))],
    rt: RuntimeDep,
) -> GrantOut:
    """The mandatory review by someone other than the opener, once the grant has ended."""
    obj = f"breakglass:{grant_id}"
    now = rt.now()
    with refusals(rt, caller, "breakglass.review", obj), rt.db.write() as conn:
        grant = store.get_grant(conn, grant_id, for_update=True)
        if grant is None:
            raise not_found(f"break-glass grant {grant_id!r}")
        ownership = store.ownership_for(conn, [caller.principal], [ORG])
        duties = effective_duties(caller.principal, ORG, ownership, roles=rt.roles, raci=rt.raci)
        reviewed = review_grant(grant, caller.id, duties, ReviewOutcome(body.outcome), body.notes, now)
        store.update_grant(conn, reviewed)
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="breakglass.review",
            obj=obj,
            details={"outcome": body.outcome, "opener": grant.opener},
        )
    rt.notifier.send(
        {"event": "breakglass.reviewed", "grant": grant_id, "reviewer": caller.id, "outcome": body.outcome}
    )
    return grant_out(reviewed, rt)
