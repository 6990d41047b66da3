"""Binding a sensitive role needs a security approver (maker-checker), on SQLite and PostgreSQL.

The gap this closes: an administrator could create a person, bind them ``security`` and redeem
the person's enrollment token themselves (admin -> security). Now ``POST /role-bindings`` of a
sensitive role opens a ``role.binding`` approval request (202) and the binding exists only once
someone other than the maker and the person bound, holding ``role.approve`` over the binding's
scope, approves. The demo organisation (``org``) has two security people (alice, sam), an admin
(adam), devops (dave, erin) and compliance (carol).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from dutyguard.governance.authz import Binding
from dutyguard.governance.duties import PrincipalKind, Role
from dutyguard.governance.scope import ORG
from dutyguard.server import store
from dutyguard.server import tables as t
from dutyguard.server.app import create_app
from dutyguard.server.bootstrap import FIRST_APPROVER_KEY, bootstrap
from dutyguard.server.routes.tokens import issue
from dutyguard.server.runtime import Runtime
from tests.server.conftest import FakeClock, Org


def _person(org: Org, ident: str, *, token: bool = True) -> None:
    """A new person created by adam; ``token``: with their own token (as after `dutyguard login`)."""
    r = org.post("adam", "/users", {"id": ident, "display_name": ident.title()})
    assert r.status_code == 201, r.json()
    if token:
        _enroll(org, ident)


def _enroll(org: Org, ident: str) -> None:
    """The person's own token, as `dutyguard login` would leave them with (issued here directly)."""
    with org.rt.db.write() as conn:
        _rec, text = issue(org.rt, conn, ident, "test", ident, org.rt.now() + timedelta(days=1))
    org.tokens[ident] = text


def _bindings(org: Org, ident: str) -> list[str]:
    return sorted(
        f"{b['role']}@{b['scope']}"
        for b in org.get("carol", "/role-bindings", identity=ident).json()["items"]
    )


def _request_security(org: Org, ident: str, scope: str = "org:*", maker: str = "adam") -> str:
    r = org.post(maker, "/role-bindings", {"identity": ident, "role": "security", "scope": scope})
    assert r.status_code == 202, r.json()
    body = r.json()
    assert body["state"] == "pending"
    assert (body["identity"], body["role"], body["scope"]) == (ident, "security", scope)
    return str(body["approval_id"])


def _state(org: Org, approval_id: str) -> str:
    return str(org.get("carol", f"/approvals/{approval_id}").json()["state"])


# -- the attack, and each way around the checker ----------------------------------------------------


def test_admin_cannot_make_someone_security_without_security_approval(org: Org) -> None:
    _person(org, "mallory")
    approval = _request_security(org, "mallory")
    # nothing is bound: the role does not exist until approved
    assert _bindings(org, "mallory") == []
    assert org.get("adam", "/users/mallory").json()["bindings"] == []
    assert not [e for e in org.audit(action="role.bind", outcome="success") if "mallory" in e["object"]]
    (opened,) = org.audit(action="approval.open", object=f"approval:{approval}")
    assert opened["actor"] == "adam"
    assert opened["details"]["kind"] == "role.binding"
    assert opened["details"]["binding"] == "security@org:*"
    assert opened["details"]["eligible_approvers"] == 2  # alice and sam

    shown = org.get("adam", f"/approvals/{approval}").json()
    assert (shown["kind"], shown["state"], shown["maker"]) == ("role.binding", "pending", "adam")
    assert (shown["approver_duty"], shown["scope"], shown["severity"]) == (
        "role.approve",
        "org:*",
        "critical",
    )

    done = org.post("alice", f"/approvals/{approval}/approve", {"reason": "new hire, checked with HR"})
    assert done.status_code == 200, done.json()
    assert done.json()["state"] == "approved"
    assert done.json()["applied_at"] is not None
    assert _bindings(org, "mallory") == ["security@org:*"]
    (made,) = org.get("carol", "/role-bindings", identity="mallory").json()["items"]
    assert made["created_by"] == "adam"  # the maker made it; the approval entry names the checker
    (applied,) = org.audit(action="role.binding.apply", object=f"approval:{approval}")
    assert applied["actor"] == "alice"
    assert applied["details"]["maker"] == "adam"
    assert applied["details"]["binding_id"] == made["id"]
    assert org.audit(action="approval.approve", actor="alice", object=f"approval:{approval}")


