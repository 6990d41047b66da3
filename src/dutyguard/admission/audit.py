"""Decisions to the control plane's audit trail, in batches, off the request path.

The request path only appends to a bounded queue (:meth:`AuditShipper.record` never blocks
and never raises); one background thread drains it, POSTs batches and retries with backoff.
What is sent:

* every denial, every decision that used an exception, every decision taken without a
  verified state (fail mode) — always, never sampled;
* allowed decisions are *counted* (per batch, ``allowsCounted``) and a sample of them
  (``allow_sample_rate``) is sent in full, so the trail shows the volume without the cost.

When the queue is full, sampled allows are refused first (they are only a sample); a
must-send decision displaces the oldest queued sample, and is dropped only when the queue
holds nothing but must-send decisions. Every drop is counted in the metrics and reported in
the next batch (``dropped``), so the trail itself says when it is incomplete.

The wire format (``POST <control plane>/api/v1/admission/decisions``, bearer token of a
``cluster`` identity) is documented in docs/admission.md; the control plane answers 2xx when
the batch is stored. 4xx other than 408/429 is permanent (the batch is dropped and counted);
anything else is retried with exponential backoff, the batch kept at the head of the queue.
"""

from __future__ import annotations

import collections
import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from dutyguard.admission.decide import Decision, Outcome
from dutyguard.admission.metrics import AdmissionMetrics
from dutyguard.admission.review import AdmissionRequest
from dutyguard.admission.state import StateView

logger = logging.getLogger("dutyguard.admission")

API_PATH = "/api/v1/admission/decisions"
BATCH_KIND = "AdmissionDecisionBatch"
BATCH_API_VERSION = "dutyguard.dev/v1"


@dataclass(frozen=True, slots=True)
class AuditOptions:
    url: str
    """Base URL of the control plane (``https://dutyguard.example.com``)."""
    cluster: str
    webhook: str = "dutyguard-admission"
    max_queue: int = 10_000
    batch_size: int = 500
    flush_seconds: float = 2.0
    allow_sample_rate: float = 0.01
    timeout_seconds: float = 5.0
    max_backoff_seconds: float = 60.0
    ca_file: str | None = None
    """CA bundle to verify the control plane with (default: the system's)."""


def _time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def decision_event(
    request: AdmissionRequest, d: Decision, view: StateView, now: datetime, sampled: bool
) -> dict[str, Any]:
    """One decision as the control plane stores it."""
    state = d.state
    findings: list[dict[str, Any]] = []
    for action, found in (("deny", d.denied), ("warn", d.warned), ("audit", d.audited)):
        findings.extend(
            {
                "rule": f.rule_id,
                "severity": f.severity.value,
                "field": f.location.field,
                "container": f.location.container,
                "fingerprint": f.fingerprint,
                "action": action,
            }
            for f in found
        )
    exceptions = [
        {
            "id": w.exception_id,
            "rule": f.rule_id,
            "fingerprint": f.fingerprint,
            "field": f.location.field,
            "expires": _time(w.expires),
        }
        for f, w in d.waived
    ]
    s = d.subject
    return {
        "uid": request.uid,
        "time": _time(now),
        "operation": request.operation.value,
        "subResource": request.sub_resource or None,
        "kind": request.kind.kind,
        "group": request.kind.group,
        "namespace": request.namespace or (s.namespace if s else ""),
        "name": request.name or (s.name if s else ""),
        "user": request.user.username,
        "groups": list(request.user.groups),
        "dryRun": request.dry_run,
        "outcome": d.outcome.value,
        "allowed": d.allowed,
        "reason": d.reason or None,
        "deniedRules": sorted({f.rule_id for f in d.denied}),
        "findings": findings,
        "exceptions": exceptions,
        "errors": list(d.errors),
        "images": list(s.images) if s else [],
        "policy": None
        if state is None
        else {
            "label": state.label,
            "signed": state.signed,
            "bundleVersion": state.bundle_version,
            "bundleDigest": state.bundle_digest,
            "snapshotVersion": state.snapshot_version,
        },
        "stateProblem": d.state_problem or view.problem or None,
        "sampled": sampled,
    }


def must_send(d: Decision) -> bool:
    """Denials, exception uses, and anything decided without a verified state (a fail mode).

    A verified state that is merely stale (the last pull failed) is still verified: its allows
    are sampled as usual, or an outage would flood the queue and crowd out the denials.
    """
    unverified = d.state is None or not d.state.signed
    return d.outcome is Outcome.DENY or bool(d.waived) or (bool(d.state_problem) and unverified)


