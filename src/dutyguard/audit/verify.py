"""Offline verification of an export (or of the live database, through the same code).

Two passes, the second only when the first finds anything wrong:

**Fast pass** (every entry, constant memory): for entry ``n`` the line must start with
``{"hash":"<H>","leaf":{"chain":{"prev":"<P>","seq":n,"v":1},"event":{`` where ``H`` is the
SHA-256 leaf hash of the leaf as it appears and ``P`` the hash of the entry before — one
``startswith`` checks content, sequence and link at once. Leaf hashes feed an RFC 6962 Merkle
frontier; at each signed checkpoint's size the root and the head must equal the signed ones.
Entries no trusted checkpoint covers are also parsed strictly (nothing else vouches for them);
entries a verified signature covers are the bytes the server checked before signing.

**Diagnosis** (only on an anomaly): every line is parsed and the evidence combined to name each
tampering and the sequence numbers it touches:

- *edited*: an entry's content no longer hashes to the hash recorded for it (in its line, or,
  when that was recomputed too, in its successor's ``prev``);
- *deleted*: sequence numbers missing between present entries;
- *inserted*: a second entry claiming a sequence number that no later entry links to;
- *reordered*: lines out of sequence order in the file, or rows renumbered in the database
  (an entry whose content hashes to its recorded hash only under another sequence number);
- *truncated*: the log ends before the size of a trusted signed checkpoint (or, for an export
  cut in transit, before its header's last sequence number);
- *rewritten*: a chain consistent in itself that does not match a signed checkpoint (someone
  recomputed every hash after an edit): located between the last matching checkpoint and the
  first mismatching one;
- *bad_checkpoint*: a checkpoint whose signature does not verify or whose key is not trusted.

What cannot be detected without a trusted checkpoint or head is stated in docs/audit.md:
removing or forging entries *after* the latest checkpoint the verifier trusts.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import json
import tempfile
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Final

from sqlalchemy.engine import Connection

from dutyguard.audit import merkle
from dutyguard.audit.canonical import loads_strict
from dutyguard.audit.checkpoint import Checkpoint, SignedCheckpoint
from dutyguard.audit.entry import GENESIS, MAX_LEAF_BYTES, chain_prefix, parse_leaf
from dutyguard.audit.errors import AuditError, ExportFormatError
from dutyguard.audit.export import EXPORT_FORMAT, export
from dutyguard.audit.signing import Verifier
from dutyguard.errors import ConfigError, LimitExceeded

MAX_LINE: Final = MAX_LEAF_BYTES + 256
MAX_CHECKPOINTS: Final = 1_000_000
_CHUNK: Final = 1 << 20
_HASH_AT: Final = len(b'{"hash":"')
_LEAF_AT: Final = _HASH_AT + 64 + len(b'","leaf":')
_GENESIS_B: Final = GENESIS.encode("ascii")
_SEARCH_WINDOW: Final = 256
"""How far from its place a renumbered entry is looked for (once per run of renumbered entries)."""
_SEARCH_BUDGET: Final = 200_000
"""Rehash attempts spent on that search in total, so a file of garbage cannot make it quadratic."""


class ProblemKind(enum.StrEnum):
    EDITED = "edited"
    DELETED = "deleted"
    INSERTED = "inserted"
    REORDERED = "reordered"
    TRUNCATED = "truncated"
    REWRITTEN = "rewritten"
    BAD_CHECKPOINT = "bad_checkpoint"


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding. ``seq``..``last_seq`` are the sequence numbers it concerns (``None`` when it
    concerns no entry); ``line`` is the first export line involved (``None`` for a database)."""

    kind: ProblemKind
    seq: int | None
    last_seq: int | None
    detail: str
    line: int | None = None
    written_as: int | None = None
    """For renumbered entries: the sequence number the entry was written with."""

    @property
    def message(self) -> str:
        if self.seq is None:
            where = "log"
        elif self.last_seq is None or self.last_seq == self.seq:
            where = f"entry {self.seq}"
        else:
            where = f"entries {self.seq}..{self.last_seq}"
        if self.line is None:
            at = ""
        elif self.kind is ProblemKind.DELETED:
            at = f" (before line {self.line})"
        else:
            at = f" (line {self.line})"
        return f"{where}{at}: {self.kind.value}: {self.detail}"

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "seq": self.seq,
            "last_seq": self.last_seq if self.last_seq is not None else self.seq,
            "line": self.line,
            "written_as": self.written_as,
            "detail": self.detail,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The verdict. ``ok`` only when nothing at all was found; fail closed otherwise."""

    source: str
    entries: int
    last_seq: int
    head: str | None
    root: str | None
    checkpoints: int
    checkpoints_verified: int
    signed_size: int
    """Entries covered by the largest trusted checkpoint that matched (0: none)."""
    latest_signed: Checkpoint | None
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unsigned_entries(self) -> int:
        """Entries after the latest matching trusted checkpoint: only the chain protects them."""
        return max(0, self.entries - self.signed_size)

    @property
    def first_bad_seq(self) -> int | None:
        seqs = [p.seq for p in self.problems if p.seq is not None]
        return min(seqs) if seqs else None

    def tampered(self) -> list[tuple[ProblemKind, int, int]]:
        """``(kind, first seq, last seq)`` for every problem that concerns entries."""
        return [(p.kind, p.seq, p.last_seq or p.seq) for p in self.problems if p.seq is not None]

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source,
            "ok": self.ok,
            "entries": self.entries,
            "last_seq": self.last_seq,
            "head": self.head,
            "root": self.root,
            "checkpoints": self.checkpoints,
            "checkpoints_verified": self.checkpoints_verified,
            "signed_size": self.signed_size,
            "unsigned_entries": self.unsigned_entries,
            "latest_signed_checkpoint": None if self.latest_signed is None else self.latest_signed.payload(),
            "first_bad_seq": self.first_bad_seq,
            "problems": [p.to_json() for p in self.problems],
        }


# -- reading the file ---------------------------------------------------------------------------


def _lines(f: BinaryIO, source: str, first_lineno: int = 0) -> Iterator[tuple[int, bytes]]:
    lineno, rest = first_lineno, b""
    while True:
        chunk = f.read(_CHUNK)
        if not chunk:
            break
        parts = (rest + chunk if rest else chunk).split(b"\n")
        rest = parts.pop()
        if len(rest) > MAX_LINE:
            raise LimitExceeded(f"{source}:{lineno + len(parts) + 1}", f"line longer than {MAX_LINE} bytes")
        for p in parts:
            lineno += 1
            if len(p) > MAX_LINE:
                raise LimitExceeded(f"{source}:{lineno}", f"line longer than {MAX_LINE} bytes")
            yield lineno, p
    if rest:
        yield lineno + 1, rest


def _format_error(source: str, lineno: int, reason: str, line: bytes) -> ExportFormatError:
    if line.endswith(b"\r"):
        reason += " (the line ends with CR: was the file converted to CRLF line endings?)"
    return ExportFormatError(f"{source}:{lineno}", reason)


def _header(lineno: int, line: bytes, source: str) -> tuple[int, int]:
    try:
        doc = loads_strict(line)
    except AuditError as e:
        raise _format_error(source, lineno, f"not a dutyguard audit export header ({e})", line) from None
    keys = {"checkpoints", "exported_at", "format", "last_seq"}
    if not isinstance(doc, dict) or set(doc) != keys or doc.get("format") != EXPORT_FORMAT:
        raise _format_error(
            source, lineno, f"not a dutyguard audit export (expected a {EXPORT_FORMAT} header)", line
        )
    last, n_cp = doc["last_seq"], doc["checkpoints"]
    if not isinstance(last, int) or isinstance(last, bool) or last < 0:
        raise _format_error(source, lineno, "header last_seq must be a non-negative integer", line)
    if not isinstance(n_cp, int) or isinstance(n_cp, bool) or not 0 <= n_cp <= MAX_CHECKPOINTS:
        raise _format_error(
            source, lineno, f"header checkpoints must be an integer 0..{MAX_CHECKPOINTS}", line
        )
    return last, n_cp


# -- the fast pass ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Trust:
    keys: Mapping[str, Verifier]
    trusted: dict[int, list[Checkpoint]]
    problems: list[Problem]
    total: int = 0


def _add_checkpoint(trust: _Trust, sc: SignedCheckpoint, where: str, line: int | None) -> None:
    trust.total += 1
    reason = sc.verify(trust.keys)
    cp = sc.checkpoint
    if reason is not None:
        trust.problems.append(
            Problem(ProblemKind.BAD_CHECKPOINT, None, None, f"{where} at size {cp.size}: {reason}", line)
        )
        return
    same = trust.trusted.setdefault(cp.size, [])
    if cp in same:
        return
    for other in same:
        if (other.head, other.root) != (cp.head, cp.root):
            trust.problems.append(
                Problem(
                    ProblemKind.REWRITTEN,
                    None,
                    None,
                    f"two validly signed checkpoints at size {cp.size} disagree (signed {other.ts} and {cp.ts}): "
                    "the signer was made to sign two different histories",
                    line,
                )
            )
    same.append(cp)


def _keys(keys: Iterable[Verifier] | Mapping[str, Verifier]) -> dict[str, Verifier]:
    out = dict(keys) if isinstance(keys, Mapping) else {k.key_id: k for k in keys}
    if not out:
        raise ConfigError("no trusted public key: pass the server's audit public key to verify checkpoints")
    return out


def verify_export(
    path_or_file: Path | str | BinaryIO,
    keys: Iterable[Verifier] | Mapping[str, Verifier],
    *,
    known: Sequence[SignedCheckpoint] = (),
    source: str | None = None,
) -> VerifyReport:
    """Verify an export file against trusted public ``keys``.

    ``known`` are checkpoints the auditor holds from elsewhere (fetched from the live server,
    kept from a previous audit): they are verified like the embedded ones, and a log shorter
    than any of them is reported as truncated — this is how truncation *after* the export's
    own latest checkpoint is caught. Hostile files raise :class:`ExportFormatError` or
    :class:`LimitExceeded` naming the line; they never pass.
    """
    trusted_keys = _keys(keys)
    if isinstance(path_or_file, str | Path):
        name = source or str(path_or_file)
        try:
            with Path(path_or_file).open("rb") as f:
                return _verify(f, name, trusted_keys, known, positions=True)
        except FileNotFoundError as e:
            raise ExportFormatError(name, f"cannot open ({e.strerror})") from None
        except IsADirectoryError as e:
            raise ExportFormatError(name, f"cannot open ({e.strerror})") from None
        except PermissionError as e:
            raise ExportFormatError(name, f"cannot open ({e.strerror})") from None
    stream = path_or_file
    name = source or str(getattr(stream, "name", "<stream>"))
    if stream.seekable():
        return _verify(stream, name, trusted_keys, known, positions=True)
    with tempfile.TemporaryFile() as spool:
        while chunk := stream.read(_CHUNK):
            spool.write(chunk)
        spool.seek(0)
        return _verify(spool, name, trusted_keys, known, positions=True)


def verify_database(
    conn: Connection,
    keys: Iterable[Verifier] | Mapping[str, Verifier],
    now: datetime,
    *,
    known: Sequence[SignedCheckpoint] = (),
) -> VerifyReport:
    """Verify the live trail exactly as an export of it would be verified (rows, then checkpoints).

    Run it in a transaction that sees one snapshot (PostgreSQL REPEATABLE READ) to keep
    concurrent appends out of the picture; appends in between are harmless either way.
    """
    trusted_keys = _keys(keys)
    source = f"database {conn.engine.url.render_as_string(hide_password=True)}"
    with tempfile.TemporaryFile() as spool:
        export(conn, spool, now)
        spool.seek(0)
        return _verify(spool, source, trusted_keys, known, positions=False)


def _verify(
    f: BinaryIO,
    source: str,
    keys: Mapping[str, Verifier],
    known: Sequence[SignedCheckpoint],
    *,
    positions: bool,
) -> VerifyReport:
    it = _lines(f, source)
    first = next(it, None)
    if first is None:
        raise ExportFormatError(source, "empty file: not a dutyguard audit export")
    announced_last, announced_cps = _header(first[0], first[1], source)
    trust = _Trust(keys, {}, [])
    for sc in known:
        _add_checkpoint(trust, sc, "given checkpoint", None)
    pending: tuple[int, bytes] | None = None
    last_cp_line = first[0]
    consumed = 0
    for lineno, line in it:
        if not line.startswith(b'{"checkpoint":'):
            pending = (lineno, line)
            break
        consumed += 1
        if consumed > MAX_CHECKPOINTS:
            raise LimitExceeded(f"{source}:{lineno}", f"more than {MAX_CHECKPOINTS} checkpoints")
        try:
            sc = SignedCheckpoint.from_line(line)
        except AuditError as e:
            raise _format_error(source, lineno, str(e), line) from None
        _add_checkpoint(trust, sc, "checkpoint", lineno if positions else None)
        last_cp_line = lineno
    if consumed != announced_cps:
        trust.problems.append(
            Problem(
                ProblemKind.TRUNCATED if consumed < announced_cps else ProblemKind.BAD_CHECKPOINT,
                None,
                None,
                f"the header announces {announced_cps} checkpoints but the file holds {consumed}: "
                + (
                    "checkpoint lines were removed"
                    if consumed < announced_cps
                    else "checkpoint lines were added"
                ),
            )
        )

    sizes = sorted(trust.trusted)
    max_signed = sizes[-1] if sizes else 0
    frontier = merkle.Frontier()
    prev, seq = _GENESIS_B, 1
    anomaly = False
    size_i = 0
    next_size = sizes[0] if sizes else -1
    matched_size = 0
    sha256, hexlify = hashlib.sha256, binascii.hexlify

    def entry_lines() -> Iterator[tuple[int, bytes]]:
        if pending is not None:
            yield pending
            yield from it

    for _lineno, line in entry_lines():
        leaf = line[_LEAF_AT:-1]
        digest = sha256(b"\x00" + leaf).digest()
        hx = hexlify(digest)
        if not (
            line.startswith(
                b'{"hash":"%b","leaf":{"chain":{"prev":"%b","seq":%d,"v":1},"event":{' % (hx, prev, seq)
            )
            and line.endswith(b"}")
        ):
            anomaly = True
            break
        frontier.append(digest)
        if seq == next_size:
            root = frontier.root().hex()
            hxs = hx.decode("ascii")
            if any(cp.root != root or cp.head != hxs for cp in trust.trusted[seq]):
                anomaly = True
                break
            matched_size = seq
            size_i += 1
            next_size = sizes[size_i] if size_i < len(sizes) else -1
        elif seq > max_signed:
            try:
                parse_leaf(leaf)
            except AuditError:
                anomaly = True
                break
        prev = hx
        seq += 1

    if anomaly:
        f.seek(0)
        return _diagnose_file(f, source, trust, announced_last, positions, last_cp_line)

    n = seq - 1
    problems = list(trust.problems)
    problems.extend(_truncation(trust, n, announced_last))
    latest = None
    if matched_size:
        latest = max(trust.trusted[matched_size], key=lambda c: c.ts)
    return VerifyReport(
        source=source,
        entries=n,
        last_seq=n,
        head=prev.decode("ascii") if n else None,
        root=frontier.root().hex() if n else None,
        checkpoints=trust.total,
        checkpoints_verified=sum(len(v) for v in trust.trusted.values()),
        signed_size=matched_size,
        latest_signed=latest,
        problems=tuple(_sorted(problems)),
    )


def _truncation(trust: _Trust, last: int, announced_last: int) -> list[Problem]:
    out = []
    beyond = [cp for size, cps in trust.trusted.items() if size > last for cp in cps]
    if beyond:
        cp = max(beyond, key=lambda c: c.size)
        out.append(
            Problem(
                ProblemKind.TRUNCATED,
                last + 1,
                cp.size,
                f"the log ends at entry {last} but a checkpoint signed {cp.ts} covers {cp.size} entries",
            )
        )
    elif announced_last > last:
        out.append(
            Problem(
                ProblemKind.TRUNCATED,
                last + 1,
                announced_last,
                f"the export ends at entry {last} but its header announces {announced_last}: the file was cut short",
            )
        )
    return out


def _sorted(problems: Iterable[Problem]) -> list[Problem]:
    order = list(ProblemKind)
    return sorted(problems, key=lambda p: (p.seq is None, p.seq or 0, order.index(p.kind), p.line or 0))


# -- the diagnosis ------------------------------------------------------------------------------


@dataclass(slots=True)
class _Rec:
    pos: int
    line: int
    seq: int
    prev: str
    h: str
    stored: str
    leaf: bytes
    malformed: str | None
    orig: int = 0
    moved: bool = False
    edited: bool = False
    genuine: bool = True


def _parse_entry_line(lineno: int, line: bytes, source: str, pos: int) -> _Rec:
    if not line.startswith(b'{"hash":'):
        raise _format_error(source, lineno, 'not an entry line (expected {"hash":…,"leaf":…})', line)
    try:
        text = line.decode("utf-8")
        stored, end = json.JSONDecoder().raw_decode(text, len('{"hash":'))
    except (UnicodeDecodeError, ValueError):
        raise _format_error(source, lineno, "not an entry line (malformed hash)", line) from None
    if not isinstance(stored, str) or not text.startswith(',"leaf":', end) or not text.endswith("}"):
        raise _format_error(source, lineno, 'not an entry line (expected {"hash":"…","leaf":{…}})', line)
    leaf = text[end + len(',"leaf":') : -1].encode("utf-8")
    malformed = None
    try:
        entry = parse_leaf(leaf)
        seq, prev = entry.seq, entry.prev_hash
    except AuditError as e:
        malformed = str(e)
        try:
            doc = json.loads(leaf)
            seq, prev = doc["chain"]["seq"], doc["chain"]["prev"]
        except (ValueError, KeyError, TypeError, RecursionError):
            raise _format_error(source, lineno, f"entry is not readable ({e})", line) from None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1 or not isinstance(prev, str):
            raise _format_error(source, lineno, f"entry has no valid chain position ({e})", line) from None
    h = hashlib.sha256(b"\x00" + leaf).hexdigest()
    # The leaf is kept only where a renumbering search may need it: memory stays per-entry small.
    return _Rec(pos, lineno, seq, prev, h, stored, leaf if h != stored else b"", malformed)


def _lis(seqs: Sequence[int]) -> set[int]:
    """Indexes of one longest strictly increasing subsequence (patience sorting, O(n log n))."""
    tails: list[int] = []
    tail_idx: list[int] = []
    parent = [-1] * len(seqs)
    for i, s in enumerate(seqs):
        k = bisect_left(tails, s)
        if k == len(tails):
            tails.append(s)
            tail_idx.append(i)
        else:
            tails[k] = s
            tail_idx[k] = i
        parent[i] = tail_idx[k - 1] if k else -1
    out: set[int] = set()
    i = tail_idx[-1] if tail_idx else -1
    while i != -1:
        out.add(i)
        i = parent[i]
    return out


def _rehash(r: _Rec, seq: int) -> str | None:
    p = chain_prefix(r.prev.encode("ascii", "replace"), r.seq)
    if not r.leaf.startswith(p):
        return None
    return hashlib.sha256(
        b"\x00" + chain_prefix(r.prev.encode("ascii", "replace"), seq) + r.leaf[len(p) :]
    ).hexdigest()


def _find_seq(r: _Rec, candidates: Iterable[int]) -> int | None:
    """The sequence number under which ``r``'s content hashes to its recorded hash, if any."""
    for c in candidates:
        if c >= 1 and c != r.seq and _rehash(r, c) == r.stored:
            return c
    return None


