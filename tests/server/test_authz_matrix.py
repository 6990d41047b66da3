"""Every route × every role × no credentials, with the expected answer derived from the role table.

Nothing here is a hand-written allow list: for a route declaring ``requires(duty)`` a role is
allowed exactly when ``roles.yaml`` gives it the duty and the RACI matrix lets it exercise it;
dynamic routes take the duty from the stored object's approval policy. An identity holding only
that role (bound at organisation scope) calls the route; allowed means "not 401/403", denied
means 403 (and an audit entry), no credentials means 401 (and an audit entry). The table is run
again with ids that name nothing: existence is disclosed only to a role that could act on such an
object (``server.authz``: a route's ``could`` duties).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from dutyguard.errors import ConfigError
from dutyguard.governance.approvals import ApprovalKind, default_policy
from dutyguard.governance.authz import Binding
from dutyguard.governance.breakglass import Grant
from dutyguard.governance.duties import Duty, PrincipalKind, Role
from dutyguard.governance.scope import ORG, Scope, ScopeKind
from dutyguard.governance.sod import Mitigation
from dutyguard.server import store
from dutyguard.server.authz import Access, Requirement, check_declarations, declared_routes
from dutyguard.server.routes.tokens import issue
from dutyguard.server.settings import Settings
from tests.server.conftest import Org
from tests.server.signed_helpers import empty_submission

pytestmark = pytest.mark.usefixtures("org")


@pytest.fixture
def runtime(tmp_path, database_url, clock):  # type: ignore[no-untyped-def]
    # Hundreds of unauthenticated calls from one address: lift the throttle for this test only.
    from dutyguard.server.runtime import open_runtime

    rt = open_runtime(
        Settings(data_dir=tmp_path / "data", database_url=database_url, auth_failures_per_minute=100_000),
        clock=clock,
    )
    yield rt
    rt.close()


def _role_identities(org: Org) -> dict[Role, str]:
    """One identity per role holding only that role at organisation scope, with a token."""
    rt = org.rt
    now = rt.now()
    out: dict[Role, str] = {}
    with rt.db.write() as conn:
        for role in Role:
            ident = f"only-{role.value}"
            kind = rt.roles.kind_of(role)
            store.create_identity(conn, ident, PrincipalKind(kind.value), ident, None, "test", now)
            store.insert_binding(conn, Binding(ident, role, ORG), "test", now)
            _rec, text = issue(rt, conn, ident, "matrix", "test", now + timedelta(days=1))
            out[role] = text
    return out


def _fixtures(org: Org) -> dict[str, str]:
    """Path parameter values naming real objects (none of them the role identities' own)."""
    rt = org.rt
    now = rt.now()
    with rt.db.write() as conn:
        dave_binding = store.bindings_of(conn, "dave")[0].id
        dave_token = store.list_tokens(conn, "dave", None, 1)[0].id
        mitigation = Mitigation(
            id="mit-matrix",
            rule_id="sod.exception-request-approve",
            principal_id="dave",
            owner="alice",
            reason="compensating weekly review of dave's requests",
            expires_at=now + timedelta(days=30),
            created_at=now,
            created_by="alice",
        )
        store.insert_mitigation(conn, mitigation)
        store.insert_grant(
            conn,
            Grant("bg-matrix", "erin", "cluster down, rollback needed", ORG, now, now + timedelta(hours=1)),
        )
        (approval,) = store.list_requests(conn, None, 10, [ApprovalKind.SOD_RULES_CHANGE.value])
    signed = _signed_state_fixtures(org)
    return {
        **signed,
        "user_id": "dave",
        "team_id": "payments",
        "identity_id": "dave",
        "kind": "app",
        "name": "shop-api",
        "token_id": dave_token,
        "binding_id": dave_binding,
        "mitigation_id": mitigation.id,
        "grant_id": "bg-matrix",
        "approval_id": approval.request.id,
    }


_MATRIX_BUNDLE = """\
apiVersion: dutyguard.dev/v1
kind: PolicyBundle
metadata: {name: matrix}
spec:
  rules:
    include: [{pack: pss-baseline}]
"""


def _signed_state_fixtures(org: Org) -> dict[str, str]:
    """A published bundle (v1), a pending proposal, a pending exception and an attestation, made
    through the API by the demo personas (so the matrix identities own none of them)."""

    def ok(r: Any) -> Any:
        assert r.status_code in (200, 201), r.json()
        return r.json()

    first = ok(org.post("alice", "/policies/proposals", {"document": _MATRIX_BUNDLE, "message": "v1"}))
    ok(org.post("sam", f"/policies/proposals/{first['id']}/approve"))
    pending = ok(
        org.post(
            "alice",
            "/policies/proposals",
            {
                "document": _MATRIX_BUNDLE.replace("pss-baseline}", "pss-baseline}, {pack: k8s}"),
                "message": "v2",
            },
        )
    )
    exception = ok(
        org.post(
            "dave",
            "/exceptions",
            {
                "rule_id": "pss.host-ports",
                "app": "shop-api",
                "fingerprint": "ab" * 16,
                "justification": "node exporter needs its port",
                "compensating_control": "network policy",
                "days": 5,
            },
        )
    )
    bundle = ok(org.get("alice", "/policies/current"))
    attestation = ok(org.post("ci-shop", "/attestations", empty_submission(org, bundle)))
    return {
        "proposal_id": pending["id"],
        "version": "1",
        "exception_id": exception["id"],
        "attestation_id": attestation["id"],
    }


def _dynamic_duty(path: str) -> Duty:
    """What the stored objects of ``_fixtures`` require, from their governance policies."""
    if path.startswith("/api/v1/exceptions/"):
        if path.endswith(("/approve", "/reject")):
            return Duty.EXCEPTION_APPROVE
        if path.endswith("/revoke"):
            return Duty.EXCEPTION_REVOKE
        return Duty.EXCEPTION_REQUEST  # withdraw, scope: the requester's duty
    policy = default_policy(ApprovalKind.SOD_RULES_CHANGE)
    if path.endswith(("/approve", "/reject")):
        return policy.approver_duty
    if path.endswith("/withdraw"):
        return policy.maker_duty
    if path.startswith("/api/v1/approvals/"):
        return Duty.SOD_READ  # the read duty of sod.rules.change requests
    if path.endswith("/close"):
        return Duty.BREAKGLASS_REVIEW  # the caller is not the grant's opener
    if path.startswith("/api/v1/tokens"):
        return Duty.TOKEN_MANAGE  # the fixture token is dave's, not the caller's
    raise AssertionError(f"no expectation for dynamic route {path}")


def _expected_allowed(org: Org, req: Requirement, path: str, role: Role) -> bool:
    if req.access in (Access.PUBLIC, Access.AUTHENTICATED):
        return True
    if req.access is Access.DYNAMIC and path == "/api/v1/tokens":
        return True  # listing one's own tokens (no ?identity=)
    duty = req.duty if req.access is Access.DUTY else _dynamic_duty(path)
    assert duty is not None
    return duty in org.rt.roles.duties_of(role) and org.rt.raci.permits(role, duty)


def _call(org: Org, method: str, path: str, token: str | None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = {} if method in ("POST", "PUT") else None
    return org.client.request(method, path, headers=headers, json=body)


def test_every_route_against_every_role_and_no_credentials(org: Org) -> None:
    tokens = _role_identities(org)
    values = _fixtures(org)
    routes = declared_routes(org.client.app)  # type: ignore[arg-type]
    assert len(routes) >= 40
    mismatches: list[str] = []
    for d in routes:
        path = re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], d.path)
        before = len(org.audit())
        r = _call(org, d.method, path, None)
        if d.requirement.access is Access.PUBLIC:
            if r.status_code in (401, 403):
                mismatches.append(
                    f"{d.method} {d.path} without credentials: {r.status_code}, expected public"
                )
        else:
            if r.status_code != 401:
                mismatches.append(f"{d.method} {d.path} without credentials: {r.status_code}, expected 401")
            elif not org.audit(action="auth.failed")[-1:] or len(org.audit()) != before + 1:
                mismatches.append(f"{d.method} {d.path}: 401 without an audit entry")
        for role in Role:
            expected = _expected_allowed(org, d.requirement, d.path, role)
            before = len(org.audit(outcome="refused"))
            r = _call(org, d.method, path, tokens[role])
            if expected and r.status_code in (401, 403):
                mismatches.append(
                    f"{d.method} {d.path} as {role}: {r.status_code} {r.json()}, expected allowed"
                )
            if not expected:
                if r.status_code != 403:
                    mismatches.append(f"{d.method} {d.path} as {role}: {r.status_code}, expected 403")
                elif len(org.audit(outcome="refused")) != before + 1:
                    mismatches.append(f"{d.method} {d.path} as {role}: 403 without an audit entry")
                elif r.headers["content-type"] != "application/problem+json":
                    mismatches.append(f"{d.method} {d.path} as {role}: 403 not problem+json")
    assert not mismatches, "\n".join(mismatches)


