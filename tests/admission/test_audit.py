"""Decisions to the control plane's audit trail: batched, off the request path, against a stub server.

The stub is a real HTTP server on loopback that records what it receives and answers with the
status codes a test scripts, so the wire format and the retry behaviour are checked end to end.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dutyguard.admission.audit import API_PATH, AuditOptions, AuditShipper
from dutyguard.admission.decide import Decider
from dutyguard.admission.metrics import AdmissionMetrics
from dutyguard.admission.review import parse_review
from dutyguard.admission.state import StateView, builtin_state
from dutyguard.rules import default_registry
from tests.admission.support import pod_request, review

DECIDER = Decider(default_registry())
NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


class Stub:
    """The control plane's decisions route over real HTTP: every attempt's raw body is kept, and
    the answers are scripted (``statuses``, then ``default_status``)."""

    def __init__(self, default_status: int = 202) -> None:
        self.batches: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int] = []
        self.attempts: list[bytes] = []
        self.stored: list[bytes] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stub.attempts.append(body)
                status = stub.statuses.pop(0) if stub.statuses else default_status
                if self.path == API_PATH and status < 300:
                    stub.stored.append(body)
                    stub.batches.append(json.loads(body))
                    stub.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Stub]:
    s = Stub()
    yield s
    s.close()


def shipper(stub: Stub, **kw: Any) -> AuditShipper:
    options = AuditOptions(url=stub.url, cluster="prod-1", **kw)
    return AuditShipper(options, lambda: "cluster-token", AdmissionMetrics(), rng=random.Random(7))


def pod(privileged: bool) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "containers": [
                {"name": "c", "image": "registry.example/a:1", "securityContext": {"privileged": privileged}}
            ]
        },
    }


def record(s: AuditShipper, privileged: bool, uid: str) -> None:
    req = parse_review(review(pod_request(pod(privileged), uid=uid)))
    view = StateView(builtin_state())
    s.record(req, DECIDER.decide(req, view), view, NOW)


def test_denials_are_always_sent_and_allows_counted(stub: Stub) -> None:
    s = shipper(stub, allow_sample_rate=0.0)
    record(s, True, "deny-1")
    for i in range(5):
        record(s, False, f"allow-{i}")
    assert s.flush_once() == "sent"

    (batch,) = stub.batches
    assert stub.headers[0]["Authorization"] == "Bearer cluster-token"
    assert batch["apiVersion"] == "dutyguard.dev/v1"
    assert batch["kind"] == "AdmissionDecisionBatch"
    assert batch["cluster"] == "prod-1"
    assert batch["allowsCounted"] == {"count": 5, "since": "2026-05-01T12:00:00.000000Z"}
    (event,) = batch["decisions"]
    assert event["uid"] == "deny-1"
    assert event["outcome"] == "deny"
    assert event["deniedRules"] == ["pss.privileged"]
    assert event["user"] == "alice"
    assert event["policy"]["signed"] is False
    assert {f["rule"] for f in event["findings"] if f["action"] == "deny"} == {"pss.privileged"}
    assert all(len(f["fingerprint"]) == 32 for f in event["findings"])
    assert s.metrics.audit_sent.value() == 1
    assert s.flush_once() == "empty"  # the count was delivered: nothing left


def test_allows_are_sampled(stub: Stub) -> None:
    s = shipper(stub, allow_sample_rate=0.5)
    for i in range(200):
        record(s, False, f"a{i}")
    assert s.flush_once() == "sent"
    sampled = stub.batches[0]["decisions"]
    assert 60 < len(sampled) < 140  # seeded: about half
    assert all(e["sampled"] is True and e["outcome"] == "allow" for e in sampled)
    assert stub.batches[0]["allowsCounted"]["count"] == 200


def test_server_errors_keep_the_batch_for_a_retry(stub: Stub) -> None:
    s = shipper(stub)
    record(s, True, "d1")
    stub.statuses = [503]
    assert s.flush_once() == "retry"
    assert stub.batches == []
    assert s.depth == 1
    assert s.flush_once() == "sent"
    assert [e["uid"] for e in stub.batches[0]["decisions"]] == ["d1"]


def test_unreachable_control_plane_keeps_the_batch() -> None:
    options = AuditOptions(url="http://127.0.0.1:9", cluster="c", timeout_seconds=1)
    s = AuditShipper(options, lambda: "t", AdmissionMetrics())
    record(s, True, "d1")
    assert s.flush_once() == "retry"
    assert s.depth == 1


def test_a_retry_sends_the_same_batch_id_and_bytes(stub: Stub) -> None:
    # The control plane stores a batch id once: a retry must be the same batch, or a batch whose
    # answer was lost would be stored twice. What arrives meanwhile waits for the next batch.
    s = shipper(stub)
    record(s, True, "d1")
    stub.statuses = [503, 502]
    assert s.flush_once() == "retry"
    first = s.inflight
    assert first is not None
    record(s, True, "d2")
    assert s.flush_once() == "retry"
    assert s.inflight == first
    assert s.flush_once() == "sent"
    assert s.flush_once() == "sent"
    assert [[e["uid"] for e in b["decisions"]] for b in stub.batches] == [["d1"], ["d2"]]
    assert stub.batches[0]["batchId"] == first.batch_id
    assert json.loads(first.body) == stub.batches[0]
    assert stub.batches[1]["batchId"] != first.batch_id


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_malformed_batch_is_dropped_counted_and_reported(
    stub: Stub, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    s = shipper(stub, allow_sample_rate=0.0)
    record(s, True, "d1")
    record(s, False, "a1")
    stub.statuses = [status]
    assert s.flush_once() == "malformed"
    assert s.depth == 0
    assert s.metrics.audit_dropped.value("malformed") == 1
    assert s.metrics.audit_batches.value("malformed") == 1
    (line,) = [r for r in caplog.records if r.levelname == "ERROR"]
    assert f"HTTP {status}" in line.getMessage()
    record(s, True, "d2")
    assert s.flush_once() == "sent"
    (batch,) = stub.batches
    assert [e["uid"] for e in batch["decisions"]] == ["d2"]
    # The trail says what it misses, and the allow counted in the dropped batch still counts.
    assert batch["dropped"] == {"malformed": 1}
    assert batch["allowsCounted"]["count"] == 1


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_keep_the_batch_and_raise_the_alarm(stub: Stub, status: int) -> None:
    s = shipper(stub)
    record(s, True, "d1")
    stub.statuses = [status, status]
    assert s.flush_once() == "unauthorized"
    held = s.inflight
    record(s, True, "d2")
    assert s.flush_once() == "unauthorized"
    assert s.inflight == held
    assert s.depth == 2
    assert s.metrics.audit_credentials_rejected.value() == 1
    assert "dutyguard_admission_audit_credentials_rejected 1" in s.metrics.render().decode()
    assert s.metrics.audit_dropped.value("refused") == 0 and s.metrics.audit_dropped.value("malformed") == 0
    assert s.flush_once() == "sent"
    assert s.flush_once() == "sent"
    assert [e["uid"] for b in stub.batches for e in b["decisions"]] == ["d1", "d2"]
    assert s.metrics.audit_credentials_rejected.value() == 0


def test_other_client_errors_are_retried_not_dropped(stub: Stub) -> None:
    # 404 (a control plane without the route yet), 409, 410: nothing says the batch is wrong.
    s = shipper(stub)
    record(s, True, "d1")
    stub.statuses = [404, 409]
    assert s.flush_once() == "retry"
    assert s.flush_once() == "retry"
    assert s.flush_once() == "sent"
    assert [e["uid"] for e in stub.batches[0]["decisions"]] == ["d1"]


def test_a_missing_token_file_is_a_credential_problem(tmp_path: Path) -> None:
    from dutyguard.admission.signed import token_from_file

    posted: list[bytes] = []

    def post(body: bytes, token: str) -> int:
        posted.append(body)
        return 201

    options = AuditOptions(url="http://127.0.0.1:9", cluster="c")
    s = AuditShipper(options, token_from_file(tmp_path / "token"), AdmissionMetrics(), post=post)
    record(s, True, "d1")
    assert s.flush_once() == "unauthorized"
    assert posted == [] and s.depth == 1
    (tmp_path / "token").write_text("t\n")
    assert s.flush_once() == "sent"
    assert len(posted) == 1


def test_a_full_spool_drops_samples_first_then_the_oldest_and_says_so(
    stub: Stub, caplog: pytest.LogCaptureFixture
) -> None:
    s = shipper(stub, max_queue=3, allow_sample_rate=1.0)
    for i in range(3):
        record(s, False, f"a{i}")
    record(s, True, "d1")  # displaces the oldest sample
    record(s, True, "d2")
    record(s, True, "d3")
    record(s, True, "d4")  # the spool holds only must-send decisions now: the oldest (d1) goes
    record(s, False, "a9")  # and a sample never displaces anything
    assert s.flush_once() == "sent"
    batch = stub.batches[0]
    assert [e["uid"] for e in batch["decisions"]] == ["d2", "d3", "d4"]
    assert batch["dropped"] == {"displaced_sample": 3, "queue_full": 2}
    assert s.metrics.audit_dropped.value("queue_full") == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "dropped the oldest" in errors[0]


def test_batches_stay_under_the_byte_limit_and_keep_the_order(stub: Stub) -> None:
    s = shipper(stub, max_batch_bytes=6000)
    for i in range(12):
        record(s, True, f"d{i}")
    while s.flush_once() == "sent":
        pass
    assert len(stub.batches) > 2
    assert [e["uid"] for b in stub.batches for e in b["decisions"]] == [f"d{i}" for i in range(12)]
    assert all(len(json.dumps(b, separators=(",", ":"))) <= 6000 for b in stub.batches)


def test_one_decision_larger_than_the_byte_limit_still_goes_alone(stub: Stub) -> None:
    s = shipper(stub, max_batch_bytes=100)
    record(s, True, "d1")
    record(s, True, "d2")
    assert s.flush_once() == "sent"
    assert s.flush_once() == "sent"
    assert [[e["uid"] for e in b["decisions"]] for b in stub.batches] == [["d1"], ["d2"]]


def test_background_thread_ships_batches_and_flushes_on_stop(stub: Stub) -> None:
    s = shipper(stub, flush_seconds=0.05, batch_size=10)
    s.start()
    try:
        for i in range(25):
            record(s, True, f"d{i}")
        deadline = time.monotonic() + 5
        while sum(len(b["decisions"]) for b in stub.batches) < 25 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        s.stop()
    uids = [e["uid"] for b in stub.batches for e in b["decisions"]]
    assert uids == [f"d{i}" for i in range(25)]
    assert all(len(b["decisions"]) <= 10 for b in stub.batches)


def test_recording_never_touches_the_network() -> None:
    # The request path only queues; sending happens in flush_once (the background thread).
    def post(body: bytes, token: str) -> int:
        raise AssertionError("network used on the request path")

    options = AuditOptions(url="http://127.0.0.1:9", cluster="c", max_queue=50)
    s = AuditShipper(options, lambda: "t", AdmissionMetrics(), post=post)
    for i in range(500):
        record(s, True, f"d{i}")
    assert s.depth == 50
    assert s.metrics.audit_dropped.value("queue_full") == 450


def test_fail_mode_decisions_are_always_sent_but_a_stale_verified_state_is_sampled() -> None:
    from dataclasses import replace

    from dutyguard.admission.audit import must_send
    from dutyguard.admission.decide import Decision, Outcome

    signed = replace(builtin_state(), signed=True, bundle_version=3)
    assert must_send(Decision(Outcome.ALLOW, state=None, state_problem="no verified policy state yet"))
    assert must_send(Decision(Outcome.ALLOW, state=builtin_state(), state_problem="bundle expired"))
    assert not must_send(Decision(Outcome.ALLOW, state=signed, state_problem="control plane unreachable"))
    assert must_send(Decision(Outcome.DENY, state=signed))
