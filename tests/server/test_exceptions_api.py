"""Exceptions through the control plane, on SQLite and PostgreSQL: requested by DevOps within
what they own, approved by Security outside the requester's team with the published bundle's
quorum and duration, signed into the next snapshot, revoked or expired out of it. Attacks on the
four-eyes rule are refused *and* audited."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from dutyguard.governance.duties import Role
from dutyguard.server import tables as t
from tests.server.conftest import Org
from tests.server.signed_helpers import BUNDLE, FP, ok, person, publish, request_exception, verify


def _refused(org: Org, actor: str, action: str, code: str) -> None:
    entries = org.audit(actor=actor, action=action, outcome="refused")
    assert entries, f"no refused {action} by {actor} in the audit trail"
    assert entries[-1]["details"]["code"] == code


def _snapshot_ids(org: Org) -> tuple[int, list[str]]:
    _, snapshot = verify(org)
    return snapshot.snapshot.version, [e.id for e in snapshot.snapshot.exceptions]


def test_request_needs_a_published_bundle_a_known_rule_and_a_bounded_duration(org: Org) -> None:
    r = request_exception(org)
    assert (r.status_code, r.json()["code"]) == (409, "no_policy")
    _refused(org, "dave", "exception.request", "no_policy")
    publish(org)
    r = request_exception(org, rule_id="k8s.no-cpu-limit")  # not in the bundle: nothing to waive
    assert (r.status_code, r.json()["code"]) == (422, "unknown_rule")
    r = request_exception(org, days=31)  # high: at most 30 days by default
    assert (r.status_code, r.json()["code"]) == (422, "bad_duration")
    assert "at most 30 days" in r.json()["detail"]
    r = request_exception(org, fingerprint=FP, namespace="shop-prod")
    assert r.status_code == 422  # a fingerprint is narrowed by app only
    created = ok(request_exception(org))
    assert (created["status"], created["severity"], created["quorum"], created["wide"]) == (
        "pending",
        "high",
        1,
        False,
    )


def test_devops_requests_only_within_what_their_team_owns(org: Org) -> None:
    publish(org)
    r = request_exception(org, who="erin")  # platform team; shop-api belongs to payments
    assert r.status_code == 403
    assert (
        org.audit(actor="erin", action="request.denied", outcome="refused")[-1]["details"]["target"]
        == "app:shop-api"
    )
    assert request_exception(org, who="sam").status_code == 403  # security requests nothing


def test_approved_exception_goes_into_the_next_signed_snapshot(org: Org) -> None:
    publish(org)
    version, ids = _snapshot_ids(org)
    assert ids == []
    e = ok(request_exception(org))
    assert _snapshot_ids(org) == (version, [])  # pending: not in any snapshot
    done = ok(org.post("sam", f"/exceptions/{e['id']}/approve"))
    assert done["status"] == "active"
    v2, ids = _snapshot_ids(org)
    assert (v2, ids) == (version + 1, [e["id"]])
    _, snapshot = verify(org)
    (grant,) = snapshot.snapshot.exceptions
    assert (grant.rule_id, grant.scope.fingerprint, grant.scope.app) == ("pss.host-ports", FP, "shop-api")
    assert (grant.requester, grant.approvers) == ("dave", ("sam",))
    assert grant.expires - grant.approved_at == timedelta(days=10)
    assert org.audit(actor="sam", action="exception.grant", object=f"exception:{e['id']}")


def test_approving_own_exception_refused(org: Org) -> None:
    publish(org)
    e = ok(request_exception(org))
    r = org.post("dave", f"/exceptions/{e['id']}/approve")
    assert (r.status_code, r.json()["duty"]) == (403, "exception.approve")
    assert org.audit(actor="dave", action="request.denied", outcome="refused")
    # someone holding both duties (a pairing only a recorded mitigation allows; bound here in the
    # store) still cannot approve their own request
    person(org, "mona", Role.SECURITY, ("payments",))
    with org.rt.db.write() as conn:
        from dutyguard.governance.authz import Binding
        from dutyguard.governance.scope import Scope, ScopeKind
        from dutyguard.server import store

        store.insert_binding(
            conn, Binding("mona", Role.DEVOPS, Scope(ScopeKind.TEAM, "payments")), "test", org.rt.now()
        )
    mine = ok(request_exception(org, who="mona"))
    r = org.post("mona", f"/exceptions/{mine['id']}/approve")
    assert (r.status_code, r.json()["code"]) == (403, "self_approval")
    _refused(org, "mona", "exception.approve", "self_approval")
    assert ok(org.get("sam", f"/exceptions/{mine['id']}"))["status"] == "pending"


def test_teammate_cannot_approve_exception(org: Org) -> None:
    publish(org)
    e = ok(request_exception(org))
    ok(org.post("adam", "/teams/payments/members", {"identity": "sam"}))  # sam joins dave's team
    r = org.post("sam", f"/exceptions/{e['id']}/approve")
    assert (r.status_code, r.json()["code"]) == (403, "same_team")
    _refused(org, "sam", "exception.approve", "same_team")
    assert ok(org.post("alice", f"/exceptions/{e['id']}/approve"))["status"] == "active"


def test_one_approver_counted_once(org: Org) -> None:
    publish(org)
    # critical findings need two approvers (the default exception policy)
    e = ok(request_exception(org, rule_id="pss.privileged", days=7))
    assert (e["severity"], e["quorum"]) == ("critical", 2)
    assert ok(org.post("sam", f"/exceptions/{e['id']}/approve"))["status"] == "pending"
    r = org.post("sam", f"/exceptions/{e['id']}/approve")
    assert (r.status_code, r.json()["code"]) == (409, "duplicate_approval")
    _refused(org, "sam", "exception.approve", "duplicate_approval")
    assert _snapshot_ids(org)[1] == []
    assert ok(org.post("alice", f"/exceptions/{e['id']}/approve"))["status"] == "active"
    assert _snapshot_ids(org)[1] == [e["id"]]


def test_one_rejection_ends_the_request(org: Org) -> None:
    publish(org)
    e = ok(request_exception(org, rule_id="pss.privileged", days=7))
    ok(org.post("sam", f"/exceptions/{e['id']}/approve"))
    done = ok(org.post("alice", f"/exceptions/{e['id']}/reject", {"reason": "run it unprivileged"}))
    assert (done["status"], done["rejected_by"]) == ("rejected", "alice")
    person(org, "tess", Role.SECURITY)
    r = org.post("tess", f"/exceptions/{e['id']}/approve")
    assert (r.status_code, r.json()["code"]) == (409, "closed")


def test_wide_scope_needs_the_larger_quorum(org: Org) -> None:
    publish(org)
    # a namespace of the platform team, no app and no image: wide
    e = ok(request_exception(org, who="erin", app=None, fingerprint=None, namespace="platform-system"))
    assert (e["wide"], e["quorum"]) == (True, 2)
    assert ok(org.post("sam", f"/exceptions/{e['id']}/approve"))["status"] == "pending"
    assert ok(org.post("alice", f"/exceptions/{e['id']}/approve"))["status"] == "active"


def test_bundle_narrows_who_may_approve(org: Org) -> None:
    publish(org, BUNDLE + "  exceptions:\n    approvers: {roles: [security], teams: [secops]}\n")
    person(org, "tess", Role.SECURITY, ("audit",))
    e = ok(request_exception(org))
    r = org.post("tess", f"/exceptions/{e['id']}/approve")
    assert (r.status_code, r.json()["code"]) == (403, "missing_duty")
    assert "secops" in r.json()["detail"]
    _refused(org, "tess", "exception.approve", "missing_duty")
    assert ok(org.post("sam", f"/exceptions/{e['id']}/approve"))["status"] == "active"


def test_approved_exception_scope_cannot_be_widened(org: Org) -> None:
    publish(org)
    e = ok(request_exception(org))
    # before anyone voted, the requester may correct the scope of the request
    fixed = ok(
        org.put(
            "dave",
            f"/exceptions/{e['id']}/scope",
            {"app": "shop-api", "fingerprint": "cd" * 16, "reason": "typo"},
        )
    )
    assert fixed["scope"]["fingerprint"] == "cd" * 16
    ok(org.post("sam", f"/exceptions/{fixed['id']}/approve"))
    version, ids = _snapshot_ids(org)
    # 1. through the API: refused and audited
    r = org.put(
        "dave", f"/exceptions/{e['id']}/scope", {"app": "shop-api", "reason": "every finding of the rule"}
    )
    assert (r.status_code, r.json()["code"]) == (409, "immutable_scope")
    _refused(org, "dave", "exception.scope", "immutable_scope")
    # 2. in the database: the row no longer matches what was approved; nothing is signed
    with org.rt.db.write() as conn:
        conn.execute(
            t.exception_requests.update()
            .where(t.exception_requests.c.id == e["id"])
            .values(fingerprint=None, namespace="shop-prod", wide=False)
        )
    org.clock.advance(timedelta(hours=13))  # the served snapshot is due for re-signing
    r = org.get("ci-shop", "/state/exceptions")
    assert (r.status_code, r.json()["type"]) == (503, "urn:dutyguard:problem:state-integrity")
    failed = org.audit(action="state.snapshot.sign", outcome="failed")
    assert failed
    assert e["id"] in failed[-1]["details"]["reason"]
    with org.rt.db.read() as conn:
        envelopes = conn.execute(sa.select(t.state_snapshots.c.version)).scalars().all()
    assert max(envelopes) == version  # the widened scope was never signed
    assert ids == [e["id"]]


def test_revoked_exception_not_in_next_snapshot(org: Org) -> None:
    publish(org)
    e = ok(request_exception(org))
    ok(org.post("sam", f"/exceptions/{e['id']}/approve"))
    version, ids = _snapshot_ids(org)
    assert ids == [e["id"]]
    r = org.post("dave", f"/exceptions/{e['id']}/revoke", {"reason": "mine"})
    assert r.status_code == 403  # revoking is Security's
    done = ok(org.post("alice", f"/exceptions/{e['id']}/revoke", {"reason": "exploited in the wild"}))
    assert (done["status"], done["revoked_by"]) == ("revoked", "alice")
    assert org.audit(actor="alice", action="exception.revoke", object=f"exception:{e['id']}")
    assert _snapshot_ids(org) == (version + 1, [])
    r = org.post("alice", f"/exceptions/{e['id']}/revoke", {"reason": "again"})
    assert (r.status_code, r.json()["code"]) == (409, "closed")


def test_expired_exception_leaves_the_next_snapshot(org: Org) -> None:
    publish(org)
    e = ok(request_exception(org, days=1))
    ok(org.post("sam", f"/exceptions/{e['id']}/approve"))
    version, ids = _snapshot_ids(org)
    assert ids == [e["id"]]
    org.clock.advance(timedelta(days=1, seconds=1))
    v2, ids = _snapshot_ids(org)
    assert (v2, ids) == (version + 1, [])
    assert ok(org.get("carol", f"/exceptions/{e['id']}"))["status"] == "expired"
    (entry,) = org.audit(action="exception.expire", object=f"exception:{e['id']}")
    assert entry["actor"] == "system"
    listed = ok(org.get("dave", "/exceptions", status="expired"))["items"]
    assert [x["id"] for x in listed] == [e["id"]]


def test_snapshot_served_unchanged_until_something_changes(org: Org) -> None:
    publish(org)
    first = org.get("ci-shop", "/state/exceptions").content
    org.clock.advance(timedelta(hours=1))
    assert org.get("cluster-prod-eu", "/state/exceptions").content == first
    org.clock.advance(timedelta(hours=12))  # past half its lifetime: re-signed as a new version
    second = org.get("ci-shop", "/state/exceptions").content
    assert second != first
    assert verify(org, (org.get("ci-shop", "/state/bundle").content, second))[1].snapshot.version == 2
