"""The API's resources and their everyday flows, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from dutyguard.governance.duties import Role
from tests.server.conftest import Org


def collect(org: Org, who: str, path: str, limit: int, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        q = {"limit": limit, **params}
        if cursor:
            q["cursor"] = cursor
        page = org.get(who, path, **q).json()
        assert len(page["items"]) <= limit
        items += page["items"]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            return items


def test_openapi_is_published_without_credentials(org: Org) -> None:
    doc = org.client.get("/api/v1/openapi.json").json()
    assert doc["info"]["title"] == "dutyguard control plane"
    assert "/api/v1/role-bindings" in doc["paths"]
    assert org.get(None, "/health").json()["status"] == "ok"


def test_whoami_lists_duties_from_the_role_table(org: Org) -> None:
    me = org.get("carol", "/whoami").json()
    assert me["bindings"] == ["compliance@org:*"]
    compliance = Role.COMPLIANCE
    expected = {d.value for d in org.rt.roles.duties_of(compliance) if org.rt.raci.permits(compliance, d)}
    assert set(me["duties"]) == expected
    assert "audit.verify" in me["duties"]
    assert "role.assign" not in me["duties"]


def test_users_pages_are_complete_and_disjoint(org: Org) -> None:
    for i in range(7):
        assert (
            org.post("adam", "/users", {"id": f"u{i:02d}", "email": f"u{i}@example.org"}).status_code == 201
        )
    everyone = collect(org, "adam", "/users", 3)
    ids = [u["id"] for u in everyone]
    assert ids == sorted(set(ids))
    assert {f"u{i:02d}" for i in range(7)} <= set(ids)
    services = collect(org, "adam", "/users", 2, kind="service")
    assert {u["id"] for u in services} == {"ci-shop", "cluster-prod-eu"}


def test_duplicate_user_and_team_are_conflicts(org: Org) -> None:
    assert org.post("adam", "/users", {"id": "dave"}).status_code == 409
    assert org.post("adam", "/teams", {"id": "payments"}).status_code == 409
    assert org.get("adam", "/users/nobody").status_code == 404


def test_disabling_a_user_revokes_their_tokens(org: Org) -> None:
    assert org.get("dave", "/whoami").status_code == 200
    r = org.post("adam", "/users/dave/disable")
    assert r.status_code == 200
    assert r.json()["disabled"] is True
    assert org.get("dave", "/whoami").status_code == 401
    (entry,) = org.audit(action="user.disable")
    assert entry["details"]["tokens_revoked"] >= 1
    assert org.post("adam", "/users/adam/disable").status_code == 409  # no self-lockout


def test_team_membership_and_ownership_registry(org: Org) -> None:
    assert org.post("adam", "/teams", {"id": "search", "display_name": "Search"}).status_code == 201
    assert org.post("adam", "/teams/search/members", {"identity": "erin"}).json()["members"] == ["erin"]
    assert (
        org.post(
            "adam", "/assets", {"kind": "namespace", "name": "search-prod", "team": "search"}
        ).status_code
        == 201
    )
    moved = org.put("adam", "/assets/namespace/search-prod/owner", {"team": "platform"}).json()
    assert moved["team"] == "platform"
    assert "namespace:search-prod" in org.get("erin", "/teams/platform").json()["assets"]
    # erin (devops, platform) now reaches it through her team binding
    ok = org.post(
        "erin", "/breakglass", {"reason": "search-prod crash-looping", "scope": "namespace:search-prod"}
    )
    assert ok.status_code == 201
    assert org.delete("adam", "/teams/search/members/erin").json()["members"] == []
    assert org.delete("adam", "/assets/namespace/search-prod").status_code == 204
    assert org.delete("adam", "/assets/namespace/search-prod").status_code == 404
    assert org.post("adam", "/assets", {"kind": "secret", "name": "x", "team": "search"}).status_code == 422
    assert [e["object"] for e in org.audit(action="asset.move")] == ["namespace:search-prod"]


def test_team_scoped_reads(org: Org) -> None:
    assert org.get("dave", "/teams/payments").status_code == 200
    assert org.get("dave", "/teams/platform").status_code == 403
    assert org.get("dave", "/assets", team="payments").status_code == 200
    assert org.get("dave", "/assets").status_code == 403  # the whole registry is org scope


def test_bind_and_unbind(org: Org) -> None:
    org.post("adam", "/users", {"id": "gina"})
    b = org.post("adam", "/role-bindings", {"identity": "gina", "role": "compliance"}).json()
    assert b["scope"] == "org:*"
    assert org.get("adam", "/users/gina").json()["bindings"] == ["compliance@org:*"]
    assert org.post("adam", "/role-bindings", {"identity": "gina", "role": "compliance"}).status_code == 409
    assert org.delete("adam", f"/role-bindings/{b['id']}").status_code == 204
    assert org.get("adam", "/role-bindings", identity="gina").json()["items"] == []
    (entry,) = org.audit(action="role.unbind")
    assert entry["object"] == "binding:gina/compliance@org:*"


def test_roles_table_is_served(org: Org) -> None:
    roles = {r["role"]: r for r in org.get("adam", "/roles").json()}
    assert set(roles) == {"security", "devops", "compliance", "admin", "ci", "cluster"}
    assert roles["ci"]["kind"] == "service"
    assert all("audit.write" not in r["duties"] for r in roles.values())
    # Sensitive roles (binding needs a security approver) are named, from the same data the bind route uses.
    assert roles["security"]["needs_approval"] is True
    assert roles["devops"]["needs_approval"] is False
    assert roles["compliance"]["needs_approval"] is False


def test_token_listing_is_own_or_token_manage(org: Org) -> None:
    mine = org.get("dave", "/tokens").json()["items"]
    assert {t["identity"] for t in mine} == {"dave"}
    assert "secret_hash" not in mine[0]
    assert org.get("dave", "/tokens", identity="alice").status_code == 403
    assert {t["identity"] for t in collect(org, "adam", "/tokens", 4, identity="*")} >= {
        "alice",
        "dave",
        "ci-shop",
    }


def test_rules_proposal_reject_and_withdraw(org: Org) -> None:
    rules = org.get("alice", "/sod/rules").json()
    doc = {"version": 1, "rules": rules["rules"][:-1]}  # dropping a rule: critical severity
    p = org.post("alice", "/sod/rules/proposals", {"document": json.dumps(doc)})
    assert p.status_code == 201, p.json()
    assert p.json()["severity"] == "critical"
    no_reason = org.post("sam", f"/approvals/{p.json()['id']}/reject", {"reason": ""})
    assert no_reason.status_code == 422
    rejected = org.post("sam", f"/approvals/{p.json()['id']}/reject", {"reason": "admin x devops must stay"})
    assert rejected.json()["state"] == "rejected"
    assert rejected.json()["rejected_by"] == "sam"
    assert org.get("carol", "/sod/rules").json()["version"] == 0
    again = org.post("alice", "/sod/rules/proposals", {"document": json.dumps(doc)}).json()
    assert org.post("sam", f"/approvals/{again['id']}/withdraw", {"reason": "not mine"}).status_code == 403
    withdrawn = org.post("alice", f"/approvals/{again['id']}/withdraw", {"reason": "wrong file"})
    assert withdrawn.json()["state"] == "withdrawn"


def test_invalid_rules_proposal_names_the_field(org: Org) -> None:
    r = org.post("alice", "/sod/rules/proposals", {"document": "version: 1\nrules: []\n"})
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.document"
    r = org.post("alice", "/sod/rules/proposals", {"document": "a: &a [*a, *a]\n" * 3})
    assert r.status_code == 422


def test_pending_request_expires(org: Org) -> None:
    items = org.get("sam", "/approvals", state="pending").json()["items"]
    org.clock.advance(timedelta(days=8))
    assert org.get("sam", "/approvals", state="pending").json()["items"] == []
    shown = org.get("sam", f"/approvals/{items[0]['id']}").json()
    assert shown["state"] == "expired"
    late = org.post("sam", f"/approvals/{items[0]['id']}/approve")
    assert late.status_code == 409
    assert late.json()["code"] in ("expired", "closed")


def test_stale_digest_refused(org: Org) -> None:
    (req,) = org.get("sam", "/approvals", state="pending").json()["items"]
    r = org.post("sam", f"/approvals/{req['id']}/approve", {"seen_digest": "0" * 64})
    assert r.status_code == 409
    assert r.json()["code"] == "stale_subject"


def test_approvals_list_only_kinds_the_caller_may_read(org: Org) -> None:
    assert org.get("sam", "/approvals").json()["items"]
    assert org.get("dave", "/approvals").json()["items"] == []  # devops holds no sod.read
