"""The audit shipper against the real control plane (FastAPI app, SQLite and PostgreSQL) over HTTPS:
a lost acknowledgement, a revoked token, hostile text in a decision. Each decision must reach the
trail exactly once, whatever happened on the way."""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from dutyguard.admission.audit import LIST_LIMITS, MAX_BATCH_DECISIONS, MAX_TEXT, AuditOptions, AuditShipper
from dutyguard.admission.certs import CertFiles
from dutyguard.admission.decide import Decider
from dutyguard.admission.metrics import AdmissionMetrics
from dutyguard.admission.review import parse_review
from dutyguard.admission.signed import token_from_file
from dutyguard.admission.state import StateView, builtin_state
from dutyguard.rules import default_registry
from dutyguard.server.app import create_app
from tests.admission.live_cp import LossyProxy, https_control_plane
from tests.admission.support import pod_request, review
from tests.server.conftest import Org
from tests.server.live import threaded

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
DECIDER = Decider(default_registry())


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop"},
        "spec": {
            "containers": [
                {"name": "c", "image": "registry.example/a:1", "securityContext": {"privileged": True}}
            ]
        },
    }


def _deny(s: AuditShipper, uid: str, **request: Any) -> None:
    req = parse_review(review(pod_request(_pod(request.pop("name", "web")), uid=uid, **request)))
    view = StateView(builtin_state())
    s.record(req, DECIDER.decide(req, view), view, NOW)


def _denied_uids(org: Org) -> list[str]:
    return sorted(e["details"]["uid"] for e in org.audit(action="admission.deny"))


def test_lost_ack_retry_records_each_decision_once(org: Org, certs: CertFiles) -> None:
    with threaded(create_app(runtime=org.rt)) as upstream, LossyProxy(upstream, certs) as proxy:
        options = AuditOptions(
            url=proxy.url, cluster="prod-eu", allow_sample_rate=0.0, ca_file=str(certs.ca_cert)
        )
        s = AuditShipper(options, lambda: org.tokens["cluster-prod-eu"], AdmissionMetrics())
        _deny(s, "d1")
        _deny(s, "d2")
        proxy.lose = 1
        assert s.flush_once() == "retry"  # stored by the control plane; the answer never came
        held = s.inflight
        assert held is not None
        assert proxy.answers == [(201, proxy.answers[0][1])] and proxy.answers[0][1]["stored"] == 2
        _deny(s, "d3")  # arrives while the batch is being retried: goes in the next one
        assert s.flush_once() == "sent"
        assert s.flush_once() == "sent"
        assert s.flush_once() == "empty"
    # The retry was the same batch, byte for byte, and the control plane knew it.
    assert proxy.bodies[0] == proxy.bodies[1] == held.body
    assert proxy.answers[1][0] == 200 and proxy.answers[1][1]["duplicate"] is True
    assert [json.loads(b)["batchId"] for b in proxy.bodies] == [
        held.batch_id,
        held.batch_id,
        json.loads(proxy.bodies[2])["batchId"],
    ]
    assert json.loads(proxy.bodies[2])["batchId"] != held.batch_id
    assert _denied_uids(org) == ["d1", "d2", "d3"]
    batches = org.audit(action="admission.batch")
    assert [b["details"]["batch"] for b in batches] == [held.batch_id, json.loads(proxy.bodies[2])["batchId"]]


