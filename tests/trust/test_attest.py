"""Gate attestations: in-toto Statement v1 in DSSE, verified offline with `dutyguard attest verify`."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from dutyguard.audit.canonical import canonical_json
from dutyguard.audit.signing import Signer
from dutyguard.cli import main
from dutyguard.trust.attest import (
    INTOTO_PAYLOAD_TYPE,
    PREDICATE_TYPE,
    FindingRef,
    GateAttestation,
    GatePredicate,
    Subject,
    sign_attestation,
    verify_attestation,
)
from dutyguard.trust.dsse import sign_envelope
from dutyguard.trust.errors import MalformedError, SignatureError, SubjectMismatchError
from dutyguard.trust.keys import Keyring, TrustedKey
from tests.trust.simulator import NOW

IMAGE = "oci://registry.example.com/shop/web@sha256:" + "ab" * 32
COMMIT = "git:" + "1f" * 20


def predicate(**changes: object) -> GatePredicate:
    base = GatePredicate(
        decision="pass",
        policy_name="acme-baseline",
        policy_issuer="cp.test.example",
        policy_version=7,
        policy_digest="sha256:" + "cd" * 32,
        snapshot_version=12,
        blocking=(),
        waived=(
            FindingRef(
                "pss.host-ports", "high", "8f461b941e3945d8d0a121a1ded96adf", "exc-7", NOW + timedelta(days=3)
            ),
        ),
        errors=0,
        submitter="ci-shop",
        time=NOW,
        scanner_version="0.1.0",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.fixture
def cp_key() -> Signer:
    return Signer.generate()


@pytest.fixture
def ring(cp_key: Signer) -> Keyring:
    return Keyring([TrustedKey(cp_key.verifier)])


def attestation(subject: str = IMAGE, **changes: object) -> GateAttestation:
    return GateAttestation((Subject.parse(subject),), predicate(**changes))


def test_statement_layout() -> None:
    st = attestation().statement()
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == PREDICATE_TYPE
    assert st["subject"] == [{"name": "registry.example.com/shop/web", "digest": {"sha256": "ab" * 32}}]
    pred = st["predicate"]
    assert isinstance(pred, dict)
    assert pred["waivedFindings"] == [
        {
            "ruleId": "pss.host-ports",
            "severity": "high",
            "fingerprint": "8f461b941e3945d8d0a121a1ded96adf",
            "exceptionId": "exc-7",
            "expires": "2025-06-04T12:00:00Z",
        }
    ]
    assert pred["policy"] == {
        "name": "acme-baseline",
        "issuer": "cp.test.example",
        "version": 7,
        "digest": "sha256:" + "cd" * 32,
    }


def test_sign_and_verify_roundtrip(cp_key: Signer, ring: Keyring) -> None:
    env = sign_attestation(cp_key, attestation())
    assert env.payload_type == INTOTO_PAYLOAD_TYPE
    v = verify_attestation(env.dumps(), ring, "att", Subject.parse(IMAGE))
    assert v.attestation == attestation()
    assert v.signed_by[0].key_id == cp_key.key_id


def test_git_subject() -> None:
    s = Subject.parse(COMMIT)
    assert s.to_json() == {"name": "git", "digest": {"gitCommit": "1f" * 20}}
    assert s.render() == COMMIT


@pytest.mark.parametrize(
    "text",
    [
        "registry.example.com/web:1.0",
        "oci://registry.example.com/web@sha256:AB",
        "git:main",
        "oci://web@sha256:" + "a" * 64,
    ],
)
def test_bad_subjects(text: str) -> None:
    with pytest.raises(ValueError, match="is not oci://"):
        Subject.parse(text)


def test_subject_mismatch(cp_key: Signer, ring: Keyring) -> None:
    env = sign_attestation(cp_key, attestation())
    other = Subject.parse("oci://registry.example.com/shop/web@sha256:" + "ef" * 32)
    with pytest.raises(SubjectMismatchError, match=r"not oci://registry\.example\.com/shop/web@sha256:efef"):
        verify_attestation(env.dumps(), ring, "att", other)


@pytest.mark.parametrize(
    "changes",
    [
        {"decision": "pass", "blocking": (FindingRef("pss.privileged", "critical", "0" * 32),)},
        {"decision": "pass", "errors": 1},
        {"decision": "fail"},
        {"decision": "breakglass"},
        {"decision": "fail", "errors": 1, "breakglass_grant": "bg-1"},
        {"decision": "maybe"},
    ],
    ids=[
        "pass-with-blocking",
        "pass-with-errors",
        "fail-without-reason",
        "breakglass-without-grant",
        "grant-on-fail",
        "unknown",
    ],
)
def test_inconsistent_predicates_are_never_signed(cp_key: Signer, changes: dict[str, object]) -> None:
    with pytest.raises(MalformedError, match="predicate"):
        sign_attestation(cp_key, attestation(**changes))


def test_predicate_is_strict(cp_key: Signer, ring: Keyring) -> None:
    st = attestation().statement()
    pred = st["predicate"]
    assert isinstance(pred, dict)
    pred["approvedBy"] = "someone"
    env = sign_envelope(cp_key, INTOTO_PAYLOAD_TYPE, canonical_json(st))
    with pytest.raises(MalformedError, match="unexpected or missing field"):
        verify_attestation(env.dumps(), ring, "att")


def test_unknown_statement_fields_are_ignored(cp_key: Signer, ring: Keyring) -> None:
    # in-toto parsing rules: consumers ignore fields they do not know at the statement layer.
    st = attestation().statement()
    st["futureField"] = {"x": 1}
    env = sign_envelope(cp_key, INTOTO_PAYLOAD_TYPE, canonical_json(st))
    assert verify_attestation(env.dumps(), ring, "att").attestation.predicate.decision == "pass"


def test_other_predicate_type_is_refused(cp_key: Signer, ring: Keyring) -> None:
    st = attestation().statement()
    st["predicateType"] = "https://slsa.dev/provenance/v1"
    env = sign_envelope(cp_key, INTOTO_PAYLOAD_TYPE, canonical_json(st))
    with pytest.raises(MalformedError, match="predicateType"):
        verify_attestation(env.dumps(), ring, "att")


def test_edited_decision_breaks_the_signature(cp_key: Signer, ring: Keyring) -> None:
    doc = json.loads(
        sign_attestation(
            cp_key,
            attestation(decision="fail", blocking=(FindingRef("pss.privileged", "critical", "0" * 32),)),
        ).dumps()
    )
    st = json.loads(base64.b64decode(doc["payload"]))
    st["predicate"]["decision"] = "pass"
    st["predicate"]["blockingFindings"] = []
    doc["payload"] = base64.b64encode(canonical_json(st)).decode()
    with pytest.raises(SignatureError):
        verify_attestation(json.dumps(doc).encode(), ring, "att")


# --- through the CLI ------------------------------------------------------------------------------
def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def files(tmp_path: Path, cp_key: Signer) -> tuple[Path, Path]:
    key = tmp_path / "cp.pub"
    key.write_text(cp_key.verifier.public_text())
    att = tmp_path / "gate.intoto.json"
    att.write_bytes(sign_attestation(cp_key, attestation()).dumps())
    return att, key


def test_attest_verify_cli(files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    att, key = files
    code, out, _ = run(
        capsys, "attest", "verify", str(att), "--trust", str(key), "--subject", IMAGE, "--require-pass"
    )
    assert code == 0
    assert f"verified gate attestation for {IMAGE}" in out
    assert "decision: pass" in out
    assert "waived: 1 (exceptions exc-7)" in out
    code, out, _ = run(capsys, "attest", "verify", str(att), "--trust", str(key), "--json")
    assert code == 0
    assert json.loads(out)["statement"]["predicate"]["exceptions"] == {"snapshotVersion": 12}


def test_attest_verify_subject_mismatch_cli(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    att, key = files
    code, out, err = run(capsys, "attest", "verify", str(att), "--trust", str(key), "--subject", COMMIT)
    assert code == 2
    assert "verification failed [subject]" in err
    assert out == ""


def test_require_pass_on_a_failed_gate(
    tmp_path: Path, cp_key: Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "cp.pub"
    key.write_text(cp_key.verifier.public_text())
    failed = tmp_path / "fail.json"
    failed.write_bytes(
        sign_attestation(
            cp_key,
            attestation(decision="fail", blocking=(FindingRef("pss.privileged", "critical", "0" * 32),)),
        ).dumps()
    )
    assert run(capsys, "attest", "verify", str(failed), "--trust", str(key))[0] == 0  # authentic
    code, _, err = run(capsys, "attest", "verify", str(failed), "--trust", str(key), "--require-pass")
    assert code == 1
    assert "'fail', not a pass" in err


def test_breakglass_is_loud(tmp_path: Path, cp_key: Signer, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "cp.pub"
    key.write_text(cp_key.verifier.public_text())
    bg = tmp_path / "bg.json"
    bg.write_bytes(
        sign_attestation(
            cp_key,
            attestation(
                decision="breakglass",
                blocking=(FindingRef("pss.privileged", "critical", "0" * 32),),
                breakglass_grant="bg-42",
            ),
        ).dumps()
    )
    code, _, err = run(capsys, "attest", "verify", str(bg), "--trust", str(key), "--require-pass")
    assert code == 0
    assert "BREAK-GLASS" in err
    assert "bg-42" in err


def test_forged_attestation_rejected(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A CI runner holds no control-plane key. It makes its own and signs a passing statement
    # for its image; with the control plane's key pinned, that is refused.
    _, key = files
    runner_key = Signer.generate()
    forged = tmp_path / "forged.json"
    forged.write_bytes(sign_attestation(runner_key, attestation()).dumps())
    code, out, err = run(capsys, "attest", "verify", str(forged), "--trust", str(key), "--subject", IMAGE)
    assert code == 2
    assert "verification failed [signature]" in err
    assert runner_key.key_id[:16] in err
    assert out == ""


def test_attestation_by_a_retired_key_after_its_window(
    tmp_path: Path, cp_key: Signer, capsys: pytest.CaptureFixture[str]
) -> None:
    ring = Keyring([TrustedKey(cp_key.verifier, None, NOW - timedelta(days=1))])
    keyring_file = tmp_path / "keyring.json"
    keyring_file.write_text(json.dumps(ring.to_json()))
    att = tmp_path / "late.json"
    att.write_bytes(sign_attestation(cp_key, attestation()).dumps())
    code, _, err = run(capsys, "attest", "verify", str(att), "--trust", str(keyring_file))
    assert code == 2
    assert "not valid at the attested time" in err
