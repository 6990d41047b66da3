"""The webhook's HTTP surface: a minimal ASGI application.

Routes: ``POST /validate`` (AdmissionReview), ``GET /healthz`` (the process answers),
``GET /readyz`` (serving, with the state it enforces), ``GET /metrics`` (Prometheus text).

No web framework: one request is one bounded body read, one strict parse, one decision and
one JSON write, and a framework's routing, validation and dependency injection would cost
more than the decision itself (docs/admission.md has the measurement). Decisions run on the
event loop: evaluation is CPU-bound and short (bounded by the body limits), so handing it to a
thread would add latency without adding parallelism.

What the API server gets back:

* a body it cannot be sure came from the API server (not JSON, wrong apiVersion/kind, unknown
  fields, no uid) → HTTP 400 with a problem document; too large → 413; not JSON content → 415;
  too slow → 408. The API server treats any of them as a webhook failure, which the default
  ``failurePolicy: Fail`` turns into a refusal;
* a well-formed review → HTTP 200 with the decision (allowed or denied with status 403).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from dutyguard.admission.decide import Decider, Decision, Outcome, response_for
from dutyguard.admission.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from dutyguard.admission.metrics import AdmissionMetrics
from dutyguard.admission.review import (
    DEFAULT_REVIEW_LIMITS,
    AdmissionRequest,
    AdmissionResponse,
    ReviewError,
    ReviewLimits,
    read_review,
)
from dutyguard.admission.state import StateProvider, StateView

if TYPE_CHECKING:
    from dutyguard.admission.namespaces import NamespaceWatcher

logger = logging.getLogger("dutyguard.admission")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

VALIDATE_PATH = "/validate"
_JSON = b"application/json"


class DecisionSink(Protocol):
    """Where decisions go after the response (the audit shipper). Must never block."""

    def record(
        self, request: AdmissionRequest, decision: Decision, view: StateView, now: datetime
    ) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class _BodyTooLarge(Exception):
    pass


class AdmissionApp:
    def __init__(
        self,
        decider: Decider,
        provider: StateProvider,
        *,
        metrics: AdmissionMetrics | None = None,
        sink: DecisionSink | None = None,
        limits: ReviewLimits = DEFAULT_REVIEW_LIMITS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        namespaces: NamespaceWatcher | None = None,
    ) -> None:
        self.decider = decider
        self.provider = provider
        self.metrics = metrics or AdmissionMetrics()
        self.sink = sink
        self.limits = limits
        self.clock = clock
        self.namespaces = namespaces
        """The namespace label watcher (``--namespace-labels``), started and stopped with the app."""
        self.ready = False

    # --- ASGI ----------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.startup()
                except Exception as e:
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def startup(self) -> None:
        self.provider.start()
        if self.namespaces is not None:
            self.namespaces.start()  # returns at once: until it has listed, labels are unknown
        if self.sink is not None:
            self.sink.start()
        self.ready = True

    def shutdown(self) -> None:
        self.ready = False
        if self.sink is not None:
            self.sink.stop()
        if self.namespaces is not None:
            self.namespaces.stop()
        self.provider.stop()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        method = scope["method"]
        if path == VALIDATE_PATH:
            if method != "POST":
                await self._problem(send, path, 405, "use POST with an AdmissionReview body")
                return
            await self._validate(scope, receive, send)
        elif path == "/metrics" and method == "GET":
            body = self.metrics.render()
            if self.namespaces is not None:
                body += self.namespaces.render_metrics()
            await self._send(send, path, 200, body, METRICS_CONTENT_TYPE.encode())
        elif path == "/healthz" and method == "GET":
            await self._send(send, path, 200, b'{"status":"ok"}', _JSON)
        elif path == "/readyz" and method == "GET":
            await self._ready(send)
        else:
            await self._problem(send, "other", 404, "not found")

    async def _ready(self, send: Send) -> None:
        view = self.provider.current(self.clock())
        body: dict[str, object] = {
            "ready": self.ready,
            "state": view.state.label if view.state is not None else None,
            "signed": view.state.signed if view.state is not None else False,
            "problem": view.problem or None,
            "failMode": self.decider.fail_mode.value,
        }
        if self.namespaces is not None:
            body["namespaceLabels"] = self.namespaces.cache.status()
        # Ready even without a state: the webhook must answer (and deny, saying why) rather
        # than vanish from the Service, which the API server would report as a bare timeout.
        await self._send(send, "/readyz", 200 if self.ready else 503, json.dumps(body).encode(), _JSON)

    # --- /validate -----------------------------------------------------------------------------
    async def _validate(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        try:
            content_type = _header(scope, b"content-type")
            if content_type is None or content_type.split(b";", 1)[0].strip().lower() != _JSON:
                raise ReviewError("Content-Type must be application/json", status=415)
            body = await self._body(scope, receive)
            request = read_review(body, self.limits)
        except ReviewError as e:
            if e.uid is not None:
                # The uid is known: answer with a well-formed denial the user will see.
                resp = AdmissionResponse(
                    uid=e.uid,
                    allowed=False,
                    message=f"dutyguard: {e.diagnostics()}",
                    code=400,
                    reason="BadRequest",
                )
                self.metrics.decisions.inc(Outcome.DENY.value, "none")
                await self._send(send, VALIDATE_PATH, 200, resp.to_bytes(), _JSON)
            else:
                self.metrics.rejected_bodies.inc(str(e.status))
                await self._problem(send, VALIDATE_PATH, e.status, e.reason)
            self.metrics.latency.observe(time.perf_counter() - started)
            return
        now = self.clock()
        view = self.provider.current(now)
        decision = self.decider.decide(request, view)
        payload = response_for(request.uid, decision).to_bytes()
        await self._send(send, VALIDATE_PATH, 200, payload, _JSON)
        self.metrics.latency.observe(time.perf_counter() - started)
        self._account(request, decision, view, now)

    def _account(self, request: AdmissionRequest, decision: Decision, view: StateView, now: datetime) -> None:
        m = self.metrics
        state = decision.state
        state_label = "none" if state is None else ("signed" if state.signed else "unsigned")
        m.decisions.inc(decision.outcome.value, state_label)
        for f in decision.denied:
            m.findings.inc(f.rule_id, "deny")
        for f in decision.warned:
            m.findings.inc(f.rule_id, "warn")
        for f in decision.audited:
            m.findings.inc(f.rule_id, "audit")
        if decision.waived:
            m.exception_uses.inc(amount=len(decision.waived))
        if decision.outcome is Outcome.DENY:
            logger.info(
                "denied %s %s/%s uid=%s: %s",
                request.kind.kind,
                request.namespace,
                request.name,
                request.uid,
                ",".join(f.rule_id for f in decision.denied) or decision.reason,
            )
        if self.sink is not None:
            try:
                self.sink.record(request, decision, view, now)
            except Exception:  # the response is sent; a broken sink must not break the next one
                logger.exception("could not queue decision %s for the audit trail", request.uid)

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.limits.max_body_bytes
        declared = _header(scope, b"content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                raise ReviewError("Content-Length is not a number") from None
            if n > limit:
                raise ReviewError(f"body larger than {limit} bytes", status=413)
        chunks: list[bytes] = []
        total = 0
        try:
            async with asyncio.timeout(self.limits.body_seconds):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise ReviewError("client disconnected before sending the body")
                    chunk = message.get("body", b"")
                    total += len(chunk)
                    if total > limit:
                        raise ReviewError(f"body larger than {limit} bytes", status=413)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise ReviewError(
                f"body not received within {self.limits.body_seconds:g} s", status=408
            ) from None
        return b"".join(chunks)

    # --- responses -----------------------------------------------------------------------------
    async def _problem(self, send: Send, path: str, status: int, detail: str) -> None:
        body = json.dumps(
            {
                "type": "about:blank",
                "title": _TITLES.get(status, "Error"),
                "status": status,
                "detail": f"dutyguard: {detail}",
            }
        ).encode()
        await self._send(send, path, status, body, b"application/problem+json")

    async def _send(self, send: Send, path: str, status: int, body: bytes, content_type: bytes) -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        if status >= 400:
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        self.metrics.requests.inc(path if path in _KNOWN_PATHS else "other", str(status))


_KNOWN_PATHS = frozenset({VALIDATE_PATH, "/metrics", "/healthz", "/readyz"})
_TITLES = {
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    415: "Unsupported Media Type",
}


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None
