"""Named attacks on segregation of duties and on the API: each is refused and audited.

Runs on SQLite and on PostgreSQL. The demo organisation: alice and sam (security), dave (devops,
payments), erin (devops, platform), carol (compliance), adam and admin (admin), ci-shop (ci),
cluster-prod-eu (cluster); alice has a pending conflict-rule change (quorum 1).
"""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from dutyguard.core.model import Severity
from dutyguard.governance.approvals import ApprovalPolicy, open_request
from dutyguard.governance.duties import Duty
from dutyguard.governance.scope import ORG
from dutyguard.server import store
from dutyguard.server.approval_kinds import KindHandler
from dutyguard.server.tables import approval_requests
from tests.server.conftest import Org


def pending_rules_change(org: Org) -> str:
    items = org.get("sam", "/approvals", state="pending").json()["items"]
    (req,) = [i for i in items if i["kind"] == "sod.rules.change"]
    return str(req["id"])


# -- maker-checker -----------------------------------------------------------------------------------


def test_self_approval_refused(org: Org) -> None:
    rid = pending_rules_change(org)
    r = org.post("alice", f"/approvals/{rid}/approve", {"reason": "looks good to me"})
    assert r.status_code == 403
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "self_approval"
    assert org.get("sam", f"/approvals/{rid}").json()["state"] == "pending"
    (entry,) = org.audit(actor="alice", action="approval.approve", outcome="refused")
    assert entry["details"]["code"] == "self_approval"
    assert entry["object"] == f"approval:{rid}"


def test_approving_twice_refused(org: Org) -> None:
    """A checker counts once: with a quorum of two, the same approver's second vote is refused."""
    rt = org.rt
    applied: list[str] = []
    policy = ApprovalPolicy.uniform(
        "test.change", Duty.POLICY_PROPOSE, Duty.POLICY_APPROVE, 2, timedelta(days=1), False
    )
    rt.approval_kinds.register(
        KindHandler(
            "test.change", policy, Duty.POLICY_READ, lambda _rt, _c, s, _n: applied.append(s.request.id) or {}
        )
    )
    with rt.db.write() as conn:
        maker = store.load_principal(conn, store.get_identity(conn, "alice"))  # type: ignore[arg-type]
        req = open_request(
            policy,
            request_id="apr-twice",
            maker=maker,
            subject="test change",
            subject_digest="a" * 64,
            severity=Severity.HIGH,
            scope=ORG,
            now=rt.now(),
            ownership=store.ownership_for(conn, [maker], [ORG]),
        )
        store.insert_request(conn, req, "{}")
    first = org.post("sam", "/approvals/apr-twice/approve", {"reason": "fine"})
    assert first.status_code == 200
    assert first.json()["state"] == "pending"
    second = org.post("sam", "/approvals/apr-twice/approve", {"reason": "fine, again"})
    assert second.status_code == 409
    assert second.json()["code"] == "duplicate_approval"
    shown = org.get("sam", "/approvals/apr-twice").json()
    assert shown["approvals"] == ["sam"]
    assert shown["state"] == "pending"
    assert applied == []
    assert [
        e["details"]["code"] for e in org.audit(actor="sam", action="approval.approve", outcome="refused")
    ] == ["duplicate_approval"]


def test_approving_a_decided_request_again_refused(org: Org) -> None:
    rid = pending_rules_change(org)
    assert org.post("sam", f"/approvals/{rid}/approve").json()["state"] == "approved"
    again = org.post("sam", f"/approvals/{rid}/approve")
    assert again.status_code == 409
    assert again.json()["code"] == "closed"
    # Applied exactly once: one new rule-set version.
    assert org.get("carol", "/sod/rules").json()["version"] == 1
    assert len(org.audit(action="sod.rules.change.apply")) == 1