def test_admin_cannot_approve_own_sensitive_binding_request(org: Org) -> None:
    _person(org, "mallory")
    approval = _request_security(org, "mallory")
    for verb in ("approve", "reject"):
        body = {"reason": "looks fine to me"}
        r = org.post("adam", f"/approvals/{approval}/{verb}", body)
        assert r.status_code == 403, r.json()
        assert "role.approve" in r.json()["duties"]  # any kind's approver duty (existence probing)
    # nor the bootstrap administrator, another admin than the maker
    r = org.post("admin", f"/approvals/{approval}/approve", {"reason": "ok"})
    assert r.status_code == 403
    assert _state(org, approval) == "pending"
    assert _bindings(org, "mallory") == []
    refused = [e for e in org.audit(outcome="refused") if e["actor"] in ("adam", "admin")]
    assert len(refused) >= 3


def test_subject_cannot_approve_own_sensitive_binding(org: Org) -> None:
    """bob already holds security for the whole organisation (so role.approve over any scope):
    he still cannot approve a request that binds him a role, even a narrower one."""
    _person(org, "bob")
    first = _request_security(org, "bob")
    assert org.post("sam", f"/approvals/{first}/approve").status_code == 200
    second = _request_security(org, "bob", scope="team:secops")
    r = org.post("bob", f"/approvals/{second}/approve", {"reason": "it is me"})
    assert r.status_code == 403, r.json()
    assert r.json()["code"] == "self_approval"
    assert "is about bob" in r.json()["detail"]
    assert _state(org, second) == "pending"
    assert _bindings(org, "bob") == ["security@org:*"]
    (refusal,) = org.audit(action="approval.approve", actor="bob", outcome="refused")
    assert refusal["details"]["code"] == "self_approval"
    # and the stored request names him as excluded, so an edited vote would not load either
    with org.rt.db.read() as conn:
        stored = store.get_request(conn, second)
    assert stored is not None and stored.request.excluded == frozenset({"bob"})


def test_subject_with_narrower_security_cannot_approve_their_own_widening(org: Org) -> None:
    _person(org, "bob")
    first = _request_security(org, "bob", scope="team:payments")
    assert org.post("alice", f"/approvals/{first}/approve").status_code == 200
    wider = _request_security(org, "bob")
    r = org.post("bob", f"/approvals/{wider}/approve")
    assert r.status_code == 403
    assert "org:*" in r.json()["detail"]  # team security does not cover the organisation
    assert _bindings(org, "bob") == ["security@team:payments"]


@pytest.mark.parametrize("who", ["dave", "erin", "carol", "ci-shop"])
def test_devops_cannot_approve_sensitive_binding(org: Org, who: str) -> None:
    """Nobody without role.approve decides: devops, compliance, a pipeline."""
    _person(org, "mallory")
    approval = _request_security(org, "mallory")
    for verb in ("approve", "reject"):
        r = org.post(who, f"/approvals/{approval}/{verb}", {"reason": "no thanks"})
        assert r.status_code == 403, r.json()
    assert _state(org, approval) == "pending"
    assert _bindings(org, "mallory") == []
    assert len(org.audit(actor=who, outcome="refused")) == 2


