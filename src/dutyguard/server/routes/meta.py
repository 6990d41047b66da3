"""``/health`` (public), ``/whoami`` (any identity), ``/roles`` (the role/duty table)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from dutyguard import __version__
from dutyguard.governance.authz import effective_duties
from dutyguard.governance.duties import Duty
from dutyguard.governance.scope import ORG
from dutyguard.server import store
from dutyguard.server.auth import Caller
from dutyguard.server.authz import authenticated, public, requires
from dutyguard.server.routes._common import RuntimeDep
from dutyguard.server.schemas import Health, RoleOut, WhoAmI

router = APIRouter(tags=["meta"])


@router.get("/health", dependencies=[Depends(public())])
def health(rt: RuntimeDep) -> Health:
    """Liveness and the schema revision; no credentials needed, nothing secret in it."""
    return Health(
        status="ok", version=__version__, database=rt.db.dialect, schema_revision=rt.schema_revision
    )


@router.get("/whoami")
def whoami(caller: Annotated[Caller, Depends(authenticated(enrollment_ok=True))], rt: RuntimeDep) -> WhoAmI:
    """The calling identity, its teams, bindings and every duty it holds somewhere."""
    p = caller.principal
    duties: set[Duty] = set()
    with rt.db.read() as conn:
        for scope in {b.scope for b in p.bindings} | {ORG}:
            ownership = store.ownership_for(conn, [p], [scope])
            duties |= effective_duties(p, scope, ownership, roles=rt.roles, raci=rt.raci)
    return WhoAmI(
        id=caller.id,
        kind=caller.identity.kind.value,
        display_name=caller.identity.display_name,
        teams=sorted(p.teams),
        bindings=sorted(str(b) for b in p.bindings),
        duties=sorted(d.value for d in duties),
        token_id=caller.token.id,
        token_purpose=caller.token.purpose,
        token_expires_at=caller.token.expires_at,
    )


@router.get("/roles", dependencies=[Depends(requires(Duty.ROLE_READ))])
def roles(rt: RuntimeDep) -> list[RoleOut]:
    """The role table: which duties each role bundles (data shipped with dutyguard), and which
    roles are sensitive (binding one needs a security approver)."""
    from dutyguard.governance.grants import needs_approval

    return [
        RoleOut(
            role=r.value,
            kind=spec.kind.value,
            description=spec.description,
            duties=sorted(spec.duties),
            needs_approval=needs_approval(r, rt.roles),
        )
        for r, spec in rt.roles.specs.items()
    ]
