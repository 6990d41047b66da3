"""Scopes of role bindings, and the ownership registry that relates them.

A binding applies to the whole organisation, to a team, or to one app, namespace or cluster.
Teams own apps, namespaces and clusters; a team-scoped binding reaches exactly what the team
owns. Anything the registry does not know is reachable only from organisation scope (an
unregistered namespace is nobody's, so no team role covers it: default deny).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from dutyguard.errors import GovernanceError
from dutyguard.governance._values import check_id, check_name


class ScopeKind(StrEnum):
    ORG = "org"
    TEAM = "team"
    APP = "app"
    NAMESPACE = "namespace"
    CLUSTER = "cluster"


ORG_ID = "*"
ASSET_KINDS: frozenset[ScopeKind] = frozenset({ScopeKind.APP, ScopeKind.NAMESPACE, ScopeKind.CLUSTER})


@dataclass(frozen=True, slots=True, order=True)
class Scope:
    """``org:*``, ``team:payments``, ``app:shop``, ``namespace:shop-prod``, ``cluster:prod-eu``."""

    kind: ScopeKind
    id: str

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ScopeKind):
            raise GovernanceError("invalid_scope", f"unknown scope kind {self.kind!r}")
        if self.kind is ScopeKind.ORG:
            if self.id != ORG_ID:
                raise GovernanceError(
                    "invalid_scope", f"the organisation scope id is {ORG_ID!r}, not {self.id!r}"
                )
        elif self.kind is ScopeKind.TEAM:
            check_id(self.id, "team")
        else:
            check_name(self.id, str(self.kind))

    def __str__(self) -> str:
        return f"{self.kind}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> Scope:
        """``org`` or ``org:*``, or ``<kind>:<id>``; :class:`GovernanceError` otherwise."""
        if text in ("org", f"org:{ORG_ID}"):
            return ORG
        kind, sep, ident = text.partition(":")
        if not sep:
            raise GovernanceError("invalid_scope", f"scope {text!r} is not of the form kind:id")
        try:
            parsed_kind = ScopeKind(kind)
        except ValueError:
            allowed = ", ".join(k.value for k in ScopeKind)
            raise GovernanceError(
                "invalid_scope", f"unknown scope kind {kind!r} (one of {allowed})"
            ) from None
        return cls(parsed_kind, ident)

    @classmethod
    def team(cls, team_id: str) -> Scope:
        return cls(ScopeKind.TEAM, team_id)


ORG = Scope(ScopeKind.ORG, ORG_ID)


@dataclass(frozen=True, slots=True)
class Ownership:
    """Which team owns which app, namespace and cluster. Build with :meth:`build`."""

    teams: frozenset[str]
    owners: Mapping[Scope, str]
    """Asset scope → owning team."""

    @classmethod
    def build(cls, teams: Iterable[str], assets: Mapping[Scope, str] | None = None) -> Ownership:
        team_set = frozenset(check_id(t, "team") for t in teams)
        owners: dict[Scope, str] = {}
        for scope, team in (assets or {}).items():
            if scope.kind not in ASSET_KINDS:
                raise GovernanceError(
                    "invalid_scope", f"only apps, namespaces and clusters are owned, not {scope}"
                )
            if team not in team_set:
                raise GovernanceError("unknown_team", f"{scope} is owned by unknown team {team!r}")
            owners[scope] = team
        return cls(team_set, MappingProxyType(owners))

    def owner_of(self, scope: Scope) -> str | None:
        return self.owners.get(scope)

    def assets_of(self, team: str) -> tuple[Scope, ...]:
        return tuple(sorted(s for s, t in self.owners.items() if t == team))

    def covers(self, binding_scope: Scope, target: Scope) -> bool:
        """Does a binding at ``binding_scope`` apply to an action on ``target``?"""
        if binding_scope.kind is ScopeKind.ORG:
            return True
        if target.kind is ScopeKind.ORG:
            return False
        if binding_scope.kind is ScopeKind.TEAM:
            if binding_scope.id not in self.teams:
                return False
            if target.kind is ScopeKind.TEAM:
                return target.id == binding_scope.id
            return self.owners.get(target) == binding_scope.id
        # an app, namespace or cluster binding reaches that asset only
        return binding_scope == target


EMPTY_OWNERSHIP = Ownership(frozenset(), MappingProxyType({}))