def _diagnose_file(
    f: BinaryIO, source: str, trust: _Trust, announced_last: int, positions: bool, last_cp_line: int
) -> VerifyReport:
    recs: list[_Rec] = []
    for lineno, line in _lines(f, source):
        if lineno <= last_cp_line:
            continue
        recs.append(_parse_entry_line(lineno, line, source, len(recs)))
    problems = list(trust.problems)
    problems.extend(_diagnose(recs, trust, positions))
    present = max((r.orig for r in recs if r.genuine), default=0)
    problems.extend(_truncation(trust, present, announced_last))
    leaves = [bytes.fromhex(r.h) for r in sorted(recs, key=lambda r: (r.seq, r.pos))]
    roots = _roots_at(leaves, trust.trusted)
    matched = 0
    for size in sorted(trust.trusted):
        if size in roots and all(
            cp.root == roots[size] and cp.head == leaves[size - 1].hex() for cp in trust.trusted[size]
        ):
            matched = size
        else:
            break
    problems = _merge(_sorted(problems))
    return VerifyReport(
        source=source,
        entries=len(recs),
        last_seq=max((r.seq for r in recs), default=0),
        head=leaves[-1].hex() if leaves else None,
        root=merkle.root(leaves).hex() if leaves else None,
        checkpoints=trust.total,
        checkpoints_verified=sum(len(v) for v in trust.trusted.values()),
        signed_size=matched,
        latest_signed=max(trust.trusted[matched], key=lambda c: c.ts) if matched else None,
        problems=tuple(problems),
    )


