"""Role bindings: list, bind (checked against the conflict rules), unbind.

Binding goes through ``governance.sod.check_grant``: the actor needs ``role.assign`` over the
binding's scope, machine roles bind to services only, nobody grants themselves a role, and a
binding that leaves an unmitigated conflict is refused (409) and audited, naming the rules.

A *sensitive* role (one holding a duty of ``sensitive_bindings`` in ``roles.yaml``: security) is
not bound by the request: after the same checks it opens a ``role.binding`` approval request
(202, with its id) that someone other than the maker and the person bound, holding
``role.approve`` over the binding's scope, must approve; the binding is created by that vote
(``server.approval_kinds``). A request nobody could approve is refused (``no_approver``), a
second request for the same binding while one is pending too (``pending``). The one exception is
the first Security member of a new installation (``server.bootstrap``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.engine import Connection

from dutyguard.audit.canonical import JSONValue
from dutyguard.errors import AuthorizationError, GovernanceError
from dutyguard.governance import grants
from dutyguard.governance.authz import Binding, Principal, authorize
from dutyguard.governance.duties import Duty, Role
from dutyguard.governance.scope import Ownership, Scope
from dutyguard.governance.sod import Mitigation, RuleSet, check_grant
from dutyguard.server import pagination, store
from dutyguard.server.auditing import record
from dutyguard.server.auth import Caller
from dutyguard.server.authz import requires
from dutyguard.server.bootstrap import (
    approver_roles,
    close_first_approver_window,
    close_window_if_staffed,
    first_approver_window_open,
)
from dutyguard.server.problems import conflict, not_found
from dutyguard.server.routes._common import RuntimeDep, refusals
from dutyguard.server.runtime import Runtime
from dutyguard.server.schemas import BindingCreate, BindingOut, BindingPending, Page

router = APIRouter(tags=["roles"])

_BIND = requires(Duty.ROLE_ASSIGN, any_scope=True, note="the new binding's scope")
_UNBIND = requires(Duty.ROLE_ASSIGN, any_scope=True, note="the removed binding's scope")


def binding_out(sb: store.StoredBinding) -> BindingOut:
    return BindingOut(
        id=sb.id,
        identity=sb.binding.principal_id,
        role=sb.binding.role.value,
        scope=str(sb.binding.scope),
        created_at=sb.created_at,
        created_by=sb.created_by,
    )


@router.get("/role-bindings", dependencies=[Depends(requires(Duty.ROLE_READ))])
def list_bindings(
    rt: RuntimeDep,
    identity: Annotated[str | None, Query(max_length=64)] = None,
    role: Annotated[Role | None, Query()] = None,
    limit: pagination.LimitParam = 50,
    cursor: pagination.CursorParam = None,
) -> Page[BindingOut]:
    key = pagination.decode(cursor, 1)
    with rt.db.read() as conn:
        rows = store.list_bindings(
            conn, str(key[0]) if key else None, limit + 1, identity, role.value if role else None
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[BindingOut](
        items=[binding_out(b) for b in rows], next_cursor=pagination.encode([rows[-1].id]) if more else None
    )


@router.post(
    "/role-bindings",
    status_code=201,
    responses={
        202: {"model": BindingPending, "description": "A sensitive role: an approval request was opened."}
    },
)
def bind(
    body: BindingCreate, response: Response, caller: Annotated[Caller, Depends(_BIND)], rt: RuntimeDep
) -> BindingOut | BindingPending:
    """Bind a role (201); a sensitive role (security) opens an approval request instead (202)."""
    scope = Scope.parse(body.scope)
    obj = f"binding:{body.identity}/{body.role.value}@{scope}"
    if grants.needs_approval(body.role, rt.roles):
        # In its own transaction, so it stays closed even if this request is refused below.
        close_window_if_staffed(rt)
    now = rt.now()
    with refusals(rt, caller, "role.bind", obj), rt.db.write() as conn:
        identity = store.get_identity(conn, body.identity)
        if identity is None or identity.disabled_at is not None:
            raise not_found(f"identity {body.identity!r}")
        subject = store.load_principal(conn, identity)
        # The actor as stored now, not as authenticated moments ago: a binding removed meanwhile counts.
        actor_identity = store.get_identity(conn, caller.id)
        assert actor_identity is not None
        actor = store.load_principal(conn, actor_identity)
        binding = Binding(body.identity, body.role, scope)
        ownership = store.ownership_for(conn, [actor, subject], [scope])
        rules = store.current_rules(conn, rt.shipped_rules, rt.roles)
        mitigations = store.mitigations(conn, body.identity)
        first_approver = False
        if grants.needs_approval(body.role, rt.roles):
            # anyone ever bound, disabled or not: disabling every approver is not a new installation
            bound = store.anyone_bound(conn, approver_roles(rt))
            window_open = first_approver_window_open(conn)
            first_approver = grants.is_bootstrap_binding(
                binding, approver_exists=bound, window_open=window_open, roles=rt.roles
            )
            if not first_approver:
                approvers = store.enabled_holders(conn, approver_roles(rt))
                pending = _request(
                    rt,
                    conn,
                    caller,
                    (actor, subject),
                    binding,
                    ownership,
                    rules.rules,
                    mitigations,
                    approvers,
                    now,
                )
                response.status_code = 202
                return pending
        mitigated = check_grant(
            actor,
            subject,
            binding,
            ownership,
            now,
            rules=rules.rules,
            mitigations=mitigations,
            roles=rt.roles,
            raci=rt.raci,
        )
        details: dict[str, JSONValue] = {
            "rules_version": rules.version,
            "mitigated_conflicts": [c.rule.id for c in mitigated],
            "mitigations": [c.mitigation.id for c in mitigated if c.mitigation],
        }
        if first_approver:
            # Nobody can approve the first approver: the one-time window, claimed in this transaction
            # (a concurrent first binding loses the claim and is refused, not bound twice).
            if not close_first_approver_window(conn, now, "first approver bound", str(binding)):
                raise conflict(
                    "first-approver", "Refused", "another first security binding was just made; retry"
                )
            details["first_approver"] = True
        sb = store.insert_binding(conn, binding, caller.id, now)
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="role.bind",
            obj=obj,
            details={"binding_id": sb.id, **details},
        )
    return binding_out(sb)


def _request(
    rt: Runtime,
    conn: Connection,
    caller: Caller,
    parties: tuple[Principal, Principal],
    binding: Binding,
    ownership: Ownership,
    rules: RuleSet,
    mitigations: list[Mitigation],
    approvers: list[Principal],
    now: datetime,
) -> BindingPending:
    """Open the ``role.binding`` request for a sensitive binding; nothing is bound yet."""
    actor, subject = parties
    request, payload, mitigated = grants.request_binding(
        store.new_id("apr"),
        actor,
        subject,
        binding,
        ownership,
        now,
        rules=rules,
        mitigations=mitigations,
        roles=rt.roles,
        raci=rt.raci,
    )
    already = store.pending_request_with_payload(conn, request.kind, payload, now)
    if already is not None:
        raise conflict(
            "pending",
            "Already requested",
            f"approval request {already} for {binding} to {binding.principal_id} is pending",
            approval_id=already,
        )
    eligible = grants.eligible_approvers(
        request,
        approvers,
        store.ownership_for(conn, approvers, [binding.scope]),
        roles=rt.roles,
        raci=rt.raci,
    )
    if not eligible:
        # a request nobody can approve would only sit there until it expires
        raise GovernanceError(
            "no_approver",
            f"nobody other than {request.maker} and {subject.id} holds {request.approver_duty} over "
            f"{binding.scope}, so binding {binding.role} there cannot be approved",
        )
    store.insert_request(conn, request, payload)
    record(
        rt,
        conn,
        actor=caller.id,
        principal=caller.principal,
        action="approval.open",
        obj=f"approval:{request.id}",
        details={
            "kind": request.kind,
            "subject_digest": request.subject_digest,
            "binding": str(binding),
            "identity": binding.principal_id,
            "severity": request.severity.value,
            "quorum": request.quorum,
            "eligible_approvers": len(eligible),
            "mitigated_conflicts": [c.rule.id for c in mitigated],
        },
    )
    return BindingPending(
        state="pending",
        approval_id=request.id,
        identity=binding.principal_id,
        role=binding.role.value,
        scope=str(binding.scope),
        approver_duty=request.approver_duty.value,
        eligible_approvers=len(eligible),
        expires_at=request.expires_at,
    )


@router.delete("/role-bindings/{binding_id}", status_code=204)
def unbind(
    binding_id: str, request: Request, caller: Annotated[Caller, Depends(_UNBIND)], rt: RuntimeDep
) -> Response:
    obj = f"binding:{binding_id}"
    with refusals(rt, caller, "role.unbind", obj), rt.db.write() as conn:
        sb = store.get_binding(conn, binding_id)
        if sb is None:
            raise not_found(f"role binding {binding_id!r}")
        obj = f"binding:{sb.binding.principal_id}/{sb.binding.role.value}@{sb.binding.scope}"
        actor: Principal = caller.principal
        ownership = store.ownership_for(conn, [actor], [sb.binding.scope])
        decision = authorize(
            actor, Duty.ROLE_ASSIGN, sb.binding.scope, ownership, roles=rt.roles, raci=rt.raci
        )
        if not decision.allowed:
            raise AuthorizationError("forbidden", decision.reason)
        store.delete_binding(conn, binding_id)
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="role.unbind",
            obj=obj,
            details={"binding_id": binding_id},
        )
    return Response(status_code=204)