# Well-formed ids (the formats the server issues) that name nothing.
_MISSING = {
    "user_id": "nobody",
    "team_id": "ghost-team",
    "identity_id": "nobody",
    "kind": "app",
    "name": "ghost-app",
    "token_id": "0123456789abcdef",
    "binding_id": "rb-0123456789abcdef",
    "mitigation_id": "mit-0123456789abcdef",
    "grant_id": "bg-0123456789abcdef",
    "approval_id": "apr-0123456789abcdef",
    "proposal_id": "pol-0123456789abcdef",
    "version": "999",
    "exception_id": "exc-0123456789abcdef",
    "attestation_id": "att-0123456789abcdef",
}


def _could(org: Org, req: Requirement, path: str, role: Role) -> bool:
    """Whether ``role`` could act on *some* object of this route (the rule for a missing id).

    A dynamic route declares every duty it can need (``could``); one on the caller's own objects
    (tokens, grants) treats a missing id as someone else's, so the fixture's duty applies.
    """
    if req.access is not Access.DYNAMIC:
        return _expected_allowed(org, req, path, role)
    duties = req.could_need(org.rt) or {_dynamic_duty(path)}
    return any(d in org.rt.roles.duties_of(role) and org.rt.raci.permits(role, d) for d in duties)


def _without_instance(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "instance"}