def test_approval_by_wrong_role_refused(org: Org) -> None:
    """devops, compliance, admin and machine tokens cannot approve a conflict-rule change."""
    rid = pending_rules_change(org)
    for who in ("dave", "carol", "adam", "ci-shop"):
        r = org.post(who, f"/approvals/{rid}/approve")
        assert r.status_code == 403, who
        # every approver duty of any kind: which one this request needs would tell a caller who
        # holds none of them that the id exists (see tests/server/test_existence_probing.py)
        assert "sod.rules.approve" in r.json()["duties"]
        assert org.audit(actor=who, action="request.denied", outcome="refused"), who
    assert org.get("sam", f"/approvals/{rid}").json()["approvals"] == []


def test_maker_vote_written_into_the_row_is_refused(org: Org) -> None:
    """Editing the stored request to add alice's own approval is caught when it is read back."""
    rid = pending_rules_change(org)
    with org.rt.db.write() as conn:
        doc = json.loads(
            conn.execute(
                sa.select(approval_requests.c.document).where(approval_requests.c.id == rid)
            ).scalar_one()
        )
        doc["approvals"] = [{"actor": "alice", "approve": True, "at": doc["created_at"], "reason": ""}]
        doc["state"], doc["closed_at"] = "approved", doc["created_at"]
        conn.execute(
            approval_requests.update()
            .where(approval_requests.c.id == rid)
            .values(document=json.dumps(doc), state="approved")
        )
    r = org.get("sam", f"/approvals/{rid}")
    assert r.status_code == 409
    assert r.json()["type"] == "urn:dutyguard:problem:tampered"
    assert org.audit(action="approval.load", outcome="refused")
    assert org.get("carol", "/sod/rules").json()["version"] == 0


def test_payload_swapped_after_proposal_is_not_applied(org: Org) -> None:
    """The approval binds to the digest of the proposed rules: a payload edited later is refused."""
    rid = pending_rules_change(org)
    with org.rt.db.write() as conn:
        payload = json.loads(
            conn.execute(
                sa.select(approval_requests.c.payload).where(approval_requests.c.id == rid)
            ).scalar_one()
        )
        doc = json.loads(payload["document"])
        doc["rules"] = doc["rules"][:1]  # drop every rule but one: weakens SoD
        payload["document"] = json.dumps(doc)
        conn.execute(
            approval_requests.update()
            .where(approval_requests.c.id == rid)
            .values(payload=json.dumps(payload))
        )
    r = org.post("sam", f"/approvals/{rid}/approve")
    assert r.status_code == 409
    assert r.json()["code"] == "stale_subject"
    assert org.get("carol", "/sod/rules").json()["version"] == 0
    assert org.audit(actor="sam", action="approval.approve", outcome="refused")


# -- static SoD ---------------------------------------------------------------------------------------


def test_toxic_role_binding_refused(org: Org) -> None:
    """dave (devops) cannot also become security: operate × author policy, and more."""
    r = org.post("adam", "/role-bindings", {"identity": "dave", "role": "security"})
    assert r.status_code == 409
    body = r.json()
    assert body["type"] == "urn:dutyguard:problem:sod-conflict"
    assert body["code"] == "conflict"
    assert "sod.operate-author-policy" in body["rules"]
    assert "sod.exception-request-approve" in body["rules"]
    bindings = org.get("carol", "/role-bindings", identity="dave").json()["items"]
    assert [b["role"] for b in bindings] == ["devops"]
    (entry,) = org.audit(actor="adam", action="role.bind", outcome="refused")
    assert "sod.operate-author-policy" in entry["details"]["rules"]


def test_admin_cannot_grant_self_security(org: Org) -> None:
    r = org.post("admin", "/role-bindings", {"identity": "admin", "role": "security"})
    assert r.status_code == 409
    assert "sod.admin-security-devops" in r.json()["rules"]
    assert [b["role"] for b in org.get("adam", "/role-bindings", identity="admin").json()["items"]] == [
        "admin"
    ]
    assert org.audit(actor="admin", action="role.bind", outcome="refused")
    # Not even a mitigating control makes it possible: the rule is not mitigable.
    m = org.post(
        "alice",
        "/sod/mitigations",
        {
            "rule_id": "sod.admin-security-devops",
            "principal": "admin",
            "owner": "sam",
            "reason": "we really need it for a week",
            "expires_at": (org.rt.now() + timedelta(days=7)).isoformat(),
        },
    )
    assert m.status_code == 409
    assert m.json()["code"] == "not_mitigable"


