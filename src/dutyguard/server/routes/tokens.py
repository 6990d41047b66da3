"""API tokens: create (shown once), list (metadata only), revoke.

Who may hold a usable token of whom:

- anyone creates tokens for themselves, never outliving the token that asks (a stolen token
  cannot mint itself a longer life);
- ``token.manage`` (admin) creates **api** tokens for service identities (a CI pipeline cannot
  enroll itself), and for a person only an **enrollment** token: good for nothing but
  exchanging it, once, for the person's own token. An administrator therefore never holds a
  token that acts with a person's duties; if they exchange an enrollment token themselves, the
  person finds it used, and the exchange is an audit entry with its source address.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy.engine import Connection

from dutyguard.audit.canonical import JSONValue
from dutyguard.governance.duties import Duty, PrincipalKind
from dutyguard.governance.scope import ORG, Scope
from dutyguard.server import pagination, store, tokens
from dutyguard.server.auditing import record
from dutyguard.server.auth import Caller, client_address
from dutyguard.server.authz import Missing, authenticated, enforce, requires_dynamic
from dutyguard.server.problems import Problem, not_found
from dutyguard.server.routes._common import RuntimeDep, refusals
from dutyguard.server.runtime import Runtime
from dutyguard.server.schemas import Page, TokenCreate, TokenCreated, TokenOut

router = APIRouter(tags=["tokens"])

ENROLLMENT_MAX = timedelta(days=7)


def token_out(rec: store.TokenRecord, rt: Runtime) -> TokenOut:
    return TokenOut(
        id=rec.id,
        identity=rec.identity_id,
        description=rec.description,
        created_at=rec.created_at,
        created_by=rec.created_by,
        expires_at=rec.expires_at,
        revoked_at=rec.revoked_at,
        state=rec.state(rt.now()) if rec.purpose == "api" else f"{rec.state(rt.now())} (enrollment)",
    )


def issue(
    rt: Runtime,
    conn: Connection,
    identity_id: str,
    description: str,
    actor: str,
    expires_at: datetime,
    purpose: str = "api",
) -> tuple[store.TokenRecord, str]:
    """Store a new token's hash; returns the record and the only copy of the secret text."""
    new = tokens.generate()
    rec = store.insert_token(
        conn,
        new.id,
        identity_id,
        rt.hasher.digest(new.secret),
        description,
        actor,
        rt.now(),
        expires_at,
        purpose,
    )
    return rec, new.text


@router.post("/tokens", status_code=201)
def create_token(
    body: TokenCreate,
    request: Request,
    caller: Annotated[Caller, Depends(authenticated(enrollment_ok=True))],
    rt: RuntimeDep,
) -> TokenCreated:
    """A new token for yourself, or (``token.manage``) for a service, or an enrollment token for a person."""
    target_id = body.identity or caller.id
    now = rt.now()
    obj = f"identity:{target_id}"
    if target_id != caller.id:
        if caller.token.purpose != "api":
            with refusals(rt, caller, "token.create", obj):
                raise Problem(
                    403, "forbidden", "Not allowed", "an enrollment token creates only its owner's token"
                )
        enforce(rt, request, caller, Duty.TOKEN_MANAGE, ORG)
    with refusals(rt, caller, "token.create", obj), rt.db.write() as conn:
        target = store.get_identity(conn, target_id)
        if target is None:
            raise not_found(f"identity {target_id!r}")
        if target.disabled_at is not None:
            raise Problem(409, "disabled", "Identity disabled", f"{target_id} is disabled")
        requested = timedelta(seconds=body.ttl_seconds) if body.ttl_seconds else None
        purpose = "api"
        if target_id == caller.id:
            # Never outlive the token that asks: a stolen token cannot extend itself.
            ceiling = caller.token.expires_at
            if caller.token.purpose == "enrollment":
                ceiling = now + rt.settings.default_token_ttl
            expires_at = min(now + (requested or rt.settings.default_token_ttl), ceiling)
        elif target.kind is PrincipalKind.SERVICE:
            ttl = requested or rt.settings.default_token_ttl
            if ttl > rt.settings.max_token_ttl:
                raise Problem(
                    422,
                    "validation",
                    "Invalid request",
                    "ttl beyond the maximum token lifetime",
                    errors=[{"field": "body.ttl_seconds", "message": "beyond the maximum token lifetime"}],
                )
            expires_at = now + ttl
        else:
            purpose = "enrollment"
            expires_at = now + min(requested or ENROLLMENT_MAX, ENROLLMENT_MAX)
        if expires_at <= now:
            raise Problem(
                409, "expired", "Token expired", "the presenting token expires too soon to issue another"
            )
        rec, text = issue(rt, conn, target_id, body.description, caller.id, expires_at, purpose)
        details: dict[str, JSONValue] = {
            "token_id": rec.id,
            "purpose": purpose,
            "expires_at": expires_at.isoformat(),
        }
        if caller.token.purpose == "enrollment" and target_id == caller.id:
            store.revoke_token(conn, caller.token.id, caller.id, now)
            details["exchanged_enrollment_token"] = caller.token.id
            details["address"] = client_address(rt, request)
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="token.create",
            obj=obj,
            details=details,
        )
    out = token_out(rec, rt)
    return TokenCreated(**out.model_dump(), token=text)


