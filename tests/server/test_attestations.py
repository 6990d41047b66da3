"""Gate attestations signed by the control plane, on SQLite and PostgreSQL: a runner submits what
it decided under the state it verified; the server refuses a stale bundle or snapshot and any
waiver it cannot reproduce, decides again which findings block, signs an in-toto Statement and
indexes it by subject; a break-glass grant lets a blocked gate through, loudly."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from dutyguard.trust.attest import Subject, verify_attestation
from dutyguard.trust.errors import SignatureError
from tests.server.conftest import Org
from tests.server.signed_helpers import BUNDLE, FP, keyring, ok, publish, request_exception, served

IMAGE = "oci://registry.example.com/shop/api@sha256:" + "5e" * 32
COMMIT = "git:" + "c0ffee" * 6 + "c0ff"


def _state(org: Org) -> tuple[dict[str, Any], int]:
    current = ok(org.get("carol", "/policies/current"))
    _, snapshot = served(org)
    version = json.loads(base64.b64decode(json.loads(snapshot)["payload"]))["version"]
    return current, version


def _finding(rule: str = "pss.host-ports", severity: str = "high", fp: str = FP, **kw: Any) -> dict[str, Any]:
    return {
        "rule_id": rule,
        "severity": severity,
        "fingerprint": fp,
        "namespace": None,
        "blocking": True,
        **kw,
    }


def _submit(org: Org, findings: list[dict[str, Any]], who: str = "ci-shop", **over: Any) -> Any:
    current, snapshot = _state(org)
    body = {
        "subject": IMAGE,
        "app": "shop-api",
        "policy": {"version": current["version"], "digest": current["digest"]},
        "snapshot_version": snapshot,
        "findings": findings,
        "errors": 0,
        **over,
    }
    return org.post(who, "/attestations", body)


def _verify(org: Org, envelope: dict[str, Any], subject: str = IMAGE) -> Any:
    data = json.dumps(envelope).encode()
    return verify_attestation(data, keyring(org), "attestation", Subject.parse(subject)).attestation


def test_passing_gate_is_signed_by_the_control_plane(org: Org) -> None:
    publish(org)
    out = ok(_submit(org, []), 201)
    assert (out["decision"], out["submitter"], out["bundle_version"]) == ("pass", "ci-shop", 1)
    att = _verify(org, out["envelope"])
    p = att.predicate
    assert (p.decision, p.submitter, p.policy_version, p.policy_name) == ("pass", "ci-shop", 1, "acme")
    assert att.subjects[0].render() == IMAGE
    (entry,) = org.audit(actor="ci-shop", action="gate.attest")
    assert entry["details"]["decision"] == "pass"
    # the key is the control plane's: the envelope's signature is by the published state key
    assert out["envelope"]["signatures"][0]["keyid"] == ok(org.client.get("/api/v1/keys"))["keys"][0]["keyid"]


def test_server_decides_again_which_findings_block(org: Org) -> None:
    publish(org)
    # the runner says nothing blocks; the bundle blocks high findings in CI
    out = ok(_submit(org, [_finding(blocking=False)]), 201)
    assert out["decision"] == "fail"
    (blocking,) = _verify(org, out["envelope"]).predicate.blocking
    assert (blocking.rule_id, blocking.fingerprint) == ("pss.host-ports", FP)
    # a finding for a rule the bundle does not apply is not a finding of this gate
    r = _submit(org, [_finding(rule="k8s.no-cpu-limit", severity="low")])
    assert (r.status_code, r.json()["code"]) == (422, "unknown_rule")


def test_attestation_for_stale_bundle_refused(org: Org) -> None:
    v1 = publish(org)
    _, snapshot = _state(org)
    publish(org, BUNDLE.replace(", {pack: pss-restricted}", ""))
    body = {
        "subject": IMAGE,
        "app": "shop-api",
        "policy": {"version": 1, "digest": v1["digest"]},
        "snapshot_version": snapshot,
        "findings": [],
        "errors": 0,
    }
    r = org.post("ci-shop", "/attestations", body)
    assert (r.status_code, r.json()["code"]) == (409, "stale_bundle")
    assert "v2" in r.json()["detail"]
    refused = org.audit(actor="ci-shop", action="gate.attest", outcome="refused")
    assert refused[-1]["details"]["code"] == "stale_bundle"
    assert not org.audit(actor="ci-shop", action="gate.attest", outcome="success")
    # a forged digest under the right version is as stale
    body["policy"] = {"version": 2, "digest": v1["digest"]}
    assert org.post("ci-shop", "/attestations", body).json()["code"] == "stale_bundle"
    # a snapshot this control plane never issued
    r = _submit(org, [], snapshot_version=999)
    assert (r.status_code, r.json()["code"]) == (409, "stale_snapshot")


def test_waivers_are_reproduced_not_trusted(org: Org) -> None:
    publish(org)
    e = ok(request_exception(org))
    granted = ok(org.post("sam", f"/exceptions/{e['id']}/approve"))
    claim = {"exception_id": e["id"], "expires": granted["expires_at"]}
    out = ok(_submit(org, [_finding(blocking=False, waiver=claim)]), 201)
    assert out["decision"] == "pass"
    (waived,) = _verify(org, out["envelope"]).predicate.waived
    assert waived.exception_id == e["id"]
    # the same exception claimed for another finding: it does not waive that one
    r = _submit(org, [_finding(fp="cd" * 16, blocking=False, waiver=claim)])
    assert (r.status_code, r.json()["code"]) == (409, "waiver_mismatch")
    # an exception that does not exist, and one for another app
    bogus = {"exception_id": "exc-made-up", "expires": granted["expires_at"]}
    assert _submit(org, [_finding(waiver=bogus)]).json()["code"] == "waiver_mismatch"
    assert (
        _submit(org, [_finding(waiver=claim)], app="checkout").status_code == 403
    )  # ci-shop gates shop-api only
    # revoked: it waives nothing from now on
    ok(org.post("alice", f"/exceptions/{e['id']}/revoke", {"reason": "no longer needed"}))
    r = _submit(org, [_finding(waiver=claim)])
    assert (r.status_code, r.json()["code"]) == (409, "waiver_mismatch")
    assert (
        org.audit(actor="ci-shop", action="gate.attest", outcome="refused")[-1]["details"]["code"]
        == "waiver_mismatch"
    )


def test_breakglass_lets_a_blocked_gate_pass_loudly(org: Org, monkeypatch: pytest.MonkeyPatch) -> None:
    alarms: list[dict[str, Any]] = []
    monkeypatch.setattr(org.rt.notifier, "send", alarms.append)
    publish(org)
    assert ok(_submit(org, [_finding()]), 201)["decision"] == "fail"
    grant = ok(
        org.post("dave", "/breakglass", {"reason": "checkout down, hotfix deploy", "scope": "app:shop-api"})
    )
    out = ok(_submit(org, [_finding()]), 201)
    assert (out["decision"], out["breakglass_grant"]) == ("breakglass", grant["id"])
    p = _verify(org, out["envelope"]).predicate
    assert (p.decision, p.breakglass_grant, len(p.blocking)) == ("breakglass", grant["id"], 1)
    assert org.audit(actor="ci-shop", action="gate.attest")[-1]["details"]["breakglass"] == grant["id"]
    (alarm,) = [a for a in alarms if a["event"] == "gate.breakglass"]
    assert (alarm["grant"], alarm["subject"], alarm["submitter"]) == (grant["id"], IMAGE, "ci-shop")
    assert alarm["blocking"] == [f"pss.host-ports:{FP}"]
    # unreadable inputs are not waved through by break-glass
    assert ok(_submit(org, [_finding()], errors=1), 201)["decision"] == "fail"
    # another team's app is not covered by dave's grant
    ok(org.post("dave", f"/breakglass/{grant['id']}/close"))
    assert ok(_submit(org, [_finding()]), 201)["decision"] == "fail"


def test_attestations_indexed_by_subject(org: Org) -> None:
    publish(org)
    ok(_submit(org, [_finding()]), 201)  # fail first
    later = ok(_submit(org, []), 201)  # then pass
    ok(_submit(org, [], subject=COMMIT), 201)
    listed = ok(org.get("carol", "/attestations", subject=IMAGE))["items"]
    assert [a["decision"] for a in listed] == ["pass", "fail"]  # newest first
    index = ok(org.get("cluster-prod-eu", "/state/attestations"))["items"]
    assert len(index) == 2  # the latest of each subject only
    assert {a["subject"] for a in index} == {IMAGE, COMMIT}
    assert [a["id"] for a in index if a["subject"] == IMAGE] == [later["id"]]
    assert org.get("ci-shop", "/attestations").status_code == 403  # a pipeline reads state, not evidence


def test_forged_attestation_does_not_verify(org: Org) -> None:
    publish(org)
    out = ok(_submit(org, [_finding()]), 201)
    env = out["envelope"]
    statement = json.loads(base64.b64decode(env["payload"]))
    statement["predicate"]["decision"] = "pass"
    statement["predicate"]["blockingFindings"] = []
    env["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    try:
        _verify(org, env)
    except SignatureError:
        pass
    else:  # pragma: no cover - the point of the test
        raise AssertionError("an edited attestation verified")
