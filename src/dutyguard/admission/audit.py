"""Decisions to the control plane's audit trail, in batches, off the request path.

The request path only appends to a bounded spool (:meth:`AuditShipper.record` never blocks
and never raises); one background thread drains it, POSTs batches and retries with backoff.
What is sent:

* every denial, every decision that used an exception, every decision taken without a
  verified state (fail mode) — always, never sampled;
* allowed decisions are *counted* (per batch, ``allowsCounted``) and a sample of them
  (``allow_sample_rate``) is sent in full, so the trail shows the volume without the cost.

A decision is never lost silently. When the spool is full, sampled allows go first (a new
sample is refused, a must-send decision displaces the oldest sample); when it holds nothing but
must-send decisions, the *oldest* is dropped for the new one. Every drop is counted in the
metrics, logged at error level (at the 1st, 2nd, 4th, 8th… of a run, so a flood cannot flood
the log) and reported in the next batch (``dropped``), so the trail itself says when it is
incomplete.

A batch is built once and then frozen: its id and its bytes stay the same on every retry, so
the control plane, which stores a batch id once, acknowledges a retry whose first attempt it
had stored but whose answer was lost (a timeout, a dropped connection) without recording its
decisions twice. New decisions go into later batches. What the answer means:

* 2xx: stored (201) or already stored (200); the next batch is built;
* 401 / 403 (the token was revoked, rotated or expired, the identity lost its role or its
  cluster): the batch is **kept**, and decisions keep spooling behind it; the
  ``audit_credentials_rejected`` gauge is 1 and every attempt logs an error; retried with
  backoff from ``credential_backoff_seconds`` to ``max_backoff_seconds``, and at once when the
  token file changes, so the backlog arrives as soon as the operator fixes the credential;
* 400, 413, 422 (the batch itself is malformed): permanent; dropped, logged with its id, and
  counted (``malformed``) in the metrics and in the next batch;
* anything else (network errors, 408, 429, 5xx, other 4xx): kept and retried with exponential
  backoff.

Every event is clipped to what the control plane's schema accepts (1,024 characters per text,
bounded lists, no lone surrogates) and a batch stays under ``max_batch_bytes``: one odd decision
must not make a whole batch malformed, nor an oversized batch be refused. The wire format is
documented in docs/admission.md.

With a spool directory (``spool_dir``, ``--spool-dir``; the files are described in
:mod:`dutyguard.admission.journal`) the must-send decisions also survive the process:

* ``record`` serialises a must-send event once and appends it to the journal, under the lock, so
  sequence order is queue order; the batch later carries those same bytes. Sampled allows and the
  counters are not journaled;
* a batch that carries journaled decisions (or drop counts) is saved as ``inflight`` before its
  first POST, then the acknowledged sequence moves past it (``acked``); a 2xx or a malformed-drop
  removes ``inflight``; once everything journaled is acknowledged the journal is emptied, and a
  journal that keeps growing under load is rotated into ``journal.old``;
* the acknowledged sequence is, between batches, just below the first journaled decision still in
  the queue (or the last one written, when none is): everything below it was batched and saved, or
  dropped as the oldest of a full spool and counted. A batch that could not be saved holds it below
  its own decisions until it is answered;
* on start the saved batch is resent first, with its id and bytes (a batch the control plane
  stored before the crash is answered 200 and not stored twice), then the journaled decisions past
  the acknowledged sequence are queued again, in order.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dutyguard.admission.decide import Decision, Outcome
from dutyguard.admission.journal import MAX_RECORD_BYTES, SavedBatch, Spool
from dutyguard.admission.metrics import AdmissionMetrics
from dutyguard.admission.review import AdmissionRequest
from dutyguard.admission.state import StateView

logger = logging.getLogger("dutyguard.admission")

API_PATH = "/api/v1/admission/decisions"
BATCH_KIND = "AdmissionDecisionBatch"
BATCH_API_VERSION = "dutyguard.dev/v1"

CREDENTIALS_REFUSED = frozenset({401, 403})
MALFORMED = frozenset({400, 413, 422})

# What the control plane's AdmissionDecision schema accepts (server/state_schemas.py; a test
# checks the two agree).
MAX_TEXT = 1024
MAX_BATCH_DECISIONS = 1000
LIST_LIMITS = {
    "groups": 256,
    "deniedRules": 1000,
    "findings": 1000,
    "exceptions": 1000,
    "errors": 256,
    "images": 256,
}


@dataclass(frozen=True, slots=True)
class AuditOptions:
    url: str
    """Base URL of the control plane (``https://dutyguard.example.com``)."""
    cluster: str
    webhook: str = "dutyguard-admission"
    max_queue: int = 10_000
    """Decisions spooled while the control plane is unavailable (plus one batch in flight)."""
    batch_size: int = 500
    max_batch_bytes: int = 4 * 1024 * 1024
    """Below the control plane's 8 MiB for this route; lower it behind a proxy with a smaller limit."""
    flush_seconds: float = 2.0
    allow_sample_rate: float = 0.01
    timeout_seconds: float = 5.0
    max_backoff_seconds: float = 60.0
    credential_backoff_seconds: float = 5.0
    """First wait after a 401/403: a credential does not fix itself in half a second."""
    token_poll_seconds: float = 1.0
    """While the credential is refused, how often the token is re-read to notice a fix."""
    ca_file: str | None = None
    """CA bundle to verify the control plane with (default: the system's)."""
    spool_dir: Path | None = None
    """Journal must-send decisions here, so they survive a crash or a restart (docs/admission.md)."""
    spool_max_bytes: int | None = None
    """Bound of the journal on disk; by default 4 KiB per decision of ``max_queue`` (40 MiB)."""

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH_DECISIONS:
            raise ValueError(f"batch_size must be 1-{MAX_BATCH_DECISIONS} (the control plane's limit)")
        if self.spool_max_bytes is not None and self.spool_max_bytes < 64 * 1024:
            raise ValueError("spool_max_bytes must be at least 64 KiB")

    @property
    def journal_bytes(self) -> int:
        return self.spool_max_bytes or max(self.max_queue * 4096, 1024 * 1024)


_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode
"""An event as compact JSON: one encoder for every call, no cycle check (events are trees)."""


def _time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _text(value: str) -> str:
    """A string the control plane stores as it is: valid UTF-8, at most :data:`MAX_TEXT` characters."""
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate becomes '?'
    return value if len(value) <= MAX_TEXT else value[: MAX_TEXT - 1] + "…"


def _opt(value: str | None) -> str | None:
    return None if value is None else _text(value)


def decision_event(
    request: AdmissionRequest, d: Decision, view: StateView, now: datetime, sampled: bool
) -> dict[str, Any]:
    """One decision as the control plane stores it (clipped to what it accepts)."""
    state = d.state
    findings: list[dict[str, Any]] = []
    for action, found in (("deny", d.denied), ("warn", d.warned), ("audit", d.audited)):
        findings.extend(
            {
                "rule": f.rule_id,
                "severity": f.severity.value,
                "field": _opt(f.location.field),
                "container": _opt(f.location.container),
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
            "field": _opt(f.location.field),
            "expires": _time(w.expires),
        }
        for f, w in d.waived
    ]
    s = d.subject
    problem = d.state_problem or view.problem
    return {
        "uid": request.uid,
        "time": _time(now),
        "operation": request.operation.value,
        "subResource": _text(request.sub_resource) if request.sub_resource else None,
        "kind": _text(request.kind.kind),
        "group": _text(request.kind.group),
        "namespace": _text(request.namespace or (s.namespace if s else "")),
        "name": _text(request.name or (s.name if s else "")),
        "user": _text(request.user.username),
        "groups": [_text(g) for g in request.user.groups[: LIST_LIMITS["groups"]]],
        "dryRun": request.dry_run,
        "outcome": d.outcome.value,
        "allowed": d.allowed,
        "reason": _text(d.reason) if d.reason else None,
        "deniedRules": sorted({f.rule_id for f in d.denied})[: LIST_LIMITS["deniedRules"]],
        "findings": findings[: LIST_LIMITS["findings"]],
        "exceptions": exceptions[: LIST_LIMITS["exceptions"]],
        "errors": [_text(e) for e in d.errors[: LIST_LIMITS["errors"]]],
        "images": [_text(i) for i in (s.images if s else ())[: LIST_LIMITS["images"]]],
        "policy": None
        if state is None
        else {
            "label": _text(state.label),
            "signed": state.signed,
            "bundleVersion": state.bundle_version,
            "bundleDigest": state.bundle_digest,
            "snapshotVersion": state.snapshot_version,
        },
        "stateProblem": _text(problem) if problem else None,
        "sampled": sampled,
    }


EVENT_KEYS = frozenset(
    {
        "uid",
        "time",
        "operation",
        "subResource",
        "kind",
        "group",
        "namespace",
        "name",
        "user",
        "groups",
        "dryRun",
        "outcome",
        "allowed",
        "reason",
        "deniedRules",
        "findings",
        "exceptions",
        "errors",
        "images",
        "policy",
        "stateProblem",
        "sampled",
    }
)
"""The keys of :func:`decision_event` (a test keeps them equal)."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def replayable(payload: bytes) -> bool:
    """A journaled event, checked before it goes into a batch again. The checksum catches accidents;
    this catches a well-framed line that is not one of our must-send events."""
    try:
        doc = json.loads(payload, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(doc, dict)
        and doc.keys() == EVENT_KEYS
        and isinstance(doc["uid"], str)
        and 0 < len(doc["uid"]) <= 128
        and doc["sampled"] is False
    )


def must_send(d: Decision) -> bool:
    """Denials, exception uses, and anything decided without a verified state (a fail mode).

    A verified state that is merely stale (the last pull failed) is still verified: its allows
    are sampled as usual, or an outage would flood the queue and crowd out the denials.
    """
    unverified = d.state is None or not d.state.signed
    return d.outcome is Outcome.DENY or bool(d.waived) or (bool(d.state_problem) and unverified)


@dataclass(frozen=True, slots=True)
class Batch:
    """One batch, frozen when built: every retry sends these bytes under this id."""

    batch_id: str
    body: bytes
    decisions: int
    allows_counted: int
    allows_since: str | None
    dropped: dict[str, int] = field(default_factory=dict)
    first_seq: int = 0
    """Journal sequence numbers of the first and last journaled decision it carries (0: none)."""
    last_seq: int = 0


_BATCH_KEYS = frozenset(
    {"apiVersion", "kind", "batchId", "cluster", "webhook", "sentAt", "allowsCounted", "dropped", "decisions"}
)


def saved_batch(saved: SavedBatch, options: AuditOptions) -> Batch | tuple[str, str]:
    """The batch of an ``inflight`` file, or (reason, why) it cannot be resent."""
    try:
        doc = json.loads(saved.body, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return "garbage", "not JSON"
    if not isinstance(doc, dict) or doc.keys() != _BATCH_KEYS:
        return "garbage", "not an audit batch"
    if (doc["cluster"], doc["webhook"]) != (options.cluster, options.webhook):
        # The spool's acked file names its owner and was checked: this file was put here.
        # Resending it would be refused forever (403) or misattributed.
        return "foreign", f"a batch of cluster {doc['cluster']!r} (webhook {doc['webhook']!r})"
    batch_id, counted, dropped, decisions = (
        doc["batchId"],
        doc["allowsCounted"],
        doc["dropped"],
        doc["decisions"],
    )
    if (
        doc["apiVersion"] != BATCH_API_VERSION
        or doc["kind"] != BATCH_KIND
        or not isinstance(batch_id, str)
        or not 0 < len(batch_id) <= 64
        or not isinstance(counted, dict)
        or counted.keys() != {"count", "since"}
        or type(counted["count"]) is not int
        or counted["count"] < 0
        or not (counted["since"] is None or isinstance(counted["since"], str))
        or not isinstance(dropped, dict)
        or len(dropped) > 32
        or not all(type(v) is int and v >= 0 for v in dropped.values())
        or not isinstance(decisions, list)
        or len(decisions) > MAX_BATCH_DECISIONS
        or not all(isinstance(e, dict) for e in decisions)
    ):
        return "garbage", "not an audit batch"
    return Batch(
        batch_id=batch_id,
        body=saved.body,
        decisions=len(decisions),
        allows_counted=counted["count"],
        allows_since=counted["since"],
        dropped=dropped,
        last_seq=saved.seq,
    )


Post = Callable[[bytes, str], int]
"""POST a batch body with a bearer token; the HTTP status (raises on network errors)."""


class AuditShipper:
    """The :class:`~dutyguard.admission.app.DecisionSink` that feeds the control plane."""

    def __init__(
        self,
        options: AuditOptions,
        token: Callable[[], str],
        metrics: AdmissionMetrics,
        *,
        post: Post | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self._token = token
        self.metrics = metrics
        self._post = post or self._http_post
        self._rng = rng or random.Random()  # noqa: S311 - sampling, not security
        self._jitter = random.Random()  # noqa: S311 - spreading retries, not security
        self._clock = clock
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        # (must_send, event, journal seq or 0); bounded by options.max_queue, enforced in record().
        # A journaled event is already serialised (the bytes in the journal are the batch's).
        self._queue: collections.deque[tuple[bool, dict[str, Any] | bytes, int]] = collections.deque()
        self._samples = 0
        self._allows_counted = 0
        self._allows_since: str | None = None
        self._dropped: dict[str, int] = {}
        self._lost = 0
        self._inflight: Batch | None = None
        self._refused_token: str | None = None
        self.credentials_rejected = False
        self._backoff = 0.0
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self.batches_sent = 0
        self._spool: Spool | None = None
        self._inflight_saved = False
        self._hold: int | None = None
        if options.spool_dir is not None:
            self._open_spool(options.spool_dir)

    def _open_spool(self, directory: Path) -> None:
        o = self.options
        spool, recovered = Spool.open(
            directory,
            cluster=o.cluster,
            webhook=o.webhook,
            max_bytes=o.journal_bytes,
            max_inflight_bytes=o.max_batch_bytes + MAX_RECORD_BYTES,
            max_records=o.max_queue,
            metrics=self.metrics,
            accept=replayable,
        )
        if recovered.inflight is not None:
            batch = saved_batch(recovered.inflight, o)
            if isinstance(batch, Batch):
                self._inflight, self._inflight_saved = batch, True
                self.metrics.audit_spool_replayed.inc("inflight", amount=batch.decisions)
            else:
                spool.refuse_inflight(*batch)
        self._queue.extend((True, payload, seq) for seq, payload in recovered.records)
        if recovered.records:
            self.metrics.audit_spool_replayed.inc("journal", amount=len(recovered.records))
        if recovered.overflow:
            self._drop("queue_full", recovered.overflow)
            logger.error(
                "audit spool %s: %d journaled decision(s) beyond the spool's bounds were not replayed "
                "(the oldest); counted as queue_full",
                directory,
                recovered.overflow,
            )
        if self._inflight is not None or recovered.records:
            logger.warning(
                "audit spool %s: resending %s and %d journaled decision(s) left by the previous process",
                directory,
                f"batch {self._inflight.batch_id} ({self._inflight.decisions} decision(s)) first"
                if self._inflight is not None
                else "no saved batch",
                len(recovered.records),
            )
        self._spool = spool
        self.metrics.audit_spool_bytes.bind(lambda: float(spool.size))
        self.metrics.audit_spool_decisions.bind(lambda: float(self.on_disk))

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
        event: dict[str, Any] | bytes = decision_event(request, decision, view, now, sampled)
        spool = self._spool if important else None
        if spool is not None:
            event = _encode(event).encode()  # once: the journal and the batch carry these bytes
        lost = 0
        with self._lock:
            seq = spool.append(event) if spool is not None and isinstance(event, bytes) else 0
            if len(self._queue) >= self.options.max_queue:
                if not important:
                    self._drop("queue_full")  # a sample never displaces anything
                    return
                if not self._displace_sample():
                    self._queue.popleft()  # nothing but must-send decisions: the oldest goes
                    self._drop("queue_full")
                    self._lost += 1
                    lost = self._lost
            self._queue.append((important, event, seq))
            if not important:
                self._samples += 1
            if len(self._queue) >= self.options.batch_size:
                self._wake.set()
        if lost and lost & (lost - 1) == 0:
            logger.error(
                "audit spool full (%d decisions): dropped the oldest denial/exception/fail-mode "
                "decision, %d so far; the control plane is not taking the trail",
                self.options.max_queue,
                lost,
            )

    def _displace_sample(self) -> bool:
        """Under the lock: evict the oldest sampled allow."""
        if self._samples == 0:
            return False
        for i, (must, _, _) in enumerate(self._queue):
            if not must:
                del self._queue[i]
                self._samples -= 1
                self._drop("displaced_sample")
                return True
        return False

    def _drop(self, reason: str, n: int = 1) -> None:
        """Under the lock: count a drop (metrics, and the next batch's ``dropped``)."""
        self._dropped[reason] = self._dropped.get(reason, 0) + n
        self.metrics.audit_dropped.inc(reason, amount=n)

    @property
    def depth(self) -> int:
        """Decisions not yet delivered: spooled, plus the batch in flight."""
        inflight = self._inflight
        return len(self._queue) + (inflight.decisions if inflight is not None else 0)

    @property
    def inflight(self) -> Batch | None:
        return self._inflight

    @property
    def spool(self) -> Spool | None:
        return self._spool

    @property
    def on_disk(self) -> int:
        """Decisions a restart would send: the saved batch, and journaled ones not yet acknowledged."""
        spool = self._spool
        if spool is None:
            return 0
        inflight = self._inflight
        saved = inflight.decisions if inflight is not None and self._inflight_saved else 0
        return spool.pending + saved

    # --- background ----------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stopping.clear()
        if self._inflight is not None or self._queue:
            self._wake.set()  # what a previous process left goes out at once
        self._thread = threading.Thread(target=self._run, name="dutyguard-audit", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Flush what is spooled (best effort within ``timeout``) and stop."""
        thread = self._thread
        if thread is None:
            self.close()
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout)
        self._thread = None
        done = not thread.is_alive()  # else still in a POST: its files stay open until the process exits
        if done and self._spool is not None:
            self._checkpoint(self._spool)
        left = self.depth
        kept = min(self.on_disk, left)
        if left > kept:  # the control plane did not take them to the end: say how much the trail misses
            self.metrics.audit_dropped.inc("shutdown", amount=left - kept)
            logger.error("stopping with %d decision(s) not delivered to the audit trail", left - kept)
        if kept and self._spool is not None:
            logger.warning(
                "stopping with %d decision(s) not delivered yet: kept in %s, sent at the next start",
                kept,
                self._spool.directory,
            )
        if self._client is not None:
            self._client.close()
            self._client = None
        if done:
            self.close()

    def close(self) -> None:
        """Release the spool directory (its lock and files); what it holds stays for the next start."""
        spool = self._spool
        if spool is not None:
            with self._lock:
                self._spool = None  # nothing journals or saves through closed descriptors
                spool.close()

    def _run(self) -> None:
        delay, backing_off = self.options.flush_seconds, False
        while True:
            self._pause(delay, backing_off)
            stopping = self._stopping.is_set()
            outcome = self._drain()
            backing_off = outcome in ("retry", "unauthorized")
            delay = self._next_backoff(outcome) if backing_off else self.options.flush_seconds
            if not backing_off:
                self._backoff = 0.0
            if stopping:
                return

    def _drain(self) -> str:
        while True:
            outcome = self.flush_once()
            if outcome in ("empty", "retry", "unauthorized") or not self._queue:
                return outcome

    def _next_backoff(self, outcome: str) -> float:
        o = self.options
        floor = o.credential_backoff_seconds if outcome == "unauthorized" else 0.5
        self._backoff = min(max(self._backoff * 2, floor), o.max_backoff_seconds)
        return self._backoff * self._jitter.uniform(0.5, 1.0)

    def _pause(self, seconds: float, backing_off: bool) -> None:
        if not backing_off:
            self._wake.wait(seconds)
            self._wake.clear()
            return
        # Backing off: a full spool must not cut the wait short (it would hammer a control plane
        # that is down), only stopping does, or a new token while the old one is refused.
        deadline = self._clock() + seconds
        while not self._stopping.is_set():
            remaining = deadline - self._clock()
            if remaining <= 0:
                return
            if not self.credentials_rejected:
                self._stopping.wait(remaining)
                return
            if self._stopping.wait(min(remaining, self.options.token_poll_seconds)):
                return
            if self._token_changed():
                logger.warning("the token changed: retrying the audit trail now")
                return

    def _token_changed(self) -> bool:
        try:
            current = self._token()
        except Exception:  # still unreadable: nothing new to try
            return False
        return current != self._refused_token

    # --- one delivery --------------------------------------------------------------------------
    def flush_once(self) -> str:
        """Deliver one batch: ``sent``, ``empty``, ``retry`` or ``unauthorized`` (the batch is
        kept for the next attempt), or ``malformed`` (the batch was dropped)."""
        outcome = self._deliver()
        if self._spool is not None:
            self._checkpoint(self._spool)
        return outcome

    def _deliver(self) -> str:
        batch = self._inflight
        if batch is None:
            batch = self._next_batch()
            if batch is None:
                return "empty"
            self._inflight = batch
            if self._spool is not None:
                self._save(batch, self._spool)
        try:
            token = self._token()
        except Exception as e:  # a missing or empty token file is a credential problem too
            return self._unauthorized(batch, None, f"no token to present: {e}")
        try:
            status = self._post(batch.body, token)
        except Exception as e:  # network errors: keep the batch, try again later
            self.metrics.audit_batches.inc("retry")
            logger.warning(
                "audit trail unreachable (%s); batch %s kept for retry, %d decision(s) undelivered",
                e,
                batch.batch_id,
                self.depth,
            )
            return "retry"
        if 200 <= status < 300:
            self._inflight = None
            self._settle()
            self.batches_sent += 1
            self.metrics.audit_sent.inc(amount=batch.decisions)
            self.metrics.audit_batches.inc("sent")
            self.metrics.audit_last_delivery.set(value=time.time())
            if self.credentials_rejected:
                self.credentials_rejected = False
                self.metrics.audit_credentials_rejected.set(value=0)
                logger.warning("the control plane accepts the audit trail again; delivering what was held")
            return "sent"
        if status in CREDENTIALS_REFUSED:
            return self._unauthorized(batch, token, f"HTTP {status}")
        if status in MALFORMED:
            self._inflight = None
            self._settle()
            with self._lock:
                # The counts it carried are still true: they go with the next batch.
                self._allows_counted += batch.allows_counted
                if batch.allows_since is not None and (
                    self._allows_since is None or batch.allows_since < self._allows_since
                ):
                    self._allows_since = batch.allows_since
                for reason, k in batch.dropped.items():
                    self._dropped[reason] = self._dropped.get(reason, 0) + k
                self._drop("malformed", batch.decisions)
            self.metrics.audit_batches.inc("malformed")
            logger.error(
                "the control plane refused audit batch %s as malformed (HTTP %d): %d decision(s) dropped",
                batch.batch_id,
                status,
                batch.decisions,
            )
            return "malformed"
        self.metrics.audit_batches.inc("retry")
        logger.warning(
            "the control plane answered HTTP %d to audit batch %s; will retry", status, batch.batch_id
        )
        return "retry"

    # --- the spool (background thread, between batches) ---------------------------------------
    def _done(self, spool: Spool) -> int:
        """Under the lock: the journal position below which nothing waits (invariant 2 of
        :mod:`~dutyguard.admission.journal`). Journaled decisions sit in the queue in sequence
        order, and between batches every pending one is in the queue."""
        done = spool.last
        for _must, _event, seq in self._queue:
            if seq:
                done = seq - 1
                break
        return done if self._hold is None else min(done, self._hold)

    def _save(self, batch: Batch, spool: Spool) -> None:
        """Save a new batch before its first POST (only one carrying what a restart must resend)."""
        self._inflight_saved = False
        if not (batch.last_seq or batch.dropped):
            return
        with self._lock:
            covered = self._done(spool)
        if spool.save_inflight(covered, batch.body):
            self._inflight_saved = True
        elif batch.first_seq:
            self._hold = batch.first_seq - 1  # not saved: the journal keeps its decisions until answered

    def _settle(self) -> None:
        """The batch in flight was answered for good."""
        if self._inflight_saved and self._spool is not None:
            self._spool.drop_inflight()
        self._inflight_saved = False
        self._hold = None

    def _checkpoint(self, spool: Spool) -> None:
        with self._lock:
            done = self._done(spool)
        spool.release(done)  # fsyncs: outside the lock
        with self._lock:
            spool.trim()

    def _unauthorized(self, batch: Batch, token: str | None, why: str) -> str:
        self.credentials_rejected = True
        self._refused_token = token
        self.metrics.audit_credentials_rejected.set(value=1)
        self.metrics.audit_batches.inc("unauthorized")
        logger.error(
            "the control plane refuses this webhook's credentials for the audit trail (%s): "
            "batch %s and %d decision(s) held, retrying with backoff; fix the cluster token "
            "(the token file is re-read on every attempt)",
            why,
            batch.batch_id,
            self.depth,
        )
        return "unauthorized"

    def _next_batch(self) -> Batch | None:
        o = self.options
        with self._lock:
            n = min(len(self._queue), o.batch_size)
            if n == 0 and self._allows_counted == 0 and not self._dropped:
                return None
            items = [self._queue.popleft() for _ in range(n)]
            self._samples -= sum(1 for must, _, _ in items if not must)
            counted, since, dropped = self._allows_counted, self._allows_since, self._dropped
            self._allows_counted, self._allows_since, self._dropped = 0, None, {}
        # Serialised outside the lock (the request path must not wait for it); what does not fit
        # under max_batch_bytes goes back to the head of the spool for the next batch.
        head = {
            "apiVersion": BATCH_API_VERSION,
            "kind": BATCH_KIND,
            "batchId": str(uuid.uuid4()),
            "cluster": o.cluster,
            "webhook": o.webhook,
            "sentAt": _time(datetime.now(UTC)),
            "allowsCounted": {"count": counted, "since": since},
            "dropped": dropped,
        }
        prefix = json.dumps(head, separators=(",", ":")).encode()[:-1] + b',"decisions":['
        size = len(prefix) + 2
        events: list[bytes] = []
        for _must, event, _seq in items:
            data = event if isinstance(event, bytes) else _encode(event).encode()
            if events and size + len(data) + 1 > o.max_batch_bytes:
                break
            events.append(data)
            size += len(data) + 1
        rest = items[len(events) :]
        if rest:
            with self._lock:
                self._queue.extendleft(reversed(rest))
                self._samples += sum(1 for must, _, _ in rest if not must)
        seqs = [seq for _must, _event, seq in items[: len(events)] if seq]
        return Batch(
            batch_id=str(head["batchId"]),
            body=prefix + b",".join(events) + b"]}",
            decisions=len(events),
            allows_counted=counted,
            allows_since=since,
            dropped=dropped,
            first_seq=seqs[0] if seqs else 0,
            last_seq=seqs[-1] if seqs else 0,
        )

    def _http_post(self, body: bytes, token: str) -> int:
        import httpx

        from dutyguard.admission.tls import client_verify

        if self._client is None:
            self._client = httpx.Client(
                base_url=self.options.url,
                timeout=self.options.timeout_seconds,
                verify=client_verify(self.options.ca_file),
            )
        r = self._client.post(
            API_PATH,
            content=body,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        return int(r.status_code)