def _diagnose(recs: list[_Rec], trust: _Trust, positions: bool) -> list[Problem]:
    out: list[Problem] = []

    def at(r: _Rec) -> int | None:
        return r.line if positions else None

    # 1. Lines out of order in the file (a database export is in primary-key order by construction).
    counts = Counter(r.seq for r in recs)
    in_order = _lis([r.seq for r in recs])
    for i, r in enumerate(recs):
        if i not in in_order and counts[r.seq] == 1:
            out.append(
                Problem(ProblemKind.REORDERED, r.seq, r.seq, "out of sequence order in the file", at(r))
            )

    # 2. Content: intact, renumbered (hashes to its recorded hash under another seq), or edited.
    by_recorded: dict[str, _Rec] = {}
    for r in recs:
        by_recorded.setdefault(r.stored, r)
    budget = _SEARCH_BUDGET
    offset = 0  # the shift of the last renumbered entry: runs are usually shifted alike
    for r in sorted(recs, key=lambda r: (r.seq, r.pos)):
        r.orig = r.seq
        if r.malformed is not None:
            r.edited = True
            continue
        if r.h == r.stored:
            continue
        candidates: list[int] = []
        if r.prev == GENESIS:
            candidates.append(1)
        p = by_recorded.get(r.prev)
        if p is not None and p is not r:
            candidates.append((p.orig or p.seq) + 1)
        if offset:
            candidates.append(r.seq + offset)
        found = _find_seq(r, candidates)
        if found is None:
            window = min(_SEARCH_WINDOW, budget // 2)
            budget -= 2 * window
            found = _find_seq(r, (r.seq + d * sign for d in range(1, window + 1) for sign in (1, -1)))
        if found is None:
            r.edited = True
        else:
            r.orig, r.moved, offset = found, True, found - r.seq

    # 3. Two entries for one position: the one a later entry links to is genuine.
    refs = {r.prev for r in recs}
    groups: dict[int, list[_Rec]] = {}
    for r in recs:
        groups.setdefault(r.orig, []).append(r)
    for group in groups.values():
        if len(group) < 2:
            continue
        ranked = sorted(group, key=lambda r: (r.stored not in refs, r.edited, r.pos))
        for r in ranked[1:]:
            r.genuine = False
            out.append(
                Problem(
                    ProblemKind.INSERTED,
                    r.seq,
                    r.seq,
                    f"a second entry for position {r.orig} that no later entry links to",
                    at(r),
                )
            )

    # 4. Walk the genuine chain in written order.
    chain = sorted((r for r in recs if r.genuine), key=lambda r: r.orig)
    expected = 1
    before: _Rec | None = None
    for r in chain:
        if r.orig > expected:
            out.append(
                Problem(
                    ProblemKind.DELETED,
                    expected,
                    r.orig - 1,
                    "missing: no entry has these sequence numbers",
                    at(r),
                )
            )
        if r.malformed is not None:
            out.append(
                Problem(
                    ProblemKind.EDITED, r.seq, r.seq, f"altered into an invalid entry ({r.malformed})", at(r)
                )
            )
        elif r.edited:
            out.append(
                Problem(
                    ProblemKind.EDITED,
                    r.seq,
                    r.seq,
                    "content no longer matches the hash recorded for it",
                    at(r),
                )
            )
        elif r.moved:
            out.append(
                Problem(
                    ProblemKind.REORDERED,
                    r.seq,
                    r.seq,
                    f"renumbered: written as entry {r.orig}",
                    at(r),
                    written_as=r.orig,
                )
            )
        if r.orig == 1:
            if r.prev != GENESIS and not r.edited:
                out.append(
                    Problem(
                        ProblemKind.EDITED,
                        r.seq,
                        r.seq,
                        "the first entry does not start from the genesis hash",
                        at(r),
                    )
                )
        elif (
            before is not None
            and before.orig == r.orig - 1
            and not r.edited
            and not before.edited
            and r.prev != before.stored
        ):
            out.append(
                Problem(
                    ProblemKind.EDITED,
                    before.seq,
                    before.seq,
                    f"does not match the hash entry {r.orig} recorded for it (its own hash was recomputed)",
                    at(before),
                )
            )
        expected = r.orig + 1
        before = r

    # 5. A chain consistent in itself but not with a signature: all hashes were recomputed.
    if not any(p.seq is not None for p in out):
        leaves = [bytes.fromhex(r.h) for r in chain]
        roots = _roots_at(leaves, trust.trusted)
        good = 0
        for size in sorted(trust.trusted):
            if size > len(leaves):
                break
            if all(cp.root == roots[size] for cp in trust.trusted[size]):
                good = size
                continue
            out.append(
                Problem(
                    ProblemKind.REWRITTEN,
                    good + 1,
                    size,
                    f"the chain holds together but differs from the checkpoint signed at size {size}"
                    + (f" (the one at size {good} still matches)" if good else ""),
                    at(chain[good]) if good < len(chain) else None,
                )
            )
            break
    return out


def _merge(problems: list[Problem]) -> list[Problem]:
    """Collapse runs (consecutive seqs, same kind and detail) into one range problem."""
    out: list[Problem] = []
    for p in problems:
        last = out[-1] if out else None
        if (
            last is not None
            and p.seq is not None
            and last.seq is not None
            and p.kind == last.kind
            and p.kind in (ProblemKind.EDITED, ProblemKind.REORDERED, ProblemKind.INSERTED)
            and p.seq == (last.last_seq or last.seq) + 1
            and _shape(p) == _shape(last)
        ):
            if p.written_as is not None and last.written_as is not None:
                detail = f"renumbered: written as entries {last.written_as}..{p.written_as}"
            else:
                detail = last.detail
            out[-1] = replace(last, last_seq=p.seq, detail=detail)
            continue
        out.append(p)
    return out


def _shape(p: Problem) -> str:
    if p.written_as is not None and p.seq is not None:
        return f"moved{p.written_as - p.seq}"
    return p.detail


def _roots_at(leaves: Sequence[bytes], sizes: Iterable[int]) -> dict[int, str]:
    """Merkle roots of the first ``size`` leaves for every wanted size, in one pass."""
    wanted = sorted(s for s in set(sizes) if 0 < s <= len(leaves))
    out: dict[int, str] = {}
    f = merkle.Frontier()
    i = 0
    for size in wanted:
        while f.size < size:
            f.append(leaves[i])
            i += 1
        out[size] = f.root().hex()
    return out
