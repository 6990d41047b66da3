"""A control plane in miniature: signs bundles and snapshots the way the server will.

Like python-tuf's repository simulator, tests drive it to publish, re-publish, expire and
rotate, then hand the runner's side only what ``dutyguard state pull`` would save.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from dutyguard.audit.signing import Signer
from dutyguard.exceptions.model import ExceptionGrant, ExceptionScope
from dutyguard.policy.parse import parse_bundle_text
from dutyguard.rules import default_registry
from dutyguard.trust.state import (
    BUNDLE_FILE,
    SNAPSHOT_FILE,
    ExceptionSnapshot,
    PublishedBundle,
    sign_bundle,
    sign_snapshot,
)

NOW = datetime(2025, 6, 1, 12, 0, 0, tzinfo=UTC)

BASELINE_BUNDLE = """\
apiVersion: dutyguard.dev/v1
kind: PolicyBundle
metadata:
  name: acme-baseline
spec:
  rules:
    include:
      - pack: pss-baseline
  podSecurity:
    default: baseline
"""

_REGISTRY = default_registry()


def grant(
    exc_id: str,
    rule_id: str,
    *,
    fingerprint: str | None = None,
    app: str | None = None,
    namespace: str | None = None,
    image_digest: str | None = None,
    cluster: str | None = None,
    approvers: tuple[str, ...] = ("bob", "carol"),
    approved_at: datetime = NOW - timedelta(days=1),
    expires: datetime = NOW + timedelta(days=5),
) -> ExceptionGrant:
    return ExceptionGrant(
        id=exc_id,
        rule_id=rule_id,
        scope=ExceptionScope(fingerprint, app, namespace, image_digest, cluster),
        requester="alice",
        approvers=approvers,
        justification="vendor DaemonSet needs the host network until the v2 chart ships",
        compensating_control="Falco rule on unexpected host connections, reviewed weekly",
        approved_at=approved_at,
        expires=expires,
    )


@dataclass
class ControlPlane:
    issuer: str = "cp.test.example"
    signer: Signer = field(default_factory=Signer.generate)
    bundle_version: int = 0
    snapshot_version: int = 0
    previous_digest: str | None = None

    def publish(
        self,
        text: str = BASELINE_BUNDLE,
        *,
        issued_at: datetime = NOW - timedelta(hours=1),
        lifetime: timedelta = timedelta(days=30),
        version: int | None = None,
        signer: Signer | None = None,
    ) -> bytes:
        bundle = parse_bundle_text(text, "bundle.yaml", _REGISTRY)
        self.bundle_version = version if version is not None else self.bundle_version + 1
        published = PublishedBundle(
            self.issuer, self.bundle_version, issued_at, issued_at + lifetime, bundle, self.previous_digest
        )
        self.previous_digest = bundle.digest
        return sign_bundle(signer or self.signer, published).dumps()

    def snapshot(
        self,
        exceptions: tuple[ExceptionGrant, ...] = (),
        *,
        issued_at: datetime = NOW - timedelta(hours=1),
        lifetime: timedelta = timedelta(days=1),
        version: int | None = None,
        signer: Signer | None = None,
    ) -> bytes:
        self.snapshot_version = version if version is not None else self.snapshot_version + 1
        snap = ExceptionSnapshot(
            self.issuer, self.snapshot_version, issued_at, issued_at + lifetime, exceptions
        )
        return sign_snapshot(signer or self.signer, snap).dumps()

    def pull(self, directory: Path, bundle: bytes, snapshot: bytes) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / BUNDLE_FILE).write_bytes(bundle)
        (directory / SNAPSHOT_FILE).write_bytes(snapshot)
        return directory

    def key_file(self, path: Path, signer: Signer | None = None) -> Path:
        path.write_text((signer or self.signer).verifier.public_text() + "\n", encoding="utf-8")
        return path
