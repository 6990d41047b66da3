"""The control plane signs a gate attestation only for a target the bundle in force governs.

On SQLite and PostgreSQL, with the demo organisation: ``shop-api`` is owned by team ``payments``
(``seed_demo``). Each refusal is a 409 ``out_of_scope``, audited as a refused ``gate.attest``,
and no attestation is stored.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from dutyguard.governance.authz import Binding
from dutyguard.governance.duties import PrincipalKind, Role
from dutyguard.governance.scope import ORG
from dutyguard.server import store
from dutyguard.server.routes.tokens import issue
from tests.server.conftest import Org
from tests.server.signed_helpers import BUNDLE, ok, publish
from tests.server.test_attestations import IMAGE, _finding, _submit


def scoped(scope: str) -> str:
    return BUNDLE + f"  scope: {scope}\n"


def ci_everywhere(org: Org, ident: str = "ci-all") -> str:
    """A CI service identity bound at organisation scope (test set-up, not a flow)."""
    rt = org.rt
    now = rt.now()
    with rt.db.write() as conn:
        store.create_identity(conn, ident, PrincipalKind.SERVICE, ident, None, "test", now)
        store.insert_binding(conn, Binding(ident, Role.CI, ORG), "test", now)
        _rec, text = issue(rt, conn, ident, "test", "test", now + timedelta(days=1))
    org.tokens[ident] = text
    return ident


def refused(org: Org, r: Any, stored: int = 0) -> str:
    """The 409 ``out_of_scope`` detail; no attestation beyond the ``stored`` ones was signed."""
    assert r.status_code == 409, r.json()
    problem = r.json()
    assert problem["code"] == "out_of_scope", problem
    assert len(ok(org.get("carol", "/attestations"))["items"]) == stored
    detail = problem["detail"]
    assert isinstance(detail, str)
    return detail


def test_attestation_refused_for_app_owned_by_team_outside_scope(org: Org) -> None:
    publish(org, scoped("{teams: [platform]}"))
    detail = refused(org, _submit(org, []))
    assert "team 'payments' is not among platform" in detail
    (entry,) = org.audit(actor="ci-shop", action="gate.attest")
    assert (entry["outcome"], entry["details"]["code"]) == ("refused", "out_of_scope")


def test_attestation_signed_for_app_owned_by_a_team_in_scope(org: Org) -> None:
    publish(org, scoped("{teams: [payments, platform]}"))
    assert ok(_submit(org, []), 201)["decision"] == "pass"


def test_attestation_refused_for_an_unowned_app_when_scope_names_teams(org: Org) -> None:
    # A CI identity allowed to submit for any app: ownership, not the token, decides the team.
    ci = ci_everywhere(org)
    publish(org, scoped("{teams: [payments]}"))
    detail = refused(org, _submit(org, [], who=ci, app="side-project"))
    assert "app 'side-project' has no owning team" in detail
    # without any app, no team can be known either
    detail = refused(org, _submit(org, [], who=ci, app=None))
    assert "no team is known, and the bundle governs only teams payments" in detail


def test_attestation_refused_for_subject_from_registry_outside_scope(org: Org) -> None:
    publish(org, scoped("{registries: [ghcr.io/acme]}"))
    detail = refused(org, _submit(org, []))
    assert "registry registry.example.com" in detail and "is not from ghcr.io/acme" in detail


def test_registry_scope_matches_path_prefixes_like_allowed_registries(org: Org) -> None:
    # IMAGE is registry.example.com/shop/api: the prefix shop matches whole components only
    publish(org, scoped("{registries: [registry.example.com/shop]}"))
    assert ok(_submit(org, []), 201)["decision"] == "pass"
    publish(org, scoped("{registries: [registry.example.com/sh]}"))
    assert "is not from registry.example.com/sh" in refused(org, _submit(org, []), stored=1)


def test_git_subject_is_not_compared_with_registries(org: Org) -> None:
    # A commit names no image: only --subject oci://… has a registry to compare.
    publish(org, scoped("{registries: [ghcr.io/acme]}"))
    assert ok(_submit(org, [], subject="git:" + "c0ffee" * 6 + "c0ff"), 201)["decision"] == "pass"


def test_attestation_refused_for_findings_in_namespace_outside_scope(org: Org) -> None:
    publish(org, scoped("{namespaces: [shop-prod]}"))
    body = [_finding(blocking=True, namespace="shop-prod"), _finding(fp="cd" * 16, namespace="shop-dev")]
    detail = refused(org, _submit(org, body))
    assert "a finding's namespace 'shop-dev' is not among shop-prod" in detail
    assert "'shop-prod' is not" not in detail


def test_subject_image_is_the_one_attested(org: Org) -> None:
    # the scope check reads the subject the attestation will name, nothing the runner says besides
    publish(org, scoped("{registries: [registry.example.com]}"))
    out = ok(_submit(org, []), 201)
    assert out["subject"] == IMAGE
