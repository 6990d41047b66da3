"""Role bindings: list, bind (checked against the conflict rules), unbind.

Binding goes through ``governance.sod.check_grant``: the actor needs ``role.assign`` over the
binding's scope, machine roles bind to services only, nobody grants themselves a role, and a
binding that leaves an unmitigated conflict is refused (409) and audited, naming the rules.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from dutyguard.errors import AuthorizationError
from dutyguard.governance.authz import Binding, Principal, authorize
from dutyguard.governance.duties import Duty, Role
from dutyguard.governance.scope import Scope
from dutyguard.governance.sod import check_grant
from dutyguard.server import pagination, store
from dutyguard.server.auditing import record
from dutyguard.server.auth import Caller
from dutyguard.server.authz import requires
from dutyguard.server.problems import not_found
from dutyguard.server.routes._common import RuntimeDep, refusals
from dutyguard.server.schemas import BindingCreate, BindingOut, Page

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


@router.post("/role-bindings", status_code=201)
def bind(body: BindingCreate, caller: Annotated[Caller, Depends(_BIND)], rt: RuntimeDep) -> BindingOut:
    scope = Scope.parse(body.scope)
    obj = f"binding:{body.identity}/{body.role.value}@{scope}"
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
        mitigated = check_grant(
            actor,
            subject,
            binding,
            ownership,
            now,
            rules=rules.rules,
            mitigations=store.mitigations(conn, body.identity),
            roles=rt.roles,
            raci=rt.raci,
        )
        sb = store.insert_binding(conn, binding, caller.id, now)
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="role.bind",
            obj=obj,
            details={
                "binding_id": sb.id,
                "rules_version": rules.version,
                "mitigated_conflicts": [c.rule.id for c in mitigated],
                "mitigations": [c.mitigation.id for c in mitigated if c.mitigation],
            },
        )
    return binding_out(sb)


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
