"""The one authorization decision: may this principal exercise this duty on this target?

Default deny. A request is allowed only when one of the principal's bindings

1. is of a role whose duties (``roles.yaml``) include the duty,
2. is of a role the RACI matrix lets exercise it (sign-offs: the Accountable role only), and
3. has a scope that covers the target through the ownership registry;

or, for an emergency duty, when the principal's own break-glass grant is open at ``now``, covers
the target, and the principal still holds ``breakglass.open`` there. An unknown duty, a
principal without bindings, a grant without a clock: all deny.

:class:`Decision` cannot be used as a boolean (``if authorize(...)`` would always be true for a
dataclass): read ``.allowed``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, NoReturn

from dutyguard.errors import AuthorizationError, GovernanceError
from dutyguard.governance._values import check_id
from dutyguard.governance.duties import MACHINE_ROLES, Duty, PrincipalKind, Role, RoleTable, shipped_roles
from dutyguard.governance.raci import Raci, shipped_raci
from dutyguard.governance.scope import Ownership, Scope

if TYPE_CHECKING:
    from dutyguard.governance.breakglass import Grant


@dataclass(frozen=True, slots=True, order=True)
class Binding:
    principal_id: str
    role: Role
    scope: Scope

    def __post_init__(self) -> None:
        check_id(self.principal_id, "principal")
        if not isinstance(self.role, Role):
            raise GovernanceError("unknown_role", f"unknown role {self.role!r}")
        if not isinstance(self.scope, Scope):
            raise GovernanceError("invalid_scope", f"binding scope must be a Scope, got {self.scope!r}")

    def __str__(self) -> str:
        return f"{self.role}@{self.scope}"


def required_kind(role: Role) -> PrincipalKind:
    return PrincipalKind.SERVICE if role in MACHINE_ROLES else PrincipalKind.PERSON


@dataclass(frozen=True, slots=True)
class Principal:
    """A person or service identity with its teams and role bindings (as stored, after any change)."""

    id: str
    kind: PrincipalKind
    teams: frozenset[str] = frozenset()
    bindings: tuple[Binding, ...] = ()

    def __post_init__(self) -> None:
        check_id(self.id, "principal")
        if not isinstance(self.kind, PrincipalKind):
            raise GovernanceError("invalid_principal", f"unknown principal kind {self.kind!r}")
        for team in self.teams:
            check_id(team, "team")
        seen: set[Binding] = set()
        for b in self.bindings:
            if b.principal_id != self.id:
                raise GovernanceError(
                    "invalid_binding", f"binding {b} belongs to {b.principal_id}, not {self.id}"
                )
            if required_kind(b.role) is not self.kind:
                raise GovernanceError(
                    "role_kind",
                    f"role {b.role} is for {required_kind(b.role)} identities; {self.id} is a {self.kind}",
                )
            if b in seen:
                raise GovernanceError("duplicate_binding", f"{self.id} has {b} twice")
            seen.add(b)

    def with_binding(self, binding: Binding) -> Principal:
        return Principal(self.id, self.kind, self.teams, (*self.bindings, binding))


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: str
    duty: Duty | None
    target: Scope
    via: Binding | None = None
    """The binding that allowed the request (None when denied or allowed by break-glass)."""
    grant_id: str | None = None
    """The break-glass grant that allowed an emergency duty."""

    def __bool__(self) -> NoReturn:
        raise TypeError("use Decision.allowed: a decision is not a boolean")


def _parse_duty(duty: Duty | str) -> Duty | None:
    if isinstance(duty, Duty):
        return duty
    try:
        return Duty(duty)
    except ValueError:
        return None


def authorize(
    principal: Principal,
    duty: Duty | str,
    target: Scope,
    ownership: Ownership,
    active_breakglass: Iterable[Grant] | None = None,
    *,
    now: datetime | None = None,
    roles: RoleTable | None = None,
    raci: Raci | None = None,
) -> Decision:
    """Decide one request. ``now`` is needed only for break-glass grants (without it they are ignored)."""
    table = roles if roles is not None else shipped_roles()
    matrix = raci if raci is not None else shipped_raci()
    parsed = _parse_duty(duty)
    if parsed is None:
        return Decision(False, f"unknown duty {duty!r}", None, target)
    if parsed in table.breakglass.duties:
        return _emergency(principal, parsed, target, ownership, active_breakglass, now, table, matrix)
    if not principal.bindings:
        return Decision(False, f"{principal.id} has no role bindings", parsed, target)
    reasons: list[str] = []
    for b in sorted(principal.bindings):
        if parsed not in table.duties_of(b.role):
            continue
        if not matrix.permits(b.role, parsed):
            process = matrix.governing(parsed)
            reasons.append(f"{b.role} may not exercise {parsed} for {process.id if process else '?'} (RACI)")
            continue
        if not ownership.covers(b.scope, target):
            reasons.append(f"binding {b} does not cover {target}")
            continue
        return Decision(True, f"{parsed} via {b}", parsed, target, via=b)
    holders = ", ".join(sorted(table.roles_with(parsed))) or "no role"
    detail = "; ".join(reasons) if reasons else f"no binding of a role holding it ({holders})"
    return Decision(False, f"{principal.id} lacks {parsed} on {target}: {detail}", parsed, target)


def _emergency(
    principal: Principal,
    duty: Duty,
    target: Scope,
    ownership: Ownership,
    grants: Iterable[Grant] | None,
    now: datetime | None,
    table: RoleTable,
    matrix: Raci,
) -> Decision:
    if now is None or grants is None:
        return Decision(False, f"{duty} needs an open break-glass grant", duty, target)
    for grant in grants:
        if (
            grant.opener != principal.id
            or not grant.is_active(now)
            or not ownership.covers(grant.scope, target)
        ):
            continue
        # A grant outlives nothing: if the opener lost breakglass.open, the grant is dead too.
        still = authorize(principal, Duty.BREAKGLASS_OPEN, grant.scope, ownership, roles=table, raci=matrix)
        if not still.allowed:
            continue
        return Decision(True, f"{duty} via break-glass grant {grant.id}", duty, target, grant_id=grant.id)
    return Decision(False, f"{principal.id} has no open break-glass grant covering {target}", duty, target)


def require(
    principal: Principal,
    duty: Duty | str,
    target: Scope,
    ownership: Ownership,
    active_breakglass: Iterable[Grant] | None = None,
    *,
    now: datetime | None = None,
    roles: RoleTable | None = None,
    raci: Raci | None = None,
) -> Decision:
    """:func:`authorize`, raising :class:`AuthorizationError` (code ``forbidden``) on deny."""
    d = authorize(principal, duty, target, ownership, active_breakglass, now=now, roles=roles, raci=raci)
    if not d.allowed:
        raise AuthorizationError("forbidden", d.reason)
    return d


def effective_duties(
    principal: Principal,
    target: Scope,
    ownership: Ownership,
    *,
    roles: RoleTable | None = None,
    raci: Raci | None = None,
) -> frozenset[Duty]:
    """Every non-emergency duty ``principal`` may exercise on ``target`` (for approvals and ``whoami``)."""
    table = roles if roles is not None else shipped_roles()
    matrix = raci if raci is not None else shipped_raci()
    out: set[Duty] = set()
    for b in principal.bindings:
        if ownership.covers(b.scope, target):
            out.update(d for d in table.duties_of(b.role) if matrix.permits(b.role, d))
    return frozenset(out)


def held_duties(bindings: Iterable[Binding], roles: RoleTable | None = None) -> frozenset[Duty]:
    """Duties held through ``bindings`` in any scope (what the conflict rules look at)."""
    table = roles if roles is not None else shipped_roles()
    out: set[Duty] = set()
    for b in bindings:
        out.update(table.duties_of(b.role))
    return frozenset(out)
