"""Prometheus metrics in the text exposition format (0.0.4), written without a client library.

The webhook runs one event loop, so plain integers suffice; the background threads (the audit
shipper, the state refresher) only touch their own metrics, each update a single ``+=`` or
assignment (atomic under the GIL for our purpose: a lost increment under a race would only make
a counter slightly low, never wrong in kind).
Label values are escaped as the format requires; label sets are bounded by construction
(outcomes, HTTP codes, rule ids from the registry), never taken from request content.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}"


def _num(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    if float(v).is_integer():
        return str(int(v))
    return repr(float(v))


class Counter:
    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1) -> None:
        self._values[labels] = self._values.get(labels, 0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        for labels, v in sorted(dict(self._values).items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_num(v)}"


class Gauge:
    """A gauge read at scrape time from a callback (state age, queue depth)."""

    def __init__(self, name: str, help_text: str, read: Callable[[], float | None]) -> None:
        self.name = name
        self.help = help_text
        self._read = read

    def bind(self, read: Callable[[], float | None]) -> None:
        self._read = read

    def render(self) -> Iterable[str]:
        v = self._read()
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        if v is not None:
            yield f"{self.name} {_num(v)}"


class LabelledGauge:
    """A gauge set by the code that knows the value (timestamps of the last pull, an alert flag)."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.label_names = tuple(labels)
        self._values: dict[tuple[str, ...], float] = {}

    def set(self, *labels: str, value: float) -> None:
        self._values[labels] = value

    def value(self, *labels: str) -> float | None:
        return self._values.get(labels)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        for labels, v in sorted(dict(self._values).items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_num(v)}"