def test_enrollment_token_of_pending_security_member_grants_no_security_duty(org: Org) -> None:
    """The admin requests security for mallory, issues her enrollment token and redeems it
    themselves: the token they now hold has no security duty, and the security approver sees
    that the enrollment token was redeemed, when and from where, before deciding."""
    _person(org, "mallory", token=False)
    approval = _request_security(org, "mallory")
    enroll = org.post("adam", "/tokens", {"identity": "mallory"})
    assert enroll.status_code == 201
    assert enroll.json()["state"] == "active (enrollment)"
    org.tokens["mallory-enroll"] = enroll.json()["token"]
    # the enrollment token itself does nothing but whoami and the exchange
    assert org.get("mallory-enroll", "/audit/entries").status_code == 403
    exchanged = org.post("mallory-enroll", "/tokens", {"description": "redeemed by the admin"})
    assert exchanged.status_code == 201, exchanged.json()
    org.tokens["mallory"] = exchanged.json()["token"]

    me = org.get("mallory", "/whoami").json()
    assert (me["bindings"], me["duties"]) == ([], [])
    security_calls = [
        ("GET", "/audit/entries"),
        ("GET", "/sod/mitigations"),
        ("GET", "/exceptions"),
        ("POST", "/keys/rotate"),
        ("POST", f"/approvals/{approval}/approve"),
    ]
    (demo_rules,) = [
        a["id"] for a in org.get("alice", "/approvals").json()["items"] if a["kind"] == "sod.rules.change"
    ]
    security_calls.append(("POST", f"/approvals/{demo_rules}/approve"))
    for method, path in security_calls:
        r = org.post("mallory", path) if method == "POST" else org.get("mallory", path)
        assert r.status_code == 403, (path, r.status_code, r.json())
    assert _state(org, demo_rules) == "pending"

    details = org.get("alice", f"/approvals/{approval}").json()["details"]
    assert details["binding"] == {"identity": "mallory", "role": "security", "scope": "org:*"}
    assert details["subject"]["created_by"] == "adam"
    assert details["subject"]["bindings"] == []
    (token,) = details["enrollment_tokens"]
    assert token["state"] == "redeemed"
    assert token["issued_by"] == "adam"
    assert token["redeemed_from"] == "testclient"  # the TestClient's address, from the audit trail
    (usable,) = details["active_api_tokens"]
    assert usable["created_by"] == "mallory"
    # the approver acts on it: rejected, nothing bound, the redeemed token still holds nothing
    r = org.post("alice", f"/approvals/{approval}/reject", {"reason": "enrollment redeemed before approval"})
    assert r.json()["state"] == "rejected"
    assert org.get("mallory", "/whoami").json()["duties"] == []


def test_unused_enrollment_token_is_shown_as_unused(org: Org) -> None:
    _person(org, "nina", token=False)
    assert org.post("adam", "/tokens", {"identity": "nina"}).status_code == 201
    approval = _request_security(org, "nina")
    details = org.get("sam", f"/approvals/{approval}").json()["details"]
    (token,) = details["enrollment_tokens"]
    assert token["state"] == "unused"
    assert "redeemed_at" not in token
    assert details["active_api_tokens"] == []


# -- what stays as it was, and how a request ends ------------------------------------------------------


@pytest.mark.parametrize("role", ["devops", "compliance", "admin"])
def test_non_sensitive_roles_still_bind_immediately(org: Org, role: str) -> None:
    assert not org.rt.roles.is_sensitive(Role(role))
    _person(org, "gina")
    scope = "team:payments" if role == "devops" else "org:*"
    r = org.post("adam", "/role-bindings", {"identity": "gina", "role": role, "scope": scope})
    assert r.status_code == 201, r.json()
    assert r.json()["created_by"] == "adam"
    assert _bindings(org, "gina") == [f"{role}@{scope}"]
    assert not org.audit(action="approval.open", actor="adam")


def test_only_roles_the_data_calls_sensitive_wait_for_approval(org: Org) -> None:
    """Which roles wait is derived from roles.yaml (sensitive_bindings), not named in code."""
    sensitive = org.rt.roles.sensitive_roles
    assert sensitive == {r for r in Role if org.rt.roles.duties_of(r) & org.rt.roles.sensitive_duties}
    assert Role.SECURITY in sensitive
    assert not sensitive & {Role.DEVOPS, Role.COMPLIANCE, Role.ADMIN, Role.CI, Role.CLUSTER}


