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
import hashlib
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final

from dutyguard.audit import merkle
from dutyguard.audit._diagnose import diagnose_file
from dutyguard.audit._reader import (
    CHUNK,
    EXPORT_FORMAT,
    MAX_LINE,
    Trust,
    add_checkpoint,
    format_error,
    lines,
    truncation,
)
from dutyguard.audit.canonical import loads_strict
from dutyguard.audit.checkpoint import SignedCheckpoint
from dutyguard.audit.entry import GENESIS, parse_leaf
from dutyguard.audit.errors import AuditError, ExportFormatError
from dutyguard.audit.report import Problem, ProblemKind, VerifyReport, sort_problems
from dutyguard.audit.signing import Verifier
from dutyguard.errors import ConfigError, LimitExceeded

if TYPE_CHECKING:  # offline verification needs neither SQLAlchemy nor a database driver
    from sqlalchemy.engine import Connection

__all__ = [
    "MAX_CHECKPOINTS",
    "MAX_LINE",
    "Problem",
    "ProblemKind",
    "VerifyReport",
    "verify_database",
    "verify_export",
]

MAX_CHECKPOINTS: Final = 1_000_000
_HASH_AT: Final = len(b'{"hash":"')
_LEAF_AT: Final = _HASH_AT + 64 + len(b'","leaf":')
_GENESIS_B: Final = GENESIS.encode("ascii")


# -- the fast pass ------------------------------------------------------------------------------


def _header(lineno: int, line: bytes, source: str) -> tuple[int, int]:
    try:
        doc = loads_strict(line)
    except AuditError as e:
        raise format_error(source, lineno, f"not a dutyguard audit export header ({e})", line) from None
    keys = {"checkpoints", "exported_at", "format", "last_seq"}
    if not isinstance(doc, dict) or set(doc) != keys or doc.get("format") != EXPORT_FORMAT:
        raise format_error(
            source, lineno, f"not a dutyguard audit export (expected a {EXPORT_FORMAT} header)", line
        )
    last, n_cp = doc["last_seq"], doc["checkpoints"]
    if not isinstance(last, int) or isinstance(last, bool) or last < 0:
        raise format_error(source, lineno, "header last_seq must be a non-negative integer", line)
    if not isinstance(n_cp, int) or isinstance(n_cp, bool) or not 0 <= n_cp <= MAX_CHECKPOINTS:
        raise format_error(
            source, lineno, f"header checkpoints must be an integer 0..{MAX_CHECKPOINTS}", line
        )
    return last, n_cp


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
        while chunk := stream.read(CHUNK):
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
    from dutyguard.audit.export import export

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
    it = lines(f, source)
    first = next(it, None)
    if first is None:
        raise ExportFormatError(source, "empty file: not a dutyguard audit export")
    announced_last, announced_cps = _header(first[0], first[1], source)
    trust = Trust(keys, {}, [])
    for sc in known:
        add_checkpoint(trust, sc, "given checkpoint", None)
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
            raise format_error(source, lineno, str(e), line) from None
        add_checkpoint(trust, sc, "checkpoint", lineno if positions else None)
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
        return diagnose_file(f, source, trust, announced_last, positions, last_cp_line)

    n = seq - 1
    problems = list(trust.problems)
    problems.extend(truncation(trust, n, announced_last))
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
        problems=tuple(sort_problems(problems)),
    )