def test_admin_cannot_grant_self_a_harmless_role_either(org: Org) -> None:
    """Request, approve and grant access are separate: nobody binds a role to themselves."""
    r = org.post("adam", "/role-bindings", {"identity": "adam", "role": "compliance"})
    assert r.status_code in (403, 409)
    assert r.json()["code"] in ("self_grant", "conflict")
    assert org.audit(actor="adam", action="role.bind", outcome="refused")


def test_machine_role_on_a_person_refused(org: Org) -> None:
    r = org.post("adam", "/role-bindings", {"identity": "carol", "role": "ci"})
    assert r.status_code == 409
    assert r.json()["code"] == "role_kind"


def test_mitigated_conflict_is_granted_and_reported(org: Org) -> None:
    """Security records a control for carol; then a conflicting binding is allowed and shows as mitigated."""
    # carol (compliance: audit.export) + admin would break sod.access-admin-audit (mitigable).
    refused = org.post("adam", "/role-bindings", {"identity": "carol", "role": "admin"})
    assert refused.status_code == 409
    assert "sod.access-admin-audit" in refused.json()["rules"]
    assert "sod.admin-security-devops" not in refused.json()["rules"]
    expires = (org.rt.now() + timedelta(days=30)).isoformat()
    m = org.post(
        "alice",
        "/sod/mitigations",
        {
            "rule_id": "sod.access-admin-audit",
            "principal": "carol",
            "owner": "sam",
            "reason": "interim IT cover; sam reviews carol's grants weekly",
            "expires_at": expires,
        },
    )
    assert m.status_code == 201, m.json()
    granted = org.post("adam", "/role-bindings", {"identity": "carol", "role": "admin"})
    assert granted.status_code == 201, granted.json()
    report = org.get("carol", "/sod/report").json()
    (conflict,) = [c for c in report["conflicts"] if c["principal"] == "carol"]
    assert conflict["rule"] == "sod.access-admin-audit"
    assert conflict["mitigated"] is True
    assert conflict["mitigation"] == m.json()["id"]
    assert report["unmitigated"] == 0
    assert org.audit(actor="alice", action="sod.mitigate", outcome="success")
    # Revoked: the conflict is reported unmitigated at once.
    assert org.delete("sam", f"/sod/mitigations/{m.json()['id']}").status_code == 204
    report = org.get("carol", "/sod/report").json()
    assert report["unmitigated"] == 1


def test_self_mitigation_refused(org: Org) -> None:
    r = org.post(
        "alice",
        "/sod/mitigations",
        {
            "rule_id": "sod.exception-request-approve",
            "principal": "alice",
            "owner": "sam",
            "reason": "I promise to be careful with this",
            "expires_at": (org.rt.now() + timedelta(days=7)).isoformat(),
        },
    )
    assert r.status_code == 403
    assert r.json()["code"] == "self_mitigation"
    assert org.audit(actor="alice", action="sod.mitigate", outcome="refused")


# -- tokens -------------------------------------------------------------------------------------------


def test_revoked_token_rejected(org: Org) -> None:
    created = org.post("dave", "/tokens", {"description": "laptop"}).json()
    extra = {"Authorization": f"Bearer {created['token']}"}
    assert org.client.get("/api/v1/whoami", headers=extra).status_code == 200
    assert org.delete("dave", f"/tokens/{created['id']}").status_code == 200
    r = org.client.get("/api/v1/whoami", headers=extra)
    assert r.status_code == 401
    assert r.json()["detail"] == "token was revoked"
    assert r.headers["www-authenticate"] == "Bearer"
    (entry,) = org.audit(action="auth.failed", object=f"token:{created['id']}")
    assert entry["actor"] == "dave"
    assert entry["details"]["reason"] == "revoked token"


