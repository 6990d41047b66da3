"""The spool end to end: ``dutyguard admission serve --spool-dir`` as its own process, SIGKILLed with
denials held, then started again against the real control plane (SQLite and PostgreSQL) over HTTPS.
Each denial must reach the audit trail exactly once, with its uid."""

from __future__ import annotations

import contextlib
import http.client
import json
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from dutyguard.admission.certs import CertFiles
from dutyguard.admission.journal import INFLIGHT, JOURNAL, SavedBatch, parse_inflight
from dutyguard.server.app import create_app
from tests.admission.live_cp import LossyProxy, https_control_plane
from tests.admission.support import pod_request, review
from tests.admission.test_cli import DUTYGUARD, _post
from tests.admission.test_signed import PRIVILEGED
from tests.server.conftest import Org
from tests.server.live import threaded


@contextlib.contextmanager
def webhook(certs: CertFiles, *args: str) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``dutyguard admission serve`` until ready; stopped with SIGTERM unless the test killed it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    cmd = [str(DUTYGUARD), "admission", "serve", "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        [*cmd, "--cert", str(certs.cert), "--key", str(certs.key), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait(lambda: proc.poll() is not None or _ready(certs, port), "the webhook to start")
        assert proc.poll() is None, proc.communicate(timeout=5)[1].decode()[-2000:]
        yield port, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise


def _ready(certs: CertFiles, port: int) -> bool:
    ctx = ssl.create_default_context(cafile=str(certs.ca_cert))
    conn = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=2)
    try:
        conn.request("GET", "/readyz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()  # an idle keep-alive connection would hold up the webhook's graceful stop


def _wait(cond: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _denied_uids(org: Org) -> list[str]:
    return sorted(e["details"]["uid"] for e in org.audit(action="admission.deny"))


def _metrics(certs: CertFiles, port: int) -> str:
    conn = http.client.HTTPSConnection(
        "localhost", port, context=ssl.create_default_context(cafile=str(certs.ca_cert)), timeout=10
    )
    try:
        conn.request("GET", "/metrics")
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def _journal_has(spool: Path, uid: str) -> bool:
    path = spool / JOURNAL
    return path.exists() and f'"uid":"{uid}"'.encode() in path.read_bytes()


def test_denials_survive_sigkill_and_reach_the_trail_exactly_once(
    org: Org, certs: CertFiles, tmp_path: Path
) -> None:
    keys = tmp_path / "keyring.json"
    keys.write_text(json.dumps(org.client.get("/api/v1/keys").json()))
    token = tmp_path / "token"
    token.write_text(org.tokens["cluster-prod-eu"] + "\n")
    spool = tmp_path / "spool"

    def args(url: str) -> list[str]:
        return [
            "--control-plane",
            url,
            "--cluster",
            "prod-eu",
            "--trust",
            str(keys),
            "--token-file",
            str(token),
            "--control-plane-ca",
            str(certs.ca_cert),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--spool-dir",
            str(spool),
        ]

    # 1. The control plane stores what it gets but every answer is lost on the way back: the
    #    webhook cannot know, and keeps retrying the same batch.
    with threaded(create_app(runtime=org.rt)) as upstream, LossyProxy(upstream, certs) as proxy:
        proxy.lose = 1_000_000
        with webhook(certs, *args(proxy.url)) as (port, proc):
            assert _post(certs, port, review(pod_request(PRIVILEGED, uid="deny-1")))["allowed"] is False
            _wait(lambda: proxy.answers, "the first batch to reach the control plane")
            # The next denial waits behind the unanswered batch: it is in the journal only.
            assert _post(certs, port, review(pod_request(PRIVILEGED, uid="deny-2")))["allowed"] is False
            _wait(lambda: _journal_has(spool, "deny-2"), "deny-2 in the journal")
            proc.kill()  # SIGKILL: no shutdown, no flush
            proc.wait(10)
    first_status, first_answer = proxy.answers[0]
    assert first_status == 201 and first_answer["stored"] == 1  # stored; the webhook never heard
    assert _denied_uids(org) == ["deny-1"]
    saved = parse_inflight((spool / INFLIGHT).read_bytes())
    assert isinstance(saved, SavedBatch)
    assert saved.body == proxy.bodies[0]  # the batch on disk is the one that was sent, byte for byte
    saved_id = json.loads(saved.body)["batchId"]

    # 2. Started again against the control plane itself: the saved batch goes first, with its id
    #    (answered 200 duplicate, not stored again), then the journaled denial in a new batch.
    cp = https_control_plane(create_app(runtime=org.rt), certs)
    with cp as url, webhook(certs, *args(url)) as (port, proc):
        _wait(lambda: _denied_uids(org) == ["deny-1", "deny-2"], "deny-2 in the audit trail")
        _wait(lambda: not (spool / INFLIGHT).exists(), "the saved batch to be settled")
        metrics = _metrics(certs, port)
    assert proc.returncode == -signal.SIGTERM  # a graceful stop (uvicorn re-raises the signal)
    assert b"not delivered" not in (proc.stderr.read() if proc.stderr else b"")
    assert _denied_uids(org) == ["deny-1", "deny-2"]  # exactly once each
    batches = [e["details"]["batch"] for e in org.audit(action="admission.batch")]
    assert len(batches) == 2
    assert batches[0] == saved_id
    assert 'dutyguard_admission_audit_spool_replayed_total{source="inflight"} 1' in metrics
    assert 'dutyguard_admission_audit_spool_replayed_total{source="journal"} 1' in metrics
    assert "dutyguard_admission_audit_spool_errors_total{" not in metrics
    assert (spool / JOURNAL).read_bytes() == b""  # everything acknowledged: nothing left to replay
