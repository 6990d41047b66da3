"""``dutyguard admission serve`` as a real process, with the built-in policy and with signed state."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dutyguard.admission.certs import CertFiles
from tests.admission.support import pod_request, review
from tests.admission.test_signed import PRIVILEGED, ControlPlane, write_state

DUTYGUARD = Path(sys.executable).parent / "dutyguard"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(certs: CertFiles, *args: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = _free_port()
    cmd = [str(DUTYGUARD), "admission", "serve", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--cert", str(certs.cert), "--key", str(certs.key), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ctx = ssl.create_default_context(cafile=str(certs.ca_cert))
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=2)
                try:
                    conn.request("GET", "/readyz")
                    if conn.getresponse().status == 200:
                        break
                finally:
                    conn.close()
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                _out, err = proc.communicate(timeout=5)
                pytest.fail(f"webhook did not start (rc={proc.returncode}): {err.decode()[-2000:]}")
            time.sleep(0.1)
        yield port, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def _post(certs: CertFiles, port: int, doc: object) -> dict[str, object]:
    ctx = ssl.create_default_context(cafile=str(certs.ca_cert))
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    conn.request("POST", "/validate", json.dumps(doc), {"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 200
    out: dict[str, object] = json.loads(r.read())["response"]
    return out


def test_serve_with_the_builtin_policy_says_it_is_unsigned(certs: CertFiles) -> None:
    with serving(certs) as (port, proc):
        out = _post(certs, port, review(pod_request(PRIVILEGED)))
        assert out["allowed"] is False
        assert out["auditAnnotations"] == {  # type: ignore[comparison-overlap]
            "decision": "deny",
            "policy": "builtin-unsigned",
            "policy-signed": "false",
            "denied-rules": "pss.privileged",
        }
    err = proc.stderr.read().decode() if proc.stderr else ""
    assert "enforcing the built-in default policy (unsigned)" in err


def test_serve_enforces_pulled_signed_state(certs: CertFiles, tmp_path: Path) -> None:
    cp = ControlPlane()
    write_state(tmp_path / "state", cp.bundle(version=5), cp.snapshot(version=2))
    key = cp.signer.verifier.public_text()
    with serving(certs, "--state", str(tmp_path / "state"), "--trust", key) as (port, _):
        out = _post(certs, port, review(pod_request(PRIVILEGED)))
        assert out["allowed"] is False
        annotations = out["auditAnnotations"]
        assert isinstance(annotations, dict)
        assert annotations["policy-signed"] == "true"
        assert annotations["policy"].startswith("bundle-v5,")


def test_serve_with_state_signed_by_another_key_denies_everything(certs: CertFiles, tmp_path: Path) -> None:
    cp, impostor = ControlPlane(), ControlPlane()
    write_state(tmp_path / "state", impostor.bundle(), impostor.snapshot())
    harmless = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "h"}, "spec": {"containers": []}}
    with serving(certs, "--state", str(tmp_path / "state"), "--trust", cp.signer.verifier.public_text()) as (
        port,
        _,
    ):
        out = _post(certs, port, review(pod_request(harmless)))
        assert out["allowed"] is False
        status = out["status"]
        assert isinstance(status, dict)
        assert "cannot verify the policy to enforce" in status["message"]
        assert "[signature]" in status["message"]


def test_serve_refuses_state_without_a_trusted_key(certs: CertFiles, tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            str(DUTYGUARD),
            "admission",
            "serve",
            "--cert",
            str(certs.cert),
            "--key",
            str(certs.key),
            "--state",
            str(tmp_path),
        ],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert b"no trusted key given" in proc.stderr


def test_certs_command_then_manifest_embeds_the_ca(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    rc = subprocess.run(
        [str(DUTYGUARD), "admission", "certs", "--out", str(out)], capture_output=True, timeout=60
    )
    assert rc.returncode == 0
    manifest = subprocess.run(
        [str(DUTYGUARD), "admission", "manifest", "--ca-bundle", str(out / "ca.crt")],
        capture_output=True,
        timeout=60,
    )
    assert manifest.returncode == 0
    import base64

    import yaml

    docs = [d for d in yaml.safe_load_all(manifest.stdout) if d]
    hook = next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")
    assert base64.b64decode(hook["webhooks"][0]["clientConfig"]["caBundle"]) == (out / "ca.crt").read_bytes()