def test_expired_token_rejected(org: Org) -> None:
    created = org.post("dave", "/tokens", {"ttl_seconds": 3600}).json()
    extra = {"Authorization": f"Bearer {created['token']}"}
    assert org.client.get("/api/v1/whoami", headers=extra).status_code == 200
    org.clock.advance(timedelta(hours=1, seconds=1))
    r = org.client.get("/api/v1/whoami", headers=extra)
    assert r.status_code == 401
    assert r.json()["detail"] == "token has expired"
    assert (
        org.audit(action="auth.failed", object=f"token:{created['id']}")[0]["details"]["reason"]
        == "expired token"
    )


def test_forged_secret_for_a_real_token_id_rejected(org: Org) -> None:
    real = org.tokens["alice"]
    forged = real[:-4] + ("AAAA" if not real.endswith("AAAA") else "BBBB")
    r = org.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {forged}"})
    assert r.status_code == 401
    assert r.json()["detail"] == "invalid token"
    assert org.audit(action="auth.failed")[-1]["details"]["reason"] == "wrong secret"


def test_token_cannot_extend_its_own_life(org: Org) -> None:
    short = org.post("dave", "/tokens", {"ttl_seconds": 600}).json()
    headers = {"Authorization": f"Bearer {short['token']}"}
    longer = org.client.post("/api/v1/tokens", headers=headers, json={"ttl_seconds": 30 * 86400}).json()
    assert longer["expires_at"] <= short["expires_at"]


def test_admin_gets_only_an_enrollment_token_for_a_person(org: Org) -> None:
    """An admin cannot obtain a usable token of alice (security): only an enrollment token,
    good for nothing but exchanging once; the exchange is audited."""
    enroll = org.post("adam", "/tokens", {"identity": "alice"}).json()
    headers = {"Authorization": f"Bearer {enroll['token']}"}
    refused = org.client.get("/api/v1/sod/rules", headers=headers)
    assert refused.status_code == 403
    assert refused.json()["code"] == "enrollment_token"
    approve = org.client.post(
        f"/api/v1/approvals/{pending_rules_change(org)}/approve", headers=headers, json={}
    )
    assert approve.status_code == 403
    own = org.client.post("/api/v1/tokens", headers=headers, json={}).json()
    assert (
        org.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {own['token']}"}).json()["id"]
        == "alice"
    )
    assert org.client.post("/api/v1/tokens", headers=headers, json={}).status_code == 401  # single use
    (exchange,) = [
        e
        for e in org.audit(actor="alice", action="token.create")
        if "exchanged_enrollment_token" in e["details"]
    ]
    assert exchange["details"]["exchanged_enrollment_token"] == enroll["id"]


def test_service_token_issued_by_admin_is_usable(org: Org) -> None:
    created = org.post("adam", "/tokens", {"identity": "ci-shop", "ttl_seconds": 86400}).json()
    me = org.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {created['token']}"}).json()
    assert me["id"] == "ci-shop"
    assert "scan.submit" in me["duties"]


def test_failed_authentications_are_rate_limited_and_audited(org: Org) -> None:
    limit = org.rt.settings.auth_failures_per_minute
    bad = {"Authorization": "Bearer dgt_0123456789abcdef_" + "x" * 43}
    codes = [org.client.get("/api/v1/whoami", headers=bad).status_code for _ in range(limit + 5)]
    assert codes[:limit] == [401] * limit
    assert set(codes[limit:]) == {429}
    # Even a valid token from that address waits: the address is throttled, not the token.
    assert org.get("alice", "/whoami").status_code == 429
    failures = org.audit(action="auth.failed")
    assert len(failures) == limit  # bounded: throttled attempts add no entries
    assert failures[-1]["details"]["rate_limited"] is True
    org.clock.advance(timedelta(minutes=2))  # the limiter uses its own monotonic clock
    org.rt.limiter._seen.clear()
    assert org.get("alice", "/whoami").status_code == 200


