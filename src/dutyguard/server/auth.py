"""Who is calling: bearer token → identity → governance ``Principal``.

Every failure is a 401 problem that says as little as possible to the client (an unknown id
and a wrong secret read the same) and as much as useful to the audit trail (which of the two,
from which address). Failures count against the source address; past
``auth_failures_per_minute`` the address gets 429 without a database lookup, which also bounds
how many audit entries a password-spraying client can cause.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NoReturn

from fastapi import Request

from dutyguard.audit.canonical import JSONValue
from dutyguard.governance.authz import Principal
from dutyguard.server import store, tokens
from dutyguard.server.auditing import ANONYMOUS, record_refusal
from dutyguard.server.problems import Problem, unauthorized
from dutyguard.server.runtime import Runtime


@dataclass(frozen=True, slots=True)
class Caller:
    identity: store.Identity
    principal: Principal
    token: store.TokenRecord

    @property
    def id(self) -> str:
        return self.identity.id


def runtime_of(request: Request) -> Runtime:
    rt = request.app.state.runtime
    assert isinstance(rt, Runtime)
    return rt


def client_address(rt: Runtime, request: Request) -> str:
    if rt.settings.trust_forwarded_for:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()[:64] or "unknown"
    return request.client.host if request.client else "unknown"


def route_name(request: Request) -> str:
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    return f"{request.method} {path}"


def authenticate(rt: Runtime, request: Request) -> Caller:
    """The caller of ``request``, or a :class:`Problem` (401, or 429 when throttled)."""
    cached = getattr(request.state, "caller", None)
    if isinstance(cached, Caller):
        return cached
    address = client_address(rt, request)
    if rt.limiter.blocked(address):
        raise Problem(
            429,
            "too-many-failures",
            "Too many failed authentications",
            f"too many failed authentications from {address}; try again in a minute",
            headers={"Retry-After": "60"},
        )
    header = request.headers.get("authorization")
    if header is None:
        _fail(rt, request, address, "missing credentials", "no credentials", None)
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        _fail(rt, request, address, "not a bearer token", "expected 'Authorization: Bearer <token>'", None)
    parsed = tokens.parse(value.strip())
    if parsed is None:
        _fail(rt, request, address, "malformed token", "invalid token", None)
    token_id, secret = parsed
    now = rt.now()
    with rt.db.read() as conn:
        found = store.token_with_identity(conn, token_id)
        if found is None:
            _fail(rt, request, address, "unknown token id", "invalid token", token_id)
        if not rt.hasher.matches(secret, found.token.secret_hash):
            _fail(rt, request, address, "wrong secret", "invalid token", token_id, found.identity.id)
        # Past this point the caller proved possession: telling them why is safe and useful.
        if found.token.revoked_at is not None:
            _fail(rt, request, address, "revoked token", "token was revoked", token_id, found.identity.id)
        if now >= found.token.expires_at:
            _fail(rt, request, address, "expired token", "token has expired", token_id, found.identity.id)
        if found.identity.disabled_at is not None:
            _fail(
                rt, request, address, "disabled identity", "identity is disabled", token_id, found.identity.id
            )
        principal = store.load_principal(conn, found.identity)
    caller = Caller(found.identity, principal, found.token)
    request.state.caller = caller
    return caller


def _fail(
    rt: Runtime,
    request: Request,
    address: str,
    reason: str,
    public: str,
    token_id: str | None,
    identity_id: str | None = None,
) -> NoReturn:
    count = rt.limiter.record(address)
    details: dict[str, JSONValue] = {
        "reason": reason,
        "address": address,
        "route": route_name(request),
        "failures_in_window": count,
    }
    if token_id is not None:
        details["token_id"] = token_id
    if count >= rt.settings.auth_failures_per_minute:
        details["rate_limited"] = True
    # The actor is who the token claims to be (or nobody): the entry is evidence of the attempt.
    record_refusal(
        rt,
        actor=identity_id or ANONYMOUS,
        principal=None,
        action="auth.failed",
        obj=f"token:{token_id}" if token_id else "token:-",
        details=details,
    )
    raise unauthorized(public)
