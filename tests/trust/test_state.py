"""TrustedState: each check, in order, and the record of versions seen."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import timedelta
from pathlib import Path

import pytest

from dutyguard.audit.canonical import canonical_json
from dutyguard.audit.signing import Signer
from dutyguard.rules import default_registry
from dutyguard.trust.dsse import sign_envelope
from dutyguard.trust.errors import (
    DigestMismatchError,
    ExpiredError,
    MalformedError,
    MissingError,
    RollbackError,
    SignatureError,
    StateFileError,
)
from dutyguard.trust.keys import Keyring, TrustedKey
from dutyguard.trust.state import (
    BUNDLE_PAYLOAD_TYPE,
    SNAPSHOT_PAYLOAD_TYPE,
    Seen,
    SeenState,
    StateFile,
    TrustedState,
)
from tests.trust.simulator import BASELINE_BUNDLE, NOW, ControlPlane, grant

REGISTRY = default_registry()


def verifier(cp: ControlPlane, seen: SeenState | None = None, now=NOW) -> TrustedState:  # type: ignore[no-untyped-def]
    return TrustedState(Keyring([TrustedKey(cp.signer.verifier)]), REGISTRY, now, seen or SeenState())


def test_bundle_then_snapshot_verify_and_are_recorded() -> None:
    cp = ControlPlane()
    ts = verifier(cp)
    vb = ts.update_bundle(cp.publish(), "b")
    vs = ts.update_snapshot(cp.snapshot((grant("exc-1", "pss.host-ports", app="web"),)), "s")
    assert vb.published.bundle.name == "acme-baseline"
    assert vb.published.version == 1
    assert [e.id for e in vs.snapshot.exceptions] == ["exc-1"]
    seen = ts.seen_after()
    assert seen.bundles[cp.issuer] == Seen(1, vb.published.digest)
    assert seen.snapshots[cp.issuer].version == 1
    assert vs.digest.startswith("sha256:")


def test_order_is_enforced() -> None:
    cp = ControlPlane()
    ts = verifier(cp)
    with pytest.raises(RuntimeError, match="bundle before"):
        ts.update_snapshot(cp.snapshot(), "s")
    ts.update_bundle(cp.publish(), "b")
    with pytest.raises(RuntimeError, match="already loaded"):
        ts.update_bundle(cp.publish(), "b")
    with pytest.raises(RuntimeError, match="nothing to record"):
        ts.seen_after()


def test_digest_of_bundle_is_checked() -> None:
    # A (trusted) signer that signs a digest not matching its bundle: caught by the digest check.
    cp = ControlPlane()
    good = json.loads(base64.b64decode(json.loads(cp.publish())["payload"]))
    good["digest"] = "sha256:" + "0" * 64
    env = sign_envelope(cp.signer, BUNDLE_PAYLOAD_TYPE, canonical_json(good))
    with pytest.raises(DigestMismatchError) as e:
        verifier(cp).update_bundle(env.dumps(), "b")
    assert e.value.check == "digest"
    assert "sha256:" + "0" * 64 in str(e.value)


def test_spelling_of_a_signed_payload_does_not_matter() -> None:
    # The signature covers the bytes; the digest is of the canonical form of the value read.
    cp = ControlPlane()
    value = json.loads(base64.b64decode(json.loads(cp.publish())["payload"]))
    env = sign_envelope(cp.signer, BUNDLE_PAYLOAD_TYPE, json.dumps(value, indent=1).encode())
    assert verifier(cp).update_bundle(env.dumps(), "b").published.digest == value["digest"]


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        (b'{"type": "a", "type": "b"}', "duplicate member name 'type'"),
        (b'{"version": 1.0}', "not an integer"),
        (b'{"version": NaN}', "NaN is not JSON"),
        (b"[1]", "not a JSON object"),
    ],
)
def test_signed_payload_is_read_strictly(payload: bytes, why: str) -> None:
    cp = ControlPlane()
    env = sign_envelope(cp.signer, BUNDLE_PAYLOAD_TYPE, payload)
    with pytest.raises(MalformedError, match=why):
        verifier(cp).update_bundle(env.dumps(), "b")


def test_snapshot_in_the_bundle_slot_is_malformed() -> None:
    cp = ControlPlane()
    with pytest.raises(MalformedError, match="payload type"):
        verifier(cp).update_bundle(cp.snapshot(), "b")


def test_signed_bundle_with_unknown_rule_is_malformed() -> None:
    # A newer control plane may publish rules this runner does not have: refuse, never ignore.
    cp = ControlPlane()
    value = json.loads(base64.b64decode(json.loads(cp.publish())["payload"]))
    value["bundle"]["spec"]["rules"]["include"].append({"id": "k8s.rule-from-the-future"})
    value["digest"] = "sha256:" + hashlib.sha256(canonical_json(value["bundle"])).hexdigest()
    env = sign_envelope(cp.signer, BUNDLE_PAYLOAD_TYPE, canonical_json(value))
    with pytest.raises(MalformedError, match=r"k8s\.rule-from-the-future"):
        verifier(cp).update_bundle(env.dumps(), "b")


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("version", 0, "version"),
        ("version", True, "version"),
        ("issuer", "", "issuer"),
        ("expires", "2025-06-30", "UTC timestamp"),
        ("extra", 1, "unexpected or missing"),
        ("type", "dutyguard.dev/ExceptionSnapshot/v1", "not a"),
    ],
)
def test_bundle_header_is_strict(field: str, value: object, why: str) -> None:
    cp = ControlPlane()
    doc = json.loads(base64.b64decode(json.loads(cp.publish())["payload"]))
    doc[field] = value
    env = sign_envelope(cp.signer, BUNDLE_PAYLOAD_TYPE, canonical_json(doc))
    with pytest.raises(MalformedError, match=why):
        verifier(cp).update_bundle(env.dumps(), "b")


def test_bundle_lifetime_is_bounded() -> None:
    cp = ControlPlane()
    doc = json.loads(base64.b64decode(json.loads(cp.publish())["payload"]))
    doc["expires"] = "2026-06-01T00:00:00Z"
    env = sign_envelope(cp.signer, BUNDLE_PAYLOAD_TYPE, canonical_json(doc))
    with pytest.raises(MalformedError, match="lifetime"):
        verifier(cp).update_bundle(env.dumps(), "b")


def test_expired_snapshot() -> None:
    cp = ControlPlane()
    ts = verifier(cp)
    ts.update_bundle(cp.publish(), "b")
    old = cp.snapshot(issued_at=NOW - timedelta(days=2), lifetime=timedelta(days=1))
    with pytest.raises(ExpiredError, match="exception snapshot v1 expired at 2025-05-31T12:00:00Z"):
        ts.update_snapshot(old, "s")


def test_bundle_expiring_exactly_now_is_expired() -> None:
    cp = ControlPlane()
    with pytest.raises(ExpiredError):
        verifier(cp).update_bundle(cp.publish(issued_at=NOW - timedelta(days=30)), "b")


def test_same_version_with_other_content_is_a_rollback() -> None:
    cp = ControlPlane()
    first = cp.publish()
    seen = SeenState(bundles={cp.issuer: Seen(1, verifier(cp).update_bundle(first, "b").published.digest)})
    other = cp.publish(BASELINE_BUNDLE.replace("default: baseline", "default: restricted"), version=1)
    with pytest.raises(RollbackError, match="differs from the v1"):
        verifier(cp, seen).update_bundle(other, "b")
    assert verifier(cp, seen).update_bundle(first, "b").published.version == 1  # a re-run is fine


def test_versions_are_counted_per_issuer() -> None:
    cp, other = ControlPlane(), ControlPlane(issuer="cp.other.example")
    seen = SeenState(bundles={other.issuer: Seen(50, "sha256:" + "1" * 64)})
    assert verifier(cp, seen).update_bundle(cp.publish(), "b").published.version == 1


def test_snapshot_from_another_issuer_is_refused() -> None:
    cp = ControlPlane()
    stranger = ControlPlane(issuer="cp.other.example", signer=cp.signer)
    ts = verifier(cp)
    ts.update_bundle(cp.publish(), "b")
    with pytest.raises(MalformedError, match="two control planes"):
        ts.update_snapshot(stranger.snapshot(), "s")


def test_snapshot_with_requester_as_approver_is_malformed() -> None:
    cp = ControlPlane()
    bad = grant("exc-1", "pss.host-ports", app="web").to_json()
    bad["approvers"] = ["alice"]
    doc = json.loads(base64.b64decode(json.loads(cp.snapshot())["payload"]))
    doc["exceptions"] = [bad]
    env = sign_envelope(cp.signer, SNAPSHOT_PAYLOAD_TYPE, canonical_json(doc))
    ts = verifier(cp)
    ts.update_bundle(cp.publish(), "b")
    with pytest.raises(MalformedError, match="approved by its own requester"):
        ts.update_snapshot(env.dumps(), "s")


def test_duplicate_exception_ids_are_malformed() -> None:
    cp = ControlPlane()
    e = grant("exc-1", "pss.host-ports", app="web").to_json()
    doc = json.loads(base64.b64decode(json.loads(cp.snapshot())["payload"]))
    doc["exceptions"] = [e, e]
    env = sign_envelope(cp.signer, SNAPSHOT_PAYLOAD_TYPE, canonical_json(doc))
    ts = verifier(cp)
    ts.update_bundle(cp.publish(), "b")
    with pytest.raises(MalformedError, match="appears twice"):
        ts.update_snapshot(env.dumps(), "s")


# --- key rotation ---------------------------------------------------------------------------------
def test_retired_key_still_verifies_what_it_signed_in_its_window() -> None:
    cp = ControlPlane()
    old = cp.signer
    new = Signer.generate()
    rotation = NOW - timedelta(hours=12)
    ring = Keyring([TrustedKey(old.verifier, None, rotation), TrustedKey(new.verifier, rotation, None)])
    before = cp.publish(issued_at=NOW - timedelta(days=1), signer=old)
    ts = TrustedState(ring, REGISTRY, NOW, SeenState())
    assert ts.update_bundle(before, "b").signed_by[0].key_id == old.key_id
    after = cp.publish(issued_at=NOW - timedelta(hours=1), signer=new)
    assert (
        TrustedState(ring, REGISTRY, NOW, SeenState()).update_bundle(after, "b").signed_by[0].key_id
        == new.key_id
    )


def test_retired_key_cannot_sign_after_its_window() -> None:
    cp = ControlPlane()
    rotation = NOW - timedelta(hours=12)
    ring = Keyring([TrustedKey(cp.signer.verifier, None, rotation)])
    late = cp.publish(issued_at=NOW - timedelta(hours=1))
    with pytest.raises(SignatureError, match="not valid when the document says it was issued"):
        TrustedState(ring, REGISTRY, NOW, SeenState()).update_bundle(late, "b")


def test_revoked_key_verifies_nothing() -> None:
    cp = ControlPlane()
    replacement = Signer.generate()
    with pytest.raises(SignatureError, match="not trusted"):
        TrustedState(Keyring([TrustedKey(replacement.verifier)]), REGISTRY, NOW, SeenState()).update_bundle(
            cp.publish(), "b"
        )


# --- the state file -------------------------------------------------------------------------------
def test_state_file_roundtrip_and_missing_is_empty(tmp_path: Path) -> None:
    sf = StateFile(tmp_path / "sub" / "state.json")
    assert sf.read() == SeenState()
    state = SeenState(bundles={"a": Seen(3, "sha256:x")}, snapshots={"a": Seen(9, "sha256:y")})
    with sf.locked():
        sf.write(state)
    back = sf.read()
    assert dict(back.bundles) == {"a": Seen(3, "sha256:x")}
    assert dict(back.snapshots) == {"a": Seen(9, "sha256:y")}
    assert not [p for p in sf.path.parent.iterdir() if p.name.startswith(".trusted-state.")]


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"format": "something-else", "issuers": {}}',
        '{"format": "dutyguard.dev/trusted-state/v1", "issuers": {"a": {"bundle": {"version": "3", "digest": "x"}}}}',
        '{"format": "dutyguard.dev/trusted-state/v1", "issuers": {"a": {"bundle": {"version": true, "digest": "x"}}}}',
    ],
)
def test_damaged_state_file_fails_closed(tmp_path: Path, content: str) -> None:
    path = tmp_path / "state.json"
    path.write_text(content)
    with pytest.raises(StateFileError) as e:
        StateFile(path).read()
    assert e.value.check == "state-file"


def test_missing_state_files_are_named(tmp_path: Path) -> None:
    cp = ControlPlane()
    ts = verifier(cp)
    with pytest.raises(MissingError, match=r"bundle\.dsse\.json"):
        ts.load_dir(tmp_path)
