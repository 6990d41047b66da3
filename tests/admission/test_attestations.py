"""The optional image rule: pinned by digest, with a passing gate attestation signed by the control plane."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dutyguard.admission.decide import Outcome
from dutyguard.admission.signed import SignedStateProvider
from dutyguard.trust.attest import FindingRef, GateAttestation, GatePredicate, Subject, sign_attestation
from tests.admission.test_signed import NOW, REGISTRY, ControlPlane, decide, write_state

DIGEST = "ab" * 32
OTHER = "cd" * 32


def attestation(cp: ControlPlane, digest: str, decision: str = "pass") -> bytes:
    blocking = (FindingRef("pss.privileged", "critical", "0" * 32),) if decision == "fail" else ()
    predicate = GatePredicate(
        decision=decision,
        policy_name="prod",
        policy_issuer="cp.example.com",
        policy_version=1,
        policy_digest="sha256:" + "0" * 64,
        snapshot_version=1,
        blocking=blocking,
        waived=(),
        errors=0,
        submitter="ci-shop",
        time=datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5),
        scanner_version="0.1.0",
    )
    subject = Subject("registry.example.com/shop/web", {"sha256": digest})
    return sign_attestation(cp.signer, GateAttestation((subject,), predicate)).dumps()


def pod(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "web",
                    "image": image,
                    "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                }
            ],
        },
    }


def provider_with(cp: ControlPlane, tmp_path: Path, files: dict[str, bytes]) -> SignedStateProvider:
    from dutyguard.admission.attestations import load_index

    att = tmp_path / "attestations"
    att.mkdir()
    for name, data in files.items():
        (att / name).write_bytes(data)
    write_state(tmp_path / "state", cp.bundle(), cp.snapshot())
    p = SignedStateProvider(
        cp.keyring,
        REGISTRY,
        tmp_path / "state",
        cluster="prod-1",
        attestations=lambda: load_index(att, cp.keyring),
        clock=lambda: NOW,
    )
    assert p.load_cache()
    return p


def test_attested_pinned_image_is_admitted(tmp_path: Path) -> None:
    cp = ControlPlane()
    p = provider_with(cp, tmp_path, {"web.dsse.json": attestation(cp, DIGEST)})
    d = decide(p, pod(f"registry.example.com/shop/web@sha256:{DIGEST}"))
    assert d.outcome is Outcome.ALLOW


def test_unpinned_image_is_denied_even_if_clean(tmp_path: Path) -> None:
    cp = ControlPlane()
    p = provider_with(cp, tmp_path, {"web.dsse.json": attestation(cp, DIGEST)})
    d = decide(p, pod("registry.example.com/shop/web:1.0"))
    assert d.outcome is Outcome.DENY
    assert "is not pinned by digest" in d.reason


def test_image_without_a_passing_attestation_is_denied(tmp_path: Path) -> None:
    cp = ControlPlane()
    p = provider_with(cp, tmp_path, {"fail.dsse.json": attestation(cp, OTHER, decision="fail")})
    d = decide(p, pod(f"registry.example.com/shop/web@sha256:{OTHER}"))
    assert d.outcome is Outcome.DENY
    assert f"sha256:{OTHER} has no passing gate attestation" in d.reason


def test_forged_attestation_is_ignored(tmp_path: Path) -> None:
    cp, ci_runner = ControlPlane(), ControlPlane()  # a runner signing its own pass
    p = provider_with(
        cp, tmp_path, {"forged.dsse.json": attestation(ci_runner, DIGEST), "junk.json": b"{not json"}
    )
    d = decide(p, pod(f"registry.example.com/shop/web@sha256:{DIGEST}"))
    assert d.outcome is Outcome.DENY
    st = p.current(NOW).state
    assert st is not None and st.attestations is not None
    assert len(st.attestations.refused) == 2  # type: ignore[attr-defined]
