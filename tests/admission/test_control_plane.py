"""Control-plane mode end to end against a local stub: pull signed state over HTTP, enforce it over
HTTPS, ship the decisions back in a batch, keep enforcing while the control plane is down."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from dutyguard.admission.certs import CertFiles
from dutyguard.admission.serve import WebhookConfig, assemble
from tests.admission.support import pod_request, review, running
from tests.admission.test_signed import PRIVILEGED, ControlPlane


class StubControlPlane:
    def __init__(self, cp: ControlPlane) -> None:
        self.bundle = cp.bundle(version=3)
        self.snapshot = cp.snapshot(version=8)
        self.up = True
        self.batches: list[dict[str, Any]] = []
        self.auth: list[str] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: bytes = b"") -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                stub.auth.append(self.headers.get("Authorization", ""))
                if not stub.up:
                    self._answer(503)
                elif self.path == "/api/v1/state/bundle":
                    self._answer(200, stub.bundle)
                elif self.path == "/api/v1/state/exceptions":
                    self._answer(200, stub.snapshot)
                else:
                    self._answer(404)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/api/v1/admission/decisions" and stub.up:
                    stub.batches.append(json.loads(body))
                    self._answer(202)
                else:
                    self._answer(503)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def control_plane() -> Iterator[tuple[ControlPlane, StubControlPlane]]:
    cp = ControlPlane()
    stub = StubControlPlane(cp)
    yield cp, stub
    stub.close()


def test_pull_enforce_and_report(
    control_plane: tuple[ControlPlane, StubControlPlane], certs: CertFiles, tmp_path: Path
) -> None:
    cp, stub = control_plane
    token = tmp_path / "token"
    token.write_text("cluster-secret-token\n")
    app = assemble(
        WebhookConfig(
            control_plane=stub.url,
            trust=(cp.signer.verifier.public_text(),),
            cluster="prod-1",
            token_file=token,
            cache_dir=tmp_path / "cache",
            refresh_seconds=3600,
        )
    )
    with running(app, certs) as hook:
        out = hook.post(review(pod_request(PRIVILEGED, uid="cp-1"))).admission
        assert out["allowed"] is False
        assert out["auditAnnotations"]["policy"].startswith("bundle-v3,")
        assert out["auditAnnotations"]["policy"].endswith(",exceptions-v8")
        assert stub.auth and all(a == "Bearer cluster-secret-token" for a in stub.auth)
        # The state is cached: the control plane goes down, a refresh fails, enforcement goes on.
        stub.up = False
        assert app.provider.refresh() is False  # type: ignore[attr-defined]
        again = hook.post(review(pod_request(PRIVILEGED, uid="cp-2"))).admission
        assert again["allowed"] is False
        assert again["auditAnnotations"]["policy-signed"] == "true"
        ready = hook.request("GET", "/readyz").json
        assert "control plane unreachable" in ready["problem"]
        metrics = hook.request("GET", "/metrics").body.decode()
        assert "dutyguard_admission_state_age_seconds " in metrics
        assert "dutyguard_admission_state_expires_in_seconds " in metrics
        stub.up = True
    # Stopping flushed the queue: both denials reached the audit trail, with the cluster's name.
    uids = [d["uid"] for b in stub.batches for d in b["decisions"]]
    assert uids == ["cp-1", "cp-2"]
    assert {b["cluster"] for b in stub.batches} == {"prod-1"}
    assert (tmp_path / "cache" / "bundle.dsse.json").read_bytes() == stub.bundle


def test_control_plane_mode_refuses_to_start_without_a_token_file(tmp_path: Path) -> None:
    from dutyguard.errors import ConfigError

    with pytest.raises(ConfigError, match="--token-file"):
        assemble(
            WebhookConfig(
                control_plane="http://127.0.0.1:9", trust=("ed25519:" + "A" * 43 + "=",), cluster="c"
            )
        )


def test_first_pull_failing_means_deny_until_state_arrives(
    control_plane: tuple[ControlPlane, StubControlPlane], certs: CertFiles, tmp_path: Path
) -> None:
    cp, stub = control_plane
    stub.up = False
    token = tmp_path / "token"
    token.write_text("t")
    app = assemble(
        WebhookConfig(
            control_plane=stub.url,
            trust=(cp.signer.verifier.public_text(),),
            cluster="prod-1",
            token_file=token,
            cache_dir=tmp_path / "cache",
            refresh_seconds=3600,
        )
    )
    harmless = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "h"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "c",
                    "image": "registry.example/a:1",
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }
    with running(app, certs) as hook:
        out = hook.post(review(pod_request(harmless, uid="h1"))).admission
        assert out["allowed"] is False
        assert "control plane unreachable" in out["status"]["message"]
        stub.up = True
        assert app.provider.refresh() is True  # type: ignore[attr-defined]
        out = hook.post(review(pod_request(harmless, uid="h2"))).admission
        assert out["allowed"] is True, out