# -- hostile bodies -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"identity": "dave", "role": "security", "sudo": True}, "body.sudo", 422),
        ({"identity": "dave", "role": 7}, "body.role", 422),
        ({"identity": ["dave"], "role": "devops"}, "body.identity", 422),
        ({"identity": "Dave", "role": "devops"}, "body.identity", 422),
        ({"identity": "dave", "role": "devops", "scope": "team:../../etc"}, "body.scope", 422),
        ({"role": "devops"}, "body.identity", 422),
    ],
)
def test_bad_binding_bodies_name_the_field(
    org: Org, body: dict[str, object], field: str, status: int
) -> None:
    r = org.post("adam", "/role-bindings", body)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/problem+json"
    problem = r.json()
    assert {"type", "title", "status", "detail", "instance"} <= set(problem)
    assert field in [e["field"] for e in problem["errors"]]


def test_wrong_types_are_not_coerced(org: Org) -> None:
    r = org.post("dave", "/tokens", {"ttl_seconds": "3600"})
    assert r.status_code == 422
    assert [e["field"] for e in r.json()["errors"]] == ["body.ttl_seconds"]
    r = org.post("alice", "/breakglass", {"reason": "x" * 20, "duration_minutes": 1.5})
    assert r.status_code in (403, 422)


def test_malformed_json_is_a_400_problem(org: Org) -> None:
    for raw in (b"{", b"\xff\xfe", b'{"identity": "dave",}', b"[" * 10000):
        r = org.client.post(
            "/api/v1/role-bindings",
            headers={**org.h("adam"), "content-type": "application/json"},
            content=raw,
        )
        assert r.status_code in (400, 422), raw[:10]
        assert r.headers["content-type"] == "application/problem+json"


def test_oversized_body_refused_before_parsing(org: Org) -> None:
    size = org.rt.settings.max_body_bytes + 1
    r = org.client.post(
        "/api/v1/sod/rules/proposals",
        headers={**org.h("alice"), "content-type": "application/json"},
        content=b'{"document": "' + b"a" * size + b'"}',
    )
    assert r.status_code == 413
    assert r.json()["type"] == "urn:dutyguard:problem:body-too-large"


def test_forged_cursor_is_a_400_naming_the_parameter(org: Org) -> None:
    for cursor in ("!!!", "eyJhIjoxfQ", "WyJhIiwgMV0", "W3RydWVd"):
        r = org.get("adam", "/users", cursor=cursor)
        assert r.status_code == 400, cursor
        assert r.json()["errors"][0]["field"] == "query.cursor"


def test_unknown_route_and_method_are_problems(org: Org) -> None:
    r = org.get("adam", "/nope")
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    r = org.client.patch("/api/v1/users", headers=org.h("adam"), json={})
    assert r.status_code == 405
    assert r.json()["type"] == "urn:dutyguard:problem:method-not-allowed"


def test_conflict_rules_edited_in_the_database_stop_writes(org: Org) -> None:
    """The rules in force are checked against their recorded digest: a rule quietly deleted in the
    table makes changes fail closed instead of being decided under weaker rules."""
    from dutyguard.server.tables import sod_rule_sets

    rid = pending_rules_change(org)
    assert org.post("sam", f"/approvals/{rid}/approve").json()["state"] == "approved"
    with org.rt.db.write() as conn:
        doc = json.loads(conn.execute(sa.select(sod_rule_sets.c.document)).scalar_one())
        doc["rules"] = [r for r in doc["rules"] if r["id"] != "sod.operate-author-policy"]
        conn.execute(
            sod_rule_sets.update().values(document=json.dumps(doc, sort_keys=True, separators=(",", ":")))
        )
    store._PARSED_RULES.clear()  # as after a restart
    r = org.post("adam", "/role-bindings", {"identity": "dave", "role": "security"})
    assert r.status_code in (409, 422)
    assert r.json()["code"] == "invalid_rules"
    assert [b["role"] for b in org.get("carol", "/role-bindings", identity="dave").json()["items"]] == [
        "devops"
    ]