def test_rejection_leaves_no_binding(org: Org) -> None:
    _person(org, "mallory")
    approval = _request_security(org, "mallory")
    assert org.post("sam", f"/approvals/{approval}/reject").status_code == 422  # a reason is required
    r = org.post("sam", f"/approvals/{approval}/reject", {"reason": "not on the security team"})
    assert r.status_code == 200
    assert (r.json()["state"], r.json()["rejected_by"], r.json()["applied_at"]) == ("rejected", "sam", None)
    late = org.post("alice", f"/approvals/{approval}/approve")
    assert late.status_code == 409
    assert late.json()["code"] == "closed"
    assert _bindings(org, "mallory") == []
    (entry,) = org.audit(action="approval.reject", actor="sam", outcome="success")
    assert entry["details"]["state"] == "rejected"
    assert not org.audit(action="role.binding.apply")


def test_expiry_leaves_no_binding(org: Org) -> None:
    _person(org, "mallory")
    approval = _request_security(org, "mallory")
    org.clock.advance(timedelta(days=3, seconds=1))
    assert _state(org, approval) == "expired"
    late = org.post("alice", f"/approvals/{approval}/approve")
    assert late.status_code == 409
    assert late.json()["code"] == "expired"
    assert _bindings(org, "mallory") == []
    # an expired request no longer blocks asking again
    assert _request_security(org, "mallory") != approval


def test_maker_withdraws_and_nothing_is_bound(org: Org) -> None:
    _person(org, "mallory")
    approval = _request_security(org, "mallory")
    assert org.post("admin", f"/approvals/{approval}/withdraw", {"reason": "typo"}).status_code == 403
    r = org.post("adam", f"/approvals/{approval}/withdraw", {"reason": "wrong person"})
    assert r.json()["state"] == "withdrawn"
    assert org.post("alice", f"/approvals/{approval}/approve").status_code == 409
    assert _bindings(org, "mallory") == []


def test_second_request_for_the_same_binding_is_refused_while_one_is_pending(org: Org) -> None:
    _person(org, "mallory")
    approval = _request_security(org, "mallory")
    again = org.post("admin", "/role-bindings", {"identity": "mallory", "role": "security"})
    assert again.status_code == 409
    assert again.json()["approval_id"] == approval
    assert org.audit(action="role.bind", actor="admin", outcome="refused")


def test_toxic_sensitive_binding_is_refused_at_request_time(org: Org) -> None:
    """The conflict rules run before a request is parked: dave (devops) never gets a request."""
    r = org.post("adam", "/role-bindings", {"identity": "dave", "role": "security"})
    assert r.status_code == 409
    assert "sod.operate-author-policy" in r.json()["rules"]
    assert not org.audit(action="approval.open", actor="adam")


def test_binding_that_became_toxic_before_approval_is_not_applied(org: Org) -> None:
    """Requested while clean, then bound devops: the approving vote re-runs the grant check."""
    _person(org, "mallory")
    approval = _request_security(org, "mallory")
    r = org.post(
        "adam", "/role-bindings", {"identity": "mallory", "role": "devops", "scope": "team:payments"}
    )
    assert r.status_code == 201
    late = org.post("alice", f"/approvals/{approval}/approve")
    assert late.status_code == 409, late.json()
    assert late.json()["code"] == "conflict"
    assert "sod.exception-request-approve" in late.json()["rules"]
    assert _bindings(org, "mallory") == ["devops@team:payments"]
    assert _state(org, approval) == "pending"  # the vote did not count; it can still be rejected
    assert org.audit(action="approval.approve", actor="alice", outcome="refused")


def test_approval_after_the_maker_lost_role_assign_is_not_applied(org: Org) -> None:
    _person(org, "mallory")
    approval = _request_security(org, "mallory")
    (adams,) = org.get("carol", "/role-bindings", identity="adam").json()["items"]
    assert org.delete("admin", f"/role-bindings/{adams['id']}").status_code == 204
    late = org.post("sam", f"/approvals/{approval}/approve")
    assert late.status_code == 409
    assert late.json()["code"] == "maker_lost_duty"
    assert _bindings(org, "mallory") == []


