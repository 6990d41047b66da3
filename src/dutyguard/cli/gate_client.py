"""The CI gate's conversation with the control plane: pull signed state, submit the decision.

``pull(url, directory)`` saves the two DSSE envelopes exactly as served (``bundle.dsse.json``,
``exceptions.dsse.json``), and optionally the attestation index (``attestations/``, one envelope
per subject, for the admission webhook's ``--require-attestations``). Nothing is trusted here:
the gate verifies what was saved (``dutyguard.trust.state``) before reading any of it, and a
download that fails is a ``missing`` check (exit 2), never a fall-back to the default policy.

``submit(url, report, gate, context, subject)`` sends what the gate decided and under which
state; the control plane checks it, decides again which findings block and signs the
attestation. The runner only receives the envelope: it holds no key and cannot forge one. The
submission also lists the inline suppressions the scan found, each with the findings it targets,
so the control plane can audit those no approved exception covers as bypass attempts.

``report_refusal(url, body)`` tells the control plane that state it served failed verification
here (:func:`refusal_report` builds the body from the bytes refused). It changes nothing on the
runner: the gate has already failed closed, and a report that cannot be delivered within
:data:`REPORT_TIMEOUT_S` is only a warning.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dutyguard.cli.client import ApiError, Client, resolve
from dutyguard.core.model import ScanReport, SuppressionRequest
from dutyguard.errors import DutyguardError
from dutyguard.exceptions.matcher import MatchContext
from dutyguard.trust.errors import MissingError, StateFileError, TrustError
from dutyguard.trust.gate import SignedGate
from dutyguard.trust.state import BUNDLE_FILE, SNAPSHOT_FILE, StateFile

STATE_PATHS = ((BUNDLE_FILE, "/state/bundle"), (SNAPSHOT_FILE, "/state/exceptions"))
ATTESTATIONS_DIR = "attestations"
MAX_INDEX_PAGES = 1000

REFUSALS_PATH = "/state/verification-failures"
REPORT_TIMEOUT_S = 5.0
"""Longest the gate waits to report a refusal (connect, send and answer together)."""
MAX_SUPPRESSIONS = 1000
MAX_SUPPRESSION_TARGETS = 256
"""Bounds of the control plane's schema (``server.state_schemas``): past them the rest are counted."""
MAX_SUPPRESSION_BYTES = 1024 * 1024
"""JSON the suppression list may add to a submission (the control plane takes 4 MiB in all)."""


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
        "suppression_requests": suppressions(report),
        "suppression_requests_total": len(report.suppression_requests),
    }


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_CONTROL_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_RULE_ID = re.compile(r"[a-z0-9]+(?:[.-][a-z0-9]+)*")


def _clip(text: str, n: int, *, tail: bool = False) -> str:
    """At most ``n`` characters (a path keeps its end)."""
    if len(text) <= n:
        return text
    return "…" + text[-(n - 1) :] if tail else text[: n - 1] + "…"


def _plain(text: str, n: int, *, tail: bool = False) -> str:
    """Without control characters, at most ``n`` characters."""
    return _clip(_CONTROL.sub("?", text), n, tail=tail)


def suppressions(report: ScanReport) -> list[dict[str, Any]]:
    """The first suppression requests, as many as fit the control plane's bounds (the count of
    all of them goes along, so what is left out is still counted)."""
    by_file: dict[str, list[int]] = {}
    for i, f in enumerate(report.findings):
        by_file.setdefault(f.location.file, []).append(i)
    out: list[dict[str, Any]] = []
    used = 0
    for s in report.suppression_requests[:MAX_SUPPRESSIONS]:
        item = suppression(s, report, by_file.get(s.file, []))
        used += len(json.dumps(item))
        if used > MAX_SUPPRESSION_BYTES:
            break
        out.append(item)
    return out


def suppression(s: SuppressionRequest, report: ScanReport, in_file: list[int]) -> dict[str, Any]:
    """One suppression request, clipped to the control plane's bounds, with the findings it
    targets among ``in_file`` (the indices of its file's findings): a rule it names, every rule
    when it names none — as the SARIF output and ``exception request --from-suppression`` do.
    Unwaived ones first, so a list cut at the bound still shows what no exception covers."""
    targeted = [
        i
        for i in in_file
        if not s.targets
        or report.findings[i].rule_id in s.matched_rules
        or report.findings[i].rule_id in s.targets
    ]
    targeted.sort(key=lambda i: report.findings[i].waiver is not None)
    return {
        "file": _plain(s.file, 1024, tail=True) or "?",
        "line": max(0, min(s.line, 2**31 - 1)),
        "syntax": _plain(s.syntax, 64) or "?",
        "targets": [_plain(t, 128) for t in s.targets[:32] if t],
        "matched_rules": [r for r in s.matched_rules if len(r) <= 128 and _RULE_ID.fullmatch(r)][:32],
        "text": _plain(s.text, 256),
        "findings": targeted[:MAX_SUPPRESSION_TARGETS],
    }


def _without_suppressions(e: ApiError) -> bool:
    """A control plane from before suppression requests refuses the unknown fields."""
    if e.status != 422:
        return False
    fields = [str(x.get("field", "")) for x in e.problem.get("errors") or () if isinstance(x, dict)]
    return bool(fields) and all(f.startswith("body.suppression_requests") for f in fields)


