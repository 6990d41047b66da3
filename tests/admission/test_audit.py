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
    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.statuses: list[int] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = stub.statuses.pop(0) if stub.statuses else 202
                if self.path == API_PATH and status < 300:
                    stub.batches.append(json.loads(body))
                    stub.headers.append(dict(self.headers))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
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


def test_a_refused_batch_is_dropped_and_counted(stub: Stub) -> None:
    s = shipper(stub)
    record(s, True, "d1")
    stub.statuses = [403]
    assert s.flush_once() == "dropped"
    assert s.depth == 0
    assert s.metrics.audit_dropped.value("refused") == 1


def test_a_full_queue_drops_samples_before_denials_and_says_so(stub: Stub) -> None:
    s = shipper(stub, max_queue=3, allow_sample_rate=1.0)
    for i in range(3):
        record(s, False, f"a{i}")
    record(s, True, "d1")  # displaces the oldest sample
    record(s, True, "d2")
    record(s, True, "d3")
    record(s, True, "d4")  # the queue holds only denials now: this one is dropped
    record(s, False, "a9")  # and a sample never displaces anything
    assert s.flush_once() == "sent"
    batch = stub.batches[0]
    assert [e["uid"] for e in batch["decisions"]] == ["d1", "d2", "d3"]
    assert batch["dropped"] == {"displaced_sample": 3, "queue_full": 2}
    assert s.metrics.audit_dropped.value("queue_full") == 2


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
    def post(batch: dict[str, Any]) -> int:
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