def test_a_batch_sent_twice_at_once_is_stored_once(org: Org) -> None:
    # A retry can overtake the attempt it repeats (the first one timed out on the webhook's side
    # but is still being written): the two race inside the control plane.
    s = AuditShipper(
        AuditOptions(url="http://unused", cluster="prod-eu"),
        lambda: "t",
        AdmissionMetrics(),
        post=lambda b, t: 503,
    )
    for i in range(400):
        _deny(s, f"d{i}", name=f"p{i}")
    assert s.flush_once() == "retry"
    batch = s.inflight
    assert batch is not None and batch.decisions == 400
    headers = {"Authorization": f"Bearer {org.tokens['cluster-prod-eu']}", "Content-Type": "application/json"}
    answers: list[int] = []
    with threaded(create_app(runtime=org.rt)) as url:
        start = threading.Barrier(2)

        def send() -> None:
            start.wait()
            r = httpx.post(
                f"{url}/api/v1/admission/decisions", content=batch.body, headers=headers, timeout=120
            )
            answers.append(r.status_code)

        threads = [threading.Thread(target=send) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert sorted(answers) == [200, 201]
    assert _denied_uids(org) == sorted(f"d{i}" for i in range(400))
    assert len(org.audit(action="admission.batch")) == 1


def _cluster_token_id(org: Org) -> str:
    r = org.get("admin", "/tokens", identity="cluster-prod-eu")
    assert r.status_code == 200, r.json()
    (item,) = [t for t in r.json()["items"] if t["state"] == "active"]
    return str(item["id"])


def test_revoked_token_keeps_decisions_spooled_until_fixed(
    org: Org, certs: CertFiles, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(org.tokens["cluster-prod-eu"] + "\n")
    metrics = AdmissionMetrics()
    with https_control_plane(create_app(runtime=org.rt), certs) as url:
        # A long first wait after a refusal: only noticing the new token can make the test finish.
        options = AuditOptions(
            url=url,
            cluster="prod-eu",
            allow_sample_rate=0.0,
            ca_file=str(certs.ca_cert),
            flush_seconds=0.05,
            credential_backoff_seconds=300,
            max_backoff_seconds=300,
            token_poll_seconds=0.05,
        )
        s = AuditShipper(options, token_from_file(token_file), metrics)
        assert org.delete("admin", f"/tokens/{_cluster_token_id(org)}").status_code == 200
        _deny(s, "d1")
        _deny(s, "d2")
        assert s.flush_once() == "unauthorized"
        held = s.inflight
        _deny(s, "d3")
        assert s.flush_once() == "unauthorized"
        assert s.inflight == held and s.depth == 3
        assert metrics.audit_credentials_rejected.value() == 1
        assert metrics.audit_dropped.value("malformed") == 0 and metrics.audit_dropped.value("refused") == 0
        assert _denied_uids(org) == []
        refusals = org.audit(action="auth.failed", actor="cluster-prod-eu")
        assert refusals and refusals[-1]["details"]["reason"] == "revoked token"
        s.start()
        try:
            _wait(lambda: metrics.audit_batches.value("unauthorized") >= 3)  # the thread backs off
            _deny(s, "d4")
            # The operator issues a new token and updates the Secret: no restart.
            fresh = org.post("admin", "/tokens", {"identity": "cluster-prod-eu", "description": "rotated"})
            assert fresh.status_code == 201, fresh.json()
            token_file.write_text(fresh.json()["token"] + "\n")
            _wait(lambda: len(_denied_uids(org)) == 4)
        finally:
            s.stop()
    assert _denied_uids(org) == ["d1", "d2", "d3", "d4"]
    assert metrics.audit_credentials_rejected.value() == 0
    assert s.depth == 0 and metrics.audit_dropped.value("shutdown") == 0
    assert org.audit(action="admission.batch")[0]["details"]["batch"] == held.batch_id  # type: ignore[union-attr]


def _wait(cond: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def test_hostile_text_in_a_decision_cannot_poison_a_batch(org: Org) -> None:
    # A request that is not from the API server can carry anything the parser lets through: a
    # lone surrogate in a user name, hundreds of 2,000-character group names. The trail refuses
    # lone surrogates, texts over 1,024 characters and more than 256 groups; one such decision
    # must not get the whole batch refused (nor retried forever ahead of every later decision).
    with threaded(create_app(runtime=org.rt)) as url:
        s = AuditShipper(
            AuditOptions(url=url, cluster="prod-eu", allow_sample_rate=0.0),
            lambda: org.tokens["cluster-prod-eu"],
            AdmissionMetrics(),
            rng=random.Random(1),
        )
        _deny(s, "ok-1")
        user = {"username": "mallory\ud800", "groups": [f"g{i:03}-" * 400 for i in range(400)]}
        _deny(s, "odd-1", userInfo=user)
        _deny(s, "ok-2")
        assert s.flush_once() == "sent"
    assert _denied_uids(org) == ["odd-1", "ok-1", "ok-2"]
    (odd,) = [e for e in org.audit(action="admission.deny") if e["details"]["uid"] == "odd-1"]
    assert odd["details"]["user"] == "mallory?"


def test_shipper_limits_match_the_control_plane_schema() -> None:
    from dutyguard.server.state_schemas import MAX_BATCH_DECISIONS as SERVER_MAX
    from dutyguard.server.state_schemas import AdmissionDecision

    assert MAX_BATCH_DECISIONS == SERVER_MAX
    schema = AdmissionDecision.model_json_schema()["properties"]
    for name, limit in LIST_LIMITS.items():
        assert schema[name]["maxItems"] == limit, name
    for name in ("kind", "group", "namespace", "name", "user"):
        assert schema[name]["maxLength"] == MAX_TEXT, name
