"""Identities (people and services), teams and their members, and the ownership registry."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from dutyguard.errors import GovernanceError
from dutyguard.governance.authz import Principal
from dutyguard.governance.duties import Duty, PrincipalKind
from dutyguard.governance.scope import Scope, ScopeKind
from dutyguard.server import pagination, store
from dutyguard.server.auditing import record
from dutyguard.server.auth import Caller
from dutyguard.server.authz import path_scope, query_scope, requires
from dutyguard.server.problems import Problem, conflict, not_found
from dutyguard.server.routes._common import RuntimeDep, refusals
from dutyguard.server.schemas import (
    AssetCreate,
    AssetMove,
    AssetOut,
    MemberAdd,
    Page,
    TeamCreate,
    TeamOut,
    UserCreate,
    UserOut,
)

router = APIRouter(tags=["identities"])


def user_out(identity: store.Identity, principal: Principal | None = None) -> UserOut:
    return UserOut(
        id=identity.id,
        kind=identity.kind.value,
        display_name=identity.display_name,
        email=identity.email,
        created_at=identity.created_at,
        created_by=identity.created_by,
        disabled=identity.disabled_at is not None,
        teams=sorted(principal.teams) if principal else None,
        bindings=sorted(str(b) for b in principal.bindings) if principal else None,
    )


def team_out(team: store.Team) -> TeamOut:
    return TeamOut(
        id=team.id,
        display_name=team.display_name,
        created_at=team.created_at,
        members=list(team.members),
        assets=[str(a) for a in team.assets],
    )


def asset_out(asset: store.Asset) -> AssetOut:
    return AssetOut(
        kind=asset.scope.kind.value,
        name=asset.scope.id,
        scope=str(asset.scope),
        team=asset.team_id,
        created_at=asset.created_at,
        created_by=asset.created_by,
    )


# -- users -------------------------------------------------------------------------------------------


@router.get("/users", dependencies=[Depends(requires(Duty.USER_READ))])
def list_users(
    rt: RuntimeDep,
    limit: pagination.LimitParam = 50,
    cursor: pagination.CursorParam = None,
    kind: Annotated[Literal["person", "service"] | None, Query()] = None,
) -> Page[UserOut]:
    key = pagination.decode(cursor, 1)
    with rt.db.read() as conn:
        rows = store.list_identities(conn, str(key[0]) if key else None, limit + 1, kind)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[UserOut](
        items=[user_out(i) for i in rows], next_cursor=pagination.encode([rows[-1].id]) if more else None
    )


@router.get("/users/{user_id}", dependencies=[Depends(requires(Duty.USER_READ))])
def show_user(user_id: str, rt: RuntimeDep) -> UserOut:
    with rt.db.read() as conn:
        identity = store.get_identity(conn, user_id)
        if identity is None:
            raise not_found(f"user {user_id!r}")
        return user_out(identity, store.load_principal(conn, identity))


@router.post("/users", status_code=201)
def create_user(
    body: UserCreate, caller: Annotated[Caller, Depends(requires(Duty.USER_MANAGE))], rt: RuntimeDep
) -> UserOut:
    """Create a person or a service identity (``ci``/``cluster`` roles bind to services only)."""
    obj = f"user:{body.id}"
    with refusals(rt, caller, "user.create", obj), rt.db.write() as conn:
        if store.get_identity(conn, body.id) is not None:
            raise conflict("exists", "Already exists", f"identity {body.id!r} already exists")
        identity = store.create_identity(
            conn,
            body.id,
            PrincipalKind(body.kind),
            body.display_name or body.id,
            body.email,
            caller.id,
            rt.now(),
        )
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="user.create",
            obj=obj,
            details={"kind": body.kind},
        )
    return user_out(identity)


@router.post("/users/{user_id}/disable")
def disable_user(
    user_id: str, caller: Annotated[Caller, Depends(requires(Duty.USER_MANAGE))], rt: RuntimeDep
) -> UserOut:
    """Disable an identity and revoke all its tokens at once (bindings stay, for the record)."""
    obj = f"user:{user_id}"
    now = rt.now()
    with refusals(rt, caller, "user.disable", obj), rt.db.write() as conn:
        identity = store.get_identity(conn, user_id)
        if identity is None:
            raise not_found(f"user {user_id!r}")
        if user_id == caller.id:
            raise conflict(
                "self-disable", "Refused", "disabling yourself would lock you out; ask another admin"
            )
        store.disable_identity(conn, user_id, now)
        revoked = store.revoke_tokens_of(conn, user_id, caller.id, now)
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="user.disable",
            obj=obj,
            details={"tokens_revoked": revoked},
        )
        identity = store.get_identity(conn, user_id)
    assert identity is not None
    return user_out(identity)


# -- teams ---------------------------------------------------------------------------------------------


@router.get("/teams", dependencies=[Depends(requires(Duty.TEAM_READ))])
def list_teams(
    rt: RuntimeDep, limit: pagination.LimitParam = 50, cursor: pagination.CursorParam = None
) -> Page[TeamOut]:
    key = pagination.decode(cursor, 1)
    with rt.db.read() as conn:
        rows = store.list_teams(conn, str(key[0]) if key else None, limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[TeamOut](
        items=[team_out(t) for t in rows], next_cursor=pagination.encode([rows[-1].id]) if more else None
    )


@router.get(
    "/teams/{team_id}",
    dependencies=[Depends(requires(Duty.TEAM_READ, path_scope(ScopeKind.TEAM, "team_id")))],
)
def show_team(team_id: str, rt: RuntimeDep) -> TeamOut:
    with rt.db.read() as conn:
        team = store.get_team(conn, team_id)
    if team is None:
        raise not_found(f"team {team_id!r}")
    return team_out(team)


@router.post("/teams", status_code=201)
def create_team(
    body: TeamCreate, caller: Annotated[Caller, Depends(requires(Duty.TEAM_MANAGE))], rt: RuntimeDep
) -> TeamOut:
    obj = f"team:{body.id}"
    with refusals(rt, caller, "team.create", obj), rt.db.write() as conn:
        if store.team_exists(conn, body.id):
            raise conflict("exists", "Already exists", f"team {body.id!r} already exists")
        store.create_team(conn, body.id, body.display_name or body.id, caller.id, rt.now())
        record(rt, conn, actor=caller.id, principal=caller.principal, action="team.create", obj=obj)
        team = store.get_team(conn, body.id)
    assert team is not None
    return team_out(team)


_TEAM_MANAGE = requires(Duty.TEAM_MANAGE, path_scope(ScopeKind.TEAM, "team_id"))


@router.post("/teams/{team_id}/members")
def add_member(
    team_id: str, body: MemberAdd, caller: Annotated[Caller, Depends(_TEAM_MANAGE)], rt: RuntimeDep
) -> TeamOut:
    obj = f"team:{team_id}"
    with refusals(rt, caller, "team.member.add", obj), rt.db.write() as conn:
        if not store.team_exists(conn, team_id):
            raise not_found(f"team {team_id!r}")
        if store.get_identity(conn, body.identity) is None:
            raise not_found(f"user {body.identity!r}")
        if store.add_member(conn, team_id, body.identity, rt.now()):
            record(
                rt,
                conn,
                actor=caller.id,
                principal=caller.principal,
                action="team.member.add",
                obj=obj,
                details={"identity": body.identity},
            )
        team = store.get_team(conn, team_id)
    assert team is not None
    return team_out(team)


@router.delete("/teams/{team_id}/members/{identity_id}")
def remove_member(
    team_id: str, identity_id: str, caller: Annotated[Caller, Depends(_TEAM_MANAGE)], rt: RuntimeDep
) -> TeamOut:
    obj = f"team:{team_id}"
    with refusals(rt, caller, "team.member.remove", obj), rt.db.write() as conn:
        if not store.team_exists(conn, team_id):
            raise not_found(f"team {team_id!r}")
        if not store.remove_member(conn, team_id, identity_id):
            raise not_found(f"{identity_id!r} as a member of {team_id!r}")
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="team.member.remove",
            obj=obj,
            details={"identity": identity_id},
        )
        team = store.get_team(conn, team_id)
    assert team is not None
    return team_out(team)


# -- ownership registry --------------------------------------------------------------------------------


def _asset_scope(kind: str, name: str) -> Scope:
    try:
        scope_kind = ScopeKind(kind)
        if scope_kind not in (ScopeKind.APP, ScopeKind.NAMESPACE, ScopeKind.CLUSTER):
            raise ValueError(kind)
        return Scope(scope_kind, name)
    except (ValueError, GovernanceError) as e:
        raise Problem(
            422,
            "validation",
            "Invalid request",
            f"{kind}:{name} is not an app, namespace or cluster",
            errors=[{"field": "path.kind", "message": str(e)}],
        ) from None


def asset_scope_of(request: Request) -> Scope:
    """`{kind}:{name}` (the asset itself)"""
    return _asset_scope(str(request.path_params.get("kind")), str(request.path_params.get("name")))


@router.get("/assets", dependencies=[Depends(requires(Duty.APP_READ, query_scope(ScopeKind.TEAM, "team")))])
def list_assets(
    rt: RuntimeDep,
    limit: pagination.LimitParam = 50,
    cursor: pagination.CursorParam = None,
    team: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[AssetOut]:
    key = pagination.decode(cursor, 2)
    with rt.db.read() as conn:
        rows = store.list_assets(conn, (str(key[0]), str(key[1])) if key else None, limit + 1, team)
    more = len(rows) > limit
    rows = rows[:limit]
    cur = pagination.encode([rows[-1].scope.kind.value, rows[-1].scope.id]) if more else None
    return Page[AssetOut](items=[asset_out(a) for a in rows], next_cursor=cur)


@router.post("/assets", status_code=201)
def add_asset(
    body: AssetCreate, caller: Annotated[Caller, Depends(requires(Duty.APP_MANAGE))], rt: RuntimeDep
) -> AssetOut:
    """Register an app, namespace or cluster and the team that owns it."""
    scope = _asset_scope(body.kind, body.name)
    obj = str(scope)
    with refusals(rt, caller, "asset.add", obj, {"team": body.team}), rt.db.write() as conn:
        if not store.team_exists(conn, body.team):
            raise not_found(f"team {body.team!r}")
        if store.get_asset(conn, scope) is not None:
            raise conflict("exists", "Already exists", f"{scope} is already registered")
        store.put_asset(conn, scope, body.team, caller.id, rt.now())
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="asset.add",
            obj=obj,
            details={"team": body.team},
        )
        asset = store.get_asset(conn, scope)
    assert asset is not None
    return asset_out(asset)


_ASSET_MANAGE = requires(Duty.APP_MANAGE, asset_scope_of)


@router.put("/assets/{kind}/{name}/owner")
def move_asset(
    kind: str, name: str, body: AssetMove, caller: Annotated[Caller, Depends(_ASSET_MANAGE)], rt: RuntimeDep
) -> AssetOut:
    """Hand an asset to another team (team-scoped bindings follow the registry at once)."""
    scope = _asset_scope(kind, name)
    obj = str(scope)
    with refusals(rt, caller, "asset.move", obj, {"team": body.team}), rt.db.write() as conn:
        before = store.get_asset(conn, scope)
        if before is None:
            raise not_found(str(scope))
        if not store.team_exists(conn, body.team):
            raise not_found(f"team {body.team!r}")
        store.move_asset(conn, scope, body.team)
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="asset.move",
            obj=obj,
            details={"from": before.team_id, "to": body.team},
        )
        asset = store.get_asset(conn, scope)
    assert asset is not None
    return asset_out(asset)


@router.delete("/assets/{kind}/{name}", status_code=204)
def remove_asset(
    kind: str, name: str, caller: Annotated[Caller, Depends(_ASSET_MANAGE)], rt: RuntimeDep
) -> Response:
    scope = _asset_scope(kind, name)
    obj = str(scope)
    with refusals(rt, caller, "asset.remove", obj), rt.db.write() as conn:
        before = store.get_asset(conn, scope)
        if before is None:
            raise not_found(str(scope))
        store.delete_asset(conn, scope)
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="asset.remove",
            obj=obj,
            details={"team": before.team_id},
        )
    return Response(status_code=204)