def test_every_route_with_a_missing_id_against_every_role(org: Org) -> None:
    """The same table with ids that name nothing: a role that could never act on such an object
    gets 403 (audited) as for an existing one, and for a dynamic route the very same problem; a
    role that could gets 404 (422 where a static check passes and the empty body is refused)."""
    tokens = _role_identities(org)
    existing = _fixtures(org)
    mismatches: list[str] = []
    routes = [d for d in declared_routes(org.client.app) if "{" in d.path]  # type: ignore[arg-type]
    assert len(routes) >= 20
    for d in routes:
        missing = re.sub(r"\{(\w+)\}", lambda m: _MISSING[m.group(1)], d.path)
        present = re.sub(r"\{(\w+)\}", lambda m: existing[m.group(1)], d.path)
        if _call(org, d.method, missing, None).status_code != 401:
            mismatches.append(f"{d.method} {d.path} missing id without credentials: expected 401")
        dynamic = d.requirement.access is Access.DYNAMIC
        for role in Role:
            before = len(org.audit(outcome="refused"))
            r = _call(org, d.method, missing, tokens[role])
            where = f"{d.method} {d.path} as {role} (missing id): {r.status_code}"
            if _could(org, d.requirement, d.path, role):
                if r.status_code not in ((404,) if dynamic else (404, 422)):
                    mismatches.append(f"{where}, expected 404")
                continue
            if r.status_code != 403:
                mismatches.append(f"{where}, expected 403")
                continue
            if len(org.audit(outcome="refused")) != before + 1:
                mismatches.append(f"{where} without exactly one audit entry")
            if dynamic:
                seen = _call(org, d.method, present, tokens[role])
                if seen.status_code != 403 or _without_instance(seen.json()) != _without_instance(r.json()):
                    mismatches.append(f"{where} {r.json()} differs from the existing object's {seen.json()}")
    assert not mismatches, "\n".join(mismatches)


def test_every_published_operation_is_declared(org: Org) -> None:
    """The OpenAPI document and the declarations name the same operations: nothing slips past."""
    app = org.client.app
    declared = {(d.method, d.path) for d in declared_routes(app)}  # type: ignore[arg-type]
    published = {
        (method.upper(), path)
        for path, ops in app.openapi()["paths"].items()  # type: ignore[attr-defined]
        for method in ops
    }
    assert published == declared


def test_route_without_declaration_refuses_to_build(org: Org) -> None:
    app = org.client.app

    @app.get("/api/v1/forgotten")  # type: ignore[attr-defined]
    def forgotten() -> dict[str, str]:
        return {"secret": "everyone can read this"}

    with pytest.raises(ConfigError, match="forgotten has no access declaration"):
        check_declarations(app)  # type: ignore[arg-type]


def test_team_scoped_binding_reaches_only_its_team(org: Org) -> None:
    """dave is devops for team payments: he may open break-glass on its app, not on platform's cluster."""
    ok = org.post("dave", "/breakglass", {"reason": "payments outage, rollback", "scope": "app:shop-api"})
    assert ok.status_code == 201, ok.json()
    org.post("dave", f"/breakglass/{ok.json()['id']}/close")
    refused = org.post(
        "dave", "/breakglass", {"reason": "cluster outage somewhere", "scope": "cluster:prod-eu"}
    )
    assert refused.status_code == 403
    assert refused.json()["code"] == "missing_duty"
    assert org.audit(actor="dave", action="breakglass.open", outcome="refused")


def test_unregistered_asset_is_nobodys(org: Org) -> None:
    """An app the registry does not know is covered by no team binding (default deny)."""
    r = org.post("dave", "/breakglass", {"reason": "unknown app on fire", "scope": "app:ghost"})
    assert r.status_code == 403
    assert Scope(ScopeKind.APP, "ghost")  # a valid name: refused for ownership, not syntax
