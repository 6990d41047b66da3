"""The one place that decides every API request.

Each route declares what it needs with a :class:`Requirement` dependency::

    @router.post("/teams", ...)
    def create_team(body: TeamCreate, caller: Annotated[Caller, Depends(requires(Duty.TEAM_MANAGE))]): ...

Kinds of declaration:

- ``requires(duty, scope=...)``: authenticate, then ``governance.authz.authorize`` the duty on the
  target scope (organisation by default, or taken from a path parameter);
- ``requires(duty, any_scope=True)``: the caller must hold the duty somewhere; the handler then
  decides the exact scope from the validated body, through :func:`enforce` (role bindings);
- ``requires_dynamic(resolver, could=...)``: the duty and scope depend on a stored object (an
  approval request is decided with its kind's approver duty over its scope);
- ``authenticated()``: any valid identity (``whoami``, one's own tokens);
- ``public()``: no credentials (health, the OpenAPI document).

Existence is not disclosed to who could never act. A dynamic route whose duty depends on the object
declares ``could``: every duty it can ever need. A caller holding none of them over any scope is
refused before the object is read, with the same audited 403 whatever the id, so an id cannot be
probed; a caller holding one gets the object's own check, or 404 (:class:`Missing`) when there is
no such object. A route on the caller's own objects (tokens, break-glass grants) instead answers a
missing id as someone else's object (``Missing.unowned``): the 403 of an existing one, 404 past it.
Static and ``any_scope`` declarations are checked before the handler looks anything up, so their
404 only ever reaches a caller holding the duty.

Default deny: :func:`check_declarations` refuses to build an app in which any route lacks a
declaration, and the test suite checks every route against every role from the role table.
Every refusal (401 and 403) is an audit entry.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import NoReturn

from fastapi import FastAPI, Request
from fastapi.routing import APIRoute, iter_route_contexts
from sqlalchemy.engine import Connection

from dutyguard.errors import ConfigError, GovernanceError
from dutyguard.governance.authz import Decision, Principal, authorize
from dutyguard.governance.duties import Duty
from dutyguard.governance.scope import ASSET_KINDS, ORG, Scope, ScopeKind
from dutyguard.server import store
from dutyguard.server.auditing import record_refusal
from dutyguard.server.auth import Caller, authenticate, route_name, runtime_of
from dutyguard.server.problems import Problem, forbidden, not_found
from dutyguard.server.runtime import Runtime


class Access(StrEnum):
    PUBLIC = "public"
    AUTHENTICATED = "authenticated"
    DUTY = "duty"
    DYNAMIC = "dynamic"


@dataclass(frozen=True, slots=True)
class Missing:
    """A resolver's answer when the object the route names does not exist.

    ``what`` names it for the 404. ``unowned``: the duty and scope the route needs for an object
    that is not the caller's own, when that does not depend on the object (another identity's
    token: ``token.manage`` on the organisation); a missing object gets exactly that check first.
    ``None``: the check depends on the object, so the route must declare ``could``.
    """

    what: str
    unowned: tuple[Duty, Scope] | None = None


ScopeOf = Callable[[Request], Scope]
DynamicOf = Callable[[Runtime, Connection, Request, Caller], tuple[Duty, Scope] | Missing | None]
"""The duty and scope a stored object requires; ``None``: the caller's own object, identity
suffices; :class:`Missing`: there is no such object."""
CouldOf = Callable[[Runtime], Iterable[Duty]]
"""Every duty a dynamic route can ever need (an approval's depends on its kind)."""


def org_scope(_request: Request) -> Scope:
    """the organisation"""
    return ORG


def path_scope(kind: ScopeKind, param: str) -> ScopeOf:
    """The scope named by a path parameter (``/teams/{team_id}`` → ``team:<team_id>``)."""

    def of(request: Request) -> Scope:
        value = request.path_params.get(param, "")
        try:
            return Scope(kind, str(value))
        except GovernanceError as e:
            raise Problem(
                422,
                "validation",
                "Invalid request",
                e.message,
                errors=[{"field": f"path.{param}", "message": e.message, "code": e.code}],
            ) from None

    of.__qualname__ = f"path_scope({kind.value}, {param})"
    of.__doc__ = f"`{kind.value}:{{{param}}}`"
    return of


def query_scope(kind: ScopeKind, param: str) -> ScopeOf:
    """The scope named by a query parameter when given (``?team=payments``), else the organisation."""

    def of(request: Request) -> Scope:
        value = request.query_params.get(param)
        if value is None:
            return ORG
        try:
            return Scope(kind, value)
        except GovernanceError as e:
            raise Problem(
                422,
                "validation",
                "Invalid request",
                e.message,
                errors=[{"field": f"query.{param}", "message": e.message, "code": e.code}],
            ) from None

    of.__qualname__ = f"query_scope({kind.value}, {param})"
    of.__doc__ = f"`{kind.value}:<{param}>` with `?{param}=`, else the organisation"
    return of


class Requirement:
    """A route's declared access rule; also the FastAPI dependency that enforces it."""

    def __init__(
        self,
        access: Access,
        duty: Duty | None = None,
        scope: ScopeOf = org_scope,
        dynamic: DynamicOf | None = None,
        could: CouldOf | None = None,
        any_scope: bool = False,
        enrollment_ok: bool = False,
        note: str = "",
    ) -> None:
        if access is Access.DUTY and duty is None:
            raise ConfigError("a duty requirement needs a duty")
        if access is Access.DYNAMIC and dynamic is None:
            raise ConfigError("a dynamic requirement needs a resolver")
        self.access = access
        self.duty = duty
        self.scope = scope
        self.dynamic = dynamic
        self.could = could
        self.any_scope = any_scope
        self.enrollment_ok = enrollment_ok
        self.note = note

    def __repr__(self) -> str:
        if self.access is Access.DUTY:
            where = "any scope" if self.any_scope else self.scope.__qualname__
            return f"requires({self.duty}, {where})"
        return f"{self.access.value}()"

    def describe(self) -> str:
        """One line for the docs' route table (tests keep the table in step with the code)."""
        if self.access is Access.PUBLIC:
            return "none (public)"
        if self.access is Access.AUTHENTICATED:
            text = "any identity" + (" (enrollment tokens too)" if self.enrollment_ok else "")
            return f"{text}; {self.note}" if self.note else text
        if self.access is Access.DYNAMIC:
            assert self.dynamic is not None
            return (self.dynamic.__doc__ or "from the stored object").strip().splitlines()[0]
        if self.any_scope:
            return f"`{self.duty}` on {self.note or 'some scope'} (checked once the body is validated)"
        where = (self.scope.__doc__ or self.scope.__qualname__).strip().splitlines()[0]
        return f"`{self.duty}` on {where}"

    def __call__(self, request: Request) -> Caller:
        rt = runtime_of(request)
        if self.access is Access.PUBLIC:
            raise ConfigError("public routes must not ask for a caller")
        caller = authenticate(rt, request)
        if caller.token.purpose != "api" and not self.enrollment_ok:
            record_refusal(
                rt,
                actor=caller.id,
                principal=caller.principal,
                action="request.denied",
                obj=route_name(request),
                details={"reason": "enrollment token used for an API call", "token_id": caller.token.id},
            )
            raise forbidden(
                "this is an enrollment token: exchange it for your own token first (dutyguard login)",
                code="enrollment_token",
            )
        if self.access is Access.AUTHENTICATED:
            return caller
        if self.access is Access.DYNAMIC:
            self._enforce_dynamic(rt, request, caller)
            return caller
        assert self.duty is not None
        if self.any_scope:
            enforce_somewhere(rt, request, caller, self.duty)
        else:
            enforce(rt, request, caller, self.duty, self.scope(request))
        return caller

    def could_need(self, rt: Runtime) -> frozenset[Duty] | None:
        """The duties of ``could`` (``None``: not declared)."""
        return None if self.could is None else frozenset(self.could(rt))

    def _enforce_dynamic(self, rt: Runtime, request: Request, caller: Caller) -> None:
        assert self.dynamic is not None
        could = self.could_need(rt)
        if could is not None:
            # Before the object is read: the same answer for every id, existing or not.
            enforce_somewhere(rt, request, caller, could)
        with rt.db.read() as conn:
            needed = self.dynamic(rt, conn, request, caller)
        if isinstance(needed, Missing):
            if needed.unowned is not None:
                enforce(rt, request, caller, *needed.unowned)
            elif could is None:
                raise ConfigError(f"{route_name(request)}: a missing object needs `could` or `unowned`")
            raise not_found(needed.what)
        if needed is not None:
            enforce(rt, request, caller, *needed)


class PublicRequirement(Requirement):
    """No credentials: the dependency does nothing (kept so the route is still declared)."""

    def __init__(self) -> None:
        super().__init__(Access.PUBLIC)

    def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


def requires(
    duty: Duty, scope: ScopeOf = org_scope, *, any_scope: bool = False, note: str = ""
) -> Requirement:
    """``any_scope``: the target depends on the body; ``note`` says which (for the docs)."""
    return Requirement(Access.DUTY, duty, scope, any_scope=any_scope, note=note)


def requires_dynamic(
    resolver: DynamicOf, *, could: Duty | Iterable[Duty] | CouldOf | None = None
) -> Requirement:
    """``could``: every duty the route can ever need (or how to list them from the runtime); a
    caller holding none of them anywhere is refused before the object is read. Needed when the
    resolver can answer :class:`Missing` without ``unowned``."""
    if could is None or callable(could):
        return Requirement(Access.DYNAMIC, dynamic=resolver, could=could)
    fixed = frozenset({could} if isinstance(could, Duty) else could)
    if not fixed:
        raise ConfigError("`could` lists no duty: nobody could ever call the route")
    return Requirement(Access.DYNAMIC, dynamic=resolver, could=lambda _rt: fixed)


def authenticated(*, enrollment_ok: bool = False, note: str = "") -> Requirement:
    """Any valid identity; ``enrollment_ok`` also admits enrollment tokens (whoami, own token)."""
    return Requirement(Access.AUTHENTICATED, enrollment_ok=enrollment_ok, note=note)


def public() -> PublicRequirement:
    return PublicRequirement()


def decide(rt: Runtime, principal: Principal, duty: Duty, target: Scope) -> Decision:
    """``governance.authz.authorize`` with the ownership and break-glass state it needs.

    Only an app/namespace/cluster target (its owner) or an emergency duty (open grants) needs
    the database; organisation and team targets are decided from the principal alone.
    """
    now = rt.now()
    emergency = duty in rt.roles.breakglass.duties
    if target.kind in ASSET_KINDS or emergency:
        with rt.db.read() as conn:
            ownership = store.ownership_for(conn, [principal], [target])
            grants = store.grants_of(conn, principal.id, now) if emergency else []
    else:
        ownership, grants = store.ownership_for(None, [principal], [target]), []
    return authorize(principal, duty, target, ownership, grants, now=now, roles=rt.roles, raci=rt.raci)


def enforce(rt: Runtime, request: Request, caller: Caller, duty: Duty, target: Scope) -> Decision:
    """Allow, or audit the refusal and raise 403."""
    decision = decide(rt, caller.principal, duty, target)
    if not decision.allowed:
        deny(rt, request, caller, duty, target, decision.reason)
    return decision


def enforce_somewhere(rt: Runtime, request: Request, caller: Caller, duty: Duty | frozenset[Duty]) -> None:
    """The caller holds ``duty`` (given several: one of them) over at least one scope (the handler
    or the stored object narrows it). The refusal names the caller's own bindings, nothing else."""
    duties = sorted({duty} if isinstance(duty, Duty) else duty)
    scopes = sorted({b.scope for b in caller.principal.bindings}) or [ORG]
    reasons = []
    for d in duties:
        for scope in scopes:
            decision = decide(rt, caller.principal, d, scope)
            if decision.allowed:
                return
            reasons.append(decision.reason)
    if len(duties) == 1:
        deny(rt, request, caller, duties[0], ORG, reasons[0] if reasons else f"{caller.id} lacks {duties[0]}")
    listed = ", ".join(duties) or "(none)"
    deny(rt, request, caller, duties, ORG, f"{caller.id} holds none of {listed} on any scope")


def deny(
    rt: Runtime, request: Request, caller: Caller, duty: Duty | list[Duty], target: Scope, reason: str
) -> NoReturn:
    """Audit the refusal and raise 403; several duties (any one would do) are listed as ``duties``."""
    named: dict[str, str | list[str]] = (
        {"duty": duty.value} if isinstance(duty, Duty) else {"duties": [d.value for d in duty]}
    )
    record_refusal(
        rt,
        actor=caller.id,
        principal=caller.principal,
        action="request.denied",
        obj=route_name(request),
        details={**named, "target": str(target), "reason": reason},
    )
    raise forbidden(reason, **named, target=str(target))


# -- declarations --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Declared:
    method: str
    path: str
    requirement: Requirement


def _requirements(dependant: object) -> Iterator[Requirement]:
    call = getattr(dependant, "call", None)
    if isinstance(call, Requirement):
        yield call
    for sub in getattr(dependant, "dependencies", ()):
        yield from _requirements(sub)


def declared_routes(app: FastAPI) -> list[Declared]:
    """Every API route with its one declaration; :class:`ConfigError` for none or several."""
    out: list[Declared] = []
    # Included routers are resolved lazily by FastAPI; iter_route_contexts yields each route
    # with its effective (prefixed) path, the same walk the OpenAPI generator does.
    for ctx in iter_route_contexts(app.routes):
        route = ctx.original_route
        if not isinstance(route, APIRoute):
            continue
        path = str(ctx.path_format or route.path_format)
        found = list({id(r): r for r in _requirements(route.dependant)}.values())
        if len(found) != 1:
            what = "no access declaration" if not found else f"{len(found)} access declarations"
            raise ConfigError(f"route {sorted(route.methods or ())} {path} has {what}: default deny")
        for method in sorted(ctx.methods or route.methods or ()):
            out.append(Declared(method, path, found[0]))
    return out


def check_declarations(app: FastAPI) -> None:
    declared_routes(app)
