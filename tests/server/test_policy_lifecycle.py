"""Policy bundles through the control plane, on SQLite and PostgreSQL: propose (linted on the
server), approve by someone else (maker-checker), publish (signed, versioned, chained by digest),
history and diffs, rollback as a new version, re-signing and key rotation. Each refusal is
checked to be a problem with a stable code *and* an audit entry."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
import sqlalchemy as sa

from dutyguard.governance.duties import Role
from dutyguard.rules import default_registry
from dutyguard.server import tables as t
from dutyguard.trust.errors import SignatureError
from dutyguard.trust.keys import Keyring
from dutyguard.trust.state import Seen, SeenState, TrustedState
from tests.server.conftest import Org
from tests.server.signed_helpers import BUNDLE, keyring, ok, person, propose, publish, served, verify

NO_RESTRICTED = BUNDLE.replace(", {pack: pss-restricted}", "")
LOOSER_EXCEPTIONS = BUNDLE + "  exceptions:\n    quorum: {critical: 1, high: 1, medium: 1, low: 1, info: 1}\n"


def _payload(envelope: bytes) -> dict[str, object]:
    value = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
    assert isinstance(value, dict)
    return value


def test_proposal_is_linted_on_the_server(org: Org) -> None:
    bad = BUNDLE.replace("pss-restricted", "pss-restrictd").replace(
        "pss.host-ports: high", "pss.host-port: high"
    )
    r = org.post("alice", "/policies/proposals", {"document": bad, "message": "typo"})
    assert r.status_code == 422
    problems = {(e["path"], e["line"]) for e in r.json()["errors"]}
    # each problem named by its path and its line in the YAML as written
    assert problems == {("spec.rules.include.1.pack", 7), ("spec.severity.pss.host-port", 9)}
    # lint_bundle too: a bundle may not let devops approve exceptions
    devops = BUNDLE + "  exceptions:\n    approvers: {roles: [devops]}\n"
    r = org.post("alice", "/policies/proposals", {"document": devops, "message": "x"})
    assert r.status_code == 422
    assert "does not hold the duty exception.approve" in r.json()["errors"][0]["message"]


def test_publish_signs_versions_chained_by_digest(org: Org) -> None:
    v1 = publish(org)
    bundle, snapshot = verify(org)
    assert (bundle.published.version, bundle.published.digest) == (1, v1["digest"])
    assert bundle.published.previous_digest is None
    assert snapshot.snapshot.exceptions == ()
    v2 = publish(org, NO_RESTRICTED)
    bundle, _ = verify(org)
    assert (bundle.published.version, bundle.published.previous_digest) == (2, v1["digest"])
    assert bundle.published.digest == v2["digest"] != v1["digest"]
    assert "pss.run-as-non-root" not in bundle.published.bundle.enabled_rules
    assert [v["version"] for v in ok(org.get("dave", "/policies"))["items"]] == [2, 1]
    assert ok(org.get("carol", "/policies/1"))["digest"] == v1["digest"]  # v1 is kept as it was
    diff = ok(org.get("carol", "/policies/diff", old=1, new=2))
    assert any(c["effect"] == "weakens" and "rules no longer applied" in c["what"] for c in diff["changes"])
    assert '-          "pack": "pss-restricted"' in diff["diff"].splitlines()
    (entry,) = org.audit(action="policy.publish", object="policy:v2")
    assert entry["actor"] == "sam"
    assert entry["details"]["previous_digest"] == v1["digest"]


def test_approving_own_policy_proposal_refused(org: Org) -> None:
    p = propose(org)
    r = org.post("alice", f"/policies/proposals/{p['id']}/approve")
    assert r.status_code == 403
    assert r.json()["code"] == "self_approval"
    (entry,) = org.audit(actor="alice", action="policy.approve", outcome="refused")
    assert entry["details"]["code"] == "self_approval"
    assert ok(org.get("sam", f"/policies/proposals/{p['id']}"))["state"] == "pending"
    assert org.get("ci-shop", "/state/bundle").status_code == 404  # nothing was published


@pytest.mark.parametrize("who", ["ci-shop", "cluster-prod-eu"])
def test_ci_token_cannot_publish_policy(org: Org, who: str) -> None:
    p = propose(org)
    for path, body in (
        ("/policies/proposals", {"document": BUNDLE, "message": "mine"}),
        (f"/policies/proposals/{p['id']}/approve", {}),
        ("/keys/rotate", {"reason": "take over signing"}),
    ):
        before = len(org.audit(actor=who, outcome="refused"))
        r = org.post(who, path, body)
        assert r.status_code == 403, path
        refused = org.audit(actor=who, outcome="refused")
        assert len(refused) == before + 1
        assert refused[-1]["action"] == "request.denied"
    assert ok(org.get("sam", f"/policies/proposals/{p['id']}"))["approvals"] == []


def test_devops_token_cannot_publish_policy(org: Org) -> None:
    p = propose(org)
    for path, duty in (
        ("/policies/proposals", "policy.propose"),
        (f"/policies/proposals/{p['id']}/approve", "policy.approve"),
        (f"/policies/proposals/{p['id']}/reject", "policy.approve"),
    ):
        r = org.post(
            "dave", path, {"document": BUNDLE, "message": "mine"} if path.endswith("proposals") else {}
        )
        assert r.status_code == 403
        assert r.json()["duty"] == duty
        assert (
            org.audit(actor="dave", action="request.denied", outcome="refused")[-1]["details"]["duty"] == duty
        )
    assert org.get("dave", "/state/bundle").status_code == 404


def test_critical_change_needs_two_approvers_each_counted_once(org: Org) -> None:
    publish(org)
    p = propose(org, LOOSER_EXCEPTIONS)
    assert (p["severity"], p["quorum"]) == ("critical", 2)
    assert any("exception policy loosened" in c["what"] for c in p["changes"])
    assert ok(org.post("sam", f"/policies/proposals/{p['id']}/approve"))["state"] == "pending"
    r = org.post("sam", f"/policies/proposals/{p['id']}/approve")
    assert r.status_code == 409
    assert r.json()["code"] == "duplicate_approval"
    assert org.audit(actor="sam", action="policy.approve", outcome="refused")[-1]["details"]["code"] == (
        "duplicate_approval"
    )
    person(org, "tess", Role.SECURITY, ("secops",))
    done = ok(org.post("tess", f"/policies/proposals/{p['id']}/approve"))
    assert (done["state"], done["published_version"], sorted(done["approvals"])) == (
        "approved",
        2,
        ["sam", "tess"],
    )


def test_one_rejection_ends_a_proposal(org: Org) -> None:
    p = propose(org)
    assert org.post("sam", f"/policies/proposals/{p['id']}/reject").json()["code"] == "reason_required"
    done = ok(org.post("sam", f"/policies/proposals/{p['id']}/reject", {"reason": "needs the k8s pack"}))
    assert (done["state"], done["rejected_by"]) == ("rejected", "sam")
    person(org, "tess", Role.SECURITY)
    r = org.post("tess", f"/policies/proposals/{p['id']}/approve")
    assert (r.status_code, r.json()["code"]) == (409, "closed")


def test_rollback_is_a_new_version_with_old_content(org: Org) -> None:
    v1 = publish(org)
    v2 = publish(org, NO_RESTRICTED)
    back = propose(org, BUNDLE, message="roll back to v1")
    assert back["severity"] == "medium"  # restoring rules only tightens
    ok(org.post("sam", f"/policies/proposals/{back['id']}/approve"))
    v3 = ok(org.get("carol", "/policies/current"))
    assert (v3["version"], v3["digest"], v3["previous_digest"]) == (3, v1["digest"], v2["digest"])
    bundle, _ = verify(org)
    assert bundle.published.version == 3


def test_identical_and_stale_proposals_refused(org: Org) -> None:
    publish(org)
    r = org.post("alice", "/policies/proposals", {"document": BUNDLE, "message": "same"})
    assert (r.status_code, r.json()["code"]) == (409, "unchanged")
    first = propose(org, NO_RESTRICTED)
    second = propose(org, LOOSER_EXCEPTIONS.replace("critical: 1", "critical: 2"))
    ok(org.post("sam", f"/policies/proposals/{first['id']}/approve"))
    r = org.post("sam", f"/policies/proposals/{second['id']}/approve")
    assert (r.status_code, r.json()["code"]) == (409, "stale_base")
    assert (
        org.audit(actor="sam", action="policy.approve", outcome="refused")[-1]["details"]["code"]
        == "stale_base"
    )
    assert ok(org.get("carol", "/policies/current"))["version"] == 2


def test_proposal_edited_in_the_database_is_not_published(org: Org) -> None:
    p = propose(org)
    with org.rt.db.write() as conn:
        doc = json.loads(conn.execute(sa.select(t.policy_proposals.c.document)).scalar_one())
        doc["spec"]["rules"]["include"] = [{"pack": "secrets"}]
        conn.execute(t.policy_proposals.update().values(document=json.dumps(doc)))
    r = org.post("sam", f"/policies/proposals/{p['id']}/approve")
    assert (r.status_code, r.json()["type"]) == (409, "urn:dutyguard:problem:tampered")
    assert org.audit(actor="sam", action="policy.approve", outcome="refused")
    assert org.get("ci-shop", "/state/bundle").status_code == 404


def test_bundle_resigned_before_expiry_with_the_same_version(org: Org) -> None:
    publish(org)
    first, snapshot = served(org)
    bundle, _ = verify(org, (first, snapshot))
    org.clock.advance(timedelta(days=16))  # past half of the 30-day lifetime
    again, snapshot2 = served(org)
    assert again != first
    p1, p2 = _payload(first), _payload(again)
    assert (p2["version"], p2["digest"]) == (p1["version"], p1["digest"])
    assert str(p2["issuedAt"]) > str(p1["issuedAt"])
    # a runner that accepted the first copy accepts the re-signed one (same version, same content)
    record = SeenState(bundles={bundle.published.issuer: Seen(1, bundle.published.digest)})
    verify(org, (again, snapshot2), seen=record)
    assert org.audit(action="state.bundle.sign", object="policy:v1")


def test_key_rotation_keeps_older_artefacts_verifiable(org: Org) -> None:
    publish(org)
    old = served(org)
    old_ring = keyring(org)
    assert org.post("dave", "/keys/rotate", {"reason": "mine"}).status_code == 403
    org.clock.advance(timedelta(seconds=2))
    ring = ok(org.post("alice", "/keys/rotate", {"reason": "yearly rotation"}))
    assert [k["notAfter"] is None for k in ring["keys"]] == [False, True]
    assert org.audit(actor="alice", action="state.key.rotate")
    new = served(org)
    assert json.loads(new[0])["signatures"][0]["keyid"] == ring["keys"][1]["keyid"]
    both = Keyring.from_json(ring, "rotated")
    # the exported keyring verifies what the old key signed before the rotation, and the new state
    for data in (old, new):
        state = TrustedState(both, default_registry(), org.clock(), SeenState())
        state.update_bundle(data[0], "bundle")
        state.update_snapshot(data[1], "snapshot")
    # a runner still pinning only the old key refuses the new state: it must re-pin
    state = TrustedState(old_ring, default_registry(), org.clock(), SeenState())
    with pytest.raises(SignatureError):
        state.update_bundle(new[0], "bundle")


def test_hostile_numbers_and_cursors_are_refused_not_crashed(org: Org) -> None:
    publish(org)
    big = str(2**63)
    for path, params in (
        (f"/policies/{big}", {}),
        ("/policies/diff", {"old": big, "new": "1"}),
        ("/policies", {"cursor": "WzkyMjMzNzIwMzY4NTQ3NzU4MDdd"}),  # [9223372036854775807]
        ("/attestations", {"cursor": "WyIyMDI2LTAxLTAxVDAwOjAwOjAwIiwiYSJd"}),  # a naive time
        ("/exceptions", {"status": "everything"}),
    ):
        r = org.get("carol", path, **params)
        assert r.status_code in (400, 422), (path, r.status_code, r.text)
        assert r.headers["content-type"] == "application/problem+json"
    r = org.post(
        "alice",
        "/policies/proposals",
        {"document": "a: &a [*a, *a]\n" + "b: " + "[" * 5000, "message": "bomb"},
    )
    assert r.status_code == 422
    r = org.post("alice", "/policies/proposals", {"document": "x" * (2 * 1024 * 1024 + 1), "message": "huge"})
    assert r.status_code == 413
