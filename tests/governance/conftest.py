"""A small organisation for governance tests: three teams, their assets, people in every role."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from dutyguard.governance import ORG, Binding, Ownership, Principal, PrincipalKind, Role, Scope

DATA = Path(__file__).resolve().parents[2] / "src" / "dutyguard" / "data"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def person(pid: str, *roles: Role | tuple[Role, Scope], teams: tuple[str, ...] = ()) -> Principal:
    """A person with ``roles`` (org-scoped unless given as ``(role, scope)``)."""
    bindings = []
    for r in roles:
        role, scope = r if isinstance(r, tuple) else (r, ORG)
        bindings.append(Binding(pid, role, scope))
    return Principal(pid, PrincipalKind.PERSON, frozenset(teams), tuple(bindings))


def service(pid: str, *roles: Role | tuple[Role, Scope]) -> Principal:
    bindings = []
    for r in roles:
        role, scope = r if isinstance(r, tuple) else (r, ORG)
        bindings.append(Binding(pid, role, scope))
    return Principal(pid, PrincipalKind.SERVICE, frozenset(), tuple(bindings))


@pytest.fixture
def ownership() -> Ownership:
    return Ownership.build(
        ["payments", "web", "secops"],
        {
            Scope.parse("app:shop"): "payments",
            Scope.parse("namespace:shop-prod"): "payments",
            Scope.parse("cluster:prod-eu"): "payments",
            Scope.parse("app:storefront"): "web",
            Scope.parse("namespace:web-prod"): "web",
            Scope.parse("cluster:prod-us"): "web",
        },
    )


@pytest.fixture
def shipped_text() -> dict[str, str]:
    """The shipped data files' text, for tests that break one thing in a copy."""
    return {name: (DATA / name).read_text() for name in ("roles.yaml", "sod-rules.yaml", "raci.yaml")}