def test_payload_edited_after_the_request_is_not_applied(org: Org) -> None:
    """A database edit that swaps the person bound is refused: the approval is bound to the digest."""
    _person(org, "mallory")
    _person(org, "trudy")
    approval = _request_security(org, "mallory")
    with org.rt.db.write() as conn:
        conn.execute(
            sa.update(t.approval_requests)
            .where(t.approval_requests.c.id == approval)
            .values(payload='{"identity":"trudy","role":"security","scope":"org:*"}')
        )
    r = org.post("alice", f"/approvals/{approval}/approve")
    assert r.status_code == 409
    assert r.json()["code"] == "stale_subject"
    assert _bindings(org, "trudy") == [] and _bindings(org, "mallory") == []


def test_team_security_approves_only_bindings_their_scope_covers(org: Org) -> None:
    _person(org, "tess")
    _person(org, "mallory")
    first = _request_security(org, "tess", scope="team:payments")
    assert org.post("alice", f"/approvals/{first}/approve").status_code == 200
    inside = _request_security(org, "mallory", scope="app:shop-api")  # owned by payments
    outside = _request_security(org, "mallory", scope="cluster:prod-eu")  # owned by platform
    assert org.post("tess", f"/approvals/{outside}/approve").status_code == 403
    r = org.post("tess", f"/approvals/{inside}/approve")
    assert r.status_code == 200, r.json()
    assert _bindings(org, "mallory") == ["security@app:shop-api"]


def test_single_security_member_can_approve_a_second_member(org: Org) -> None:
    """A security team of one suffices as checker (the maker is an admin), but never binds itself."""
    assert org.post("admin", "/users/sam/disable").status_code == 200
    _person(org, "bob")
    approval = _request_security(org, "bob")
    assert org.post("alice", f"/approvals/{approval}/approve").status_code == 200
    assert _bindings(org, "bob") == ["security@org:*"]
    own = org.post(
        "alice", "/role-bindings", {"identity": "alice", "role": "security", "scope": "team:secops"}
    )
    assert own.status_code == 403  # security holds no role.assign, and self-grant is refused anyway


def test_removing_every_security_member_does_not_let_admin_bind_security(org: Org) -> None:
    """Disabling alice and sam leaves nobody to approve: the request is refused, not applied at
    once (the first-approver window was closed when the demo seeded its security people)."""
    for who in ("alice", "sam"):
        assert org.post("admin", f"/users/{who}/disable").status_code == 200
    _person(org, "mallory")
    r = org.post("adam", "/role-bindings", {"identity": "mallory", "role": "security"})
    assert r.status_code == 409, r.json()
    assert r.json()["code"] == "no_approver"
    assert _bindings(org, "mallory") == []
    assert not org.audit(action="approval.open", actor="adam")


def test_approval_list_shows_binding_requests_to_readers_of_bindings(org: Org) -> None:
    _person(org, "mallory")
    approval = _request_security(org, "mallory")
    for who in ("adam", "alice", "carol"):
        ids = [a["id"] for a in org.get(who, "/approvals", state="pending").json()["items"]]
        assert approval in ids, who
    assert approval not in [a["id"] for a in org.get("dave", "/approvals").json()["items"]]


# -- bootstrap: the first security member of a new installation -------------------------------------------


@pytest.fixture
def fresh(runtime: Runtime, clock: FakeClock) -> Iterator[Org]:
    """Just the bootstrap administrator: nobody holds security yet."""
    token = bootstrap(runtime)
    assert token is not None
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
        yield Org(runtime, client, {"admin": token}, clock)


def _user(org: Org, ident: str) -> None:
    assert org.post("admin", "/users", {"id": ident}).status_code == 201


