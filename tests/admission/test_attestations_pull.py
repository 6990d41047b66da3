"""The webhook pulls the gate attestations itself (``--control-plane`` with ``--require-attestations``):
from the real control plane over HTTPS, every entry verified with the pinned keyring, the whole
list refused when one entry does not verify, the last verified set kept (in memory and on disk).
The hostile-list tests serve scripted pages from a stub over real HTTP."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import sqlalchemy as sa

from dutyguard.admission.attestations import PULLED_FILE, AttestationLimits, PulledAttestations
from dutyguard.admission.certs import CertFiles
from dutyguard.admission.metrics import AdmissionMetrics
from dutyguard.admission.serve import WebhookConfig, assemble
from dutyguard.admission.signed import HttpFetch, SignedStateProvider
from dutyguard.server import tables as t
from dutyguard.server.app import create_app
from tests.admission.live_cp import https_control_plane
from tests.admission.support import Webhook, pod_request, review, running
from tests.admission.test_attestations import OTHER, attestation
from tests.admission.test_signed import ControlPlane
from tests.server.conftest import Org
from tests.server.signed_helpers import publish

PASS, FAIL, LATER = "5e" * 32, "6f" * 32, "7a" * 32
IMAGE = "registry.example.com/shop/api"


def _pod(digest: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "api", "labels": {"app.kubernetes.io/name": "shop-api"}},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "api",
                    "image": f"{IMAGE}@sha256:{digest}",
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }


def _admitted(hook: Webhook, digest: str) -> bool:
    out = hook.post(review(pod_request(_pod(digest), uid=f"u-{digest[:4]}"))).admission
    if not out["allowed"]:
        assert f"sha256:{digest} has no passing gate attestation" in out["status"]["message"], out
    return bool(out["allowed"])


def _attest(org: Org, digest: str, passing: bool = True) -> None:
    current = org.get("carol", "/policies/current").json()
    snapshot = json.loads(base64.b64decode(org.get("ci-shop", "/state/exceptions").json()["payload"]))
    body: dict[str, Any] = {
        "subject": f"oci://{IMAGE}@sha256:{digest}",
        "app": "shop-api",
        "policy": {"version": current["version"], "digest": current["digest"]},
        "snapshot_version": snapshot["version"],
        "findings": []
        if passing
        else [
            {"rule_id": "pss.privileged", "severity": "critical", "fingerprint": "ab" * 16, "blocking": True}
        ],
        "errors": 0,
    }
    r = org.post("ci-shop", "/attestations", body)
    assert r.status_code == 201, r.json()
    assert r.json()["decision"] == ("pass" if passing else "fail")


def _config(org: Org, url: str, certs: CertFiles, tmp_path: Path) -> WebhookConfig:
    keys = tmp_path / "keyring.json"
    keys.write_text(json.dumps(org.client.get("/api/v1/keys").json()))
    token = tmp_path / "token"
    token.write_text(org.tokens["cluster-prod-eu"] + "\n")
    return WebhookConfig(
        control_plane=url,
        trust=(str(keys),),
        cluster="prod-eu",
        token_file=token,
        cache_dir=tmp_path / "cache",
        control_plane_ca=str(certs.ca_cert),
        refresh_seconds=3600,
        attestations_dir=tmp_path / "attestations",
    )


def _provider(hook: Webhook) -> SignedStateProvider:
    p = hook.app.provider
    assert isinstance(p, SignedStateProvider)
    return p


def _metrics(hook: Webhook) -> str:
    return hook.request("GET", "/metrics").body.decode()


def test_attestations_pulled_and_verified_by_webhook(org: Org, certs: CertFiles, tmp_path: Path) -> None:
    publish(org)
    _attest(org, PASS)
    _attest(org, FAIL, passing=False)
    with https_control_plane(create_app(runtime=org.rt), certs) as url:
        cfg = _config(org, url, certs, tmp_path)
        with running(assemble(cfg), certs) as hook:
            assert _admitted(hook, PASS)
            assert not _admitted(hook, FAIL)  # its latest attestation is a fail
            assert not _admitted(hook, LATER)
            _attest(org, LATER)  # CI passes a new image: admitted from the next refresh on
            assert not _admitted(hook, LATER)
            _provider(hook).refresh()
            assert _admitted(hook, LATER)
            metrics = _metrics(hook)
            ready = hook.request("GET", "/readyz").json
    assert 'dutyguard_admission_state_pulls_total{document="attestations",result="ok"} 2' in metrics
    assert 'dutyguard_admission_state_pulls_total{document="policy",result="ok"} 2' in metrics
    assert (
        'dutyguard_admission_state_pull_last_success_timestamp_seconds{document="attestations"} ' in metrics
    )
    assert "dutyguard_admission_attestations_passing 2" in metrics
    assert ready["problem"] is None
    # The verified set is on disk, one line per subject, for a restart during an outage.
    lines = (cfg.attestations_dir / PULLED_FILE).read_bytes().splitlines()  # type: ignore[operator]
    assert sorted(json.loads(line)["subject"] for line in lines) == sorted(
        f"oci://{IMAGE}@sha256:{d}" for d in (PASS, FAIL, LATER)
    )


def _tamper(org: Org, digest: str) -> None:
    """Rewrite a stored attestation's statement to a pass, keeping its signature (a compromised store)."""
    a = t.attestations
    subject = f"oci://{IMAGE}@sha256:{digest}"
    with org.rt.db.write() as conn:
        row_id, text = conn.execute(sa.select(a.c.id, a.c.envelope).where(a.c.subject == subject)).one()
        env = json.loads(text)
        statement = json.loads(base64.b64decode(env["payload"]))
        statement["predicate"]["decision"] = "pass"
        statement["predicate"]["blockingFindings"] = []
        env["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
        conn.execute(sa.update(a).where(a.c.id == row_id).values(envelope=json.dumps(env), decision="pass"))


def test_tampered_attestation_bundle_is_refused_and_last_good_kept(
    org: Org, certs: CertFiles, tmp_path: Path
) -> None:
    publish(org)
    _attest(org, PASS)
    _attest(org, FAIL, passing=False)
    with https_control_plane(create_app(runtime=org.rt), certs) as url:
        cfg = _config(org, url, certs, tmp_path)
        cached = cfg.attestations_dir / PULLED_FILE  # type: ignore[operator]
        with running(assemble(cfg), certs) as hook:
            assert _admitted(hook, PASS) and not _admitted(hook, FAIL)
            good = cached.read_bytes()
            _attest(org, LATER)  # a legitimate pass arrives with the forgery...
            _tamper(org, FAIL)
            _provider(hook).refresh()
            # ...and is refused with it: one forged entry means this list cannot be trusted.
            assert not _admitted(hook, FAIL)
            assert not _admitted(hook, LATER)
            assert _admitted(hook, PASS)  # the last verified set stays in force
            problem = hook.request("GET", "/readyz").json["problem"]
            metrics = _metrics(hook)
        assert "gate attestations from the control plane refused" in problem
        assert f"sha256:{FAIL}" in problem and "[signature]" in problem
        assert 'dutyguard_admission_state_pulls_total{document="attestations",result="refused"} 1' in metrics
        assert (
            'dutyguard_admission_state_pull_last_failure_timestamp_seconds{document="attestations"} '
            in metrics
        )
        assert cached.read_bytes() == good  # nothing of the refused list reached the disk
        # A restart while the control plane still serves the forgery: the cached set, verified
        # again, is enforced; the forgery is refused again.
        with running(assemble(cfg), certs) as hook:
            assert _admitted(hook, PASS) and not _admitted(hook, FAIL) and not _admitted(hook, LATER)
            assert "[signature]" in hook.request("GET", "/readyz").json["problem"]


def test_tampered_attestation_cache_is_refused_on_start(org: Org, certs: CertFiles, tmp_path: Path) -> None:
    publish(org)
    _attest(org, PASS)
    with https_control_plane(create_app(runtime=org.rt), certs) as url:
        cfg = _config(org, url, certs, tmp_path)
        with running(assemble(cfg), certs) as hook:
            assert _admitted(hook, PASS)
    cached = cfg.attestations_dir / PULLED_FILE  # type: ignore[operator]
    line = json.loads(cached.read_bytes())
    statement = json.loads(base64.b64decode(line["envelope"]["payload"]))
    statement["subject"][0]["digest"]["sha256"] = OTHER  # someone with write access to the cache
    line["envelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    cached.write_text(json.dumps(line) + "\n")
    # The control plane is gone: the policy state comes from its cache, the attestations cannot.
    down = dataclasses.replace(cfg, control_plane="https://localhost:9")
    with running(assemble(down), certs) as hook:
        assert not _admitted(hook, PASS)
        assert not _admitted(hook, OTHER)
        problem = hook.request("GET", "/readyz").json["problem"]
    assert "no verified gate attestation set" in problem
    assert "cached gate attestations refused" in problem and "[signature]" in problem


# --- a hostile list -----------------------------------------------------------------------------
class ListStub:
    """Serves ``pages[cursor]`` at /api/v1/state/attestations (cursor "" for the first page)."""

    def __init__(self) -> None:
        self.pages: dict[str, bytes] = {}
        self.status = 200
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                q = parse_qs(urlparse(self.path).query)
                body = stub.pages.get(q.get("cursor", [""])[0]) if stub.status == 200 else b""
                self.send_response(stub.status if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def page(self, cursor: str, items: list[tuple[str, bytes]], next_cursor: str | None = None) -> None:
        self.pages[cursor] = json.dumps(
            {
                "items": [{"subject": s, "envelope": json.loads(e)} for s, e in items],
                "next_cursor": next_cursor,
            }
        ).encode()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[ListStub]:
    s = ListStub()
    yield s
    s.close()


WEB = "oci://registry.example.com/shop/web@sha256:"


def _pulled(cp: ControlPlane, stub: ListStub, tmp_path: Path, **limits: Any) -> PulledAttestations:
    fetch = HttpFetch(stub.url, lambda: "t")
    return PulledAttestations(
        cp.keyring,
        tmp_path / PULLED_FILE,
        fetch.attestations,
        limits=AttestationLimits(**limits),
        metrics=AdmissionMetrics(),
    )


def test_pages_are_followed_and_verified(stub: ListStub, tmp_path: Path) -> None:
    cp = ControlPlane()
    d1, d2 = "a1" * 32, "b2" * 32
    stub.page("", [(WEB + d1, attestation(cp, d1))], "next")
    stub.page("next", [(WEB + d2, attestation(cp, d2))])
    p = _pulled(cp, stub, tmp_path)
    assert p.refresh() is True
    assert p.passing(f"sha256:{d1}") and p.passing(f"sha256:{d2}")
    assert p.refresh() is False  # the same list again: nothing changes, nothing is rewritten


@pytest.mark.parametrize(
    ("case", "check"),
    [
        ("mislabelled", "[subject]"),
        ("foreign-key", "[signature]"),
        ("listed-twice", "listed twice"),
        ("cursor-loop", "loop"),
        ("too-many", "more than 2 attestations"),
        ("not-json", "not strict JSON"),
    ],
)
def test_hostile_list_is_refused_and_last_good_kept(
    stub: ListStub, tmp_path: Path, case: str, check: str
) -> None:
    cp = ControlPlane()
    good, evil = "a1" * 32, "e1" * 32
    stub.page("", [(WEB + good, attestation(cp, good))])
    p = _pulled(cp, stub, tmp_path, max_items=2, page_size=2)
    assert p.refresh() is True
    on_disk = (tmp_path / PULLED_FILE).read_bytes()
    if case == "mislabelled":  # filed under the evil digest, attests the good one
        stub.page("", [(WEB + evil, attestation(cp, good))])
    elif case == "foreign-key":  # a CI runner signing its own pass
        stub.page("", [(WEB + good, attestation(cp, good)), (WEB + evil, attestation(ControlPlane(), evil))])
    elif case == "listed-twice":
        stub.page("", [(WEB + good, attestation(cp, good)), (WEB + good, attestation(cp, good))])
    elif case == "cursor-loop":
        stub.page("", [(WEB + evil, attestation(cp, evil))], "again")
        stub.page("again", [], "again")
    elif case == "too-many":
        stub.page("", [(WEB + good, attestation(cp, good)), (WEB + evil, attestation(cp, evil))], "more")
        stub.page("more", [(WEB + OTHER, attestation(cp, OTHER))])
    else:
        stub.pages[""] = b'{"items": [], "next_cursor": null, "items": []}'
    assert p.refresh() is False
    assert check in p.problem
    assert p.passing(f"sha256:{good}") and not p.passing(f"sha256:{evil}")
    assert (tmp_path / PULLED_FILE).read_bytes() == on_disk
    assert p.metrics is not None and p.metrics.state_pulls.value("attestations", "refused") == 1


def test_an_oversized_page_is_refused_while_it_streams(stub: ListStub, tmp_path: Path) -> None:
    cp = ControlPlane()
    stub.page("", [(WEB + "a1" * 32, attestation(cp, "a1" * 32))])
    p = _pulled(cp, stub, tmp_path, max_page_bytes=1000)
    assert p.refresh() is False
    assert "larger than 1000 bytes" in p.problem and "refused" in p.problem
    assert p.admitted is None  # never a set: nothing admitted by this rule


def test_a_refused_token_keeps_the_last_set_and_says_why(stub: ListStub, tmp_path: Path) -> None:
    cp = ControlPlane()
    good = "a1" * 32
    stub.page("", [(WEB + good, attestation(cp, good))])
    p = _pulled(cp, stub, tmp_path)
    assert p.refresh() is True
    stub.status = 401
    assert p.refresh() is False
    assert "HTTP 401" in p.problem
    assert p.passing(f"sha256:{good}")
    assert p.metrics is not None and p.metrics.state_pulls.value("attestations", "unauthorized") == 1