def submit(
    url: str, report: ScanReport, gate: SignedGate, context: MatchContext, subject: str
) -> dict[str, Any]:
    """POST the decision; the control plane's signed attestation (with its decision) comes back."""
    body = submission(report, gate, context, subject)
    with Client(resolve(url)) as client:
        try:
            result: dict[str, Any] = client.post("/attestations", body)
        except ApiError as e:
            if not _without_suppressions(e):
                raise
            print(
                "dutyguard: warning: the control plane does not take suppression requests (an older "
                f"version): {len(report.suppression_requests)} inline suppression(s) were not audited there",
                file=sys.stderr,
            )
            body = {k: v for k, v in body.items() if not k.startswith("suppression_requests")}
            result = client.post("/attestations", body)
    return result


# --- refusals of served state -------------------------------------------------------------------
_KEY_ID = re.compile(r"[\x21-\x7e]{1,128}")
_ISSUER = re.compile(r"[\x21-\x7e]{1,253}")
_MAX_VERSION = 2**53 - 1


def _claims(data: bytes) -> tuple[list[str], str | None, int | None]:
    """Key ids, issuer and version the refused envelope claims, read leniently (none verified);
    whatever cannot be read is left out."""
    try:
        env = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return [], None, None
    if not isinstance(env, dict):
        return [], None, None
    sigs = env.get("signatures")
    key_ids: list[str] = []
    for sig in sigs[:16] if isinstance(sigs, list) else ():
        keyid = sig.get("keyid") if isinstance(sig, dict) else None
        if isinstance(keyid, str) and _KEY_ID.fullmatch(keyid) and keyid not in key_ids:
            key_ids.append(keyid)
    payload = env.get("payload")
    if not isinstance(payload, str):
        return key_ids, None, None
    try:
        text = payload.strip().replace("-", "+").replace("_", "/")
        value = json.loads(base64.b64decode(text + "=" * (-len(text) % 4), validate=True))
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError):
        return key_ids, None, None
    if not isinstance(value, dict):
        return key_ids, None, None
    issuer, version = value.get("issuer"), value.get("version")
    issuer = issuer if isinstance(issuer, str) and _ISSUER.fullmatch(issuer) else None
    ok = isinstance(version, int) and not isinstance(version, bool) and 1 <= version <= _MAX_VERSION
    return key_ids, issuer, version if ok else None


def _digest(path: Path) -> tuple[str, int, bytes | None]:
    """SHA-256 and size of the file, and its bytes when small enough to read for claims."""
    from dutyguard.trust.dsse import MAX_ENVELOPE_BYTES

    h = hashlib.sha256()
    size = 0
    kept: list[bytes] | None = []
    with path.open("rb") as f:
        while chunk := f.read(1024 * 1024):
            h.update(chunk)
            size += len(chunk)
            if kept is not None:
                kept.append(chunk)
                if size > MAX_ENVELOPE_BYTES:
                    kept = None
    return "sha256:" + h.hexdigest(), size, None if kept is None else b"".join(kept)


def refusal_report(
    error: TrustError,
    fetched: Path,
    url: str,
    state_file: Path,
    context: MatchContext,
    subject: str | None,
) -> dict[str, Any] | None:
    """The body of ``POST /state/verification-failures`` for a refused document served at ``url``;
    ``None`` when the failure is not about one (the runner's own state file, for one)."""
    served = {str(fetched / name): (name, path) for name, path in STATE_PATHS}
    if error.source not in served:
        return None
    name, path = served[error.source]
    document = "bundle" if name == BUNDLE_FILE else "snapshot"
    try:
        digest, size, data = _digest(fetched / name)
    except OSError:
        return None
    key_ids, issuer, version = _claims(data) if data is not None else ([], None, None)
    last_seen = None
    if issuer is not None:
        try:
            seen = StateFile(state_file).read()
        except StateFileError:
            seen = None
        if seen is not None:
            record = (seen.bundles if document == "bundle" else seen.snapshots).get(issuer)
            last_seen = record.version if record is not None and 1 <= record.version <= _MAX_VERSION else None
    where = f"{url.rstrip('/')}/api/v1{path}"
    reason = error.reason.replace(str(fetched / name), where).replace(str(fetched), where)
    return {
        "document": document,
        "check": error.check,
        "reason": _clip(_CONTROL_BUT_LINES.sub("?", reason), 2000) or error.check,
        "digest": digest,
        "size": size,
        "key_ids": key_ids,
        "claimed_issuer": issuer,
        "claimed_version": version,
        "last_seen_version": last_seen,
        "app": context.app,
        "cluster": context.cluster,
        "subject": subject,
    }


def report_refusal(url: str, body: dict[str, Any], timeout_s: float | None = None) -> str | None:
    """POST ``body``; ``None`` once the control plane recorded it, else why not (for a warning).

    The request runs in a daemon thread the gate waits for at most ``timeout_s`` in all: a server
    that accepts the connection and then answers a byte at a time cannot hold the gate.
    """
    limit = REPORT_TIMEOUT_S if timeout_s is None else timeout_s
    outcome: list[str | None] = []

    def send() -> None:
        try:
            with Client(resolve(url), timeout_s=limit) as client:
                client.post(REFUSALS_PATH, body)
            outcome.append(None)
        except DutyguardError as e:
            outcome.append(e.diagnostics())
        except Exception as e:  # a bug in reporting must never change the gate's verdict
            outcome.append(f"{type(e).__name__}: {e}")

    thread = threading.Thread(target=send, name="dutyguard-refusal-report", daemon=True)
    thread.start()
    thread.join(limit)
    if thread.is_alive() or not outcome:
        return f"no answer within {limit:g} s"
    return outcome[0]


def save_attestation(result: dict[str, Any], out: Path) -> None:
    _write(out, json.dumps(result["envelope"], indent=2).encode() + b"\n")
