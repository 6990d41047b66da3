"""The optional image rule's index: gate attestations by image digest.

Each file in the directory is a DSSE envelope holding a gate attestation (what
``dutyguard scan --attest`` gets back from the control plane). Every one is verified with the
control plane's keyring (:func:`dutyguard.trust.attest.verify_attestation`); those that do
not verify are left out and counted, never trusted. An image digest is admitted when some
verified attestation names it as a subject with decision ``pass`` (or ``breakglass``, which
the control plane only signs for an open, audited grant).

Bounded: at most ``max_files`` files of at most the envelope size limit each.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from dutyguard.errors import DutyguardError
from dutyguard.trust.keys import Keyring

logger = logging.getLogger("dutyguard.admission")

PASSING = frozenset({"pass", "breakglass"})
MAX_FILES = 20_000


@dataclass(frozen=True, slots=True)
class AttestationDirIndex:
    by_digest: dict[str, str] = field(default_factory=dict)
    """``sha256:<hex>`` -> id of a passing attestation (``sha256:`` of its envelope)."""
    refused: tuple[str, ...] = ()

    def passing(self, image_digest: str) -> str | None:
        return self.by_digest.get(image_digest)


def load_index(directory: Path, keyring: Keyring, max_files: int = MAX_FILES) -> AttestationDirIndex:
    from dutyguard.trust.attest import verify_attestation
    from dutyguard.trust.dsse import MAX_ENVELOPE_BYTES

    by_digest: dict[str, str] = {}
    refused: list[str] = []
    try:
        paths = sorted(p for p in directory.iterdir() if p.is_file() and not p.is_symlink())
    except OSError as e:
        raise DutyguardError(f"attestations directory {directory}: {e.strerror or e}") from None
    if len(paths) > max_files:
        raise DutyguardError(f"attestations directory {directory}: more than {max_files} files")
    for path in paths:
        try:
            with path.open("rb") as f:
                data = f.read(MAX_ENVELOPE_BYTES + 1)
            verified = verify_attestation(data, keyring, str(path))
        except (OSError, DutyguardError) as e:
            refused.append(f"{path.name}: {e}")
            continue
        att = verified.attestation
        if att.predicate.decision not in PASSING:
            continue
        att_id = "sha256:" + hashlib.sha256(data).hexdigest()
        for subject in att.subjects:
            hexval = subject.digest.get("sha256")
            if hexval and subject.name != "git":
                by_digest.setdefault(f"sha256:{hexval}", att_id)
    if refused:
        logger.error("%d attestation(s) refused: %s", len(refused), "; ".join(refused[:5]))
    return AttestationDirIndex(by_digest, tuple(refused))
