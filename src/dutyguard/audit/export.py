"""The export file: everything an auditor needs to verify the trail offline, one JSON value a line.

Layout (UTF-8, ``\\n`` line ends, every line canonical JSON):

1. a header ``{"checkpoints":<k>,"exported_at":"…Z","format":"dutyguard.audit.export/v1","last_seq":<n>}``;
2. ``k`` checkpoint lines ``{"checkpoint":{…},"signature":"…"}``, smallest size first, the latest
   signed checkpoint last;
3. one line per entry, in sequence order: ``{"hash":"<stored entry hash>","leaf":<leaf>}`` where
   ``<leaf>`` is byte for byte the canonical leaf that was hashed (see :mod:`dutyguard.audit.entry`).

Checkpoints come first so a verifier knows, before reading the entries, at which sizes it must
compare roots — one pass, constant memory. ``hash`` is what the database recorded when the
entry was written; the verifier recomputes it and uses the recorded value only to tell an
edited entry from its neighbours. The header's counts are not trusted: they only let a file
that was cut short in transit be named as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dutyguard.audit._reader import EXPORT_FORMAT
from dutyguard.audit.canonical import canonical_json, canonical_str
from dutyguard.audit.entry import format_ts
from dutyguard.audit.log import checkpoints, iter_rows, row_leaf
from dutyguard.audit.tables import audit_entries

__all__ = ["EXPORT_FORMAT", "ExportSummary", "entry_line", "export"]


@dataclass(frozen=True, slots=True)
class ExportSummary:
    entries: int
    last_seq: int
    checkpoints: int
    latest_checkpoint_size: int | None


def entry_line(stored_hash: str, leaf: bytes) -> bytes:
    return b'{"hash":' + canonical_str(stored_hash) + b',"leaf":' + leaf + b"}"


def export(conn: Connection, out: BinaryIO, now: datetime) -> ExportSummary:
    """Write the whole trail to ``out``.

    Checkpoints are read before the head, so every exported checkpoint covers exported entries
    even while other processes keep appending; entries appended meanwhile are either wholly in
    (up to the head read here) or not at all. Rows are written as stored: a tampered row is
    exported tampered, for the verifier to find.
    """
    cps = checkpoints(conn)
    last_seq = int(conn.execute(sa.select(sa.func.max(audit_entries.c.seq))).scalar() or 0)
    header = {
        "checkpoints": len(cps),
        "exported_at": format_ts(now),
        "format": EXPORT_FORMAT,
        "last_seq": last_seq,
    }
    out.write(canonical_json(header) + b"\n")
    for cp in cps:
        out.write(cp.to_line() + b"\n")
    n = 0
    buf: list[bytes] = []
    for row in iter_rows(conn, after=0, upto=last_seq):
        buf.append(entry_line(str(row.entry_hash), row_leaf(row)))
        n += 1
        if len(buf) >= 1000:
            buf.append(b"")
            out.write(b"\n".join(buf))
            buf.clear()
    if buf:
        buf.append(b"")
        out.write(b"\n".join(buf))
    return ExportSummary(
        entries=n,
        last_seq=last_seq,
        checkpoints=len(cps),
        latest_checkpoint_size=cps[-1].checkpoint.size if cps else None,
    )