class Histogram:
    def __init__(self, name: str, help_text: str, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        self.name = name
        self.help = help_text
        self.buckets = tuple(sorted(buckets))
        self._counts = [0] * (len(self.buckets) + 1)
        self._sum = 0.0
        self._n = 0

    def observe(self, value: float) -> None:
        self._counts[bisect.bisect_left(self.buckets, value)] += 1
        self._sum += value
        self._n += 1

    @property
    def count(self) -> int:
        return self._n

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        cumulative = 0
        for bound, n in zip((*self.buckets, float("inf")), self._counts, strict=True):
            cumulative += n
            yield f'{self.name}_bucket{{le="{_num(bound)}"}} {cumulative}'
        yield f"{self.name}_sum {self._sum!r}"
        yield f"{self.name}_count {self._n}"


class AdmissionMetrics:
    """Every metric the webhook exposes on ``/metrics``."""

    def __init__(
        self,
        state_age: Callable[[], float | None] = lambda: None,
        state_expires_in: Callable[[], float | None] = lambda: None,
        queue_depth: Callable[[], float | None] = lambda: None,
        attestations_passing: Callable[[], float | None] = lambda: None,
        spool_bytes: Callable[[], float | None] = lambda: None,
        spool_decisions: Callable[[], float | None] = lambda: None,
    ) -> None:
        p = "dutyguard_admission"
        self.started = time.time()
        self.requests = Counter(
            f"{p}_requests_total", "HTTP requests by path and status code.", ("path", "code")
        )
        self.decisions = Counter(
            f"{p}_decisions_total",
            "Admission decisions by outcome (allow, deny, skip) and whether a verified state was enforced.",
            ("outcome", "state"),
        )
        self.findings = Counter(
            f"{p}_findings_total", "Findings by rule and the action taken.", ("rule", "action")
        )
        self.exception_uses = Counter(
            f"{p}_exception_uses_total", "Findings waived by an approved exception."
        )
        self.rejected_bodies = Counter(
            f"{p}_rejected_reviews_total", "Bodies refused before a decision (HTTP 4xx) by code.", ("code",)
        )
        self.latency = Histogram(
            f"{p}_request_duration_seconds", "Time from request to response for /validate."
        )
        self.cert_reloads = Counter(
            f"{p}_tls_reloads_total", "Serving certificate reloads by result.", ("result",)
        )
        self.audit_sent = Counter(f"{p}_audit_events_sent_total", "Decisions delivered to the control plane.")
        self.audit_dropped = Counter(
            f"{p}_audit_events_dropped_total", "Decisions not delivered, by reason.", ("reason",)
        )
        self.allows_counted = Counter(
            f"{p}_audit_allows_counted_total", "Allowed decisions counted but not sent one by one (sampling)."
        )
        self.audit_batches = Counter(
            f"{p}_audit_batches_total",
            "Audit batch deliveries by result: sent, retry (network, 408, 429, 5xx, other 4xx), "
            "unauthorized (401/403: kept and retried), malformed (400/413/422: dropped).",
            ("result",),
        )
        self.audit_credentials_rejected = LabelledGauge(
            f"{p}_audit_credentials_rejected",
            "1 while the control plane refuses this webhook's token for the audit trail (401/403): "
            "decisions are held, not delivered. Alert on it.",
        )
        self.audit_last_delivery = LabelledGauge(
            f"{p}_audit_last_delivery_timestamp_seconds",
            "Unix time the control plane last acknowledged an audit batch.",
        )
        self.audit_spool_replayed = Counter(
            f"{p}_audit_spool_replayed_total",
            "Decisions recovered from the spool directory at start, by source (inflight: the saved "
            "batch, resent with its id; journal: queued again).",
            ("source",),
        )
        self.audit_spool_errors = Counter(
            f"{p}_audit_spool_errors_total",
            "Spool file problems by file and reason: on start torn, checksum, order, garbage, foreign, "
            "oversized, unreadable (skipped); while running full, too_large, write (a must-send decision "
            "kept in memory only, or a file not written).",
            ("file", "reason"),
        )
        self.state_pulls = Counter(
            f"{p}_state_pulls_total",
            "Pulls of signed state by document (policy: bundle and exception snapshot; attestations) "
            "and result (ok, unreachable, refused).",
            ("document", "result"),
        )
        self.state_pull_last_success = LabelledGauge(
            f"{p}_state_pull_last_success_timestamp_seconds",
            "Unix time of the last pull whose documents all verified, by document.",
            ("document",),
        )
        self.state_pull_last_failure = LabelledGauge(
            f"{p}_state_pull_last_failure_timestamp_seconds",
            "Unix time of the last pull that failed or was refused, by document.",
            ("document",),
        )
        self.state_age = Gauge(
            f"{p}_state_age_seconds", "Seconds since the enforced policy state was verified.", state_age
        )
        self.state_expires_in = Gauge(
            f"{p}_state_expires_in_seconds",
            "Seconds until the enforced policy state expires (absent: no state, or none that expires).",
            state_expires_in,
        )
        self.queue_depth = Gauge(
            f"{p}_audit_queue_depth", "Decisions waiting to be sent to the control plane.", queue_depth
        )
        self.attestations_passing = Gauge(
            f"{p}_attestations_passing",
            "Image digests admitted by the gate attestation set in force (absent: no set required).",
            attestations_passing,
        )
        self.audit_spool_bytes = Gauge(
            f"{p}_audit_spool_bytes",
            "Bytes of the audit spool on disk: journal and saved batch (absent without --spool-dir).",
            spool_bytes,
        )
        self.audit_spool_decisions = Gauge(
            f"{p}_audit_spool_decisions",
            "Decisions on disk a restart would send: the saved batch and the journal past the "
            "acknowledged sequence (absent without --spool-dir).",
            spool_decisions,
        )
        self._gauges = (
            self.state_age,
            self.state_expires_in,
            self.queue_depth,
            self.audit_spool_bytes,
            self.audit_spool_decisions,
            self.attestations_passing,
            Gauge(f"{p}_start_time_seconds", "Unix time the webhook started.", lambda: self.started),
        )

    def render(self) -> bytes:
        lines: list[str] = []
        for metric in (
            self.requests,
            self.decisions,
            self.findings,
            self.exception_uses,
            self.rejected_bodies,
            self.latency,
            self.cert_reloads,
            self.audit_sent,
            self.audit_dropped,
            self.allows_counted,
            self.audit_batches,
            self.audit_credentials_rejected,
            self.audit_last_delivery,
            self.audit_spool_replayed,
            self.audit_spool_errors,
            self.state_pulls,
            self.state_pull_last_success,
            self.state_pull_last_failure,
            *self._gauges,
        ):
            lines.extend(metric.render())
        return ("\n".join(lines) + "\n").encode("utf-8")
