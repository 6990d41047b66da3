"""The runner's snapshot cache: a snapshot verified in full once is read back from the cache on
byte-identical bytes, and every check that depends on the clock, the keyring or this runner's
record still runs on the cached values. Damaged or unsafe entries are ignored, never errors."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import pytest

from dutyguard.audit.signing import Signer
from dutyguard.rules import default_registry
from dutyguard.trust.errors import ExpiredError, RollbackError, SignatureError
from dutyguard.trust.keys import Keyring, TrustedKey
from dutyguard.trust.snapshot_cache import SnapshotCache, envelope_digest
from dutyguard.trust.state import Seen, SeenState, TrustedState
from tests.trust.simulator import NOW, ControlPlane, grant

REGISTRY = default_registry()


def _grants(n: int = 50) -> tuple:  # type: ignore[type-arg]
    narrow = tuple(
        grant(
            f"exc-{i}",
            "pss.host-ports",
            fingerprint=f"{i:032x}",
            app="shop",
            expires=NOW + timedelta(days=1 + i % 3),
        )
        for i in range(n)
    )
    wide = grant(
        "exc-wide",
        "pss.privileged",
        namespace="monitoring",
        cluster="prod-eu",
        approvers=("bob", "carol", "dan"),
    )
    return (*narrow, wide)


def _load(
    cp: ControlPlane,
    bundle: bytes,
    snapshot: bytes,
    cache: SnapshotCache,
    *,
    keyring: Keyring | None = None,
    now=NOW,
    seen: SeenState | None = None,
) -> TrustedState:
    state = TrustedState(
        keyring or Keyring([TrustedKey(cp.signer.verifier)]), REGISTRY, now, seen or SeenState(), cache
    )
    state.update_bundle(bundle, "bundle")
    state.update_snapshot(snapshot, "snapshot")
    return state


@pytest.fixture
def setup(tmp_path: Path) -> tuple[ControlPlane, bytes, bytes, SnapshotCache]:
    cp = ControlPlane()
    return cp, cp.publish(), cp.snapshot(_grants()), SnapshotCache(tmp_path / "cache")


def test_second_run_reads_the_same_exceptions_from_the_cache(setup) -> None:  # type: ignore[no-untyped-def]
    cp, bundle, snapshot, cache = setup
    first = _load(cp, bundle, snapshot, cache)
    assert cache.get(envelope_digest(snapshot)) is not None
    second = _load(cp, bundle, snapshot, cache)
    assert first.snapshot is not None and second.snapshot is not None
    assert second.snapshot.snapshot == first.snapshot.snapshot  # every field of every exception
    assert second.snapshot.digest == first.snapshot.digest
    assert second.seen_after() == first.seen_after()


def test_cached_snapshot_is_still_checked_for_expiry_and_rollback(setup) -> None:  # type: ignore[no-untyped-def]
    cp, bundle, snapshot, cache = setup
    _load(cp, bundle, snapshot, cache)
    with pytest.raises(ExpiredError):
        _load(cp, bundle, snapshot, cache, now=NOW + timedelta(days=2))
    newer = SeenState(snapshots={cp.issuer: Seen(cp.snapshot_version + 1, "sha256:" + "0" * 64)})
    with pytest.raises(RollbackError):
        _load(cp, bundle, snapshot, cache, seen=newer)


def test_removing_the_key_also_removes_what_the_cache_knew(setup) -> None:  # type: ignore[no-untyped-def]
    cp, bundle, snapshot, cache = setup
    _load(cp, bundle, snapshot, cache)
    other = Signer.generate()
    ring = Keyring([TrustedKey(other.verifier), TrustedKey(cp.signer.verifier)])
    _load(cp, bundle, snapshot, cache, keyring=ring)  # still trusted: fine
    bundle2 = cp.publish(signer=other)
    only_new = Keyring([TrustedKey(other.verifier)])
    with pytest.raises(SignatureError):  # the cached entry is not used: verified in full, and refused
        _load(cp, bundle2, snapshot, cache, keyring=only_new)


def test_damaged_or_unsafe_entries_are_ignored(setup) -> None:  # type: ignore[no-untyped-def]
    cp, bundle, snapshot, cache = setup
    _load(cp, bundle, snapshot, cache)
    (entry,) = list(cache.directory.glob("*.cache"))
    data = entry.read_bytes()
    entry.write_bytes(data.replace(b"exc-7\x00", b"exc-X\x00"))
    assert cache.get(envelope_digest(snapshot)) is None  # its body no longer matches its digest
    entry.write_bytes(data)
    assert cache.get(envelope_digest(snapshot)) is not None
    os.chmod(entry, 0o666)
    assert cache.get(envelope_digest(snapshot)) is None  # writable by others: not ours to trust
    os.chmod(entry, 0o600)
    # another snapshot replaces the entry: the cache keeps one
    _load(cp, bundle, cp.snapshot(_grants(3)), cache)
    assert len(list(cache.directory.glob("*.cache"))) == 1


def test_gate_does_not_cache_snapshots_unless_asked(tmp_path: Path) -> None:
    """Strict by default: a runner's writable state directory must not be able to change the verdict."""
    from dutyguard.rules import default_registry
    from dutyguard.trust.gate import open_state
    from tests.trust.simulator import NOW

    cp = ControlPlane(issuer="cp.acme.example")
    key = cp.key_file(tmp_path / "cp.pub")
    state = cp.pull(tmp_path / "state", cp.publish(), cp.snapshot(_grants()))
    registry = default_registry()
    seen = tmp_path / "seen.json"
    cache_dir = SnapshotCache.beside(seen).directory
    open_state(state, [str(key)], seen, registry, NOW)
    assert not cache_dir.exists()
    open_state(state, [str(key)], seen, registry, NOW, cache_snapshots=True)
    assert cache_dir.is_dir()
    assert any(cache_dir.iterdir())
