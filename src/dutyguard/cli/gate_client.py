"""The CI gate's conversation with the control plane: pull signed state, submit the decision.

``pull(url, directory)`` saves the two DSSE envelopes exactly as served (``bundle.dsse.json``,
``exceptions.dsse.json``), and optionally the attestation index (``attestations/``, one envelope
per subject, for the admission webhook's ``--require-attestations``). Nothing is trusted here:
the gate verifies what was saved (``dutyguard.trust.state``) before reading any of it, and a
download that fails is a ``missing`` check (exit 2), never a fall-back to the default policy.

``submit(url, report, gate, context, subject)`` sends what the gate decided and under which
state; the control plane checks it, decides again which findings block and signs the
attestation. The runner only receives the envelope: it holds no key and cannot forge one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dutyguard.cli.client import ApiError, Client, resolve
from dutyguard.core.model import ScanReport
from dutyguard.exceptions.matcher import MatchContext
from dutyguard.trust.errors import MissingError
from dutyguard.trust.gate import SignedGate
from dutyguard.trust.state import BUNDLE_FILE, SNAPSHOT_FILE

STATE_PATHS = ((BUNDLE_FILE, "/state/bundle"), (SNAPSHOT_FILE, "/state/exceptions"))
ATTESTATIONS_DIR = "attestations"
MAX_INDEX_PAGES = 1000


def _write(path: Path, data: bytes) -> None:
    """Atomically: a reader (a webhook) never sees half a document."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def pull(url: str, directory: Path, *, attestations: bool = False) -> dict[str, Any]:
    """Download the signed state into ``directory``; :class:`MissingError` if any part fails."""
    directory.mkdir(parents=True, exist_ok=True)
    saved: dict[str, Any] = {}
    try:
        with Client(resolve(url)) as client:
            for name, path in STATE_PATHS:
                out = directory / name
                n = client.stream_to(path, out)
                saved[name] = n
            if attestations:
                saved[ATTESTATIONS_DIR] = _pull_attestations(client, directory / ATTESTATIONS_DIR)
    except ApiError as e:
        raise MissingError(
            f"{url.rstrip('/')}/api/v1", f"cannot fetch the signed state: {e.diagnostics()}"
        ) from None
    return saved


def _pull_attestations(client: Client, directory: Path) -> int:
    directory.mkdir(parents=True, exist_ok=True)
    wanted: set[str] = set()
    cursor: str | None = None
    for _ in range(MAX_INDEX_PAGES):
        page = client.get("/state/attestations", limit=500, cursor=cursor)
        for item in page["items"]:
            # One file per subject, named by a hash of it (subjects hold '/' and ':').
            name = hashlib.sha256(str(item["subject"]).encode()).hexdigest()[:32] + ".dsse.json"
            wanted.add(name)
            _write(directory / name, json.dumps(item["envelope"], indent=2).encode() + b"\n")
        cursor = page.get("next_cursor")
        if not cursor:
            break
    for stale in directory.glob("*.dsse.json"):
        if stale.name not in wanted:
            stale.unlink()
    return len(wanted)


@contextlib.contextmanager
def pulled(url: str) -> Iterator[Path]:
    """The signed state in a private temporary directory, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="dutyguard-state-") as tmp:
        pull(url, Path(tmp))
        yield Path(tmp)


def submission(report: ScanReport, gate: SignedGate, context: MatchContext, subject: str) -> dict[str, Any]:
    from dutyguard.trust._time import format_time

    b = gate.bundle.published
    return {
        "subject": subject,
        "app": context.app,
        "cluster": context.cluster,
        "policy": {"version": b.version, "digest": b.digest},
        "snapshot_version": gate.snapshot.snapshot.version,
        "findings": [
            {
                "rule_id": f.rule_id,
                "severity": f.severity.value,
                "fingerprint": f.fingerprint,
                "namespace": f.location.namespace,
                "blocking": report.is_blocking(f),
                "waiver": None
                if f.waiver is None
                else {"exception_id": f.waiver.exception_id, "expires": format_time(f.waiver.expires)},
            }
            for f in report.findings
        ],
        "errors": len(report.errors),
    }


def submit(
    url: str, report: ScanReport, gate: SignedGate, context: MatchContext, subject: str
) -> dict[str, Any]:
    """POST the decision; the control plane's signed attestation (with its decision) comes back."""
    with Client(resolve(url)) as client:
        result: dict[str, Any] = client.post("/attestations", submission(report, gate, context, subject))
    return result


def save_attestation(result: dict[str, Any], out: Path) -> None:
    _write(out, json.dumps(result["envelope"], indent=2).encode() + b"\n")
