"""The optional image rule's index: gate attestations by image digest.

Every attestation is verified with the control plane's keyring by
:func:`dutyguard.trust.attest.verify_attestation` (a trusted key valid at the attested time,
strict statement and predicate). An image digest is admitted when some verified attestation
names it as a subject with decision ``pass`` (or ``breakglass``, which the control plane only
signs for an open, audited grant). They come from one of two places:

* **A directory** (``--state`` mode, filled by ``dutyguard state pull --attestations``):
  :func:`load_index` reads one envelope per file; those that do not verify are left out and
  counted, never trusted.
* **The control plane** (``--control-plane`` mode): :class:`PulledAttestations` pages through
  ``GET /state/attestations`` on every refresh of the signed state. A small state machine over
  the *set in force*:

  ``none`` --(every entry of a complete pull verifies)--> ``set(s)`` --(the same)--> ``set(s')``

  Invariants: a candidate replaces the set in force only when *every* entry verified and is
  about the subject the list files it under (one that is not means the control plane, or the
  path to it, cannot be trusted this time: the whole pull is refused, as a tampered policy
  bundle is); a failed or refused pull changes nothing but the reported problem, so the last
  verified set stays in force; until a set has verified, this rule admits no image (fail
  closed). The verified set is cached as one file replaced atomically, and verified again like
  any other input when the webhook starts. Attestations carry no version, so unlike the bundle
  an older list cannot be told from a newer one; what a rollback could re-admit is an image
  that passed the gate once, which the list's own model (latest per subject) already allows.

Bounded: at most ``max_items`` attestations, each envelope at most the DSSE size limit, a page
at most ``max_page_bytes`` and a pull at most ``max_total_bytes``. Envelopes already verified by
this process (same subject, same bytes) are not verified again: a refresh of an unchanged list
costs a hash per entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

from dutyguard.errors import DutyguardError, LimitExceeded
from dutyguard.trust.errors import MalformedError
from dutyguard.trust.keys import Keyring

if TYPE_CHECKING:
    from dutyguard.admission.metrics import AdmissionMetrics
    from dutyguard.trust.attest import Subject

logger = logging.getLogger("dutyguard.admission")

PASSING = frozenset({"pass", "breakglass"})
MAX_FILES = 20_000
PULLED_FILE = "pulled-attestations.jsonl"
"""The verified set, one ``{"subject": …, "envelope": …}`` per line, in the attestations directory."""
DOCUMENT = "attestations"
"""The ``document`` label of the pull metrics."""


@dataclass(frozen=True, slots=True)
class AttestationDirIndex:
    by_digest: dict[str, str] = field(default_factory=dict)
    """``sha256:<hex>`` -> id of a passing attestation (``sha256:`` of its envelope)."""
    refused: tuple[str, ...] = ()

    def passing(self, image_digest: str) -> str | None:
        return self.by_digest.get(image_digest)


def _admits(
    data: bytes, keyring: Keyring, source: str, subject: Subject | None = None
) -> tuple[str, tuple[str, ...]]:
    """Verify one envelope: its id and the image digests it admits (none unless it passes)."""
    from dutyguard.trust.attest import verify_attestation

    att = verify_attestation(data, keyring, source, subject).attestation
    att_id = "sha256:" + hashlib.sha256(data).hexdigest()
    if att.predicate.decision not in PASSING:
        return att_id, ()
    return att_id, tuple(
        f"sha256:{s.digest['sha256']}" for s in att.subjects if s.name != "git" and s.digest.get("sha256")
    )


def load_index(directory: Path, keyring: Keyring, max_files: int = MAX_FILES) -> AttestationDirIndex:
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
            att_id, digests = _admits(data, keyring, str(path))
        except (OSError, DutyguardError) as e:
            refused.append(f"{path.name}: {e}")
            continue
        for digest in digests:
            by_digest.setdefault(digest, att_id)
    if refused:
        logger.error("%d attestation(s) refused: %s", len(refused), "; ".join(refused[:5]))
    return AttestationDirIndex(by_digest, tuple(refused))


# --- the control plane's list -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class AttestationItem:
    """One entry of ``GET /state/attestations``: the subject it is filed under and its envelope."""

    subject: str
    envelope: bytes
    """The DSSE envelope as canonical JSON bytes (sorted keys, ASCII): what is verified and cached."""


@dataclass(frozen=True, slots=True)
class AttestationLimits:
    max_items: int = MAX_FILES
    max_total_bytes: int = 64 * 1024 * 1024
    """Every envelope of one pull together (the webhook's memory limit is 256 MiB)."""
    max_page_bytes: int = 8 * 1024 * 1024
    page_size: int = 200

    @property
    def max_pages(self) -> int:
        return self.max_items // self.page_size + 2


DEFAULT_LIMITS = AttestationLimits()
MAX_SUBJECT = 400
"""The control plane's subject column."""


def _canonical(envelope: object, where: str) -> bytes:
    try:
        return json.dumps(envelope, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    except (RecursionError, ValueError) as e:
        raise MalformedError(where, f"envelope cannot be encoded ({type(e).__name__})") from None


def _item(value: object, where: str) -> AttestationItem:
    if not isinstance(value, dict):
        raise MalformedError(where, "expected an object with subject and envelope")
    subject, envelope = value.get("subject"), value.get("envelope")
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT:
        raise MalformedError(where, f"subject must be a string of 1-{MAX_SUBJECT} characters")
    if not isinstance(envelope, dict):
        raise MalformedError(where, "envelope must be an object (a DSSE envelope)")
    return AttestationItem(subject, _canonical(envelope, where))


def parse_page(data: bytes, source: str, page_size: int) -> tuple[list[AttestationItem], str | None]:
    """One page of the list (``{"items": [...], "next_cursor": str | null}``), parsed strictly."""
    from dutyguard.trust._json import StrictJSONError, loads

    try:
        value = loads(data)
    except StrictJSONError as e:
        raise MalformedError(source, f"the page is not strict JSON ({e})") from None
    if not isinstance(value, dict) or not isinstance(value.get("items"), list):
        raise MalformedError(source, "expected a page: {items: [...], next_cursor}")
    cursor = value.get("next_cursor")
    if cursor is not None and not (isinstance(cursor, str) and 0 < len(cursor) <= 512):
        raise MalformedError(source, "next_cursor must be null or a string of 1-512 characters")
    items = value["items"]
    if len(items) > page_size:
        raise MalformedError(source, f"{len(items)} items on a page of {page_size}")
    return [_item(v, f"{source} items[{i}]") for i, v in enumerate(items)], cursor


def _line(item: AttestationItem) -> bytes:
    return b'{"subject":' + json.dumps(item.subject).encode() + b',"envelope":' + item.envelope + b"}\n"


def _read_lines(f: IO[bytes], source: str, limits: AttestationLimits) -> Iterator[AttestationItem]:
    from dutyguard.trust._json import StrictJSONError, loads
    from dutyguard.trust.dsse import MAX_ENVELOPE_BYTES

    overhead = MAX_SUBJECT * 6 + 64  # the subject, JSON-escaped, and the line's own syntax
    max_line = MAX_ENVELOPE_BYTES + overhead
    max_file = limits.max_total_bytes + limits.max_items * overhead
    total = 0
    for n in range(1, limits.max_items + 2):
        line = f.readline(max_line + 1)
        if not line:
            return
        where = f"{source}:{n}"
        total += len(line)
        if len(line) > max_line or total > max_file:
            raise LimitExceeded(where, "larger than the limits of a pull")
        try:
            value = loads(line)
        except StrictJSONError as e:
            raise MalformedError(where, f"not strict JSON ({e})") from None
        yield _item(value, where)


class _CacheFile:
    """Lines into a temporary file beside ``path``, replacing it atomically on :meth:`commit`.

    A cache that cannot be written only costs a restart its head start, so write errors are
    logged, never raised: the verified set is enforced either way.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: IO[bytes] | None = None
        self._tmp: str | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            self._f = os.fdopen(fd, "wb")
        except OSError as e:
            self._fail(e)

    def write(self, data: bytes) -> None:
        if self._f is not None:
            try:
                self._f.write(data)
            except OSError as e:
                self._fail(e)

    def commit(self) -> None:
        if self._f is None or self._tmp is None:
            return
        try:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()
            self._f = None
            os.replace(self._tmp, self.path)
            self._tmp = None
        except OSError as e:
            self._fail(e)

    def discard(self) -> None:
        if self._f is not None:
            with contextlib.suppress(OSError):
                self._f.close()
            self._f = None
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._tmp)
            self._tmp = None

    def _fail(self, e: OSError) -> None:
        logger.error("could not cache the verified attestation set in %s: %s", self.path, e)
        self.discard()

    def __enter__(self) -> _CacheFile:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()


@dataclass(frozen=True, slots=True)
class _Set:
    by_digest: dict[str, str]
    verified: dict[str, tuple[str, tuple[str, ...]]]
    """Key of each entry (subject and envelope) -> its id and the digests it admits."""
    digest: str
    """Of the whole list, in order: whether a pull brought anything new."""
    size: int


Pull = Callable[[AttestationLimits], Iterable[AttestationItem]]
"""The entries of the control plane's list, within the limits; raises ``FetchError``
(unreachable) or a :class:`~dutyguard.errors.DutyguardError` (an answer that is not a list of
attestations)."""


class PulledAttestations:
    """The set of gate attestations in force, pulled from the control plane (module docstring)."""

    def __init__(
        self,
        keyring: Keyring,
        cache_file: Path,
        pull: Pull,
        *,
        limits: AttestationLimits = DEFAULT_LIMITS,
        metrics: AdmissionMetrics | None = None,
        source: str = "control plane GET /state/attestations",
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.keyring = keyring
        self.cache_file = cache_file
        self._pull = pull
        self.limits = limits
        self.metrics = metrics
        self.source = source
        self.clock = clock
        self._set: _Set | None = None
        self._problem = "no verified gate attestation set yet"
        self._cache_problem = ""
        self.verified_at: datetime | None = None

    # --- the request path ---------------------------------------------------------------------
    def passing(self, image_digest: str) -> str | None:
        current = self._set
        return None if current is None else current.by_digest.get(image_digest)

    @property
    def problem(self) -> str:
        """Why the set in force may be stale or missing; empty when the last pull verified."""
        return self._problem

    @property
    def admitted(self) -> int | None:
        """Image digests the set in force admits (``None``: no set yet)."""
        current = self._set
        return None if current is None else len(current.by_digest)

    # --- loading ------------------------------------------------------------------------------
    def _candidate(self, items: Iterable[AttestationItem], source: str, out: _CacheFile | None) -> _Set:
        from dutyguard.trust.attest import Subject

        known = self._set.verified if self._set is not None else {}
        by_digest: dict[str, str] = {}
        verified: dict[str, tuple[str, tuple[str, ...]]] = {}
        whole = hashlib.sha256()
        subjects: set[str] = set()
        total = 0
        for n, item in enumerate(items, 1):
            where = f"{source} [{item.subject[:120]}]"
            if n > self.limits.max_items:
                raise LimitExceeded(source, f"more than {self.limits.max_items} attestations")
            total += len(item.envelope)
            if total > self.limits.max_total_bytes:
                raise LimitExceeded(source, f"more than {self.limits.max_total_bytes} bytes of attestations")
            if item.subject in subjects:
                raise MalformedError(where, "the subject is listed twice")
            subjects.add(item.subject)
            key = hashlib.sha256(item.subject.encode() + b"\n" + item.envelope).hexdigest()
            entry = known.get(key)
            if entry is None:
                try:
                    subject = Subject.parse(item.subject)
                except ValueError as e:
                    raise MalformedError(where, str(e)) from None
                entry = _admits(item.envelope, self.keyring, where, subject)
            verified[key] = entry
            whole.update(key.encode())
            for digest in entry[1]:
                by_digest.setdefault(digest, entry[0])
            if out is not None:
                out.write(_line(item))
        return _Set(by_digest, verified, whole.hexdigest(), len(verified))

    def load_cache(self) -> bool:
        """Enforce the cached set, if every entry verifies. True when it did."""
        try:
            f = self.cache_file.open("rb")
        except FileNotFoundError:
            return False
        except OSError as e:
            self._problem = self._cache_problem = f"cached gate attestations unreadable: {e.strerror or e}"
            return False
        with f:
            try:
                candidate = self._candidate(
                    _read_lines(f, str(self.cache_file), self.limits), str(self.cache_file), None
                )
            except DutyguardError as e:
                self._problem = self._cache_problem = f"cached gate attestations refused: {e.diagnostics()}"
                logger.error("cached gate attestation set refused: %s", e.diagnostics())
                return False
        self._install(candidate)
        return True

    def refresh(self) -> bool:
        """Pull, verify every entry and install the new set. True when the set in force changed."""
        from dutyguard.admission.signed import FetchError

        with _CacheFile(self.cache_file) as out:
            try:
                candidate = self._candidate(self._pull(self.limits), self.source, out)
            except FetchError as e:
                result = "unauthorized" if e.status in (401, 403) else "unreachable"
                self._failed(
                    result, f"gate attestations not refreshed, control plane unreachable: {e.diagnostics()}"
                )
                logger.warning("gate attestations not refreshed: %s", e.diagnostics())
                return False
            except DutyguardError as e:
                self._failed(
                    "refused", f"gate attestations from the control plane refused: {e.diagnostics()}"
                )
                logger.error(
                    "gate attestation set from the control plane refused, the last verified set stays in force: %s",
                    e.diagnostics(),
                )
                return False
            changed = self._set is None or candidate.digest != self._set.digest
            if changed:
                out.commit()
        self._install(candidate)
        if self.metrics is not None:
            self.metrics.state_pulls.inc(DOCUMENT, "ok")
            self.metrics.state_pull_last_success.set(DOCUMENT, value=self.clock().timestamp())
        if changed:
            logger.warning(
                "enforcing %d gate attestation(s) admitting %d image digest(s)",
                candidate.size,
                len(candidate.by_digest),
            )
        return changed

    def _install(self, candidate: _Set) -> None:
        self._set = candidate
        self._problem = ""
        self.verified_at = self.clock()

    def _failed(self, result: str, problem: str) -> None:
        if self._set is None:  # say everything that stands between the webhook and a set
            problem = f"no verified gate attestation set: {problem}"
            if self._cache_problem:
                problem += f"; {self._cache_problem}"
        self._problem = problem
        if self.metrics is not None:
            self.metrics.state_pulls.inc(DOCUMENT, result)
            self.metrics.state_pull_last_failure.set(DOCUMENT, value=self.clock().timestamp())