class AuditShipper:
    """The :class:`~dutyguard.admission.app.DecisionSink` that feeds the control plane."""

    def __init__(
        self,
        options: AuditOptions,
        token: Callable[[], str],
        metrics: AdmissionMetrics,
        *,
        post: Callable[[dict[str, Any]], int] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self._token = token
        self.metrics = metrics
        self._post = post or self._http_post
        self._rng = rng or random.Random()  # noqa: S311 - sampling, not security
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        # (must_send, event); bounded by options.max_queue, enforced in record()
        self._queue: collections.deque[tuple[bool, dict[str, Any]]] = collections.deque()
        self._samples = 0
        self._allows_counted = 0
        self._allows_since: str | None = None
        self._dropped: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self.batches_sent = 0

    # --- request path --------------------------------------------------------------------------
    def record(self, request: AdmissionRequest, decision: Decision, view: StateView, now: datetime) -> None:
        important = must_send(decision)
        sampled = False
        if not important:
            with self._lock:
                self._allows_counted += 1
                if self._allows_since is None:
                    self._allows_since = _time(now)
            self.metrics.allows_counted.inc()
            if self._rng.random() >= self.options.allow_sample_rate:
                return
            sampled = True
        event = decision_event(request, decision, view, now, sampled)
        with self._lock:
            if len(self._queue) >= self.options.max_queue and not self._make_room(important):
                self._drop("queue_full")
                return
            self._queue.append((important, event))
            if not important:
                self._samples += 1
            if len(self._queue) >= self.options.batch_size:
                self._wake.set()

    def _make_room(self, important: bool) -> bool:
        """Under the lock: evict the oldest sampled allow for a must-send decision."""
        if not important or self._samples == 0:
            return False
        for i, (must, _) in enumerate(self._queue):
            if not must:
                del self._queue[i]
                self._samples -= 1
                self._drop("displaced_sample")
                return True
        return False

    def _drop(self, reason: str, n: int = 1) -> None:
        self._dropped[reason] = self._dropped.get(reason, 0) + n
        self.metrics.audit_dropped.inc(reason, amount=n)

    @property
    def depth(self) -> int:
        return len(self._queue)

    # --- background ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="dutyguard-audit", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what is queued (best effort within ``timeout``) and stop."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        self._thread = None
        with self._lock:
            left = len(self._queue)
        if left:  # the control plane was unreachable to the end: say how much the trail misses
            self.metrics.audit_dropped.inc("shutdown", amount=left)
            logger.error("stopping with %d decision(s) not delivered to the audit trail", left)
        if self._client is not None:
            self._client.close()
            self._client = None

    def _run(self) -> None:
        backoff = 0.0
        while True:
            if backoff:
                self._wake.wait(backoff)
            else:
                self._wake.wait(self.options.flush_seconds)
            self._wake.clear()
            stopping = self._stopping.is_set()
            while True:
                outcome = self.flush_once()
                if outcome == "retry":
                    backoff = min(max(backoff * 2, 0.5), self.options.max_backoff_seconds)
                    break
                backoff = 0.0
                if outcome == "empty" or not self._queue:
                    break
            if stopping and (outcome == "empty" or outcome == "retry" or not self._queue):
                return

    def flush_once(self) -> str:
        """Send one batch: ``sent``, ``empty``, ``dropped`` (refused for good) or ``retry``."""
        with self._lock:
            n = min(len(self._queue), self.options.batch_size)
            counted, since = self._allows_counted, self._allows_since
            if n == 0 and counted == 0 and not self._dropped:
                return "empty"
            items = [self._queue[i] for i in range(n)]
            dropped = dict(self._dropped)
        batch = {
            "apiVersion": BATCH_API_VERSION,
            "kind": BATCH_KIND,
            "batchId": str(uuid.uuid4()),
            "cluster": self.options.cluster,
            "webhook": self.options.webhook,
            "sentAt": _time(datetime.now(UTC)),
            "decisions": [event for _, event in items],
            "allowsCounted": {"count": counted, "since": since},
            "dropped": dropped,
        }
        try:
            status = self._post(batch)
        except Exception as e:  # network errors: keep the batch, try again later
            logger.warning("audit trail unreachable (%s); %d decision(s) kept for retry", e, len(self._queue))
            return "retry"
        if 200 <= status < 300 or (400 <= status < 500 and status not in (408, 429)):
            with self._lock:
                for _ in range(n):
                    must, _ev = self._queue.popleft()
                    if not must:
                        self._samples -= 1
                self._allows_counted -= counted
                if self._allows_counted == 0:
                    self._allows_since = None
                for reason, k in dropped.items():
                    left = self._dropped.get(reason, 0) - k
                    if left > 0:
                        self._dropped[reason] = left
                    else:
                        self._dropped.pop(reason, None)
            if 200 <= status < 300:
                self.metrics.audit_sent.inc(amount=n)
                self.batches_sent += 1
                return "sent"
            logger.error("control plane refused a batch of %d decision(s) with HTTP %d; dropped", n, status)
            self.metrics.audit_dropped.inc("refused", amount=n)
            return "dropped"
        logger.warning("control plane answered HTTP %d to an audit batch; will retry", status)
        return "retry"

    def _http_post(self, batch: dict[str, Any]) -> int:
        import httpx

        if self._client is None:
            verify: Any = self.options.ca_file if self.options.ca_file else True
            self._client = httpx.Client(
                base_url=self.options.url, timeout=self.options.timeout_seconds, verify=verify
            )
        body = json.dumps(batch, separators=(",", ":")).encode()
        r = self._client.post(
            API_PATH,
            content=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._token()}"},
        )
        return int(r.status_code)
