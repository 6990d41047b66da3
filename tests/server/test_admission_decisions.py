"""What the admission webhook needs from the control plane, exercised with the webhook's own
client code over real HTTP (uvicorn on loopback), on SQLite and PostgreSQL: it pulls the signed
state with a ``cluster`` token (``HttpFetch``) and verifies it, and its ``AuditShipper`` batches
land in the audit trail, one entry per decision."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dutyguard.admission.audit import AuditOptions, AuditShipper
from dutyguard.admission.decide import Decider
from dutyguard.admission.metrics import AdmissionMetrics
from dutyguard.admission.review import parse_review
from dutyguard.admission.signed import HttpFetch
from dutyguard.admission.state import StateView, builtin_state
from dutyguard.rules import default_registry
from dutyguard.server.app import create_app
from tests.admission.support import pod_request, review
from tests.server.conftest import Org
from tests.server.live import threaded
from tests.server.signed_helpers import keyring, publish, verify

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _pod(privileged: bool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "containers": [
                {"name": "c", "image": "registry.example/a:1", "securityContext": {"privileged": privileged}}
            ]
        },
    }


def _shipper(url: str, token: str, cluster: str = "prod-eu") -> AuditShipper:
    options = AuditOptions(url=url, cluster=cluster, allow_sample_rate=0.0)
    return AuditShipper(options, lambda: token, AdmissionMetrics(), rng=random.Random(3))


def _record(s: AuditShipper, privileged: bool, uid: str) -> None:
    req = parse_review(review(pod_request(_pod(privileged), uid=uid)))
    view = StateView(builtin_state())
    s.record(req, Decider(default_registry()).decide(req, view), view, NOW)


def test_webhook_pulls_signed_state_and_ships_decisions(org: Org) -> None:
    publish(org)
    with threaded(create_app(runtime=org.rt)) as url:
        bundle, snapshot = HttpFetch(url, lambda: org.tokens["cluster-prod-eu"])()
        verified, _ = verify(org, (bundle, snapshot))
        assert verified.published.version == 1
        s = _shipper(url, org.tokens["cluster-prod-eu"])
        _record(s, True, "deny-1")
        for i in range(3):
            _record(s, False, f"allow-{i}")
        assert s.flush_once() == "sent"
    (deny,) = org.audit(action="admission.deny")
    assert (deny["actor"], deny["outcome"], deny["object"]) == ("cluster-prod-eu", "refused", "Pod/shop/web")
    assert (deny["details"]["uid"], deny["details"]["deniedRules"]) == ("deny-1", ["pss.privileged"])
    assert not org.audit(action="admission.allow")  # allows are counted, not sent (sample rate 0)
    (batch,) = org.audit(action="admission.batch")
    assert (
        batch["details"]["decisions"],
        batch["details"]["denied"],
        batch["details"]["allows_counted"],
    ) == (1, 1, 3)


def test_a_cluster_reports_only_for_itself(org: Org) -> None:
    with threaded(create_app(runtime=org.rt)) as url:
        s = _shipper(url, org.tokens["cluster-prod-eu"], cluster="prod-us")
        _record(s, True, "deny-1")
        assert s.flush_once() == "unauthorized"  # 403: the batch is held and retried, never dropped
        assert s.depth == 1
        with pytest.raises(Exception, match="403"):
            HttpFetch(url, lambda: org.tokens["alice"])()  # security holds no state.read
    assert not org.audit(action="admission.deny")
    denied = org.audit(actor="cluster-prod-eu", action="request.denied", outcome="refused")
    assert denied[-1]["details"]["target"] == "cluster:prod-us"


def _batch(n: int, batch_id: str = "b-1") -> dict[str, Any]:
    decision = {
        "uid": "u", "time": "2026-05-01T12:00:00.000000Z", "operation": "CREATE", "subResource": None,
        "kind": "Pod", "group": "", "namespace": "shop", "name": "web", "user": "alice", "groups": ["devs"],
        "dryRun": False, "outcome": "deny", "allowed": False, "reason": None, "deniedRules": ["pss.privileged"],
        "findings": [], "exceptions": [], "errors": [], "images": ["registry.example/app:1.0"],
        "policy": {"label": "builtin-unsigned", "signed": False, "bundleVersion": None, "bundleDigest": None,
                   "snapshotVersion": None},
        "stateProblem": None, "sampled": False,
    }  # fmt: skip
    return {
        "apiVersion": "dutyguard.dev/v1",
        "kind": "AdmissionDecisionBatch",
        "batchId": batch_id,
        "cluster": "prod-eu",
        "webhook": "dutyguard-admission",
        "sentAt": "2026-05-01T12:00:01.000000Z",
        "decisions": [decision] * n,
        "allowsCounted": {"count": 0, "since": None},
        "dropped": {},
    }


def test_batches_are_bounded_strict_and_stored_once(org: Org) -> None:
    r = org.post("cluster-prod-eu", "/admission/decisions", _batch(1001))
    assert r.status_code == 422
    assert r.json()["errors"][0]["field"] == "body.decisions"
    bad = _batch(1)
    bad["decisions"][0]["outcome"] = "maybe"
    assert org.post("cluster-prod-eu", "/admission/decisions", bad).status_code == 422
    bad = _batch(1)
    bad["extra"] = True
    assert org.post("cluster-prod-eu", "/admission/decisions", bad).status_code == 422
    first = org.post("cluster-prod-eu", "/admission/decisions", _batch(1000))
    assert (first.status_code, first.json()["stored"]) == (201, 1000)
    again = org.post("cluster-prod-eu", "/admission/decisions", _batch(1000))
    assert (again.status_code, again.json()["duplicate"]) == (200, True)
    assert len(org.audit(action="admission.deny")) == 1000
    assert org.post("ci-shop", "/admission/decisions", _batch(1, "b-2")).status_code == 403


def test_an_oversized_decision_is_trimmed_into_one_entry(org: Org, tmp_path: Path) -> None:
    batch = _batch(1)
    batch["decisions"][0]["findings"] = [
        {"rule": "pss.privileged", "severity": "critical", "field": "x" * 1000, "container": "c",
         "fingerprint": "ab" * 16, "action": "deny"}
    ] * 200  # fmt: skip
    assert org.post("cluster-prod-eu", "/admission/decisions", batch).status_code == 201
    (entry,) = org.audit(action="admission.deny")
    assert entry["details"]["findingsTotal"] == 200
    assert len(entry["details"]["findings"]) == 5


def test_pulled_attestation_index_feeds_the_webhooks_image_rule(
    org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``state pull --attestations`` saves what ``admission serve --require-attestations DIR`` loads."""
    import base64
    import json

    from dutyguard.admission.attestations import load_index
    from dutyguard.cli import gate_client

    publish(org)
    current = org.get("carol", "/policies/current").json()
    snapshot = json.loads(base64.b64decode(org.get("ci-shop", "/state/exceptions").json()["payload"]))[
        "version"
    ]
    image = "oci://registry.example.com/shop/api@sha256:" + "5e" * 32
    body = {
        "subject": image,
        "app": "shop-api",
        "policy": {"version": current["version"], "digest": current["digest"]},
        "snapshot_version": snapshot,
        "findings": [],
        "errors": 0,
    }
    assert org.post("ci-shop", "/attestations", body).status_code == 201
    failing = {**body, "subject": image.replace("5e", "6f")}
    failing["findings"] = [
        {"rule_id": "pss.privileged", "severity": "critical", "fingerprint": "ab" * 16, "blocking": True}
    ]
    assert org.post("ci-shop", "/attestations", failing).json()["decision"] == "fail"
    monkeypatch.setenv("DUTYGUARD_TOKEN", org.tokens["cluster-prod-eu"])
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    with threaded(create_app(runtime=org.rt)) as url:
        gate_client.pull(url, tmp_path / "state", attestations=True)
    index = load_index(tmp_path / "state" / "attestations", keyring(org))
    assert index.refused == ()
    assert set(index.by_digest) == {"sha256:" + "5e" * 32}  # the failing image has no passing attestation