def test_first_security_member_binds_at_once_then_the_rule_applies(fresh: Org) -> None:
    _user(fresh, "alice")
    first = fresh.post("admin", "/role-bindings", {"identity": "alice", "role": "security"})
    assert first.status_code == 201, first.json()
    (entry,) = fresh.audit(action="role.bind", outcome="success")
    assert entry["details"]["first_approver"] is True
    with fresh.rt.db.read() as conn:
        assert store.get_state(conn, FIRST_APPROVER_KEY) is not None
    _user(fresh, "bob")
    second = fresh.post("admin", "/role-bindings", {"identity": "bob", "role": "security"})
    assert second.status_code == 202, second.json()
    _enroll(fresh, "alice")
    r = fresh.post("alice", f"/approvals/{second.json()['approval_id']}/approve")
    assert r.status_code == 200, r.json()
    assert _bindings_fresh(fresh, "bob") == ["security@org:*"]


def _bindings_fresh(org: Org, ident: str) -> list[str]:
    with org.rt.db.read() as conn:
        return sorted(str(sb.binding) for sb in store.bindings_of(conn, ident))


def test_first_security_member_must_be_organisation_wide(fresh: Org) -> None:
    """A team-scoped first member would leave nobody to approve for the organisation."""
    _user(fresh, "alice")
    r = fresh.post(
        "admin", "/role-bindings", {"identity": "alice", "role": "security", "scope": "team:secops"}
    )
    assert r.status_code == 409
    assert r.json()["code"] == "no_approver"
    assert _bindings_fresh(fresh, "alice") == []
    with fresh.rt.db.read() as conn:
        assert store.get_state(conn, FIRST_APPROVER_KEY) is None  # still open for the real first member


def test_first_approver_window_does_not_skip_the_conflict_rules(fresh: Org) -> None:
    r = fresh.post("admin", "/role-bindings", {"identity": "admin", "role": "security"})
    assert r.status_code == 409
    assert "sod.admin-security-devops" in r.json()["rules"]
    with fresh.rt.db.read() as conn:
        assert store.get_state(conn, FIRST_APPROVER_KEY) is None


def test_unbinding_the_only_security_member_does_not_reopen_the_window(fresh: Org) -> None:
    _user(fresh, "alice")
    first = fresh.post("admin", "/role-bindings", {"identity": "alice", "role": "security"}).json()
    assert fresh.delete("admin", f"/role-bindings/{first['id']}").status_code == 204
    _user(fresh, "mallory")
    r = fresh.post("admin", "/role-bindings", {"identity": "mallory", "role": "security"})
    assert r.status_code == 409
    assert r.json()["code"] == "no_approver"
    assert _bindings_fresh(fresh, "mallory") == []


@pytest.mark.parametrize("how", ["unbound", "disabled"])
def test_window_closes_at_start_for_a_database_that_already_has_security(
    runtime: Runtime, clock: FakeClock, how: str
) -> None:
    """A database from before this rule: a security member exists (even a disabled one), no claim
    row. The next start closes the window, so an admin who then removes or disables them cannot
    bind security at once."""
    now = runtime.now()
    with runtime.db.write() as conn:
        store.create_identity(conn, "old-sec", PrincipalKind.PERSON, "Old", None, "test", now)
        old = store.insert_binding(conn, Binding("old-sec", Role.SECURITY, ORG), "test", now)
        if how == "disabled":
            store.disable_identity(conn, "old-sec", now)
    token = bootstrap(runtime)
    assert token is not None
    with runtime.db.write() as conn:
        assert store.get_state(conn, FIRST_APPROVER_KEY) is not None
        if how == "unbound":
            store.delete_binding(conn, old.id)
    with TestClient(create_app(runtime=runtime), raise_server_exceptions=False) as client:
        org = Org(runtime, client, {"admin": token}, clock)
        assert org.audit(action="role.first-approver.closed")
        _user(org, "mallory")
        r = org.post("admin", "/role-bindings", {"identity": "mallory", "role": "security"})
        assert r.status_code == 409
        assert r.json()["code"] == "no_approver"
        assert _bindings_fresh(org, "mallory") == []


def test_demo_seed_closes_the_window(org: Org) -> None:
    with org.rt.db.read() as conn:
        value = store.get_state(conn, FIRST_APPROVER_KEY)
    assert value is not None and "demo" in value
