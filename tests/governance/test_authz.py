"""Authorization: scope coverage through ownership, default deny, RACI enforcement, the role × duty grid."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from types import MappingProxyType

import pytest

from dutyguard.errors import AuthorizationError, GovernanceError
from dutyguard.governance import (
    ORG,
    Binding,
    Duty,
    Ownership,
    Principal,
    PrincipalKind,
    Role,
    Scope,
    ScopeKind,
    authorize,
    effective_duties,
    require,
    shipped_raci,
    shipped_roles,
)
from dutyguard.governance.breakglass import Grant
from tests.governance.conftest import NOW, person, service

SHOP = Scope.parse("app:shop")
SHOP_NS = Scope.parse("namespace:shop-prod")
EU = Scope.parse("cluster:prod-eu")
STOREFRONT = Scope.parse("app:storefront")
US = Scope.parse("cluster:prod-us")
PAYMENTS = Scope.team("payments")
WEB = Scope.team("web")
UNKNOWN_APP = Scope.parse("app:nobody-owns-this")


# -- scopes --------------------------------------------------------------------------------------


def test_scope_parse_and_render() -> None:
    assert Scope.parse("org") == ORG == Scope.parse("org:*")
    assert str(Scope.parse("namespace:shop-prod")) == "namespace:shop-prod"
    assert Scope.parse("cluster:prod-eu").kind is ScopeKind.CLUSTER


@pytest.mark.parametrize(
    "text",
    [
        "org:acme",
        "team",
        "tenant:x",
        "team:",
        "app:Shop",
        "namespace:-bad",
        "team:pay ments",
        "app:" + "a" * 254,
    ],
)
def test_bad_scopes_refused(text: str) -> None:
    with pytest.raises(GovernanceError) as e:
        Scope.parse(text)
    assert e.value.code in {"invalid_scope", "invalid_id", "invalid_name"}


@pytest.mark.parametrize(
    ("binding", "target", "covered"),
    [
        (ORG, SHOP, True),
        (ORG, ORG, True),
        (ORG, UNKNOWN_APP, True),
        (PAYMENTS, PAYMENTS, True),
        (PAYMENTS, SHOP, True),
        (PAYMENTS, SHOP_NS, True),
        (PAYMENTS, EU, True),
        (PAYMENTS, STOREFRONT, False),
        (PAYMENTS, US, False),
        (PAYMENTS, WEB, False),
        (PAYMENTS, ORG, False),
        (PAYMENTS, UNKNOWN_APP, False),
        (SHOP, SHOP, True),
        (SHOP, SHOP_NS, False),
        (SHOP, PAYMENTS, False),
        (SHOP, ORG, False),
        (EU, EU, True),
        (EU, SHOP, False),
        (EU, US, False),
        (Scope.team("ghost"), Scope.team("ghost"), False),
    ],
)
def test_scope_coverage_via_ownership(
    ownership: Ownership, binding: Scope, target: Scope, covered: bool
) -> None:
    assert ownership.covers(binding, target) is covered


def test_ownership_refuses_assets_of_unknown_teams() -> None:
    with pytest.raises(GovernanceError) as e:
        Ownership.build(["payments"], {SHOP: "ghost"})
    assert e.value.code == "unknown_team"
    with pytest.raises(GovernanceError):
        Ownership.build(["payments"], {PAYMENTS: "payments"})


def test_assets_of_team(ownership: Ownership) -> None:
    assert ownership.assets_of("payments") == (SHOP, EU, SHOP_NS)
    assert ownership.owner_of(STOREFRONT) == "web"
    assert ownership.owner_of(UNKNOWN_APP) is None


# -- decisions ------------------------------------------------------------------------------------


def test_team_scoped_devops_reaches_own_apps_namespaces_and_clusters_only(ownership: Ownership) -> None:
    dev = person("dana", (Role.DEVOPS, PAYMENTS), teams=("payments",))
    for target in (SHOP, SHOP_NS, EU, PAYMENTS):
        d = authorize(dev, Duty.EXCEPTION_REQUEST, target, ownership)
        assert d.allowed, d.reason
        assert d.via == Binding("dana", Role.DEVOPS, PAYMENTS)
    for target in (STOREFRONT, US, WEB, ORG, UNKNOWN_APP):
        d = authorize(dev, Duty.EXCEPTION_REQUEST, target, ownership)
        assert not d.allowed
        assert "does not cover" in d.reason


def test_app_scoped_binding_reaches_that_app_only(ownership: Ownership) -> None:
    dev = person("dana", (Role.DEVOPS, SHOP))
    assert authorize(dev, Duty.FINDING_READ, SHOP, ownership).allowed
    assert not authorize(dev, Duty.FINDING_READ, SHOP_NS, ownership).allowed
    assert not authorize(dev, Duty.FINDING_READ, PAYMENTS, ownership).allowed


def test_cluster_scoped_service_reaches_its_cluster_only(ownership: Ownership) -> None:
    sensor = service("sensor-eu", (Role.CLUSTER, EU))
    assert authorize(sensor, Duty.EVENT_SUBMIT, EU, ownership).allowed
    assert not authorize(sensor, Duty.EVENT_SUBMIT, US, ownership).allowed
    assert not authorize(sensor, Duty.EVENT_SUBMIT, SHOP, ownership).allowed


def test_org_scope_reaches_unregistered_assets_team_scope_does_not(ownership: Ownership) -> None:
    assert authorize(person("sam", Role.SECURITY), Duty.INCIDENT_CONTAIN, UNKNOWN_APP, ownership).allowed
    team_sec = person("sam", (Role.SECURITY, PAYMENTS))
    assert not authorize(team_sec, Duty.INCIDENT_CONTAIN, UNKNOWN_APP, ownership).allowed


def test_unknown_duty_is_denied(ownership: Ownership) -> None:
    root = person("sam", Role.SECURITY)
    for duty in ("audit.write", "policy.*", "*", "", "POLICY.APPROVE", "policy.approve "):
        d = authorize(root, duty, ORG, ownership)
        assert not d.allowed
        assert d.duty is None
        assert "unknown duty" in d.reason


def test_duty_given_as_text_is_parsed(ownership: Ownership) -> None:
    assert authorize(person("sam", Role.SECURITY), "policy.approve", ORG, ownership).allowed


def test_principal_without_bindings_is_denied_everything(ownership: Ownership) -> None:
    nobody = Principal("nobody", PrincipalKind.PERSON, frozenset({"payments"}))
    for duty in Duty:
        d = authorize(nobody, duty, PAYMENTS, ownership)
        assert not d.allowed, duty
    assert "no role bindings" in authorize(nobody, Duty.POLICY_READ, ORG, ownership).reason


def test_decision_cannot_be_used_as_a_boolean(ownership: Ownership) -> None:
    denied = authorize(person("nobody"), Duty.POLICY_APPROVE, ORG, ownership)
    with pytest.raises(TypeError):
        bool(denied)
    with pytest.raises(TypeError):
        _ = "allowed" if denied else "denied"  # the bug this guards against: a dataclass is always truthy


def test_require_raises_forbidden(ownership: Ownership) -> None:
    with pytest.raises(AuthorizationError) as e:
        require(person("dana", Role.DEVOPS), Duty.POLICY_APPROVE, ORG, ownership)
    assert e.value.code == "forbidden"
    assert "dana lacks policy.approve" in e.value.message


def test_role_duty_grid_generated_from_the_table(ownership: Ownership) -> None:
    """Every role × every duty at org scope: allowed exactly when the table grants it."""
    table = shipped_roles()
    for role in Role:
        p = (service if role in (Role.CI, Role.CLUSTER) else person)("someone", role)
        for duty in Duty:
            expected = duty in table.duties_of(role)
            assert authorize(p, duty, ORG, ownership).allowed is expected, (role, duty)


def test_machine_role_on_a_person_is_refused() -> None:
    with pytest.raises(GovernanceError) as e:
        person("mallory", Role.CI)
    assert e.value.code == "role_kind"
    with pytest.raises(GovernanceError) as e:
        service("ci-shop", Role.SECURITY)
    assert e.value.code == "role_kind"


def test_binding_of_another_principal_refused() -> None:
    with pytest.raises(GovernanceError) as e:
        Principal("alice", PrincipalKind.PERSON, bindings=(Binding("bob", Role.SECURITY, ORG),))
    assert e.value.code == "invalid_binding"


@pytest.mark.parametrize("pid", ["Alice", "аlice", "alice ", "", "a" * 65, "../alice", "al\nice"])
def test_homoglyph_and_case_variant_ids_refused(pid: str) -> None:
    """`Alice` or a Cyrillic `а` must not pass as a second person next to `alice`."""
    with pytest.raises(GovernanceError) as e:
        Principal(pid, PrincipalKind.PERSON)
    assert e.value.code == "invalid_id"


def test_raci_enforced_even_when_a_role_table_grants_more(ownership: Ownership) -> None:
    """A role table edited to give devops policy.approve (bypassing load checks) still cannot sign off."""
    table = shipped_roles()
    dev = table.specs[Role.DEVOPS]
    widened = replace(
        table,
        specs=MappingProxyType(
            {**table.specs, Role.DEVOPS: replace(dev, duties=dev.duties | {Duty.POLICY_APPROVE})}
        ),
    )
    d = authorize(person("dana", Role.DEVOPS), Duty.POLICY_APPROVE, ORG, ownership, roles=widened)
    assert not d.allowed
    assert "RACI" in d.reason
    assert "policy-authoring" in d.reason
    # the accountable role still may
    assert authorize(person("sam", Role.SECURITY), Duty.POLICY_APPROVE, ORG, ownership, roles=widened).allowed
    assert shipped_raci().permits(Role.SECURITY, Duty.POLICY_APPROVE)


def test_effective_duties_follow_scope(ownership: Ownership) -> None:
    p = person("dana", (Role.DEVOPS, PAYMENTS), (Role.COMPLIANCE, SHOP))
    assert effective_duties(p, STOREFRONT, ownership) == frozenset()
    on_shop = effective_duties(p, SHOP, ownership)
    assert Duty.AUDIT_EXPORT in on_shop
    assert Duty.EXCEPTION_REQUEST in on_shop
    on_eu = effective_duties(p, EU, ownership)
    assert Duty.AUDIT_EXPORT not in on_eu
    assert Duty.EXCEPTION_REQUEST in on_eu


# -- emergency duties -------------------------------------------------------------------------------


def _grant(opener: str, scope: Scope, minutes: int = 60, **kw: object) -> Grant:
    return Grant(
        "bg-1", opener, "prod down, hotfix blocked", scope, NOW, NOW + timedelta(minutes=minutes), **kw
    )  # type: ignore[arg-type]


def test_enforcement_override_needs_an_open_grant(ownership: Ownership) -> None:
    dev = person("dana", (Role.DEVOPS, PAYMENTS))
    assert not authorize(dev, Duty.ENFORCEMENT_OVERRIDE, SHOP, ownership).allowed
    grant = _grant("dana", PAYMENTS)
    d = authorize(dev, Duty.ENFORCEMENT_OVERRIDE, SHOP, ownership, [grant], now=NOW + timedelta(minutes=5))
    assert d.allowed
    assert d.grant_id == "bg-1"
    assert d.via is None


def test_grant_ignored_without_a_clock(ownership: Ownership) -> None:
    dev = person("dana", (Role.DEVOPS, PAYMENTS))
    assert not authorize(dev, Duty.ENFORCEMENT_OVERRIDE, SHOP, ownership, [_grant("dana", PAYMENTS)]).allowed


def test_grant_does_not_reach_outside_its_scope_or_time(ownership: Ownership) -> None:
    dev = person("dana", (Role.DEVOPS, ORG))
    grant = _grant("dana", SHOP, minutes=30)
    assert not authorize(dev, Duty.ENFORCEMENT_OVERRIDE, STOREFRONT, ownership, [grant], now=NOW).allowed
    assert not authorize(
        dev, Duty.ENFORCEMENT_OVERRIDE, SHOP, ownership, [grant], now=NOW + timedelta(minutes=30)
    ).allowed
    closed = _grant("dana", SHOP, closed_at=NOW + timedelta(minutes=1), closed_by="dana")
    assert not authorize(
        dev, Duty.ENFORCEMENT_OVERRIDE, SHOP, ownership, [closed], now=NOW + timedelta(minutes=2)
    ).allowed


def test_someone_elses_grant_confers_nothing(ownership: Ownership) -> None:
    eve = person("eve", (Role.DEVOPS, PAYMENTS))
    d = authorize(eve, Duty.ENFORCEMENT_OVERRIDE, SHOP, ownership, [_grant("dana", PAYMENTS)], now=NOW)
    assert not d.allowed


def test_grant_dies_with_the_openers_break_glass_duty(ownership: Ownership) -> None:
    """Unbinding devops from the opener ends the emergency at once, whatever the grant's expiry."""
    demoted = person("dana", (Role.COMPLIANCE, ORG))
    d = authorize(demoted, Duty.ENFORCEMENT_OVERRIDE, SHOP, ownership, [_grant("dana", PAYMENTS)], now=NOW)
    assert not d.allowed