def _others_tokens(
    rt: Runtime, conn: Connection, request: Request, caller: Caller
) -> tuple[Duty, Scope] | None:
    """own tokens: any identity; another's (`?identity=`): `token.manage` on the organisation"""
    identity = request.query_params.get("identity")
    return None if identity in (None, caller.id) else (Duty.TOKEN_MANAGE, ORG)


def _token_owner(
    rt: Runtime, conn: Connection, request: Request, caller: Caller
) -> tuple[Duty, Scope] | Missing | None:
    """own token: any identity; another's: `token.manage` on the organisation"""
    token_id = str(request.path_params.get("token_id", ""))
    rec = store.get_token(conn, token_id)
    if rec is None:
        # Not the caller's own token (they can list those): refused as another's would be.
        return Missing(f"token {token_id!r}", unowned=(Duty.TOKEN_MANAGE, ORG))
    return None if rec.identity_id == caller.id else (Duty.TOKEN_MANAGE, ORG)


@router.get("/tokens")
def list_tokens(
    caller: Annotated[Caller, Depends(requires_dynamic(_others_tokens))],
    rt: RuntimeDep,
    identity: Annotated[str | None, Query(max_length=64)] = None,
    limit: pagination.LimitParam = 50,
    cursor: pagination.CursorParam = None,
) -> Page[TokenOut]:
    """Your tokens; another identity's (or everyone's, ``identity=*``) with ``token.manage``."""
    target = identity or caller.id
    key = pagination.decode(cursor, 1)
    with rt.db.read() as conn:
        rows = store.list_tokens(
            conn, None if target == "*" else target, str(key[0]) if key else None, limit + 1
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[TokenOut](
        items=[token_out(r, rt) for r in rows], next_cursor=pagination.encode([rows[-1].id]) if more else None
    )


@router.delete("/tokens/{token_id}")
def revoke_token(
    token_id: str, caller: Annotated[Caller, Depends(requires_dynamic(_token_owner))], rt: RuntimeDep
) -> TokenOut:
    """Revoke a token at once; yours, or anyone's with ``token.manage``."""
    obj = f"token:{token_id}"
    with rt.db.read() as conn:
        rec = store.get_token(conn, token_id)
    if rec is None:
        raise not_found(f"token {token_id!r}")
    with refusals(rt, caller, "token.revoke", obj), rt.db.write() as conn:
        store.revoke_token(conn, token_id, caller.id, rt.now())
        record(
            rt,
            conn,
            actor=caller.id,
            principal=caller.principal,
            action="token.revoke",
            obj=obj,
            details={"identity": rec.identity_id, "was": rec.state(rt.now())},
        )
        after = store.get_token(conn, token_id)
    assert after is not None
    return token_out(after, rt)
