"""The offline half of the issue's loop, end to end on checkov's node-exporter DaemonSet.

Security lints and publishes a bundle; the pipeline fails on it; an exception approved by two
other people arrives in a new snapshot; the pipeline passes with the findings shown as waived
and the control plane attests the decision; the exception expires and the pipeline fails again.
(Proposal and approval through the API come with the server.)
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from dutyguard.cli import main
from dutyguard.engine import Scanner
from dutyguard.exceptions.matcher import MatchContext
from dutyguard.limits import DEFAULT_LIMITS
from dutyguard.rules import default_registry
from dutyguard.sources.registry import default_sources
from dutyguard.trust.attest import GateAttestation, Subject, predicate_from_report, sign_attestation
from dutyguard.trust.gate import open_state
from tests.trust.simulator import NOW, ControlPlane, grant

NODE_EXPORTER = "checkov/tests/kubernetes/checks/example_HostPort/DS-node-exporter-FAILED.yaml"
IMAGE = "oci://quay.io/prometheus/node-exporter@sha256:" + "5e" * 32

BUNDLE = """\
apiVersion: dutyguard.dev/v1
kind: PolicyBundle
metadata:
  name: acme-platform
  description: Platform namespaces run at baseline; everything else restricted.
spec:
  rules:
    include: [{pack: pss-baseline}, {pack: pss-restricted}]
  podSecurity:
    default: restricted
    namespaces:
      - names: [monitoring]
        level: baseline
  exceptions:
    quorum: {critical: 2, high: 2, medium: 1, low: 1, info: 1}
"""


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_bundle_exception_pass_expiry_fail(
    tmp_path: Path, shared_data: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DUTYGUARD_FAIL_ON", raising=False)
    clock = [NOW]
    monkeypatch.setattr("dutyguard.trust._time.utc_now", lambda: clock[0])
    manifest = str(shared_data / NODE_EXPORTER)
    cp = ControlPlane(issuer="cp.acme.example")
    key = cp.key_file(tmp_path / "cp.pub")
    state = tmp_path / "state"
    gate = [
        "scan", "--state", str(state), "--trust", str(key), "--state-file", str(tmp_path / "seen.json"),
        "--app", "node-exporter", "--subject", IMAGE, "-f", "json", manifest,
    ]  # fmt: skip

    # 1. Security lints the bundle in its own repository.
    (tmp_path / "bundle.yaml").write_text(BUNDLE)
    code, out, _ = run(capsys, "policy", "lint", str(tmp_path / "bundle.yaml"))
    assert code == 0
    digest = out.rsplit("digest ", 1)[1].strip()

    # 2. Published (v1) with an empty snapshot: the pipeline fails on the host settings.
    cp.pull(state, cp.publish(BUNDLE), cp.snapshot())
    code, out, _ = run(capsys, *gate)
    report = json.loads(out)
    assert code == 1
    assert digest[:19] in report["policy"]["source"]
    blocking = sorted((f["rule_id"], f["location"]["line"]) for f in report["findings"] if f["blocking"])
    assert blocking == [
        ("pss.host-namespaces", 53),
        ("pss.host-namespaces", 54),
        ("pss.host-path-volumes", 63),
        ("pss.host-path-volumes", 67),
        ("pss.host-ports", 33),
    ]

    # 3. An exception per rule for this app, approved by two people (high needs two here).
    one_approver = grant("exc-ports-1", "pss.host-ports", app="node-exporter", approvers=("bob",))
    approved = (
        grant("exc-ports", "pss.host-ports", app="node-exporter", expires=NOW + timedelta(days=3)),
        grant(
            "exc-hostns",
            "pss.host-namespaces",
            app="node-exporter",
            namespace="monitoring",
            expires=NOW + timedelta(days=3),
        ),
        grant("exc-hostpath", "pss.host-path-volumes", app="node-exporter", expires=NOW + timedelta(days=3)),
    )
    cp.pull(state, cp.publish(BUNDLE), cp.snapshot((one_approver,)))
    code, out, _ = run(capsys, *gate)
    assert code == 1, "one approver is below the bundle's quorum for high"
    cp.pull(state, cp.publish(BUNDLE), cp.snapshot(approved))
    code, out, _ = run(capsys, *gate)
    report = json.loads(out)
    assert code == 0
    assert report["summary"]["decision"] == "pass"
    assert report["summary"]["waived"] == 5
    waivers = {(f["rule_id"], f["location"]["line"]): f["waiver"] for f in report["findings"] if f["waiver"]}
    assert waivers[("pss.host-ports", 33)] == {"exception_id": "exc-ports", "expires": "2025-06-04T12:00:00Z"}
    assert waivers[("pss.host-namespaces", 54)]["exception_id"] == "exc-hostns"

    # 4. The control plane attests the decision; anyone holding its public key can check it.
    registry = default_registry()
    signed = open_state(state, [str(key)], tmp_path / "seen.json", registry, clock[0])
    scanner = Scanner(registry, default_sources(), signed.policy, DEFAULT_LIMITS)
    ctx = MatchContext(app="node-exporter", image_digests=frozenset({"sha256:" + "5e" * 32}))
    decided = signed.apply(scanner.scan([manifest]), ctx)
    published = signed.bundle.published
    predicate = predicate_from_report(
        decided,
        policy_name=published.bundle.name,
        policy_issuer=published.issuer,
        policy_version=published.version,
        policy_digest=published.digest,
        snapshot_version=signed.snapshot.snapshot.version,
        submitter="ci-platform",
        time=clock[0],
    )
    assert predicate.decision == "pass"
    assert {w.exception_id for w in predicate.waived} == {"exc-ports", "exc-hostns", "exc-hostpath"}
    att = tmp_path / "gate.intoto.json"
    att.write_bytes(sign_attestation(cp.signer, GateAttestation((Subject.parse(IMAGE),), predicate)).dumps())
    code, out, _ = run(
        capsys, "attest", "verify", str(att), "--trust", str(key), "--subject", IMAGE, "--require-pass"
    )
    assert code == 0
    assert f"policy: acme-platform v{published.version} ({digest})" in out

    # 5. Four days later (a fresh snapshot still lists them), the exceptions have expired.
    clock[0] = NOW + timedelta(days=4)
    cp.pull(
        state,
        cp.publish(BUNDLE, issued_at=clock[0] - timedelta(hours=1)),
        cp.snapshot(approved, issued_at=clock[0] - timedelta(hours=1)),
    )
    code, out, _ = run(capsys, *gate)
    report = json.loads(out)
    assert code == 1
    assert report["summary"]["waived"] == 0
    assert report["summary"]["blocking"] == 5
