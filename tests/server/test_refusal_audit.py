"""The gate's refusals of served state reach the audit trail, on SQLite and PostgreSQL.

``dutyguard scan --server URL`` runs through the CLI against the real control plane (uvicorn on
loopback) with a real HTTP proxy in between that tampers with or replays what the control plane
serves. The runner still fails closed (exit 2, the same message, nothing scanned); it then
reports which document failed which check, and the control plane records it as
``gate.state_refused`` under the runner's identity. A report that cannot be delivered is a
warning, never another exit code; a report that is not a strict, bounded body is refused (422)
and audited.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from dutyguard.audit.signing import Signer
from dutyguard.trust.dsse import sign_envelope
from dutyguard.trust.state import BUNDLE_PAYLOAD_TYPE
from tests.server.conftest import Org
from tests.server.gate_runner import Runner, control_plane, edit_payload, payload_of, proxy_to
from tests.server.signed_helpers import keyring, ok, publish, request_exception, served

NODE_EXPORTER = "checkov/tests/kubernetes/checks/example_HostPort/DS-node-exporter-FAILED.yaml"
BUNDLE_PATH = "/api/v1/state/bundle"
SNAPSHOT_PATH = "/api/v1/state/exceptions"
REPORT_PATH = "/api/v1/state/verification-failures"


@pytest.fixture
def runner(
    org: Org, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Runner:
    publish(org)  # before the keyring is exported: the first state key is made on first use
    return Runner(org, tmp_path, monkeypatch, capsys)


@pytest.fixture
def manifest(shared_data: Path) -> str:
    return str(shared_data / NODE_EXPORTER)


def _refused(org: Org) -> list[dict[str, Any]]:
    return org.audit(action="gate.state_refused", outcome="failed")


def _weaken(payload: dict[str, Any]) -> None:
    payload["bundle"]["spec"]["rules"]["include"] = [{"id": "pss.host-ports"}]


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_tampered_bundle_from_server_is_refused_and_audited(
    org: Org, runner: Runner, manifest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    alarms: list[dict[str, Any]] = []
    monkeypatch.setattr(org.rt.notifier, "send", alarms.append)
    with control_plane(org) as upstream, proxy_to(upstream) as proxy:
        proxy.edit[BUNDLE_PATH] = lambda data: edit_payload(data, _weaken)
        code, out, err = runner.scan(proxy.url, "-f", "json", manifest)
        assert (code, out) == (2, ""), err
        # the message is the one every refusal prints, naming the URL (not the temporary file)
        assert err.splitlines()[0] == (
            f"dutyguard: error: {proxy.url}{BUNDLE_PATH}: verification failed [signature]: "
            "no signature verifies with a trusted key (tampered or forged)"
        )
        assert "reported to the control plane" in err
        assert not runner.state_file.exists()  # nothing was accepted
        tampered = proxy.served[BUNDLE_PATH]

        (entry,) = _refused(org)
        assert (entry["actor"], entry["object"]) == ("ci-shop", "state:bundle")
        d = entry["details"]
        assert (d["document"], d["check"], d["app"]) == ("bundle", "signature", "shop-api")
        assert d["digest"] == _sha256(tampered)
        assert d["size"] == len(tampered)
        claimed = payload_of(tampered)
        assert (d["claimed_version"], d["claimed_issuer"]) == (1, claimed["issuer"])
        # the signature kept by the attacker claims the control plane's key
        assert d["key_ids"] == [k.key_id for k in keyring(org)]
        assert d["last_seen_version"] is None  # this runner never accepted a bundle
        assert d["reason"] == "no signature verifies with a trusted key (tampered or forged)"
        assert [(a["event"], a["check"], a["audit_seq"]) for a in alarms] == [
            ("gate.state_refused", "signature", entry["seq"])
        ]

        # The genuine state is accepted; tampered again, the report names the version last seen.
        del proxy.edit[BUNDLE_PATH]
        assert runner.scan(proxy.url, manifest)[0] == 1
        proxy.edit[BUNDLE_PATH] = lambda data: edit_payload(data, _weaken)
        assert runner.scan(proxy.url, manifest)[0] == 2
        assert _refused(org)[-1]["details"]["last_seen_version"] == 1


def test_rolled_back_snapshot_from_server_is_refused_and_audited(
    org: Org, runner: Runner, manifest: str
) -> None:
    _, old = served(org)
    assert payload_of(old)["version"] == 1
    e = ok(request_exception(org))
    ok(org.post("sam", f"/exceptions/{e['id']}/approve"))  # the approval starts snapshot v2
    with control_plane(org) as upstream, proxy_to(upstream) as proxy:
        assert runner.scan(proxy.url, manifest)[0] in (0, 1)
        assert payload_of(proxy.served[SNAPSHOT_PATH])["version"] == 2
        # the signed, unexpired v1 (which did not hold the exception) served again: a replay
        proxy.replace[SNAPSHOT_PATH] = old
        code, out, err = runner.scan(proxy.url, manifest)
        assert (code, out) == (2, ""), err
        assert err.splitlines()[0].startswith(
            f"dutyguard: error: {proxy.url}{SNAPSHOT_PATH}: verification failed [rollback]: "
            "exception snapshot v1 is older than v2"
        )
    (entry,) = _refused(org)
    assert (entry["actor"], entry["object"]) == ("ci-shop", "state:snapshot")
    d = entry["details"]
    assert (d["document"], d["check"]) == ("snapshot", "rollback")
    assert (d["claimed_version"], d["last_seen_version"]) == (1, 2)
    assert d["digest"] == _sha256(old)
    # the signature was genuine: the claimed key id is the control plane's own
    assert d["key_ids"] == [k.key_id for k in keyring(org)]


def test_refusal_report_failure_keeps_exit_2(
    org: Org, runner: Runner, manifest: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = (
        "verification failed [signature]: no signature verifies with a trusted key (tampered or forged)"
    )
    with control_plane(org) as upstream, proxy_to(upstream) as proxy:
        proxy.edit[BUNDLE_PATH] = lambda data: edit_payload(data, _weaken)
        first = f"dutyguard: error: {proxy.url}{BUNDLE_PATH}: {expected}"

        proxy.fail[REPORT_PATH] = 503
        code, out, err = runner.scan(proxy.url, manifest)
        assert (code, out, err.splitlines()[0]) == (2, "", first)
        assert "dutyguard: warning: could not report the refusal to the control plane: 503" in err

        del proxy.fail[REPORT_PATH]
        proxy.drop.add(REPORT_PATH)  # the connection closes without an answer
        code, out, err = runner.scan(proxy.url, manifest)
        assert (code, out, err.splitlines()[0]) == (2, "", first)
        assert "warning: could not report the refusal" in err and "cannot reach the control plane" in err

        proxy.drop.clear()
        proxy.hang.add(REPORT_PATH)  # accepted, never answered: the runner stops waiting
        monkeypatch.setattr("dutyguard.cli.gate_client.REPORT_TIMEOUT_S", 0.5)
        code, out, err = runner.scan(proxy.url, manifest)
        assert (code, out, err.splitlines()[0]) == (2, "", first)
        assert "warning: could not report the refusal to the control plane: no answer within 0.5 s" in err
        assert [p for p, _ in proxy.posted] == [REPORT_PATH] * 3
    assert "Traceback" not in err
    assert _refused(org) == []  # none of the three reached the control plane
    assert not runner.state_file.exists()


def _report(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "document": "bundle",
        "check": "signature",
        "reason": "no signature verifies with a trusted key (tampered or forged)",
        "digest": "sha256:" + "ab" * 32,
        "size": 1234,
        "key_ids": ["cd" * 32],
        "claimed_issuer": "cp.example",
        "claimed_version": 7,
        "last_seen_version": 6,
        "app": "shop-api",
    }
    body.update(over)
    return body


def test_refusal_report_body_is_bounded(org: Org) -> None:
    publish(org)
    before = served(org)

    def post(body: Any = None, *, raw: bytes | None = None, who: str = "ci-shop") -> Any:
        if raw is not None:
            headers = {**org.h(who), "content-type": "application/json"}
            return org.client.post(REPORT_PATH, headers=headers, content=raw)
        return org.post(who, "/state/verification-failures", body)

    r = post(_report())
    assert r.status_code == 202, r.json()
    assert _refused(org)[-1]["seq"] == r.json()["audit_seq"]

    huge_reason = "A" * 2001
    bad: list[tuple[str, Any, bytes | None]] = [
        ("body.reason", _report(reason=huge_reason), None),
        ("body.key_ids", _report(key_ids=["ab"] * 17), None),
        ("body.key_ids.0", _report(key_ids=["has space"]), None),
        ("body.claimed_version", _report(claimed_version=2**53), None),
        ("body.claimed_version", _report(claimed_version="7"), None),  # no coercion
        ("body.check", _report(check="bypass"), None),
        ("body.digest", _report(digest="sha256:xyz"), None),
        ("body.extra", _report(extra="field"), None),
        ("body.subject", _report(subject="docker.io/nginx:latest"), None),
        ("body.document", {}, None),
        ("body", None, b"\x00\xffnot json at all"),
        ("body", None, json.dumps(_report(reason="x" * 2000, pad=["y" * 1000] * 20)).encode()),
    ]
    for field, body, raw in bad:
        refusals = len(org.audit(action="gate.state_refused", outcome="refused"))
        r = post(body, raw=raw)
        assert r.status_code == 422, (field, r.status_code, r.text[:300])
        problem = r.json()
        assert field in {e["field"] for e in problem["errors"]}, (field, problem)
        assert huge_reason not in r.text  # the input is never echoed
        entries = org.audit(action="gate.state_refused", outcome="refused")
        assert len(entries) == refusals + 1, field
        assert entries[-1]["actor"] == "ci-shop"
        assert entries[-1]["details"]["code"] == "validation"
        assert field in {e["field"] for e in entries[-1]["details"]["errors"]}
    # only the one valid report was recorded as a refusal of state
    assert len(_refused(org)) == 1
    # past the server's body limit nothing is even read
    assert post(raw=b"[" + b"0," * 200_000 + b"0]").status_code == 413
    # an app this pipeline does not gate: 403, audited as any denied request
    r = post(_report(app="checkout"))
    assert r.status_code == 403
    assert "/state/verification-failures" in org.audit(actor="ci-shop", action="request.denied")[-1]["object"]
    # people without scan.submit cannot write such entries
    assert post(_report(), who="carol").status_code == 403
    # the report is a claim: the state served is what it was
    assert served(org) == before


def _resigned(data: bytes, signer: Signer) -> bytes:
    doc = json.loads(data)
    return sign_envelope(signer, BUNDLE_PAYLOAD_TYPE, base64.b64decode(doc["payload"])).dumps()


def _unsigned(data: bytes) -> bytes:
    doc = json.loads(data)
    doc["signatures"] = []
    return json.dumps(doc).encode()


def test_each_refused_check_is_reported_with_what_the_bytes_claim(
    org: Org, runner: Runner, manifest: str
) -> None:
    intruder = Signer.generate()
    cases: list[tuple[str, Any, str, list[str], int | None]] = [
        ("signature", lambda d: _resigned(d, intruder), "which is not trusted here", [intruder.key_id], 1),
        ("unsigned", _unsigned, "the envelope carries no signature", [], 1),
        ("malformed", lambda d: b"\x00\xff" + d[:100], "not a DSSE envelope", [], None),
    ]
    with control_plane(org) as upstream, proxy_to(upstream) as proxy:
        for check, edit, message, key_ids, version in cases:
            proxy.edit[BUNDLE_PATH] = edit
            code, out, err = runner.scan(proxy.url, manifest)
            assert (code, out) == (2, ""), err
            assert f"{BUNDLE_PATH}: verification failed [{check}]: " in err.splitlines()[0]
            d = _refused(org)[-1]["details"]
            assert (d["check"], d["key_ids"], d["claimed_version"]) == (check, key_ids, version), d
            assert message in d["reason"]
            assert d["digest"] == _sha256(proxy.served[BUNDLE_PATH])
    assert len(_refused(org)) == 3
