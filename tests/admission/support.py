"""Helpers for the webhook tests: AdmissionReviews from the kubewarden fixtures, a real HTTPS server."""

from __future__ import annotations

import contextlib
import copy
import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from dutyguard.admission.app import AdmissionApp
from dutyguard.admission.certs import CertFiles
from dutyguard.admission.decide import EVALUATED_KINDS, Decider
from dutyguard.admission.serve import ServerOptions, build_server
from dutyguard.admission.state import EnforcementState, StateProvider, StateView, builtin_state
from dutyguard.rules import default_registry

Doc = dict[str, Any]
KW = "kubewarden-policies/policies"

_RESOURCES = {kind: resource for (_group, kind), resource in EVALUATED_KINDS.items()}
_GROUPS = {kind: group for (group, kind) in EVALUATED_KINDS}


def kubewarden_request(path: Path) -> Doc:
    """The AdmissionRequest of a kubewarden fixture, with what the API server always sends restored.

    The fixtures were written by hand for kwctl and often trim ``resource``, ``userInfo`` and the
    core group of ``kind``; a real API server never does, and our parser requires them (a request
    without them did not come from an API server). The object is left exactly as in the fixture.
    """
    data = json.loads(path.read_text())
    req: Doc = copy.deepcopy(data.get("request", data))
    kind = req["kind"]
    kind.setdefault("group", _GROUPS.get(kind["kind"], ""))
    if "requestKind" in req and isinstance(req["requestKind"], dict):
        req["requestKind"].setdefault("group", kind["group"])
    req.setdefault(
        "resource",
        {
            "group": kind["group"],
            "version": kind["version"],
            "resource": _RESOURCES.get(kind["kind"], "unknown"),
        },
    )
    req.setdefault("userInfo", {"username": "kubewarden-fixture"})
    req.setdefault("operation", "CREATE")
    return req


def review(request: Doc) -> Doc:
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def pod_request(
    obj: Doc, *, uid: str = "u-1", namespace: str = "shop", operation: str = "CREATE", **extra: Any
) -> Doc:
    kind = obj.get("kind", "Pod")
    group = _GROUPS.get(kind, "")
    req: Doc = {
        "uid": uid,
        "kind": {"group": group, "version": "v1", "kind": kind},
        "resource": {"group": group, "version": "v1", "resource": _RESOURCES.get(kind, "pods")},
        "operation": operation,
        "userInfo": {"username": "alice", "groups": ["devs"]},
        "namespace": namespace,
        "object": obj,
    }
    req.update(extra)
    return req


class SwitchableProvider(StateProvider):
    """A provider whose answer a test sets (the session's server is shared)."""

    def __init__(self) -> None:
        self.view = StateView(builtin_state())

    def set_state(self, state: EnforcementState | None, problem: str = "") -> None:
        self.view = StateView(state, problem)

    def current(self, now: datetime) -> StateView:
        return self.view


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def admission(self) -> Doc:
        doc = self.json
        assert doc["apiVersion"] == "admission.k8s.io/v1"
        assert doc["kind"] == "AdmissionReview"
        out: Doc = doc["response"]
        return out


class Webhook:
    """A real HTTPS server on a free loopback port, in a thread, serving ``app``."""

    def __init__(
        self,
        app: AdmissionApp,
        certs: CertFiles,
        cert: Path | None = None,
        key: Path | None = None,
        shutdown_seconds: int = 10,
    ) -> None:
        self.app = app
        self.certs = certs
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        options = ServerOptions(
            host="127.0.0.1",
            port=self.port,
            cert=cert or certs.cert,
            key=key or certs.key,
            cert_check_seconds=0.0,
            shutdown_seconds=shutdown_seconds,
        )
        self.server, self.tls = build_server(app, options)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("webhook did not start")
            time.sleep(0.01)
        self.context = ssl.create_default_context(cafile=str(certs.ca_cert))

    def connection(self, host: str = "localhost") -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(host, self.port, context=self.context, timeout=10)

    def request(
        self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Response:
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.read(), {k.lower(): v for k, v in r.getheaders()})
        finally:
            conn.close()

    def post(self, doc: Any, headers: dict[str, str] | None = None) -> Response:
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        return self.request(
            "POST", "/validate", body, {"Content-Type": "application/json", **(headers or {})}
        )

    def close(self, timeout: float = 10) -> None:
        self.server.should_exit = True
        self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return not self._thread.is_alive()


@contextlib.contextmanager
def running(app: AdmissionApp, certs: CertFiles, **kw: Any) -> Iterator[Webhook]:
    hook = Webhook(app, certs, **kw)
    try:
        yield hook
    finally:
        hook.close()


def default_app(provider: StateProvider | None = None) -> AdmissionApp:
    return AdmissionApp(Decider(default_registry()), provider or SwitchableProvider())
